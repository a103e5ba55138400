package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/privacy"
	"github.com/woorelay/woorelay/queue"
)

// privacySources loads a one-source file with the privacy section given.
func privacySources(t *testing.T, section string) []*Source {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "w.yaml")
	body := "sources:\n  - name: web\n    write_key: " + keyWeb + "\n    preset: default\n    settings: {project: example.com}\n    privacy: " + section + "\n"
	if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(f)
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := cfg.Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	return srcs
}

// TestEdgeMinimisation: what the store receives has the truncated address, no phone and the
// salted hash instead of the e-mail; the request Woopra would get carries the truncated address.
func TestEdgeMinimisation(t *testing.T) {
	t.Setenv(SaltEnv, "pepper")
	srcs := privacySources(t, "{ip: truncate, drop: [context.traits.phone], hash: [context.traits.email]}")
	s, st := newTest(t, func(o *Options) { o.Sources = srcs })
	st.sources = srcs
	rec := do(t, s, req{method: "POST", path: "/v1/track", headers: map[string]string{"Authorization": basic(keyWeb)},
		body: `{"event":"E","userId":"u1","context":{"ip":"203.0.113.50","traits":{"phone":"+44 7700 900123","email":"jane@example.com"}}}`})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	es := st.mapped()
	if len(es) != 1 {
		t.Fatalf("stored %d entries", len(es))
	}
	stored := string(st.all()[0].Event)
	for _, gone := range []string{"203.0.113.50", "7700", "jane@example.com"} {
		if strings.Contains(stored, gone) {
			t.Errorf("the stored event still holds %q: %s", gone, stored)
		}
	}
	if !strings.Contains(stored, `"ip":"203.0.113.0"`) {
		t.Errorf("the stored event lacks the truncated address: %s", stored)
	}
	if got := param(t, es[0], "ip"); got != "203.0.113.0" {
		t.Errorf("Woopra's ip = %q, want 203.0.113.0", got)
	}
}

func TestPrivacyConfigErrors(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "w.yaml")
	os.WriteFile(f, []byte("sources:\n  - name: web\n    write_key: k\n    preset: default\n    privacy: {ip: mask, drop: [a..b], hash: [x]}\n"), 0o644)
	t.Setenv(SaltEnv, "")
	_, err := LoadConfig(f)
	if err == nil {
		t.Fatal("a bad privacy section was accepted")
	}
	for _, want := range []string{`ip "mask"`, `"a..b"`, SaltEnv} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not mention %s: %v", want, err)
		}
	}
}

type setSuppressions struct{ s *privacy.Set }

func (x setSuppressions) Suppressed(ev []byte) bool { return x.s.MatchEvent(ev) }

// TestEdgeSuppression: a suppressed person's event is answered 200 and reaches the store only
// as a filtered entry without content; another person's is queued.
func TestEdgeSuppression(t *testing.T) {
	sup := setSuppressions{privacy.NewSet(privacy.Selector{Kind: privacy.UserID, Value: "gone"})}
	s, st := newTest(t, func(o *Options) { o.Suppressions = sup })
	rec := do(t, s, req{method: "POST", path: "/v1/batch", headers: map[string]string{"Authorization": basic(keyWeb)},
		body: `{"batch":[{"type":"track","event":"E","userId":"gone","traits":{"email":"x@y.z"}},{"type":"track","event":"E","userId":"stays"}]}`})
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	es := st.all()
	if len(es) != 2 || es[0].Outcome != queue.Filtered || es[0].Reason != ReasonSuppressed || es[0].Event != nil || es[0].Visitor != "" {
		t.Fatalf("the suppressed event was stored as %+v", es[0])
	}
	if es[1].Outcome != queue.Deliver {
		t.Errorf("the other person's event is %v", es[1].Outcome)
	}
}
