// Package relay assembles a running woorelay from its parts: the ingest server (package
// server), the durable queue (queue/disk, or any queue.Queue), delivery to Woopra (package
// destination), the admin API (package admin), the reconciling counters as metrics, and the
// sandbox emulator for sources that have no Woopra project. `woorelay serve` is a command line
// around it; a Go program embeds the relay the same way.
//
// # Lifecycle
//
// A relay goes through four steps, each of which may fail only in the ways listed:
//
//  1. New(cfg) validates the whole configuration and provisions the parts: it compiles every
//     source's preset and mapping folders, opens the queue, and starts the sandbox emulator on
//     a loopback port when a source has no project. It reports every finding at once, as a
//     *ConfigError (a setting out of range, a source that does not compile); any other error
//     is the environment's (the data directory cannot be created, the queue cannot be
//     opened). When New fails nothing is left open.
//  2. Start binds the ingest listener (the SDK routes, /healthz, /readyz, /metrics) and the
//     admin listener (the admin API, the sandbox emulator's records; see adminRoutes) and
//     starts delivery, ingest and the admin listener; /readyz answers 200 once it returns
//     (and 503 while a queue on JetStream cannot store events, see watchStore, or 503
//     store_full while the disk queue refuses writes for a full disk or disk budget, see
//     watchRefusing). It fails only when an address cannot be bound.
//  3. While it runs, Reload(cfg) swaps in a new set of sources (write keys, presets, settings,
//     mapping folders, allowed origins, trusted proxies) atomically: the next request is
//     authenticated and the next event delivered with the new set. It validates and compiles all of it first and
//     keeps the running set on any finding (a *ConfigError). Settings that need a restart
//     (the listeners, the TLS files' paths, the queue, delivery's workers and timings) are
//     findings too; a renewed certificate at the same paths needs neither.
//  4. Stop(drain) stops ingest (readiness turns 503, requests in flight finish within drain),
//     then delivery (attempts in flight finish within drain), then closes the queue and the
//     sandbox emulator. What is still queued is delivered after the next start. It returns
//     the queue's close error, if any. Stop may be called once, after New, with or without
//     Start.
//
// Done is closed when the ingest server stops serving on its own, or when delivery stops
// because the queue keeps failing to record outcomes (Err says why); a caller then calls Stop
// as usual and exits with the error, so that a supervisor starts the relay again: a relay
// that takes events but no longer delivers them is worse than one that restarts (and, on
// JetStream, it would keep its partitions from the relays that could deliver them).
//
// Events are stored unmapped and mapped at delivery with the configuration in force then, so
// a fixed preset (after a Reload) applies to the backlog and to replayed dead letters.
package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/debugger"
	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/disk"
	"github.com/woorelay/woorelay/server"
)

// SandboxProject is the Woopra project of sources that have none: their events go to the
// relay's in-process emulator (or to WoopraURL) under this name, never to Woopra.
const SandboxProject = "sandbox.woorelay"

// Relay is one assembled woorelay. Create it with New.
type Relay struct {
	cfg     Config
	log     *slog.Logger
	q       queue.Queue
	srv     *server.Server
	disp    *destination.Dispatcher
	sources *sourceMap
	reg     *prometheus.Registry
	api     *admin.API
	certs   *certHolder        // the ingest listener's TLS certificate; nil for plain HTTP
	dbg     *debugger.Debugger // nil when turned off
	guard   *guard             // the suppression list and erased persons (privacy.go)

	reloadMu sync.Mutex // one Reload at a time
	filesMu  sync.Mutex // one ReloadFromFiles at a time
	live     *liveConfig
	mu       sync.Mutex // guards em, emURL, emStop (a reload may start the sandbox)
	em       *emulator.Emulator
	emURL    string
	emStop   func(context.Context) error

	ln         net.Listener
	adminLn    net.Listener
	adminSrv   *http.Server
	adminDone  chan struct{}
	dispCancel context.CancelFunc
	dispDone   chan error
	watchStop  chan struct{} // closed by Stop: ends watchRefusing
	watchDone  chan struct{}
	done       chan struct{} // closed when the ingest server has stopped
	halted     chan struct{} // closed when ingest or delivery stopped (Done)
	haltOnce   sync.Once
	ready      readiness
	haltErr    error
	stopOnce   sync.Once
	stopErr    error
}

