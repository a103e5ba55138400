package debugger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
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
	//lint:ignore SA2001 a barrier: returns once the folder has released d.mu
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
	if r := got["m3"]; r.Outcome != DeadLettered || r.Stage != StageMapping || r.Code != "no_identity" {
		t.Errorf("m3: %+v", r)
	}
	if len(d.byURL) != 0 {
		t.Errorf("answered requests are still waited for: %v", d.byURL)
	}

	d.mu.Unlock()
	d.Ingested([]queue.Entry{entry("m4")}, queue.AppendResult{Queued: 1}, nil)
	settle(t, d)
	d.mu.Lock()
	if rs := d.records(); len(rs) != 3 || rs[0].MessageID != "m2" || rs[2].MessageID != "m4" || d.byKey[eventKey{"web", "m1"}] != nil {
		t.Errorf("after a fourth event the ring of 3 holds %d, first %s", len(rs), rs[0].MessageID)
	}
}

// TestDeadLettersAndReplays: an event rejected at the edge is a dead letter (as health
// counts it), one Woopra refuses is too; a replayed one moves to the top of the list and keeps
// its earlier delivery's attempts; the visitor shown is the one Woopra got.
func TestDeadLettersAndReplays(t *testing.T) {
	d := New(Options{Events: 10})
	defer d.Close()
	edge := entry("e1")
	edge.Outcome, edge.Reason, edge.Visitor = queue.Rejected, "no_identity: the event has no userId or anonymousId", "a:anon-9"
	d.Ingested([]queue.Entry{edge}, queue.AppendResult{Rejected: 1}, nil)
	first := queue.Request{Method: "GET", URL: "https://www.woopra.com/track/ce?project=p.com&event=signup&cookie=woo-cookie-1"}
	d.Ingested([]queue.Entry{entry("d1")}, queue.AppendResult{Queued: 1}, nil)
	d.Mapped(entry("d1"), []queue.Request{first}, "", nil)
	d.Attempted(first, destination.Attempt{Class: destination.Dead, Status: 403, Duration: time.Millisecond})
	d.Ingested([]queue.Entry{entry("later")}, queue.AppendResult{Queued: 1}, nil)
	settle(t, d)
	d.mu.Lock()
	r := d.byKey[eventKey{"web", "e1"}]
	var e1 map[string]any
	json.Unmarshal(r.json(), &e1)
	if r.Outcome != DeadLettered || r.Stage != StageEdge || r.Code != "no_identity" || e1["visitor"] != "anon-9" {
		t.Errorf("an edge reject: %+v, shown visitor %v", r, e1["visitor"])
	}
	r = d.byKey[eventKey{"web", "d1"}]
	if r.Outcome != DeadLettered || r.Stage != StageDelivery {
		t.Errorf("a 403: %+v", r)
	}
	later := d.byKey[eventKey{"web", "later"}].Seq
	d.mu.Unlock()

	second := queue.Request{Method: "GET", URL: "https://www.woopra.com/track/ce?project=p.com&event=signup&cookie=woo-cookie-1&cv_id=user-7",
		Headers: []queue.Header{{Name: "User-Agent", Value: "UA/1"}}}
	d.Mapped(entry("d1"), []queue.Request{second}, "", nil) // the replay
	d.Attempted(second, destination.Attempt{Class: destination.Done, Status: 200, Duration: time.Millisecond})
	settle(t, d)
	d.mu.Lock()
	defer d.mu.Unlock()
	r = d.byKey[eventKey{"web", "d1"}]
	var shown struct {
		Seq      uint64
		Visitor  string
		Earlier  []request
		Requests []request
	}
	json.Unmarshal(r.json(), &shown)
	if r.Outcome != Delivered || r.Replays != 1 || shown.Seq <= later {
		t.Errorf("the replayed event: outcome %s, replays %d, seq %d (a later event's %d): it must move to the top", r.Outcome, r.Replays, shown.Seq, later)
	}
	if len(shown.Earlier) != 1 || len(shown.Earlier[0].Attempts) != 1 || shown.Earlier[0].Attempts[0].Status != 403 {
		t.Errorf("the replayed event lost its earlier attempt: %+v", shown.Earlier)
	}
	if len(shown.Requests) != 1 || len(shown.Requests[0].Headers) != 1 || shown.Requests[0].Headers[0] != [2]string{"User-Agent", "UA/1"} {
		t.Errorf("the request's headers are not shown: %+v", shown.Requests)
	}
	if shown.Visitor != "user-7" {
		t.Errorf("the visitor shown is %q, want the cv_id Woopra got", shown.Visitor)
	}
}

