package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/queue"
)

// TestCORS checks preflights and actual requests from allowed and refused origins, with the
// default policy (any origin, no credentials) and with an allow list.
func TestCORS(t *testing.T) {
	listed := func(o *Options) { o.AllowedOrigins = []string{"https://www.example.com"} }
	preflight := func(origin, headers string) req {
		return req{method: "OPTIONS", path: "/v1/batch", headers: map[string]string{
			"Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": headers}}
	}
	post := func(origin, key string) req {
		return req{path: "/v1/batch", body: smallBatch, headers: map[string]string{"Origin": origin, "Authorization": basic(key), "Content-Type": "text/plain"}}
	}
	cases := []struct {
		name        string
		opts        func(*Options)
		r           req
		status      int
		allowOrigin string // Access-Control-Allow-Origin, "" for none
		credentials bool
		stored      int
	}{
		{"preflight, default policy", nil, preflight("https://any.example", "authorization,content-type,x-retry-count"), 204, "*", false, 0},
		{"preflight from a source's listed origin", nil, preflight("https://shop.example.com", "Authorization, AnonymousId, SentAt"), 204, "https://shop.example.com", true, 0},
		{"preflight from an allowed origin", listed, preflight("https://www.example.com", "authorization"), 204, "https://www.example.com", true, 0},
		{"preflight from a refused origin", listed, preflight("https://evil.example", "authorization"), 403, "", false, 0},
		{"post, default policy", nil, post("https://any.example", keyWeb), 200, "*", false, 3},
		{"post from an allowed origin", listed, post("https://www.example.com", keyWeb), 200, "https://www.example.com", true, 3},
		{"post from a refused origin", listed, post("https://evil.example", keyWeb), 403, "", false, 0},
		{"post to a source from an origin it does not list", nil, post("https://any.example", keyBackend), 403, "*", false, 0},
		{"post to a source from its origin", nil, post("https://shop.example.com", keyBackend), 200, "https://shop.example.com", true, 3},
		{"post without Origin (server SDK)", listed, post("", keyWeb), 200, "", false, 3},
		{"settings from a refused origin", listed, req{method: "GET", path: "/v1/projects/" + keyWeb + "/settings", headers: map[string]string{"Origin": "https://evil.example"}}, 403, "", false, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newTest(t, tc.opts)
			rec := do(t, s, tc.r)
			h := rec.Header()
			if rec.Code != tc.status || h.Get("Access-Control-Allow-Origin") != tc.allowOrigin || (h.Get("Access-Control-Allow-Credentials") == "true") != tc.credentials {
				t.Errorf("got %d, allow-origin %q, credentials %q; want %d %q %v", rec.Code, h.Get("Access-Control-Allow-Origin"), h.Get("Access-Control-Allow-Credentials"), tc.status, tc.allowOrigin, tc.credentials)
			}
			if len(st.all()) != tc.stored {
				t.Errorf("stored %d, want %d", len(st.all()), tc.stored)
			}
			if tc.r.method == "OPTIONS" && tc.status == 204 {
				if h.Get("Access-Control-Allow-Headers") != tc.r.headers["Access-Control-Request-Headers"] || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Access-Control-Max-Age") == "" {
					t.Errorf("preflight headers %v", h)
				}
			}
			if tc.status == 403 {
				if code, _ := errBody(t, rec); code != "origin_not_allowed" {
					t.Errorf("code %s", code)
				}
			}
		})
	}
	t.Run("odd requested headers get the default list", func(t *testing.T) {
		s, _ := newTest(t, nil)
		rec := do(t, s, preflight("https://any.example", "x-a\r\nx-b: 1"))
		if got := rec.Header().Get("Access-Control-Allow-Headers"); got != defaultAllowHeaders {
			t.Errorf("got %q", got)
		}
	})
}

