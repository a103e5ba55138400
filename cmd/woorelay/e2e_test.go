package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/bench"
	"github.com/woorelay/woorelay/emulator"
)

// End-to-end reliability tests: `woorelay serve` runs as a real process with a real on-disk
// queue, delivering to an in-test Woopra emulator; the ledger (loadclient_test.go) is the oracle.
// They are skipped with -short.

// e2e is one test's emulator, data directory and listen address.
type e2e struct {
	t     *testing.T
	em    *emulator.Emulator
	data  string
	addr  string
	admin string // the admin listener's address
	args  []string
}

func newE2E(t *testing.T, extra ...string) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end process test; skipped with -short")
	}
	em := emulator.New(emulator.Options{MaxRecords: 1 << 20})
	url, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Release(); stop(context.Background()) })
	addr, err := bench.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := bench.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	x := &e2e{t: t, em: em, data: t.TempDir(), addr: addr, admin: adminAddr}
	x.args = append([]string{"serve", "--listen", x.addr, "--admin-listen", x.admin, "--data", x.data, "--woopra-url", url,
		"--retry-min", "5ms", "--retry-max", "100ms", "--woopra-timeout", "2s", "--log-level", "warn"}, extra...)
	return x
}

// start runs woorelay serve and waits until it is ready.
func (x *e2e) start() *proc { return startWoorelay(x.t, x.addr, nil, x.args...) }

// delivered returns how many times each message id (ce_mid) was answered 200 by the emulator.
func (x *e2e) delivered() map[string]int {
	got := map[string]int{}
	for _, r := range x.em.Requests() {
		if r.Status == 200 {
			if mid := r.Params.Get("ce_mid"); mid != "" {
				got[mid]++
			}
		}
	}
	return got
}

// waitDelivered waits until every acknowledged id reached the emulator and returns the
// number of duplicate deliveries.
func (x *e2e) waitDelivered(l *ledger, timeout time.Duration) int {
	x.t.Helper()
	acked := l.ackedIDs()
	var missing []string
	waitFor(x.t, timeout, "every acknowledged event at the emulator", func() bool {
		got := x.delivered()
		missing = missing[:0]
		for id := range acked {
			if got[id] == 0 {
				missing = append(missing, id)
			}
		}
		return len(missing) == 0
	})
	dups := 0
	for id, n := range x.delivered() {
		if !l.issued[id] {
			x.t.Errorf("the emulator received %s, which the test never issued", id)
		}
		dups += n - 1
	}
	return dups
}

// counters reads the running server's counters.
func (x *e2e) counters(p *proc) admin.Counters {
	x.t.Helper()
	c, err := admin.NewClient(p.admin, "", nil).Counters(context.Background())
	if err != nil {
		x.t.Fatal(err)
	}
	return c
}

// drained waits until nothing is queued and checks that the counters reconcile.
func (x *e2e) drained(p *proc) admin.Counters {
	x.t.Helper()
	var c admin.Counters
	waitFor(x.t, time.Minute, "an empty queue", func() bool { c = x.counters(p); return c.Queued == 0 })
	if !c.Reconciles || c.Received != c.Delivered+c.DeadLettered+c.Filtered+c.Queued {
		x.t.Errorf("counters do not reconcile: %+v", c)
	}
	return c
}

// TestCrashUnderLoad kills woorelay with SIGKILL ten times under continuous load, restarts it
// each time on the same data directory, and checks that every acknowledged event reached Woopra.
func TestCrashUnderLoad(t *testing.T) {
	x := newE2E(t)
	l := newLedger()
	const kills = 10
	for i := 0; i < kills; i++ {
		p := x.start()
		stop := make(chan struct{})
		wg := l.load(p.url, "any-key", 8, 20, 200, stop)
		before := len(l.ackedIDs())
		waitFor(t, 30*time.Second, "some acknowledgements", func() bool { return len(l.ackedIDs()) >= before+200 })
		time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond) // kill at a random point of the load
		p.kill()
		close(stop)
		wg.Wait()
	}
	p := x.start()
	dups := x.waitDelivered(l, 2*time.Minute)
	c := x.drained(p)
	acked := len(l.ackedIDs())
	t.Logf("%d kills: %d events acknowledged, all %d delivered; %d duplicate deliveries (%.2f%%); answers by status %v; counters %+v",
		kills, acked, acked, dups, 100*float64(dups)/float64(acked), l.statuses, c)
	if c.Delivered < int64(acked) {
		t.Errorf("delivered counter %d < acknowledged %d", c.Delivered, acked)
	}
}

