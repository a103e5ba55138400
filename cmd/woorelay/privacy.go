package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/privacy"
	"github.com/woorelay/woorelay/relay"
)

const privacyUsage = `usage: woorelay privacy [--server URL] [--admin-token TOKEN] suppress|unsuppress|erase SELECTOR... | list

Handles a person's data at a running woorelay serve (through its admin listener). A person is
named by SELECTORs, repeatable and combinable: --user-id ID, --anonymous-id ID, --email ADDRESS
(kept as its SHA-256 only) and --cookie WOOPRA_COOKIE. COMMAND is one of:
  suppress SELECTOR...      from now on, answer the person's events 200 and neither store nor
                            deliver them (counted filtered, reason suppressed); what is queued
                            of them is not delivered either. The list lives in the queue's store,
                            shared by every relay on the same JetStream cluster
  unsuppress SELECTOR...    take them off the list: their new events are delivered again
  list                      the suppression list
  erase SELECTOR...         remove the person's events from the queue (pending events and their
                            bytes in the data directory), the dead letters, the debugger and the
                            sandbox emulator, and print how many were removed from each
Woopra keeps what it already received: erase it there too (README, "Personal data").
--server is the admin listener (serve's --admin-listen): it defaults to $WOORELAY_SERVER or
http://127.0.0.1:9090; --admin-token to $WOORELAY_ADMIN_TOKEN.
`

// selectorFlag collects repeated selector flags of one kind.
type selectorFlag struct {
	kind privacy.Kind
	into *[]string
}

func (f selectorFlag) String() string { return "" }
func (f selectorFlag) Set(v string) error {
	s, err := privacy.NewSelector(f.kind, v)
	if err != nil {
		return err
	}
	*f.into = append(*f.into, s.String())
	return nil
}

// cmdPrivacy is `woorelay privacy`: a client of a running server's admin API.
func cmdPrivacy(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("privacy", privacyUsage)
	server, token := adminClientFlags(fs)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if err := applyEnv(fs); err != nil { // WOORELAY_SERVER, WOORELAY_ADMIN_TOKEN
		fmt.Fprintf(stderr, "woorelay privacy: %v\n", err)
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, privacyUsage)
		return 2
	}
	cl := admin.NewClient(*server, *token, &http.Client{Timeout: 10 * time.Minute}) // an erasure compacts the store
	ctx := context.Background()
	var sels []string
	if rest[0] != "list" {
		sfs := newFlagSet("privacy "+rest[0], privacyUsage)
		for name, kind := range map[string]privacy.Kind{"user-id": privacy.UserID, "anonymous-id": privacy.AnonymousID, "email": privacy.Email, "cookie": privacy.Cookie} {
			sfs.Var(selectorFlag{kind, &sels}, name, "the person's "+strings.ReplaceAll(name, "-", " ")+" (repeatable)")
		}
		if code, done := parseFlags(sfs, rest[1:], stdout, stderr); done {
			return code
		}
		if len(sels) == 0 || sfs.NArg() > 0 {
			fmt.Fprintf(stderr, "woorelay privacy %s: name the person with --user-id, --anonymous-id, --email or --cookie (and nothing else)\n", rest[0])
			return 2
		}
	}
	var err error
	switch rest[0] {
	case "list":
		var a relay.SuppressionsAnswer
		if err = cl.Call(ctx, http.MethodGet, "/admin/suppressions", nil, &a); err == nil {
			for _, s := range a.Suppressions {
				fmt.Fprintf(stdout, "%s\t%s\n", s.Kind, s.Value)
			}
		}
	case "suppress", "unsuppress":
		method, verb := http.MethodPost, "suppressed"
		if rest[0] == "unsuppress" {
			method, verb = http.MethodDelete, "unsuppressed"
		}
		var a relay.SuppressionsAnswer
		if err = cl.Call(ctx, method, "/admin/suppressions", relay.SelectorsRequest{Selectors: sels}, &a); err == nil {
			fmt.Fprintf(stdout, "%s %d selector(s); the list holds %d\n", verb, max(a.Added, a.Removed), len(a.Suppressions))
		}
	case "erase":
		var a relay.Erasure
		if err = cl.Call(ctx, http.MethodPost, "/admin/privacy/erase", relay.SelectorsRequest{Selectors: sels}, &a); err == nil {
			fmt.Fprintf(stdout, "queue: %d event(s)\ndead letters: %d\ndebugger: %d event(s)\nemulator: %d request(s), %d visitor profile(s)\n",
				a.Queue.Items, a.Queue.DeadLetters, a.Debugger, a.Emulator.Requests, a.Emulator.Visitors)
		}
	default:
		fmt.Fprintf(stderr, "woorelay privacy: unknown command %q\n%s", rest[0], privacyUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "woorelay privacy: %v\n", err)
		return 1
	}
	return 0
}
