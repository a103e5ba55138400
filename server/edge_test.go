package server

import (
	"bytes"
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestNormaliseGolden sends a batch with a wrapper context, integrations and sentAt, and
// events in every SDK's shape, and compares the stored events with a golden file.
func TestNormaliseGolden(t *testing.T) {
	s, st := newTest(t, nil)
	body, err := os.ReadFile("testdata/normalise_batch.json")
	if err != nil {
		t.Fatal(err)
	}
	rec := do(t, s, req{path: "/v1/batch", body: string(body), headers: map[string]string{"Authorization": basic(keyWeb), "SentAt": "2026-05-01T11:00:00Z"}})
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	var got bytes.Buffer
	got.WriteString("# answer: " + rec.Body.String() + "\n")
	for _, e := range st.all() {
		got.WriteString("# " + e.Outcome.String() + " " + e.MessageID + " " + e.Reason + "\n")
		got.Write(e.Event)
		got.WriteByte('\n')
	}
	checkGolden(t, "testdata/normalise.golden", got.Bytes())
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./server -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./server -run %s -update rewrites it)\ngot:\n%s\nwant:\n%s", path, t.Name(), got, want)
	}
}

// TestTimestamps checks the clock-skew correction timestamp = receivedAt − (sentAt −
// originalTimestamp), and where it does not apply. receivedAt is 2026-05-01T12:00:00Z.
func TestTimestamps(t *testing.T) {
	cases := []struct {
		name, path, body, header string
		timestamp, original      any
	}{
		{"Segment: timestamp and the event's sentAt", "/v1/t",
			`{"anonymousId":"a","event":"E","timestamp":"2026-05-01T10:00:00Z","sentAt":"2026-05-01T10:00:10Z"}`, "",
			"2026-05-01T11:59:50.000Z", "2026-05-01T10:00:00Z"},
		{"Segment: the wrapper's sentAt (analytics-node, analytics-go)", "/v1/batch",
			`{"sentAt":"2026-05-01T10:00:30.500+02:00","batch":[{"type":"track","anonymousId":"a","event":"E","timestamp":"2026-05-01T10:00:00+02:00"}]}`, "",
			"2026-05-01T11:59:29.500Z", "2026-05-01T10:00:00+02:00"},
		{"RudderStack: originalTimestamp and sentAt", "/v1/batch",
			`{"batch":[{"type":"track","anonymousId":"a","event":"E","originalTimestamp":"2026-05-01T10:00:00.000Z","sentAt":"2026-05-01T10:01:00.000Z"}]}`, "",
			"2026-05-01T11:59:00.000Z", "2026-05-01T10:00:00.000Z"},
		{"the SentAt header (analytics-js xhr)", "/v1/track",
			`{"anonymousId":"a","event":"E","originalTimestamp":"2026-05-01T10:00:00Z"}`, "2026-05-01T10:00:05Z",
			"2026-05-01T11:59:55.000Z", "2026-05-01T10:00:00Z"},
		{"no sentAt: a historical import keeps its timestamp", "/v1/track",
			`{"anonymousId":"a","event":"E","timestamp":"2025-01-01T00:00:00Z"}`, "",
			"2025-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"timestamp and originalTimestamp both given: timestamp kept", "/v1/track",
			`{"anonymousId":"a","event":"E","timestamp":"2026-04-01T00:00:00Z","originalTimestamp":"2026-03-01T00:00:00Z","sentAt":"2026-05-01T10:00:10Z"}`, "",
			"2026-04-01T00:00:00Z", "2026-03-01T00:00:00Z"},
		{"no time at all: receivedAt", "/v1/track", `{"anonymousId":"a","event":"E"}`, "",
			"2026-05-01T12:00:00.000Z", nil},
		{"unparsable sentAt: no correction", "/v1/track",
			`{"anonymousId":"a","event":"E","timestamp":"2026-05-01T10:00:00Z","sentAt":"yesterday"}`, "",
			"2026-05-01T10:00:00Z", "2026-05-01T10:00:00Z"},
		{"epoch timestamp: kept", "/v1/track", `{"anonymousId":"a","event":"E","timestamp":1777629600000,"sentAt":"2026-05-01T10:00:10Z"}`, "",
			1777629600000.0, 1777629600000.0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newTest(t, nil)
			h := map[string]string{"Authorization": basic(keyWeb)}
			if tc.header != "" {
				h["SentAt"] = tc.header
			}
			rec := do(t, s, req{path: tc.path, body: tc.body, headers: h})
			if rec.Code != 200 {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			ev := eventsOf(t, st.all())[0]
			if ev["timestamp"] != tc.timestamp || ev["originalTimestamp"] != tc.original {
				t.Errorf("timestamp %v, originalTimestamp %v; want %v, %v", ev["timestamp"], ev["originalTimestamp"], tc.timestamp, tc.original)
			}
			if ev["receivedAt"] != "2026-05-01T12:00:00.000Z" {
				t.Errorf("receivedAt %v", ev["receivedAt"])
			}
		})
	}
}

