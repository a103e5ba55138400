// Package server is woorelay's HTTP ingest data plane: it accepts what the Segment and
// RudderStack SDKs send (same paths, auth forms, limits and status codes as the vendors'
// servers, so each SDK's retry logic does the right thing), normalises every event at the edge
// (batch context, messageId, receivedAt, clock-skew correction), and appends the events to a
// Store with their ordering keys; delivery maps them later with Source.Map. It answers 200 only once the Store has accepted
// the entries, so a durable Store makes a 200 mean "stored".
package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/privacy"
	"github.com/woorelay/woorelay/queue"
)

// Store receives the entries (normalised, unmapped events) of each accepted request. Append must return only once
// the entries are stored as promised (durably, for the on-disk queue): the server answers 200
// only after Append returns nil. queue.ErrFull and queue.ErrClosed become 503 with
// Retry-After; any other error becomes 500. Append must not keep the entries slice after it
// returns (copy the entries if needed); the entries' Event bytes and Requests it may keep.
// Every queue.Queue is a Store.
type Store interface {
	Append(ctx context.Context, entries []queue.Entry) (queue.AppendResult, error)
}

// Source is one compiled source: a write key and the program that maps its events (at
// delivery, through Map).
type Source struct {
	// Name labels the source in metrics, logs and queue entries.
	Name string
	// WriteKey is the key its SDKs send. Ignored when AnyKey is set.
	WriteKey string
	// AnyKey accepts every write key (the development source). At most one source may set it,
	// and it must be the only source.
	AnyKey bool
	// Program maps the source's events.
	Program *mapping.Program
	// AllowedOrigins, when not empty, restricts browser requests carrying this source's key to
	// these origins (in addition to the server-wide list).
	AllowedOrigins []string
	// Unordered stores the source's events without their visitor key, so delivery sends one
	// visitor's events side by side (the sources file's order: none).
	Unordered bool
	// WoopraAuth is "user:password" for HTTP Basic on the tracking requests, or "" (the
	// sources file's woopra_auth_env; delivery adds it, ingest does not use it).
	WoopraAuth string
	// Minimiser changes each event before it is stored (the sources file's privacy:); nil
	// changes nothing.
	Minimiser *privacy.Minimiser

	digest [sha256.Size]byte
}

// Limits bound what one request may carry. Zero fields take the defaults.
type Limits struct {
	// MaxEventBytes caps one event: the body of a single-event route, or one batch element
	// (default 32 KB, Segment's limit).
	MaxEventBytes int
	// MaxRequestBytes caps the body of a batch route, as sent (default 500 KB, Segment's limit).
	MaxRequestBytes int
	// MaxDecompressedBytes caps a gzip body once decompressed (default MaxRequestBytes; a
	// single-event route is held to MaxEventBytes). It stops decompression bombs.
	MaxDecompressedBytes int
	// MaxBatchEvents caps the events of one batch (default 2,500, Segment's limit).
	MaxBatchEvents int
	// MaxDepth caps JSON nesting, counted from the event object (default 64).
	MaxDepth int
}

