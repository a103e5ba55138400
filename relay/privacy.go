package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/privacy"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/server"
)

// Personal data at the relay: the suppression list (kept in the queue's store, so every relay
// of a shared store has the same), erasure of a person's events from everything the relay
// holds, and the retention of dead letters and of the debugger's ring.

// Defaults of the retention settings.
const (
	// DefaultDeadLetterRetention is how long a dead letter is kept when
	// Config.DeadLetterRetention is zero: counted from when it went dead.
	DefaultDeadLetterRetention = 30 * 24 * time.Hour
	// DefaultDebuggerMaxAge is the age past which the debugger's ring drops an event when
	// Config.DebuggerMaxAge is zero.
	DefaultDebuggerMaxAge = 24 * time.Hour
)

const (
	// suppressRefresh is how often a relay reads the suppression list from the store again,
	// so a change made through another relay of a shared store applies here within it.
	suppressRefresh = 2 * time.Second
	// maxSelectors bounds the selectors of one call (as Segment's regulations do).
	maxSelectors = 5000
	// erasedMemory is how long a relay keeps dropping, at delivery, copies of erased events
	// that its dispatcher still held in memory (at least the retry window).
	erasedMemory = 24 * time.Hour
	// eraseTimeout is how long an erasure through the admin API may take.
	eraseTimeout = 10 * time.Minute
)

// guard is the relay's suppression list, as ingest and delivery consult it, and the persons
// erased while it runs.
type guard struct {
	store queue.Privacy // nil when the queue keeps no list
	set   atomic.Pointer[privacy.Set]
	// rmu makes each refresh read and store together, so that one that read the store before
	// a change cannot replace what a refresh after it stored.
	rmu sync.Mutex

	mu     sync.Mutex
	erased map[privacy.Selector]time.Time // when each was erased
	eset   atomic.Pointer[privacy.Set]

	removed *prometheus.CounterVec
}

func newGuard(q queue.Queue, r *Relay) *guard {
	g := &guard{erased: map[privacy.Selector]time.Time{},
		removed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "woorelay_privacy_removed_total",
			Help: "Events removed for privacy, by where from (queue, dead_letters, debugger, emulator) and why (erased, expired).",
		}, []string{"place", "why"})}
	g.store, _ = q.(queue.Privacy)
	g.set.Store(privacy.NewSet())
	g.eset.Store(privacy.NewSet())
	r.reg.MustRegister(g.removed)
	if err := g.refresh(); err != nil {
		r.log.Warn("reading the suppression list failed; retrying", "err", err)
	}
	return g
}

// refresh reads the list from the store.
func (g *guard) refresh() error {
	if g.store == nil {
		return nil
	}
	g.rmu.Lock()
	defer g.rmu.Unlock()
	keys, err := g.store.Suppressions()
	if err != nil {
		return err
	}
	sels := make([]privacy.Selector, 0, len(keys))
	for _, k := range keys {
		if s, err := privacy.ParseSelector(k); err == nil {
			sels = append(sels, s)
		}
	}
	g.set.Store(privacy.NewSet(sels...))
	return nil
}

// Suppressed implements server.Suppressions.
func (g *guard) Suppressed(event []byte, known privacy.Known) bool {
	return g.set.Load().MatchEventKnown(event, known)
}

// drop is delivery's question before each attempt (destination's DispatcherOptions.Drop).
func (g *guard) drop(e *queue.Entry) string {
	sup, er := g.set.Load(), g.eset.Load()
	if sup.Len() == 0 && er.Len() == 0 {
		return ""
	}
	for _, id := range entryIdentities(e) {
		if sup.MatchIdentity(id) {
			return server.ReasonSuppressed
		}
		if er.MatchIdentity(id) {
			return queue.ReasonErased
		}
	}
	return ""
}

// entryIdentities are the identities an entry names: its event's, or, once delivery has
// mapped it and kept only its requests, the Woopra identifiers of those (cv_id, cv_email,
// cookie) and its ordering key (the userId, else the anonymousId).
func entryIdentities(e *queue.Entry) []privacy.Identity {
	if len(e.Event) > 0 {
		return []privacy.Identity{privacy.Identify(e.Event)}
	}
	out := []privacy.Identity{{UserID: e.Visitor, AnonymousID: e.Visitor}}
	for _, r := range e.Requests {
		u, err := url.Parse(r.URL)
		if err != nil {
			continue
		}
		q := u.Query()
		id := privacy.Identity{UserID: q.Get("cv_id"), AnonymousID: q.Get("cookie")}
		if m := q.Get("cv_email"); m != "" {
			id.EmailHashes = []string{privacy.HashEmail(m)}
		}
		if c := q.Get("cookie"); c != "" {
			id.Cookies = []string{c}
		}
		out = append(out, id)
	}
	return out
}

// rememberErased makes delivery drop what it still holds of these persons for erasedMemory.
func (g *guard) rememberErased(sels []privacy.Selector, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, s := range sels {
		g.erased[s] = now
	}
	g.rebuildErased(now)
}

