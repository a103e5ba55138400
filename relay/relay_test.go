package relay

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/disk"
	"github.com/woorelay/woorelay/server"
)

// woopra starts an emulator for one test.
func woopra(t *testing.T) (*emulator.Emulator, string) {
	t.Helper()
	em := emulator.New(emulator.Options{})
	url, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { em.Release(); stop(context.Background()) })
	return em, url
}

// sourcesFile writes a sources file and loads it.
func sourcesFile(t *testing.T, yaml string) *server.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "woorelay.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := server.LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testConfig is a relay on a loopback port and a new data directory delivering to url.
func testConfig(t *testing.T, url string) Config {
	return Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), WoopraURL: url, RetryMin: 5 * time.Millisecond, RetryMax: 50 * time.Millisecond, DrainTimeout: 5 * time.Second}
}

// started runs New and Start and stops the relay when the test ends.
func started(t *testing.T, cfg Config) *Relay {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		r.Stop(time.Second)
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop(5 * time.Second) })
	return r
}

// track posts one track event with key and returns the status.
func track(t *testing.T, r *Relay, key, user, mid string) int {
	t.Helper()
	body := `{"type":"track","event":"Played","userId":"` + user + `","messageId":"` + mid + `","properties":{"mid":"` + mid + `"}}`
	req, _ := http.NewRequest("POST", r.URL()+"/v1/track", strings.NewReader(body))
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// delivered waits until the emulator has answered 200 to the event with message id mid and
// returns the request's parameter name.
func delivered(t *testing.T, em *emulator.Emulator, mid, name string) string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, rec := range em.Requests() {
			if rec.Status == 200 && rec.Params.Get("ce_mid") == mid {
				return rec.Params.Get(name)
			}
		}
	}
	t.Fatalf("event %s never reached the emulator", mid)
	return ""
}

// TestNewReportsEveryFinding: every setting out of range is reported at once, and nothing is
// created.
func TestNewReportsEveryFinding(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg := Config{DataDir: dir, Workers: -1, RetryMin: time.Minute, RetryMax: time.Second, WoopraURL: "ftp://example.com", DrainTimeout: -time.Second}
	_, err := New(cfg)
	ce, ok := err.(*ConfigError)
	if !ok {
		t.Fatalf("New = %v; want a *ConfigError", err)
	}
	var got []string
	for _, f := range ce.Findings {
		got = append(got, f.Setting)
	}
	if strings.Join(got, ",") != "workers,drain-timeout,retry-min,woopra-url" {
		t.Errorf("findings for %v; want workers, drain-timeout, retry-min, woopra-url:\n%v", got, err)
	}
	if !strings.Contains(err.Error(), "--workers: -1 is not a number of workers") {
		t.Errorf("the message does not name the flag: %v", err)
	}
	if _, serr := os.Stat(dir); !os.IsNotExist(serr) {
		t.Errorf("New created the data directory despite the findings (%v)", serr)
	}
}

// TestNewSourceErrors: a source that does not compile is a ConfigError, and the queue is not
// left open (another relay can open the same directory).
func TestNewSourceErrors(t *testing.T) {
	cfg := testConfig(t, "")
	cfg.Sources = &server.Config{Sources: []server.SourceConfig{{Name: "web", WriteKey: "k", Preset: "no-such-preset"}}}
	_, err := New(cfg)
	if !IsConfigError(err) || !strings.Contains(err.Error(), "no-such-preset") {
		t.Fatalf("New = %v; want a configuration error naming the preset", err)
	}
	q, err := disk.Open(cfg.DataDir, disk.Options{})
	if err != nil {
		t.Fatalf("the data directory is still held: %v", err)
	}
	q.Close()
}

