package server

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// route describes one ingest route.
type route struct {
	path   string // also the metrics label
	typ    string // the event type a single-event route implies; "" for batch routes
	batch  bool
	beacon bool // the write key may come in the writeKey query parameter
}

// ingestRoutes are every path SDKs post events to.
var ingestRoutes = func() []route {
	var rs []route
	for _, t := range []string{"track", "identify", "page", "screen", "group", "alias"} {
		rs = append(rs, route{path: "/v1/" + t, typ: t}, route{path: "/v1/" + t[:1], typ: t})
	}
	return append(rs,
		route{path: "/v1/batch", batch: true},
		route{path: "/v1/import", batch: true},
		route{path: "/v1/b", batch: true},
		route{path: "/beacon/v1/batch", batch: true, beacon: true},
	)
}()

func (s *Server) routes(g prometheus.Gatherer) *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.errorHandler
	e.Pre(s.corsMiddleware)
	for _, rt := range ingestRoutes {
		e.POST(rt.path, s.ingestHandler(rt), s.admit)
	}
	e.POST("/v1/m", s.metricsSink, s.admit)
	e.GET("/v1/projects/:writeKey/settings", s.segmentSettings)
	e.GET("/sourceConfig", s.rudderSourceConfig)
	e.GET("/sourceConfig/", s.rudderSourceConfig)
	s.sdkRoutes(e)
	// RudderStack's Go library asks how many nodes its data plane has when it gets a 451 (a
	// node count change); the relay is one node to it, however many instances run.
	e.GET("/cluster-info", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, []byte(`{"nodeCount":1}`))
	})
	e.GET("/healthz", func(c echo.Context) error {
		return c.JSONBlob(http.StatusOK, []byte(`{"status":"ok"}`))
	})
	e.GET("/readyz", func(c echo.Context) error {
		if !s.ready.Load() || s.draining.Load() {
			c.Response().Header().Set("Retry-After", s.retryHdr)
			return writeError(c, &reqError{http.StatusServiceUnavailable, "not_ready", "the relay is starting or shutting down, or its queue cannot store events now (the log says which)"})
		}
		if why := s.refusing.Load(); why != nil {
			c.Response().Header().Set("Retry-After", s.retryHdr)
			return writeError(c, &reqError{http.StatusServiceUnavailable, "store_full", *why})
		}
		return c.JSONBlob(http.StatusOK, []byte(`{"status":"ready"}`))
	})
	e.GET("/metrics", echo.WrapHandler(metricsHandler(g)))
	return e
}

// errorHandler answers Echo's own errors (no route, wrong method) in the JSON error shape.
func (s *Server) errorHandler(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	e := &reqError{http.StatusInternalServerError, "internal", "internal error; retry later"}
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			e = &reqError{http.StatusNotFound, "not_found", "no route " + c.Request().Method + " " + c.Request().URL.Path + "; events go to /v1/batch, /v1/<type> or /beacon/v1/batch"}
		case http.StatusMethodNotAllowed:
			e = &reqError{http.StatusMethodNotAllowed, "method_not_allowed", c.Request().Method + " is not allowed on " + c.Request().URL.Path + "; send events with POST"}
		default:
			if he.Code >= 400 && he.Code < 500 {
				e = &reqError{he.Code, "bad_request", http.StatusText(he.Code)}
			}
		}
	} else {
		s.log.Error("ingest: unhandled error", "path", c.Request().URL.Path, "err", err)
	}
	_ = writeError(c, e)
}

// writeError answers {"code":"...","message":"..."}, the shape Segment's libraries parse.
func writeError(c echo.Context, e *reqError) error {
	body, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{e.code, e.msg})
	return c.JSONBlob(e.status, body)
}

// admit answers 503 shutting_down on ingest routes while the server drains. The in-flight
// caps are taken by the handlers, once they know whether the request is authenticated.
func (s *Server) admit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.draining.Load() {
			h := c.Response().Header()
			h.Set("Retry-After", s.retryHdr)
			h.Set("Connection", "close")
			s.metrics.requests.WithLabelValues(c.Path(), "", "shutting_down").Inc()
			return writeError(c, &reqError{http.StatusServiceUnavailable, "shutting_down", "the server is shutting down; retry later"})
		}
		return next(c)
	}
}

var (
	errOverloaded = &reqError{http.StatusServiceUnavailable, "overloaded", "too many requests in flight; retry after the Retry-After delay"}
	errAnonFull   = &reqError{http.StatusServiceUnavailable, "overloaded", "too many requests without a write key header are being read; send the key as HTTP Basic auth, or retry after the Retry-After delay"}
	errBodySlow   = &reqError{http.StatusServiceUnavailable, "body_timeout", "the body did not arrive within the body deadline; retry after the Retry-After delay, in smaller batches on a slow connection"}
)

// slot takes a slot of pool without waiting and counts it in g; it returns the function that
// gives it back, or nil when every slot is taken.
func slot(pool chan struct{}, g prometheus.Gauge) func() {
	select {
	case pool <- struct{}{}:
	default:
		return nil
	}
	g.Inc()
	return func() {
		g.Dec()
		<-pool
	}
}