// TestOutageThenRecovery: Woopra answers 500 for a stretch; ingest keeps answering 200, and
// everything is delivered once it recovers.
func TestOutageThenRecovery(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	if err := x.em.SetFaults(emulator.Faults{Always: 500}); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	stop := make(chan struct{})
	wg := l.load(p.url, "any-key", 4, 20, 50, stop)
	waitFor(t, 30*time.Second, "2,000 acknowledged events during the outage", func() bool { return len(l.ackedIDs()) >= 2000 })
	waitFor(t, 30*time.Second, "the emulator refusing requests", func() bool { return x.em.Stats().ByStatus[500] >= 100 })
	close(stop)
	wg.Wait()
	for status, n := range l.statuses {
		if status != 200 {
			t.Errorf("ingest answered %d to %d requests during the outage; want 200 to every request", status, n)
		}
	}
	refused := x.em.Stats().ByStatus[500]
	x.em.ClearFaults()
	dups := x.waitDelivered(l, 2*time.Minute)
	c := x.drained(p)
	if c.DeadLettered != 0 {
		t.Errorf("%d events dead-lettered; a 500 is retried until the retry window ends", c.DeadLettered)
	}
	t.Logf("outage: %d requests refused with 500; %d events acknowledged, all delivered after recovery, %d duplicates; counters %+v",
		refused, len(l.ackedIDs()), dups, c)
}

// sendOne posts one track event for visitor and returns the status.
func sendOne(t *testing.T, url, visitor, mid string) int {
	t.Helper()
	return postEvent(t, url, "any-key", "One", visitor, mid)
}

