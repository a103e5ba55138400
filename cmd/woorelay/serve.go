package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/disk"
	"github.com/woorelay/woorelay/server"
)

// sandboxProject is the project sources without one deliver under, to the in-process emulator.
const sandboxProject = "sandbox.woorelay"

// serveFlags are the flags of `woorelay serve`; each can also be set by WOORELAY_<FLAG>.
type serveFlags struct {
	config, listen, data, woopraURL, adminToken string
	diskBudget                                  string
	workers                                     int
	retryWindow, retryMin, retryMax             time.Duration
	woopraTimeout, drainTimeout                 time.Duration
	logLevel                                    string
	noSync                                      bool // benchmarks only: acknowledge before the disk sync
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "sources file (YAML): write keys, presets, settings, mapping folders; none = development mode")
	fs.StringVar(&f.listen, "listen", ":8080", "address to listen on")
	fs.StringVar(&f.data, "data", "woorelay-data", "directory of the durable queue")
	fs.StringVar(&f.woopraURL, "woopra-url", "", "deliver to this Woopra endpoint (an emulator, a proxy) instead of each source's base_url")
	fs.StringVar(&f.adminToken, "admin-token", "", "token the admin API (/admin/) requires; none = loopback callers only")
	fs.StringVar(&f.diskBudget, "disk-budget", "10GB", "disk the queue may use; past it ingest answers 503 with Retry-After (0 = no limit)")
	fs.IntVar(&f.workers, "workers", 64, "concurrent requests to Woopra")
	fs.DurationVar(&f.retryWindow, "retry-window", 4*time.Hour, "how long a failing event is retried before it is dead-lettered")
	fs.DurationVar(&f.retryMin, "retry-min", time.Second, "first retry backoff (exponential, full jitter)")
	fs.DurationVar(&f.retryMax, "retry-max", 5*time.Minute, "largest retry backoff")
	fs.DurationVar(&f.woopraTimeout, "woopra-timeout", 10*time.Second, "time limit of one request to Woopra")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", 20*time.Second, "on SIGTERM, how long to wait for requests in flight")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
}

// applyEnv sets every flag not given on the command line from WOORELAY_<FLAG> (dashes become
// underscores: --woopra-url is WOORELAY_WOOPRA_URL).
func applyEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		name := "WOORELAY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %v", name, v, e)
			}
		}
	})
	return err
}

// parseSize reads a byte count such as 512MB, 10GB or 1048576.
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a size; write it like 512MB, 10GB or 0 for no limit", s)
	}
	return int64(n * float64(mult)), nil
}

// serveContext is the context serve runs under; tests replace it to stop the server.
var serveContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// cmdServe is `woorelay serve`.
func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f serveFlags
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "woorelay serve: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "woorelay serve: unexpected argument %q (flags only; see woorelay help)\n", fs.Arg(0))
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		fmt.Fprintf(stderr, "woorelay serve: --log-level %q: use debug, info, warn or error\n", f.logLevel)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := serveContext()
	defer stop()
	if err := serve(ctx, f, log, stdout); err != nil {
		fmt.Fprintf(stderr, "woorelay serve: %v\n", err)
		var cfg configError
		if errors.As(err, &cfg) {
			return 2
		}
		return 1
	}
	return 0
}

// configError marks errors in the flags or the sources file (exit status 2).
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// serve runs the server until ctx ends, then drains and returns.
func serve(ctx context.Context, f serveFlags, log *slog.Logger, stdout io.Writer) error {
	r, err := startRelay(f, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "woorelay: listening on %s\n", r.url)
	var runErr error
	select {
	case <-ctx.Done():
	case err := <-r.serveDone:
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = err
		}
	}
	if err := r.stop(f.drainTimeout); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

