package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// End-to-end tests of the edge's faults on a real `woorelay serve`: slow bodies that used to
// hold every in-flight slot, clients that hang up before the answer, and events whose fields
// are not what the SDKs send.

// keyedE2E starts serve with one source whose write key is good-key.
func keyedE2E(t *testing.T) (*e2e, *proc) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "woorelay.yaml")
	if err := os.WriteFile(cfg, []byte("sources:\n  - name: web\n    write_key: good-key\n    preset: default\n    settings: {project: p.example.com}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	x := newE2E(t, "--config", cfg)
	return x, x.start()
}

// metricValue returns the value of the sample of /metrics whose name and labels start with
// prefix (e.g. `woorelay_ingest_requests_total{outcome="ok"`), summed over the matches; -1
// when there is none.
func metricValue(t *testing.T, url, prefix string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum, found := 0.0, false
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		return -1
	}
	return sum
}

// TestSlowBodiesDoNotLockOutKeyedClients: 1,100 connections without a write key header
// dribble their bodies a byte a second. Clients with a good key in their header are answered
// 200 meanwhile, every event they were acknowledged for reaches Woopra, and once the slow
// clients leave, a client with its key in the body is admitted again: no restart.
func TestSlowBodiesDoNotLockOutKeyedClients(t *testing.T) {
	const slow = 1100 // more than the 1,024 in-flight slots
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < slow+500 {
		t.Skipf("this test opens %d connections; the open-file limit is %d (raise it with ulimit -n)", slow, lim.Cur)
	}
	x, p := keyedE2E(t)
	addr := strings.TrimPrefix(p.url, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	head := []byte("POST /v1/batch HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n{\"batch\":[")
	for i := 0; i < slow; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		if _, err := c.Write(head); err != nil {
			t.Fatalf("slow connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	var dribbling sync.WaitGroup
	dribbling.Add(1)
	go func() { // a byte a second on every slow connection, until stop
		defer dribbling.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, c := range conns {
					c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					c.Write([]byte(" "))
				}
			}
		}
	}()
	waitFor(t, 30*time.Second, "the slow clients filling the unauthenticated slots", func() bool {
		return metricValue(t, p.url, "woorelay_ingest_unauthenticated_requests ") >= 256 ||
			metricValue(t, p.url, "woorelay_ingest_in_flight_requests ") >= 1024
	})

	// Keyed clients are admitted while the slow ones dribble, for two of their seconds.
	l := newLedger()
	client := &http.Client{Timeout: 30 * time.Second}
	for i := 0; i < 20; i++ {
		time.Sleep(100 * time.Millisecond)
		body, ids := l.batch(10, 5)
		if status := l.send(client, p.url, "good-key", body, ids); status != 200 {
			t.Fatalf("keyed batch %d while 1,100 slow bodies dribble: answered %d (answers %v); want 200", i, status, l.statuses)
		}
	}
	if n := metricValue(t, p.url, "woorelay_ingest_in_flight_requests "); n != 0 {
		t.Errorf("%v in-flight slots are held while only unauthenticated clients are connected; want 0", n)
	}

	// The slow clients leave; an SDK that sends its key in the body is admitted again.
	close(stop)
	dribbling.Wait()
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	waitFor(t, 30*time.Second, "the unauthenticated slots freed", func() bool {
		return metricValue(t, p.url, "woorelay_ingest_unauthenticated_requests ") == 0
	})
	body := `{"writeKey":"good-key","batch":[{"type":"track","event":"Body Key","userId":"b1","messageId":"body-key-1","properties":{"mid":"body-key-1"}}]}`
	resp, err := http.Post(p.url+"/v1/batch", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a body-key request after the slow clients left: %d", resp.StatusCode)
	}
	for i := 0; i < 5; i++ {
		body, ids := l.batch(10, 5)
		if status := l.send(client, p.url, "good-key", body, ids); status != 200 {
			t.Fatalf("keyed batch after the slow clients left: %d", status)
		}
	}
	l.issued["body-key-1"], l.acked["body-key-1"] = true, true
	x.waitDelivered(l, time.Minute)
	c := x.drained(p)
	if c.Received != 251 {
		t.Errorf("counters %+v; want the 251 acknowledged events received", c)
	}
}

// TestHangUpsAreStoredAndCounted: 300 clients write a whole event and close their sockets at
// once, as browsers do on navigation. Every event is stored and delivered; the requests are
// counted ok or client_closed, never as a store failure; the events metric counts all 300.
func TestHangUpsAreStoredAndCounted(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	addr := strings.TrimPrefix(p.url, "http://")
	const n = 300
	l := newLedger()
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		mid := fmt.Sprintf("beacon-%d", i)
		l.issued[mid], l.acked[mid] = true, true // the events are the obligation, though no answer is read
		body := fmt.Sprintf(`{"event":"Left","anonymousId":"v%d","messageId":%q,"properties":{"mid":%q}}`, i%20, mid, mid)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			fmt.Fprintf(c, "POST /v1/track HTTP/1.1\r\nHost: relay\r\nAuthorization: Basic YW55LWtleTo=\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			c.Close()
		}()
	}
	wg.Wait()
	x.waitDelivered(l, time.Minute)
	const req = `woorelay_ingest_requests_total{outcome="`
	waitFor(t, 30*time.Second, "every request counted", func() bool {
		return metricValue(t, p.url, req+`ok"`)+metricValue(t, p.url, req+`client_closed"`) >= n-1 // -1 stands for an absent series
	})
	ok, closed := max(0, metricValue(t, p.url, req+`ok"`)), max(0, metricValue(t, p.url, req+`client_closed"`))
	if ok+closed != n {
		t.Errorf("%v requests counted ok and %v client_closed; want %d in all", ok, closed, n)
	}
	if v := metricValue(t, p.url, req+`store_timeout"`); v > 0 {
		t.Errorf("%v hang-ups counted store_timeout", v)
	}
	if v := metricValue(t, p.url, `woorelay_ingest_events_total{outcome="queued"`); v != n {
		t.Errorf("woorelay_ingest_events_total{outcome=\"queued\"} is %v; want %d, every event stored", v, n)
	}
	if c := x.drained(p); c.Received != n || c.Delivered != n {
		t.Errorf("counters %+v; want %d received and delivered", c, n)
	}
	t.Logf("%d hang-ups: %v counted ok, %v client_closed, all %d events delivered", n, ok, closed, n)
}

