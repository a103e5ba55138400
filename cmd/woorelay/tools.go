package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/woorelay/woorelay/blueprint"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/mapping/lint"
	"github.com/woorelay/woorelay/mapping/maptest"
	"github.com/woorelay/woorelay/presets"
)

// cmdTest runs *.test.yaml files.
func cmdTest(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("test", testUsage)
	update := fs.Bool("update", false, "rewrite golden files instead of comparing them")
	verbose := fs.Bool("v", false, "list every case, not only failures")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	roots := fs.Args()
	if len(roots) == 0 {
		roots = []string{"."}
	}
	files, err := findTests(roots)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay test: %v\n", err)
		return 2
	}
	if len(files) == 0 {
		fmt.Fprintf(stderr, "woorelay test: no *.test.yaml under %s\n", strings.Join(roots, ", "))
		return 2
	}
	bp, err := blueprint.Woopra()
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	opts := maptest.Options{Blueprint: bp, Resolve: presets.Source, Update: *update}
	cases, failed, broken := 0, 0, 0
	for _, f := range files {
		results, err := maptest.RunFile(f, opts)
		if err != nil {
			fmt.Fprintf(stdout, "ERROR %s\n%s\n", f, indent(err.Error()))
			broken++
			continue
		}
		fileFailed := 0
		for _, r := range results {
			cases++
			if r.Passed() {
				if *verbose {
					fmt.Fprintf(stdout, "  ok   %s:%d %s\n", r.File, r.Line, r.Name)
				}
				continue
			}
			fileFailed++
			fmt.Fprintf(stdout, "  FAIL %s:%d %s\n%s\n", r.File, r.Line, r.Name, indent(strings.Join(r.Failures, "\n")))
		}
		failed += fileFailed
		status := "ok  "
		if fileFailed > 0 {
			status = "FAIL"
		}
		fmt.Fprintf(stdout, "%s %s (%d cases)\n", status, f, len(results))
	}
	fmt.Fprintf(stdout, "%d files, %d cases, %d failed", len(files), cases, failed)
	if broken > 0 {
		fmt.Fprintf(stdout, ", %d files could not run", broken)
	}
	fmt.Fprintln(stdout)
	if failed > 0 || broken > 0 {
		return 1
	}
	return 0
}

func indent(s string) string {
	return "       " + strings.ReplaceAll(s, "\n", "\n       ")
}

// cmdExplain prints the per-field trace of each event.
func cmdExplain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	prog, now, data, code := eventCommand("explain", explainUsage, args, stdin, stdout, stderr)
	if code != 0 || prog == nil {
		return code
	}
	out := bufio.NewWriter(stdout)
	index := 0
	err := eachEvent(data, func(event []byte, bad error) {
		if index > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "event %d\n", index)
		if bad != nil {
			fmt.Fprintf(out, "%-14s %v\n", "rejected", bad)
		} else {
			res, tr := prog.Explain(event, now)
			out.WriteString(tr.String())
			switch res.Outcome {
			case mapping.Rejected:
				fmt.Fprintf(out, "%-14s %s: %s\n", "rejected", res.Code, res.Error)
			case mapping.Skipped:
				fmt.Fprintf(out, "%-14s %s\n", "skipped", res.Reason)
			}
		}
		index++
	})
	out.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "woorelay explain: %v\n", err)
		return 1
	}
	return 0
}

// cmdLint reports problems in a preset and its mapping files.
func cmdLint(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("lint", lintUsage)
	var pf programFlags
	pf.register(fs)
	var samples, tests listFlag
	fs.Var(&samples, "samples", "a `file` of sample events (NDJSON or JSON) to check paths and spreads against (repeatable)")
	fs.Var(&tests, "tests", "a test `file or folder` that exercises the preset (repeatable); default: the .test.yaml beside the preset and in --mappings folders")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "woorelay lint: unexpected argument %q: name the preset with --preset and the tests with --tests\n\n%s", fs.Arg(0), lintUsage)
		return 2
	}
	prog, err := pf.compile(pf.preset, pf.mappings, true)
	if err != nil {
		printConfigError(stdout, err)
		return 1
	}
	in := lint.Input{Program: prog}
	for _, s := range samples {
		data, err := os.ReadFile(s)
		if err != nil {
			fmt.Fprintf(stderr, "woorelay lint: %v\n", err)
			return 2
		}
		eachEvent(data, func(ev []byte, bad error) {
			if bad == nil {
				in.Samples = append(in.Samples, ev)
			}
		})
	}
	roots := []string(tests)
	if len(roots) == 0 {
		if beside := strings.TrimSuffix(prog.File, ".yaml") + ".test.yaml"; fileExists(beside) {
			roots = append(roots, beside)
		}
		roots = append(roots, pf.mappings...)
	}
	if len(roots) > 0 {
		if in.Tests, err = maptest.Find(roots...); err != nil {
			fmt.Fprintf(stderr, "woorelay lint: %v\n", err)
			return 2
		}
	}
	bp, _ := blueprint.Woopra()
	in.Test = maptest.Options{Blueprint: bp, Resolve: presets.Source}
	findings := lint.Run(in)
	for _, d := range findings {
		fmt.Fprintln(stdout, d.Error())
	}
	if len(findings) > 0 {
		fmt.Fprintf(stdout, "%d problems\n", len(findings))
		return 1
	}
	fmt.Fprintf(stdout, "no problems (%d sample events, %d test files)\n", len(in.Samples), len(in.Tests))
	return 0
}

