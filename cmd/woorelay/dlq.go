package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/woorelay/woorelay/admin"
)

const dlqUsage = `usage: woorelay dlq [--server URL] [--admin-token TOKEN] list | show ID | replay (ID...|--all)

Lists, shows and replays the dead letters of a running woorelay serve (through its admin
listener): the events that will not be delivered without a fix. COMMAND is one of:
  list                      dead letters, oldest first: id, when, source, status, attempts, reason
  show ID                   one dead letter with its event and the requests that failed
  replay ID...              move dead letters back to the delivery queue
  replay --all              ... all of them
A replayed event is mapped again with its source's current preset and mappings when it is
delivered: fix Woopra, or fix a setting or a mapping and reload it (woorelay config reload,
SIGHUP, or serve --watch; no restart), then replay.
--server is the admin listener (serve's --admin-listen): it defaults to $WOORELAY_SERVER or
http://127.0.0.1:9090; --admin-token to $WOORELAY_ADMIN_TOKEN.
`

// adminClientFlags adds the flags of every client of the admin API to fs: --server, the
// admin listener's base URL, and --admin-token (WOORELAY_SERVER and WOORELAY_ADMIN_TOKEN
// through applyEnv).
func adminClientFlags(fs *flag.FlagSet) (server, token *string) {
	server = fs.String("server", "http://127.0.0.1:9090", "base URL of the running woorelay serve's admin listener (--admin-listen)")
	token = fs.String("admin-token", "", "admin API token")
	return server, token
}

// cmdDlq is `woorelay dlq`: a client of a running server's admin API.
func cmdDlq(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dlq", dlqUsage)
	server, token := adminClientFlags(fs)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if err := applyEnv(fs); err != nil { // WOORELAY_SERVER, WOORELAY_ADMIN_TOKEN
		fmt.Fprintf(stderr, "woorelay dlq: %v\n", err)
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprint(stderr, dlqUsage)
		return 2
	}
	cl := admin.NewClient(*server, *token, nil)
	var err error
	switch rest[0] {
	case "list":
		err = dlqList(cl, stdout)
	case "show":
		if len(rest) != 2 {
			fmt.Fprint(stderr, dlqUsage)
			return 2
		}
		err = dlqShow(cl, rest[1], stdout)
	case "replay":
		rfs := newFlagSet("dlq replay", dlqUsage)
		all := rfs.Bool("all", false, "replay every dead letter")
		if code, done := parseFlags(rfs, rest[1:], stdout, stderr); done {
			return code
		}
		req := admin.ReplayRequest{All: *all}
		for _, a := range rfs.Args() {
			id, perr := strconv.ParseUint(a, 10, 64)
			if perr != nil {
				fmt.Fprintf(stderr, "woorelay dlq replay: %q is not a dead-letter id; `woorelay dlq list` shows them\n", a)
				return 2
			}
			req.IDs = append(req.IDs, id)
		}
		if req.All == (len(req.IDs) > 0) {
			fmt.Fprint(stderr, "woorelay dlq replay: give dead-letter ids or --all\n")
			return 2
		}
		err = dlqReplay(cl, req, stdout)
	default:
		fmt.Fprintf(stderr, "woorelay dlq: unknown command %q\n%s", rest[0], dlqUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "woorelay dlq: %v\n", err)
		return 1
	}
	return 0
}

// dlqList prints every dead letter, a line each.
func dlqList(cl *admin.Client, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tSOURCE\tSTATUS\tATTEMPTS\tREASON")
	var after uint64
	for {
		page, err := cl.DeadLetters(context.Background(), after, 1000)
		if err != nil {
			return err
		}
		for _, d := range page.DeadLetters {
			status := "-"
			if d.Status != 0 {
				status = strconv.Itoa(d.Status)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.At.UTC().Format(time.RFC3339), d.Source, status, d.Attempts, d.Reason)
		}
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	return tw.Flush()
}

// dlqShow prints one dead letter as indented JSON.
func dlqShow(cl *admin.Client, id string, w io.Writer) error {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a dead-letter id; `woorelay dlq list` shows them", id)
	}
	d, err := cl.DeadLetter(context.Background(), n)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// dlqReplay replays dead letters and says how many.
func dlqReplay(cl *admin.Client, req admin.ReplayRequest, w io.Writer) error {
	res, err := cl.Replay(context.Background(), req)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "replayed %d of %d dead letters\n", res.Replayed, res.Asked)
	if res.Note != "" {
		fmt.Fprintln(w, res.Note)
	}
	return nil
}
