package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/mapping/corpus"
	"github.com/woorelay/woorelay/mapping/maptest"
	"github.com/woorelay/woorelay/presets"
)

// cmdPresets is `woorelay presets`.
func cmdPresets(args []string, w, stderr io.Writer) int {
	if code, done := parseNoArgs("presets", presetsUsage, args, w, stderr); done {
		return code
	}
	for _, name := range presets.Names() {
		src, err := presets.Source(name)
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "%-12s %s\n", name, src.File)
	}
	return 0
}

// cmdDocs renders the mapping language reference from the same specs the loader checks against.
func cmdDocs(args []string, w, stderr io.Writer) int {
	if code, done := parseNoArgs("docs", docsUsage, args, w, stderr); done {
		return code
	}
	fmt.Fprintln(w, "# woorelay mapping language reference")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Generated from the schema the loader enforces (`woorelay docs`).")
	specs := append(append([]*mapping.ObjectSpec{}, mapping.AllSpecs...), &maptest.FileSpec, &maptest.CaseSpec, &maptest.ExpectSpec)
	for _, spec := range specs {
		fmt.Fprintf(w, "\n## %s\n\n%s\n\n| key | type | required | meaning |\n|---|---|---|---|\n", spec.Name, spec.Doc)
		for _, k := range spec.Keys {
			req := ""
			if k.Required {
				req = "yes"
			}
			fmt.Fprintf(w, "| `%s` | %s | %s | %s |\n", k.Name, k.Type, req, strings.ReplaceAll(k.Doc, "|", "\\|"))
		}
	}
	fmt.Fprintln(w, "\n## expression functions\n\nExpressions are expr-lang (https://expr-lang.org) with these functions added; event paths such as `properties.total` are read directly.\n\n| function | meaning |\n|---|---|")
	for _, f := range mapping.Functions {
		fmt.Fprintf(w, "| `%s` | %s |\n", f.Signature, f.Doc)
	}
	return 0
}

// cmdCorpus prints deterministic sample events.
func cmdCorpus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("corpus", corpusUsage)
	n := fs.Int("n", 1000, "how many events")
	seed := fs.Int64("seed", 1, "random seed; the same seed gives the same events")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "woorelay corpus: unexpected argument %q\n\n%s", fs.Arg(0), corpusUsage)
		return 2
	}
	if err := corpus.Write(stdout, *seed, *n); err != nil {
		fmt.Fprintf(stderr, "woorelay corpus: %v\n", err)
		return 1
	}
	return 0
}
