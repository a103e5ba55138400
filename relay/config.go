package relay

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/woorelay/woorelay/debugger"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/server"
)

// Config is everything a relay is made from: what `woorelay serve`'s flags and its sources
// file become. Each setting is named after the serve flag that sets it; Defaults gives the
// flags' defaults, and zero values in a Config passed to New take them too.
type Config struct {
	// Sources are the write keys with their presets, settings and mapping folders, as
	// server.LoadConfig reads them from a sources file. nil is development mode: one source
	// accepts any write key with the default preset, and the relay says so loudly.
	Sources *server.Config
	// Listen is the ingest address (--listen, default ":8080"). It serves only the SDK
	// routes, /healthz, /readyz and /metrics.
	Listen string
	// AdminListen is the admin listener's address (--admin-listen): the admin API, the
	// sandbox emulator's records and whatever else is for operators only. Defaults gives
	// serve's "127.0.0.1:9090"; zero in a Config passed to New is "127.0.0.1:0", a free
	// loopback port (AdminURL says which), so relays embedded side by side do not collide.
	// An address that is not loopback needs AdminToken.
	AdminListen string
	// TLSCert and TLSKey, when set, are the PEM files of the ingest listener's certificate
	// (with its chain) and private key (--tls-cert, --tls-key): ingest is served over HTTPS,
	// and the files are read again when they change, without a restart. Both or neither.
	TLSCert, TLSKey string
	// DataDir is the disk queue's directory (--data, default "woorelay-data"); unused when
	// Queue is set.
	DataDir string
	// Queue, when set, is the queue backend to use instead of the disk queue in DataDir. The
	// relay owns it from New on: Stop (or a failed New) closes it.
	Queue queue.Queue
	// QueueURL, when set, puts the queue on NATS JetStream (queue/jetstream) instead of the
	// disk: the servers' URLs, comma separated (--queue nats://host:4222). The sources file's
	// queue: section gives the rest (stream, replicas, partitions, dedup window, credentials)
	// and its urls when QueueURL is empty. Unused when Queue is set.
	QueueURL string
	// WoopraURL, when set, is where every source delivers instead of its base_url (an
	// emulator, a proxy) (--woopra-url).
	WoopraURL string
	// DiskBudget is the disk the queue may use, in bytes; past it ingest answers 503
	// (--disk-budget, default 10 GB; negative: no limit).
	DiskBudget int64
	// Workers is the most requests to Woopra under way at once (--workers, default 1024):
	// the upper bound of the adaptive concurrency limit.
	Workers int
	// WorkersMin is the floor of the adaptive limit (--workers-min, default 4); equal to
	// Workers, it pins the limit there (no adaptation).
	WorkersMin int
	// WoopraTimeout is the time limit of one request to Woopra (--woopra-timeout, default 10 s).
	WoopraTimeout time.Duration
	// RetryWindow is how long a failing event is retried before it is dead-lettered
	// (--retry-window, default 4 h).
	RetryWindow time.Duration
	// RetryMin and RetryMax bound the exponential backoff (--retry-min, --retry-max,
	// defaults 1 s and 5 min).
	RetryMin, RetryMax time.Duration
	// DrainTimeout is what Stop's callers usually pass: how long requests in flight may take
	// on shutdown (--drain-timeout, default 20 s). Ingest's write timeout is at least it.
	DrainTimeout time.Duration
	// AdminToken, when set, is the bearer token the admin listener requires; without it the
	// admin listener answers loopback callers only, and must be bound to a loopback address
	// (--admin-token).
	AdminToken string
	// Logger receives the relay's messages; nil discards them.
	Logger *slog.Logger
	// Tap, when set, watches every event through ingest, mapping and delivery, beside the
	// debugger.
	Tap Tap
	// DebuggerEvents is how many of the latest events the debugger page (/debugger/ on the
	// admin listener) keeps (--debugger-events, default 1000; negative: no debugger, and ingest
	// and delivery run without its tap).
	DebuggerEvents int
	// DebuggerFollow is how many new events a second the debugger follows through ingest,
	// mapping and delivery (--debugger-follow, default 500; negative: every event); past it,
	// events are counted as not followed and cost the taps one lookup each.
	DebuggerFollow int
	// DeadLetterRetention is how long a dead letter is kept, from when it went dead
	// (--dead-letter-retention, default 30 days); older ones are removed and counted filtered.
	DeadLetterRetention time.Duration
	// DebuggerMaxAge is the age past which the debugger's ring drops an event
	// (--debugger-max-age, default 24 h).
	DebuggerMaxAge time.Duration
	// NoSync acknowledges before the disk sync. UNSAFE, for benchmarks only: an acknowledged
	// event is lost if the machine crashes.
	NoSync bool
}

// Defaults returns the configuration `woorelay serve` runs with when no flag is given.
func Defaults() Config {
	return Config{
		Listen:        ":8080",
		AdminListen:   "127.0.0.1:9090",
		DataDir:       "woorelay-data",
		DiskBudget:    10 << 30,
		Workers:       1024,
		WorkersMin:    4,
		WoopraTimeout: 10 * time.Second,
		RetryWindow:   4 * time.Hour,
		RetryMin:      time.Second,
		RetryMax:      5 * time.Minute,
		DrainTimeout:  20 * time.Second,

		DeadLetterRetention: DefaultDeadLetterRetention,
		DebuggerMaxAge:      DefaultDebuggerMaxAge,

		DebuggerEvents: debugger.DefaultEvents,
		DebuggerFollow: debugger.DefaultFollow,
	}
}