func fileExists(p string) bool {
	_, err := os.Stat(filepath.Clean(p))
	return err == nil
}

// cmdDiff runs two presets over the same events and summarises what changed, per field.
func cmdDiff(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlagSet("diff", diffUsage)
	var pf programFlags
	pf.registerNoPreset(fs)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() < 2 || fs.NArg() > 3 {
		fmt.Fprint(stderr, diffUsage)
		return 2
	}
	now, err := pf.clock()
	if err != nil {
		fmt.Fprintf(stderr, "woorelay diff: %v\n", err)
		return 2
	}
	oldProg, err := pf.compile(fs.Arg(0), nil, false)
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	newProg, err := pf.compile(fs.Arg(1), pf.mappings, false)
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	var data []byte
	if name := fs.Arg(2); name != "" && name != "-" {
		data, err = os.ReadFile(name)
	} else {
		data, err = io.ReadAll(stdin)
	}
	if err != nil {
		fmt.Fprintf(stderr, "woorelay diff: %v\n", err)
		return 1
	}
	d := newDiffer()
	eachEvent(data, func(ev []byte, bad error) {
		if bad != nil {
			d.total++
			return
		}
		d.add(oldProg.Run(ev, now), newProg.Run(ev, now))
	})
	d.write(stdout, fs.Arg(0), fs.Arg(1))
	return 0
}

// differ accumulates per-field differences between two runs over the same events.
type differ struct {
	total, changed, newlyRejected, newlySkipped, newlySent int
	fields                                                 map[string]*fieldDiff
	outcomes                                               map[string]int
}

type fieldDiff struct {
	changed, added, removed int
	example                 string
}

func newDiffer() *differ {
	return &differ{fields: map[string]*fieldDiff{}, outcomes: map[string]int{}}
}

func (d *differ) field(name string) *fieldDiff {
	f := d.fields[name]
	if f == nil {
		f = &fieldDiff{}
		d.fields[name] = f
	}
	return f
}

func outcomeLabel(r mapping.Result) string {
	switch r.Outcome {
	case mapping.Rejected:
		return "rejected " + r.Code
	case mapping.Skipped:
		return "skipped"
	}
	return "send " + r.Requests[0].Endpoint
}

func (d *differ) add(a, b mapping.Result) {
	d.total++
	la, lb := outcomeLabel(a), outcomeLabel(b)
	if la != lb {
		d.changed++
		d.outcomes[la+" -> "+lb]++
		if a.Outcome != b.Outcome {
			switch b.Outcome {
			case mapping.Rejected:
				d.newlyRejected++
			case mapping.Skipped:
				d.newlySkipped++
			case mapping.Send:
				d.newlySent++
			}
		}
		if a.Outcome != mapping.Send || b.Outcome != mapping.Send {
			return
		}
	}
	if a.Outcome != mapping.Send {
		return
	}
	differs := false
	for _, pair := range [][2][]mapping.Param{{a.Requests[0].Params, b.Requests[0].Params}, {a.Requests[0].Headers, b.Requests[0].Headers}} {
		old, cur := toMap(pair[0]), toMap(pair[1])
		for k, v := range old {
			nv, ok := cur[k]
			switch {
			case !ok:
				d.field(k).removed++
				differs = true
			case nv != v:
				f := d.field(k)
				f.changed++
				if f.example == "" {
					f.example = fmt.Sprintf("%q -> %q", v, nv)
				}
				differs = true
			}
		}
		for k := range cur {
			if _, ok := old[k]; !ok {
				d.field(k).added++
				differs = true
			}
		}
	}
	if differs && la == lb {
		d.changed++
	}
}

func toMap(ps []mapping.Param) map[string]string {
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.Name] = p.Value
	}
	return m
}

func (d *differ) write(w io.Writer, oldName, newName string) {
	fmt.Fprintf(w, "%s -> %s over %d events: %d changed, %d newly rejected, %d newly skipped, %d newly sent\n",
		oldName, newName, d.total, d.changed, d.newlyRejected, d.newlySkipped, d.newlySent)
	if len(d.outcomes) > 0 {
		fmt.Fprintln(w, "outcomes:")
		keys := make([]string, 0, len(d.outcomes))
		for k := range d.outcomes {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %-50s %d\n", k, d.outcomes[k])
		}
	}
	if len(d.fields) > 0 {
		fmt.Fprintln(w, "fields (events that were sent by both):")
		names := make([]string, 0, len(d.fields))
		for k := range d.fields {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, n := range names {
			f := d.fields[n]
			var parts []string
			if f.changed > 0 {
				parts = append(parts, fmt.Sprintf("%d changed (e.g. %s)", f.changed, f.example))
			}
			if f.added > 0 {
				parts = append(parts, fmt.Sprintf("%d added", f.added))
			}
			if f.removed > 0 {
				parts = append(parts, fmt.Sprintf("%d removed", f.removed))
			}
			fmt.Fprintf(w, "  %-24s %s\n", n, strings.Join(parts, ", "))
		}
	}
}

// findTests returns the *.test.yaml files under roots, passing over those in a folder named
// testdata below a root (fixtures, some meant to fail, as `go test` passes them over); name
// such a folder, or a file in it, to run it.
func findTests(roots []string) ([]string, error) {
	var out []string
	for _, root := range roots {
		files, err := maptest.Find(root)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			rel, err := filepath.Rel(root, f)
			if err != nil || !slices.Contains(strings.Split(filepath.ToSlash(rel), "/"), "testdata") {
				out = append(out, f)
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out), nil
}