// Default limits.
const (
	DefaultMaxEventBytes   = 32 * 1024
	DefaultMaxRequestBytes = 500 * 1024
	DefaultMaxBatchEvents  = 2500
	DefaultMaxDepth        = 64
	DefaultMaxInFlight     = 1024
	// DefaultMaxUnauthenticated caps the requests whose body is read before their write key
	// is known (no key in a header): they cannot take the slots of authenticated requests.
	DefaultMaxUnauthenticated = 256
	DefaultRetryAfter         = 5 * time.Second
	// DefaultBodyTimeout bounds how long a request body may take to arrive.
	DefaultBodyTimeout = 10 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.MaxEventBytes <= 0 {
		l.MaxEventBytes = DefaultMaxEventBytes
	}
	if l.MaxRequestBytes <= 0 {
		l.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if l.MaxDecompressedBytes <= 0 {
		l.MaxDecompressedBytes = l.MaxRequestBytes
	}
	if l.MaxBatchEvents <= 0 {
		l.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Timeouts protect the server against slow clients. Zero fields take the defaults.
type Timeouts struct {
	ReadHeader time.Duration // default 5 s
	Read       time.Duration // whole request including the body; default 30 s
	// Body bounds the time from the end of the headers to the end of the body (default 10 s,
	// at most Read): a client that sends its body slower is answered 503 body_timeout with
	// Retry-After (a status every SDK retries) and gives its in-flight slot back.
	Body           time.Duration
	Write          time.Duration // default 30 s; must exceed the Store's worst Append
	Idle           time.Duration // keep-alive; default 120 s
	MaxHeaderBytes int           // default 64 KB
}

func (t Timeouts) withDefaults() Timeouts {
	if t.ReadHeader <= 0 {
		t.ReadHeader = 5 * time.Second
	}
	if t.Read <= 0 {
		t.Read = 30 * time.Second
	}
	if t.Body <= 0 {
		t.Body = DefaultBodyTimeout
	}
	t.Body = min(t.Body, t.Read)
	if t.Write <= 0 {
		t.Write = 30 * time.Second
	}
	if t.Idle <= 0 {
		t.Idle = 120 * time.Second
	}
	if t.MaxHeaderBytes <= 0 {
		t.MaxHeaderBytes = 64 * 1024
	}
	return t
}

// Options configure New.
type Options struct {
	// Sources are the compiled sources (Config.Compile). Required.
	Sources []*Source
	// Store receives the entries. Required.
	Store Store
	// Limits bound requests; zero fields take the defaults.
	Limits Limits
	// AllowedOrigins is the CORS allow list; empty or "*" allows any origin (answered with
	// Access-Control-Allow-Origin: *, never with credentials). Listed origins are reflected
	// with Access-Control-Allow-Credentials: true.
	AllowedOrigins []string
	// PublicURL is the server's public base URL (https://ingest.example.com). The Segment
	// settings endpoint points apiHost at it; empty means derive it from each request's
	// Host and X-Forwarded-Proto.
	PublicURL string
	// TrustedProxies are the reverse proxies and load balancers whose forwarding headers are
	// believed: a request from one of them is attributed to the right-most address of its
	// X-Forwarded-For (else Forwarded) header that is not itself trusted. Empty: every
	// request is attributed to its TCP peer and forwarding headers are ignored. The address
	// becomes the event's context.ip when the event has none.
	TrustedProxies []netip.Prefix
	// MaxInFlight caps concurrent authenticated ingest requests; beyond it the server answers
	// 503 overloaded with Retry-After (default 1,024). A request takes its slot once its write
	// key is known good: right after the headers when the key is in one, after the body
	// otherwise.
	MaxInFlight int
	// MaxUnauthenticated caps the requests whose body is being read before their write key
	// is known (the key in the body, or none); beyond it they are answered 503 overloaded
	// (default 256). These never hold a MaxInFlight slot while their body arrives.
	MaxUnauthenticated int
	// RetryAfter is what 503 answers tell clients to wait (default 5 s).
	RetryAfter time.Duration
	// Timeouts are the HTTP server's timeouts, used by Serve.
	Timeouts Timeouts
	// Registerer receives the server's metrics; nil means a new registry. Gatherer is what
	// /metrics serves; nil means the Registerer when it is a *prometheus.Registry, else
	// prometheus.DefaultGatherer.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer
	// Logger logs start-up, refused requests (Debug) and server errors; nil discards.
	Logger *slog.Logger
	// Mount, when not nil, is called with the Echo instance after the server's own routes are
	// added, to mount more. Those routes bypass the in-flight limit and are as public as
	// ingest: the relay mounts only not-found pointers here and serves its admin API on a
	// listener of its own.
	Mount func(*echo.Echo)
	// Now is the clock (default time.Now); tests freeze it.
	Now func() time.Time
	// NewMessageID makes the messageId of events that have none (default: a random UUID).
	NewMessageID func() string
	// Suppressions, when not nil, names the persons whose events are answered 200 and
	// counted filtered without being stored (see protect).
	Suppressions Suppressions
}

// Server is the ingest HTTP server. Create it with New.
type Server struct {
	opts     Options
	limits   Limits
	keys     atomic.Pointer[sourceSet]
	echo     *echo.Echo
	store    Store
	log      *slog.Logger
	now      func() time.Time
	newID    func() string
	metrics  *metrics
	sem      chan struct{} // slots of authenticated requests
	anon     chan struct{} // slots of requests read before their key is known
	timeouts Timeouts
	retryHdr string
	ready    atomic.Bool
	draining atomic.Bool
	refusing atomic.Pointer[string] // why the store refuses writes, while it does (SetRefusing)
	pool     sync.Pool

	mu   sync.Mutex
	http *http.Server
}

// New builds a server. It logs a loud warning when a source accepts any write key.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("server: Options.Store is nil; give the queue (or another Store) the server appends to")
	}
	s := &Server{opts: opts, limits: opts.Limits.withDefaults(), store: opts.Store, log: opts.Logger, now: opts.Now, newID: opts.NewMessageID}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.newID == nil {
		s.newID = uuid.NewString
	}
	set, err := newSourceSet(opts.Sources, opts.AllowedOrigins, opts.PublicURL, opts.TrustedProxies, s.log)
	if err != nil {
		return nil, err
	}
	s.keys.Store(set)
	inFlight := opts.MaxInFlight
	if inFlight <= 0 {
		inFlight = DefaultMaxInFlight
	}
	s.sem = make(chan struct{}, inFlight)
	anon := opts.MaxUnauthenticated
	if anon <= 0 {
		anon = DefaultMaxUnauthenticated
	}
	s.anon = make(chan struct{}, anon)
	s.timeouts = opts.Timeouts.withDefaults()
	ra := opts.RetryAfter
	if ra <= 0 {
		ra = DefaultRetryAfter
	}
	s.retryHdr = fmt.Sprint(int((ra + time.Second - 1) / time.Second))
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	gat := opts.Gatherer
	if gat == nil {
		if r, ok := reg.(*prometheus.Registry); ok {
			gat = r
		} else {
			gat = prometheus.DefaultGatherer
		}
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	if err := reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "woorelay", Name: "ready",
		Help: "1 while /readyz answers 200; 0 while the relay is starting, draining, its delivery stopped or its queue refuses writes.",
	}, func() float64 {
		if s.ready.Load() && !s.draining.Load() && s.refusing.Load() == nil {
			return 1
		}
		return 0
	})); err != nil {
		return nil, err
	}
	s.metrics = m
	s.pool.New = func() any { return new(work) }
	s.ready.Store(true)
	s.echo = s.routes(gat)
	if opts.Mount != nil {
		opts.Mount(s.echo)
	}
	return s, nil
}