// TestSettingsEndpoints checks the answers browser SDKs start from, against the shapes
// analytics.js and RudderStack's analytics-js check.
func TestSettingsEndpoints(t *testing.T) {
	segment := []struct {
		name              string
		opts              func(*Options)
		headers           map[string]string
		host              string
		apiHost, protocol string
	}{
		{"derived from Host", nil, nil, "relay.local:8080", "relay.local:8080/v1", "http"},
		{"behind a TLS proxy", nil, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "ingest.example.org"}, "10.0.0.5", "ingest.example.org/v1", "https"},
		{"a forged Host", nil, nil, `evil"><script>`, "localhost/v1", "http"},
		{"public URL with a path", func(o *Options) { o.PublicURL = "https://ingest.example.com/relay/" }, nil, "ignored", "ingest.example.com/relay/v1", "https"},
	}
	for _, tc := range segment {
		t.Run("segment "+tc.name, func(t *testing.T) {
			s, _ := newTest(t, tc.opts)
			r := req{method: "GET", path: "/v1/projects/" + keyWeb + "/settings", headers: tc.headers}
			hr := newRequest(t, r)
			hr.Host = tc.host
			rec := serve(s, hr)
			if rec.Code != 200 {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			m := decode(t, rec.Body.String())
			seg, _ := m["integrations"].(map[string]any)["Segment.io"].(map[string]any)
			if seg == nil || seg["apiKey"] != keyWeb || seg["apiHost"] != tc.apiHost || seg["protocol"] != tc.protocol {
				t.Errorf("Segment.io = %v", seg)
			}
			if met, _ := m["metrics"].(map[string]any); met == nil || met["sampleRate"] != 0.0 || met["host"] != tc.apiHost {
				t.Errorf("metrics = %v, want sampleRate 0", m["metrics"])
			}
			if len(m["integrations"].(map[string]any)) != 1 {
				t.Error("integrations must hold only Segment.io, so no destination bundles load")
			}
		})
	}
	t.Run("segment unknown key", func(t *testing.T) {
		s, _ := newTest(t, nil)
		rec := do(t, s, req{method: "GET", path: "/v1/projects/nope/settings"})
		if code, _ := errBody(t, rec); rec.Code != 401 || code != "unknown_write_key" {
			t.Errorf("got %d %s", rec.Code, code)
		}
	})
	t.Run("rudderstack go cluster-info", func(t *testing.T) {
		s, _ := newTest(t, nil)
		rec := do(t, s, req{method: "GET", path: "/cluster-info", headers: map[string]string{"Authorization": basic(keyBackend)}})
		if rec.Code != 200 || decode(t, rec.Body.String())["nodeCount"] != float64(1) {
			t.Errorf("got %d %s, want 200 {\"nodeCount\":1}", rec.Code, rec.Body)
		}
	})
	rudder := []struct {
		name   string
		path   string
		auth   string
		status int
	}{
		{"basic auth, as analytics-js sends it", "/sourceConfig/?p=npm&v=3.34.1&build=modern&writeKey=" + keyBackend + "&lockIntegrationsVersion=true", basic(keyBackend), 200},
		{"query only", "/sourceConfig?writeKey=" + keyBackend, "", 200},
		{"unknown key", "/sourceConfig/?writeKey=nope", "", 401},
		{"no key", "/sourceConfig/", "", 401},
	}
	for _, tc := range rudder {
		t.Run("rudderstack "+tc.name, func(t *testing.T) {
			s, _ := newTest(t, nil)
			h := map[string]string{"Accept": "application/json"}
			if tc.auth != "" {
				h["Authorization"] = tc.auth
			}
			rec := do(t, s, req{method: "GET", path: tc.path, headers: h})
			if rec.Code != tc.status {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			if tc.status != 200 {
				return
			}
			// isValidSourceConfig: source is an object with a non-null id, an object config and
			// an array destinations; enabled must not be false.
			src, _ := decode(t, rec.Body.String())["source"].(map[string]any)
			_, cfgOK := src["config"].(map[string]any)
			dests, destOK := src["destinations"].([]any)
			if src == nil || src["id"] == nil || !cfgOK || !destOK || len(dests) != 0 || src["enabled"] != true || src["name"] != "shop" {
				t.Errorf("source = %v", src)
			}
		})
	}
}

// TestStoreErrors checks the seam: the answer follows Append's error.
func TestStoreErrors(t *testing.T) {
	cases := []struct {
		err        error
		status     int
		code       string
		retryAfter bool
	}{
		{queue.ErrFull, 503, "store_full", true},
		{queue.ErrClosed, 503, "shutting_down", true},
		{context.DeadlineExceeded, 503, "store_timeout", true},
		{fmt.Errorf("queue/jetstream: 3 of 20 events not acknowledged: %w: timeout", queue.ErrUnavailable), 503, "store_unavailable", true},
		{errors.New("disk on fire"), 500, "store_error", false},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			s, st := newTest(t, nil)
			st.err = tc.err
			rec := do(t, s, req{path: "/v1/batch", body: smallBatch, headers: map[string]string{"Authorization": basic(keyWeb)}})
			code, msg := errBody(t, rec)
			if rec.Code != tc.status || code != tc.code || (rec.Header().Get("Retry-After") == "5") != tc.retryAfter {
				t.Errorf("got %d %s %q, Retry-After %q", rec.Code, code, msg, rec.Header().Get("Retry-After"))
			}
			if strings.Contains(msg, "fire") {
				t.Error("the store's internal error leaked to the client")
			}
		})
	}
}

