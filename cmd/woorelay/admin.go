package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/queue"
)

// The admin API: counters and the dead-letter store of a running `woorelay serve`, under
// /admin/. `woorelay dlq` is its command-line client.
//
//	GET  /admin/counters          running totals and whether they reconcile
//	GET  /admin/dlq?after=&limit= dead letters, oldest first
//	GET  /admin/dlq/:id           one dead letter, with its event and the failed request
//	POST /admin/dlq/replay        {"ids":[...]} or {"all":true}
//
// A replayed event goes back to the end of the delivery queue and is mapped again when it is
// delivered, with the source's current preset and mappings: replay after fixing Woopra, a
// setting or a mapping.
//
// With an admin token configured every call needs `Authorization: Bearer <token>`; without
// one the API answers only requests from the loopback interface.

// adminAPI serves the admin routes over a queue.
type adminAPI struct {
	q     queue.Queue
	token string
}

// countersJSON is the wire form of queue.Counters.
type countersJSON struct {
	Received     int64 `json:"received"`
	Delivered    int64 `json:"delivered"`
	DeadLettered int64 `json:"dead_lettered"`
	Filtered     int64 `json:"filtered"`
	Queued       int64 `json:"queued"`
	Duplicates   int64 `json:"duplicates"`
	Replayed     int64 `json:"replayed"`
	Reconciles   bool  `json:"reconciles"`
}

func countersToJSON(c queue.Counters) countersJSON {
	return countersJSON{c.Received, c.Delivered, c.DeadLettered, c.Filtered, c.Queued, c.Duplicates, c.Replayed, c.Reconciles()}
}

// requestJSON is the wire form of a request to the destination.
type requestJSON struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
}

// deadLetterJSON is the wire form of queue.DeadLetter.
type deadLetterJSON struct {
	ID        uint64          `json:"id"`
	At        time.Time       `json:"at"`
	Source    string          `json:"source"`
	MessageID string          `json:"message_id,omitempty"`
	Visitor   string          `json:"visitor,omitempty"`
	Reason    string          `json:"reason"`
	Request   string          `json:"request,omitempty"`
	Status    int             `json:"status,omitempty"`
	Response  string          `json:"response,omitempty"`
	Attempts  int             `json:"attempts"`
	Received  time.Time       `json:"received"`
	Event     json.RawMessage `json:"event,omitempty"`
	Requests  []requestJSON   `json:"requests,omitempty"`
}

func deadLetterToJSON(d queue.DeadLetter, full bool) deadLetterJSON {
	out := deadLetterJSON{
		ID: d.ID, At: d.At, Source: d.Entry.Source, MessageID: d.Entry.MessageID, Visitor: d.Entry.Visitor,
		Reason: d.Failure.Reason, Request: d.Failure.Request, Status: d.Failure.Status,
		Response: d.Failure.Response, Attempts: d.Failure.Attempts, Received: d.Entry.Received,
	}
	if full {
		if json.Valid(d.Entry.Event) {
			out.Event = json.RawMessage(d.Entry.Event)
		}
		for _, r := range d.Entry.Requests {
			rj := requestJSON{Method: r.Method, URL: r.URL}
			for _, h := range r.Headers {
				if rj.Headers == nil {
					rj.Headers = map[string]string{}
				}
				rj.Headers[h.Name] = h.Value
			}
			out.Requests = append(out.Requests, rj)
		}
	}
	return out
}

// mount adds the admin routes to e.
func (a *adminAPI) mount(e *echo.Echo) {
	g := e.Group("/admin", a.guard)
	g.GET("/counters", func(c echo.Context) error {
		return c.JSON(http.StatusOK, countersToJSON(a.q.Counters()))
	})
	g.GET("/dlq", a.list)
	g.GET("/dlq/:id", a.show)
	g.POST("/dlq/replay", a.replay)
}

// adminError answers with the JSON error shape the ingest API uses.
func adminError(c echo.Context, status int, code, msg string) error {
	return c.JSON(status, map[string]string{"code": code, "message": msg})
}

