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
