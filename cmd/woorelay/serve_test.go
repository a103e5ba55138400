package main

import (
	"bytes"
	"context"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		bad  bool
	}{
		{"0", 0, false}, {"1048576", 1 << 20, false}, {"512MB", 512 << 20, false}, {"10GB", 10 << 30, false},
		{"1.5kb", 1536, false}, {" 2 TB ", 2 << 40, false}, {"8B", 8, false},
		{"lots", 0, true}, {"-1MB", 0, true}, {"MB", 0, true},
	}
	for _, c := range cases {
		got, err := parseSize(c.in)
		if (err != nil) != c.bad || (!c.bad && got != c.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d (error %v)", c.in, got, err, c.want, c.bad)
		}
	}
}

// TestFlagsFromEnvironment: every serve flag can be set as WOORELAY_<FLAG>; the command line wins.
func TestFlagsFromEnvironment(t *testing.T) {
	t.Setenv("WOORELAY_LISTEN", "127.0.0.1:9999")
	t.Setenv("WOORELAY_WOOPRA_URL", "http://emulator:8081")
	t.Setenv("WOORELAY_RETRY_WINDOW", "90m")
	t.Setenv("WOORELAY_DATA", "/from/env")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var f serveFlags
	f.register(fs)
	if err := fs.Parse([]string{"--data", "/from/flag"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	if f.listen != "127.0.0.1:9999" || f.woopraURL != "http://emulator:8081" || f.retryWindow != 90*time.Minute || f.data != "/from/flag" {
		t.Errorf("got listen %q woopra-url %q retry-window %v data %q", f.listen, f.woopraURL, f.retryWindow, f.data)
	}
	t.Setenv("WOORELAY_ADMIN_LISTEN", "127.0.0.1:9191")
	t.Setenv("WOORELAY_TLS_CERT", "/etc/ssl/ingest.pem")
	if err := applyEnv(fs); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.relayConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AdminListen != "127.0.0.1:9191" || cfg.TLSCert != "/etc/ssl/ingest.pem" || cfg.Listen != "127.0.0.1:9999" {
		t.Errorf("relay config: admin-listen %q tls-cert %q listen %q", cfg.AdminListen, cfg.TLSCert, cfg.Listen)
	}
	t.Setenv("WOORELAY_WORKERS", "many")
	if err := applyEnv(fs); err == nil || !strings.Contains(err.Error(), "WOORELAY_WORKERS") {
		t.Errorf("a bad value in the environment gave %v; want an error naming the variable", err)
	}
}

// runServe runs cmdServe until stop is called and returns the ingest and admin URLs it
// printed.
func runServe(t *testing.T, args ...string) (url, adminURL string, stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	old := serveContext
	serveContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	t.Cleanup(func() { serveContext = old })
	var out, errb syncBuffer
	var wg sync.WaitGroup
	code := 0
	wg.Add(1)
	go func() { defer wg.Done(); code = cmdServe(args, &out, &errb) }()
	re := regexp.MustCompile(`listening on (https?://\S+)\nwoorelay: admin API on (http://\S+)`)
	waitFor(t, 20*time.Second, "serve to listen", func() bool { return re.MatchString(out.String()) || strings.Contains(errb.String(), "woorelay serve:") })
	m := re.FindStringSubmatch(out.String())
	if m == nil {
		cancel()
		wg.Wait()
		t.Fatalf("serve did not start:\n%s", errb.String())
	}
	return m[1], m[2], func() (int, string) { cancel(); wg.Wait(); return code, errb.String() }
}

// TestServeDevelopmentSandbox: with no config and no project, serve accepts any key, says so
// loudly, and delivers to its in-process emulator, whose records it serves on the admin
// listener.
func TestServeDevelopmentSandbox(t *testing.T) {
	url, adminURL, stop := runServe(t, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data", t.TempDir(), "--log-level", "info")
	if s := sendOne(t, url, "sandbox-user", "m-sandbox"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	waitFor(t, 20*time.Second, "the sandbox emulator to record the event", func() bool {
		resp, err := http.Get(adminURL + "/emulator/requests")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return strings.Contains(b.String(), `"ce_mid":"m-sandbox"`) && strings.Contains(b.String(), `"project":"sandbox.woorelay"`)
	})
	code, logs := stop()
	if code != 0 {
		t.Errorf("exit %d:\n%s", code, logs)
	}
	for _, want := range []string{"DEVELOPMENT MODE", "ANY write key", "SANDBOX", "/emulator/requests"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the start-up log does not say %q:\n%s", want, logs)
		}
	}
}

// TestServeConfigErrors: a bad sources file stops serve with exit status 2 and file:line:col.
func TestServeConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "woorelay.yaml")
	os.WriteFile(cfg, []byte("sources:\n  - name: web\n    write_key: k\n    preset: default\n    setings: {project: x}\n"), 0o644)
	var out, errb bytes.Buffer
	code := cmdServe([]string{"--config", cfg, "--listen", "127.0.0.1:0", "--data", dir}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "woorelay.yaml:5:5") || !strings.Contains(errb.String(), `did you mean "settings"`) {
		t.Errorf("exit %d, stderr:\n%s", code, errb.String())
	}
	errb.Reset()
	if code := cmdServe([]string{"--disk-budget", "lots"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "--disk-budget") {
		t.Errorf("a bad --disk-budget: exit %d, stderr %s", code, errb.String())
	}
}