// relay is one running woorelay: ingest server, durable queue, delivery, and the sandbox
// emulator when a source has no project.
type relay struct {
	url        string
	log        *slog.Logger
	srv        *server.Server
	q          *disk.Queue
	em         *emulator.Emulator
	emStop     func(context.Context) error
	dispCancel context.CancelFunc
	dispDone   chan error
	serveDone  chan error
}

// startRelay assembles and starts a relay from the serve flags.
func startRelay(f serveFlags, log *slog.Logger) (_ *relay, err error) {
	budget, err := parseSize(f.diskBudget)
	if err != nil {
		return nil, configError{fmt.Errorf("--disk-budget: %v", err)}
	}
	var cfg *server.Config
	if f.config == "" {
		cfg = server.DevConfig()
		log.Warn("DEVELOPMENT MODE: no --config given, so ANY write key is accepted and mapped with the default preset; give a sources file before exposing this server")
	} else if cfg, err = server.LoadConfig(f.config); err != nil {
		return nil, configError{err}
	}
	r := &relay{log: log}
	defer func() {
		if err != nil {
			r.closeParts()
		}
	}()

	// Sources without a project deliver to a sandbox: the in-process emulator (or --woopra-url).
	var sandboxed []string
	for _, sc := range cfg.Sources {
		if sc.Settings["project"] == "" {
			sandboxed = append(sandboxed, sc.Name)
		}
	}
	baseURL := map[string]string{}
	if f.woopraURL != "" {
		for _, sc := range cfg.Sources {
			baseURL[sc.Name] = strings.TrimRight(f.woopraURL, "/")
		}
		log.Info("delivering to " + f.woopraURL + " (--woopra-url) instead of Woopra")
	} else if len(sandboxed) > 0 {
		r.em = emulator.New(emulator.Options{MaxRecords: 10000})
		url, stopEm, err := r.em.Start("127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("start the sandbox emulator: %v", err)
		}
		r.emStop = stopEm
		for _, name := range sandboxed {
			baseURL[name] = url
		}
		log.Warn("SANDBOX: sources " + strings.Join(sandboxed, ", ") + " have no Woopra project, so their events go to an in-process Woopra emulator, not to Woopra; see what it received at /emulator/requests and /emulator/visitors; set settings.project in the sources file to deliver to Woopra")
	}
	sources, err := cfg.Compile(func(name string, settings map[string]string) {
		if settings["project"] == "" {
			settings["project"] = sandboxProject
		}
		if u, ok := baseURL[name]; ok {
			settings["base_url"] = u
		}
	})
	if err != nil {
		return nil, configError{err}
	}

	if err := os.MkdirAll(f.data, 0o755); err != nil {
		return nil, fmt.Errorf("create the data directory: %v", err)
	}
	r.q, err = disk.Open(f.data, disk.Options{DiskBudget: budget, DedupWindow: max(24*time.Hour, f.retryWindow), Logger: log, NoSync: f.noSync})
	if err != nil {
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(newCountersCollector(r.q))

	client := destination.NewClient(destination.ClientOptions{Timeout: f.woopraTimeout, Conns: f.workers})
	disp := destination.NewDispatcher(r.q, client, destination.DispatcherOptions{
		Workers: f.workers, RetryWindow: f.retryWindow, DrainTimeout: f.drainTimeout,
		Backoff: destination.Backoff{Min: f.retryMin, Max: f.retryMax}, Logger: log, Registerer: reg,
		Map: mapAtDelivery(sources),
	})

	admin := &adminAPI{q: r.q, token: f.adminToken}
	opts := cfg.Options(sources, r.q)
	opts.Registerer, opts.Gatherer, opts.Logger = reg, reg, log
	opts.Timeouts.Write = max(30*time.Second, f.drainTimeout)
	opts.Mount = func(e *echo.Echo) {
		admin.mount(e)
		if r.em != nil {
			e.Any("/emulator/*", echo.WrapHandler(r.em.Handler()))
		}
	}
	r.srv, err = server.New(opts)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %v (choose another with --listen or WOORELAY_LISTEN)", f.listen, err)
	}
	r.url = "http://" + ln.Addr().String()

	var dispCtx context.Context
	dispCtx, r.dispCancel = context.WithCancel(context.Background())
	r.dispDone = make(chan error, 1)
	go func() { r.dispDone <- disp.Run(dispCtx) }()
	r.serveDone = make(chan error, 1)
	go func() { r.serveDone <- r.srv.Serve(ln) }()
	r.srv.SetReady(true)
	c := r.q.Counters()
	log.Info("woorelay serving", "listen", ln.Addr().String(), "data", f.data, "sources", len(sources), "queued", c.Queued, "dead_letters", c.DeadLettered)
	return r, nil
}

