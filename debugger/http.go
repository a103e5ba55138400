package debugger

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/presets"
	"github.com/woorelay/woorelay/queue"
)

//go:embed assets
var assets embed.FS

// Mount adds the debugger's page and API under /debugger to e, behind guard (the admin API's
// access rule). GET /debugger/login, outside the guard, is a sign-in form that POSTs the admin
// token to login (admin.API.Login), for browsers, which cannot send a bearer token.
func (d *Debugger) Mount(e *echo.Echo, guard echo.MiddlewareFunc, login echo.HandlerFunc) {
	static, _ := fs.Sub(assets, "assets")
	files := http.StripPrefix("/debugger/", http.FileServer(http.FS(static)))
	mountFavicon(e)
	e.GET("/debugger/login", func(c echo.Context) error {
		b, _ := assets.ReadFile("assets/login.html")
		return c.HTMLBlob(http.StatusOK, b)
	})
	e.POST("/debugger/login", login)
	g := e.Group("/debugger", guard)
	g.GET("", func(c echo.Context) error { return c.Redirect(http.StatusFound, "/debugger/") })
	api := g.Group("/api", sameOrigin)
	api.GET("/stream", d.stream)
	api.GET("/events", d.list)
	api.GET("/events/:id", d.open)
	api.POST("/explain", d.explainAny)
	api.POST("/playground", d.playground)
	api.GET("/health", d.healthz)
	api.GET("/presets", func(c echo.Context) error { return c.JSON(http.StatusOK, presets.Names()) })
	g.GET("/*", func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(c.Response(), c.Request())
		return nil
	})
}

// sameOrigin refuses a request that a browser says (Sec-Fetch-Site) or, when it does not say,
// shows (an Origin whose host is not the request's Host) comes from a page of another site or
// origin, as http.CrossOriginProtection decides for requests that change something: only the
// debugger's own page, and clients that are not browsers, read the API. The admin API's CSRF
// rule refuses such requests when they change something; this one refuses reads too, the
// stream first, whose events no other site's page may see or hold open.
func sameOrigin(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch site := r.Header.Get("Sec-Fetch-Site"); site {
		case "same-origin", "none":
			return next(c)
		case "": // not a browser, or an old one: its Origin, if any, tells
		default:
			return fail(c, http.StatusForbidden, "cross_site", "the debugger's API answers only the debugger's own page; this request came from another site ("+site+")")
		}
		if o := r.Header.Get("Origin"); o != "" {
			if u, err := url.Parse(o); err != nil || u.Host != r.Host {
				return fail(c, http.StatusForbidden, "cross_site", "the debugger's API answers only the debugger's own page; this request came from "+strconv.Quote(o))
			}
		}
		return next(c)
	}
}

// MountOff answers the debugger's paths with why there is no debugger.
func MountOff(e *echo.Echo, guard echo.MiddlewareFunc) {
	h := func(c echo.Context) error {
		return c.JSON(http.StatusNotFound, admin.Error{Code: "debugger_off", Message: "the debugger is turned off (--debugger-events 0); start serve with --debugger-events 1000 to keep the latest 1,000 events for it"})
	}
	e.Any("/debugger", h, guard)
	e.Any("/debugger/*", h, guard)
	mountFavicon(e)
}

func fail(c echo.Context, status int, code, msg string) error {
	return c.JSON(status, admin.Error{Code: code, Message: msg})
}

// listSlots is how many GET /debugger/api/events answers (each the whole ring) may be built
// or written at once; the ring is bounded, so this bounds what they hold in all.
const listSlots = 2

// list answers the ring, oldest first. At most listSlots answers are in the making at once
// (past that 503 with Retry-After), and a write that waits 10 s ends the answer, so clients
// that do not read cannot make the relay hold copies of the ring without bound.
func (d *Debugger) list(c echo.Context) error {
	select {
	case d.listing <- struct{}{}:
		defer func() { <-d.listing }()
	default:
		c.Response().Header().Set("Retry-After", "5")
		return fail(c, http.StatusServiceUnavailable, "too_many_viewers", fmt.Sprintf("%d lists of the debugger's events are being sent already; retry in a few seconds", listSlots))
	}
	http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(10 * time.Second))
	d.mu.Lock()
	rs := d.records()
	out := make([]json.RawMessage, len(rs))
	for i, r := range rs {
		out[i] = r.json()
	}
	d.mu.Unlock()
	return c.JSON(http.StatusOK, map[string]any{"events": out, "dropped": d.dropped.Load()})
}

