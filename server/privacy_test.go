package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/privacy"
	"github.com/woorelay/woorelay/queue"
)

// privacySources loads a one-source file with the privacy section given.
func privacySources(t *testing.T, section string) []*Source {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "w.yaml")
	body := "sources:\n  - name: web\n    write_key: " + keyWeb + "\n    preset: default\n    settings: {project: example.com}\n    privacy: " + section + "\n"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return loadSources(t, f)
}

// TestEdgeMinimisation: what the store receives has the truncated address, no phone and the
// salted hash instead of the e-mail; the request Woopra would get carries the truncated address.
func TestEdgeMinimisation(t *testing.T) {
	t.Setenv(SaltEnv, "pepper")
	srcs := privacySources(t, "{ip: truncate, drop: [context.traits.phone], hash: [context.traits.email]}")
	s, st := newTest(t, func(o *Options) { o.Sources = srcs })
	st.sources = srcs
	rec := do(t, s, req{method: "POST", path: "/v1/track", headers: map[string]string{"Authorization": basic(keyWeb)},
		body: `{"event":"E","userId":"u1","context":{"ip":"203.0.113.50","traits":{"phone":"+44 7700 900123","email":"jane@example.com"}}}`})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	es := st.mapped()
	if len(es) != 1 {
		t.Fatalf("stored %d entries", len(es))
	}
	stored := string(st.all()[0].Event)
	for _, gone := range []string{"203.0.113.50", "7700", "jane@example.com"} {
		if strings.Contains(stored, gone) {
			t.Errorf("the stored event still holds %q: %s", gone, stored)
		}
	}
	if !strings.Contains(stored, `"ip":"203.0.113.0"`) {
		t.Errorf("the stored event lacks the truncated address: %s", stored)
	}
	if got := param(t, es[0], "ip"); got != "203.0.113.0" {
		t.Errorf("Woopra's ip = %q, want 203.0.113.0", got)
	}
}

func TestPrivacyConfigErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "w.yaml")
	os.WriteFile(f, []byte("sources:\n  - name: web\n    write_key: k\n    preset: default\n    privacy: {ip: mask, drop: [a..b], hash: [x]}\n"), 0o644)
	t.Setenv(SaltEnv, "")
	_, err := LoadConfig(f)
	if err == nil {
		t.Fatal("a bad privacy section was accepted")
	}
	for _, want := range []string{`ip "mask"`, `"a..b"`, SaltEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %s: %v", want, err)
		}
	}
}

type setSuppressions struct{ s *privacy.Set }

func (x setSuppressions) Suppressed(ev []byte, k privacy.Known) bool {
	return x.s.MatchEventKnown(ev, k)
}

// TestEdgeSuppression: a suppressed person's event is answered 200 and reaches the store only
// as a filtered entry without content, whether the selector is its userId or its anonymousId
// (with or without a userId beside it); another person's is queued.
func TestEdgeSuppression(t *testing.T) {
	sup := setSuppressions{privacy.NewSet(privacy.Selector{Kind: privacy.UserID, Value: "gone"}, privacy.Selector{Kind: privacy.AnonymousID, Value: "anon-gone"})}
	s, st := newTest(t, func(o *Options) { o.Suppressions = sup })
	rec := do(t, s, req{method: "POST", path: "/v1/batch", headers: map[string]string{"Authorization": basic(keyWeb)},
		body: `{"batch":[{"type":"track","event":"E","userId":"gone","traits":{"email":"x@y.z"}},{"type":"track","event":"E","anonymousId":"anon-gone"},` +
			`{"type":"track","event":"E","userId":"other","anonymousId":"anon-gone"},{"type":"track","event":"E","userId":"stays","anonymousId":"a-1"}]}`})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	es := st.all()
	if len(es) != 4 {
		t.Fatalf("%d entries stored", len(es))
	}
	for i, e := range es[:3] {
		if e.Outcome != queue.Filtered || e.Reason != ReasonSuppressed || e.Event != nil || e.Visitor != "" {
			t.Errorf("the suppressed event %d was stored as %+v", i, e)
		}
	}
	if es[3].Outcome != queue.Deliver {
		t.Errorf("the other person's event is %v", es[3].Outcome)
	}
}

// BenchmarkSuppressionCost measures what the edge's suppression check costs ingest: the
// handler without a suppression list (the baseline), with an empty one (the usual case: one
// atomic load an event), and with one selector (each event's identifiers read once more), in
// process over the same 20-event corpus batches, interleaved in blocks of 25 requests so a
// noisy machine slows all alike. It reports each one's events/s over the baseline's.
//
//	GOMAXPROCS=1 go test ./server -run '^$' -bench SuppressionCost -benchtime 2000x -count 3
func BenchmarkSuppressionCost(b *testing.B) {
	batches := benchBatches(50)
	auth := basic(keyWeb)
	lists := []Suppressions{nil, setSuppressions{privacy.NewSet()}, setSuppressions{privacy.NewSet(privacy.Selector{Kind: privacy.UserID, Value: "nobody"})}}
	handlers := make([]http.Handler, len(lists))
	for i, l := range lists {
		s, err := New(Options{Sources: testSources(b), Store: &discardStore{}, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return testNow }, Suppressions: l})
		if err != nil {
			b.Fatal(err)
		}
		handlers[i] = s.Handler()
	}
	spent := make([]time.Duration, len(lists))
	const block = 25
	b.ResetTimer()
	for done := 0; done < b.N; done += block {
		n := min(block, b.N-done)
		for side, h := range handlers {
			start := time.Now()
			for i := done; i < done+n; i++ {
				r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(batches[i%len(batches)]))
				r.Header.Set("Authorization", auth)
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				if rec.Code != 200 {
					b.Fatalf("got %d %s", rec.Code, rec.Body)
				}
			}
			spent[side] += time.Since(start)
		}
	}
	b.StopTimer()
	b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "empty-list/none")
	b.ReportMetric(spent[0].Seconds()/spent[2].Seconds(), "one-selector/none")
}