// sourceSet is what a reload may change: the sources with their write-key digests, the CORS
// policy they imply, the public URL and the trusted proxies. The server reads it through one atomic pointer, so a
// request sees either the old set or the new one, never a mix.
type sourceSet struct {
	sources   []*Source
	anyKey    *Source
	cors      corsPolicy
	publicURL string
	trusted   []netip.Prefix
}

// newSourceSet checks the sources and computes their digests. It logs a loud warning when a
// source accepts any write key.
func newSourceSet(sources []*Source, allowedOrigins []string, publicURL string, trusted []netip.Prefix, log *slog.Logger) (*sourceSet, error) {
	if len(sources) == 0 {
		return nil, errors.New("server: no sources; configure at least one write key (or use the development configuration)")
	}
	set := &sourceSet{sources: sources, publicURL: publicURL, trusted: append([]netip.Prefix(nil), trusted...)}
	names := map[string]bool{}
	for _, src := range sources {
		switch {
		case src.Program == nil:
			return nil, fmt.Errorf("server: source %q has no program; build sources with Config.Compile", src.Name)
		case src.Name == "":
			return nil, errors.New("server: a source has no name")
		case names[src.Name]:
			return nil, fmt.Errorf("server: two sources are named %q; names must be unique", src.Name)
		case src.AnyKey && len(sources) > 1:
			return nil, errors.New("server: a source that accepts any write key must be the only source")
		case !src.AnyKey && src.WriteKey == "":
			return nil, fmt.Errorf("server: source %q has an empty write key", src.Name)
		}
		names[src.Name] = true
		src.digest = sha256.Sum256([]byte(src.WriteKey))
		if src.AnyKey {
			set.anyKey = src
			log.Warn("DEVELOPMENT MODE: accepting events with ANY write key for source " + src.Name + "; give a configuration file (--config) to accept only configured keys")
		}
	}
	set.cors = newCORS(allowedOrigins, sources)
	return set, nil
}

