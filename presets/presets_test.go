package presets

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/blueprint"
	"github.com/woorelay/woorelay/mapping"
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

// TestMappingFolderChangesOnlyItsEvent runs the 10,000-event corpus through the default preset
// with and without the example mapping folder: every "Video Played" event changes (it now uses
// the added mapping) and every other event gives exactly the same result.
func TestMappingFolderChangesOnlyItsEvent(t *testing.T) {
	base := loadDefault(t)
	overlays, err := mapping.LoadDir("../testdata/mappings_example")
	if err != nil {
		t.Fatal(err)
	}
	withFolder, err := Compile("default", mapping.Options{Settings: ceilingSettings, Overlays: overlays})
	if err != nil {
		t.Fatal(err)
	}
	changed, same := 0, 0
	for i, ev := range benchCorpus() {
		a, b := base.Run(ev, benchNow), withFolder.Run(ev, benchNow)
		if gjson.GetBytes(ev, "event").String() == "Video Played" {
			if b.Mapping != "video_played" || reflect.DeepEqual(a, b) {
				t.Fatalf("event %d (Video Played) did not use the added mapping: %s / %s", i, a.Mapping, b.Mapping)
			}
			if b.Requests[0].Params[indexParam(b.Requests[0].Params, "event")].Value != "video_play" {
				t.Fatalf("event %d: %+v", i, b.Requests[0].Params)
			}
			changed++
			continue
		}
		if d := diffResults(a, b); d != "" {
			t.Fatalf("event %d changed although it is not a Video Played event:\n%s", i, d)
		}
		same++
	}
	if changed == 0 || same == 0 {
		t.Fatalf("corpus gave %d Video Played and %d other events; want both", changed, same)
	}
	t.Logf("%d Video Played events changed, %d other events identical", changed, same)
}

func indexParam(ps []mapping.Param, name string) int {
	for i, p := range ps {
		if p.Name == name {
			return i
		}
	}
	return -1
}
