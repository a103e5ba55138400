package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/queue"
)

// API serves the admin routes over a queue.
type API struct {
	// Queue is the relay's queue.
	Queue queue.Queue
	// Token, when set, is the bearer token every call needs; empty admits loopback callers only.
	Token string
}

// Mount adds the admin routes under /admin to e.
func (a *API) Mount(e *echo.Echo) {
	g := e.Group("/admin", a.Guard)
	g.GET("/counters", func(c echo.Context) error {
		return c.JSON(http.StatusOK, CountersOf(a.Queue.Counters()))
	})
	g.GET("/dlq", a.list)
	g.GET("/dlq/:id", a.show)
	g.POST("/dlq/replay", a.replay)
}

// fail answers with the JSON error shape the ingest API uses.
func fail(c echo.Context, status int, code, msg string) error {
	return c.JSON(status, Error{Code: code, Message: msg})
}

// Guard is the admin API's access rule as middleware, for other routes that must follow it:
// the bearer token when one is set (compared as SHA-256 digests in constant time), else a
// caller on the loopback interface that addressed the request to a loopback name (so that a
// web page whose domain was rebound to 127.0.0.1 cannot read the API). Whatever the rule, a
// state-changing request sent by another site's page is refused (http.CrossOriginProtection:
// Sec-Fetch-Site, or Origin against Host), so no page the operator visits can replay dead
// letters or reload the configuration through their browser.
func (a *API) Guard(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if err := crossOrigin.Check(c.Request()); err != nil {
			return fail(c, http.StatusForbidden, "cross_origin", "the admin API refuses a "+c.Request().Method+" sent by another site's page; call it from the woorelay CLI, curl, or the debugger page on this listener")
		}
		if a.Token != "" {
			got, ok := strings.CutPrefix(c.Request().Header.Get("Authorization"), "Bearer ")
			if !ok {
				if ck, err := c.Cookie(TokenCookie); err == nil {
					got, ok = ck.Value, true
				}
			}
			if !ok || !a.tokenIs(got) {
				return fail(c, http.StatusUnauthorized, "unauthorized", "the admin API needs Authorization: Bearer <admin token> (set with --admin-token or WOORELAY_ADMIN_TOKEN); in a browser, sign in at /debugger/login")
			}
			return next(c)
		}
		host, _, err := net.SplitHostPort(c.Request().RemoteAddr)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
			return fail(c, http.StatusForbidden, "forbidden", "the admin API answers only loopback callers unless an admin token is set (--admin-token or WOORELAY_ADMIN_TOKEN)")
		}
		if !LoopbackName(c.Request().Host) {
			return fail(c, http.StatusForbidden, "forbidden", fmt.Sprintf("without an admin token the admin API answers only requests addressed to 127.0.0.1, [::1] or localhost; this one was addressed to %q (as a page on a rebound domain would be): use one of those names, or set an admin token (--admin-token or WOORELAY_ADMIN_TOKEN)", c.Request().Host))
		}
		return next(c)
	}
}

// crossOrigin is the standard library's CSRF check: it refuses non-safe requests that a
// browser says (Sec-Fetch-Site) or shows (Origin unlike Host) come from another site.
var crossOrigin = http.NewCrossOriginProtection()

