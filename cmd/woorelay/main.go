// Command woorelay relays the events of Segment and RudderStack SDKs to Woopra's HTTP
// Tracking API: `woorelay serve` accepts the SDKs' traffic, queues it durably and delivers it;
// the other commands map, test, lint and measure the YAML mappings, and run a Woopra emulator.
//
// Usage:
//
//	woorelay serve [--config FILE] [--listen ADDR] [--admin-listen ADDR] [--data DIR] [--woopra-url URL]
//	woorelay dlq list | show ID | replay (ID...|--all)
//	woorelay privacy suppress|unsuppress|erase SELECTOR... | list
//	woorelay config [reload | check FILE...]
//	woorelay health [--listen ADDR] [--url URL]
//	woorelay emulate | bench | transform | explain | test | lint | diff | corpus | presets | docs
//
// Run `woorelay help` for details.
//
// This package is only the command line: flags, environment (every flag also reads
// WOORELAY_<FLAG>), output and exit codes. The running relay is package relay, the admin API and
// its client package admin, the benchmarks and load generator package bench, the engine package
// mapping; a Go program embeds those, never this one.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `woorelay relays Segment and RudderStack SDK events to Woopra's HTTP Tracking API.

Commands:
  transform [--preset NAME|FILE] [--mappings DIR]... [--set KEY=VALUE]... [--now TIME] [FILE|-]
            map events (NDJSON, a JSON object or array, or {"batch":[...]}) and print
            one JSON line per event: send (with its requests), rejected or skipped
  explain   [same flags as transform] [FILE|-]
            print, per event, how every field was decided
  test      [-update] [-v] [PATH]...
            run the *.test.yaml files under PATH (default .; testdata folders passed over)
  lint      [--preset NAME|FILE] [--set KEY=VALUE]... [--mappings DIR]... [--samples FILE]...
            [--tests PATH]...
            report misspelt paths, spread conflicts and untested rows and fields
  diff      [--set KEY=VALUE]... [--mappings DIR]... [--now TIME] OLD_PRESET NEW_PRESET [FILE|-]
            run two presets (NEW with the --mappings folders) over the same events and
            summarise per field what changed
  corpus    [-n N] [-seed S]
            print N deterministic sample events (NDJSON) for trying presets and benchmarks
  serve     [--config FILE] [--listen ADDR] [--admin-listen ADDR] [--data DIR] ...
            accept Segment and RudderStack SDK traffic, queue it durably and deliver it to
            Woopra (or, with no project configured, to an in-process emulator); every flag
            can also be set as WOORELAY_<FLAG>; see woorelay serve -h
  config    [--server URL] [--admin-token TOKEN] [--json] [reload | check FILE...]
            show the running configuration and its last reload, reload it, or check a
            sources file offline (see woorelay config -h)
  emulate   [--listen ADDR] [--projects P,...] [--strict] [--max-records N]
            run a Woopra emulator that records requests and builds visitor profiles,
            with faults on command (see emulator/README.md)
  import    [--since T] [--until T] [--write-key K | --config F --source S] [--dry-run] LOCATION...
            send Segment's or RudderStack's archives (or NDJSON files), from folders or
            object storage, through a relay to Woopra, once (see woorelay import -h)
  dlq       [--server URL] [--admin-token TOKEN] list | show ID | replay (ID...|--all)
            see why events were dead-lettered and replay them after a fix
  privacy   [--server URL] [--admin-token TOKEN] suppress|unsuppress|erase SELECTOR... | list
            stop a person's events, or erase them from everything the relay holds
  bench     [--stage transform,ingest,e2e,outage|all] [--rounds N] [--conns N] [--duration D] [--json]
            measure each stage against its ceiling in the same run (see BENCHMARKS.md)
  health    [--listen ADDR] [--url URL] [--timeout D]
            ask the serve on this machine whether it is ready (GET /readyz): exit 0 when
            it is; a container health check that needs no shell
  presets   list the built-in presets
  docs      print the reference of the mapping language (every key, every function)
  help      print this text

Every command prints its usage with -h.

Exit status: 0 when every event was processed (rejections are data), 1 on an input or
output error, 2 on a usage or configuration error (printed as file:line:col: code: message).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "transform":
		return cmdTransform(args[1:], stdin, stdout, stderr)
	case "test":
		return cmdTest(args[1:], stdout, stderr)
	case "explain":
		return cmdExplain(args[1:], stdin, stdout, stderr)
	case "lint":
		return cmdLint(args[1:], stdout, stderr)
	case "diff":
		return cmdDiff(args[1:], stdin, stdout, stderr)
	case "corpus":
		return cmdCorpus(args[1:], stdout, stderr)
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "emulate":
		return cmdEmulate(args[1:], stdout, stderr)
	case "dlq":
		return cmdDlq(args[1:], stdout, stderr)
	case "privacy":
		return cmdPrivacy(args[1:], stdout, stderr)
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "bench":
		return cmdBench(args[1:], stdout, stderr)
	case "import":
		return cmdImport(args[1:], stdout, stderr)
	case "presets":
		return cmdPresets(args[1:], stdout, stderr)
	case "docs":
		return cmdDocs(args[1:], stdout, stderr)
	case "health":
		return cmdHealth(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "woorelay: unknown command %q\n\n%s", args[0], usage)
	return 2
}
