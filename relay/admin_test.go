package relay

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/admin"
)

// TestAdminListener: the admin API answers on the admin listener only; the ingest listener
// answers its paths 404 with where they went, and still serves its own routes.
func TestAdminListener(t *testing.T) {
	_, url := woopra(t)
	r := started(t, testConfig(t, url))
	if r.AdminURL() == "" || r.AdminURL() == r.URL() {
		t.Fatalf("admin URL %q, ingest URL %q: want two listeners", r.AdminURL(), r.URL())
	}
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cases := []struct {
		url, want string
		status    int
	}{
		{r.AdminURL() + "/admin/counters", `"reconciles":true`, 200},
		{r.AdminURL() + "/admin/dlq", `"dead_letters":[]`, 200},
		{r.AdminURL() + "/v1/track", "on the admin listener", 404},
		{r.AdminURL() + "/metrics", "on the admin listener", 404},
		{r.URL() + "/admin/counters", "served on the admin listener (--admin-listen", 404},
		{r.URL() + "/admin/dlq/1", "served on the admin listener", 404},
		{r.URL() + "/emulator/requests", "served on the admin listener", 404},
		{r.URL() + "/healthz", `"ok"`, 200},
		{r.URL() + "/readyz", `"ready"`, 200},
		{r.URL() + "/metrics", "woorelay_events", 200},
	}
	for _, tc := range cases {
		status, body := get(tc.url)
		if status != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d %s; want %d with %q", tc.url, status, body, tc.status, tc.want)
		}
		if status == 404 {
			var e admin.Error
			if json.Unmarshal([]byte(body), &e) != nil || e.Code != "not_found" {
				t.Errorf("GET %s: the 404 is not a JSON error: %s", tc.url, body)
			}
		}
	}
}

// TestAdminListenChecks: a non-loopback admin address needs a token; a bad one is a finding.
func TestAdminListenChecks(t *testing.T) {
	cases := []struct {
		listen, token string
		finding       string // "" for none
	}{
		{"127.0.0.1:0", "", ""},
		{"[::1]:0", "", ""},
		{"localhost:0", "", ""},
		{"0.0.0.0:0", "", "is not a loopback address and no --admin-token is set"},
		{":9090", "", "is not a loopback address"},
		{"10.1.2.3:9090", "", "set --admin-token (or WOORELAY_ADMIN_TOKEN), or bind it to 127.0.0.1"},
		{"0.0.0.0:0", "s3cret", ""},
		{"127.0.0.1", "", "is not host:port"},
	}
	for _, tc := range cases {
		c := Config{AdminListen: tc.listen, AdminToken: tc.token}.withDefaults()
		err := c.validate()
		switch {
		case tc.finding == "" && err != nil:
			t.Errorf("%s token %q: %v, want no finding", tc.listen, tc.token, err)
		case tc.finding != "" && (err == nil || !strings.Contains(err.Error(), "--admin-listen: ") || !strings.Contains(err.Error(), tc.finding)):
			t.Errorf("%s token %q: %v, want a --admin-listen finding saying %q", tc.listen, tc.token, err, tc.finding)
		}
	}
}

// TestDebuggerSignIn: with an admin token the debugger answers 401 until the browser signs in
// with the token, which sets a SameSite=Strict cookie the guard then accepts; with
// --debugger-events 0 its paths say it is off; the ingest listener does not serve it.
func TestDebuggerSignIn(t *testing.T) {
	_, url := woopra(t)
	cfg := testConfig(t, url)
	cfg.AdminToken = "s3cret"
	r := started(t, cfg)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	do := func(method, path, body string, cookie *http.Cookie) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, r.AdminURL()+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if s := do("GET", "/debugger/", "", nil).StatusCode; s != 401 {
		t.Errorf("the page without the token: %d, want 401", s)
	}
	if s := do("GET", "/debugger/login", "", nil).StatusCode; s != 200 {
		t.Errorf("the sign-in form: %d", s)
	}
	if s := do("POST", "/debugger/login", "token=wrong", nil).StatusCode; s != 401 {
		t.Errorf("a wrong token: %d, want 401", s)
	}
	resp := do("POST", "/debugger/login", "token=s3cret", nil)
	var ck *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == admin.TokenCookie {
			ck = c
		}
	}
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/debugger/" || ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
		t.Fatalf("sign-in: %d to %q, cookie %+v", resp.StatusCode, resp.Header.Get("Location"), ck)
	}
	for _, path := range []string{"/debugger/", "/debugger/app.js", "/debugger/api/events", "/admin/counters"} {
		if s := do("GET", path, "", ck).StatusCode; s != 200 {
			t.Errorf("GET %s signed in: %d", path, s)
		}
	}
	if s, err := http.Get(r.URL() + "/debugger/"); err != nil || s.StatusCode != 404 {
		t.Errorf("the ingest listener serves the debugger: %v %v", s, err)
	}

	cfg = testConfig(t, url)
	cfg.DebuggerEvents = -1
	off := started(t, cfg)
	resp, err := http.Get(off.AdminURL() + "/debugger/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || !strings.Contains(string(b), "debugger_off") {
		t.Errorf("with no debugger: %d %s", resp.StatusCode, b)
	}
}
