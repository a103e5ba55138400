package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// The edge's answers to the faults of a hostile or careless client: bodies that dribble in,
// clients that hang up before the answer, and events whose fields are not what SDKs send.

// serveReal serves s on a loopback listener and returns its base URL.
func serveReal(t *testing.T, s *Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return "http://" + l.Addr().String()
}

// metricsText returns what /metrics serves.
func metricsText(t *testing.T, s *Server) string {
	t.Helper()
	return do(t, s, req{method: "GET", path: "/metrics"}).Body.String()
}

// slowBody opens a connection to addr and sends the head of a POST whose body is never
// finished; it dribbles a byte every interval until the connection fails or stop is closed.
// It returns the answer the server wrote ("" when none) on done.
func slowBody(t *testing.T, addr, path, header string, interval time.Duration, stop <-chan struct{}) <-chan string {
	done := make(chan string, 1)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Error(err)
		done <- ""
		return done
	}
	head := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n" + header + "\r\n{\"batch\":["
	if _, err := c.Write([]byte(head)); err != nil {
		t.Error(err)
	}
	answer := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c)
		answer <- string(b)
	}()
	go func() {
		defer c.Close()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case a := <-answer:
				done <- a
				return
			case <-stop:
				done <- ""
				return
			case <-tick.C:
				if _, err := c.Write([]byte(" ")); err != nil {
					done <- <-answer
					return
				}
			}
		}
	}()
	return done
}

