package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/server/sdkfiles"
)

// body returns an answer's body, decompressed when it says gzip.
func body(t *testing.T, h http.Header, b []byte) string {
	t.Helper()
	if h.Get("Content-Encoding") != "gzip" {
		return string(b)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestSegmentScriptServed: analytics.js is served at the Segment CDN's path for a configured
// write key, gzip-compressed to browsers and plain to others, with the relay's address in
// place of the CDN's, so its chunks and settings are fetched from the relay.
func TestSegmentScriptServed(t *testing.T) {
	s, _ := newTest(t, nil)
	path := "/analytics.js/v1/" + keyWeb + "/analytics.min.js"
	var etag string
	for _, ae := range []string{"gzip, deflate, br", ""} {
		hr := newRequest(t, req{method: "GET", path: path, headers: map[string]string{"Accept-Encoding": ae}})
		hr.Host = "relay.local:8080"
		rec := serve(s, hr)
		if rec.Code != 200 {
			t.Fatalf("Accept-Encoding %q: %d %s", ae, rec.Code, rec.Body)
		}
		if gz := rec.Header().Get("Content-Encoding") == "gzip"; gz != (ae != "") {
			t.Errorf("Accept-Encoding %q answered with Content-Encoding %q", ae, rec.Header().Get("Content-Encoding"))
		}
		js := body(t, rec.Header(), rec.Body.Bytes())
		if strings.Contains(js, "cdn.segment.com") {
			t.Errorf("the served analytics.js still names cdn.segment.com")
		}
		if !strings.Contains(js, `"http://relay.local:8080/analytics-next/bundles/"`) || !strings.Contains(js, `"http://relay.local:8080"`) {
			t.Errorf("the served analytics.js does not load its chunks from the relay")
		}
		if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/javascript") {
			t.Errorf("Content-Type %q", ct)
		}
		etag = rec.Header().Get("ETag")
	}
	hr := newRequest(t, req{method: "GET", path: path, headers: map[string]string{"If-None-Match": etag}})
	hr.Host = "relay.local:8080"
	if rec := serve(s, hr); rec.Code != http.StatusNotModified || etag == "" {
		t.Errorf("If-None-Match %s: %d", etag, rec.Code)
	}
	// Behind a proxy, the public URL is the CDN address.
	s2, _ := newTest(t, func(o *Options) { o.PublicURL = "https://ingest.example.com" })
	rec := do(t, s2, req{method: "GET", path: path})
	if js := rec.Body.String(); rec.Code != 200 || !strings.Contains(js, `"https://ingest.example.com/analytics-next/bundles/"`) {
		t.Errorf("with public_url: %d, bundles from the public URL: %v", rec.Code, strings.Contains(js, "https://ingest.example.com/analytics-next/bundles/"))
	}
	if rec := do(t, s, req{method: "GET", path: "/analytics.js/v1/nope/analytics.min.js"}); rec.Code != 401 {
		t.Errorf("an unknown write key: %d", rec.Code)
	}
	if rec := do(t, s, req{method: "HEAD", path: path}); rec.Code != 200 || rec.Body.Len() != 0 {
		t.Errorf("HEAD: %d with %d bytes", rec.Code, rec.Body.Len())
	}
}

// TestSDKFilesServed: every chunk of analytics.js and both rsa.min.js builds are served as
// embedded (their content's SHA-256 as recorded), unknown files are 404.
func TestSDKFilesServed(t *testing.T) {
	s, _ := newTest(t, nil)
	n := 0
	for _, name := range sdkfiles.Names() {
		var path string
		switch {
		case strings.HasPrefix(name, "segment/bundles/"):
			path = "/analytics-next/bundles/" + strings.TrimPrefix(name, "segment/bundles/")
		case strings.HasPrefix(name, "rudderstack/"):
			path = "/v3/" + strings.TrimPrefix(name, "rudderstack/")
		default:
			continue
		}
		n++
		rec := do(t, s, req{method: "GET", path: path, headers: map[string]string{"Accept-Encoding": "gzip"}})
		if rec.Code != 200 {
			t.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
		}
		js := body(t, rec.Header(), rec.Body.Bytes())
		f, _ := sdkfiles.Lookup(name)
		if sum := sha256.Sum256([]byte(js)); hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Errorf("%s: served content differs from the embedded file", path)
		}
		if strings.HasPrefix(name, "rudderstack/") && !strings.Contains(js, "new RudderAnalytics();") {
			t.Errorf("%s does not take over the loading snippet's buffer", path)
		}
	}
	if n < 7 {
		t.Errorf("only %d files served", n)
	}
	for _, p := range []string{"/analytics-next/bundles/nope.js", "/v3/nope/rsa.min.js", "/analytics-next/bundles/..%2f..%2fsdkfiles.go"} {
		if rec := do(t, s, req{method: "GET", path: p}); rec.Code != 404 {
			t.Errorf("%s: %d", p, rec.Code)
		}
	}
}

