package debugger

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/queue"
)

// settle waits until the folding goroutine has taken every note.
func settle(t *testing.T, d *Debugger) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(d.notes) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the debugger did not fold its notes")
		}
	}
	time.Sleep(5 * time.Millisecond) // the last note taken is folded under d.mu
	d.mu.Lock()
	d.mu.Unlock()
}

func entry(mid string) queue.Entry {
	return queue.Entry{Source: "web", MessageID: mid, Visitor: "u1", Received: time.Now(),
		Event: []byte(`{"type":"track","event":"Signed Up","userId":"u1","messageId":"` + mid + `"}`)}
}

// TestRingFollowsAnEvent: an event is queued, mapped, retried and delivered; a duplicate is
// counted on the same record; the ring keeps only the latest Events.
func TestRingFollowsAnEvent(t *testing.T) {
	d := New(Options{Events: 3})
	defer d.Close()
	req := queue.Request{Method: "GET", URL: "https://www.woopra.com/track/ce?project=p.com&event=signup&cv_id=u1"}
	d.Ingested([]queue.Entry{entry("m1")}, queue.AppendResult{Queued: 1}, nil)
	d.Ingested([]queue.Entry{entry("m1")}, queue.AppendResult{Duplicates: 1}, nil)
	d.Mapped(entry("m1"), []queue.Request{req}, "", nil)
	d.Attempted(req, destination.Attempt{Class: destination.Retry, Status: 503, RetryAfter: 2 * time.Second, Duration: time.Millisecond})
	d.Attempted(req, destination.Attempt{Class: destination.Done, Status: 200, Duration: 3 * time.Millisecond})
	d.Ingested([]queue.Entry{entry("m2")}, queue.AppendResult{Queued: 1}, nil)
	d.Mapped(entry("m2"), nil, "consent: no consent", nil)
	d.Ingested([]queue.Entry{entry("m3")}, queue.AppendResult{Queued: 1}, nil)
	d.Mapped(entry("m3"), nil, "", errors.New("no_identity: no visitor id"))
	settle(t, d)

	d.mu.Lock()
	defer d.mu.Unlock()
	got := map[string]*record{}
	for _, r := range d.records() {
		got[r.MessageID] = r
	}
	r := got["m1"]
	if r != nil {
		r.json() // a record's request details are read from its URLs when it is shown
	}
	if r == nil || r.Outcome != Delivered || r.Duplicates != 1 || len(r.Requests) != 1 || len(r.Requests[0].Attempts) != 2 {
		t.Fatalf("m1: %+v", r)
	}
	a := r.Requests[0].Attempts
	if a[0].Status != 503 || a[0].RetryAfter != "2s" || a[1].Status != 200 || r.Requests[0].Endpoint != "/track/ce" {
		t.Errorf("m1's attempts: %+v", a)
	}
	if p := r.Requests[0].Params; len(p) != 3 || p[1] != [2]string{"event", "signup"} {
		t.Errorf("m1's parameters: %v", p)
	}
	if r := got["m2"]; r.Outcome != Filtered || r.Code != "consent" || r.Reason != "no consent" {
		t.Errorf("m2: %+v", r)
	}
	if r := got["m3"]; r.Outcome != Rejected || r.Code != "no_identity" {
		t.Errorf("m3: %+v", r)
	}
	if len(d.byURL) != 0 {
		t.Errorf("answered requests are still waited for: %v", d.byURL)
	}

	d.mu.Unlock()
	d.Ingested([]queue.Entry{entry("m4")}, queue.AppendResult{Queued: 1}, nil)
	settle(t, d)
	d.mu.Lock()
	if rs := d.records(); len(rs) != 3 || rs[0].MessageID != "m2" || rs[2].MessageID != "m4" || d.byKey[key("web", "m1")] != nil {
		t.Errorf("after a fourth event the ring of 3 holds %d, first %s", len(rs), rs[0].MessageID)
	}
}

// TestTapDropsWhenFull: with the folding goroutine behind, a tap call drops its note and
// returns at once.
func TestTapDropsWhenFull(t *testing.T) {
	d := New(Options{Events: 10, NoteBuffer: 1})
	defer d.Close()
	d.mu.Lock() // the folder blocks on its first note
	start := time.Now()
	for i := range 1000 {
		d.Ingested([]queue.Entry{entry(string(rune('a' + i%26)))}, queue.AppendResult{}, nil)
	}
	elapsed := time.Since(start)
	d.mu.Unlock()
	if d.Dropped() < 990 {
		t.Errorf("dropped %d notes of 1000 with a buffer of 1", d.Dropped())
	}
	if elapsed > 2*time.Second {
		t.Errorf("1000 tap calls took %v with the folder stalled", elapsed)
	}
}

// TestPlayground: the sample compiles without findings; typos are found at their line:col.
func TestPlayground(t *testing.T) {
	mapping, err := assets.ReadFile("assets/sample-mapping.yaml")
	if err != nil {
		t.Fatal(err)
	}
	event, err := assets.ReadFile("assets/sample-event.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, from, to string
		want           string // the first finding's text starts with it; "" no finding
	}{
		{"the sample", "", "", ""},
		{"a misspelt key", "    fields:\n", "    feilds:\n", "mappings.yaml:6:5: unknown_key"},
		{"a misspelt path", "context.traits.email", "context.trait.email", "mappings.yaml:8:24: misspelt_path"},
		{"a bad expression", "int(properties", "int(properties(", "mappings.yaml:10:"},
	} {
		src := strings.Replace(string(mapping), c.from, c.to, 1)
		res := Playground(PlaygroundRequest{Event: json.RawMessage(event), PresetName: "default", Mappings: src, Settings: map[string]string{"project": "example.com"}})
		switch {
		case c.want == "" && len(res.Findings) > 0:
			t.Errorf("%s: findings %v", c.name, res.Findings)
		case c.want == "" && (res.Result == nil || res.Result.Outcome != "send" || res.Result.Mapping != "video_played"):
			t.Errorf("%s: result %+v", c.name, res.Result)
		case c.want != "" && (len(res.Findings) == 0 || !strings.HasPrefix(res.Findings[0].Text, c.want)):
			t.Errorf("%s: findings %+v, want %s", c.name, res.Findings, c.want)
		}
	}
	if res := Playground(PlaygroundRequest{Event: json.RawMessage(event), PresetName: "../../etc/passwd"}); len(res.Findings) != 1 || res.Findings[0].Code != "bad_preset" {
		t.Errorf("a preset name that is not built in: %+v", res.Findings)
	}
}