// withDefaults fills the zero settings with Defaults'.
func (c Config) withDefaults() Config {
	d := Defaults()
	if c.Listen == "" {
		c.Listen = d.Listen
	}
	if c.AdminListen == "" {
		c.AdminListen = "127.0.0.1:0"
	}
	if c.DataDir == "" {
		c.DataDir = d.DataDir
	}
	switch {
	case c.DiskBudget == 0:
		c.DiskBudget = d.DiskBudget
	case c.DiskBudget < 0:
		c.DiskBudget = 0 // the disk queue's "no limit"
	}
	for _, p := range []struct{ v, d *time.Duration }{
		{&c.WoopraTimeout, &d.WoopraTimeout}, {&c.RetryWindow, &d.RetryWindow}, {&c.RetryMin, &d.RetryMin},
		{&c.RetryMax, &d.RetryMax}, {&c.DrainTimeout, &d.DrainTimeout},
		{&c.DeadLetterRetention, &d.DeadLetterRetention}, {&c.DebuggerMaxAge, &d.DebuggerMaxAge},
	} {
		if *p.v == 0 {
			*p.v = *p.d
		}
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.WorkersMin == 0 {
		c.WorkersMin = min(d.WorkersMin, c.Workers)
	}
	if c.DebuggerEvents == 0 {
		c.DebuggerEvents = d.DebuggerEvents
	}
	if c.DebuggerFollow == 0 {
		c.DebuggerFollow = d.DebuggerFollow
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

// sourcesConfig is the sources to run: the configured ones, or the development source.
func (c Config) sourcesConfig() *server.Config {
	if c.Sources == nil {
		return server.DevConfig()
	}
	return c.Sources
}

// validate reports every setting out of range at once.
func (c Config) validate() error {
	var e ConfigError
	bad := func(setting, format string, args ...any) {
		e.Findings = append(e.Findings, Finding{Setting: setting, Message: fmt.Sprintf(format, args...)})
	}
	if c.Workers < 1 {
		bad("workers", "%d is not a number of workers; give at least 1", c.Workers)
	}
	if c.Workers >= 1 && (c.WorkersMin < 1 || c.WorkersMin > c.Workers) {
		bad("workers-min", "%d: give from 1 to --workers (%d); equal to --workers pins the concurrency there", c.WorkersMin, c.Workers)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"woopra-timeout", c.WoopraTimeout}, {"retry-window", c.RetryWindow}, {"retry-min", c.RetryMin}, {"retry-max", c.RetryMax}, {"drain-timeout", c.DrainTimeout},
		{"dead-letter-retention", c.DeadLetterRetention}, {"debugger-max-age", c.DebuggerMaxAge}} {
		if d.v < 0 {
			bad(d.name, "%s is negative; give a positive duration such as 10s or 5m", d.v)
		}
	}
	if c.RetryMin > c.RetryMax {
		bad("retry-min", "%s is more than --retry-max %s; the first backoff cannot exceed the largest", c.RetryMin, c.RetryMax)
	}
	if host, _, err := net.SplitHostPort(c.AdminListen); err != nil {
		bad("admin-listen", "%q is not host:port; write it like 127.0.0.1:9090", c.AdminListen)
	} else if !loopbackHost(host) && c.AdminToken == "" {
		bad("admin-listen", "%s is not a loopback address and no --admin-token is set, so anyone who can reach it could read dead letters (events with emails and IP addresses) and replay them; set --admin-token (or WOORELAY_ADMIN_TOKEN), or bind it to 127.0.0.1", c.AdminListen)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("tls-cert", "give both --tls-cert and --tls-key (the certificate and its private key), or neither for plain HTTP")
	}
	for _, u := range strings.Split(c.QueueURL, ",") {
		if c.QueueURL != "" && !strings.HasPrefix(u, "nats://") && !strings.HasPrefix(u, "tls://") {
			bad("queue", "%q is not a NATS URL; write it like nats://127.0.0.1:4222 (several: comma separated)", u)
		}
	}
	if c.Sources != nil && c.Sources.Queue != nil && len(c.Sources.Queue.URLs) == 0 && c.QueueURL == "" {
		bad("queue", "%s: the queue section has no urls and no --queue is given; list the NATS servers (urls: [nats://host:4222]) or pass --queue nats://host:4222", c.Sources.Queue.Where)
	}
	if c.WoopraURL != "" {
		if u, err := url.Parse(c.WoopraURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("woopra-url", "%q is not an http:// or https:// URL with a host; write it like http://127.0.0.1:8081", c.WoopraURL)
		}
	}
	if len(e.Findings) > 0 {
		return &e
	}
	return nil
}

// loopbackHost reports whether a listen address's host binds only the loopback interface
// ("" binds every interface).
func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Finding is one setting out of range.
type Finding struct {
	Setting string // the serve flag's name: "workers", "retry-min"
	Message string // what is wrong and what to do
}

// ConfigError is every problem New or Reload found in a configuration: settings out of range
// and sources that do not compile (Sources, usually mapping.Diagnostics, each with
// file:line:col). Nothing was started or changed.
type ConfigError struct {
	Findings []Finding
	Sources  error
}

// Error lists the findings, one a line: "--workers: ..." then the sources' diagnostics.
func (e *ConfigError) Error() string {
	var lines []string
	for _, f := range e.Findings {
		lines = append(lines, "--"+f.Setting+": "+f.Message)
	}
	if e.Sources != nil {
		lines = append(lines, e.Sources.Error())
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives the sources' error, so errors.As finds mapping.Diagnostics in it.
func (e *ConfigError) Unwrap() error { return e.Sources }

// IsConfigError reports whether err (from New or Reload) is about the configuration.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}