// TestOverload fills the in-flight cap with a request blocked in the store; the next one is
// answered 503 with Retry-After, and the blocked one still succeeds.
func TestOverload(t *testing.T) {
	s, st := newTest(t, func(o *Options) { o.MaxInFlight = 1 })
	st.block = make(chan struct{})
	st.entered = make(chan struct{}, 1)
	done := make(chan int)
	go func() {
		rec := do(t, s, req{path: "/v1/batch", body: smallBatch, headers: map[string]string{"Authorization": basic(keyWeb)}})
		done <- rec.Code
	}()
	<-st.entered
	rec := do(t, s, req{path: "/v1/track", body: trackEvent, headers: map[string]string{"Authorization": basic(keyWeb)}})
	if code, _ := errBody(t, rec); rec.Code != 503 || code != "overloaded" || rec.Header().Get("Retry-After") != "5" {
		t.Errorf("got %d %s, Retry-After %q", rec.Code, code, rec.Header().Get("Retry-After"))
	}
	if rec := do(t, s, req{method: "GET", path: "/healthz"}); rec.Code != 200 {
		t.Errorf("healthz is not subject to the cap: %d", rec.Code)
	}
	close(st.block)
	if code := <-done; code != 200 {
		t.Errorf("the blocked request got %d", code)
	}
}

// TestServeShutdown serves on a real listener: an in-flight request finishes during
// Shutdown, new ingest requests get 503, and Serve returns nil.
func TestServeShutdown(t *testing.T) {
	mounted := false
	s, st := newTest(t, func(o *Options) {
		o.Mount = func(e *echo.Echo) {
			mounted = true
			e.GET("/admin/ping", func(c echo.Context) error { return c.String(200, "pong") })
		}
	})
	if !mounted {
		t.Fatal("Mount was not called")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error)
	go func() { served <- s.Serve(l) }()
	url := "http://" + l.Addr().String()

	if resp, err := http.Get(url + "/admin/ping"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("mounted route: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	st.block = make(chan struct{})
	st.entered = make(chan struct{}, 1)
	answered := make(chan int)
	go func() {
		r, _ := http.NewRequest("POST", url+"/v1/batch", strings.NewReader(smallBatch))
		r.SetBasicAuth(keyWeb, "")
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	<-st.entered
	shut := make(chan error)
	go func() { shut <- s.Shutdown(context.Background()) }()
	for !s.draining.Load() {
		runtime.Gosched() // Shutdown sets draining before it waits
	}
	rec := do(t, s, req{path: "/v1/track", body: trackEvent, headers: map[string]string{"Authorization": basic(keyWeb)}})
	if code, _ := errBody(t, rec); rec.Code != 503 || code != "shutting_down" || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a new request during shutdown got %d %s", rec.Code, code)
	}
	if rec := do(t, s, req{method: "GET", path: "/readyz"}); rec.Code != 503 {
		t.Errorf("readyz during shutdown: %d", rec.Code)
	}
	close(st.block)
	if code := <-answered; code != 200 {
		t.Errorf("the in-flight request got %d", code)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if len(st.all()) != 3 {
		t.Errorf("stored %d", len(st.all()))
	}
}

func newRequest(t *testing.T, r req) *http.Request {
	t.Helper()
	hr, err := http.NewRequest(r.method, "http://relay.test"+r.path, bytes.NewReader([]byte(r.body)))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range r.headers {
		hr.Header.Set(k, v)
	}
	return hr
}

func serve(s *Server, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, r)
	return rec
}

// TestSlowClients: a client that dribbles its headers, or its body, is cut off by the server's
// timeouts instead of holding a connection for ever.
func TestSlowClients(t *testing.T) {
	s, _ := newTest(t, func(o *Options) {
		o.Timeouts = Timeouts{ReadHeader: 200 * time.Millisecond, Read: 400 * time.Millisecond}
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	cases := map[string]string{
		"headers never finished": "POST /v1/track HTTP/1.1\r\nHost: x\r\n",
		"body never finished":    "POST /v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"type\":",
	}
	for name, partial := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write([]byte(partial)); err != nil {
				t.Fatal(err)
			}
			// The server must give up on its own; 10 s is far beyond its timeouts.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 512)
			for {
				if _, err := c.Read(buf); err != nil {
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						t.Fatal("the server kept a slow client's connection open for 10 s")
					}
					return // closed by the server (EOF or reset), possibly after an error answer
				}
			}
		})
	}
}
