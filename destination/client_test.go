package destination

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// statusServer answers /s/<code> with that code; /redirect/<n> redirects n times then 200.
func statusServer(t *testing.T, retryAfter string) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/s/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(code)
		fmt.Fprintf(w, "answer %d", code)
	})
	mux.HandleFunc("/redirect/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n == 0 {
			fmt.Fprint(w, `{"success":1}`)
			return
		}
		http.Redirect(w, r, fmt.Sprintf("/redirect/%d?%s", n-1, r.URL.RawQuery), http.StatusMovedPermanently)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(url string, headers ...queue.Header) queue.Request {
	return queue.Request{Method: "GET", URL: url, Headers: headers}
}

func TestClientClassifiesEveryStatusClass(t *testing.T) {
	srv := statusServer(t, "")
	c := NewClient(ClientOptions{})
	for _, tc := range []struct {
		path   string
		class  Class
		status int
	}{
		{"/s/200", Done, 200},
		{"/s/202", Done, 202},
		{"/s/204", Done, 204},
		{"/redirect/1", Done, 200},
		{"/redirect/5", Done, 200},
		{"/redirect/6", Dead, 301}, // more redirects than followed
		{"/s/304", Dead, 304},
		{"/s/400", Dead, 400},
		{"/s/401", Dead, 401},
		{"/s/403", Dead, 403},
		{"/s/404", Dead, 404},
		{"/s/408", Retry, 408},
		{"/s/413", Dead, 413},
		{"/s/414", Dead, 414},
		{"/s/429", Retry, 429},
		{"/s/500", Retry, 500},
		{"/s/501", Dead, 501},
		{"/s/502", Retry, 502},
		{"/s/503", Retry, 503},
		{"/s/504", Retry, 504},
	} {
		a := c.Send(context.Background(), get(srv.URL+tc.path+"?project=p.com&event=x+y"))
		if a.Class != tc.class || a.Status != tc.status {
			t.Errorf("%s: got %s %d (err %v), want %s %d", tc.path, a.Class, a.Status, a.Err, tc.class, tc.status)
		}
		if tc.class != Done && a.Reason() == "" {
			t.Errorf("%s: empty reason", tc.path)
		}
	}
}

func TestClientReasonAndResponseForDeadLetters(t *testing.T) {
	srv := statusServer(t, "")
	a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL+"/s/403"))
	if a.Reason() != "woopra answered 403 Forbidden" || a.Response() != "answer 403" {
		t.Fatalf("reason %q response %q", a.Reason(), a.Response())
	}
}

func TestClientRetryAfter(t *testing.T) {
	t.Run("seconds", func(t *testing.T) {
		srv := statusServer(t, "7")
		a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL+"/s/429"))
		if a.Class != Retry || a.RetryAfter != 7*time.Second {
			t.Fatalf("got %s RetryAfter %v, want retry 7s", a.Class, a.RetryAfter)
		}
	})
	t.Run("http-date", func(t *testing.T) {
		srv := statusServer(t, time.Now().Add(2*time.Hour).UTC().Format(http.TimeFormat))
		a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL+"/s/429"))
		if a.Class != Retry || a.RetryAfter < 2*time.Hour-5*time.Second || a.RetryAfter > 2*time.Hour {
			t.Fatalf("got %s RetryAfter %v, want retry ~2h", a.Class, a.RetryAfter)
		}
	})
	t.Run("on 503 too", func(t *testing.T) {
		srv := statusServer(t, "3")
		a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL+"/s/503"))
		if a.RetryAfter != 3*time.Second {
			t.Fatalf("RetryAfter %v, want 3s", a.RetryAfter)
		}
	})
	t.Run("ignored on a dead answer", func(t *testing.T) {
		srv := statusServer(t, "3")
		a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL+"/s/403"))
		if a.RetryAfter != 0 {
			t.Fatalf("RetryAfter %v on a 403", a.RetryAfter)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"soon":                          0,
		"-5":                            0,
		"0":                             0,
		" 120 ":                         2 * time.Minute,
		"999999999":                     24 * time.Hour,
		"Fri, 20 Nov 2026 09:00:30 GMT": 30 * time.Second,
		"Fri, 20 Nov 2026 08:00:00 GMT": 0, // in the past
	} {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestClientTimesOutAHangingDestination(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c := NewClient(ClientOptions{Timeout: 100 * time.Millisecond})
	a := c.Send(context.Background(), get(srv.URL+"/track/ce?project=p"))
	if a.Class != Retry || a.Status != 0 || a.Err == nil || !strings.Contains(a.Err.Error(), "timed out") {
		t.Fatalf("got %s %d err %v, want a retryable timeout", a.Class, a.Status, a.Err)
	}
	if a.Duration > 5*time.Second {
		t.Fatalf("attempt took %v with a 100ms timeout", a.Duration)
	}
	if calls.Load() != 1 {
		t.Fatalf("destination saw %d requests, want 1", calls.Load())
	}
}

func TestClientTimesOutASlowBody(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	a := NewClient(ClientOptions{Timeout: 100 * time.Millisecond}).Send(context.Background(), get(srv.URL))
	if a.Class != Retry || a.Err == nil || !strings.Contains(a.Err.Error(), "timed out") {
		t.Fatalf("got %s %d err %v, want a retryable timeout", a.Class, a.Status, a.Err)
	}
}

func TestClientConnectionRefusedIsRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	a := NewClient(ClientOptions{}).Send(context.Background(), get("http://"+addr+"/track/ce"))
	if a.Class != Retry || a.Status != 0 || a.Err == nil {
		t.Fatalf("got %s %d err %v, want retry with an error", a.Class, a.Status, a.Err)
	}
	if a.Response() == "" {
		t.Fatal("a transport error must leave its text as the response")
	}
}

