package server

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/queue"
)

const (
	trackEvent = `{"type":"track","event":"Order Completed","anonymousId":"a-1","userId":"u-1","properties":{"revenue":12.5},"timestamp":"2026-05-01T11:59:00Z"}`
	smallBatch = `{"batch":[{"type":"track","event":"A","anonymousId":"a-1"},{"type":"page","name":"Home","anonymousId":"a-1"},{"type":"identify","userId":"u-1","traits":{"email":"x@example.com"}}]}`
)

// TestRoutes posts to every ingest route and checks what was stored.
func TestRoutes(t *testing.T) {
	auth := map[string]string{"Authorization": basic(keyWeb)}
	single := []struct{ path, typ string }{
		{"/v1/track", "track"}, {"/v1/identify", "identify"}, {"/v1/page", "page"}, {"/v1/screen", "screen"}, {"/v1/group", "group"}, {"/v1/alias", "alias"},
		{"/v1/t", "track"}, {"/v1/i", "identify"}, {"/v1/p", "page"}, {"/v1/s", "screen"}, {"/v1/g", "group"}, {"/v1/a", "alias"},
	}
	for _, tc := range single {
		t.Run(tc.path, func(t *testing.T) {
			s, st := newTest(t, nil)
			// The body's own type (or none, as the HTTP API's examples) is overridden by the path.
			rec := do(t, s, req{path: tc.path, body: `{"event":"E","anonymousId":"a-1","userId":"u-1","type":"other"}`, headers: auth})
			if rec.Code != http.StatusOK || rec.Body.String() != `{"success":true}` {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			es := st.all()
			if len(es) != 1 || es[0].Source != "website" {
				t.Fatalf("stored %+v", es)
			}
			if got := eventsOf(t, es)[0]["type"]; got != tc.typ {
				t.Errorf("stored type %v, want %s", got, tc.typ)
			}
		})
	}
	batches := []struct {
		path    string
		headers map[string]string
	}{
		{"/v1/batch", auth}, {"/v1/import", auth}, {"/v1/b", auth}, {"/beacon/v1/batch?writeKey=" + keyWeb, map[string]string{"Content-Type": "text/plain"}},
	}
	for _, tc := range batches {
		t.Run(tc.path, func(t *testing.T) {
			s, st := newTest(t, nil)
			rec := do(t, s, req{path: tc.path, body: smallBatch, headers: tc.headers})
			if rec.Code != http.StatusOK {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			es := st.mapped()
			if len(es) != 3 || st.appends != 1 {
				t.Fatalf("stored %d entries in %d appends, want 3 in 1", len(es), st.appends)
			}
			want := []string{"/track/ce", "/track/ce", "/track/identify"}
			for i, e := range es {
				if e.Outcome != queue.Deliver || !strings.Contains(e.Requests[0].URL, want[i]+"?") {
					t.Errorf("entry %d: %s %+v", i, e.Outcome, e.Requests)
				}
			}
		})
	}
	t.Run("/v1/m is accepted and discarded", func(t *testing.T) {
		s, st := newTest(t, nil)
		rec := do(t, s, req{path: "/v1/m", body: `{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,"tags":{}}]}`, headers: map[string]string{"Content-Type": "text/plain"}})
		if rec.Code != http.StatusOK || len(st.all()) != 0 {
			t.Errorf("got %d, stored %d", rec.Code, len(st.all()))
		}
	})
	errs := []struct {
		method, path string
		status       int
		code         string
	}{
		{"GET", "/v1/track", 405, "method_not_allowed"},
		{"POST", "/v1/nope", 404, "not_found"},
		{"POST", "/v1/track/", 404, "not_found"}, // never a redirect
		{"PUT", "/v1/batch", 405, "method_not_allowed"},
	}
	for _, tc := range errs {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			s, _ := newTest(t, nil)
			rec := do(t, s, req{method: tc.method, path: tc.path, body: trackEvent, headers: auth})
			if code, _ := errBody(t, rec); rec.Code != tc.status || code != tc.code {
				t.Errorf("got %d %s, want %d %s", rec.Code, code, tc.status, tc.code)
			}
		})
	}
}