// New validates cfg and provisions the relay's parts (see the package doc). It reports every
// finding at once as a *ConfigError.
func New(cfg Config) (_ *Relay, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Relay{cfg: cfg, log: cfg.Logger}
	defer func() {
		if err != nil {
			r.closeParts()
		}
	}()
	if cfg.Sources == nil {
		r.log.Warn("DEVELOPMENT MODE: no --config given, so ANY write key is accepted and mapped with the default preset; give a sources file before exposing this server")
	}
	if cfg.WoopraURL != "" {
		r.log.Info("delivering to " + cfg.WoopraURL + " (--woopra-url) instead of Woopra")
	}
	if cfg.TLSCert != "" {
		if r.certs, err = newCertHolder(cfg.TLSCert, cfg.TLSKey, r.log); err != nil {
			return nil, &ConfigError{Findings: []Finding{{Setting: "tls-cert", Message: err.Error()}}}
		}
	}
	compiled, err := r.compile(cfg.sourcesConfig())
	if err != nil {
		return nil, err
	}
	r.sources = newSourceMap(compiled)

	if r.q = cfg.Queue; r.q == nil && cfg.queueConfig() != nil {
		if r.q, err = r.openJetStream(cfg.queueConfig()); err != nil {
			return nil, err
		}
	} else if r.q == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("create the data directory: %v", err)
		}
		// A failed Open returns a nil *disk.Queue, which must not become a non-nil queue.Queue
		// (closeParts would call its Close).
		dq, err := disk.Open(cfg.DataDir, disk.Options{DiskBudget: cfg.DiskBudget, DedupWindow: max(24*time.Hour, cfg.RetryWindow), Logger: r.log, NoSync: cfg.NoSync})
		if err != nil {
			return nil, err
		}
		r.q = dq
	}

	r.reg = prometheus.NewRegistry()
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.reg.MustRegister(newCountersCollector(r.q))
	r.live = newLiveConfig(cfg.sourcesConfig(), r.reg)
	r.guard = newGuard(r.q, r)

	var sender destination.Sender = destination.NewClient(destination.ClientOptions{Timeout: cfg.WoopraTimeout, Conns: cfg.Workers})
	var store server.Store = r.q
	tap := cfg.Tap
	var disp atomic.Pointer[destination.Dispatcher] // for the debugger, which may ask before it is made
	if cfg.DebuggerEvents > 0 {
		r.dbg = debugger.New(debugger.Options{Events: cfg.DebuggerEvents, Follow: cfg.DebuggerFollow, Program: r.sources.program, Counters: r.q.Counters,
			Delivery: func() destination.Stats {
				if d := disp.Load(); d != nil {
					return d.Stats()
				}
				return destination.Stats{}
			}})
		tap = bothTaps(tap, r.dbg)
	}
	if tap != nil {
		sender, store = tapSender{sender, tap}, tapStore{r.q, tap}
	}
	r.disp = destination.NewDispatcher(r.q, sender, destination.DispatcherOptions{
		Workers: cfg.Workers, MinWorkers: cfg.WorkersMin, RetryWindow: cfg.RetryWindow, DrainTimeout: cfg.DrainTimeout,
		Backoff: destination.Backoff{Min: cfg.RetryMin, Max: cfg.RetryMax, MaxRetryAfter: max(cfg.RetryMax, time.Minute)}, Logger: r.log, Registerer: r.reg,
		Map: r.sources.mapAtDelivery(tap), Drop: r.guard.drop,
	})
	disp.Store(r.disp)

	r.api = &admin.API{Queue: r.q, Token: cfg.AdminToken}
	sc := cfg.sourcesConfig()
	opts := sc.Options(compiled, store)
	opts.Registerer, opts.Gatherer, opts.Logger = r.reg, r.reg, r.log
	opts.Timeouts.Write = max(30*time.Second, cfg.DrainTimeout)
	opts.Mount = ingestHidden
	opts.Suppressions = r.guard
	if r.srv, err = server.New(opts); err != nil {
		return nil, err
	}
	r.srv.SetReady(false)
	return r, nil
}