// SetSources replaces the sources, the CORS allow list, the public URL and the trusted
// proxies at once (a reload): the next request is authenticated against the new write keys.
// It checks them as New does and keeps the running set when they are wrong.
func (s *Server) SetSources(sources []*Source, allowedOrigins []string, publicURL string, trustedProxies []netip.Prefix) error {
	set, err := newSourceSet(sources, allowedOrigins, publicURL, trustedProxies, s.log)
	if err != nil {
		return err
	}
	s.keys.Store(set)
	return nil
}

// lookup finds the source of a write key, comparing SHA-256 digests in constant time so
// neither the key's length nor its prefix leaks through timing.
func (s *Server) lookup(key string) *Source {
	if key == "" {
		return nil
	}
	set := s.keys.Load()
	if set.anyKey != nil {
		return set.anyKey
	}
	d := sha256.Sum256([]byte(key))
	var found *Source
	for _, src := range set.sources {
		if subtle.ConstantTimeCompare(d[:], src.digest[:]) == 1 {
			found = src
		}
	}
	return found
}

// Echo returns the Echo instance, to mount more routes (as Options.Mount does).
func (s *Server) Echo() *echo.Echo { return s.echo }

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.echo }

// SetReady sets what /readyz answers (ready from New until Shutdown).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// SetRefusing makes /readyz answer 503 store_full with why while the store refuses writes
// (a full disk or disk budget); "" ends it.
func (s *Server) SetRefusing(why string) {
	if why == "" {
		s.refusing.Store(nil)
	} else {
		s.refusing.Store(&why)
	}
}

// Serve serves HTTP on l with the configured timeouts until Shutdown; it returns nil after a
// Shutdown and the listener's error otherwise.
func (s *Server) Serve(l net.Listener) error {
	t := s.timeouts
	srv := &http.Server{
		Handler:           s.echo,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.draining.Load() {
		s.mu.Unlock()
		return nil
	}
	s.http = srv
	s.mu.Unlock()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections and waits (until ctx ends) for in-flight requests to
// finish; meanwhile /readyz and every new ingest request answer 503 with Retry-After.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	s.draining.Store(true)
	s.mu.Lock()
	srv := s.http
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

// apiHost returns the host-and-path (no scheme) and the protocol browser SDKs should send to.
func (s *Server) apiHost(r *http.Request) (host, protocol string) {
	if u := strings.TrimSuffix(s.keys.Load().publicURL, "/"); u != "" {
		proto, rest, ok := strings.Cut(u, "://")
		if !ok {
			return u, "https"
		}
		return rest, proto
	}
	protocol = "http"
	if r.TLS != nil {
		protocol = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		protocol = p
	}
	host = r.Host
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		host, _, _ = strings.Cut(h, ",")
	}
	if !validHost(host) {
		host = "localhost"
	}
	return host, protocol
}

// validHost accepts host[:port] made of the characters hosts use, so a forged Host header
// cannot inject markup or another URL into the settings answer.
func validHost(h string) bool {
	if h == "" || len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_') {
			return false
		}
	}
	return true
}

// metricsHandler serves the gatherer.
func metricsHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
