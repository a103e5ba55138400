package relay

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/emulator"
)

// TestDeadLetterRetention: on a running relay, a dead letter older than the retention is
// removed and counted filtered while a younger one stays; the counters reconcile.
func TestDeadLetterRetention(t *testing.T) {
	em, url := woopra(t)
	cfg := testConfig(t, url)
	cfg.DeadLetterRetention = 4 * time.Second
	r := started(t, cfg)
	em.Script("old", 403)
	em.Script("young", 403)
	if s := track(t, r, "k", "old", "m-old"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitUntil(t, "the first dead letter", func() bool { return r.Queue().Counters().DeadLettered == 1 })
	time.Sleep(2500 * time.Millisecond)
	if s := track(t, r, "k", "young", "m-young"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitUntil(t, "the old dead letter expired", func() bool { return r.Queue().Counters().Filtered == 1 })
	dls, err := r.Queue().DeadLetters(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].Entry.MessageID != "m-young" {
		t.Fatalf("dead letters after the old one expired: %+v; want only m-young", dls)
	}
	if c := r.Queue().Counters(); !c.Reconciles() || c.Received != 2 || c.DeadLettered != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestDeliveryDropsSuppressed: an event a relay's dispatcher already holds (retrying) is
// not delivered once its person is suppressed through the admin API, and is counted filtered.
func TestDeliveryDropsSuppressed(t *testing.T) {
	em, url := woopra(t)
	em.SetFaults(emulator.Faults{Always: 503})
	r := started(t, testConfig(t, url))
	if s := track(t, r, "k", "held", "m-held"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitUntil(t, "an attempt", func() bool { return len(em.RequestsOf("held")) > 0 })
	req, _ := http.NewRequest("POST", "http://"+r.adminLn.Addr().String()+"/admin/suppressions", strings.NewReader(`{"selectors":["user_id:held"]}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("POST /admin/suppressions: %v %v", resp, err)
	}
	resp.Body.Close()
	em.ClearFaults()
	waitUntil(t, "the held event filtered", func() bool { return r.Queue().Counters().Filtered == 1 })
	for _, rec := range em.RequestsOf("held") {
		if rec.Status == 200 {
			t.Errorf("the suppressed person's event was delivered")
		}
	}
	if s := track(t, r, "k", "held", "m-after"); s != 200 {
		t.Fatalf("ingest answered %d to a suppressed person's event", s)
	}
	waitUntil(t, "the later event counted", func() bool { c := r.Queue().Counters(); return c.Received == 2 && c.Filtered == 2 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