// opened is one event as the page opens it.
type opened struct {
	Event   json.RawMessage `json:"event"`
	Raw     json.RawMessage `json:"raw"`
	Explain *Explanation    `json:"explain"`
}

// open answers one event of the ring, with its raw JSON and the explain trace of the
// source's running program.
func (d *Debugger) open(c echo.Context) error {
	id, err := strconv.ParseUint(c.Param("id"), 10, 64)
	if err != nil {
		return fail(c, http.StatusBadRequest, "bad_request", "the event id must be a whole number")
	}
	d.mu.Lock()
	r := d.find(id)
	var summary, raw []byte
	var source string
	var received time.Time
	if r != nil {
		summary, raw, source, received = r.json(), r.event, r.Source, r.Received
	}
	d.mu.Unlock()
	if r == nil {
		return fail(c, http.StatusNotFound, "not_found", "event "+c.Param("id")+" is no longer in the debugger's ring (it keeps the latest --debugger-events events)")
	}
	out := opened{Event: summary, Explain: d.explain(source, raw, received)}
	if json.Valid(raw) {
		out.Raw = raw
	} else {
		out.Raw, _ = json.Marshal(string(raw))
	}
	return c.JSON(http.StatusOK, out)
}

// ExplainRequest is the body of POST /debugger/api/explain.
type ExplainRequest struct {
	Source   string          `json:"source"`
	Event    json.RawMessage `json:"event"`
	Received time.Time       `json:"received"`
}

// explainAny explains any event with a source's running program (a dead letter's event).
func (d *Debugger) explainAny(c echo.Context) error {
	var req ExplainRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if req.Received.IsZero() {
		req.Received = time.Now()
	}
	return c.JSON(http.StatusOK, d.explain(req.Source, req.Event, req.Received))
}

func (d *Debugger) explain(source string, event []byte, received time.Time) *Explanation {
	if d.o.Program == nil {
		return &Explanation{Outcome: "unknown", Error: "no source programs are known to the debugger"}
	}
	p := d.o.Program(source)
	if p == nil {
		return &Explanation{Outcome: "unknown", Error: "source " + strconv.Quote(source) + " is not configured any more"}
	}
	return explainWith(p, event, received)
}

// decode reads a JSON body of at most 1 MB; it wants Content-Type application/json, which a
// page of another origin cannot send without a CORS preflight the admin listener never grants.
func decode(c echo.Context, into any) error {
	if c.Request().Header.Get("Content-Type") != "application/json" {
		return fail(c, http.StatusUnsupportedMediaType, "bad_request", "send the body as Content-Type: application/json")
	}
	if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20)).Decode(into); err != nil {
		return fail(c, http.StatusBadRequest, "bad_request", "the body must be a JSON object of at most 1 MB: "+err.Error())
	}
	return nil
}

// health is the answer of GET /debugger/api/health.
type health struct {
	Counters admin.Counters `json:"counters"`
	Series   []bucket       `json:"series"`
	Dropped  int64          `json:"dropped"` // notes the debugger could not take
	Skipped  int64          `json:"skipped"` // events not followed, past the debugger's budget a second
	Viewers  int            `json:"viewers"` // browsers on the stream now
	// ViewerDropped is how many changes the browsers on the stream now have lost, not yet
	// told to them.
	ViewerDropped int64 `json:"viewer_dropped"`
}

func (d *Debugger) healthz(c echo.Context) error {
	var qc queue.Counters
	if d.o.Counters != nil {
		qc = d.o.Counters()
	}
	d.hmu.Lock()
	out := health{Counters: admin.CountersOf(qc), Series: d.health.snapshot(), Dropped: d.dropped.Load(), Skipped: d.skipped.Load()}
	d.hmu.Unlock()
	d.mu.Lock()
	out.Viewers = len(d.viewers)
	for v := range d.viewers {
		out.ViewerDropped += v.dropped.Load()
	}
	d.mu.Unlock()
	return c.JSON(http.StatusOK, out)
}

// viewer is one browser watching the stream.
type viewer struct {
	ch      chan []byte
	dropped atomic.Int64
	queued  atomic.Int64 // bytes waiting to be written to it (Options.ViewerBytes)
	gone    chan struct{}
	closed  bool
}