// guard checks the bearer token, or without one that the caller is on the loopback interface.
func (a *adminAPI) guard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.token != "" {
			got, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			want := sha256.Sum256([]byte(a.token))
			have := sha256.Sum256([]byte(got))
			if !ok || subtle.ConstantTimeCompare(want[:], have[:]) != 1 {
				return adminError(c, http.StatusUnauthorized, "unauthorized", "the admin API needs Authorization: Bearer <admin token> (set with --admin-token or WOORELAY_ADMIN_TOKEN)")
			}
			return next(c)
		}
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return adminError(c, http.StatusForbidden, "forbidden", "the admin API answers only loopback callers unless an admin token is set (--admin-token or WOORELAY_ADMIN_TOKEN)")
		}
		return next(c)
	}
}

func (a *adminAPI) list(c echo.Context) error {
	after, err := uintParam(c.QueryParam("after"), 0)
	if err != nil {
		return adminError(c, http.StatusBadRequest, "bad_request", "after must be a dead-letter id (a whole number)")
	}
	limit, err := uintParam(c.QueryParam("limit"), 100)
	if err != nil || limit == 0 || limit > 10000 {
		return adminError(c, http.StatusBadRequest, "bad_request", "limit must be a whole number from 1 to 10000")
	}
	letters, err := a.q.DeadLetters(after, int(limit))
	if err != nil {
		return adminError(c, http.StatusInternalServerError, "store_error", err.Error())
	}
	out := deadLetterPage{DeadLetters: []deadLetterJSON{}}
	for _, d := range letters {
		out.DeadLetters = append(out.DeadLetters, deadLetterToJSON(d, false))
	}
	if len(letters) == int(limit) {
		out.Next = letters[len(letters)-1].ID
	}
	return c.JSON(http.StatusOK, out)
}

func (a *adminAPI) show(c echo.Context) error {
	id, err := uintParam(c.Param("id"), 0)
	if err != nil {
		return adminError(c, http.StatusBadRequest, "bad_request", "the dead-letter id must be a whole number")
	}
	d, ok, err := a.q.DeadLetter(id)
	if err != nil {
		return adminError(c, http.StatusInternalServerError, "store_error", err.Error())
	}
	if !ok {
		return adminError(c, http.StatusNotFound, "not_found", "no dead letter "+strconv.FormatUint(id, 10)+" (it may have been replayed); list them with GET /admin/dlq")
	}
	return c.JSON(http.StatusOK, deadLetterToJSON(d, true))
}

// deadLetterPage is the answer of GET /admin/dlq; Next, when not 0, is the after parameter of
// the following page.
type deadLetterPage struct {
	DeadLetters []deadLetterJSON `json:"dead_letters"`
	Next        uint64           `json:"next,omitempty"`
}

// replayRequest is the body of POST /admin/dlq/replay.
type replayRequest struct {
	IDs []uint64 `json:"ids"`
	All bool     `json:"all"`
}

func (a *adminAPI) replay(c echo.Context) error {
	var req replayRequest
	if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20)).Decode(&req); err != nil {
		return adminError(c, http.StatusBadRequest, "bad_request", `the body must be JSON: {"ids":[1,2]} or {"all":true}`)
	}
	if req.All == (len(req.IDs) > 0) {
		return adminError(c, http.StatusBadRequest, "bad_request", `give either "ids" or "all":true`)
	}
	ids := req.IDs
	if req.All {
		var after uint64
		for {
			page, err := a.q.DeadLetters(after, 1000)
			if err != nil {
				return adminError(c, http.StatusInternalServerError, "store_error", err.Error())
			}
			for _, d := range page {
				ids = append(ids, d.ID)
			}
			if len(page) < 1000 {
				break
			}
			after = page[len(page)-1].ID
		}
	}
	n, err := a.q.Replay(ids, unmapped)
	if err != nil {
		return adminError(c, http.StatusInternalServerError, "store_error", err.Error())
	}
	return c.JSON(http.StatusOK, map[string]int{"replayed": n, "asked": len(ids)})
}

// unmapped clears a dead letter's requests and outcome, so delivery maps its event again
// with the current configuration.
func unmapped(e queue.Entry) (queue.Entry, error) {
	e.Outcome, e.Reason, e.Requests = queue.Deliver, "", nil
	return e, nil
}

func uintParam(s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseUint(s, 10, 64)
}
