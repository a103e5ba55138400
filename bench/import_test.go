package bench

import (
	"strings"
	"testing"
)

// The import stage runs and measures both sides: an archive imported into a relay and the drain
// of as many events, in the same round.
func TestImportStageSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relays")
	}
	o := Options{Rounds: 1, Conns: 4, Backlog: 2000}
	r, err := benchImport(o)
	if err != nil {
		t.Fatal(err)
	}
	if r.Stage != "import" || r.Ours <= 0 || r.Ceiling <= 0 || r.Ratio <= 0 || r.CPUPerEvent <= 0 || r.CeilCPUPerEvent <= 0 || !strings.Contains(r.Note, "2,000 events") {
		t.Errorf("import measured nothing: %+v", r)
	}
	if got, _ := ParseStages("import,drain"); strings.Join(got, ",") != "drain,import" {
		t.Errorf("ParseStages(import,drain) = %v", got)
	}
}
