package relay

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/debugger"
)

// The admin listener (AdminListen) serves everything that is for operators only: the admin
// API, the sandbox emulator's records, and any later operator page. adminRoutes is the one
// place its routes are mounted; the ingest listener serves none of them (ingestHidden answers
// their paths there with a pointer to the admin listener).

// adminRoutes builds the admin listener's handler. Add operator routes here, behind
// r.api.Guard (the bearer token, else loopback callers only).
func (r *Relay) adminRoutes() *echo.Echo {
	e := admin.NewEcho()
	r.api.Mount(e)                                    // /admin/counters, /admin/dlq...
	r.mountLive(e)                                    // /admin/config, /admin/reload
	r.mountPrivacy(e)                                 // /admin/suppressions, /admin/privacy/erase
	e.Any("/emulator/*", r.serveSandbox, r.api.Guard) // the sandbox emulator's records
	if r.dbg != nil {
		r.dbg.Mount(e, r.api.Guard, r.api.Login("/debugger/")) // /debugger/: the page and its API
	} else {
		debugger.MountOff(e, r.api.Guard)
	}
	return e
}

// adminServer is the admin listener's HTTP server, with timeouts against slow clients.
func (r *Relay) adminServer() *http.Server {
	return &http.Server{
		Handler:           r.adminRoutes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * time.Minute, // a replay of every dead letter may take a while
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// ingestHidden mounts, on the ingest listener, a not-found answer for the paths the admin
// listener serves, so a caller of the old paths learns where they went.
func ingestHidden(e *echo.Echo) {
	h := func(c echo.Context) error {
		return c.JSON(http.StatusNotFound, admin.Error{Code: "not_found", Message: "no route " + c.Request().URL.Path + " on the ingest listener: the admin API, the debugger and the sandbox emulator's records are served on the admin listener (--admin-listen, default 127.0.0.1:9090)"})
	}
	e.Any("/admin/*", h)
	e.Any("/emulator/*", h)
	e.Any("/debugger", h)
	e.Any("/debugger/*", h)
}