func TestClientCancelledContextIsRetriedNotDead(t *testing.T) {
	srv := statusServer(t, "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a := NewClient(ClientOptions{}).Send(ctx, get(srv.URL+"/s/200"))
	if a.Class != Retry || !errors.Is(a.Err, context.Canceled) {
		t.Fatalf("got %s err %v, want retry with context.Canceled", a.Class, a.Err)
	}
}

func TestClientBadRequestsAreDead(t *testing.T) {
	c := NewClient(ClientOptions{})
	for _, r := range []queue.Request{
		get("/track/ce?project=p"),
		get("ftp://www.woopra.com/track/ce"),
		get("http://%zz"),
		{Method: "BAD METHOD", URL: "http://127.0.0.1:1/"},
	} {
		if a := c.Send(context.Background(), r); a.Class != Dead || a.Err == nil {
			t.Errorf("%v: got %s err %v, want dead", r, a.Class, a.Err)
		}
	}
}

func TestClientSendsTheEventsUserAgentAndQuery(t *testing.T) {
	var mu sync.Mutex
	var uas []string
	var queries []string
	var hasUA []bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_, ok := r.Header["User-Agent"]
		hasUA = append(hasUA, ok)
		uas = append(uas, r.UserAgent())
		queries = append(queries, r.URL.RawQuery)
	}))
	defer srv.Close()
	const ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"
	const q = "project=mywebsite.com&event=purchase&cv_email=jane.doe%40example.com&cv_name=Jane+Doe&ce_x=%E2%82%AC%26"
	c := NewClient(ClientOptions{})
	if a := c.Send(context.Background(), get(srv.URL+"/track/ce?"+q, queue.Header{Name: "User-Agent", Value: ua})); a.Class != Done {
		t.Fatalf("got %s %v", a.Class, a.Err)
	}
	if a := c.Send(context.Background(), get(srv.URL+"/track/ce?"+q)); a.Class != Done {
		t.Fatalf("got %s %v", a.Class, a.Err)
	}
	c2 := NewClient(ClientOptions{UserAgent: "woorelay-test"})
	if a := c2.Send(context.Background(), get(srv.URL+"/track/ce?"+q)); a.Class != Done {
		t.Fatalf("got %s %v", a.Class, a.Err)
	}
	mu.Lock()
	defer mu.Unlock()
	if uas[0] != ua {
		t.Errorf("User-Agent %q, want the event's", uas[0])
	}
	if hasUA[1] {
		t.Errorf("without a user agent the request must carry none, got %q", uas[1])
	}
	if uas[2] != "woorelay-test" {
		t.Errorf("User-Agent %q, want the configured default", uas[2])
	}
	for i, got := range queries {
		if got != q {
			t.Errorf("request %d query %q, want it byte for byte %q", i, got, q)
		}
	}
}

func TestClientTruncatesTheBody(t *testing.T) {
	big := strings.Repeat("x", 10_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		fmt.Fprint(w, big)
	}))
	defer srv.Close()
	a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL))
	if a.Class != Dead || len(a.Body) != 2048 || a.Body != big[:2048] {
		t.Fatalf("got %s with a %d-byte body, want dead with the first 2048 bytes", a.Class, len(a.Body))
	}
	a = NewClient(ClientOptions{MaxBody: 10}).Send(context.Background(), get(srv.URL))
	if len(a.Body) != 10 {
		t.Fatalf("MaxBody 10 kept %d bytes", len(a.Body))
	}
}

func TestClientNotRegisteredProjectIsDead(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "/*\nHost topgun.example.test not registered!\n*/")
	}))
	defer srv.Close()
	a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL))
	if a.Class != Dead || a.Status != 200 || !strings.Contains(a.Reason(), "not registered") {
		t.Fatalf("got %s %d %q, want dead", a.Class, a.Status, a.Reason())
	}
}

