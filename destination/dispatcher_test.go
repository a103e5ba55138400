package destination

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/woorelay/woorelay/queue"
)

// resp is one scripted answer; status 0 is a transport error.
type resp struct {
	status int
	ra     time.Duration
	body   string
}

// scriptSender answers each URL from its script (the last answer repeats) and records every
// send, checking that no request is sent again after it succeeded.
type scriptSender struct {
	mu          sync.Mutex
	scripts     map[string][]resp
	fallback    resp
	calls       map[string]int
	succeeded   map[string]bool
	byVisitor   map[string][]int // event index (query i) of every send, per visitor (query v)
	sends       int
	inflight    int
	maxInflight int
	violations  []string
	hold        func(ctx context.Context, u string) error // optional: runs before answering
}

func newScriptSender() *scriptSender {
	return &scriptSender{
		scripts:   map[string][]resp{},
		fallback:  resp{status: 200, body: `{"success":1}`},
		calls:     map[string]int{},
		succeeded: map[string]bool{},
		byVisitor: map[string][]int{},
	}
}

func (s *scriptSender) Send(ctx context.Context, r queue.Request) Attempt {
	u, _ := url.Parse(r.URL)
	v, i := u.Query().Get("v"), u.Query().Get("i")
	idx, _ := strconv.Atoi(i)
	s.mu.Lock()
	n := s.calls[r.URL]
	s.calls[r.URL]++
	s.sends++
	if s.succeeded[r.URL] {
		s.violations = append(s.violations, "sent again after it succeeded: "+r.URL)
	}
	s.byVisitor[v] = append(s.byVisitor[v], idx)
	script, ok := s.scripts[r.URL]
	a := s.fallback
	if ok {
		a = script[min(n, len(script)-1)]
	}
	s.inflight++
	s.maxInflight = max(s.maxInflight, s.inflight)
	hold := s.hold
	s.mu.Unlock()

	var err error
	if hold != nil {
		err = hold(ctx, r.URL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inflight--
	if err != nil {
		return Attempt{Class: Retry, Err: err}
	}
	if a.status == 0 {
		return Attempt{Class: Retry, Err: errors.New("connection refused")}
	}
	at := Attempt{Class: classify(a.status), Status: a.status, RetryAfter: a.ra, Body: a.body}
	if at.Class == Done {
		s.succeeded[r.URL] = true
	}
	return at
}

func (s *scriptSender) script(u string, rs ...resp) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts[u] = rs
}

func (s *scriptSender) count(u string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[u]
}

func (s *scriptSender) totalSends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends
}

func (s *scriptSender) check(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.violations {
		t.Error(v)
	}
}

func evURL(visitor string, i int) string {
	return fmt.Sprintf("http://woopra.test/track/ce?project=p.com&v=%s&i=%d", visitor, i)
}

func req(u string) queue.Request { return queue.Request{Method: "GET", URL: u} }

func fastOpts() DispatcherOptions {
	return DispatcherOptions{
		Workers: 8, Window: 256, PerVisitor: 16,
		Backoff: Backoff{Min: time.Millisecond, Max: 5 * time.Millisecond},
		Rescan:  50 * time.Millisecond,
		Logger:  slog.New(slog.DiscardHandler),
	}
}

// start runs d until the returned stop is called (or the test ends); stop returns Run's error.
func start(t *testing.T, d *Dispatcher) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func drained(q *fakeQueue) func() bool { return func() bool { return q.Counters().Queued == 0 } }

func checkQueue(t *testing.T, q *fakeQueue) {
	t.Helper()
	for _, v := range q.problems() {
		t.Error(v)
	}
	if c := q.Counters(); !c.Reconciles() {
		t.Errorf("counters do not reconcile: %+v", c)
	}
}