// TestMissingIDs: a single event without userId and anonymousId is refused with 400; inside a
// batch it is quarantined (a dead letter) and the rest accepted.
func TestMissingIDs(t *testing.T) {
	ids := []struct {
		name, ids string
		ok        bool
	}{
		{"anonymousId", `"anonymousId":"a"`, true},
		{"userId", `"userId":"u"`, true},
		{"numeric userId", `"userId":42`, true},
		{"empty userId, anonymousId", `"userId":"","anonymousId":"a"`, true},
		{"null userId, anonymousId", `"userId":null,"anonymousId":"a"`, true},
		{"neither", ``, false},
		{"both empty", `"userId":"","anonymousId":""`, false},
		{"both null", `"userId":null,"anonymousId":null`, false},
	}
	for _, tc := range ids {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newTest(t, nil)
			sep := ","
			if tc.ids == "" {
				sep = ""
			}
			ev := `{"event":"E"` + sep + tc.ids + `}`
			rec := do(t, s, req{path: "/v1/track", body: ev, headers: map[string]string{"Authorization": basic(keyWeb)}})
			if tc.ok != (rec.Code == 200) {
				t.Fatalf("single event: got %d %s", rec.Code, rec.Body)
			}
			if !tc.ok {
				if code, msg := errBody(t, rec); rec.Code != 400 || code != "missing_id" || !strings.Contains(msg, "neither userId nor anonymousId") {
					t.Errorf("got %d %s %s", rec.Code, code, msg)
				}
				if len(st.all()) != 0 {
					t.Error("stored a refused event")
				}
			}

			s, st = newTest(t, nil)
			batch := `{"batch":[{"type":"track","event":"A","anonymousId":"a"},{"type":"track","event":"E"` + sep + tc.ids + `}]}`
			rec = do(t, s, req{path: "/v1/batch", body: batch, headers: map[string]string{"Authorization": basic(keyWeb)}})
			es := st.all()
			if rec.Code != 200 || len(es) != 2 {
				t.Fatalf("batch: got %d %s, stored %d", rec.Code, rec.Body, len(es))
			}
			if tc.ok {
				if es[1].Outcome != queue.Deliver || rec.Body.String() != `{"success":true}` {
					t.Errorf("got %s %s", es[1].Outcome, rec.Body)
				}
				return
			}
			if es[0].Outcome != queue.Deliver || es[1].Outcome != queue.Rejected || !strings.HasPrefix(es[1].Reason, "missing_id: ") {
				t.Errorf("entries: %s, %s %q", es[0].Outcome, es[1].Outcome, es[1].Reason)
			}
			want := `{"success":true,"rejected":[{"index":1,"code":"missing_id","message":"the event has neither userId nor anonymousId; set anonymousId (or userId once the user is known)"}]}`
			if rec.Body.String() != want {
				t.Errorf("answer %s", rec.Body)
			}
		})
	}
}

// TestOutcomes checks how mapping results become entries: Send → Deliver with the visitor
// key and requests, Skipped → Filtered, Rejected → Rejected with "code: message".
func TestOutcomes(t *testing.T) {
	s, st := newTest(t, nil)
	body := `{"batch":[
	 {"type":"track","event":"Order Completed","userId":"u-1","anonymousId":"a-1","properties":{"revenue":5},"context":{"userAgent":"UA/1.0"}},
	 {"type":"group","groupId":"g","anonymousId":"a-1"},
	 {"type":"track","event":"Late","anonymousId":"a-2","timestamp":"2027-01-01T00:00:00Z"},
	 {"type":"track","event":"Account Created","anonymousId":"a-3","properties":{"plan":"pro"}}
	]}`
	rec := do(t, s, req{path: "/v1/batch", body: body, headers: map[string]string{"Authorization": basic(keyWeb)}})
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	es := st.all()
	if len(es) != 4 {
		t.Fatalf("stored %d", len(es))
	}
	// Ingest stores the events unmapped, each with its ordering key.
	for i, want := range []string{"u:u-1", "a:a-1", "a:a-2", "a:a-3"} {
		if e := es[i]; e.Outcome != queue.Deliver || e.Visitor != want || e.Requests != nil {
			t.Errorf("stored entry %d: outcome %v visitor %q requests %v; want deliver, %q, none", i, e.Outcome, e.Visitor, e.Requests, want)
		}
	}
	if strings.Contains(rec.Body.String(), "rejected") {
		t.Errorf("mapping outcomes are decided at delivery, yet the answer lists rejections: %s", rec.Body)
	}
	// Delivery maps them with the source's program.
	var src *Source
	for _, x := range s.keys.Load().sources {
		if x.Name == "website" {
			src = x
		}
	}
	var res mapping.Result
	for i := range es {
		src.Map(&res, &es[i])
	}
	d := es[0]
	if d.Outcome != queue.Deliver || d.Visitor != "u:u-1" || d.MessageID != "gen-1" || !d.Received.Equal(testNow) || len(d.Requests) != 1 {
		t.Errorf("deliver entry: %+v", d)
	}
	if r := d.Requests[0]; r.Method != "GET" || !strings.HasPrefix(r.URL, "https://www.woopra.com/track/ce?project=example.com") || len(r.Headers) != 1 || r.Headers[0] != (queue.Header{Name: "User-Agent", Value: "UA/1.0"}) {
		t.Errorf("request: %+v", r)
	}
	if param(t, d, "event") != "purchase" || param(t, d, "ce_app") != "web" {
		t.Errorf("url %s", d.Requests[0].URL)
	}
	if f := es[1]; f.Outcome != queue.Filtered || !strings.Contains(f.Reason, "group calls") || f.Requests != nil {
		t.Errorf("filtered entry: %+v", f)
	}
	if r := es[2]; r.Outcome != queue.Rejected || !strings.HasPrefix(r.Reason, "timestamp_in_future: ") {
		t.Errorf("rejected entry: %+v", r)
	}
	if param(t, es[3], "event") != "signup" || param(t, es[3], "ce_plan") != "pro" {
		t.Errorf("the source's mapping folder did not apply: %s", es[3].Requests[0].URL)
	}
	// Mapping again (a replay) gives the same result.
	again := es[0]
	src.Map(&res, &again)
	if again.Requests[0].URL != d.Requests[0].URL {
		t.Errorf("mapping again changed the request:\n%s\n%s", again.Requests[0].URL, d.Requests[0].URL)
	}
}