func TestClientReusesConnections(t *testing.T) {
	var newConns atomic.Int32
	big := strings.Repeat("y", 20_000) // more than MaxBody: the rest must be drained
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("big") != "" {
			fmt.Fprint(w, big)
			return
		}
		if r.URL.Query().Get("fail") != "" {
			w.WriteHeader(503)
		}
		fmt.Fprint(w, `{"success":1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := NewClient(ClientOptions{Conns: 4})
	for i := range 60 {
		u := srv.URL + "/track/ce?i=" + strconv.Itoa(i)
		switch i % 3 {
		case 1:
			u += "&big=1"
		case 2:
			u += "&fail=1"
		}
		if a := c.Send(context.Background(), get(u)); a.Err != nil {
			t.Fatalf("request %d: %v", i, a.Err)
		}
	}
	if n := newConns.Load(); n != 1 {
		t.Fatalf("60 sequential requests opened %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				c.Send(context.Background(), get(fmt.Sprintf("%s/track/ce?w=%d&i=%d", srv.URL, w, i)))
			}
		})
	}
	wg.Wait()
	if n := newConns.Load(); n > 4 {
		t.Fatalf("8 concurrent senders opened %d connections with Conns 4, want at most 4", n)
	}
}

// TestClientCancelEndsAnAttemptUnderWay: cancelling the context of an attempt that is waiting
// on a hanging destination ends it at once, as Retry naming the cancellation, and the Client
// still sends afterwards.
func TestClientCancelEndsAnAttemptUnderWay(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("hang") != "" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, `{"success":1}`)
	}))
	defer srv.Close()
	defer close(release)
	c := NewClient(ClientOptions{Timeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Attempt, 1)
	go func() { got <- c.Send(ctx, get(srv.URL+"/track/ce?hang=1")) }()
	<-arrived
	cancel()
	select {
	case a := <-got:
		if a.Class != Retry || !errors.Is(a.Err, context.Canceled) {
			t.Fatalf("got %s err %v, want retry with context.Canceled", a.Class, a.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the cancelled attempt was still under way after 10s")
	}
	if a := c.Send(context.Background(), get(srv.URL+"/track/ce")); a.Class != Done {
		t.Fatalf("after a cancellation: got %s %v, want done", a.Class, a.Err)
	}
}

// TestClientRefusesHeadersThatWouldSplitTheRequest: a mapped header value with a line break
// (or a name that is not a token) is dead at once; nothing reaches the destination.
func TestClientRefusesHeadersThatWouldSplitTheRequest(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer srv.Close()
	c := NewClient(ClientOptions{})
	for _, tc := range []struct {
		h    queue.Header
		says string // what the error must name
	}{
		{queue.Header{Name: "User-Agent", Value: "x\r\nX-Injected: 1"}, "a line break"},
		{queue.Header{Name: "X-Forwarded-For", Value: "1.2.3.4\n"}, "a line break"},
		{queue.Header{Name: "User-Agent", Value: "UA\x00/1.0"}, "a NUL byte"},
		{queue.Header{Name: "Bad Name", Value: "v"}, "not an HTTP token"},
		{queue.Header{Name: "", Value: "v"}, "not an HTTP token"},
	} {
		a := c.Send(context.Background(), get(srv.URL+"/track/ce", tc.h))
		if a.Class != Dead || a.Err == nil {
			t.Errorf("header %q: %q: got %s err %v, want dead", tc.h.Name, tc.h.Value, a.Class, a.Err)
			continue
		}
		if msg := a.Err.Error(); !strings.Contains(msg, tc.says) || tc.says != "a line break" && strings.Contains(msg, "line break") {
			t.Errorf("header %q: %q: the error says %q; want it to name %s and nothing else", tc.h.Name, tc.h.Value, msg, tc.says)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("the destination saw %d requests", n)
	}
}

// TestClientFollowsASeeOtherWithGet: a 303 is followed with GET, whatever the method was.
func TestClientFollowsASeeOtherWithGet(t *testing.T) {
	var methods []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		methods = append(methods, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/first" {
			http.Redirect(w, r, "/second?x=1", http.StatusSeeOther)
		}
	}))
	defer srv.Close()
	a := NewClient(ClientOptions{}).Send(context.Background(), queue.Request{Method: "POST", URL: srv.URL + "/first"})
	mu.Lock()
	defer mu.Unlock()
	if a.Class != Done || strings.Join(methods, ", ") != "POST /first, GET /second" {
		t.Fatalf("got %s %d, requests %v", a.Class, a.Status, methods)
	}
}
