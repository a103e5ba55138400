package presets

import (
	"testing"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/presets/ceiling"
)

// maxAllocsPerEvent is the acceptance bound of the engine's reuse path on the corpus.
const maxAllocsPerEvent = 2

// TestRunIntoAllocs fails when the engine's reuse path (Program.RunInto with one Result for
// every event) allocates more than maxAllocsPerEvent times per event, on average over corpus
// events. The count is deterministic: it depends on the events, not on timing. The sent
// event's one string is one of them; gjson's unescaping of strings with escapes, which the
// ceiling pays too, makes most of the rest.
func TestRunIntoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items at random, so allocations are not deterministic")
	}
	prog := loadDefault(t)
	c := ceiling.New()
	events := benchCorpus()[:400]
	var res mapping.Result
	mapAll := func(run func(*mapping.Result, []byte)) func() {
		return func() {
			for _, ev := range events {
				run(&res, ev)
				if res.Outcome != mapping.Send {
					t.Fatalf("a corpus event was not sent: %+v", res)
				}
			}
		}
	}
	engine := mapAll(func(dst *mapping.Result, ev []byte) { prog.RunInto(dst, ev, benchNow) })
	ceil := mapAll(func(dst *mapping.Result, ev []byte) { c.RunInto(dst, ev, benchNow) })
	engine() // grow the scratch buffers and the Result's slices
	perEvent := testing.AllocsPerRun(5, engine) / float64(len(events))
	res = mapping.Result{}
	ceil()
	ceilPerEvent := testing.AllocsPerRun(5, ceil) / float64(len(events))
	t.Logf("allocations per event on the reuse path: engine %.2f, ceiling %.2f", perEvent, ceilPerEvent)
	if perEvent > maxAllocsPerEvent {
		t.Errorf("the engine's RunInto allocates %.2f times per event, want at most %d", perEvent, maxAllocsPerEvent)
	}
}