func (g *guard) rebuildErased(now time.Time) {
	var keep []privacy.Selector
	for s, at := range g.erased {
		if now.Sub(at) > erasedMemory {
			delete(g.erased, s)
			continue
		}
		keep = append(keep, s)
	}
	g.eset.Store(privacy.NewSet(keep...))
}

// Erasure is what an erasure removed, from each place.
type Erasure struct {
	Queue    queue.Erased    `json:"queue"`
	Debugger int             `json:"debugger"`
	Emulator emulator.Erased `json:"emulator"`
}

// Erase removes the events of the persons sels name from the queue (pending items and dead
// letters, and their bytes on disk), the debugger's ring and the sandbox emulator, and says
// how many it removed from each. What the queue removes is counted filtered.
func (r *Relay) Erase(sels []privacy.Selector) (Erasure, error) {
	var out Erasure
	if len(sels) == 0 {
		return out, errors.New("no selector: name the person by user id, anonymous id, e-mail or cookie")
	}
	set := privacy.NewSet(sels...)
	r.guard.rememberErased(sels, time.Now())
	match := func(e queue.Entry) bool {
		for _, id := range entryIdentities(&e) {
			if set.MatchIdentity(id) {
				return true
			}
		}
		return false
	}
	var err error
	if r.guard.store == nil {
		err = fmt.Errorf("the queue (%T) cannot erase events", r.q)
	} else {
		out.Queue, err = r.guard.store.Erase(match)
	}
	if r.dbg != nil {
		out.Debugger = r.dbg.Erase(match)
	}
	if em := r.Sandbox(); em != nil {
		out.Emulator = em.Erase(func(id emulator.Identity) bool {
			pid := privacy.Identity{UserID: id.ID, Cookies: id.Cookies}
			for _, m := range id.Emails {
				pid.EmailHashes = append(pid.EmailHashes, privacy.HashEmail(m))
			}
			if set.MatchIdentity(pid) {
				return true
			}
			for _, c := range id.Cookies { // the presets send the anonymous id as the cookie
				if set.Has(privacy.Selector{Kind: privacy.AnonymousID, Value: c}) {
					return true
				}
			}
			return false
		})
	}
	m := r.guard.removed
	m.WithLabelValues("queue", queue.ReasonErased).Add(float64(out.Queue.Items))
	m.WithLabelValues("dead_letters", queue.ReasonErased).Add(float64(out.Queue.DeadLetters))
	m.WithLabelValues("debugger", queue.ReasonErased).Add(float64(out.Debugger))
	m.WithLabelValues("emulator", queue.ReasonErased).Add(float64(out.Emulator.Requests))
	r.log.Info("erased a person's events", "selectors", len(sels), "queue", out.Queue.Items, "dead_letters", out.Queue.DeadLetters,
		"debugger", out.Debugger, "emulator_requests", out.Emulator.Requests, "emulator_visitors", out.Emulator.Visitors)
	return out, err
}

