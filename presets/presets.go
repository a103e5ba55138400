// Package presets holds the presets shipped in the binary: complete, editable YAML
// configurations of the Woopra blueprint. Users copy one and edit it, or name it with --preset.
package presets

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/woorelay/woorelay/blueprint"
	"github.com/woorelay/woorelay/mapping"
)

//go:embed *.yaml
var files embed.FS

// Names lists the built-in presets.
func Names() []string {
	entries, _ := files.ReadDir(".")
	var out []string
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".test.yaml") {
			out = append(out, strings.TrimSuffix(n, ".yaml"))
		}
	}
	sort.Strings(out)
	return out
}

// Source returns a preset by built-in name or by file path. A name containing a path
// separator or ending in .yaml is read from disk.
func Source(nameOrFile string) (mapping.Source, error) {
	if strings.ContainsRune(nameOrFile, filepath.Separator) || strings.HasSuffix(nameOrFile, ".yaml") || strings.HasSuffix(nameOrFile, ".yml") {
		data, err := os.ReadFile(nameOrFile)
		if err != nil {
			return mapping.Source{}, mapping.Diagnostic{File: nameOrFile, Code: mapping.CodeUnknownPreset, Msg: err.Error(), Hint: "give a built-in preset name (" + strings.Join(Names(), ", ") + ") or a readable YAML file"}
		}
		return mapping.Source{File: nameOrFile, Data: data}, nil
	}
	data, err := files.ReadFile(nameOrFile + ".yaml")
	if err != nil {
		return mapping.Source{}, mapping.Diagnostic{File: nameOrFile, Code: mapping.CodeUnknownPreset,
			Msg: fmt.Sprintf("there is no built-in preset %q", nameOrFile), Hint: "built-in presets: " + strings.Join(Names(), ", ") + "; or give a path to a YAML file"}
	}
	return mapping.Source{File: "presets/" + nameOrFile + ".yaml", Data: data}, nil
}

// Load compiles a preset (built-in name or file) against its blueprint with the given settings.
func Load(nameOrFile string, settings map[string]string) (*mapping.Program, error) {
	return Compile(nameOrFile, mapping.Options{Settings: settings})
}

// Compile compiles a preset (built-in name or file) with the given options; the blueprint is
// filled in.
func Compile(nameOrFile string, opts mapping.Options) (*mapping.Program, error) {
	src, err := Source(nameOrFile)
	if err != nil {
		return nil, err
	}
	bp, err := blueprint.Woopra()
	if err != nil {
		return nil, err
	}
	opts.Blueprint = bp
	return mapping.Compile(src, opts)
}
