package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/woorelay/woorelay/relay"
	"github.com/woorelay/woorelay/server"
)

// serveFlags are the flags of `woorelay serve`; each can also be set by WOORELAY_<FLAG>.
type serveFlags struct {
	config, listen, adminListen, data, woopraURL        string
	adminToken, tlsCert, tlsKey, queueURL               string
	diskBudget                                          string
	workers, workersMin, debuggerEvents, debuggerFollow int
	retryWindow, retryMin, retryMax                     time.Duration
	woopraTimeout, drainTimeout                         time.Duration
	deadLetterRetention, debuggerMaxAge                 time.Duration
	logLevel                                            string
	watch                                               bool
	watchDebounce                                       time.Duration
}

func (f *serveFlags) register(fs *flag.FlagSet) {
	d := relay.Defaults()
	fs.StringVar(&f.config, "config", "", "sources file (YAML): write keys, presets, settings, mapping folders; none = development mode")
	fs.StringVar(&f.listen, "listen", d.Listen, "address of the ingest listener: SDK routes, /healthz, /readyz, /metrics")
	fs.StringVar(&f.adminListen, "admin-listen", d.AdminListen, "address of the admin listener: the admin API and the sandbox emulator's records; not loopback = --admin-token required")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "PEM certificate (with its chain) of the ingest listener: serve HTTPS; reloaded when the file changes")
	fs.StringVar(&f.tlsKey, "tls-key", "", "PEM private key of --tls-cert")
	fs.StringVar(&f.data, "data", d.DataDir, "directory of the durable queue")
	fs.StringVar(&f.queueURL, "queue", "", "queue on NATS JetStream instead of --data: nats://host:4222 (comma separated for several); shared by every relay given the same servers")
	fs.StringVar(&f.woopraURL, "woopra-url", "", "deliver to this Woopra endpoint (an emulator, a proxy) instead of each source's base_url")
	fs.StringVar(&f.adminToken, "admin-token", "", "token the admin listener requires; none = loopback callers only")
	fs.StringVar(&f.diskBudget, "disk-budget", "10GB", "disk the queue may use; past it ingest answers 503 with Retry-After (0 = no limit)")
	fs.IntVar(&f.workers, "workers", d.Workers, "most concurrent requests to Woopra: the upper bound of the adaptive limit")
	fs.IntVar(&f.workersMin, "workers-min", 0, "floor of the adaptive concurrency limit (0: 4, or --workers when lower); equal to --workers pins the concurrency at --workers")
	fs.IntVar(&f.debuggerEvents, "debugger-events", d.DebuggerEvents, "how many of the latest events the debugger page (/debugger/ on the admin listener) keeps (0 = no debugger)")
	fs.IntVar(&f.debuggerFollow, "debugger-follow", d.DebuggerFollow, "how many new events a second the debugger follows; the others are counted, not shown (0 = every event)")
	fs.DurationVar(&f.deadLetterRetention, "dead-letter-retention", d.DeadLetterRetention, "how long a dead letter is kept, from when it went dead; older ones are removed and counted filtered")
	fs.DurationVar(&f.debuggerMaxAge, "debugger-max-age", d.DebuggerMaxAge, "the debugger keeps no event received longer ago than this")
	fs.DurationVar(&f.retryWindow, "retry-window", d.RetryWindow, "how long a failing event is retried before it is dead-lettered")
	fs.DurationVar(&f.retryMin, "retry-min", d.RetryMin, "first retry backoff (exponential, full jitter)")
	fs.DurationVar(&f.retryMax, "retry-max", d.RetryMax, "largest retry backoff")
	fs.DurationVar(&f.woopraTimeout, "woopra-timeout", d.WoopraTimeout, "time limit of one request to Woopra")
	fs.DurationVar(&f.drainTimeout, "drain-timeout", d.DrainTimeout, "on SIGTERM, how long to wait for requests in flight")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.watch, "watch", false, "reload the configuration when the sources file, a preset file or a mapping file changes (SIGHUP and POST /admin/reload always do)")
	fs.DurationVar(&f.watchDebounce, "watch-debounce", relay.DefaultWatchDebounce, "with --watch, reload once the files have not changed for this long")
}

