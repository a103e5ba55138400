package server

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/server/sdkfiles"
)

// The browser SDKs served from the relay (server/sdkfiles), at the paths their CDNs use, so a
// site's official loading snippet needs only its host changed and the page makes no request to
// a CDN that ad blockers drop:
//
//   - Segment's custom-proxy convention: /analytics.js/v1/{writeKey}/analytics.min.js (the
//     standalone analytics.js, whose CDN address is the relay's), its chunks under
//     /analytics-next/bundles/, and the settings (/v1/projects/{writeKey}/settings);
//   - RudderStack v3: /v3/modern/rsa.min.js and /v3/legacy/rsa.min.js (the bundled builds:
//     every plugin is inside, so none is fetched), HEAD /sourceConfig (its ad-blocker probe)
//     and POST /rsaRequest (its server-side cookies).
func (s *Server) sdkRoutes(e *echo.Echo) {
	e.GET("/analytics.js/v1/:writeKey/analytics.min.js", s.segmentScript)
	e.HEAD("/analytics.js/v1/:writeKey/analytics.min.js", s.segmentScript)
	e.GET("/analytics-next/bundles/:file", s.segmentBundle)
	e.HEAD("/analytics-next/bundles/:file", s.segmentBundle)
	e.GET("/v3/:build/rsa.min.js", s.rudderScript)
	e.HEAD("/v3/:build/rsa.min.js", s.rudderScript)
	// RudderStack's ad-blocker probe: HEAD sourceConfig?view=ad must succeed, or the SDK
	// takes the page for ad-blocked.
	probe := func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		return c.NoContent(http.StatusOK)
	}
	e.HEAD("/sourceConfig", probe)
	e.HEAD("/sourceConfig/", probe)
	e.POST("/rsaRequest", s.rudderSetCookies, s.admit)
}

const (
	scriptType = "text/javascript; charset=utf-8"
	// The loader files keep their names from version to version: browsers revalidate them
	// hourly. Chunks carry their content's hash in their names.
	loaderCache = "public, max-age=3600"
	chunkCache  = "public, max-age=31536000, immutable"
)

var errNoSDKFile = &reqError{http.StatusNotFound, "not_found", "no such SDK file: the relay serves the analytics.js and analytics-js builds it embeds (see the README's browser SDK section)"}

// segmentScript serves analytics.js for a configured write key, with the relay's own address
// as its CDN: its chunks, settings and fallbacks are fetched from the relay.
func (s *Server) segmentScript(c echo.Context) error {
	if s.lookup(c.Param("writeKey")) == nil {
		return writeError(c, errUnknownKey)
	}
	f, ok := sdkfiles.Lookup("segment/analytics.min.js")
	if !ok {
		return writeError(c, errNoSDKFile)
	}
	host, proto := s.apiHost(c.Request())
	gz, sum, err := segmentCDN.rewrite(f, proto+"://"+host)
	if err != nil {
		return err
	}
	return serveScript(c, gz, sum, loaderCache)
}

// segmentBundle serves analytics.js's chunks.
func (s *Server) segmentBundle(c echo.Context) error {
	f, ok := sdkfiles.Lookup("segment/bundles/" + c.Param("file"))
	if !ok {
		return writeError(c, errNoSDKFile)
	}
	return serveScript(c, f.Gzip, f.SHA256, chunkCache)
}

// rudderScript serves RudderStack's rsa.min.js, modern or legacy as the loading snippet chose.
func (s *Server) rudderScript(c echo.Context) error {
	f, ok := sdkfiles.Lookup("rudderstack/" + c.Param("build") + "/rsa.min.js")
	if !ok {
		return writeError(c, errNoSDKFile)
	}
	return serveScript(c, f.Gzip, f.SHA256, loaderCache)
}