// TestStartAddressInUse: Start fails on a taken address; Stop still closes the queue.
func TestStartAddressInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, url := woopra(t)
	cfg := testConfig(t, url)
	cfg.Listen = ln.Addr().String()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err == nil || !strings.Contains(err.Error(), "listen on "+cfg.Listen) {
		t.Errorf("Start on a taken address = %v", err)
	}
	if err := r.Stop(time.Second); err != nil {
		t.Errorf("Stop after a failed Start = %v", err)
	}
	q, err := disk.Open(cfg.DataDir, disk.Options{})
	if err != nil {
		t.Fatalf("the queue was not closed: %v", err)
	}
	q.Close()
}

// TestReload: a reload moves write keys and changes the mapping for the next request and the
// next delivery; a broken configuration or a restart-only change leaves the running one.
func TestReload(t *testing.T) {
	em, url := woopra(t)
	cfg := testConfig(t, url)
	cfg.Sources = sourcesFile(t, "sources:\n  - name: web\n    write_key: key-a\n    preset: default\n    settings: {project: p.com, app: one}\n")
	r := started(t, cfg)
	if s := track(t, r, "key-a", "u1", "m1"); s != 200 {
		t.Fatalf("key-a before the reload: %d", s)
	}
	if app := delivered(t, em, "m1", "ce_app"); app != "one" {
		t.Errorf("ce_app = %q before the reload, want one", app)
	}

	next := cfg
	next.Sources = sourcesFile(t, "sources:\n  - name: web\n    write_key: key-b\n    preset: default\n    settings: {project: p.com, app: two}\n")
	if err := r.Reload(next); err != nil {
		t.Fatal(err)
	}
	if s := track(t, r, "key-a", "u1", "m2"); s != 401 {
		t.Errorf("key-a after it was removed: %d, want 401", s)
	}
	if s := track(t, r, "key-b", "u1", "m3"); s != 200 {
		t.Errorf("key-b after it was added: %d, want 200", s)
	}
	if app := delivered(t, em, "m3", "ce_app"); app != "two" {
		t.Errorf("ce_app = %q after the reload, want two", app)
	}

	broken := cfg
	broken.Sources = &server.Config{Sources: []server.SourceConfig{{Name: "web", WriteKey: "key-c", Preset: "no-such-preset"}}}
	moved := next
	moved.Listen = "127.0.0.1:1"
	for name, c := range map[string]Config{"a source that does not compile": broken, "a new listen address": moved} {
		err := r.Reload(c)
		if !IsConfigError(err) {
			t.Errorf("%s: Reload = %v, want a configuration error", name, err)
		}
		if s := track(t, r, "key-b", "u1", "m-"+name); s != 200 {
			t.Errorf("%s: the running key-b answered %d after the refused reload", name, s)
		}
	}
	if s := track(t, r, "key-c", "u1", "m4"); s != 401 {
		t.Errorf("key-c of the refused reload answered %d, want 401", s)
	}
}

// recordingTap keeps what it is told.
type recordingTap struct {
	mu       sync.Mutex
	ingested []string // message ids
	mapped   []string
	urls     []string // attempted
	statuses []int
}

func (t *recordingTap) Ingested(es []queue.Entry, _ queue.AppendResult, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range es {
		if err == nil {
			t.ingested = append(t.ingested, e.MessageID)
		}
	}
}

func (t *recordingTap) Mapped(e queue.Entry, reqs []queue.Request, _ string, _ error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.mapped = append(t.mapped, e.MessageID)
	for _, r := range reqs {
		t.urls = append(t.urls, r.URL)
	}
}

func (t *recordingTap) Attempted(r queue.Request, a destination.Attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.statuses = append(t.statuses, a.Status)
}

