package server

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
)

// corsPolicy decides which browser origins may call the server.
//
// With no allow list (or "*"), any origin may send events: answers carry
// Access-Control-Allow-Origin: * and never Access-Control-Allow-Credentials, so no cookie or
// other credential of one site is ever exposed to another. With a list, listed origins are
// reflected with Access-Control-Allow-Credentials: true (analytics.js may send with
// credentials: 'include') and every other origin is refused with 403. A source's own
// allowed_origins replaces the server-wide list for requests carrying that source's key.
type corsPolicy struct {
	any       bool            // server-wide: any origin
	global    map[string]bool // server-wide list
	preflight map[string]bool // origins a preflight may pass: the server-wide list and every source's
}

// defaultAllowHeaders are the request headers the SDKs send, allowed when a preflight names
// none (or names some that are not plain header tokens).
const defaultAllowHeaders = "Authorization, Content-Type, Content-Encoding, X-Retry-Count, AnonymousId, SentAt, " +
	"Rsa-Retry-Attempt, Rsa-Since-Last-Attempt, Rsa-Since-First-Attempt, Rsa-Retry-Reason, Rsa-Recovered"

var errOrigin = &reqError{http.StatusForbidden, "origin_not_allowed", "this origin may not send events here; add it to allowed_origins in the configuration"}

func newCORS(global []string, sources []*Source) corsPolicy {
	p := corsPolicy{global: map[string]bool{}, preflight: map[string]bool{}}
	p.any = len(global) == 0
	for _, o := range global {
		if o == "*" {
			p.any = true
		}
		p.global[o] = true
		p.preflight[o] = true
	}
	for _, s := range sources {
		for _, o := range s.AllowedOrigins {
			p.preflight[o] = true
		}
	}
	return p
}

// refuse reports whether a request from origin carrying src's key must be refused.
// Requests without an Origin (server SDKs, beacons from the same site) are never refused.
func (p *corsPolicy) refuse(origin string, src *Source) bool {
	if origin == "" {
		return false
	}
	if src != nil && len(src.AllowedOrigins) > 0 {
		for _, o := range src.AllowedOrigins {
			if o == origin || o == "*" {
				return false
			}
		}
		return true
	}
	return !p.any && !p.global[origin]
}

// corsMiddleware answers preflights before routing and adds the CORS headers to every answer
// for an origin the server-wide policy (or some source's list) allows.
func (s *Server) corsMiddleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		origin := r.Header.Get("Origin")
		h := c.Response().Header()
		allowed := false
		if origin != "" {
			h.Add("Vary", "Origin")
			cors := &s.keys.Load().cors
			switch {
			case cors.preflight[origin]:
				h.Set("Access-Control-Allow-Origin", origin)
				h.Set("Access-Control-Allow-Credentials", "true")
				allowed = true
			case cors.any:
				h.Set("Access-Control-Allow-Origin", "*")
				allowed = true
			}
			if allowed {
				h.Set("Access-Control-Expose-Headers", "Retry-After, X-RateLimit-Reset")
			}
		}
		if r.Method != http.MethodOptions {
			return next(c)
		}
		if origin == "" || r.Header.Get("Access-Control-Request-Method") == "" {
			// Not a CORS preflight; answer OPTIONS plainly rather than with 405.
			h.Set("Allow", "GET, POST, OPTIONS")
			return c.NoContent(http.StatusNoContent)
		}
		if !allowed {
			return writeError(c, errOrigin)
		}
		h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" && headerList(req) {
			h.Set("Access-Control-Allow-Headers", req)
			h.Add("Vary", "Access-Control-Request-Headers")
		} else {
			h.Set("Access-Control-Allow-Headers", defaultAllowHeaders)
		}
		h.Set("Access-Control-Max-Age", "900")
		return c.NoContent(http.StatusNoContent)
	}
}

// headerList reports whether s is a comma-separated list of header names, safe to echo.
func headerList(s string) bool {
	if len(s) > 1024 {
		return false
	}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			return false
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