// Start binds the ingest and admin listeners and starts delivery, ingest and the admin
// listener.
func (r *Relay) Start() error {
	ln, err := net.Listen("tcp", r.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %v (choose another with --listen or WOORELAY_LISTEN)", r.cfg.Listen, err)
	}
	adminLn, err := net.Listen("tcp", r.cfg.AdminListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("listen on %s for the admin API: %v (choose another with --admin-listen or WOORELAY_ADMIN_LISTEN)", r.cfg.AdminListen, err)
	}
	r.ln, r.adminLn = ln, adminLn
	serveLn := ln
	if r.certs != nil {
		serveLn = tls.NewListener(ln, r.certs.tlsConfig())
	}
	r.adminSrv = r.adminServer()
	r.adminDone = make(chan struct{})
	go func() {
		if err := r.adminSrv.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error("the admin listener stopped", "err", err)
		}
		close(r.adminDone)
	}()
	var dispCtx context.Context
	dispCtx, r.dispCancel = context.WithCancel(context.Background())
	r.dispDone = make(chan error, 1)
	r.done, r.halted = make(chan struct{}), make(chan struct{})
	r.ready.set = r.srv.SetReady
	r.ready.store(true) // before delivery can fail and turn it off
	go r.watchStore(r.halted)
	r.watchStop, r.watchDone = make(chan struct{}), make(chan struct{})
	go r.watchRefusing()
	go r.retain(r.watchStop)
	go func() {
		err := r.disp.Run(dispCtx)
		if err != nil && dispCtx.Err() == nil { // an error after Stop cancelled it is Stop's to report
			r.log.Error("delivery stopped; stopping the relay so that it is started again (what is queued stays queued)", "err", err)
			r.ready.end()
			r.halt(err)
		}
		r.dispDone <- err
	}()
	go func() {
		err := r.srv.Serve(serveLn)
		close(r.done)
		r.halt(err)
	}()
	c := r.q.Counters()
	where := "disk " + r.cfg.DataDir
	if s, ok := r.q.(fmt.Stringer); ok {
		where = s.String()
	}
	r.log.Info("woorelay serving", "listen", r.URL(), "admin", adminLn.Addr().String(), "queue", where, "sources", r.sources.count(), "queued", c.Queued, "dead_letters", c.DeadLettered)
	return nil
}

// storeWatch is how often readiness looks at whether the queue refuses writes.
const storeWatch = 500 * time.Millisecond

// watchRefusing keeps /readyz truthful while the queue refuses writes (a full disk or disk
// budget): it answers 503 store_full until the queue accepts them again, by itself.
func (r *Relay) watchRefusing() {
	defer close(r.watchDone)
	h, ok := r.q.(queue.Health)
	if !ok {
		return
	}
	tick := time.NewTicker(storeWatch)
	defer tick.Stop()
	for {
		why := "" // the cause, with the data directory's path, is in the log, not on this listener
		if err := h.Refusing(); errors.Is(err, queue.ErrFull) {
			why = "the queue refuses new events: its disk budget is used up or its disk is full; delivery makes room, retry after the Retry-After delay"
		}
		r.srv.SetRefusing(why)
		select {
		case <-r.watchStop:
			return
		case <-tick.C:
		}
	}
}

// URL is the base URL of the ingest listener (http://127.0.0.1:8080, https:// with TLS),
// once started.
func (r *Relay) URL() string {
	if r.ln == nil {
		return ""
	}
	if r.certs != nil {
		return "https://" + r.ln.Addr().String()
	}
	return "http://" + r.ln.Addr().String()
}

// AdminURL is the base URL of the admin listener (http://127.0.0.1:9090), once started: the
// admin API and the sandbox emulator's records.
func (r *Relay) AdminURL() string {
	if r.adminLn == nil {
		return ""
	}
	return "http://" + r.adminLn.Addr().String()
}

// Done is closed when the ingest server stops serving (on its own or after Stop) or delivery
// stops with an error; nil before Start.
func (r *Relay) Done() <-chan struct{} { return r.halted }

// Err is why the relay stopped (nil after a Stop), once Done is closed.
func (r *Relay) Err() error { return r.haltErr }

// halt closes Done with the first reason to stop.
func (r *Relay) halt(err error) {
	r.haltOnce.Do(func() { r.haltErr = err; close(r.halted) })
}

// Queue is the relay's queue, to read its counters or dead letters.
func (r *Relay) Queue() queue.Queue { return r.q }

// Registry is the Prometheus registry /metrics serves, to add an embedding program's metrics.
func (r *Relay) Registry() *prometheus.Registry { return r.reg }