// TestTapDropsWhenFull: with the folding goroutine behind, a tap call drops its note and
// returns at once.
func TestTapDropsWhenFull(t *testing.T) {
	d := New(Options{Events: 10, NoteBuffer: 1, Follow: -1})
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
	d.fmu.Lock()
	defer d.fmu.Unlock()
	if len(d.following) > 2 {
		t.Errorf("the filter follows %d events; only the 2 whose notes the folder took should be", len(d.following))
	}
}

// TestFollowBudget: past Options.Follow new events in a second, events are counted as skipped
// and their later tap calls leave no trace but the health view's count of attempts.
func TestFollowBudget(t *testing.T) {
	d := New(Options{Events: 100, Follow: 10})
	defer d.Close()
	var batch []queue.Entry
	reqOf := map[string]queue.Request{}
	for i := range 30 {
		e := entry(fmt.Sprint("m", i))
		batch = append(batch, e)
		reqOf[e.MessageID] = queue.Request{Method: "GET", URL: fmt.Sprint("https://www.woopra.com/track/ce?project=p.com&event=e&cv_id=u", i)}
	}
	d.Ingested(batch, queue.AppendResult{Queued: 30}, nil) // one call: one second's budget
	if got := d.Skipped(); got != 20 {
		t.Fatalf("skipped %d of 30 events with a budget of 10", got)
	}
	settle(t, d)
	d.mu.Lock()
	followed := map[string]bool{}
	for _, r := range d.records() {
		followed[r.MessageID] = true
	}
	d.mu.Unlock()
	if len(followed) != 10 {
		t.Fatalf("%d records for 10 followed events", len(followed))
	}
	// Attempts at the requests of events not followed: counted by health, no record.
	for _, e := range batch {
		if !followed[e.MessageID] {
			d.Attempted(reqOf[e.MessageID], destination.Attempt{Class: destination.Done, Status: 200})
		}
	}
	for _, e := range batch {
		if followed[e.MessageID] {
			d.Mapped(e, []queue.Request{reqOf[e.MessageID]}, "", nil)
			d.Attempted(reqOf[e.MessageID], destination.Attempt{Class: destination.Done, Status: 200})
		}
	}
	settle(t, d)
	d.mu.Lock()
	rs := d.records()
	d.mu.Unlock()
	if len(rs) != 10 {
		t.Errorf("%d records after the attempts; want the 10 followed", len(rs))
	}
	for _, r := range rs {
		if r.Outcome != Delivered {
			t.Errorf("%s: %s, want delivered", r.MessageID, r.Outcome)
		}
	}
	d.hmu.Lock()
	attempts := 0
	for _, b := range d.health.buckets {
		attempts += b.Attempts
	}
	d.hmu.Unlock()
	if attempts != 30 {
		t.Errorf("health counted %d attempts of 30", attempts)
	}
	d.fmu.Lock()
	defer d.fmu.Unlock()
	if len(d.awaiting) != 0 || len(d.following) != 10 {
		t.Errorf("filter: %d requests awaited (want 0), %d events followed (want 10)", len(d.awaiting), len(d.following))
	}
}