// TestRudderStackAdBlockProbe: analytics-js's HEAD sourceConfig?view=ad succeeds (it was 405,
// which made the SDK take every page for ad-blocked).
func TestRudderStackAdBlockProbe(t *testing.T) {
	s, _ := newTest(t, nil)
	for _, p := range []string{"/sourceConfig?view=ad", "/sourceConfig/?view=ad"} {
		if rec := do(t, s, req{method: "HEAD", path: p, headers: map[string]string{"Origin": "https://www.example.com"}}); rec.Code != 200 {
			t.Errorf("HEAD %s: %d %s", p, rec.Code, rec.Body)
		}
	}
}

// TestRudderStackServerSideCookies: /rsaRequest sets analytics-js's cookies from the server
// for the site's domain, long-lived, with the SDK's SameSite and Secure, readable by the SDK.
func TestRudderStackServerSideCookies(t *testing.T) {
	s, _ := newTest(t, func(o *Options) { o.AllowedOrigins = []string{"https://www.example.com"} })
	setCookies := `{"reqType":"setCookies","workspaceId":"woorelay","data":{"options":{"maxAge":31536000000,"path":"/","domain":".example.com","sameSite":"Lax","secure":true},` +
		`"cookies":[{"name":"rl_anonymous_id","value":"RS_ENC_v3_ImFub24tMSI="},{"name":"rl_user_id","value":"RS_ENC_v3_InUtMSI="}]}}`
	hr := newRequest(t, req{method: "POST", path: "/rsaRequest", body: setCookies, headers: map[string]string{"Origin": "https://www.example.com"}})
	hr.Host = "www.example.com"
	rec := serve(s, hr)
	if rec.Code != 200 {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Access-Control-Allow-Credentials") != "true" || rec.Header().Get("Access-Control-Allow-Origin") != "https://www.example.com" {
		t.Errorf("a listed origin is not answered with credentials: %v", rec.Header())
	}
	got := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: rec.Header()}).Cookies() {
		got[c.Name] = c
	}
	for name, want := range map[string]string{"rl_anonymous_id": "RS_ENC_v3_ImFub24tMSI=", "rl_user_id": "RS_ENC_v3_InUtMSI="} {
		c := got[name]
		if c == nil {
			t.Fatalf("no Set-Cookie for %s: %v", name, rec.Header()["Set-Cookie"])
		}
		if v := decodeURIComponent(c.Value); v != want {
			t.Errorf("%s = %q, want %q", name, v, want)
		}
		if c.Domain != "example.com" || c.Path != "/" || c.MaxAge != 365*24*3600 || c.SameSite != http.SameSiteLaxMode || !c.Secure || c.HttpOnly {
			t.Errorf("%s: domain %q path %q max-age %d samesite %v secure %v httponly %v", name, c.Domain, c.Path, c.MaxAge, c.SameSite, c.Secure, c.HttpOnly)
		}
	}

	// A domain the request's host is not within gives a host-only cookie; no options, a year.
	hr = newRequest(t, req{method: "POST", path: "/rsaRequest", body: `{"reqType":"setCookies","data":{"options":{"domain":".other.example"},"cookies":[{"name":"rl_session","value":"x y"}]}}`})
	hr.Host = "www.example.com:8443"
	rec = serve(s, hr)
	cs := (&http.Response{Header: rec.Header()}).Cookies()
	if rec.Code != 200 || len(cs) != 1 || cs[0].Domain != "" || cs[0].MaxAge != 365*24*3600 || cs[0].Value != "x%20y" {
		t.Errorf("got %d %v", rec.Code, rec.Header()["Set-Cookie"])
	}

	for _, tc := range []struct{ name, body, origin string }{
		{"not an rl_ cookie", `{"reqType":"setCookies","data":{"cookies":[{"name":"session","value":"x"}]}}`, ""},
		{"another request type", `{"reqType":"getCookies","data":{"cookies":[{"name":"rl_user_id","value":"x"}]}}`, ""},
		{"no cookies", `{"reqType":"setCookies","data":{"cookies":[]}}`, ""},
		{"not JSON", `reqType=setCookies`, ""},
		{"a refused origin", setCookies, "https://evil.example"},
	} {
		rec := do(t, s, req{method: "POST", path: "/rsaRequest", body: tc.body, headers: map[string]string{"Origin": tc.origin}})
		if rec.Code < 400 || len(rec.Header()["Set-Cookie"]) != 0 {
			t.Errorf("%s: %d, Set-Cookie %v", tc.name, rec.Code, rec.Header()["Set-Cookie"])
		}
	}
}

// decodeURIComponent undoes encodeURIComponent.
func decodeURIComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			v, err := hex.DecodeString(s[i+1 : i+3])
			if err == nil {
				b.Write(v)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
