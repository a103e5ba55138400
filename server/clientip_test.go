package server

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/tidwall/gjson"
)

// TestClientIP: the client's address from the TCP peer, or through trusted proxies from the
// right-most untrusted address of X-Forwarded-For, else Forwarded.
func TestClientIP(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	cases := []struct {
		name    string
		peer    string
		headers map[string][]string
		want    string
	}{
		{"direct peer", "198.51.100.4:5123", nil, "198.51.100.4"},
		{"direct IPv6 peer", "[2001:db8::7]:5123", nil, "2001:db8::7"},
		{"IPv4-mapped peer", "[::ffff:198.51.100.4]:5123", nil, "198.51.100.4"},
		{"untrusted peer with a forged header", "198.51.100.4:5123", map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "198.51.100.4"},
		{"untrusted peer with a forged Forwarded", "198.51.100.4:5123", map[string][]string{"Forwarded": {"for=203.0.113.9"}}, "198.51.100.4"},
		{"trusted proxy, one hop", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9"},
		{"trusted proxies, several hops", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"203.0.113.9, 10.1.2.3, 10.0.0.7"}}, "203.0.113.9"},
		{"spoofed left-most entries", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"1.1.1.1, 8.8.8.8, 203.0.113.9, 10.1.2.3"}}, "203.0.113.9"},
		{"several header lines", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"8.8.8.8", "203.0.113.9,10.1.2.3"}}, "203.0.113.9"},
		{"entries with ports", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"[2001:db8::9]:443, 10.1.2.3:80"}}, "2001:db8::9"},
		{"every hop trusted: the left-most", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"10.9.9.9, 10.1.2.3"}}, "10.9.9.9"},
		{"trusted proxy without a header", "127.0.0.1:40000", nil, "127.0.0.1"},
		{"garbage ends the walk at the last address", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"203.0.113.9, unknown"}}, "127.0.0.1"},
		{"Forwarded", "127.0.0.1:40000", map[string][]string{"Forwarded": {`for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"Forwarded through trusted hops", "127.0.0.1:40000", map[string][]string{"Forwarded": {`for=8.8.8.8, For=192.0.2.60`, `for="[2001:db8:ffff::1]"`}}, "192.0.2.60"},
		{"Forwarded unknown", "127.0.0.1:40000", map[string][]string{"Forwarded": {`for=unknown`}}, "127.0.0.1"},
		{"X-Forwarded-For wins over Forwarded", "127.0.0.1:40000", map[string][]string{"Forwarded": {"for=8.8.8.8"}, "X-Forwarded-For": {"203.0.113.9"}}, "203.0.113.9"},
		{"IPv4-mapped hop", "127.0.0.1:40000", map[string][]string{"X-Forwarded-For": {"::ffff:203.0.113.9"}}, "203.0.113.9"},
		{"no trusted proxies configured", "10.0.0.1:1", map[string][]string{"X-Forwarded-For": {"203.0.113.9"}}, "10.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/v1/track", nil)
			r.RemoteAddr = tc.peer
			r.Header = http.Header(tc.headers)
			tr := trusted
			if tc.name == "no trusted proxies configured" {
				tr = nil
			}
			if got := clientIP(r, tr); got.String() != tc.want {
				t.Errorf("clientIP = %s, want %s", got, tc.want)
			}
		})
	}
	r := httptest.NewRequest("POST", "/v1/track", nil)
	r.RemoteAddr = "pipe"
	if got := clientIP(r, trusted); got.IsValid() {
		t.Errorf("a peer that is not an address gave %s, want none", got)
	}
}

// TestContextIP: the edge sets context.ip from the client's address (192.0.2.1, httptest's
// peer) when the event, merged with its batch, has none, and keeps an event's own.
func TestContextIP(t *testing.T) {
	cases := []struct {
		name, path, body string
		want             string // the stored context, as JSON
	}{
		{"no context", "/v1/track", `{"event":"E","anonymousId":"a"}`, `{"ip":"192.0.2.1"}`},
		{"context without ip", "/v1/track", `{"event":"E","anonymousId":"a","context":{"library":{"name":"x"}}}`, `{"library":{"name":"x"},"ip":"192.0.2.1"}`},
		{"empty context", "/v1/track", `{"event":"E","anonymousId":"a","context":{ }}`, `{"ip":"192.0.2.1"}`},
		{"null context", "/v1/track", `{"event":"E","anonymousId":"a","context":null}`, `{"ip":"192.0.2.1"}`},
		{"own ip kept", "/v1/track", `{"event":"E","anonymousId":"a","context":{"ip":"198.51.100.7"}}`, `{"ip":"198.51.100.7"}`},
		{"empty ip replaced", "/v1/track", `{"event":"E","anonymousId":"a","context":{"ip":"","a":1}}`, `{"a":1,"ip":"192.0.2.1"}`},
		{"null ip replaced", "/v1/track", `{"event":"E","anonymousId":"a","context":{"a":1,"ip":null}}`, `{"a":1,"ip":"192.0.2.1"}`},
		{"batch context with ip kept", "/v1/batch", `{"batch":[{"type":"track","event":"E","anonymousId":"a"}],"context":{"ip":"198.51.100.8"}}`, `{"ip":"198.51.100.8"}`},
		{"batch context without ip", "/v1/batch", `{"batch":[{"type":"track","event":"E","anonymousId":"a"}],"context":{"b":2}}`, `{"b":2,"ip":"192.0.2.1"}`},
		{"merged, the batch has the ip", "/v1/batch", `{"batch":[{"type":"track","event":"E","anonymousId":"a","context":{"a":1}}],"context":{"ip":"198.51.100.8"}}`, `{"a":1,"ip":"198.51.100.8"}`},
		{"merged, the event has the ip", "/v1/batch", `{"batch":[{"type":"track","event":"E","anonymousId":"a","context":{"ip":"198.51.100.7"}}],"context":{"b":2}}`, `{"ip":"198.51.100.7","b":2}`},
		{"merged, neither has one", "/v1/batch", `{"batch":[{"type":"track","event":"E","anonymousId":"a","context":{"a":1}}],"context":{"b":2}}`, `{"a":1,"b":2,"ip":"192.0.2.1"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newTest(t, nil)
			rec := do(t, s, req{path: tc.path, body: tc.body, headers: map[string]string{"Authorization": basic(keyWeb)}})
			if rec.Code != 200 {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			es := st.all()
			if len(es) != 1 {
				t.Fatalf("%d events stored", len(es))
			}
			if !gjson.ValidBytes(es[0].Event) {
				t.Fatalf("stored event is not JSON: %s", es[0].Event)
			}
			if got := gjson.GetBytes(es[0].Event, "context").Raw; got != tc.want {
				t.Errorf("context %s, want %s\nevent %s", got, tc.want, es[0].Event)
			}
		})
	}
}