// TestTap: the tap sees an event stored, mapped into its request, and the request answered.
func TestTap(t *testing.T) {
	em, url := woopra(t)
	tap := &recordingTap{}
	cfg := testConfig(t, url)
	cfg.Tap = tap
	r := started(t, cfg)
	if s := track(t, r, "k", "u1", "m-tap"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	delivered(t, em, "m-tap", "event")
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		tap.mu.Lock()
		n := len(tap.statuses)
		tap.mu.Unlock()
		if n > 0 {
			break
		}
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	if strings.Join(tap.ingested, ",") != "m-tap" || strings.Join(tap.mapped, ",") != "m-tap" {
		t.Errorf("ingested %v, mapped %v; want m-tap each", tap.ingested, tap.mapped)
	}
	if len(tap.urls) != 1 || !strings.Contains(tap.urls[0], "/track/ce?") || !strings.Contains(tap.urls[0], "ce_mid=m-tap") {
		t.Errorf("mapped requests %v", tap.urls)
	}
	if len(tap.statuses) != 1 || tap.statuses[0] != 200 {
		t.Errorf("attempts answered %v, want [200]", tap.statuses)
	}
}

// TestSandbox: a source without a project delivers to the in-process emulator, whose records
// are served at /emulator/ on the admin listener, not on the ingest port; with a project
// there is no sandbox.
func TestSandbox(t *testing.T) {
	cfg := testConfig(t, "")
	r := started(t, cfg)
	if r.Sandbox() == nil {
		t.Fatal("no sandbox emulator for the development source")
	}
	if s := track(t, r, "k", "u1", "m-sandbox"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	if p := delivered(t, r.Sandbox(), "m-sandbox", "project"); p != SandboxProject {
		t.Errorf("project %q, want %s", p, SandboxProject)
	}
	resp, err := http.Get(r.AdminURL() + "/emulator/requests")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/emulator/requests answered %d on the admin listener", resp.StatusCode)
	}
	if resp, err := http.Get(r.URL() + "/emulator/requests"); err != nil || resp.StatusCode != 404 {
		t.Errorf("/emulator/requests on the ingest port: %v %v, want 404", resp.StatusCode, err)
	}

	_, url := woopra(t)
	cfg = testConfig(t, url)
	cfg.Sources = sourcesFile(t, "sources:\n  - name: web\n    write_key: k\n    preset: default\n    settings: {project: p.com}\n")
	r2 := started(t, cfg)
	if r2.Sandbox() != nil {
		t.Error("a sandbox emulator was started though every source has a project")
	}
	if resp, err := http.Get(r2.AdminURL() + "/emulator/requests"); err != nil || resp.StatusCode != 404 {
		t.Errorf("/emulator/requests without a sandbox: %v %v, want 404", resp.StatusCode, err)
	}
}

// brokenDone is a disk queue that cannot record a delivery.
type brokenDone struct{ queue.Queue }

func (brokenDone) Done(uint64) error { return errors.New("the store refuses writes") }

// TestDeliveryStopHaltsTheRelay: when the queue keeps failing to record outcomes, delivery
// stops, and the relay says so: readiness turns 503, Done closes and Err gives the reason,
// so that serve exits for its supervisor to start it again, instead of taking events it no
// longer delivers. The event stays queued for the next start.
func TestDeliveryStopHaltsTheRelay(t *testing.T) {
	_, url := woopra(t)
	cfg := testConfig(t, url)
	q, err := disk.Open(cfg.DataDir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Queue = brokenDone{q}
	cfg.Sources = sourcesFile(t, "sources:\n  - name: web\n    write_key: k\n    preset: default\n    settings: {project: p.com}\n")
	r := started(t, cfg)
	if s := track(t, r, "k", "u1", "m1"); s != 200 {
		t.Fatalf("track: %d", s)
	}
	select {
	case <-r.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the relay went on after delivery stopped")
	}
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "could not record") {
		t.Errorf("Err = %v; want delivery's reason", err)
	}
	resp, err := http.Get(r.URL() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz after delivery stopped: %d, want 503", resp.StatusCode)
	}
	if err := r.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	q2, err := disk.Open(cfg.DataDir, disk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer q2.Close()
	if c := q2.Counters(); c.Queued != 1 || c.Delivered != 0 {
		t.Errorf("after the stop: %+v; want the event still queued", c)
	}
}