// reserve counts n more bytes waiting for v, if they fit in its bound and in the bound of all
// viewers; the caller holds d.mu, so no other reservation runs at the same time (writers only
// release).
func (d *Debugger) reserve(v *viewer, n int) bool {
	if v.queued.Load()+int64(n) > int64(d.o.ViewerBytes) || d.queued.Load()+int64(n) > int64(d.o.StreamBytes) {
		return false
	}
	v.queued.Add(int64(n))
	d.queued.Add(int64(n))
	return true
}

// release counts n bytes of v's as written (or forgotten).
func (d *Debugger) release(v *viewer, n int) {
	v.queued.Add(-int64(n))
	d.queued.Add(-int64(n))
}

func (v *viewer) close() {
	if !v.closed {
		v.closed = true
		close(v.gone)
	}
}

// publish hands a changed record to every viewer without waiting (d.mu held).
func (d *Debugger) publish(r *record) {
	var b []byte // marshalled once, and only when some viewer has room: a stalled one costs nothing
	for v := range d.viewers {
		if len(v.ch) == cap(v.ch) {
			v.dropped.Add(1)
			continue
		}
		if b == nil {
			b = r.json()
		}
		if !d.reserve(v, len(b)) {
			v.dropped.Add(1)
			continue
		}
		select {
		case v.ch <- b:
		default:
			d.release(v, len(b))
			v.dropped.Add(1)
		}
	}
}

// page returns the latest events of the ring for a new viewer, oldest first: at most
// StreamPage, and only as many as fit in its byte bounds, which they are counted against
// until written. The caller holds d.mu.
func (d *Debugger) page(v *viewer) [][]byte {
	var out [][]byte
	rs := d.records()
	for i := len(rs) - 1; i >= 0 && len(out) < d.o.StreamPage; i-- {
		b := rs[i].json()
		if !d.reserve(v, len(b)) {
			break
		}
		out = append(out, b)
	}
	slices.Reverse(out)
	return out
}

// stream serves server-sent events: a page of the latest events first, then every change. A
// write that takes more than 10 s ends the stream; the changes a slow browser cannot take
// (past Options.ViewerBuffer changes, ViewerBytes bytes, or StreamBytes for all browsers) are
// dropped, and it is told how many with a "dropped" event. Past Options.MaxViewers browsers, a
// new one is answered 503 with Retry-After.
func (d *Debugger) stream(c echo.Context) error {
	v := &viewer{ch: make(chan []byte, d.o.ViewerBuffer), gone: make(chan struct{})}
	d.mu.Lock()
	if n := len(d.viewers); n >= d.o.MaxViewers {
		d.mu.Unlock()
		c.Response().Header().Set("Retry-After", "10")
		return fail(c, http.StatusServiceUnavailable, "too_many_viewers", fmt.Sprintf("the debugger already streams to %d browsers, its limit; close a debugger tab you no longer watch, or retry in a few seconds", n))
	}
	first := d.page(v)
	d.viewers[v] = struct{}{}
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		delete(d.viewers, v)
		d.mu.Unlock()
		// Nothing reserves for v any more: what it still held is free.
		d.queued.Add(-v.queued.Swap(0))
	}()

	w := c.Response()
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	write := func(event string, data []byte) error {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := w.Write([]byte("event: " + event + "\ndata: ")); err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if _, err := w.Write([]byte("\n\n")); err != nil {
			return err
		}
		return nil
	}
	for i, b := range first {
		if write("event", b) != nil {
			return nil
		}
		d.release(v, len(b))
		first[i] = nil
	}
	if write("ready", []byte(`{"page":`+strconv.Itoa(len(first))+`}`)) != nil || rc.Flush() != nil {
		return nil
	}
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-c.Request().Context().Done():
			return nil
		case <-v.gone:
			return nil
		case <-ping.C:
			if write("ping", []byte(`{}`)) != nil || rc.Flush() != nil {
				return nil
			}
		case b := <-v.ch:
			if n := v.dropped.Swap(0); n > 0 {
				if write("dropped", []byte(`{"dropped":`+strconv.FormatInt(n, 10)+`}`)) != nil {
					return nil
				}
			}
			if write("event", b) != nil {
				return nil
			}
			d.release(v, len(b))
			for more := true; more; { // write what is waiting, then flush once
				select {
				case b := <-v.ch:
					if write("event", b) != nil {
						return nil
					}
					d.release(v, len(b))
				default:
					more = false
				}
			}
			if rc.Flush() != nil {
				return nil
			}
		}
	}
}
