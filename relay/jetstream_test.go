package relay

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue/jetstream/natstest"
)

// TestTwoRelaysOnJetStream: two relays share one JetStream stream, one through --queue, the
// other through the sources file's queue: section; events ingested at either are delivered
// once each, and both relays' counters are the cluster's and reconcile. A changed queue
// section is refused by a reload.
func TestTwoRelaysOnJetStream(t *testing.T) {
	srv := natstest.Run(t)
	em, url := woopra(t)
	src := "sources:\n  - name: web\n    write_key: key-a\n    preset: default\n    settings: {project: p.com}\n"
	a := testConfig(t, url)
	a.QueueURL = srv.URL()
	a.Sources = sourcesFile(t, "queue: {stream: RELAYS, partitions: 4}\n"+src)
	b := testConfig(t, url)
	b.Sources = sourcesFile(t, fmt.Sprintf("queue:\n  urls: [%s]\n  stream: RELAYS\n  partitions: 4\n  dedup_window: 10m\n", srv.URL())+src)
	ra, rb := started(t, a), started(t, b)
	const n = 40
	for i := range n {
		r := ra
		if i%2 == 1 {
			r = rb
		}
		if s := track(t, r, "key-a", fmt.Sprint("u", i%7), fmt.Sprint("m", i)); s != 200 {
			t.Fatalf("event %d: status %d", i, s)
		}
	}
	if s := track(t, rb, "key-a", "u1", "m0"); s != 200 { // a duplicate, at the other relay
		t.Fatalf("duplicate: status %d", s)
	}
	for i := range n {
		delivered(t, em, fmt.Sprint("m", i), "ce_mid")
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c := rb.Queue().Counters(); c.Delivered == n && c.Queued == 0 {
			break
		}
	}
	for name, r := range map[string]*Relay{"a": ra, "b": rb} {
		c := r.Queue().Counters()
		if !c.Reconciles() || c.Received != n || c.Delivered != n || c.Duplicates != 1 {
			t.Errorf("relay %s: counters %+v, want %d received and delivered, 1 duplicate, reconciling", name, c, n)
		}
	}
	sent := 0
	for _, rec := range em.Requests() {
		if rec.Status == 200 && strings.HasPrefix(rec.Params.Get("ce_mid"), "m") {
			sent++
		}
	}
	if sent != n {
		t.Errorf("the emulator answered 200 to %d events, want %d (each once)", sent, n)
	}
	next := b
	next.Sources = sourcesFile(t, fmt.Sprintf("queue:\n  urls: [%s]\n  stream: OTHER\n", srv.URL())+src)
	if err := rb.Reload(next); !IsConfigError(err) || !strings.Contains(err.Error(), "queue") {
		t.Errorf("a reload with another queue section = %v, want a finding about the queue", err)
	}
}

// TestQueueSectionWithoutURLs: a queue: section with no urls and no --queue is a finding
// naming where the section is, not a silent fall-back to the disk queue.
func TestQueueSectionWithoutURLs(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1")
	cfg.Sources = sourcesFile(t, "queue: {replicas: 3}\nsources:\n  - name: web\n    write_key: k\n    preset: default\n    settings: {project: p.com}\n")
	_, err := New(cfg)
	if !IsConfigError(err) || !strings.Contains(err.Error(), "woorelay.yaml:1:8: the queue section has no urls") {
		t.Fatalf("New = %v, want a finding at the queue section", err)
	}
	cfg.QueueURL = "http://nats:4222"
	if _, err := New(cfg); !IsConfigError(err) || !strings.Contains(err.Error(), "is not a NATS URL") {
		t.Fatalf("New with --queue http://... = %v", err)
	}
}

// TestReadyzWhileAppendsFail: a relay on a three-node JetStream cluster whose two other nodes
// hang (no quorum: nothing can be stored) answers every ingest request within 10 s (503 with
// Retry-After) and turns /readyz to 503; once the nodes are back it serves 200 again within
// 30 s and /readyz is 200 again.
func TestReadyzWhileAppendsFail(t *testing.T) {
	if testing.Short() {
		t.Skip("hangs NATS nodes for seconds; skipped with -short")
	}
	c := natstest.RunFaultCluster(t, 3)
	em, url := woopra(t)
	cfg := testConfig(t, url)
	cfg.QueueURL = c.URL(0)
	cfg.Sources = sourcesFile(t, "queue: {stream: READY, partitions: 2, replicas: 3}\nsources:\n  - name: web\n    write_key: key-a\n    preset: default\n    settings: {project: p.com}\n")
	r := started(t, cfg)
	if s := track(t, r, "key-a", "u1", "m-before"); s != 200 {
		t.Fatalf("before the hang: status %d", s)
	}
	readyz := func() int {
		resp, err := http.Get(r.URL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	c.Faults.Freeze(1)
	c.Faults.Freeze(2)
	sawRefused, sawNotReady := false, false
	for i := 0; i < 60 && !(sawRefused && sawNotReady); i++ {
		start := time.Now()
		s := track(t, r, "key-a", "u1", fmt.Sprint("m-hung-", i))
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("an ingest request took %s while the nodes hung, want an answer within 10s", d)
		}
		sawRefused = sawRefused || s == 503
		sawNotReady = sawNotReady || readyz() == 503
		time.Sleep(100 * time.Millisecond)
	}
	if !sawRefused || !sawNotReady {
		t.Fatalf("while nothing could be stored: a 503 to ingest %v, /readyz 503 %v; want both", sawRefused, sawNotReady)
	}
	c.Faults.Thaw(1)
	c.Faults.Thaw(2)
	thawed := time.Now()
	for s := 0; s != 200; {
		if time.Since(thawed) > 30*time.Second {
			t.Fatalf("ingest still answers %d 30s after the nodes came back", s)
		}
		s = track(t, r, "key-a", "u1", fmt.Sprint("m-after-", time.Now().UnixNano()))
	}
	for readyz() != 200 {
		if time.Since(thawed) > 30*time.Second {
			t.Fatal("/readyz still 503 30s after the nodes came back")
		}
		time.Sleep(100 * time.Millisecond)
	}
	delivered(t, em, "m-before", "ce_mid")
	t.Logf("serving 200 and ready again %s after the nodes came back", time.Since(thawed).Round(time.Millisecond))
}