// bodyDeadline bounds the time the request's body may take to arrive (Timeouts.Body, counted
// from now, the end of the headers); the function it returns lifts the bound once the whole
// body is read, so the connection's later reads (a hang-up, the next request) are not cut
// short. Left in place, the bound also ends the server's wait for the rest of an unread body.
func (s *Server) bodyDeadline(c echo.Context) func() {
	rc := http.NewResponseController(c.Response())
	if rc.SetReadDeadline(time.Now().Add(s.timeouts.Body)) != nil {
		return func() {} // not a network connection (a test recorder)
	}
	return func() { _ = rc.SetReadDeadline(time.Time{}) }
}

// takeAnon takes a slot of the cap on requests read before their write key is known, or
// answers 503 with Retry-After and returns nil.
func (s *Server) takeAnon(c echo.Context) func() {
	release := slot(s.anon, s.metrics.anon)
	if release == nil {
		c.Response().Header().Set("Retry-After", s.retryHdr)
		_ = writeError(c, errAnonFull)
	}
	return release
}

// metricsSink accepts analytics.js's remote metrics (/v1/m) and discards them. It is
// unauthenticated, so it reads within the unauthenticated cap and the body deadline.
func (s *Server) metricsSink(c echo.Context) error {
	lift := s.bodyDeadline(c)
	release := s.takeAnon(c)
	if release == nil {
		return nil // answered 503
	}
	defer release()
	if _, err := io.Copy(io.Discard, io.LimitReader(c.Request().Body, int64(s.limits.MaxRequestBytes))); err == nil {
		lift()
	}
	return c.JSONBlob(http.StatusOK, []byte(`{"success":true}`))
}

// headerKey returns the write key of an HTTP Basic Authorization header ("writeKey:" base64
// encoded; a key encoded without the colon is accepted too, as Segment does).
func headerKey(r *http.Request) string {
	if u, _, ok := r.BasicAuth(); ok {
		return u
	}
	a := r.Header.Get("Authorization")
	if len(a) > 6 && strings.EqualFold(a[:6], "basic ") {
		if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(a[6:])); err == nil && !strings.ContainsRune(string(b), ':') {
			return string(b)
		}
	}
	return ""
}

var errUnknownKey = &reqError{http.StatusUnauthorized, "unknown_write_key", "the write key is not configured on this server; check the SDK's write key against the configuration's sources"}

// segmentSettings answers analytics.js's settings fetch with just what it needs: the
// Segment.io integration pointed back at this server, and its remote metrics off.
func (s *Server) segmentSettings(c echo.Context) error {
	key := c.Param("writeKey")
	src := s.lookup(key)
	if src == nil {
		return writeError(c, errUnknownKey)
	}
	if refused := s.keys.Load().cors.refuse(c.Request().Header.Get("Origin"), src); refused {
		return writeError(c, errOrigin)
	}
	host, proto := s.apiHost(c.Request())
	apiHost := host + "/v1"
	settings := map[string]any{
		"integrations": map[string]any{
			"Segment.io": map[string]any{
				"apiKey":                key,
				"apiHost":               apiHost,
				"protocol":              proto,
				"unbundledIntegrations": []string{},
				"addBundledMetadata":    true,
				"maybeBundledConfigIds": map[string]any{},
			},
		},
		"plan": map[string]any{
			"track":    map[string]any{"__default": map[string]any{"enabled": true, "integrations": map[string]any{}}},
			"identify": map[string]any{"__default": map[string]any{"enabled": true}},
			"group":    map[string]any{"__default": map[string]any{"enabled": true}},
		},
		"edgeFunction":              map[string]any{},
		"analyticsNextEnabled":      true,
		"middlewareSettings":        map[string]any{},
		"enabledMiddleware":         map[string]any{},
		"metrics":                   map[string]any{"sampleRate": 0, "host": apiHost},
		"legacyVideoPluginsEnabled": false,
		"remotePlugins":             []any{},
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, settings)
}

// rudderSourceConfig answers RudderStack analytics-js's sourceConfig fetch with an enabled
// source that has no device-mode destinations (every event goes to the data plane).
func (s *Server) rudderSourceConfig(c echo.Context) error {
	r := c.Request()
	key := headerKey(r)
	if key == "" {
		key = r.URL.Query().Get("writeKey")
	}
	if key == "" {
		return writeError(c, errNoKey)
	}
	src := s.lookup(key)
	if src == nil {
		return writeError(c, errUnknownKey)
	}
	if refused := s.keys.Load().cors.refuse(r.Header.Get("Origin"), src); refused {
		return writeError(c, errOrigin)
	}
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, map[string]any{
		"isHosted": false,
		"source": map[string]any{
			"id":           "woorelay-" + src.Name,
			"name":         src.Name,
			"writeKey":     key,
			"workspaceId":  "woorelay",
			"enabled":      true,
			"deleted":      false,
			"config":       map[string]any{},
			"destinations": []any{},
			"sourceDefinition": map[string]any{
				"id": "woorelay", "name": "Javascript", "category": nil,
			},
		},
	})
}