// TestForbiddenDeadLetterAndReplay: a 403 goes to the dead-letter store at once, with zero
// retries; `woorelay dlq replay` delivers it after Woopra is fixed.
func TestForbiddenDeadLetterAndReplay(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	x.em.Script("v403", 403)
	if s := sendOne(t, p.url, "v403", "m-403"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitFor(t, 30*time.Second, "the dead letter", func() bool { return x.counters(p).DeadLettered == 1 })
	if n := len(x.em.RequestsOf("v403")); n != 1 {
		t.Errorf("the emulator saw %d requests for the refused event; want exactly 1 (no retry after a 403)", n)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"dlq", "--server", p.admin, "list"}, nil, &out, &errb); code != 0 {
		t.Fatalf("dlq list: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "403") || !strings.Contains(out.String(), "dev") {
		t.Errorf("dlq list does not show the 403 and the source:\n%s", out.String())
	}
	out.Reset()
	if code := run([]string{"dlq", "--server", p.admin, "show", "1"}, nil, &out, &errb); code != 0 {
		t.Fatalf("dlq show: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{`"status": 403`, `"attempts": 1`, `"message_id": "m-403"`, "/track/ce?"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dlq show lacks %s:\n%s", want, out.String())
		}
	}
	// The script is used up, so the emulator now accepts the visitor: Woopra is "fixed".
	out.Reset()
	if code := run([]string{"dlq", "--server", p.admin, "replay", "--all"}, nil, &out, &errb); code != 0 {
		t.Fatalf("dlq replay: exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "replayed 1 of 1") {
		t.Errorf("dlq replay said %q", out.String())
	}
	waitFor(t, 30*time.Second, "the replayed event", func() bool { return x.delivered()["m-403"] == 1 })
	c := x.drained(p)
	if c.DeadLettered != 0 || c.Delivered != 1 || c.Replayed != 1 {
		t.Errorf("after the replay: %+v; want 1 delivered, 0 dead letters, 1 replayed", c)
	}
}

// TestRetryAfterHonoured: a 429 with Retry-After: 1 pauses delivery for at least a second.
func TestRetryAfterHonoured(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	x.em.SetFaults(emulator.Faults{Sequence: []emulator.Step{429}, RetryAfter: "1"})
	if s := sendOne(t, p.url, "v429", "m-429"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitFor(t, 30*time.Second, "delivery after the 429", func() bool { return x.delivered()["m-429"] == 1 })
	rs := x.em.RequestsOf("v429")
	if len(rs) != 2 || rs[0].Status != 429 || rs[1].Status != 200 {
		t.Fatalf("emulator saw %d requests; want a 429 then a 200", len(rs))
	}
	if gap := rs[1].Time.Sub(rs[0].Time); gap < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1; want at least 1s", gap)
	}
	x.drained(p)
}

// TestHangingDestinationTimesOut: a request that never gets an answer times out and is retried.
func TestHangingDestinationTimesOut(t *testing.T) {
	x := newE2E(t, "--woopra-timeout", "300ms")
	p := x.start()
	x.em.SetFaults(emulator.Faults{Sequence: []emulator.Step{emulator.StepHang}})
	if s := sendOne(t, p.url, "vhang", "m-hang"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitFor(t, 30*time.Second, "delivery after the hang", func() bool { return x.delivered()["m-hang"] == 1 })
	x.em.Release()
	rs := x.em.RequestsOf("vhang")
	if len(rs) < 2 {
		t.Fatalf("emulator saw %d requests; want the hung one and a retry", len(rs))
	}
	c := x.drained(p)
	if c.Delivered != 1 {
		t.Errorf("counters %+v; want 1 delivered", c)
	}
}

// TestPerVisitorOrder: 50 visitors × 40 events, each visitor with its own scripted answers
// (500s, 503s, 429s, 403s, 400s among 200s). Every visitor's events arrive in order, an event is
// never sent again after a 200, and exactly the events the scripts refuse are dead-lettered.
func TestPerVisitorOrder(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	const visitors, events = 50, 40
	rng := rand.New(rand.NewPCG(7, 11))
	choices := []emulator.Step{200, 200, 200, 200, 500, 503, 429, 403, 400}
	wantDead := 0
	for v := 0; v < visitors; v++ {
		// Script enough steps to cover every event; count the events it will refuse for good.
		var steps []emulator.Step
		for e := 0; e < events; e++ {
			for {
				s := choices[rng.IntN(len(choices))]
				steps = append(steps, s)
				if s == 200 {
					break
				}
				if s == 403 || s == 400 {
					wantDead++
					break
				}
			}
		}
		if err := x.em.Script(fmt.Sprintf("ov%d", v), steps...); err != nil {
			t.Fatal(err)
		}
	}
	// Event e of every visitor goes in round e, so each visitor's ingest order is its e order.
	for e := 0; e < events; e++ {
		var b strings.Builder
		b.WriteString(`{"batch":[`)
		for v := 0; v < visitors; v++ {
			if v > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"track","event":"Ordered","userId":"ov%d","messageId":"o-%d-%d","properties":{"mid":"o-%d-%d","e":%d}}`, v, v, e, v, e, e)
		}
		b.WriteString(`]}`)
		req, _ := http.NewRequest("POST", p.url+"/v1/batch", strings.NewReader(b.String()))
		req.SetBasicAuth("any-key", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("batch %d: %v %v", e, resp, err)
		}
		resp.Body.Close()
	}
	c := x.drained(p)
	if c.Delivered+c.DeadLettered != visitors*events || c.DeadLettered != int64(wantDead) {
		t.Errorf("counters %+v; want %d events in all, %d dead-lettered as the scripts say", c, visitors*events, wantDead)
	}
	for v := 0; v < visitors; v++ {
		last, done := -1, map[int]bool{}
		for _, r := range x.em.RequestsOf(fmt.Sprintf("ov%d", v)) {
			var e int
			fmt.Sscan(r.Params.Get("ce_e"), &e)
			if e < last {
				t.Errorf("visitor ov%d: event %d sent after event %d", v, e, last)
			}
			if done[e] {
				t.Errorf("visitor ov%d: event %d sent again after it succeeded", v, e)
			}
			if r.Status == 200 {
				done[e] = true
			}
			last = e
		}
	}
	t.Logf("%d visitors × %d events: %d delivered in per-visitor order, %d dead-lettered (the scripts' 403s and 400s); %d requests in all",
		visitors, events, c.Delivered, c.DeadLettered, x.em.Stats().Requests)
}

// TestDiskBudget: with Woopra down and a small disk budget, ingest answers 503 with Retry-After
// once the budget is reached, the data directory stays within the budget on disk (as du counts
// it: pebble's preallocated logs included), and every event it acknowledged is delivered after
// recovery.
func TestDiskBudget(t *testing.T) {
	const budget = 8_000_000
	x := newE2E(t, "--disk-budget", "8MB")
	p := x.start()
	var most int64
	l := x.loadUntilRefused(p, func() { most = max(most, duBytes(x.data)) })
	if most = max(most, duBytes(x.data)); most > budget {
		t.Errorf("the data directory took %d bytes on disk, over the budget of %d", most, budget)
	}
	if l.noRetryAfter > 0 {
		t.Errorf("%d 503 answers had no Retry-After", l.noRetryAfter)
	}
	x.em.ClearFaults()
	dups := x.waitDelivered(l, 2*time.Minute)
	c := x.drained(p)
	t.Logf("disk budget 8MB: %d events acknowledged before ingest answered 503 (%d times, each with Retry-After), at most %d bytes on disk; all delivered after recovery, %d duplicates; counters %+v",
		len(l.ackedIDs()), l.statuses[503], most, dups, c)
}

// loadUntilRefused makes Woopra fail and sends load to p until ingest answers 503, calling
// each (when not nil) at every look; it returns the ledger of what was acknowledged.
func (x *e2e) loadUntilRefused(p *proc, each func()) *ledger {
	x.t.Helper()
	x.em.SetFaults(emulator.Faults{Always: 500})
	l := newLedger()
	stop := make(chan struct{})
	wg := l.load(p.url, "any-key", 4, 20, 100, stop)
	waitFor(x.t, 2*time.Minute, "a 503 from ingest", func() bool {
		if each != nil {
			each()
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.statuses[503] > 0
	})
	close(stop)
	wg.Wait()
	return l
}

// TestSIGTERMDrains: SIGTERM under load makes woorelay finish the requests in flight and exit
// cleanly; whatever it acknowledged is delivered, after the restart if not before.
func TestSIGTERMDrains(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	l := newLedger()
	stop := make(chan struct{})
	wg := l.load(p.url, "any-key", 8, 20, 100, stop)
	waitFor(t, 30*time.Second, "1,000 acknowledged events", func() bool { return len(l.ackedIDs()) >= 1000 })
	if err := p.term(); err != nil {
		t.Errorf("woorelay did not exit cleanly on SIGTERM: %v", err)
	}
	close(stop)
	wg.Wait()
	p = x.start()
	dups := x.waitDelivered(l, time.Minute)
	c := x.drained(p)
	t.Logf("SIGTERM under load: %d acknowledged, all delivered, %d duplicates; answers %v; counters %+v", len(l.ackedIDs()), dups, l.statuses, c)
}

// TestDuplicateMessageIDs: a batch sent twice (an SDK retrying after a lost 200) is delivered
// once; the second copy is counted as duplicates, across a restart too.
func TestDuplicateMessageIDs(t *testing.T) {
	x := newE2E(t)
	p := x.start()
	l := newLedger()
	body, ids := l.batch(20, 5)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 2; i++ {
		if s := l.send(client, p.url, "any-key", body, ids); s != 200 {
			t.Fatalf("send %d: status %d", i, s)
		}
	}
	x.waitDelivered(l, 30*time.Second)
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
	p = x.start()
	if s := l.send(client, p.url, "any-key", body, ids); s != 200 {
		t.Fatalf("send after restart: status %d", s)
	}
	c := x.drained(p)
	for id, n := range x.delivered() {
		if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}
	if c.Received != 20 || c.Duplicates != 40 || c.Delivered != 20 {
		t.Errorf("counters %+v; want 20 received and delivered, 40 duplicates", c)
	}
}

// TestTwoWriteKeys: with a sources file, each write key's events go out with its own preset
// and project, and a key that is not configured is refused with 401.
func TestTwoWriteKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "woorelay.yaml")
	os.WriteFile(cfg, []byte(`sources:
  - name: website
    write_key: web-key-1
    preset: default
    settings: {project: web.example.com, app: web}
  - name: backend
    write_key_env: E2E_BACKEND_KEY
    preset: segment
    settings: {project: api.example.com}
`), 0o644)
	x := newE2E(t, "--config", cfg)
	p := startWoorelay(t, x.addr, []string{"E2E_BACKEND_KEY=backend-key-2"}, x.args...)
	post := func(key, user, mid string) int { return postEvent(t, p.url, key, "Order Completed", user, mid) }
	if s := post("web-key-1", "w1", "m-web"); s != 200 {
		t.Errorf("website key: %d", s)
	}
	if s := post("backend-key-2", "b1", "m-backend"); s != 200 {
		t.Errorf("backend key: %d", s)
	}
	if s := post("not-a-key", "n1", "m-none"); s != 401 {
		t.Errorf("an unconfigured key got %d, want 401", s)
	}
	waitFor(t, 30*time.Second, "both events at the emulator", func() bool { d := x.delivered(); return d["m-web"] == 1 && d["m-backend"] == 1 })
	for _, r := range x.em.Requests() {
		switch r.Params.Get("ce_mid") {
		case "m-web": // the default preset renames Order Completed and sends the app
			if r.Params.Get("project") != "web.example.com" || r.Params.Get("event") != "purchase" || r.Params.Get("ce_app") != "web" {
				t.Errorf("website event: %v", r.Params.Map())
			}
		case "m-backend": // the segment preset keeps the name and names the project as host, as Segment does
			if r.Params.Get("host") != "api.example.com" || r.Params.Get("event") != "Order Completed" {
				t.Errorf("backend event: %v", r.Params.Map())
			}
		case "m-none":
			t.Errorf("the refused event reached Woopra")
		}
	}
	c := x.drained(p)
	if c.Received != 2 || c.Delivered != 2 {
		t.Errorf("counters %+v; want 2 received and delivered", c)
	}
}
