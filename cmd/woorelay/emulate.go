package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/woorelay/woorelay/emulator"
)

// emulateContext returns the context `woorelay emulate` serves until: SIGINT or SIGTERM.
// Tests replace it to stop the command without signals.
var emulateContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// cmdEmulate serves the Woopra emulator: `woorelay emulate [--listen ADDR] [--projects LIST]
// [--strict] [--max-records N]`, each flag also settable as WOORELAY_<FLAG>. The default
// address is :8081.
func cmdEmulate(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("emulate", emulateUsage)
	listen := fs.String("listen", ":8081", "address to listen on")
	projects := fs.String("projects", "", "comma-separated registered projects; others get Woopra's \"not registered\" reply (default: any project)")
	strict := fs.Bool("strict", false, "answer 400 to requests without a project, identifier or event instead of Woopra's lenient 200")
	maxRecords := fs.Int("max-records", 0, fmt.Sprintf("requests kept for GET /emulator/requests (0: %d; negative: none)", emulator.DefaultMaxRecords))
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if err := applyEnv(fs); err != nil { // WOORELAY_LISTEN and the other flags
		fmt.Fprintf(stderr, "woorelay emulate: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "woorelay emulate: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	opts := emulator.Options{Strict: *strict, MaxRecords: *maxRecords}
	for _, p := range strings.Split(*projects, ",") {
		if p = strings.TrimSpace(p); p != "" {
			opts.Projects = append(opts.Projects, p)
		}
	}
	ctx, cancel := emulateContext()
	defer cancel()
	em := emulator.New(opts)
	url, stop, err := em.Start(*listen)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay emulate: listening on %s: %v\n", *listen, err)
		return 1
	}
	fmt.Fprintf(stdout, "woorelay emulate: Woopra emulator listening on %s (tracking %s/track/ce, control %s/emulator/)\n", url, url, url)
	<-ctx.Done()
	shutdown, cancelShutdown := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancelShutdown()
	if err := stop(shutdown); err != nil {
		fmt.Fprintf(stderr, "woorelay emulate: shutting down: %v\n", err)
		return 1
	}
	st := em.Stats()
	fmt.Fprintf(stdout, "woorelay emulate: stopped after %d tracking requests\n", st.Requests)
	return 0
}