// TestEdgeSemantics: a numeric messageId is kept as its text, so an SDK's retry is a
// duplicate; an unknown type is a dead letter listed in the answer; an absurd timestamp goes
// to Woopra as the time the event was received, not as it was sent.
func TestEdgeSemantics(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	post := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", p.url+"/v1/batch", strings.NewReader(body))
		req.SetBasicAuth("any-key", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	numeric := `{"batch":[{"type":"track","event":"Numeric","userId":"n1","messageId":4242,"properties":{"mid":"numeric"}}]}`
	for i := 0; i < 2; i++ { // the SDK's retry
		if status, body := post(numeric); status != 200 {
			t.Fatalf("numeric messageId: %d %s", status, body)
		}
	}
	status, body := post(`{"batch":[{"type":"track","event":"Fine","userId":"u1","properties":{"mid":"fine"}},` +
		`{"type":"trak","event":"Typo","userId":"u1","properties":{"mid":"typo"}},` +
		`{"type":"track","event":"Old","userId":"u2","timestamp":-99999999999999999,"properties":{"mid":"old"}}]}`)
	if status != 200 || !strings.Contains(body, `"rejected":[{"index":1,"code":"unknown_type"`) || !strings.Contains(body, `"adjusted":[{"index":2,"code":"timestamp_out_of_range"`) {
		t.Fatalf("answer %d %s", status, body)
	}
	sent := time.Now()
	waitFor(t, 30*time.Second, "the events at the emulator", func() bool {
		d := x.delivered()
		return d["numeric"] >= 1 && d["fine"] == 1 && d["old"] == 1
	})
	c := x.drained(p)
	if d := x.delivered(); d["numeric"] != 1 || d["typo"] != 0 {
		t.Errorf("deliveries %v; want the numeric messageId once and the typo never", d)
	}
	if c.Duplicates != 1 || c.DeadLettered != 1 {
		t.Errorf("counters %+v; want 1 duplicate (the retry) and 1 dead letter (the typo)", c)
	}
	digits := regexp.MustCompile(`^[0-9]{13}$`)
	for _, r := range x.em.Requests() {
		if r.Params.Get("ce_mid") != "old" {
			continue
		}
		ts := r.Params.Get("timestamp")
		ms, _ := strconv.ParseInt(ts, 10, 64)
		if !digits.MatchString(ts) || time.UnixMilli(ms).Sub(sent).Abs() > time.Minute {
			t.Errorf("the absurd timestamp went to Woopra as %q; want the time it was received", ts)
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"dlq", "--server", p.admin, "list"}, nil, &out, &errb); code != 0 || !strings.Contains(out.String(), "unknown_type") {
		t.Errorf("dlq list: exit %d, want the unknown_type dead letter:\n%s%s", code, out.String(), errb.String())
	}
}
