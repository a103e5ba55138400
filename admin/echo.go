package admin

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
)

// NewEcho returns the Echo instance of an admin listener: no banner, and Echo's own errors
// (no route, wrong method) answered as JSON Error values that name the admin routes. The relay
// mounts every admin route on it (API.Mount and the relay's own) and serves it on the admin
// listener, never on the ingest listener.
func NewEcho() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		var he *echo.HTTPError
		switch {
		case errors.As(err, &he) && he.Code == http.StatusNotFound:
			_ = fail(c, http.StatusNotFound, "not_found", "no route "+c.Request().Method+" "+c.Request().URL.Path+" on the admin listener; it serves /admin/counters, /admin/dlq, the debugger at /debugger/ and, with a sandbox, /emulator/requests")
		case errors.As(err, &he) && he.Code == http.StatusMethodNotAllowed:
			_ = fail(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request().Method+" is not allowed on "+c.Request().URL.Path)
		case errors.As(err, &he) && he.Code >= 400 && he.Code < 500:
			_ = fail(c, he.Code, "bad_request", http.StatusText(he.Code))
		default:
			_ = fail(c, http.StatusInternalServerError, "internal", "internal error: "+err.Error())
		}
	}
	return e
}