// Sandbox is the in-process emulator the sources without a project deliver to, nil when no
// source needs it.
func (r *Relay) Sandbox() *emulator.Emulator {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.em
}

// serveSandbox serves the sandbox emulator's records at /emulator/ on the admin listener;
// the route is not found while no source needs the sandbox.
func (r *Relay) serveSandbox(c echo.Context) error {
	em := r.Sandbox()
	if em == nil {
		return echo.ErrNotFound
	}
	em.ServeHTTP(c.Response(), c.Request())
	return nil
}

// Stop drains and stops the relay (see the package doc).
func (r *Relay) Stop(drain time.Duration) error {
	r.stopOnce.Do(func() { r.stopErr = r.stop(drain) })
	return r.stopErr
}

func (r *Relay) stop(drain time.Duration) error {
	if r.ln != nil {
		r.log.Info("shutting down: finishing requests in flight, then delivery")
		r.ready.end()
		sctx, cancel := context.WithTimeout(context.Background(), drain)
		if err := r.srv.Shutdown(sctx); err != nil {
			r.log.Warn("ingest did not finish in time", "err", err)
		}
		cancel()
		<-r.done
		actx, cancel := context.WithTimeout(context.Background(), drain)
		if err := r.adminSrv.Shutdown(actx); err != nil {
			r.log.Warn("admin calls did not finish in time", "err", err)
			r.adminSrv.Close()
		}
		cancel()
		<-r.adminDone
		close(r.watchStop)
		<-r.watchDone
		r.dispCancel()
		if err := <-r.dispDone; err != nil && !errors.Is(err, context.Canceled) {
			r.log.Warn("delivery stopped with an error", "err", err)
		}
		c := r.q.Counters()
		r.log.Info("stopped", "received", c.Received, "delivered", c.Delivered, "dead_lettered", c.DeadLettered, "filtered", c.Filtered, "queued", c.Queued, "duplicates", c.Duplicates)
	}
	return r.closeParts()
}

// closeParts closes the queue, the debugger and the sandbox emulator, whichever were opened.
func (r *Relay) closeParts() error {
	if r.dbg != nil {
		r.dbg.Close()
	}
	var err error
	if r.q != nil {
		err = r.q.Close()
	}
	r.mu.Lock()
	stopEm := r.emStop
	r.emStop = nil
	r.mu.Unlock()
	if stopEm != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		stopEm(ctx)
		cancel()
	}
	return err
}

// compile builds the sources of sc: sources without a project deliver to the sandbox (the
// in-process emulator, started on first need, or WoopraURL), and with WoopraURL set every
// source delivers there.
func (r *Relay) compile(sc *server.Config) ([]*server.Source, error) {
	var sandboxed []string
	for _, s := range sc.Sources {
		if s.Settings["project"] == "" {
			sandboxed = append(sandboxed, s.Name)
		}
	}
	base := strings.TrimRight(r.cfg.WoopraURL, "/")
	if base == "" && len(sandboxed) > 0 {
		url, err := r.startSandbox()
		if err != nil {
			return nil, err
		}
		r.log.Warn("SANDBOX: sources " + strings.Join(sandboxed, ", ") + " have no Woopra project, so their events go to an in-process Woopra emulator, not to Woopra; see what it received at /emulator/requests and /emulator/visitors on the admin listener; set settings.project in the sources file to deliver to Woopra")
		sandboxURL := url
		return r.compileWith(sc, func(name string, settings map[string]string) {
			if settings["project"] == "" {
				settings["project"], settings["base_url"] = SandboxProject, sandboxURL
			}
		})
	}
	return r.compileWith(sc, func(_ string, settings map[string]string) {
		if settings["project"] == "" {
			settings["project"] = SandboxProject
		}
		if base != "" {
			settings["base_url"] = base
		}
	})
}

func (r *Relay) compileWith(sc *server.Config, adjust func(string, map[string]string)) ([]*server.Source, error) {
	compiled, err := sc.Compile(adjust)
	if err != nil {
		return nil, &ConfigError{Sources: err}
	}
	return compiled, nil
}

// startSandbox starts the sandbox emulator once and returns its URL.
func (r *Relay) startSandbox() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.em != nil {
		return r.emURL, nil
	}
	em := emulator.New(emulator.Options{MaxRecords: 10000})
	url, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("start the sandbox emulator: %v", err)
	}
	r.em, r.emURL, r.emStop = em, url, stop
	return url, nil
}
