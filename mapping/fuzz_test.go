package mapping_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// FuzzCompile feeds arbitrary text to the compiler as a preset and as a mapping file: it must
// never panic, and every failure must be Diagnostics with a file, a code and a message.
func FuzzCompile(f *testing.F) {
	for _, pattern := range []string{"../testdata/bad_*.yaml", "../presets/*.yaml", "../testdata/mappings_example/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	bp := woopra(f)
	base, err := os.ReadFile("../presets/default.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(p *mapping.Program, err error) {
			if err == nil {
				if p == nil {
					t.Fatal("no program and no error")
				}
				p.Run([]byte(`{"type":"track","event":"E","anonymousId":"a","properties":{"x":1}}`), now)
				return
			}
			var ds mapping.Diagnostics
			if !errors.As(err, &ds) || len(ds) == 0 {
				t.Fatalf("error is %T, want Diagnostics: %v", err, err)
			}
			for _, d := range ds {
				if d.File == "" || d.Code == "" || d.Msg == "" {
					t.Fatalf("incomplete diagnostic %+v", d)
				}
			}
		}
		settings := map[string]string{"project": "p.com"}
		check(mapping.Compile(mapping.Source{File: "fuzz.yaml", Data: data}, mapping.Options{Blueprint: bp, Settings: settings}))
		check(mapping.Compile(mapping.Source{File: "default.yaml", Data: base},
			mapping.Options{Blueprint: bp, Settings: settings, Overlays: []mapping.Source{{File: "overlay.yaml", Data: data}}}))
	})
}