// retain keeps the suppression list fresh and applies the retention of dead letters and of
// the debugger's ring until stop is closed.
func (r *Relay) retain(stop <-chan struct{}) {
	dlAge, dbgAge := r.cfg.DeadLetterRetention, r.cfg.DebuggerMaxAge
	every := max(10*time.Millisecond, min(time.Minute, dlAge/4, dbgAge/4))
	lastRetain := time.Time{}
	failing := false
	t := time.NewTicker(min(suppressRefresh, every))
	defer t.Stop()
	for {
		now := time.Now()
		switch err := r.guard.refresh(); {
		case err != nil && !failing && !errors.Is(err, queue.ErrClosed):
			failing = true // said once, not every 2 s while the store is away
			r.log.Warn("reading the suppression list failed; the last one read stays in force until it can be read again", "err", err)
		case err == nil && failing:
			failing = false
			r.log.Info("the suppression list is read again")
		}
		if now.Sub(lastRetain) >= every {
			lastRetain = now
			r.guard.mu.Lock()
			r.guard.rebuildErased(now)
			r.guard.mu.Unlock()
			r.expire(now, dlAge, dbgAge)
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// expire removes the dead letters older than dlAge and the debugger's events older than
// dbgAge, counting them.
func (r *Relay) expire(now time.Time, dlAge, dbgAge time.Duration) {
	if r.guard.store != nil {
		n, err := r.guard.store.ExpireDeadLetters(now.Add(-dlAge))
		if err != nil && !errors.Is(err, queue.ErrClosed) {
			r.log.Warn("removing the dead letters past their retention failed; retrying", "err", err)
		}
		if n > 0 {
			r.guard.removed.WithLabelValues("dead_letters", queue.ReasonExpired).Add(float64(n))
			r.log.Info("removed dead letters past their retention (counted filtered)", "dead_letters", n, "retention", dlAge.String())
		}
	}
	if r.dbg != nil {
		if n := r.dbg.ExpireBefore(now.Add(-dbgAge)); n > 0 {
			r.guard.removed.WithLabelValues("debugger", queue.ReasonExpired).Add(float64(n))
		}
	}
}

// SelectorsRequest is the body of the suppression and erasure calls: selectors in their
// stored form, "kind:value" (user_id:u1, anonymous_id:a1, email:jane@example.com, cookie:C1),
// at most 5,000.
type SelectorsRequest struct {
	Selectors []string `json:"selectors"`
}

// SuppressionsAnswer is what the suppression calls answer.
type SuppressionsAnswer struct {
	Added        int                `json:"added,omitempty"`
	Removed      int                `json:"removed,omitempty"`
	Suppressions []privacy.Selector `json:"suppressions"`
}

// mountPrivacy adds the admin routes of the suppression list and of erasure.
func (r *Relay) mountPrivacy(e *echo.Echo) {
	g := e.Group("/admin", r.api.Guard)
	g.GET("/suppressions", func(c echo.Context) error { return r.answerSuppressions(c, SuppressionsAnswer{}) })
	g.POST("/suppressions", func(c echo.Context) error { return r.changeSuppressions(c, false) })
	g.DELETE("/suppressions", func(c echo.Context) error { return r.changeSuppressions(c, true) })
	g.POST("/privacy/erase", func(c echo.Context) error {
		sels, err := selectorsOf(c)
		if err != nil {
			return nil // answered
		}
		// An erasure reads the whole queue and compacts the store: it gets the 10 minutes the
		// CLI and the stores allow it, past the admin listener's 2-minute write timeout.
		_ = http.NewResponseController(c.Response()).SetWriteDeadline(time.Now().Add(eraseTimeout))
		out, err := r.Erase(sels)
		if err != nil {
			return c.JSON(http.StatusInternalServerError, admin.Error{Code: "store_error", Message: err.Error()})
		}
		return c.JSON(http.StatusOK, out)
	})
}

// changeSuppressions adds the call's selectors to the list, or removes them.
func (r *Relay) changeSuppressions(c echo.Context, remove bool) error {
	sels, err := selectorsOf(c)
	if err != nil || r.guard.store == nil {
		return r.answerSuppressions(c, SuppressionsAnswer{}) // answered, or 501
	}
	keys := make([]string, len(sels))
	for i, s := range sels {
		keys[i] = s.String()
	}
	var a SuppressionsAnswer
	if remove {
		a.Removed, err = r.guard.store.RemoveSuppressions(keys)
	} else {
		a.Added, err = len(keys), r.guard.store.AddSuppressions(keys)
	}
	if err != nil {
		return c.JSON(http.StatusInternalServerError, admin.Error{Code: "store_error", Message: err.Error()})
	}
	return r.answerSuppressions(c, a)
}

// answerSuppressions reads the list again (so this relay applies a change at once) and
// answers it with a; it does nothing when the call was answered already.
func (r *Relay) answerSuppressions(c echo.Context, a SuppressionsAnswer) error {
	if c.Response().Committed {
		return nil
	}
	if r.guard.store == nil {
		return c.JSON(http.StatusNotImplemented, admin.Error{Code: "not_supported", Message: fmt.Sprintf("the queue (%T) keeps no suppression list", r.q)})
	}
	if err := r.guard.refresh(); err != nil {
		return c.JSON(http.StatusInternalServerError, admin.Error{Code: "store_error", Message: err.Error()})
	}
	a.Suppressions = r.guard.set.Load().Selectors()
	return c.JSON(http.StatusOK, a)
}

// selectorsOf reads a SelectorsRequest; on a bad one it has answered and returns an error.
func selectorsOf(c echo.Context) ([]privacy.Selector, error) {
	bad := func(status int, code, msg string) ([]privacy.Selector, error) {
		_ = c.JSON(status, admin.Error{Code: code, Message: msg})
		return nil, errors.New(msg)
	}
	if mt, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type")); mt != "application/json" {
		return bad(http.StatusUnsupportedMediaType, "unsupported_media_type", `send the body as Content-Type: application/json, {"selectors":["user_id:u1"]}`)
	}
	var req SelectorsRequest
	if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 4<<20)).Decode(&req); err != nil {
		return bad(http.StatusBadRequest, "bad_request", `the body must be JSON: {"selectors":["user_id:u1","email:jane@example.com"]}`)
	}
	if len(req.Selectors) == 0 || len(req.Selectors) > maxSelectors {
		return bad(http.StatusBadRequest, "bad_request", fmt.Sprintf("give from 1 to %d selectors; %d were given", maxSelectors, len(req.Selectors)))
	}
	sels := make([]privacy.Selector, 0, len(req.Selectors))
	for _, s := range req.Selectors {
		sel, err := privacy.ParseSelector(s)
		if err != nil {
			return bad(http.StatusBadRequest, "bad_selector", err.Error())
		}
		sels = append(sels, sel)
	}
	return sels, nil
}