// TestDispatcherOrderingWithScriptedFailures is the per-visitor ordering test: 50 visitors ×
// 40 events, each with a scripted answer sequence.
func TestDispatcherOrderingWithScriptedFailures(t *testing.T) {
	const visitors, events = 50, 40
	scripts := [][]resp{
		{{status: 200}},
		{{status: 202}},
		{{status: 200}},
		{{status: 204}},
		{{status: 500}, {status: 500}, {status: 200}},
		{{status: 403, body: "forbidden"}},
		{{status: 500}, {status: 403, body: "forbidden later"}},
		{{status: 429, ra: 2 * time.Millisecond}, {status: 200}},
		{{status: 0}, {status: 200}},
		{{status: 408}, {status: 503, ra: time.Millisecond}, {status: 200}},
	}
	kind := func(v, i int) int { return (v*7 + i*3) % len(scripts) }
	q := newFakeQueue()
	s := newScriptSender()
	seqs := map[string]uint64{}
	for i := range events {
		for v := range visitors {
			u := evURL("v"+strconv.Itoa(v), i)
			s.script(u, scripts[kind(v, i)]...)
			seqs[u] = q.add("v"+strconv.Itoa(v), req(u))
		}
	}
	opts := fastOpts()
	opts.PerVisitor = 4 // most visitors overflow their lane: exercises reloading in order
	opts.Window = 64
	d := NewDispatcher(q, s, opts)
	stop := start(t, d)
	waitFor(t, "every event to be delivered or dead-lettered", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s.check(t)
	checkQueue(t, q)

	var wantDelivered, wantDead int64
	for v := range visitors {
		name := "v" + strconv.Itoa(v)
		sent := s.byVisitor[name]
		for j := 1; j < len(sent); j++ {
			if sent[j] < sent[j-1] {
				t.Fatalf("visitor %s: event %d sent after event %d (sends %v)", name, sent[j], sent[j-1], sent)
			}
		}
		for i := range events {
			u := evURL(name, i)
			k := kind(v, i)
			if got, want := s.count(u), len(scripts[k]); got != want {
				t.Errorf("%s: sent %d times, want %d (script %v)", u, got, want, scripts[k])
			}
			f, dead := q.failure(seqs[u])
			switch k {
			case 5, 6:
				wantDead++
				if !dead {
					t.Errorf("%s: not dead-lettered", u)
					continue
				}
				wantAttempts, wantBody := 1, "forbidden"
				if k == 6 {
					wantAttempts, wantBody = 2, "forbidden later"
				}
				if f.Status != 403 || f.Attempts != wantAttempts || f.Response != wantBody ||
					f.Request != "GET "+u || f.Reason != "woopra answered 403 Forbidden" {
					t.Errorf("%s: failure %+v", u, f)
				}
				if r := q.retries(seqs[u]); r != wantAttempts-1 {
					t.Errorf("%s: %d retries recorded, want %d", u, r, wantAttempts-1)
				}
			default:
				wantDelivered++
				if dead {
					t.Errorf("%s: dead-lettered (%+v), want delivered", u, f)
				}
			}
		}
	}
	c := q.Counters()
	if c.Delivered != wantDelivered || c.DeadLettered != wantDead || c.Queued != 0 {
		t.Errorf("counters %+v, want %d delivered and %d dead", c, wantDelivered, wantDead)
	}
	// Done was called in Seq order within each visitor.
	last := map[string]uint64{}
	for _, seq := range q.done {
		for u, sq := range seqs {
			if sq == seq {
				v := strings.Split(strings.Split(u, "v=")[1], "&")[0]
				if seq < last[v] {
					t.Errorf("visitor %s: seq %d done after %d", v, seq, last[v])
				}
				last[v] = seq
			}
		}
	}
}

// TestDispatcherHotVisitorDoesNotBlockOthers: one visitor with 1,000 items whose every attempt
// fails, queued before everyone else, must not stop ten others from being delivered.
func TestDispatcherHotVisitorDoesNotBlockOthers(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	var hot []uint64
	for i := range 1000 {
		u := evURL("hot", i)
		s.script(u, resp{status: 503})
		hot = append(hot, q.add("hot", req(u)))
	}
	for i := range 50 {
		for v := range 10 {
			q.add("o"+strconv.Itoa(v), req(evURL("o"+strconv.Itoa(v), i)))
		}
	}
	opts := fastOpts()
	opts.Window, opts.PerVisitor = 32, 4
	d := NewDispatcher(q, s, opts)

	var maxLoaded int
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-sampling:
				return
			default:
			}
			maxLoaded = max(maxLoaded, d.Stats().Loaded)
			time.Sleep(time.Millisecond)
		}
	}()
	stop := start(t, d)
	waitFor(t, "the other visitors' 500 events", func() bool { return q.Counters().Delivered == 500 })
	for _, seq := range hot {
		if !q.isPending(seq) {
			t.Fatalf("hot item %d left the queue while its destination fails", seq)
		}
	}
	if q.retries(hot[0]) < 2 {
		t.Fatalf("the hot visitor's head was retried %d times, want it retrying throughout", q.retries(hot[0]))
	}
	for _, seq := range hot[1:] {
		if q.retries(seq) != 0 {
			t.Fatalf("hot item %d was attempted before the one ahead of it was delivered", seq)
		}
	}

	// The destination recovers for the hot visitor: its backlog drains, in order, through
	// ScanVisitor reloads.
	for i := range 1000 {
		s.script(evURL("hot", i), resp{status: 200})
	}
	waitFor(t, "the hot visitor's backlog", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	close(sampling)
	<-sampled
	if maxLoaded > opts.Window {
		t.Errorf("held %d items in memory, window is %d", maxLoaded, opts.Window)
	}
	s.check(t)
	checkQueue(t, q)
	sent := s.byVisitor["hot"]
	for j := 1; j < len(sent); j++ {
		if sent[j] < sent[j-1] {
			t.Fatalf("hot visitor: event %d sent after event %d", sent[j], sent[j-1])
		}
	}
	if c := q.Counters(); c.Delivered != 1500 {
		t.Errorf("delivered %d, want 1500", c.Delivered)
	}
}

