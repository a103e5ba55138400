package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// poisonMapping is a mapping file whose mapping for the event "Poison" has an expression that
// doubles a string forty times (2^40 bytes).
const poisonMapping = `kind: mappings
mappings:
  - name: poison
    when: type == "track" && event == "Poison"
    endpoint: ce
    fields:
      event: {path: event}
      ce_mid: {path: properties.mid}
      ce_size: {expr: 'len(reduce(1..40, #acc + #acc, "a"))'}
`

// runawayConfig writes a sources file whose mapping folder adds poisonMapping to the default
// preset, and returns the sources file's path.
func runawayConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "mappings"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "woorelay.yaml")
	os.WriteFile(cfg, []byte(`sources:
  - name: website
    write_key: web-key
    preset: default
    settings: {project: web.example.com}
    mappings: [mappings]
`), 0o644)
	os.WriteFile(filepath.Join(dir, "mappings", "poison.yaml"), []byte(poisonMapping), 0o644)
	return cfg
}

// TestRunawayExpressionIsDeadLettered: an expression that would build a 2^40-byte string is
// stopped by the evaluation limits on the real serve process. config check warns about it; the
// client is answered 200 (ingest stores the event; mapping happens at delivery); delivery
// dead-letters the event with expression_error and goes on delivering the others; a restart
// finds nothing pending and does not die again.
func TestRunawayExpressionIsDeadLettered(t *testing.T) {
	cfg := runawayConfig(t)
	var out, errb bytes.Buffer
	if code := run([]string{"config", "check", cfg}, nil, &out, &errb); code != 0 {
		t.Fatalf("config check: exit %d: %s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "poison.yaml") || !strings.Contains(out.String(), "unbounded_expression") {
		t.Errorf("config check does not warn about the doubling accumulator:\n%s", out.String())
	}

	x := newE2E(t, "--config", cfg)
	p := x.start()
	post := func(event, mid string) {
		t.Helper()
		if s := postEvent(t, p.url, "web-key", event, "u-"+mid, mid); s != 200 {
			t.Fatalf("ingest answered %d to %s", s, mid)
		}
	}
	for i, mid := range []string{"m-1", "m-2", "m-3"} {
		post("Viewed", mid)
		if i == 1 {
			post("Poison", "m-poison")
		}
	}
	waitFor(t, time.Minute, "the other events at the emulator", func() bool {
		d := x.delivered()
		return d["m-1"] == 1 && d["m-2"] == 1 && d["m-3"] == 1
	})
	waitFor(t, time.Minute, "the dead letter", func() bool { return x.counters(p).DeadLettered == 1 })
	if x.delivered()["m-poison"] != 0 {
		t.Errorf("the runaway event reached Woopra")
	}
	out.Reset()
	if code := run([]string{"dlq", "--server", p.admin, "show", "1"}, nil, &out, &errb); code != 0 {
		t.Fatalf("dlq show: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"expression_error", "expression limit", `"message_id": "m-poison"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dlq show lacks %s:\n%s", want, out.String())
		}
	}
	c := x.drained(p)
	if c.Delivered != 3 || c.DeadLettered != 1 {
		t.Errorf("counters %+v; want 3 delivered, 1 dead-lettered", c)
	}

	// A restart has nothing poisonous to retry and keeps delivering.
	if err := p.term(); err != nil {
		t.Fatal(err)
	}
	p = x.start()
	post("Viewed", "m-4")
	post("Poison", "m-poison-2")
	waitFor(t, time.Minute, "the event sent after the restart", func() bool { return x.delivered()["m-4"] == 1 })
	waitFor(t, time.Minute, "the second dead letter", func() bool { return x.counters(p).DeadLettered == 2 })
	select {
	case <-p.done:
		t.Fatalf("serve exited:\n%s", p.output.String())
	default:
	}
}

// postEvent posts one track event with a write key and returns the status.
func postEvent(t *testing.T, url, key, event, user, mid string) int {
	t.Helper()
	body := fmt.Sprintf(`{"type":"track","event":%q,"userId":%q,"messageId":%q,"properties":{"mid":%q}}`, event, user, mid, mid)
	req, _ := http.NewRequest("POST", url+"/v1/track", strings.NewReader(body))
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
