package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
)

// Each subcommand's help: a usage line with its positional arguments, then what it does.
// `woorelay CMD -h` prints it (and the flags) on standard output and exits 0.
const (
	transformUsage = `usage: woorelay transform [--preset NAME|FILE] [--mappings DIR]... [--set KEY=VALUE]... [--now TIME] [FILE|-]

Maps events (NDJSON, a JSON object or array, or {"batch":[...]}) read from FILE or standard
input and prints one JSON line per event: send (with its Woopra requests), rejected or skipped.
`
	explainUsage = `usage: woorelay explain [--preset NAME|FILE] [--mappings DIR]... [--set KEY=VALUE]... [--now TIME] [FILE|-]

Prints, for each event read from FILE or standard input, how every field of its Woopra
requests was decided: the mapping chosen, each field's source, and why an event was skipped
or rejected.
`
	testUsage = `usage: woorelay test [-update] [-v] [PATH]...

Runs the mapping tests (*.test.yaml files) under each PATH (default: the current folder;
folders named testdata are passed over unless named) and exits 1 when a case fails.
`
	lintUsage = `usage: woorelay lint [--preset NAME|FILE] [--mappings DIR]... [--set KEY=VALUE]... [--samples FILE]... [--tests PATH]...

Reports misspelt event paths, spread conflicts and untested mappings and fields of a preset
and its mapping folders; exits 1 when it finds a problem.
`
	diffUsage = `usage: woorelay diff [--set KEY=VALUE]... [--mappings DIR]... [--now TIME] OLD_PRESET NEW_PRESET [FILE|-]

Runs two presets (NEW_PRESET with the --mappings folders) over the same events, read from FILE
or standard input, and summarises per field what changed. The presets are the two arguments;
there is no --preset flag.
`
	corpusUsage = `usage: woorelay corpus [-n N] [-seed S]

Prints N deterministic sample events (NDJSON) for trying presets and benchmarks; the same
seed gives the same events.
`
	serveUsage = `usage: woorelay serve [flags]

Accepts Segment and RudderStack SDK traffic, queues it durably and delivers it to Woopra
(or, with no project configured, to an in-process emulator). It takes no arguments.

Every flag can also be set in the environment as WOORELAY_<FLAG>, upper case with dashes as
underscores (--woopra-url is WOORELAY_WOOPRA_URL, --admin-token WOORELAY_ADMIN_TOKEN); a flag
on the command line wins. SIGHUP reloads the sources file; SIGTERM drains and exits.
`
	emulateUsage = `usage: woorelay emulate [--listen ADDR] [--projects P,...] [--strict] [--max-records N]

Runs a Woopra emulator that records requests, builds visitor profiles and answers with
faults on command (see emulator/README.md). Every flag can also be set as WOORELAY_<FLAG>.
`
	healthUsage = `usage: woorelay health [--listen ADDR] [--tls-cert FILE] [--url URL] [--timeout D]

Asks a woorelay serve on this machine whether it is ready (GET /readyz on its ingest
listener) and exits 0 when it answers 200, 1 otherwise: a container's health check that
needs no shell. --listen and --tls-cert are serve's, read from the same WOORELAY_LISTEN and
WOORELAY_TLS_CERT, so the probe finds the listener serve was given.
`
	presetsUsage = `usage: woorelay presets

Lists the built-in presets with their files.
`
	docsUsage = `usage: woorelay docs

Prints the reference of the mapping language (every key, every function) as Markdown.
`
)

// newFlagSet returns the flag set of `woorelay name`; its usage prints text, then the flags.
func newFlagSet(name, text string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), text)
		n := 0
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args. After -h or --help it has printed the usage on stdout and returns
// (0, true); after a bad flag it has printed the error and the usage on stderr and returns
// (2, true); otherwise (0, false) and the command goes on.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (int, bool) {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		stdout.Write(buf.Bytes())
		return 0, true
	case err != nil:
		stderr.Write(buf.Bytes())
		return 2, true
	}
	return 0, false
}

// parseNoArgs is parseFlags for a command that takes neither flags nor arguments.
func parseNoArgs(name, usage string, args []string, stdout, stderr io.Writer) (int, bool) {
	if code, done := parseFlags(newFlagSet(name, usage), args, stdout, stderr); done {
		return code, true
	}
	if len(args) > 0 {
		fmt.Fprintf(stderr, "woorelay %s: unexpected argument %q\n\n%s", name, args[0], usage)
		return 2, true
	}
	return 0, false
}
