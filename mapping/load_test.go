package mapping

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadDir: mapping files are read in name order; test files, other files and sub-folders
// are left out; a missing folder is an error that names it.
func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"b.yaml": "kind: mappings\n", "a.yml": "kind: mappings\n", "a.test.yaml": "kind: test\n",
		"notes.txt": "not a mapping",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, filepath.Base(s.File))
		if string(s.Data) != "kind: mappings\n" {
			t.Errorf("%s: data %q", s.File, s.Data)
		}
	}
	if strings.Join(names, ",") != "a.yml,b.yaml" {
		t.Errorf("loaded %v, want [a.yml b.yaml]", names)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing folder: %v", err)
	}
}
