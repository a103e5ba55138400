package importer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/tidwall/gjson"
	"gocloud.dev/blob"
)

func TestClassify(t *testing.T) {
	for _, c := range []struct {
		key  string
		want Layout
		from string
	}{
		{"segment-logs/abc123/1700006400000/1700010000000.f1.gz", Segment, "2023-11-15T00:00:00Z"},
		{"archive/segment-logs/abc123/1700006400000/x.gz", Segment, "2023-11-15T00:00:00Z"},
		{"rudder-archives/2Abc/gw/2024-05-01/7/rudder-0/1714546800_1714547100_ws1_6f1e.json.gz", RudderStack, "2024-05-01T07:00:00Z"},
		{"2Abc/2024-05-01/13/inst/1714546800_1714547100_ws1_6f1e.json.gz", RudderStack, "2024-05-01T07:00:00Z"},
		{"exports/events-0001.ndjson.gz", NDJSON, ""},
		{"segment-logs/abc/notaday/x.gz", NDJSON, ""},
	} {
		l, from, _ := Classify(c.key)
		if l != c.want {
			t.Errorf("%s: layout %s, want %s", c.key, l, c.want)
		}
		if c.from != "" && !from.Equal(must(time.Parse(time.RFC3339, c.from))) {
			t.Errorf("%s: received from %v, want %s", c.key, from, c.from)
		}
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A RudderStack record's events get the timestamp the processor would have computed, an
// originalTimestamp and their own messageId; an event without one gets the same id every run.
func TestDecodeRudderStackRecord(t *testing.T) {
	line := []byte(`{"userId":"","payload":{"batch":[` +
		`{"type":"track","event":"A","anonymousId":"a1","messageId":"m1","originalTimestamp":"2024-05-01T10:00:00.000Z","sentAt":"2024-05-01T10:00:05.000Z"},` +
		`{"type":"track","event":"B","anonymousId":"a1","originalTimestamp":"2024-05-01T10:00:02.000Z","sentAt":"2024-05-01T10:00:05.000Z"}` +
		`],"receivedAt":"2024-05-01T12:00:05.000Z"},"createdAt":"2024-05-01T12:00:05.1Z","messageId":""}`)
	evs, err := decodeLine(line, "obj:1", nil)
	if err != nil || len(evs) != 2 {
		t.Fatalf("decodeLine: %d events, %v", len(evs), err)
	}
	// The SDK's clock was two hours behind: receivedAt − (sentAt − originalTimestamp).
	if got := gjson.GetBytes(evs[0].event, "timestamp").String(); got != "2024-05-01T12:00:00.000Z" {
		t.Errorf("timestamp %q, want the skew-corrected 2024-05-01T12:00:00.000Z", got)
	}
	if !evs[1].at.Equal(must(time.Parse(time.RFC3339, "2024-05-01T12:00:02Z"))) {
		t.Errorf("time %v", evs[1].at)
	}
	if got := gjson.GetBytes(evs[0].event, "originalTimestamp").String(); got != "2024-05-01T10:00:00.000Z" {
		t.Errorf("originalTimestamp changed to %q", got)
	}
	if got := gjson.GetBytes(evs[0].event, "messageId").String(); got != "m1" {
		t.Errorf("messageId %q, want m1", got)
	}
	id := gjson.GetBytes(evs[1].event, "messageId").String()
	again, _ := decodeLine(line, "obj:1", nil)
	other, _ := decodeLine(line, "obj:2", nil)
	if !strings.HasPrefix(id, "import-") || gjson.GetBytes(again[1].event, "messageId").String() != id || gjson.GetBytes(other[1].event, "messageId").String() == id {
		t.Errorf("derived messageId %q is not stable per object and line", id)
	}
	// A Segment archive event with all three is sent byte for byte.
	seg := []byte(`{"type":"track","messageId":"x","timestamp":"2024-05-01T10:00:00Z","originalTimestamp":"2024-05-01T09:59:59Z"}`)
	out, err := decodeLine(seg, "o:1", nil)
	if err != nil || string(out[0].event) != string(seg) {
		t.Errorf("a complete event was rewritten: %s %v", out[0].event, err)
	}
	// A null timestamp is replaced, not duplicated.
	out, err = decodeLine([]byte(`{"type":"track","messageId":"x","timestamp":null,"originalTimestamp":"2024-05-01T09:59:59Z"}`), "o:1", nil)
	if err != nil || strings.Count(string(out[0].event), `"timestamp"`) != 1 || gjson.GetBytes(out[0].event, "timestamp").String() != "2024-05-01T09:59:59.000Z" {
		t.Errorf("null timestamp: %s %v", out[0].event, err)
	}
	// RudderStack's requestIP becomes context.ip where the event has none (else the relay
	// would take the importer's address); an event's own is kept.
	withIP := []byte(`{"payload":{"requestIP":"203.0.113.9","batch":[{"type":"track","messageId":"a","timestamp":"2024-05-01T10:00:00Z","originalTimestamp":"2024-05-01T10:00:00Z","context":{"library":{}}},` +
		`{"type":"track","messageId":"b","timestamp":"2024-05-01T10:00:00Z","originalTimestamp":"2024-05-01T10:00:00Z"},` +
		`{"type":"track","messageId":"c","timestamp":"2024-05-01T10:00:00Z","originalTimestamp":"2024-05-01T10:00:00Z","context":{"ip":"198.51.100.1"}}]},"createdAt":"2024-05-01T10:00:01Z"}`)
	out, err = decodeLine(withIP, "o:1", nil)
	if err != nil || len(out) != 3 {
		t.Fatalf("requestIP: %v", err)
	}
	for i, want := range []string{"203.0.113.9", "203.0.113.9", "198.51.100.1"} {
		if got := gjson.GetBytes(out[i].event, "context.ip").String(); got != want || !gjson.ValidBytes(out[i].event) {
			t.Errorf("event %d: context.ip %q, want %s: %s", i, got, want, out[i].event)
		}
	}
	if _, err := decodeLine([]byte(`not json`), "o:1", nil); err == nil {
		t.Error("a line that is not JSON was decoded")
	}
}

// collectSink records the messageIds it is sent; failAfter > 0 fails every batch after that many.
type collectSink struct {
	mu        sync.Mutex
	ids       map[string]int
	batches   atomic.Int64
	failAfter int64
}

func (s *collectSink) Send(_ context.Context, events [][]byte) error {
	if n := s.batches.Add(1); s.failAfter > 0 && n > s.failAfter {
		return errors.New("sink gone")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ids == nil {
		s.ids = map[string]int{}
	}
	for _, e := range events {
		s.ids[gjson.GetBytes(e, "messageId").String()]++
	}
	return nil
}

func writeDir(t *testing.T, spec ArchiveSpec) (string, []ArchivedEvent) {
	t.Helper()
	dir := t.TempDir()
	evs, err := WriteArchive(spec, PutFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	return dir, evs
}

func listAll(t *testing.T, locs ...string) []Object {
	t.Helper()
	var objs []Object
	for _, l := range locs {
		loc, err := Open(context.Background(), l)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { loc.Close() })
		o, err := loc.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, o...)
	}
	return objs
}

var (
	start = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	since = start.Add(20 * 24 * time.Hour)
	until = since.Add(7 * 24 * time.Hour)
)

// inWindow returns the messageIds of the events in [since, until).
func inWindow(evs []ArchivedEvent) map[string]bool {
	want := map[string]bool{}
	for _, e := range evs {
		if !e.At.Before(since) && e.At.Before(until) {
			want[gjson.GetBytes(e.Event, "messageId").String()] = true
		}
	}
	return want
}

func checkExactlyOnce(t *testing.T, got map[string]int, want map[string]bool) {
	t.Helper()
	for id, n := range got {
		if !want[id] {
			t.Errorf("%s sent but outside the window", id)
		}
		if n != 1 {
			t.Errorf("%s sent %d times", id, n)
		}
	}
	for id := range want {
		if got[id] == 0 {
			t.Errorf("%s in the window but not sent", id)
		}
	}
}

// Both layouts, a 7-day window of 30 days: exactly the window's events, each once; a re-run with
// the checkpoint sends nothing; objects received long before the window are not even read.
func TestRunWindowOnceAndRerun(t *testing.T) {
	for _, layout := range []Layout{Segment, RudderStack, NDJSON} {
		t.Run(string(layout), func(t *testing.T) {
			dir, evs := writeDir(t, ArchiveSpec{Layout: layout, Events: 1500, Start: start, Span: 30 * 24 * time.Hour, PerObject: 100, ID: string(layout)})
			want := inWindow(evs)
			ckp := filepath.Join(t.TempDir(), "ckp")
			cp, err := OpenCheckpoint(ckp, false)
			if err != nil {
				t.Fatal(err)
			}
			sink := &collectSink{}
			st, err := Run(context.Background(), Options{Objects: listAll(t, dir), Since: since, Until: until, Checkpoint: cp, Sink: sink, BatchEvents: 64})
			cp.Close()
			if err != nil {
				t.Fatal(err)
			}
			checkExactlyOnce(t, sink.ids, want)
			if st.Sent != int64(len(want)) || st.Events+int64(0) == 0 {
				t.Errorf("stats: sent %d, want %d (%+v)", st.Sent, len(want), st)
			}
			if layout != NDJSON && st.ObjectsPruned == 0 {
				t.Errorf("no object was passed over by its received time: %+v", st)
			}
			if layout == NDJSON && st.ObjectsPruned != 0 {
				t.Errorf("NDJSON objects have no received time, yet %d were passed over", st.ObjectsPruned)
			}
			cp, err = OpenCheckpoint(ckp, false)
			if err != nil {
				t.Fatal(err)
			}
			defer cp.Close()
			again := &collectSink{}
			st, err = Run(context.Background(), Options{Objects: listAll(t, dir), Since: since, Until: until, Checkpoint: cp, Sink: again})
			if err != nil || len(again.ids) != 0 || st.Sent != 0 || st.ObjectsDone != st.Objects {
				t.Errorf("re-run sent %d events (%+v, %v), want 0 and every object done", len(again.ids), st, err)
			}
		})
	}
}

// A run that stops half-way (the sink fails) and resumes sends every event of the window; only
// the batches in flight at the failure may come twice (the relay's dedup drops those).
func TestRunResumesAfterFailure(t *testing.T) {
	dir, evs := writeDir(t, ArchiveSpec{Layout: Segment, Events: 2000, Start: start, Span: 30 * 24 * time.Hour, PerObject: 50})
	want := inWindow(evs)
	ckp := filepath.Join(t.TempDir(), "ckp")
	cp, _ := OpenCheckpoint(ckp, false)
	first := &collectSink{failAfter: 5}
	_, err := Run(context.Background(), Options{Objects: listAll(t, dir), Since: since, Until: until, Checkpoint: cp, Sink: first, BatchEvents: 40, Concurrency: 2})
	cp.Close()
	if err == nil || !strings.Contains(err.Error(), "sink gone") {
		t.Fatalf("the failing run returned %v", err)
	}
	cp, _ = OpenCheckpoint(ckp, false)
	defer cp.Close()
	second := &collectSink{}
	if _, err := Run(context.Background(), Options{Objects: listAll(t, dir), Since: since, Until: until, Checkpoint: cp, Sink: second, BatchEvents: 40, Concurrency: 2}); err != nil {
		t.Fatal(err)
	}
	both := map[string]int{}
	twice := 0
	for _, s := range []*collectSink{first, second} {
		for id, n := range s.ids {
			both[id] += n
			if both[id] > 1 {
				twice++
			}
		}
	}
	for id := range want {
		if both[id] == 0 {
			t.Errorf("%s lost", id)
		}
	}
	if len(first.ids) == 0 || len(second.ids) == 0 || len(second.ids) >= len(want) {
		t.Errorf("first run sent %d, second %d of %d: the second did not resume", len(first.ids), len(second.ids), len(want))
	}
	if twice > 2*40 {
		t.Errorf("%d events sent twice: more than the batches in flight", twice)
	}
}

// Object storage: a real S3 HTTP server (gofakes3, in process) holding a RudderStack archive,
// read through s3blob with credentials from the environment as the AWS SDK reads them.
func TestS3Location(t *testing.T) {
	srv := httptest.NewServer(gofakes3.New(s3mem.New()).Server())
	defer srv.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "test-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_REGION", "us-east-1")
	ctx := context.Background()
	bucketURL := "s3://archive?endpoint=" + srv.URL + "&use_path_style=true&disable_https=true"
	b, err := blob.OpenBucket(ctx, bucketURL)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	// gofakes3 makes buckets with a PUT on the bucket.
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/archive", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("create bucket: %v %v", resp, err)
	}
	evs, err := WriteArchive(ArchiveSpec{Layout: RudderStack, Events: 1500, Start: start, Span: 30 * 24 * time.Hour, PerObject: 100}, func(key string, data []byte) error {
		return b.WriteAll(ctx, "rudder-archives/"+key, data, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	u := "s3://archive/rudder-archives/?endpoint=" + srv.URL + "&use_path_style=true&disable_https=true"
	objs := listAll(t, u)
	if len(objs) != 15 || objs[0].Layout != RudderStack {
		t.Fatalf("listed %d objects (%v), want 15 in RudderStack's layout", len(objs), objs[0].Layout)
	}
	sink := &collectSink{}
	if _, err := Run(ctx, Options{Objects: objs, Since: since, Until: until, Sink: sink}); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, sink.ids, inWindow(evs))
}

// The sink holds back while the relay's queue is over MaxBacklog and sends once it drains.
func TestHTTPSinkWaitsForBacklog(t *testing.T) {
	var backlog, posts atomic.Int64
	backlog.Store(10_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/metrics":
			fmt.Fprintf(w, "# HELP x\nwoorelay_queue_backlog_other 1\nwoorelay_queue_backlog %d\n", backlog.Load())
		case "/v1/import":
			if u, _, _ := r.BasicAuth(); u != "k" || r.Header.Get("User-Agent") != UserAgent {
				w.WriteHeader(401)
				return
			}
			posts.Add(1)
			w.Write([]byte(`{"success":true}`))
		}
	}))
	defer srv.Close()
	s := &HTTPSink{URL: srv.URL, WriteKey: "k", MaxDelay: time.Second}
	done := make(chan error, 1)
	go func() { done <- s.Send(context.Background(), [][]byte{[]byte(`{"type":"track"}`)}) }()
	time.Sleep(300 * time.Millisecond)
	if posts.Load() != 0 {
		t.Fatal("sent while the backlog was over the limit")
	}
	backlog.Store(10)
	select {
	case err := <-done:
		if err != nil || posts.Load() != 1 {
			t.Fatalf("send after the drain: %v, %d posts", err, posts.Load())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still waiting 10 s after the backlog drained")
	}
	bad := &HTTPSink{URL: srv.URL, WriteKey: "wrong"}
	if err := bad.Send(context.Background(), [][]byte{[]byte(`{}`)}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a refused write key gave %v", err)
	}
}