// TestFilterFollowsTheRing: the follow filter holds the events of the ring and the requests
// still awaited, no more, as records are evicted.
func TestFilterFollowsTheRing(t *testing.T) {
	d := New(Options{Events: 5, Follow: -1})
	defer d.Close()
	for i := range 20 {
		e := entry(fmt.Sprint("m", i))
		req := queue.Request{Method: "GET", URL: fmt.Sprint("https://www.woopra.com/track/ce?project=p.com&event=e&n=", i)}
		d.Ingested([]queue.Entry{e}, queue.AppendResult{Queued: 1}, nil)
		d.Mapped(e, []queue.Request{req}, "", nil)
		if i%2 == 0 {
			d.Attempted(req, destination.Attempt{Class: destination.Done, Status: 200})
		}
		settle(t, d)
	}
	d.mu.Lock()
	waiting := 0
	for _, r := range d.records() {
		for _, q := range r.Requests {
			if !q.Done {
				waiting++
			}
		}
	}
	d.mu.Unlock()
	d.fmu.Lock()
	defer d.fmu.Unlock()
	if len(d.following) != 5 || len(d.awaiting) != waiting || waiting != 3 {
		t.Errorf("filter: %d events followed (want the ring's 5), %d requests awaited (want %d, the ring's unanswered m15, m17, m19)", len(d.following), len(d.awaiting), waiting)
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

// TestHealthReadWhileAttemptsFail: the health view is read (and encoded) while delivery
// workers count failed attempts into the same second; run with -race.
func TestHealthReadWhileAttemptsFail(t *testing.T) {
	d := New(Options{})
	defer d.Close()
	e := echo.New()
	d.Mount(e, func(next echo.HandlerFunc) echo.HandlerFunc { return next }, func(c echo.Context) error { return nil })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			req := queue.Request{Method: "GET", URL: fmt.Sprint("https://www.woopra.com/track/ce?n=", w)}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				d.Attempted(req, destination.Attempt{Class: destination.Retry, Status: 500 + i%4})
			}
		})
	}
	var errs int
	// 200 reads, and on until the workers (which a loaded machine may start late) have
	// counted a failure.
	for i, deadline := 0, time.Now().Add(10*time.Second); i < 200 || errs == 0 && time.Now().Before(deadline); i++ {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("GET", "/debugger/api/health", nil))
		var h struct {
			Series []struct {
				Attempts int            `json:"attempts"`
				Errors   map[string]int `json:"errors"`
			} `json:"series"`
		}
		if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &h) != nil {
			t.Fatalf("GET /debugger/api/health: %d %s", rec.Code, rec.Body)
		}
		for _, b := range h.Series {
			for _, n := range b.Errors {
				errs += n
			}
		}
	}
	close(stop)
	wg.Wait()
	if errs == 0 {
		t.Error("the health view counted no failed attempt")
	}
}

// TestPlaygroundRunawayExpression: an expression that would build a 2^40-byte string is
// stopped by the evaluation limits in the playground too: the event is rejected with
// expression_error, and the finding points at the construct.
func TestPlaygroundRunawayExpression(t *testing.T) {
	src := `kind: mappings
mappings:
  - name: poison
    when: type == "track"
    endpoint: ce
    fields:
      event: {path: event}
      ce_size: {expr: 'len(reduce(1..40, #acc + #acc, "a"))'}
`
	res := Playground(PlaygroundRequest{Event: json.RawMessage(`{"type":"track","event":"e","userId":"u1"}`), PresetName: "default",
		Mappings: src, Settings: map[string]string{"project": "example.com"}})
	if res.Result == nil || res.Result.Outcome != "rejected" || res.Result.Code != "expression_error" || !strings.Contains(res.Result.Error, "expression limit") {
		t.Fatalf("result %+v, want rejected expression_error with an expression limit", res.Result)
	}
	found := false
	for _, f := range res.Findings {
		found = found || (f.Code == "unbounded_expression" && f.Line == 8)
	}
	if !found {
		t.Errorf("findings %+v lack unbounded_expression at line 8", res.Findings)
	}
}

// TestFavicon: /favicon.ico is an icon (it was a 404 in every browser tab), with the debugger
// on and off.
func TestFavicon(t *testing.T) {
	pass := func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	d := New(Options{Events: 10})
	defer d.Close()
	on, off := echo.New(), echo.New()
	d.Mount(on, pass, func(c echo.Context) error { return nil })
	MountOff(off, pass)
	for name, e := range map[string]*echo.Echo{"on": on, "off": off} {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest("GET", "/favicon.ico", nil))
		b := rec.Body.Bytes()
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "image/x-icon" || len(b) < 22 || b[2] != 1 || b[4] != 1 {
			t.Fatalf("debugger %s: /favicon.ico answered %d %s (%d bytes)", name, rec.Code, rec.Header().Get("Content-Type"), len(b))
		}
		if _, err := png.Decode(bytes.NewReader(b[22:])); err != nil {
			t.Errorf("debugger %s: the icon's image is not a PNG: %v", name, err)
		}
	}
}