// LoopbackName reports whether host (a Host header: name or address, with or without a
// port) names this machine's loopback interface: localhost, a name under .localhost, or a
// loopback address.
func LoopbackName(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// TokenCookie is the cookie a browser signed in with the admin token (Login) sends instead of
// the Authorization header.
const TokenCookie = "woorelay_admin_token"

// tokenIs compares got with the token as SHA-256 digests, in constant time.
func (a *API) tokenIs(got string) bool {
	want := sha256.Sum256([]byte(a.Token))
	have := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(want[:], have[:]) == 1
}

// Login signs a browser in: a POSTed form field token equal to the admin token sets
// TokenCookie (HttpOnly, SameSite=Strict, so no other site's page can send it) and redirects
// to next (a path on this listener); a wrong token answers 401. Without a token configured it
// only redirects: the loopback rule needs no sign-in.
func (a *API) Login(next string) echo.HandlerFunc {
	return func(c echo.Context) error {
		if a.Token != "" {
			if !a.tokenIs(c.FormValue("token")) {
				return fail(c, http.StatusUnauthorized, "unauthorized", "that is not the admin token (--admin-token or WOORELAY_ADMIN_TOKEN); go back and try again")
			}
			c.SetCookie(&http.Cookie{Name: TokenCookie, Value: a.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.Scheme() == "https"})
		}
		return c.Redirect(http.StatusSeeOther, next)
	}
}

func (a *API) list(c echo.Context) error {
	after, err := uintParam(c.QueryParam("after"), 0)
	if err != nil {
		return fail(c, http.StatusBadRequest, "bad_request", "after must be a dead-letter id (a whole number)")
	}
	limit, err := uintParam(c.QueryParam("limit"), 100)
	if err != nil || limit == 0 || limit > 10000 {
		return fail(c, http.StatusBadRequest, "bad_request", "limit must be a whole number from 1 to 10000")
	}
	letters, err := a.Queue.DeadLetters(after, int(limit))
	if err != nil {
		return fail(c, http.StatusInternalServerError, "store_error", err.Error())
	}
	out := DeadLetterPage{DeadLetters: []DeadLetter{}}
	for _, d := range letters {
		out.DeadLetters = append(out.DeadLetters, DeadLetterOf(d, false))
	}
	if len(letters) == int(limit) {
		out.Next = letters[len(letters)-1].ID
	}
	return c.JSON(http.StatusOK, out)
}

func (a *API) show(c echo.Context) error {
	id, err := uintParam(c.Param("id"), 0)
	if err != nil {
		return fail(c, http.StatusBadRequest, "bad_request", "the dead-letter id must be a whole number")
	}
	d, ok, err := a.Queue.DeadLetter(id)
	if err != nil {
		return fail(c, http.StatusInternalServerError, "store_error", err.Error())
	}
	if !ok {
		return fail(c, http.StatusNotFound, "not_found", "no dead letter "+strconv.FormatUint(id, 10)+" (it may have been replayed); list them with GET /admin/dlq")
	}
	return c.JSON(http.StatusOK, DeadLetterOf(d, true))
}

func (a *API) replay(c echo.Context) error {
	// Only JSON: an HTML form cannot send it without the browser asking first (CORS), which
	// this listener never allows.
	if mt, _, _ := mime.ParseMediaType(c.Request().Header.Get("Content-Type")); mt != "application/json" {
		return fail(c, http.StatusUnsupportedMediaType, "unsupported_media_type", `send the body as Content-Type: application/json, {"ids":[1,2]} or {"all":true}`)
	}
	var req ReplayRequest
	if err := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 1<<20)).Decode(&req); err != nil {
		return fail(c, http.StatusBadRequest, "bad_request", `the body must be JSON: {"ids":[1,2]} or {"all":true}`)
	}
	if req.All == (len(req.IDs) > 0) {
		return fail(c, http.StatusBadRequest, "bad_request", `give either "ids" or "all":true`)
	}
	ids := req.IDs
	if req.All {
		var after uint64
		for {
			page, err := a.Queue.DeadLetters(after, 1000)
			if err != nil {
				return fail(c, http.StatusInternalServerError, "store_error", err.Error())
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
	var corrupt int
	n, err := a.Queue.Replay(ids, func(e queue.Entry) (queue.Entry, error) {
		e, err := Unmapped(e)
		if errors.Is(err, ErrCorruptRecord) {
			corrupt++ // Replay calls remap from this goroutine
		}
		return e, err
	})
	if err != nil {
		return fail(c, http.StatusInternalServerError, "store_error", err.Error())
	}
	res := ReplayResult{Replayed: n, Asked: len(ids)}
	if corrupt > 0 {
		res.Corrupt = corrupt
		res.Note = fmt.Sprintf("%d of the dead letters are corrupt queue records, not events: they hold the raw bytes of a record that could not be read, so there is no event to replay; they stay in the dead letters (restore the store from a backup to recover their events)", corrupt)
	}
	return c.JSON(http.StatusOK, res)
}

// ErrCorruptRecord is Unmapped's error for a dead letter that holds a corrupt queue record
// (see queue.ReasonCorruptRecord) rather than an event.
var ErrCorruptRecord = errors.New("the dead letter is a corrupt queue record, not an event: there is no event to replay")

// Unmapped clears a dead letter's requests and outcome, so delivery maps its event again
// with the current configuration; it is the remap function replay passes to Queue.Replay. A
// corrupt queue record is left where it is, with ErrCorruptRecord.
func Unmapped(e queue.Entry) (queue.Entry, error) {
	if e.Source == "" && strings.HasPrefix(e.Reason, queue.ReasonCorruptRecord) {
		return e, ErrCorruptRecord
	}
	e.Outcome, e.Reason, e.Requests = queue.Deliver, "", nil
	return e, nil
}

func uintParam(s string, def uint64) (uint64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseUint(s, 10, 64)
}