type skewClock struct {
	mu  sync.Mutex
	off time.Duration
}

func (c *skewClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *skewClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

func TestDispatcherRetryWindowExhaustedDeadLetters(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	u := evURL("a", 0)
	s.script(u, resp{status: 500, body: "down"}, resp{status: 502, body: "still down"})
	seq := q.add("a", req(u))
	next := q.add("a", req(evURL("a", 1)))
	clock := &skewClock{}
	opts := fastOpts()
	opts.RetryWindow, opts.Clock = time.Hour, clock
	stop := start(t, NewDispatcher(q, s, opts))
	waitFor(t, "two retries", func() bool { return q.retries(seq) >= 2 })
	clock.advance(2 * time.Hour)
	waitFor(t, "the dead letter", func() bool { _, ok := q.failure(seq); return ok })
	waitFor(t, "the visitor's next event", func() bool { return !q.isPending(next) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f, _ := q.failure(seq)
	if f.Status != 502 || f.Response != "still down" || f.Request != "GET "+u ||
		!strings.HasPrefix(f.Reason, "retry window of 1h0m0s exhausted after") || f.Attempts != s.count(u) {
		t.Errorf("failure %+v after %d sends", f, s.count(u))
	}
	checkQueue(t, q)
}

func TestDispatcherRetryWindowSurvivesRestart(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	u := evURL("a", 0)
	s.script(u, resp{status: 503, body: "busy"})
	seq := q.add("a", req(u))
	q.setItem(seq, func(it *queue.Item) { it.Attempts, it.FirstAttempt = 5, time.Now().Add(-5*time.Hour) })
	stop := start(t, NewDispatcher(q, s, fastOpts())) // default window: 4h
	waitFor(t, "the dead letter", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	f, ok := q.failure(seq)
	if !ok || f.Attempts != 6 || s.count(u) != 1 || q.retries(seq) != 0 || !strings.Contains(f.Reason, "4h0m0s") {
		t.Errorf("failure %+v (dead %v) after %d sends and %d retries", f, ok, s.count(u), q.retries(seq))
	}
}

// TestDispatcher429PausesAllSending: a 429 with Retry-After holds back every visitor, not only
// the one that got it, and is never dead-lettered for it.
func TestDispatcher429PausesAllSending(t *testing.T) {
	const ra = 200 * time.Millisecond
	q := newFakeQueue()
	s := newScriptSender()
	var mu sync.Mutex
	var got429 time.Time
	var firstOther time.Time
	a0 := evURL("a", 0)
	s.script(a0, resp{status: 429, ra: ra}, resp{status: 200})
	s.hold = func(_ context.Context, u string) error {
		mu.Lock()
		defer mu.Unlock()
		if u == a0 && got429.IsZero() {
			got429 = time.Now()
		}
		if strings.Contains(u, "v=b") && firstOther.IsZero() {
			firstOther = time.Now()
		}
		return nil
	}
	seq := q.add("a", req(a0))
	reg := prometheus.NewRegistry()
	opts := fastOpts()
	opts.Registerer = reg
	d := NewDispatcher(q, s, opts)
	stop := start(t, d)
	waitFor(t, "the 429", func() bool { return q.retries(seq) == 1 })
	if d.Stats().PausedUntil.IsZero() && time.Since(got429) < ra/2 {
		t.Error("Stats does not show the pause")
	}
	for i := range 5 {
		q.add("b", req(evURL("b", i)))
	}
	waitFor(t, "everything", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	gap := firstOther.Sub(got429)
	mu.Unlock()
	if gap < ra {
		t.Errorf("another visitor was sent %v after a 429 asking for %v", gap, ra)
	}
	if _, dead := q.failure(seq); dead || s.count(a0) != 2 {
		t.Errorf("the 429 event: dead %v, sent %d times; want delivered on the second attempt", dead, s.count(a0))
	}
	if v := metricValue(t, reg, "woorelay_delivery_pauses_total", nil); v != 1 {
		t.Errorf("pauses_total %v, want 1", v)
	}
	if v := metricValue(t, reg, "woorelay_delivery_attempts_total", map[string]string{"class": "retry", "status": "429"}); v != 1 {
		t.Errorf("attempts_total{retry,429} %v, want 1", v)
	}
}

func TestDispatcherMultiRequestEntriesResumeAtNextRequest(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	r0, r1, r2 := evURL("m", 0), evURL("m", 1), evURL("m", 2)
	s.script(r1, resp{status: 500}, resp{status: 500}, resp{status: 200})
	seq := q.add("m", req(r0), req(r1), req(r2))
	stop := start(t, NewDispatcher(q, s, fastOpts()))
	waitFor(t, "delivery", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s.count(r0) != 1 || s.count(r1) != 3 || s.count(r2) != 1 {
		t.Errorf("sends %d/%d/%d, want 1/3/1: a retry must resend only the failed request", s.count(r0), s.count(r1), s.count(r2))
	}
	if p := q.progress[seq]; len(p) != 2 || p[0] != 1 || p[1] != 2 {
		t.Errorf("Progress calls %v, want [1 2]", p)
	}
	s.check(t)
	checkQueue(t, q)

	// After a restart, an entry whose first two requests were recorded sends only the third.
	q2 := newFakeQueue()
	s2 := newScriptSender()
	seq = q2.add("m", req(r0), req(r1), req(r2))
	q2.setItem(seq, func(it *queue.Item) { it.NextRequest = 2 })
	stop = start(t, NewDispatcher(q2, s2, fastOpts()))
	waitFor(t, "delivery", drained(q2))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if s2.count(r0) != 0 || s2.count(r1) != 0 || s2.count(r2) != 1 {
		t.Errorf("after restart sends %d/%d/%d, want 0/0/1", s2.count(r0), s2.count(r1), s2.count(r2))
	}
	checkQueue(t, q2)
}

// holdFor is a scriptSender hold that answers after d (or when ctx ends).
func holdFor(d time.Duration) func(ctx context.Context, _ string) error {
	return func(ctx context.Context, _ string) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestDispatcherRunReturnsAfterCancelWithNothingInFlight(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	s.hold = holdFor(20 * time.Millisecond)
	for i := range 40 {
		for v := range 10 {
			q.add("v"+strconv.Itoa(v), req(evURL("v"+strconv.Itoa(v), i)))
		}
	}
	stop := start(t, NewDispatcher(q, s, fastOpts()))
	waitFor(t, "some sends", func() bool { return s.totalSends() >= 10 })
	if err := stop(); err != nil {
		t.Fatalf("clean stop returned %v", err)
	}
	s.mu.Lock()
	inflight, sends := s.inflight, s.sends
	s.mu.Unlock()
	if inflight != 0 {
		t.Fatalf("Run returned with %d attempts in flight", inflight)
	}
	time.Sleep(50 * time.Millisecond)
	if s.totalSends() != sends {
		t.Fatal("a send started after Run returned")
	}
	c := q.Counters()
	if c.Delivered != int64(sends) || c.Queued != int64(400-sends) || c.DeadLettered != 0 {
		t.Errorf("counters %+v after %d sends: every attempt under way at cancel must finish and be recorded", c, sends)
	}
	checkQueue(t, q)
}

func TestDispatcherDrainTimeoutAbandonsHangingAttempts(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	s.hold = func(ctx context.Context, _ string) error { <-ctx.Done(); return ctx.Err() }
	var seqs []uint64
	for v := range 3 {
		seqs = append(seqs, q.add("v"+strconv.Itoa(v), req(evURL("v"+strconv.Itoa(v), 0))))
	}
	opts := fastOpts()
	opts.DrainTimeout = 50 * time.Millisecond
	d := NewDispatcher(q, s, opts)
	stop := start(t, d)
	waitFor(t, "three attempts under way", func() bool { return d.Stats().InFlight == 3 })
	err := stop()
	if err == nil || !strings.Contains(err.Error(), "drain timeout") {
		t.Fatalf("Run returned %v, want a drain-timeout error", err)
	}
	for _, seq := range seqs {
		if !q.isPending(seq) || q.retries(seq) != 0 {
			t.Errorf("item %d: pending %v, retries %d; an abandoned attempt must leave it untouched", seq, q.isPending(seq), q.retries(seq))
		}
	}
	checkQueue(t, q)
}

func TestDispatcherRestartResumes(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	s.hold = func(context.Context, string) error { time.Sleep(time.Millisecond); return nil }
	for i := range 30 {
		for v := range 5 {
			u := evURL("v"+strconv.Itoa(v), i)
			if i%7 == 3 {
				s.script(u, resp{status: 500}, resp{status: 200})
			}
			q.add("v"+strconv.Itoa(v), req(u))
		}
	}
	opts := fastOpts()
	opts.Workers, opts.PerVisitor = 2, 4
	stop := start(t, NewDispatcher(q, s, opts))
	waitFor(t, "a first part", func() bool { return q.Counters().Delivered >= 40 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if q.Counters().Queued == 0 {
		t.Fatal("the first run delivered everything; the test proves nothing")
	}
	stop = start(t, NewDispatcher(q, s, opts))
	waitFor(t, "the rest", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	s.check(t)
	checkQueue(t, q)
	for v := range 5 {
		sent := s.byVisitor["v"+strconv.Itoa(v)]
		for j := 1; j < len(sent); j++ {
			if sent[j] < sent[j-1] {
				t.Fatalf("visitor v%d: event %d sent after event %d across the restart", v, sent[j], sent[j-1])
			}
		}
	}
	if c := q.Counters(); c.Delivered != 150 {
		t.Errorf("delivered %d, want 150", c.Delivered)
	}
}

func TestDispatcherOrderingScope(t *testing.T) {
	// Items of one visitor are never in flight together; items without a visitor may be.
	for _, tc := range []struct {
		visitor  string
		parallel bool
	}{{"same", false}, {"", true}} {
		q := newFakeQueue()
		s := newScriptSender()
		both := make(chan struct{})
		var once sync.Once
		s.hold = func(ctx context.Context, _ string) error {
			s.mu.Lock()
			n := s.inflight
			s.mu.Unlock()
			if n >= 2 {
				once.Do(func() { close(both) })
			}
			select {
			case <-both:
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
			}
			return nil
		}
		for i := range 6 {
			q.add(tc.visitor, req(evURL("x", i)))
		}
		stop := start(t, NewDispatcher(q, s, fastOpts()))
		waitFor(t, "delivery", drained(q))
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := s.maxInflight > 1; got != tc.parallel {
			t.Errorf("visitor %q: %d in flight at once; parallel %v, want %v", tc.visitor, s.maxInflight, got, tc.parallel)
		}
		checkQueue(t, q)
	}
}

func TestDispatcherQueueWriteFailureStopsDelivery(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	seq := q.add("a", req(evURL("a", 0)))
	q.add("a", req(evURL("a", 1)))
	q.failWrites = errors.New("disk on fire")
	d := NewDispatcher(q, s, fastOpts())
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "disk on fire") || !strings.Contains(err.Error(), "restart") {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run kept going with a queue that cannot record outcomes")
	}
	if !q.isPending(seq) || s.count(evURL("a", 1)) != 0 {
		t.Fatal("the item must stay pending and the visitor's next event must wait")
	}
}

func TestDispatcherNonDeliverEntryIsDeadLettered(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	seq := q.add("a", req(evURL("a", 0)))
	q.setItem(seq, func(it *queue.Item) { it.Entry.Outcome = queue.Rejected })
	empty := q.add("b") // no requests and no Map: never counted as delivered
	stop := start(t, NewDispatcher(q, s, fastOpts()))
	waitFor(t, "both", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if f, ok := q.failure(seq); !ok || !strings.Contains(f.Reason, "rejected") {
		t.Errorf("failure %+v, dead %v", f, ok)
	}
	if f, ok := q.failure(empty); !ok || !strings.Contains(f.Reason, "DispatcherOptions.Map") || s.totalSends() != 0 {
		t.Errorf("an entry without requests: failure %+v, dead %v, %d sends", f, ok, s.totalSends())
	}
	if c := q.Counters(); c.Delivered != 0 {
		t.Errorf("counters %+v: nothing was delivered", c)
	}
	checkQueue(t, q)
}

func TestDispatcherMapsUnmappedEntriesAtDelivery(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	add := func(v, event string) uint64 {
		_, _ = q.Append(context.Background(), []queue.Entry{{Visitor: v, Event: []byte(event)}})
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.seq
	}
	retried := add("a", "retry")
	s.script(evURL("a", 0), resp{status: 500}, resp{status: 500}, resp{status: 200})
	sent := add("a", "send")
	filtered := add("b", "filter")
	broken := add("b", "broken")
	var mu sync.Mutex
	maps := map[string]int{}
	opts := fastOpts()
	opts.Map = func(e queue.Entry) ([]queue.Request, string, error) {
		mu.Lock()
		maps[string(e.Event)]++
		mu.Unlock()
		switch string(e.Event) {
		case "retry":
			return []queue.Request{req(evURL("a", 0))}, "", nil
		case "send":
			return []queue.Request{req(evURL("a", 1)), req(evURL("a", 2))}, "", nil
		case "filter":
			return nil, "consent: analytics denied", nil
		}
		return nil, "", errors.New("missing_required: event")
	}
	stop := start(t, NewDispatcher(q, s, opts))
	waitFor(t, "everything", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if maps["retry"] != 1 {
		t.Errorf("an event retried twice was mapped %d times, want once", maps["retry"])
	}
	if q.isPending(retried) || q.isPending(sent) || s.count(evURL("a", 1)) != 1 || s.count(evURL("a", 2)) != 1 {
		t.Error("mapped requests were not all delivered once")
	}
	if len(q.filtered) != 1 || q.filtered[0] != filtered {
		t.Errorf("Filter calls %v, want [%d]", q.filtered, filtered)
	}
	if f, ok := q.failure(broken); !ok || f.Reason != "mapping at delivery: missing_required: event" {
		t.Errorf("mapping error: failure %+v, dead %v", f, ok)
	}
	if c := q.Counters(); c.Delivered != 2 || c.Filtered != 1 || c.DeadLettered != 1 {
		t.Errorf("counters %+v", c)
	}
	s.check(t)
	checkQueue(t, q)
}

func TestDispatcherRunTwiceAndDuplicateMetrics(t *testing.T) {
	q := newFakeQueue()
	reg := prometheus.NewRegistry()
	d := NewDispatcher(q, newScriptSender(), DispatcherOptions{Registerer: reg})
	stop := start(t, d)
	q.add("a", req(evURL("a", 0)))
	waitFor(t, "the first Run to deliver", drained(q)) // so it is running
	if err := d.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "Run called twice") {
		t.Errorf("second Run: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	err := NewDispatcher(q, newScriptSender(), DispatcherOptions{Registerer: reg}).Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "own prometheus.Registerer") {
		t.Errorf("duplicate registration: Run returned %v", err)
	}
	q.add("a", req(evURL("a", 1)))
	if v := metricValue(t, reg, "woorelay_queue_backlog", nil); v != 1 {
		t.Errorf("backlog gauge %v, want 1", v)
	}
}

// metricValue reads one counter or gauge from the registry; labels select the series.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue series
				}
			}
			return value(m)
		}
	}
	t.Fatalf("metric %s %v not found", name, labels)
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// TestDispatcherRefillsInChunks drains a backlog far larger than the window: once the window
// is full, it is refilled a chunk at a time, not one item per finished attempt, so the queue
// is read a few times per window instead of once per delivered event.
func TestDispatcherRefillsInChunks(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	const n = 4000
	for i := range n {
		v := "v" + strconv.Itoa(i%200)
		q.add(v, req(evURL(v, i/200)))
	}
	opts := fastOpts() // window 256: refilled 64 at a time
	d := NewDispatcher(q, s, opts)
	stop := start(t, d)
	waitFor(t, "the backlog to drain", drained(q))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkQueue(t, q)
	s.check(t)
	q.mu.Lock()
	scans := q.scans
	q.mu.Unlock()
	// n/64 chunks, plus the scans that find nothing more and the safety-net rescans.
	if limit := 2 * n / (opts.Window / 4); scans > limit {
		t.Fatalf("%d scans for %d items with a window of %d, want at most %d", scans, n, opts.Window, limit)
	}
}

// ownerQueue is a fake queue shared with another process: items of the visitors in gone have
// moved to it, and those in paused may not be attempted for now (queue.Owner).
type ownerQueue struct {
	*fakeQueue
	gone      map[string]bool
	paused    map[uint64]bool
	forgotten map[uint64]bool // items whose partition left: recording their outcome is a no-op
	answers   map[queue.Ownership]int
}

func newOwnerQueue() *ownerQueue {
	return &ownerQueue{fakeQueue: newFakeQueue(), gone: map[string]bool{}, paused: map[uint64]bool{},
		forgotten: map[uint64]bool{}, answers: map[queue.Ownership]int{}}
}

// left reports whether seq's partition left this process. An attempt under way when it left
// ends with an outcome the shared queue no longer holds the item for; like jetstream.Queue,
// the fake records nothing and reports no error (the new owner delivers the item).
func (q *ownerQueue) left(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.forgotten[seq]
}

func (q *ownerQueue) Done(seq uint64) error {
	if q.left(seq) {
		return nil
	}
	return q.fakeQueue.Done(seq)
}

func (q *ownerQueue) Filter(seq uint64, reason string) error {
	if q.left(seq) {
		return nil
	}
	return q.fakeQueue.Filter(seq, reason)
}

func (q *ownerQueue) Progress(seq uint64, n int) error {
	if q.left(seq) {
		return nil
	}
	return q.fakeQueue.Progress(seq, n)
}

func (q *ownerQueue) Retrying(seq uint64, attempts int, first time.Time) error {
	if q.left(seq) {
		return nil
	}
	return q.fakeQueue.Retrying(seq, attempts, first)
}

func (q *ownerQueue) Dead(seq uint64, f queue.Failure) error {
	if q.left(seq) {
		return nil
	}
	return q.fakeQueue.Dead(seq, f)
}

func (q *ownerQueue) Owns(seq uint64) queue.Ownership {
	q.mu.Lock()
	defer q.mu.Unlock()
	it := q.items[seq]
	a := queue.Owned
	switch {
	case q.paused[seq]:
		a = queue.Paused
	case it == nil || q.gone[it.Entry.Visitor]:
		a = queue.Moved
	}
	q.answers[a]++
	return a
}

func (q *ownerQueue) answered(a queue.Ownership) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.answers[a]
}

// forget removes a visitor's pending items, as a shared queue does when the visitor's
// partition leaves this process, and returns their Seqs.
func (q *ownerQueue) forget(visitor string) []uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var seqs []uint64
	for _, seq := range q.order {
		if it := q.items[seq]; it != nil && it.Entry.Visitor == visitor {
			delete(q.items, seq)
			q.forgotten[seq] = true
			q.counters.Queued--
			q.counters.Received--
			seqs = append(seqs, seq)
		}
	}
	return seqs
}

// inOrder checks that a visitor's sends never go back to an earlier event (a retried one may
// repeat).
func inOrder(t *testing.T, s *scriptSender, visitor string, want int) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	sent := s.byVisitor[visitor]
	for i := 1; i < len(sent); i++ {
		if sent[i] < sent[i-1] {
			t.Fatalf("visitor %s: event %d sent after event %d (sends %v)", visitor, sent[i], sent[i-1], sent)
		}
	}
	if len(sent) == 0 || sent[len(sent)-1] != want-1 {
		t.Fatalf("visitor %s: sends %v, want events 0 to %d", visitor, sent, want-1)
	}
}

// TestDispatcherWaitsWhilePaused: while the queue answers Paused for a visitor's head (its
// lease is overdue for renewal), nothing of that visitor is sent or recorded and its later
// items wait behind it; other visitors flow; once owned again, all go out once, in order.
func TestDispatcherWaitsWhilePaused(t *testing.T) {
	q := newOwnerQueue()
	s := newScriptSender()
	var bs []uint64
	for i := range 3 {
		q.add("a", req(evURL("a", i)))
		bs = append(bs, q.add("b", req(evURL("b", i))))
	}
	q.mu.Lock()
	for _, seq := range bs {
		q.paused[seq] = true
	}
	q.mu.Unlock()
	stop := start(t, NewDispatcher(q, s, fastOpts()))
	waitFor(t, "a delivered", func() bool { return s.count(evURL("a", 2)) == 1 })
	waitFor(t, "b asked again while paused", func() bool { return q.answered(queue.Paused) >= 3 })
	for i := 3; i < 5; i++ {
		bs = append(bs, q.add("b", req(evURL("b", i))))
	}
	time.Sleep(50 * time.Millisecond)
	for i, seq := range bs {
		if !q.isPending(seq) || s.count(evURL("b", i)) != 0 || q.retries(seq) != 0 {
			t.Fatalf("paused item b%d: sent %d times, pending %v, %d retries recorded", i, s.count(evURL("b", i)), q.isPending(seq), q.retries(seq))
		}
	}
	q.mu.Lock()
	clear(q.paused)
	q.mu.Unlock()
	waitFor(t, "the backlog to drain", drained(q.fakeQueue))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkQueue(t, q.fakeQueue)
	s.check(t)
	inOrder(t, s, "b", 5)
	if q.answered(queue.Moved) != 0 {
		t.Fatalf("%d Moved answers; the fake never moved anything", q.answered(queue.Moved))
	}
}

// TestDispatcherRereadsAPartitionThatCameBack: a visitor's partition leaves this process and
// comes back while its lane still holds the old items (so the new copies, with new Seqs, are
// admitted behind them); when the head is found Moved, the whole lane goes, and the copies
// must be read again: the visitor's events are delivered once each, in order, even when a
// newer event arrives just after.
func TestDispatcherRereadsAPartitionThatCameBack(t *testing.T) {
	q := newOwnerQueue()
	s := newScriptSender()
	var old []uint64
	for i := range 3 {
		old = append(old, q.add("b", req(evURL("b", i))))
	}
	s.script(evURL("b", 0), resp{status: 500})
	stop := start(t, NewDispatcher(q, s, fastOpts()))
	waitFor(t, "b0 retrying", func() bool { return s.count(evURL("b", 0)) >= 2 })
	// The partition leaves (the old items' head is held Paused meanwhile) and comes back
	// with the same events under new Seqs, and two more.
	q.mu.Lock()
	for _, seq := range old {
		q.paused[seq] = true
	}
	q.mu.Unlock()
	q.forget("b")
	q.mu.Lock()
	scans := q.scans
	q.mu.Unlock()
	for i := range 5 {
		q.add("b", req(evURL("b", i)))
	}
	waitFor(t, "the copies scanned into the old lane", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.scans > scans })
	s.script(evURL("b", 0), resp{status: 200})
	q.mu.Lock()
	clear(q.paused)
	q.mu.Unlock()
	waitFor(t, "the old head found moved", func() bool { return q.answered(queue.Moved) >= 1 })
	q.add("b", req(evURL("b", 5)))
	waitFor(t, "the backlog to drain", drained(q.fakeQueue))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	checkQueue(t, q.fakeQueue)
	s.check(t)
	inOrder(t, s, "b", 6)
}

// TestDispatcherDropsMovedVisitors: a visitor whose items another process now delivers is
// dropped from memory before any attempt: nothing of it is sent or recorded, and the other
// visitors are delivered.
func TestDispatcherDropsMovedVisitors(t *testing.T) {
	q := newOwnerQueue()
	q.gone["b"] = true
	s := newScriptSender()
	var bs []uint64
	for i := range 3 {
		q.add("a", req(evURL("a", i)))
		bs = append(bs, q.add("b", req(evURL("b", i))))
	}
	stop := start(t, NewDispatcher(q, s, fastOpts()))
	waitFor(t, "a delivered", func() bool { return s.count(evURL("a", 2)) == 1 })
	time.Sleep(50 * time.Millisecond)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	for i, seq := range bs {
		if !q.isPending(seq) || s.count(evURL("b", i)) != 0 || q.retries(seq) != 0 {
			t.Fatalf("moved item b%d: sent %d times, pending %v", i, s.count(evURL("b", i)), q.isPending(seq))
		}
	}
	if c := q.Counters(); c.Delivered != 3 || c.Queued != 3 {
		t.Fatalf("counters %+v, want a's 3 delivered and b's 3 left for the other process", c)
	}
}