// relayConfig turns the flags into the relay's configuration, reading the sources file.
// Its errors are configuration errors (exit status 2).
func (f serveFlags) relayConfig(log *slog.Logger) (relay.Config, error) {
	budget, err := parseSize(f.diskBudget)
	if err != nil {
		return relay.Config{}, fmt.Errorf("--disk-budget: %v", err)
	}
	if budget == 0 {
		budget = -1 // the flag's 0 is "no limit"
	}
	dbgEvents := f.debuggerEvents
	if dbgEvents <= 0 {
		dbgEvents = -1 // the flag's 0 is "no debugger"
	}
	dbgFollow := f.debuggerFollow
	if dbgFollow <= 0 {
		dbgFollow = -1 // the flag's 0 is "every event"
	}
	cfg := relay.Config{
		Listen: f.listen, AdminListen: f.adminListen, TLSCert: f.tlsCert, TLSKey: f.tlsKey, DataDir: f.data, QueueURL: f.queueURL, WoopraURL: f.woopraURL, DiskBudget: budget, Workers: f.workers, WorkersMin: f.workersMin,
		WoopraTimeout: f.woopraTimeout, RetryWindow: f.retryWindow, RetryMin: f.retryMin, RetryMax: f.retryMax,
		DrainTimeout: f.drainTimeout, AdminToken: f.adminToken, Logger: log, DebuggerEvents: dbgEvents, DebuggerFollow: dbgFollow,
		DeadLetterRetention: f.deadLetterRetention, DebuggerMaxAge: f.debuggerMaxAge,
	}
	if f.config != "" {
		if cfg.Sources, err = server.LoadConfig(f.config); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
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
	fs := newFlagSet("serve", serveUsage)
	var f serveFlags
	f.register(fs)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
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
	cfg, err := f.relayConfig(log)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay serve: %v\n", err)
		return 2
	}
	if f.watch && f.config == "" {
		fmt.Fprintf(stderr, "woorelay serve: --watch needs --config FILE: in development mode there are no files to watch\n")
		return 2
	}
	ctx, stop := serveContext()
	defer stop()
	if err := serve(ctx, cfg, stdout, reloads{watch: f.watch, debounce: f.watchDebounce}); err != nil {
		fmt.Fprintf(stderr, "woorelay serve: %v\n", err)
		if relay.IsConfigError(err) {
			return 2
		}
		return 1
	}
	return 0
}

// reloads says what reloads the configuration besides SIGHUP and POST /admin/reload.
type reloads struct {
	watch    bool          // the files changing (--watch)
	debounce time.Duration // --watch-debounce
}

// serve runs a relay until ctx ends (or its server stops on its own), then drains it. SIGHUP
// reloads the configuration from its files, and so do their changes with rl.watch.
func serve(ctx context.Context, cfg relay.Config, stdout io.Writer, rl reloads) error {
	r, err := relay.New(cfg)
	if err != nil {
		return err
	}
	stopReloads := r.ReloadOnSignals(syscall.SIGHUP)
	if rl.watch {
		stopWatch, err := r.Watch(rl.debounce)
		if err != nil {
			stopReloads()
			r.Stop(cfg.DrainTimeout)
			return fmt.Errorf("--watch: %v", err)
		}
		stopSignals := stopReloads
		stopReloads = func() { stopWatch(); stopSignals() }
	}
	if err := r.Start(); err != nil {
		stopReloads()
		r.Stop(cfg.DrainTimeout)
		return err
	}
	fmt.Fprintf(stdout, "woorelay: listening on %s\n", r.URL())
	fmt.Fprintf(stdout, "woorelay: admin API on %s\n", r.AdminURL())
	select {
	case <-ctx.Done():
	case <-r.Done():
	}
	stopReloads() // no reload while draining
	runErr := r.Err()
	if err := r.Stop(cfg.DrainTimeout); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}
