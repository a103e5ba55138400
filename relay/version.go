package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/presets"
	"github.com/woorelay/woorelay/server"
)

// input is one file a configuration is read from.
type input struct {
	name string // relative to the sources file's folder; "(built-in) NAME" for a built-in preset
	path string // absolute; "" for a built-in preset and the rendering of a configuration without a file
	data []byte // the content as read (nil when the file is missing)
}

// inputs lists and reads the files sc is made from: the sources file, the preset files (the
// built-in presets' embedded text), and every mapping file of the mapping folders. A
// configuration without a file (development mode, one built in Go) is represented by a
// rendering of its sources instead.
func inputs(sc *server.Config) []input {
	var root string
	var out []input
	if sc.File != "" {
		root = filepath.Dir(absPath(sc.File))
		out = append(out, readInput(root, absPath(sc.File)))
	} else {
		out = append(out, input{name: "(sources without a file)", data: renderSources(sc)})
	}
	seen := map[string]bool{}
	add := func(in input) {
		if !seen[in.name] {
			seen[in.name] = true
			out = append(out, in)
		}
	}
	for _, s := range sc.Sources {
		if src, err := presets.Source(s.Preset); err == nil && isBuiltin(s.Preset) {
			add(input{name: "(built-in) " + s.Preset, data: src.Data})
		} else {
			add(readInput(root, absPath(s.Preset)))
		}
		for _, dir := range s.Mappings {
			files, _ := mapping.LoadDir(dir)
			for _, f := range files {
				p := absPath(f.File)
				add(input{name: relName(root, p), path: p, data: f.Data})
			}
		}
	}
	return out
}

// isBuiltin reports whether a source's preset names a built-in preset, not a file.
func isBuiltin(preset string) bool {
	return slices.Contains(presets.Names(), preset)
}

func readInput(root, path string) input {
	data, _ := os.ReadFile(path) // nil when missing: hashed as "missing"
	return input{name: relName(root, path), path: path, data: data}
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// relName is path relative to root when it can be, else path.
func relName(root, path string) string {
	if root != "" {
		if r, err := filepath.Rel(root, path); err == nil {
			return filepath.ToSlash(r)
		}
	}
	return filepath.ToSlash(path)
}

// renderSources is a stable rendering of a configuration that has no file, for its version
// (write keys as their hashes).
func renderSources(sc *server.Config) []byte {
	type src struct {
		Name, Key, Preset        string
		Settings                 map[string]string
		Mappings, AllowedOrigins []string
	}
	v := struct {
		PublicURL      string
		AllowedOrigins []string
		TrustedProxies []string
		Sources        []src
	}{PublicURL: sc.PublicURL, AllowedOrigins: sc.AllowedOrigins}
	for _, p := range sc.TrustedProxies {
		v.TrustedProxies = append(v.TrustedProxies, p.String())
	}
	for _, s := range sc.Sources {
		key := sha256.Sum256([]byte(s.WriteKey))
		k := hex.EncodeToString(key[:])
		if s.AnyKey {
			k = "any"
		}
		v.Sources = append(v.Sources, src{s.Name, k, s.Preset, s.Settings, s.Mappings, s.AllowedOrigins})
	}
	b, _ := json.Marshal(v) // map keys are sorted
	return b
}

// version is the content hash of the inputs: "sha256:" and 12 hex digits, the same for the
// same contents under the same relative names wherever the files are.
func version(ins []input) (string, []admin.ConfigFile) {
	files := make([]admin.ConfigFile, 0, len(ins))
	for _, in := range ins {
		sum := "missing"
		if in.data != nil {
			h := sha256.Sum256(in.data)
			sum = hex.EncodeToString(h[:])
		}
		files = append(files, admin.ConfigFile{Path: in.name, SHA256: sum})
	}
	sorted := append([]admin.ConfigFile(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := sha256.New()
	for _, f := range sorted {
		fmt.Fprintf(h, "%s\x00%s\n", f.Path, f.SHA256)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:12], files
}

// CheckSourcesFile validates a sources file offline as serve and a reload read it: the file,
// the preset files and mapping folders it names, and every source compiled (a source without
// a project as the sandbox would run it). It returns the version those files have, the one
// GET /admin/config shows when serve runs them, the number of sources, and every finding as
// mapping.Diagnostics ("file:line:col: code: message (hint: ...)").
func CheckSourcesFile(path string) (ver string, sources int, err error) {
	sc, err := server.LoadConfig(path)
	if err != nil {
		return "", 0, err
	}
	if _, err := sc.Compile(func(_ string, settings map[string]string) {
		if settings["project"] == "" {
			settings["project"] = SandboxProject
		}
	}); err != nil {
		return "", 0, err
	}
	ver, _ = version(inputs(sc))
	return ver, len(sc.Sources), nil
}
