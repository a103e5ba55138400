package relay

import (
	"context"
	"encoding/base64"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/server"
)

// headerTap keeps the visitor key of what was ingested and the headers of what was sent.
type headerTap struct {
	mu       sync.Mutex
	visitors map[string]string // message id → visitor key stored
	auth     int               // attempts the tap saw with an Authorization header
	attempts int
}

func (t *headerTap) Ingested(es []queue.Entry, _ queue.AppendResult, _ error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, e := range es {
		t.visitors[e.MessageID] = e.Visitor
	}
}

func (t *headerTap) Mapped(queue.Entry, []queue.Request, string, error) {}

func (t *headerTap) Attempted(r queue.Request, _ destination.Attempt) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.attempts++
	for _, h := range r.Headers {
		if strings.EqualFold(h.Name, "Authorization") {
			t.auth++
		}
	}
}

// TestSourceCredentialsAndOrder: a source with woopra_auth_env sends HTTP Basic credentials
// from the environment on its tracking requests (and only it; the tap never sees them); a
// source with order: none stores its events without a visitor key.
func TestSourceCredentialsAndOrder(t *testing.T) {
	t.Setenv("TEST_WOOPRA_AUTH", "tracker:s3cret")
	em := emulator.New(emulator.Options{RecordAllHeaders: true})
	url, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	tap := &headerTap{visitors: map[string]string{}}
	cfg := testConfig(t, url)
	cfg.Tap = tap
	cfg.Sources = sourcesFile(t, `sources:
  - name: secure
    write_key: key-s
    preset: default
    settings: {project: example.com}
    woopra_auth_env: TEST_WOOPRA_AUTH
    order: none
  - name: plain
    write_key: key-p
    preset: default
    settings: {project: example.com}
`)
	r := started(t, cfg)
	if s := track(t, r, "key-s", "u1", "m-secure"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	if s := track(t, r, "key-p", "u1", "m-plain"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	delivered(t, em, "m-secure", "event")
	delivered(t, em, "m-plain", "event")
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("tracker:s3cret"))
	for _, rec := range em.Requests() {
		got := rec.Headers["Authorization"]
		switch rec.Params.Get("ce_mid") {
		case "m-secure":
			if got != want {
				t.Errorf("the secure source's request carried Authorization %q, want %q", got, want)
			}
		case "m-plain":
			if got != "" {
				t.Errorf("the plain source's request carried Authorization %q", got)
			}
		}
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		tap.mu.Lock()
		n := tap.attempts
		tap.mu.Unlock()
		if n >= 2 {
			break
		}
	}
	tap.mu.Lock()
	defer tap.mu.Unlock()
	if tap.auth != 0 {
		t.Errorf("the tap saw %d requests with credentials; it must see none", tap.auth)
	}
	if v := tap.visitors["m-secure"]; v != "" {
		t.Errorf("order: none stored visitor key %q, want none", v)
	}
	if v := tap.visitors["m-plain"]; v == "" {
		t.Error("the ordered source stored no visitor key")
	}
}

// TestSourceOptionsMistakes: an unknown order and a missing credentials variable stop the
// load with a finding that says what to do.
func TestSourceOptionsMistakes(t *testing.T) {
	p := t.TempDir() + "/woorelay.yaml"
	if err := os.WriteFile(p, []byte(`sources:
  - name: a
    write_key: k
    preset: default
    order: sideways
    woopra_auth_env: TEST_WOOPRA_AUTH_UNSET
`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := server.LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), `order "sideways" is not visitor or none`) ||
		!strings.Contains(err.Error(), "TEST_WOOPRA_AUTH_UNSET") {
		t.Errorf("LoadConfig = %v; want findings for the order and the unset variable", err)
	}
}
