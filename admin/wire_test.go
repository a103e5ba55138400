package admin

import (
	"testing"

	"github.com/woorelay/woorelay/queue"
)

// TestDeadLetterNamesItsEvent: a dead letter's list form says which event it is.
func TestDeadLetterNamesItsEvent(t *testing.T) {
	for ev, want := range map[string][2]string{
		`{"type":"track","event":"Signed Up"}`: {"track", "Signed Up"},
		`{"type":"page","name":"Pricing"}`:     {"page", "Pricing"},
		`not json`:                             {"", ""},
	} {
		d := DeadLetterOf(queue.DeadLetter{Entry: queue.Entry{Event: []byte(ev)}}, false)
		if d.Type != want[0] || d.Name != want[1] {
			t.Errorf("%s: type %q name %q, want %v", ev, d.Type, d.Name, want)
		}
	}
}
