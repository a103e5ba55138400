package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
)

// memStore is the in-memory Store of the tests: it records every entry appended, or fails
// with err.
type memStore struct {
	mu      sync.Mutex
	entries []queue.Entry
	appends int
	err     error
	block   chan struct{} // when not nil, Append waits for it to close
	entered chan struct{} // when not nil, Append signals it on entry
	sources []*Source     // what mapped() maps with
}

func (m *memStore) Append(ctx context.Context, entries []queue.Entry) (queue.AppendResult, error) {
	if m.entered != nil {
		m.entered <- struct{}{}
	}
	if m.block != nil {
		<-m.block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return queue.AppendResult{}, m.err
	}
	m.appends++
	var res queue.AppendResult
	for _, e := range entries {
		switch e.Outcome {
		case queue.Deliver:
			res.Queued++
		case queue.Filtered:
			res.Filtered++
		case queue.Rejected:
			res.Rejected++
		}
	}
	m.entries = append(m.entries, entries...)
	return res, nil
}

func (m *memStore) all() []queue.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]queue.Entry(nil), m.entries...)
}

// mapped returns the entries as delivery sees them: each mapped with its source's program
// (entries refused at the edge stay as they are).
func (m *memStore) mapped() []queue.Entry {
	es := m.all()
	var res mapping.Result
	for i := range es {
		if es[i].Outcome != queue.Deliver {
			continue
		}
		for _, src := range m.sources {
			if src.Name == es[i].Source {
				src.Map(&res, &es[i])
			}
		}
	}
	return es
}

const (
	keyWeb     = "wk-website-0123456789"
	keyBackend = "wk-backend-9876543210"
)

// testNow is the frozen clock of the tests.
var testNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// seqIDs returns a deterministic messageId generator.
func seqIDs() func() string {
	var n atomic.Int64
	return func() string { return fmt.Sprintf("gen-%d", n.Add(1)) }
}

// testSources compiles the two sources of testdata/good.yaml.
func testSources(t testing.TB) []*Source {
	t.Helper()
	t.Setenv("WOORELAY_TEST_BACKEND_KEY", keyBackend)
	return loadSources(t, "testdata/good.yaml")
}

// loadSources loads a sources file and compiles its sources.
func loadSources(t testing.TB, path string) []*Source {
	t.Helper()
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := cfg.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	return srcs
}

// newTest builds a server over a memStore with the test sources; edit adjusts the options.
func newTest(t testing.TB, edit func(*Options)) (*Server, *memStore) {
	t.Helper()
	st := &memStore{sources: testSources(t)}
	opts := Options{Sources: st.sources, Store: st, Now: func() time.Time { return testNow }, NewMessageID: seqIDs(), Registerer: prometheus.NewRegistry()}
	if edit != nil {
		edit(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// req is one request of a table test.
type req struct {
	method  string
	path    string
	body    string
	gzip    bool
	headers map[string]string
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// do sends r to the server's handler and returns the recorder.
func do(t testing.TB, s *Server, r req) *httptest.ResponseRecorder {
	t.Helper()
	body := []byte(r.body)
	if r.gzip {
		body = gz(t, body)
	}
	method := r.method
	if method == "" {
		method = http.MethodPost
	}
	hr := httptest.NewRequest(method, r.path, bytes.NewReader(body))
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	if r.gzip && hr.Header.Get("Content-Encoding") == "" {
		hr.Header.Set("Content-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, hr)
	return rec
}

// errBody decodes a {"code","message"} answer.
func errBody(t testing.TB, rec *httptest.ResponseRecorder) (code, msg string) {
	t.Helper()
	var e struct{ Code, Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("answer %d is not JSON: %q", rec.Code, rec.Body.String())
	}
	return e.Code, e.Message
}

// eventsOf decodes the stored events.
func eventsOf(t testing.TB, es []queue.Entry) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, e := range es {
		var m map[string]any
		if err := json.Unmarshal(e.Event, &m); err != nil {
			t.Fatalf("stored event is not JSON: %v: %s", err, e.Event)
		}
		out = append(out, m)
	}
	return out
}

// param returns a query parameter of an entry's first request.
func param(t testing.TB, e queue.Entry, name string) string {
	t.Helper()
	if len(e.Requests) == 0 {
		t.Fatalf("entry %s has no request (outcome %s, %s)", e.MessageID, e.Outcome, e.Reason)
	}
	u := e.Requests[0].URL
	_, q, _ := strings.Cut(u, "?")
	for _, kv := range strings.Split(q, "&") {
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			s, err := urlUnescape(v)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	return ""
}

func urlUnescape(s string) (string, error) {
	r := httptest.NewRequest("GET", "/?x="+s, nil)
	return r.URL.Query().Get("x"), nil
}
