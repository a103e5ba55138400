// Command woorelay maps Segment and RudderStack events to Woopra's HTTP Tracking API.
//
// Usage:
//
//	woorelay transform [--preset NAME|FILE] [--set KEY=VALUE]... [FILE|-]
//	woorelay presets
//	woorelay docs
//
// Run `woorelay help` for details.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `woorelay maps Segment / RudderStack events to Woopra HTTP Tracking API requests.

Commands:
  transform [--preset NAME|FILE] [--set KEY=VALUE]... [--now TIME] [FILE|-]
            map events (NDJSON, a JSON object or array, or {"batch":[...]}) and print
            one JSON line per event: send (with its requests), rejected or skipped
  presets   list the built-in presets
  docs      print the reference of the mapping language (every key, every function)
  help      print this text

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
	case "presets":
		return cmdPresets(stdout)
	case "docs":
		return cmdDocs(stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "woorelay: unknown command %q\n\n%s", args[0], usage)
	return 2
}