// TestAuth covers every way a write key may arrive, and the refusals.
func TestAuth(t *testing.T) {
	cases := []struct {
		name    string
		path    string
		body    string
		headers map[string]string
		status  int
		source  string // stored source, or the error code
	}{
		{"basic writeKey:", "/v1/track", trackEvent, map[string]string{"Authorization": basic(keyWeb)}, 200, "website"},
		{"basic without the colon", "/v1/track", trackEvent, map[string]string{"Authorization": "Basic d2std2Vic2l0ZS0wMTIzNDU2Nzg5"}, 200, "website"},
		{"body writeKey of an event", "/v1/t", `{"writeKey":"` + keyWeb + `","type":"track","event":"E","anonymousId":"a"}`, nil, 200, "website"},
		{"body writeKey of a batch", "/v1/batch", `{"writeKey":"` + keyBackend + `","batch":[{"type":"track","event":"E","anonymousId":"a"}]}`, nil, 200, "shop"},
		{"writeKey in the batch's events (analytics.js /v1/b)", "/v1/b", `{"batch":[{"writeKey":"` + keyWeb + `","type":"track","event":"E","anonymousId":"a"}],"sentAt":"2026-05-01T11:59:00Z"}`, nil, 200, "website"},
		{"beacon query parameter", "/beacon/v1/batch?writeKey=" + keyBackend, `{"batch":[{"type":"track","event":"E","anonymousId":"a"}]}`, nil, 200, "shop"},
		{"header wins over body", "/v1/track", `{"writeKey":"` + keyWeb + `","event":"E","anonymousId":"a"}`, map[string]string{"Authorization": basic(keyBackend)}, 200, "shop"},
		{"query parameter outside beacons", "/v1/batch?writeKey=" + keyWeb, smallBatch, nil, 401, "missing_write_key"},
		{"no key", "/v1/track", trackEvent, nil, 401, "missing_write_key"},
		{"bearer token only", "/v1/track", trackEvent, map[string]string{"Authorization": "Bearer abc"}, 401, "missing_write_key"},
		{"unknown header key", "/v1/track", trackEvent, map[string]string{"Authorization": basic("wk-website-012345678")}, 401, "unknown_write_key"},
		{"unknown body key", "/v1/track", `{"writeKey":"nope","event":"E","anonymousId":"a"}`, nil, 401, "unknown_write_key"},
		{"unknown beacon key", "/beacon/v1/batch?writeKey=nope", smallBatch, nil, 401, "unknown_write_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newTest(t, nil)
			rec := do(t, s, req{path: tc.path, body: tc.body, headers: tc.headers})
			if rec.Code != tc.status {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if tc.status != 200 {
				if code, _ := errBody(t, rec); code != tc.source {
					t.Errorf("code %s, want %s", code, tc.source)
				}
				if len(st.all()) != 0 {
					t.Error("a refused request stored events")
				}
				return
			}
			es := st.all()
			if len(es) == 0 || es[0].Source != tc.source {
				t.Fatalf("stored %+v, want source %s", es, tc.source)
			}
			for _, e := range es {
				if strings.Contains(string(e.Event), "writeKey") || strings.Contains(string(e.Event), "wk-") {
					t.Errorf("the write key was stored: %s", e.Event)
				}
			}
		})
	}
}

// TestEncodings sends each content type, plain and gzip: the server never looks at
// Content-Type and always honours Content-Encoding: gzip.
func TestEncodings(t *testing.T) {
	types := []string{"", "application/json", "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "application/json;charset=UTF-8", "application/octet-stream"}
	for _, ct := range types {
		for _, zip := range []bool{false, true} {
			name := ct + map[bool]string{false: " plain", true: " gzip"}[zip]
			t.Run(name, func(t *testing.T) {
				s, st := newTest(t, nil)
				h := map[string]string{"Authorization": basic(keyWeb)}
				if ct != "" {
					h["Content-Type"] = ct
				}
				rec := do(t, s, req{path: "/v1/batch", body: smallBatch, gzip: zip, headers: h})
				if rec.Code != 200 || len(st.all()) != 3 {
					t.Errorf("got %d %s, stored %d", rec.Code, rec.Body, len(st.all()))
				}
			})
		}
	}
	bad := []struct {
		name     string
		encoding string
		body     string
		status   int
		code     string
	}{
		{"x-gzip", "x-gzip", "", 200, ""},
		{"brotli is refused", "br", smallBatch, 415, "unsupported_encoding"},
		{"gzip label on plain JSON", "gzip", smallBatch, 400, "bad_gzip"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTest(t, nil)
			r := req{path: "/v1/batch", body: tc.body, headers: map[string]string{"Authorization": basic(keyWeb), "Content-Encoding": tc.encoding}}
			if tc.body == "" {
				r.body, r.gzip = smallBatch, true
			}
			rec := do(t, s, r)
			if rec.Code != tc.status {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			if tc.code != "" {
				if code, _ := errBody(t, rec); code != tc.code {
					t.Errorf("code %s, want %s", code, tc.code)
				}
			}
		})
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	s, _ := newTest(t, nil)
	if rec := do(t, s, req{method: "GET", path: "/healthz"}); rec.Code != 200 {
		t.Errorf("healthz %d", rec.Code)
	}
	if rec := do(t, s, req{method: "GET", path: "/readyz"}); rec.Code != 200 {
		t.Errorf("readyz %d", rec.Code)
	}
	s.SetReady(false)
	rec := do(t, s, req{method: "GET", path: "/readyz"})
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" {
		t.Errorf("readyz when not ready: %d %v", rec.Code, rec.Header())
	}
	s.SetReady(true)
	do(t, s, req{path: "/v1/batch", body: smallBatch, headers: map[string]string{"Authorization": basic(keyWeb)}})
	do(t, s, req{path: "/v1/batch", body: `{`, headers: map[string]string{"Authorization": basic(keyWeb)}})
	m := do(t, s, req{method: "GET", path: "/metrics"}).Body.String()
	for _, want := range []string{
		`woorelay_ingest_requests_total{outcome="ok",route="/v1/batch",source="website"} 1`,
		`woorelay_ingest_requests_total{outcome="invalid_json",route="/v1/batch",source="website"} 1`,
		`woorelay_ingest_events_total{outcome="queued",route="/v1/batch",source="website"} 3`,
		`woorelay_ingest_request_duration_seconds_count{route="/v1/batch"} 2`,
		`woorelay_ingest_in_flight_requests 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	srcs := testSources(t)
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no store", Options{Sources: srcs}, "Store is nil"},
		{"no sources", Options{Store: &memStore{}}, "no sources"},
		{"duplicate names", Options{Store: &memStore{}, Sources: []*Source{srcs[0], {Name: "website", WriteKey: "x", Program: srcs[0].Program}}}, "two sources are named"},
		{"any key beside others", Options{Store: &memStore{}, Sources: []*Source{srcs[0], {Name: "dev", AnyKey: true, Program: srcs[0].Program}}}, "must be the only source"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// decode is a helper for answers with a JSON body.
func decode(t *testing.T, body string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return m
}
