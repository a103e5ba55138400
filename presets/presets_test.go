package presets

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/woorelay/woorelay/blueprint"
	"github.com/woorelay/woorelay/mapping/maptest"
)

var update = flag.Bool("update", false, "rewrite golden files of the *.test.yaml cases")

// TestPresetFiles runs every *.test.yaml beside the presets, the same runner `woorelay test` uses.
func TestPresetFiles(t *testing.T) {
	bp, err := blueprint.Woopra()
	if err != nil {
		t.Fatal(err)
	}
	files, err := maptest.Find(".")
	if err != nil {
		t.Fatal(err)
	}
	maptest.Run(t, maptest.Options{Blueprint: bp, Resolve: Source, Update: *update}, files...)
}

// TestEveryPresetHasTests checks that each built-in preset has a test file beside it.
func TestEveryPresetHasTests(t *testing.T) {
	names := Names()
	if len(names) == 0 {
		t.Fatal("no built-in presets")
	}
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(".", n+".test.yaml")); err != nil {
			t.Errorf("preset %s has no %s.test.yaml beside it", n, n)
		}
	}
}

// TestPresetsCompile checks that every built-in preset compiles with only its required settings.
func TestPresetsCompile(t *testing.T) {
	for _, n := range Names() {
		if _, err := Load(n, map[string]string{"project": "example.com"}); err != nil {
			t.Errorf("preset %s: %v", n, err)
		}
	}
}

// TestExampleMappingFolder runs the tests of the example mapping folder under testdata/.
func TestExampleMappingFolder(t *testing.T) {
	bp, err := blueprint.Woopra()
	if err != nil {
		t.Fatal(err)
	}
	files, err := maptest.Find("../testdata/mappings_example")
	if err != nil {
		t.Fatal(err)
	}
	maptest.Run(t, maptest.Options{Blueprint: bp, Resolve: Source, Update: *update}, files...)
}