// TestSlowBodiesCannotHoldKeyedSlots: clients without a write key header that dribble their
// bodies fill only the slots of unauthenticated reads; a client with a good key in its
// header is admitted, the slow ones are cut off by the body deadline with 503 body_timeout, and once they
// are gone a client with the key in its body is admitted again.
func TestSlowBodiesCannotHoldKeyedSlots(t *testing.T) {
	s, st := newTest(t, func(o *Options) {
		o.MaxInFlight, o.MaxUnauthenticated = 4, 4
		o.Timeouts = Timeouts{Body: 1500 * time.Millisecond}
	})
	url := serveReal(t, s)
	addr := strings.TrimPrefix(url, "http://")
	stop := make(chan struct{})
	defer close(stop)
	const slow = 12 // three times both caps
	var answers []<-chan string
	for i := 0; i < slow; i++ {
		answers = append(answers, slowBody(t, addr, "/v1/batch", "", 100*time.Millisecond, stop))
	}
	// Wait until the unauthenticated slots are full: a body-key request is refused.
	bodyKeyed := `{"writeKey":"` + keyWeb + `","batch":[{"type":"track","event":"A","anonymousId":"a-1"}]}`
	post := func(body string, auth bool) (int, string) {
		r, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(body))
		if auth {
			r.SetBasicAuth(keyWeb, "")
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, body := post(bodyKeyed, false)
		if status == 503 {
			if !strings.Contains(body, "overloaded") {
				t.Errorf("a full unauthenticated pool answered %d %s", status, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slow clients never filled the unauthenticated slots (last answer %d %s)", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A keyed client is admitted while they dribble.
	for i := 0; i < 3; i++ {
		if status, body := post(smallBatch, true); status != 200 {
			t.Fatalf("a keyed request while slow bodies hold the unauthenticated slots: %d %s", status, body)
		}
	}
	// The body deadline cuts every slow client off: body_timeout for those that were being
	// read, overloaded for those refused at once (the server stops waiting for their bodies
	// too); both 503 with Retry-After.
	cut := 0
	for i, a := range answers {
		select {
		case ans := <-a:
			if !strings.HasPrefix(ans, "HTTP/1.1 503 ") || !strings.Contains(ans, "Retry-After: 5") {
				t.Errorf("slow client %d was answered %q, want 503 with Retry-After", i, ans)
			}
			switch {
			case strings.Contains(ans, `"code":"body_timeout"`):
				cut++
			case strings.Contains(ans, `"code":"overloaded"`):
			default:
				t.Errorf("slow client %d was answered %q, want body_timeout or overloaded", i, ans)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("slow client %d was not cut off 20 s after the 1.5 s body deadline", i)
		}
	}
	if cut < 4 {
		t.Errorf("%d slow clients were answered body_timeout; want at least the 4 being read", cut)
	}
	// Recovery: a body-key request is admitted again, without a restart.
	if status, body := post(bodyKeyed, false); status != 200 {
		t.Errorf("after the slow clients left, a body-key request got %d %s", status, body)
	}
	if n := len(st.all()); n != 3*3+1 {
		t.Errorf("stored %d events; want the 10 acknowledged", n)
	}
	m := metricsText(t, s)
	if !strings.Contains(m, `woorelay_ingest_requests_total{outcome="body_timeout",route="/v1/batch",source=""} `+fmt.Sprint(cut)) {
		t.Errorf("metrics do not count %d body_timeout requests:\n%s", cut, grepLines(m, "requests_total"))
	}
}

// TestSlowKeyedBodyReleasesItsSlot: a keyed client that dribbles its body holds its slot only
// until the body deadline.
func TestSlowKeyedBodyReleasesItsSlot(t *testing.T) {
	s, _ := newTest(t, func(o *Options) {
		o.MaxInFlight = 1
		o.Timeouts = Timeouts{Body: 500 * time.Millisecond}
	})
	url := serveReal(t, s)
	stop := make(chan struct{})
	defer close(stop)
	a := slowBody(t, strings.TrimPrefix(url, "http://"), "/v1/batch", "Authorization: "+basic(keyWeb)+"\r\n", 100*time.Millisecond, stop)
	select {
	case ans := <-a:
		if !strings.HasPrefix(ans, "HTTP/1.1 503 ") || !strings.Contains(ans, `"code":"body_timeout"`) {
			t.Errorf("the slow keyed client was answered %q, want 503 body_timeout", ans)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the slow keyed client was not cut off")
	}
	r, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(smallBatch))
	r.SetBasicAuth(keyWeb, "")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after the slow client's deadline, a keyed request got %d", resp.StatusCode)
	}
}

// ctxStore is a Store that honours its context as the disk queue does: when ctx ends before
// the store commits, nothing is stored and ctx's error is returned.
type ctxStore struct {
	memStore
	wait chan struct{} // Append waits for it, or for ctx
}

func (c *ctxStore) Append(ctx context.Context, entries []queue.Entry) (queue.AppendResult, error) {
	c.entered <- struct{}{}
	select {
	case <-c.wait:
	case <-ctx.Done():
		return queue.AppendResult{}, ctx.Err()
	}
	return c.memStore.Append(ctx, entries)
}

// TestHangUpIsNotAStoreFailure: a client that hangs up while its events are being stored is
// counted client_closed; the append is finished, not abandoned, and its events counted queued.
func TestHangUpIsNotAStoreFailure(t *testing.T) {
	st := &ctxStore{wait: make(chan struct{})}
	st.entered = make(chan struct{}, 1)
	s, _ := newTest(t, func(o *Options) { o.Store = st })
	url := serveReal(t, s)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: %d\r\n\r\n%s", basic(keyWeb), len(smallBatch), smallBatch)
	<-st.entered
	c.Close() // the browser navigates away
	time.Sleep(200 * time.Millisecond)
	close(st.wait)
	want := []string{
		`woorelay_ingest_requests_total{outcome="client_closed",route="/v1/batch",source="website"} 1`,
		`woorelay_ingest_events_total{outcome="queued",route="/v1/batch",source="website"} 3`,
	}
	var m string
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = metricsText(t, s)
		if strings.Contains(m, "woorelay_ingest_requests_total{") || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, w := range want {
		if !strings.Contains(m, w) {
			t.Errorf("metrics lack %s:\n%s", w, grepLines(m, "woorelay_ingest_"))
		}
	}
	if n := len(st.all()); n != 3 {
		t.Errorf("stored %d events of the hung-up request; want 3", n)
	}
}

// TestHangUpDuringBody: a client that hangs up before its body arrived is counted
// client_closed, not as a malformed body.
func TestHangUpDuringBody(t *testing.T) {
	s, st := newTest(t, nil)
	url := serveReal(t, s)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 1000\r\n\r\n{\"batch\":[", basic(keyWeb))
	time.Sleep(100 * time.Millisecond)
	c.Close()
	want := `woorelay_ingest_requests_total{outcome="client_closed",route="/v1/batch",source="website"} 1`
	deadline := time.Now().Add(10 * time.Second)
	for m := metricsText(t, s); !strings.Contains(m, want); m = metricsText(t, s) {
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %s:\n%s", want, grepLines(m, "requests_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(st.all()) != 0 {
		t.Error("stored part of a body")
	}
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBatchKindMessages: a "batch" that is not an array is named for what it is.
func TestBatchKindMessages(t *testing.T) {
	for body, kind := range map[string]string{
		`{"batch":{}}`:        "a JSON object",
		`{"batch":{"a":1}}`:   "a JSON object",
		`{"batch":"x"}`:       "a JSON string",
		`{"batch":3}`:         "a JSON number",
		`{"batch":null}`:      "a JSON literal",
		`{"batch":[1]}`:       "a JSON number",
		`{"batch":[{}, {}]}`:  "",
		`{"batch":[[], {}]}`:  "a JSON array",
		`{"batch":[{"a":1}]}`: "",
	} {
		s, _ := newTest(t, nil)
		rec := do(t, s, req{path: "/v1/batch", body: body, headers: map[string]string{"Authorization": basic(keyWeb)}})
		if kind == "" {
			continue
		}
		code, msg := errBody(t, rec)
		if rec.Code != 400 || !strings.Contains(msg, " is "+kind+";") {
			t.Errorf("%s: got %d %s %q; want it called %s", body, rec.Code, code, msg, kind)
		}
	}
	s, _ := newTest(t, nil)
	rec := do(t, s, req{path: "/v1/track", body: `{}`, headers: map[string]string{"Authorization": basic(keyWeb)}})
	if rec.Code != 400 {
		t.Errorf("an empty single event: %d", rec.Code)
	}
	rec = do(t, s, req{path: "/v1/track", body: `[{}]`, headers: map[string]string{"Authorization": basic(keyWeb)}})
	if _, msg := errBody(t, rec); !strings.Contains(msg, "a JSON array") {
		t.Errorf("an array body: %q", msg)
	}
}

// TestMessageIDText: a messageId that is a number is kept as its text (so an SDK's retry is
// deduplicated); one that is not a string nor a number is replaced.
func TestMessageIDText(t *testing.T) {
	cases := []struct{ raw, want string }{
		{`"m-1"`, "m-1"},
		{`12345`, "12345"},
		{`-1.5e3`, "-1.5e3"},
		{`""`, "gen-1"},
		{`null`, "gen-1"},
		{`true`, "gen-1"},
		{`{"a":1}`, "gen-1"},
	}
	for _, tc := range cases {
		for _, path := range []string{"/v1/batch", "/v1/track"} {
			s, st := newTest(t, nil)
			ev := `{"type":"track","event":"E","anonymousId":"a","messageId":` + tc.raw + `}`
			body := ev
			if path == "/v1/batch" {
				body = `{"batch":[` + ev + `]}`
			}
			rec := do(t, s, req{path: path, body: body, headers: map[string]string{"Authorization": basic(keyWeb)}})
			if rec.Code != 200 {
				t.Fatalf("%s %s: %d %s", path, tc.raw, rec.Code, rec.Body)
			}
			e := st.all()[0]
			var got map[string]any
			if err := json.Unmarshal(e.Event, &got); err != nil {
				t.Fatal(err)
			}
			if e.MessageID != tc.want || got["messageId"] != tc.want {
				t.Errorf("%s messageId %s: entry %q, stored event %#v; want %q in both", path, tc.raw, e.MessageID, got["messageId"], tc.want)
			}
			if n := strings.Count(string(e.Event), `"messageId"`); n != 1 {
				t.Errorf("%s messageId %s: the stored event has %d messageId members: %s", path, tc.raw, n, e.Event)
			}
		}
	}
}

// TestUnknownType: a batch element whose type is not one of the six calls is quarantined as
// a dead letter with unknown_type, and listed in the answer.
func TestUnknownType(t *testing.T) {
	s, st := newTest(t, nil)
	body := `{"batch":[{"type":"track","event":"A","anonymousId":"a"},{"type":"trak","event":"B","anonymousId":"a"},{"type":7,"anonymousId":"a"}]}`
	rec := do(t, s, req{path: "/v1/batch", body: body, headers: map[string]string{"Authorization": basic(keyWeb)}})
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	var ans struct {
		Success  bool
		Rejected []rejection
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatal(err)
	}
	if len(ans.Rejected) != 2 || ans.Rejected[0].Index != 1 || ans.Rejected[0].Code != "unknown_type" || !strings.Contains(ans.Rejected[0].Message, `"trak"`) ||
		ans.Rejected[1].Index != 2 || ans.Rejected[1].Code != "missing_type" {
		t.Errorf("answer %s", rec.Body)
	}
	es := st.all()
	if len(es) != 3 || es[0].Outcome != queue.Deliver || es[1].Outcome != queue.Rejected || !strings.HasPrefix(es[1].Reason, "unknown_type: ") {
		t.Fatalf("entries %+v", es)
	}
	for _, typ := range []string{"track", "identify", "page", "screen", "group", "alias"} {
		s, st := newTest(t, nil)
		do(t, s, req{path: "/v1/batch", body: `{"batch":[{"type":"` + typ + `","userId":"u"}]}`, headers: map[string]string{"Authorization": basic(keyWeb)}})
		if es := st.all(); len(es) != 1 || es[0].Outcome != queue.Deliver {
			t.Errorf("type %s: %+v", typ, es)
		}
	}
}

// TestTimestampBounds: an event time the mapping would read as before 2000 or more than 366
// days after receivedAt (2026-05-01T12:00:00Z) is replaced by receivedAt; the client's value
// stays in originalTimestamp and the answer says so.
func TestTimestampBounds(t *testing.T) {
	cases := []struct {
		name, fields string
		clamped      bool
		timestamp    any
	}{
		{"a huge negative epoch", `"timestamp":-99999999999999999`, true, nil},
		{"epoch zero", `"timestamp":0`, true, nil},
		{"Go's zero time", `"timestamp":"0001-01-01T00:00:00Z"`, true, nil},
		{"a huge positive epoch", `"timestamp":99999999999999999`, true, nil},
		{"the year 9999", `"originalTimestamp":"9999-01-01T00:00:00Z"`, true, nil},
		{"a 2001 import", `"timestamp":"2001-02-03T04:05:06Z"`, false, "2001-02-03T04:05:06Z"},
		{"an epoch in ms", `"timestamp":1777629600000`, false, 1777629600000.0},
		{"next month", `"timestamp":"2026-06-01T00:00:00Z"`, false, "2026-06-01T00:00:00Z"},
		{"not a time: left to the mapping", `"timestamp":"last tuesday"`, false, "last tuesday"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/v1/track", "/v1/batch"} {
				s, st := newTest(t, nil)
				ev := `{"type":"track","event":"E","anonymousId":"a",` + tc.fields + `}`
				body := ev
				if path == "/v1/batch" {
					body = `{"batch":[` + ev + `]}`
				}
				rec := do(t, s, req{path: path, body: body, headers: map[string]string{"Authorization": basic(keyWeb)}})
				if rec.Code != 200 {
					t.Fatalf("%s: got %d %s", path, rec.Code, rec.Body)
				}
				got := eventsOf(t, st.all())[0]
				want := tc.timestamp
				if tc.clamped {
					want = "2026-05-01T12:00:00.000Z"
				}
				if got["timestamp"] != want {
					t.Errorf("%s: timestamp %#v; want %#v", path, got["timestamp"], want)
				}
				listed := strings.Contains(rec.Body.String(), `"adjusted":[{"index":0,"code":"timestamp_out_of_range"`)
				if listed != tc.clamped {
					t.Errorf("%s: answer %s; want timestamp_out_of_range listed: %v", path, rec.Body, tc.clamped)
				}
				if tc.clamped && st.all()[0].Outcome != queue.Deliver {
					t.Errorf("%s: a clamped event is %s; want it delivered", path, st.all()[0].Outcome)
				}
			}
		})
	}
	// The clamp is counted.
	s, _ := newTest(t, nil)
	do(t, s, req{path: "/v1/track", body: `{"event":"E","anonymousId":"a","timestamp":-99999999999999999}`, headers: map[string]string{"Authorization": basic(keyWeb)}})
	if m := metricsText(t, s); !strings.Contains(m, `woorelay_ingest_timestamps_clamped_total{route="/v1/track",source="website"} 1`) {
		t.Errorf("metrics lack the clamp:\n%s", grepLines(m, "clamped"))
	}
}
