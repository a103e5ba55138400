package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
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

// privacyCLI runs `woorelay privacy --server ADMIN args...` and returns its output.
func privacyCLI(t *testing.T, adminURL string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(append([]string{"privacy", "--server", adminURL}, args...), nil, &out, &errb); code != 0 {
		t.Fatalf("woorelay privacy %s: exit %d: %s", strings.Join(args, " "), code, errb.String())
	}
	return out.String()
}

// adminGet reads a path of the admin listener.
func adminGet(t *testing.T, base, path string) string {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// filesHolding lists the files under dir that hold s.
func filesHolding(t *testing.T, dir, s string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(s)) {
			out = append(out, filepath.Base(path))
		}
		return nil
	})
	return out
}

// webSource writes a sources file of one source, web (key any-key, the default preset), with
// extra lines, and returns its path.
func webSource(t *testing.T, extra string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "woorelay.yaml")
	if err := os.WriteFile(cfg, []byte("sources:\n  - name: web\n    write_key: any-key\n    preset: default\n    settings: {project: example.com}\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestSuppressOnServe: with Woopra held, a person's queued events are not delivered once the
// person is suppressed, nor are the events sent afterwards (answered 200); all of them are
// counted filtered; another person's events are delivered; after unsuppress the person's new
// events are delivered again, and the counters reconcile.
func TestSuppressOnServe(t *testing.T) {
	x := newE2E(t, "--config", webSource(t, ""))
	p := x.start()
	x.em.SetFaults(emulator.Faults{Always: 503}) // Woopra held: events stay queued, retried
	post := func(user, mid string) {
		t.Helper()
		if s := postEvent(t, p.url, "any-key", "E", user, mid); s != 200 {
			t.Fatalf("ingest answered %d to %s", s, mid)
		}
	}
	post("gone-1", "m-x-1")
	post("gone-1", "m-x-2")
	post("stays-1", "m-y-1")
	waitFor(t, 30*time.Second, "the held events tried at Woopra", func() bool { return len(x.em.RequestsOf("gone-1")) > 0 })

	out := privacyCLI(t, p.admin, "suppress", "--user-id", "gone-1")
	if !strings.Contains(out, "suppressed 1") {
		t.Errorf("privacy suppress said %q", out)
	}
	if out := privacyCLI(t, p.admin, "list"); !strings.Contains(out, "user_id\tgone-1") {
		t.Errorf("privacy list does not show the suppression: %q", out)
	}
	post("gone-1", "m-x-3") // sent after: answered 200, never stored
	x.em.ClearFaults()
	waitFor(t, 30*time.Second, "the other person's event", func() bool { return x.delivered()["m-y-1"] == 1 })
	c := x.drained(p)
	for _, mid := range []string{"m-x-1", "m-x-2", "m-x-3"} {
		if n := x.delivered()[mid]; n != 0 {
			t.Errorf("%s of the suppressed person reached Woopra %d times", mid, n)
		}
	}
	if c.Received != 4 || c.Delivered != 1 || c.Filtered != 3 {
		t.Errorf("counters %+v; want 4 received, 1 delivered, 3 filtered (suppressed)", c)
	}

	privacyCLI(t, p.admin, "unsuppress", "--user-id", "gone-1")
	post("gone-1", "m-x-4")
	waitFor(t, 30*time.Second, "the person's event after unsuppress", func() bool { return x.delivered()["m-x-4"] == 1 })
	if c := x.drained(p); c.Received != 5 || c.Delivered != 2 || c.Filtered != 3 {
		t.Errorf("counters after unsuppress %+v; want 5 received, 2 delivered, 3 filtered", c)
	}
}

// TestEraseOnServe: `woorelay privacy erase --user-id X` on a serve delivering to its sandbox
// emulator removes X's events from the queue (and from every file of the data directory), the
// dead letters, the debugger and the emulator, prints the counts, and the counters reconcile.
func TestEraseOnServe(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test; skipped with -short")
	}
	addr, _ := bench.FreeLoopback()
	adminAddr, _ := bench.FreeLoopback()
	data := t.TempDir()
	p := startWoorelay(t, addr, nil, "serve", "--listen", addr, "--admin-listen", adminAddr, "--data", data,
		"--retry-min", "5ms", "--retry-max", "100ms", "--log-level", "warn")
	const who, mark = "Qz7uKw3r", "Jp4nVx8e" // no 4 bytes in common with the rest: the compressed files keep them whole
	event := func(mid, user, email string) string {
		return fmt.Sprintf(`{"type":"track","event":"E","userId":%q,"messageId":%q,"properties":{"mid":%q},"context":{"traits":{"email":"%s@example.com"}}}`, user, mid, mid, email)
	}
	if s := postRaw(t, p.url+"/v1/track", event("m-1", who, mark)); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitFor(t, 30*time.Second, "the first event at the sandbox", func() bool {
		return strings.Contains(adminGet(t, p.admin, "/emulator/requests"), who)
	})
	// Hold the sandbox: the next events stay queued; one is a dead letter at ingest.
	req, _ := http.NewRequest("POST", p.admin+"/emulator/faults", strings.NewReader(`{"always":503}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("holding the sandbox: %v %v", resp, err)
	}
	batch := `{"batch":[` + event("m-2", who, mark) + `,` + strings.Replace(event("m-3", who, mark), `"track"`, `"bogus"`, 1) + `,` + event("m-4", "other-user", "other-mail") + `]}`
	if s := postRaw(t, p.url+"/v1/batch", batch); s != 200 {
		t.Fatalf("ingest answered %d to the batch", s)
	}
	cl := admin.NewClient(p.admin, "", nil)
	waitFor(t, 30*time.Second, "a dead letter and two queued events", func() bool {
		c, _ := cl.Counters(context.Background())
		return c.DeadLettered == 1 && c.Queued == 2
	})
	if got := filesHolding(t, data, mark); len(got) == 0 {
		t.Fatal("the person's e-mail is in no file of the data directory before the erasure: the check after it would prove nothing")
	}

	out := privacyCLI(t, p.admin, "erase", "--user-id", who)
	for _, want := range []string{"queue: 1 event", "dead letters: 1", "debugger: 3 event", " visitor profile", "emulator: "} {
		if !strings.Contains(out, want) {
			t.Errorf("privacy erase printed %q; want %q in it", out, want)
		}
	}
	if strings.Contains(out, "emulator: 0 request") || !strings.Contains(out, ", 1 visitor profile") {
		t.Errorf("privacy erase printed %q; want the sandbox's requests and 1 visitor profile", out)
	}
	// Pebble deletes the tables its compaction made obsolete in the background.
	var left []string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		left = append(filesHolding(t, data, who), filesHolding(t, data, mark)...)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("after the erasure these files of the data directory still hold the person's id or e-mail: %v", left)
	}
	for _, path := range []string{"/admin/dlq", "/debugger/api/events", "/emulator/requests", "/emulator/visitors"} {
		if body := adminGet(t, p.admin, path); strings.Contains(body, who) || strings.Contains(body, mark) {
			t.Errorf("%s still shows the erased person: %s", path, body)
		}
	}
	req, _ = http.NewRequest("DELETE", p.admin+"/emulator/faults", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	c, err := cl.Counters(context.Background())
	waitFor(t, 30*time.Second, "the other person's event delivered", func() bool {
		c, err = cl.Counters(context.Background())
		return err == nil && c.Queued == 0
	})
	if !c.Reconciles || c.Received != 4 || c.Delivered != 2 || c.Filtered != 2 || c.DeadLettered != 0 {
		t.Errorf("counters %+v; want 4 received, 2 delivered, 2 filtered (erased), reconciling", c)
	}
}

// TestMinimisationOnServe: with privacy: {ip: truncate, drop: [context.traits.phone]}, the
// event stored in the data directory has the truncated address and no phone, and Woopra
// receives the truncated address.
func TestMinimisationOnServe(t *testing.T) {
	x := newE2E(t, "--config", webSource(t, "    privacy: {ip: truncate, drop: [context.traits.phone]}\n"))
	p := x.start()
	x.em.SetFaults(emulator.Faults{Always: 503}) // held: the event stays in the data directory
	const phone = "+44 7700 900461"
	body := `{"type":"track","event":"E","userId":"u-min","messageId":"m-min","properties":{"mid":"m-min"},"context":{"ip":"203.0.113.50","traits":{"phone":"` + phone + `","name":"Min"}}}`
	if s := postRaw(t, p.url+"/v1/track", body); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitFor(t, 30*time.Second, "the held event tried at Woopra", func() bool { return len(x.em.RequestsOf("u-min")) > 0 })
	if got := filesHolding(t, x.data, "203.0.113.0"); len(got) == 0 {
		t.Error("no file of the data directory holds the truncated address 203.0.113.0")
	}
	for _, gone := range []string{"203.0.113.50", phone} {
		if got := filesHolding(t, x.data, gone); len(got) > 0 {
			t.Errorf("%v of the data directory hold %q", got, gone)
		}
	}
	if raw := adminGet(t, p.admin, "/debugger/api/events"); strings.Contains(raw, "203.0.113.50") || strings.Contains(raw, phone) {
		t.Errorf("the debugger shows the original: %s", raw)
	}
	x.em.ClearFaults()
	waitFor(t, 30*time.Second, "delivery", func() bool { return x.delivered()["m-min"] == 1 })
	for _, r := range x.em.Requests() {
		if r.Status == 200 && r.Params.Get("ce_mid") == "m-min" && r.Params.Get("ip") != "203.0.113.0" {
			t.Errorf("Woopra received ip=%q, want 203.0.113.0", r.Params.Get("ip"))
		}
	}
	x.drained(p)
}