// serveScript answers a script from its gzip-compressed content: as it is to a browser that
// accepts gzip (every browser does), decompressed otherwise; 304 to a matching If-None-Match.
func serveScript(c echo.Context, gz []byte, sum, cache string) error {
	h := c.Response().Header()
	etag := `"` + sum[:32] + `"`
	h.Set("Content-Type", scriptType)
	h.Set("Cache-Control", cache)
	h.Set("ETag", etag)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept-Encoding")
	r := c.Request()
	if inm := r.Header.Get("If-None-Match"); inm != "" && strings.Contains(inm, etag) {
		return c.NoContent(http.StatusNotModified)
	}
	if r.Method == http.MethodHead {
		return c.NoContent(http.StatusOK)
	}
	if acceptsGzip(r.Header.Get("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		return c.Blob(http.StatusOK, scriptType, gz)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return err
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, scriptType, plain)
}

// acceptsGzip reports whether an Accept-Encoding header admits gzip.
func acceptsGzip(ae string) bool {
	for _, part := range strings.Split(ae, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") || strings.TrimSpace(coding) == "*" {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}

// segmentCDN caches analytics.js rewritten for each origin it is served from (a relay has one
// or a few: its public URL, or the hosts a proxy forwards).
var segmentCDN = &cdnRewriter{from: "https://cdn.segment.com", max: 16}

// cdnRewriter replaces a CDN's address in a file with the relay's origin.
type cdnRewriter struct {
	from string
	max  int
	mu   sync.Mutex
	done map[string][2]string // origin → gzip content, SHA-256 of the plain content
}

// rewrite returns f's content, gzip-compressed, with every from replaced by origin, and the
// SHA-256 of the rewritten content.
func (w *cdnRewriter) rewrite(f *sdkfiles.File, origin string) ([]byte, string, error) {
	w.mu.Lock()
	if v, ok := w.done[origin]; ok {
		w.mu.Unlock()
		return []byte(v[0]), v[1], nil
	}
	w.mu.Unlock()
	plain, err := f.Content()
	if err != nil {
		return nil, "", err
	}
	plain = bytes.ReplaceAll(plain, []byte(w.from), []byte(origin))
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	_, _ = zw.Write(plain)
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	h := sha256.Sum256(plain)
	sum := hex.EncodeToString(h[:])
	w.mu.Lock()
	if w.done == nil {
		w.done = map[string][2]string{}
	}
	if len(w.done) < w.max {
		w.done[origin] = [2]string{gz.String(), sum}
	}
	w.mu.Unlock()
	return gz.Bytes(), sum, nil
}

// rsaCookieRequest is what analytics-js posts to /rsaRequest with useServerSideCookies.
type rsaCookieRequest struct {
	ReqType string `json:"reqType"`
	Data    struct {
		Options struct {
			MaxAge   *float64 `json:"maxAge"` // milliseconds
			Path     string   `json:"path"`
			Domain   string   `json:"domain"`
			SameSite string   `json:"sameSite"`
			Secure   bool     `json:"secure"`
		} `json:"options"`
		Cookies []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"cookies"`
	} `json:"data"`
}

const (
	maxRSABody      = 16 << 10
	maxRSACookies   = 16
	maxCookieValue  = 4000
	defaultCookieMA = 365 * 24 * time.Hour
	maxCookieMA     = 400 * 24 * time.Hour // browsers cap cookie lifetimes at 400 days
)

var errBadCookies = &reqError{http.StatusBadRequest, "bad_request", `expected {"reqType":"setCookies","data":{"options":{...},"cookies":[{"name":"rl_...","value":"..."}]}} as analytics-js sends with useServerSideCookies`}

// rudderSetCookies sets analytics-js's cookies (rl_anonymous_id, rl_user_id, ...) from the
// server, as RudderStack's data service does with useServerSideCookies: cookies set by a
// server's answer are not cut to 7 days by Safari's ITP, as cookies written by script are.
// They are set for the site's domain (the domain the SDK asks for when the request's host is
// within it, else the host), for the SDK's max-age (a year by default, at most 400 days),
// with its SameSite and Secure. They are not HttpOnly: the SDK reads them back from
// document.cookie on every page load (and checks each write that way), so an HttpOnly cookie
// would be lost to it. Only rl_ cookies are set.
func (s *Server) rudderSetCookies(c echo.Context) error {
	r := c.Request()
	if s.keys.Load().cors.refuse(r.Header.Get("Origin"), nil) {
		return writeError(c, errOrigin)
	}
	lift := s.bodyDeadline(c)
	release := s.takeAnon(c)
	if release == nil {
		return nil // answered 503
	}
	defer release()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRSABody+1))
	if err != nil {
		return writeError(c, errBodySlow)
	}
	lift()
	var req rsaCookieRequest
	if len(body) > maxRSABody || json.Unmarshal(body, &req) != nil || req.ReqType != "setCookies" ||
		len(req.Data.Cookies) == 0 || len(req.Data.Cookies) > maxRSACookies {
		return writeError(c, errBadCookies)
	}
	o := req.Data.Options
	maxAge := defaultCookieMA
	if o.MaxAge != nil && *o.MaxAge > 0 {
		maxAge = min(time.Duration(*o.MaxAge)*time.Millisecond, maxCookieMA)
	}
	path := "/"
	if strings.HasPrefix(o.Path, "/") && validCookiePath(o.Path) {
		path = o.Path
	}
	sameSite := http.SameSiteLaxMode
	switch strings.ToLower(o.SameSite) {
	case "strict":
		sameSite = http.SameSiteStrictMode
	case "none":
		sameSite = http.SameSiteNoneMode
	}
	domain := cookieDomain(o.Domain, requestHost(r))
	var cookies []*http.Cookie
	for _, ck := range req.Data.Cookies {
		if !strings.HasPrefix(ck.Name, "rl_") || !cookieName(ck.Name) || ck.Value == "" || len(ck.Value) > maxCookieValue {
			return writeError(c, errBadCookies)
		}
		cookies = append(cookies, &http.Cookie{
			Name: ck.Name, Value: encodeURIComponent(ck.Value), Path: path, Domain: domain,
			MaxAge: int(maxAge / time.Second), Expires: time.Now().Add(maxAge).UTC(),
			SameSite: sameSite, Secure: o.Secure || sameSite == http.SameSiteNoneMode,
		})
	}
	for _, ck := range cookies {
		c.SetCookie(ck)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSONBlob(http.StatusOK, []byte(`{"success":true}`))
}

// requestHost is the host (no port) the browser sent the request to, through a proxy that
// says so with X-Forwarded-Host.
func requestHost(r *http.Request) string {
	host := r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host, _, _ = strings.Cut(h, ",")
		host = strings.TrimSpace(host)
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.Trim(host, "[]"))
}

// cookieDomain returns the Domain attribute for the domain the SDK asked for: kept when the
// request's host is that domain or within it, "" (a host-only cookie) otherwise, as a browser
// would refuse it anyway.
func cookieDomain(asked, host string) string {
	d := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(asked), "."))
	if d == "" || host == "" || !validHost(d) || strings.Contains(d, ":") {
		return ""
	}
	if host == d || strings.HasSuffix(host, "."+d) {
		return d
	}
	return ""
}

// cookieName reports whether n is a cookie name token.
func cookieName(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return n != ""
}

// validCookiePath reports whether p may stand in a Path attribute.
func validCookiePath(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] < 0x20 || p[i] >= 0x7f || p[i] == ';' {
			return false
		}
	}
	return len(p) <= 256
}

// encodeURIComponent encodes a cookie value as the SDK's own cookie writer does (JavaScript's
// encodeURIComponent), so the SDK reads back exactly the value it asked for.
func encodeURIComponent(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}
