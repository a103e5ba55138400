package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/presets"
)

func cmdPresets(w io.Writer) int {
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
func cmdDocs(w io.Writer) int {
	fmt.Fprintln(w, "# woorelay mapping language reference")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Generated from the schema the loader enforces (`woorelay docs`).")
	for _, spec := range mapping.AllSpecs {
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
