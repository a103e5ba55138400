package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/bench"
)

// loopbackClient is an HTTP client whose connections leave from the loopback address local
// (127.0.0.2 is loopback too), so a test can tell the visitor from the proxy.
func loopbackClient(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
}

// TestBehindReverseProxy: `woorelay serve` behind a reverse proxy on loopback, as nginx on the
// same host would be. Through the proxy, only ingest answers: /admin/* and /emulator/* are not
// found on the ingest port; the admin port answers locally; the visitor's address (the one the
// proxy puts in X-Forwarded-For) reaches Woopra, not the proxy's and not a forged one.
func TestBehindReverseProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test; skipped with -short")
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "woorelay.yaml")
	// No project: the sandbox emulator receives the events, and its records are on the admin port.
	os.WriteFile(cfg, []byte("trusted_proxies: [127.0.0.1]\nsources:\n  - name: web\n    write_key: web-key\n    preset: default\n"), 0o644)
	addr, err := bench.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := bench.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	p := startWoorelay(t, addr, nil, "serve", "--config", cfg, "--listen", addr, "--admin-listen", adminAddr, "--data", filepath.Join(dir, "data"), "--log-level", "warn")

	target, _ := url.Parse(p.url)
	proxyLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	proxy := &http.Server{Handler: httputil.NewSingleHostReverseProxy(target)}
	go proxy.Serve(proxyLn)
	t.Cleanup(func() { proxy.Close() })
	front := "http://" + proxyLn.Addr().String()
	visitor := loopbackClient("127.0.0.2")

	call := func(c *http.Client, method, u, body string, headers map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, u, strings.NewReader(body))
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, mid := range []string{"m-proxied", "m-forged"} {
		h := map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("web-key:"))}
		if mid == "m-forged" {
			h["X-Forwarded-For"] = "6.6.6.6" // what the visitor claims; the proxy appends the truth
		}
		body := `{"type":"track","event":"Played","anonymousId":"a-` + mid + `","messageId":"` + mid + `","properties":{"mid":"` + mid + `"}}`
		if s, b := call(visitor, "POST", front+"/v1/track", body, h); s != 200 {
			t.Fatalf("ingest through the proxy: %d %s", s, b)
		}
	}
	for _, path := range []string{"/admin/counters", "/admin/dlq", "/admin/dlq/1", "/emulator/requests", "/emulator/visitors", "/emulator/faults"} {
		for _, method := range []string{"GET", "POST"} {
			if s, b := call(visitor, method, front+path, `{"all":true}`, nil); s != 404 || !strings.Contains(b, "admin listener") {
				t.Errorf("%s %s through the proxy: %d %s; want 404 pointing at the admin listener", method, path, s, b)
			}
		}
	}
	if s, b := call(visitor, "GET", front+"/readyz", "", nil); s != 200 {
		t.Errorf("/readyz through the proxy: %d %s", s, b)
	}

	var records string
	waitFor(t, 30*time.Second, "both events at the sandbox emulator, read on the admin port", func() bool {
		s, b := call(http.DefaultClient, "GET", p.admin+"/emulator/requests", "", nil)
		records = b
		return s == 200 && strings.Contains(b, `"ce_mid":"m-proxied"`) && strings.Contains(b, `"ce_mid":"m-forged"`)
	})
	for _, line := range strings.Split(strings.TrimSpace(records), "\n") {
		if !strings.Contains(line, `"ip":"127.0.0.2"`) {
			t.Errorf("Woopra did not receive the visitor's address 127.0.0.2: %s", line)
		}
	}
	if s, b := call(http.DefaultClient, "GET", p.admin+"/admin/counters", "", nil); s != 200 || !strings.Contains(b, `"received":2`) {
		t.Errorf("/admin/counters on the admin port: %d %s", s, b)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"dlq", "--server", p.admin, "list"}, nil, &out, &errb); code != 0 {
		t.Errorf("dlq list against the admin port: exit %d: %s", code, errb.String())
	}
}

// TestAdminBindNeedsToken: serve refuses to bind the admin listener to a non-loopback address
// without an admin token, with exit status 2 and a message that says why and what to do.
func TestAdminBindNeedsToken(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test; skipped with -short")
	}
	cmd := exec.Command(woorelayBinary(t), "serve", "--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0", "--data", t.TempDir())
	cmd.Env = append(os.Environ(), "WOORELAY_ADMIN_TOKEN=")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("serve --admin-listen 0.0.0.0:0 without a token: %v, want exit status 2:\n%s", err, out)
	}
	for _, want := range []string{"--admin-listen: 0.0.0.0:0 is not a loopback address and no --admin-token is set", "dead letters", "set --admin-token"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
}
