package relay

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
)

// clientFrom is an HTTP client whose connections leave from the loopback address local
// (127.0.0.2 and the rest of 127.0.0.0/8 are loopback too), so one test can be several peers.
func clientFrom(local string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
}

// TestClientIPReachesWoopra: the ip Woopra receives for events without context.ip is the
// client's, from the TCP peer or through trusted proxies (127.0.0.2 and 10.0.0.0/8 here);
// an event's own context.ip is kept.
func TestClientIPReachesWoopra(t *testing.T) {
	em, url := woopra(t)
	cfg := testConfig(t, url)
	cfg.Sources = sourcesFile(t, "trusted_proxies: [127.0.0.2, 10.0.0.0/8]\nsources:\n  - name: web\n    write_key: k\n    preset: default\n    settings: {project: p.com}\n")
	r := started(t, cfg)
	cases := []struct {
		name, from, context string
		headers             map[string]string
		want                string
	}{
		{"direct peer", "127.0.0.1", "", nil, "127.0.0.1"},
		{"untrusted peer with a forged X-Forwarded-For", "127.0.0.1", "", map[string]string{"X-Forwarded-For": "203.0.113.66"}, "127.0.0.1"},
		{"untrusted peer with a forged Forwarded", "127.0.0.1", "", map[string]string{"Forwarded": "for=203.0.113.66"}, "127.0.0.1"},
		{"trusted proxy, one hop", "127.0.0.2", "", map[string]string{"X-Forwarded-For": "203.0.113.7"}, "203.0.113.7"},
		{"trusted proxies, several hops", "127.0.0.2", "", map[string]string{"X-Forwarded-For": "203.0.113.7, 10.0.0.5, 10.20.0.1"}, "203.0.113.7"},
		{"spoofed left-most entries", "127.0.0.2", "", map[string]string{"X-Forwarded-For": "1.1.1.1, 9.9.9.9, 203.0.113.7, 10.0.0.5"}, "203.0.113.7"},
		{"Forwarded", "127.0.0.2", "", map[string]string{"Forwarded": `for=198.51.100.1, for="[2001:db8:cafe::17]:4711";proto=https`}, "2001:db8:cafe::17"},
		{"the event's own context.ip", "127.0.0.2", `"context":{"ip":"198.51.100.42"},`, map[string]string{"X-Forwarded-For": "203.0.113.7"}, "198.51.100.42"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mid := "m-ip-" + string(rune('a'+i))
			body := `{"type":"track","event":"Played","userId":"u-` + mid + `",` + tc.context + `"messageId":"` + mid + `","properties":{"mid":"` + mid + `"}}`
			req, _ := http.NewRequest("POST", r.URL()+"/v1/track", strings.NewReader(body))
			req.SetBasicAuth("k", "")
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := clientFrom(tc.from).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("ingest answered %d", resp.StatusCode)
			}
			if got := delivered(t, em, mid, "ip"); got != tc.want {
				t.Errorf("Woopra received ip=%q, want %q", got, tc.want)
			}
		})
	}
}

// TestReloadTrustedProxies: a reload swaps the trusted proxies with the sources: a header
// ignored before is believed after, and the other way round.
func TestReloadTrustedProxies(t *testing.T) {
	em, url := woopra(t)
	cfg := testConfig(t, url)
	const sources = "sources:\n  - name: web\n    write_key: k\n    preset: default\n    settings: {project: p.com}\n"
	cfg.Sources = sourcesFile(t, sources)
	r := started(t, cfg)
	send := func(mid string) string {
		t.Helper()
		body := `{"type":"track","event":"Played","userId":"u-` + mid + `","messageId":"` + mid + `","properties":{"mid":"` + mid + `"}}`
		req, _ := http.NewRequest("POST", r.URL()+"/v1/track", strings.NewReader(body))
		req.SetBasicAuth("k", "")
		req.Header.Set("X-Forwarded-For", "203.0.113.7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return delivered(t, em, mid, "ip")
	}
	if ip := send("m-before"); ip != "127.0.0.1" {
		t.Errorf("before the reload ip=%s, want the peer 127.0.0.1", ip)
	}
	cfg.Sources = sourcesFile(t, "trusted_proxies: [127.0.0.0/8]\n"+sources)
	if err := r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if ip := send("m-after"); ip != "203.0.113.7" {
		t.Errorf("after the reload ip=%s, want the forwarded 203.0.113.7", ip)
	}
	cfg.Sources = sourcesFile(t, sources)
	if err := r.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if ip := send("m-untrusted-again"); ip != "127.0.0.1" {
		t.Errorf("after removing the proxy ip=%s, want the peer 127.0.0.1", ip)
	}
}
