package mapping

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// LoadDir reads every mapping file (*.yaml, *.yml) of a folder, in name order, as Sources to
// lay over a preset (Options.Overlays). Test files (*.test.yaml) are left out: they sit beside
// the files they test and are run by `woorelay test`.
func LoadDir(dir string) ([]Source, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading mapping folder: %w", err)
	}
	var out []Source
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !(strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")) || strings.HasSuffix(n, ".test.yaml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return nil, err
		}
		out = append(out, Source{File: filepath.Join(dir, n), Data: data})
	}
	return out, nil
}