// mapAtDelivery maps stored events with their source's current program, as the dispatcher
// loads them: a fixed preset or mapping applies to the whole backlog and to replayed dead
// letters.
func mapAtDelivery(sources []*server.Source) destination.MapFunc {
	byName := make(map[string]*server.Source, len(sources))
	for _, s := range sources {
		byName[s.Name] = s
	}
	scratch := sync.Pool{New: func() any { return new(mapping.Result) }}
	return func(e queue.Entry) ([]queue.Request, string, error) {
		src := byName[e.Source]
		if src == nil {
			return nil, "", fmt.Errorf("source %q is not configured any more; add it back to the sources file and replay", e.Source)
		}
		res := scratch.Get().(*mapping.Result)
		src.Map(res, &e)
		scratch.Put(res)
		switch e.Outcome {
		case queue.Deliver:
			return e.Requests, "", nil
		case queue.Filtered:
			return nil, e.Reason, nil
		}
		return nil, "", errors.New(e.Reason)
	}
}

// stop drains the relay: ingest stops taking requests and finishes those in flight, delivery
// finishes its attempts in flight, then the queue is closed. What is still queued is
// delivered after the next start.
func (r *relay) stop(drainTimeout time.Duration) error {
	r.log.Info("shutting down: finishing requests in flight, then delivery")
	r.srv.SetReady(false)
	sctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	if err := r.srv.Shutdown(sctx); err != nil {
		r.log.Warn("ingest did not finish in time", "err", err)
	}
	cancel()
	r.dispCancel()
	if err := <-r.dispDone; err != nil && !errors.Is(err, context.Canceled) {
		r.log.Warn("delivery stopped with an error", "err", err)
	}
	c := r.q.Counters()
	r.log.Info("stopped", "received", c.Received, "delivered", c.Delivered, "dead_lettered", c.DeadLettered, "filtered", c.Filtered, "queued", c.Queued, "duplicates", c.Duplicates)
	return r.closeParts()
}

// closeParts closes the queue and the sandbox emulator, whichever were started.
func (r *relay) closeParts() error {
	var err error
	if r.q != nil {
		err = r.q.Close()
	}
	if r.emStop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r.emStop(ctx)
		cancel()
	}
	return err
}

// countersCollector exports the queue's reconciling counters as Prometheus metrics.
type countersCollector struct {
	q    queue.Queue
	desc *prometheus.Desc
}

func newCountersCollector(q queue.Queue) *countersCollector {
	return &countersCollector{q: q, desc: prometheus.NewDesc("woorelay_events",
		"Events by state since the queue was created; received = delivered + dead_lettered + filtered + queued (duplicates and replayed are counted apart).",
		[]string{"state"}, nil)}
}

// Describe implements prometheus.Collector.
func (c *countersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *countersCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.q.Counters()
	for _, s := range []struct {
		state string
		v     int64
	}{{"received", n.Received}, {"delivered", n.Delivered}, {"dead_lettered", n.DeadLettered}, {"filtered", n.Filtered},
		{"queued", n.Queued}, {"duplicates", n.Duplicates}, {"replayed", n.Replayed}} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(s.v), s.state)
	}
}
