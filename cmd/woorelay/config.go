package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/relay"
	"github.com/woorelay/woorelay/server"
)

const configUsage = `usage: woorelay config [--server URL] [--admin-token TOKEN] [--json] [reload | check FILE...]

Shows or reloads the configuration of a running woorelay serve (through its admin listener),
or checks sources files offline. COMMAND is one of:
  (none)        show the configuration in force: its version, when and from what it was
                loaded, the sources with their presets and mapping folders (never the write
                keys), and the last reload's outcome with its findings
  reload        read the sources file, its presets and mapping folders again and swap them
                in (as SIGHUP does); a refused reload prints its findings, exits 1, and the
                running configuration stays
  check FILE... validate sources files offline, with the findings a reload would give, and
                print each one's version; exits 1 when anything is found (no server needed)
--server is the admin listener (serve's --admin-listen): it defaults to $WOORELAY_SERVER or
http://127.0.0.1:9090; --admin-token to $WOORELAY_ADMIN_TOKEN.
`

// cmdConfig is `woorelay config`: a client of a running server's configuration routes, and
// an offline check of sources files.
func cmdConfig(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("config", configUsage)
	server, token := adminClientFlags(fs)
	asJSON := fs.Bool("json", false, "print the admin API's JSON answer")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if err := applyEnv(fs); err != nil { // WOORELAY_SERVER, WOORELAY_ADMIN_TOKEN
		fmt.Fprintf(stderr, "woorelay config: %v\n", err)
		return 2
	}
	rest := fs.Args()
	cmd := "show"
	if len(rest) > 0 {
		cmd, rest = rest[0], rest[1:]
	}
	if cmd == "check" {
		if slices.Contains(rest, "-h") || slices.Contains(rest, "--help") {
			fmt.Fprint(stdout, configUsage)
			return 0
		}
		if len(rest) == 0 {
			fmt.Fprint(stderr, "woorelay config check: give the sources files to check\n")
			return 2
		}
		return configCheck(rest, stdout)
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "woorelay config %s: unexpected argument %q\n%s", cmd, rest[0], configUsage)
		return 2
	}
	cl := admin.NewClient(*server, *token, nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	switch cmd {
	case "show":
		v, err := cl.Config(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "woorelay config: %v\n", err)
			return 1
		}
		if *asJSON {
			return printJSON(stdout, v)
		}
		printConfig(stdout, v)
		return 0
	case "reload":
		res, err := cl.Reload(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "woorelay config reload: %v\n", err)
			return 1
		}
		if *asJSON {
			printJSON(stdout, res)
		} else {
			printReload(stdout, res)
		}
		if res.Outcome != admin.ReloadOK {
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "woorelay config: unknown command %q\n%s", cmd, configUsage)
	return 2
}

// configCheck is `woorelay config check FILE...`.
func configCheck(files []string, w io.Writer) int {
	problems := 0
	for _, f := range files {
		ver, n, err := relay.CheckSourcesFile(f)
		if err != nil {
			lines := strings.Split(err.Error(), "\n")
			problems += len(lines)
			fmt.Fprintln(w, strings.Join(lines, "\n"))
			continue
		}
		fmt.Fprintf(w, "ok   %s (%d sources, version %s)\n", f, n, ver)
		for _, d := range sourcesWarnings(f) {
			fmt.Fprintln(w, "warn "+d.Error())
		}
	}
	if problems > 0 {
		fmt.Fprintf(w, "%d problems\n", problems)
		return 1
	}
	return 0
}

// sourcesWarnings returns what the compiler warns about in a sources file that compiles:
// expressions whose cost depends on the event, which the evaluation limits stop at run time.
func sourcesWarnings(path string) mapping.Diagnostics {
	sc, err := server.LoadConfig(path)
	if err != nil {
		return nil
	}
	srcs, err := sc.Compile(func(_ string, settings map[string]string) {
		if settings["project"] == "" {
			settings["project"] = relay.SandboxProject
		}
	})
	if err != nil {
		return nil
	}
	var out mapping.Diagnostics
	seen := map[mapping.Diagnostic]bool{}
	for _, s := range srcs {
		for _, d := range s.Program.Warnings() {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	out.Sort()
	return out
}

func printJSON(w io.Writer, v any) int {
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return 1
	}
	w.Write(append(out, '\n'))
	return 0
}

// printConfig prints GET /admin/config for people.
func printConfig(w io.Writer, v admin.ConfigView) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	from := v.LoadedFrom
	if from == "" {
		from = "development mode (no --config)"
	}
	fmt.Fprintf(tw, "version\t%s\n", v.Version)
	fmt.Fprintf(tw, "loaded\t%s from %s (%s)\n", v.LoadedAt.UTC().Format(time.RFC3339), from, v.Trigger)
	for _, f := range v.Files {
		fmt.Fprintf(tw, "file\t%s\t%.12s\n", f.Path, f.SHA256)
	}
	watching := "no (reload with SIGHUP or woorelay config reload)"
	if v.Watching {
		watching = "yes"
	}
	fmt.Fprintf(tw, "watching\t%s\n", watching)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tWRITE KEY\tPRESET\tMAPPINGS\tSETTINGS")
	for _, s := range v.Sources {
		var settings []string
		for k, val := range s.Settings {
			settings = append(settings, k+"="+val)
		}
		sort.Strings(settings)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.WriteKey, s.Preset, orDash(strings.Join(s.Mappings, ",")), orDash(strings.Join(settings, " ")))
	}
	tw.Flush()
	fmt.Fprintln(w)
	if v.LastReload == nil {
		fmt.Fprintln(w, "no reload since the start")
	} else {
		fmt.Fprint(w, "last reload: ")
		printReload(w, *v.LastReload)
	}
	fmt.Fprintf(w, "reloads: %d ok, %d refused\n", v.Reloads.OK, v.Reloads.Error)
}

// printReload prints one reload's outcome and findings.
func printReload(w io.Writer, r admin.ReloadResult) {
	fmt.Fprintf(w, "%s %s (%s): %s\n", r.At.UTC().Format(time.RFC3339), r.Outcome, r.Trigger, r.Message)
	for _, f := range r.Findings {
		fmt.Fprintln(w, "  "+f)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
