package destination

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpproxy"

	"github.com/woorelay/woorelay/queue"
)

// Class is what a delivery attempt means for the event.
type Class uint8

const (
	// Done means the destination accepted the request (2xx).
	Done Class = iota
	// Retry means the attempt failed in a way that may pass later: 408, 429, 5xx other than
	// 501, a timeout or a network error.
	Retry
	// Dead means the request will not succeed as it is (any other status, or a request that
	// cannot be built); it goes to the dead-letter store at once.
	Dead
)

// String names the class as metrics and logs print it.
func (c Class) String() string {
	switch c {
	case Done:
		return "done"
	case Retry:
		return "retry"
	case Dead:
		return "dead"
	}
	return "unknown"
}

// Attempt is the outcome of one request to the destination.
type Attempt struct {
	Class      Class         // Done, Retry or Dead
	Status     int           // HTTP status of the final response; 0 when no response arrived
	RetryAfter time.Duration // from the Retry-After header (seconds or HTTP-date); 0 when absent
	Body       string        // the start of the response body (at most ClientOptions.MaxBody bytes)
	Err        error         // transport error, timeout, or why a 2xx was not taken as success
	Duration   time.Duration // how long the attempt took
}

// Reason says in one line why the attempt did not succeed, as dead letters keep it.
func (a Attempt) Reason() string {
	switch {
	case a.Err != nil && a.Status != 0:
		return fmt.Sprintf("woopra answered %d %s: %v", a.Status, http.StatusText(a.Status), a.Err)
	case a.Err != nil:
		return a.Err.Error()
	case a.Status != 0:
		return fmt.Sprintf("woopra answered %d %s", a.Status, http.StatusText(a.Status))
	}
	return "no response"
}

// Response is what a dead letter keeps of the answer: the body, else the error text.
func (a Attempt) Response() string {
	if a.Body != "" {
		return a.Body
	}
	if a.Err != nil {
		return a.Err.Error()
	}
	return ""
}

// ClientOptions configures a Client. The zero value gives the defaults.
type ClientOptions struct {
	// Timeout bounds one attempt, from waiting for a connection to the end of the body,
	// redirects included (default 10 s).
	Timeout time.Duration
	// Conns is the number of connections kept to the destination, sized for the number of
	// dispatcher workers (default 32): at most this many are open at once, and an attempt
	// waits (within Timeout) for one to be free.
	Conns int
	// MaxRedirects is how many redirects are followed (default 5); a further 3xx is returned
	// as it is and classified Dead.
	MaxRedirects int
	// MaxBody is how much of a response body Attempt keeps (default 2048 bytes). Bodies up to
	// 64 KiB are read whole so the connection can be reused; a longer one closes it.
	MaxBody int
	// UserAgent is sent when a request carries no User-Agent header. Empty (the default)
	// sends no User-Agent at all rather than the HTTP library's, which Woopra would record as
	// the browser.
	UserAgent string
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Conns <= 0 {
		o.Conns = 32
	}
	if o.MaxRedirects <= 0 {
		o.MaxRedirects = 5
	}
	if o.MaxBody <= 0 {
		o.MaxBody = 2048
	}
	return o
}

// drainLimit is the longest response body read whole; past it the connection is closed.
const drainLimit = 64 << 10

// Client sends queue.Requests to the destination and classifies the answers. It is safe for
// concurrent use; one Client serves every dispatcher worker.
//
// It sends with fasthttp's client, HTTP/1.1 over kept-alive connections (TLS for https, the
// proxy of HTTPS_PROXY, HTTP_PROXY and NO_PROXY as net/http reads them). An attempt runs on
// the caller's goroutine with pooled buffers, where net/http's transport hands each request
// between two goroutines of its connection: about 40 % less CPU per request, and sending is
// most of what the relay spends delivering.
type Client struct {
	opts    ClientOptions
	fc      *fasthttp.Client
	conns   connSet
	watched sync.Map // context.Context → *ctxWatch, for the contexts of attempts under way
}

// NewClient returns a Client with connections kept alive to the destination host.
func NewClient(opts ClientOptions) *Client {
	opts = opts.withDefaults()
	c := &Client{opts: opts}
	d := fasthttpproxy.Dialer{Timeout: 5 * time.Second, ConnectTimeout: 5 * time.Second, DialDualStack: true}
	dial, err := d.GetDialFunc(true)
	if err != nil {
		// A proxy setting the dialer cannot use: every dial reports it, so each attempt is
		// retried with the reason until the setting is fixed.
		dial = func(string) (net.Conn, error) {
			return nil, fmt.Errorf("the proxy environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) cannot be used: %v", err)
		}
	}
	c.fc = &fasthttp.Client{
		Dial:                      c.conns.tracking(dial),
		DialDualStack:             true,
		TLSConfig:                 &tls.Config{MinVersion: tls.VersionTLS12},
		MaxConnsPerHost:           opts.Conns,
		MaxConnWaitTimeout:        opts.Timeout,
		MaxIdleConnDuration:       90 * time.Second,
		MaxResponseBodySize:       drainLimit,
		NoDefaultUserAgentHeader:  true,
		DisablePathNormalizing:    true, // the mapping's URL is sent byte for byte
		MaxIdemponentCallAttempts: 1,    // send retries a stale connection itself (it knows ctx)
	}
	return c
}

// staleConnection reports whether a round trip failed because a kept-alive connection turned
// out closed before any answer: a GET or HEAD is sent again once at once, as net/http's
// transport does; every other failure is the dispatcher's to retry, with backoff.
func staleConnection(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF)
}

// CloseIdleConnections closes the kept-alive connections (at shutdown).
func (c *Client) CloseIdleConnections() { c.fc.CloseIdleConnections() }

// Send makes one attempt at r and classifies it. It never returns without a Class: a
// request that cannot be built is Dead, a cancelled ctx gives Retry with ctx's error.
//
// Cancelling ctx while attempts under it are under way closes the Client's open connections,
// so those attempts end at once (Retry): the dispatcher cancels all its attempts together
// when a shutdown's drain times out, and an attempt cut short by another's cancellation is
// retried like any broken connection.
func (c *Client) Send(ctx context.Context, r queue.Request) Attempt {
	start := time.Now()
	a := c.send(ctx, r)
	a.Duration = time.Since(start)
	return a
}

func (c *Client) send(ctx context.Context, r queue.Request) Attempt {
	method := r.Method
	if method == "" {
		method = http.MethodGet
	}
	if !isToken(method) {
		return Attempt{Class: Dead, Err: fmt.Errorf("cannot build a %q request: not an HTTP method; fix the mapping, then replay", method)}
	}
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		if err == nil {
			err = errors.New("not an absolute http(s) URL")
		}
		return Attempt{Class: Dead, Err: fmt.Errorf("bad request URL %q: %v; fix the mapping's base_url, then replay", r.URL, err)}
	}
	for _, h := range r.Headers {
		if why := headerProblem(h); why != "" {
			return Attempt{Class: Dead, Err: fmt.Errorf("cannot send header %q: %s; fix the mapping, then replay", h.Name, why)}
		}
	}
	w := c.watch(ctx)
	if w != nil {
		w.inflight.Add(1)
		defer w.inflight.Add(-1)
	}
	if err := ctx.Err(); err != nil {
		return Attempt{Class: Retry, Err: fmt.Errorf("attempt abandoned: %w", err)}
	}
	deadline := time.Now().Add(c.opts.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}

	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(r.URL)
	hasUA := false
	for _, h := range r.Headers {
		req.Header.Add(h.Name, h.Value)
		hasUA = hasUA || strings.EqualFold(h.Name, "User-Agent")
	}
	if !hasUA && c.opts.UserAgent != "" {
		req.Header.SetUserAgent(c.opts.UserAgent)
	}

	idempotent := method == http.MethodGet || method == http.MethodHead
	hops := 0
	for stale := false; ; hops++ {
		err := c.fc.DoDeadline(req, resp, deadline)
		if err != nil && !stale && idempotent && staleConnection(err) && ctx.Err() == nil {
			stale, hops = true, hops-1
			resp.Reset()
			continue
		}
		if err != nil && !(errors.Is(err, fasthttp.ErrBodyTooLarge) && resp.StatusCode() != 0) {
			return Attempt{Class: Retry, Err: c.transportError(ctx, err)}
		}
		loc := resp.Header.Peek(fasthttp.HeaderLocation)
		if !isRedirect(resp.StatusCode()) || len(loc) == 0 || hops >= c.opts.MaxRedirects {
			break
		}
		if resp.StatusCode() == http.StatusSeeOther {
			req.Header.SetMethod(http.MethodGet)
		}
		req.URI().UpdateBytes(loc)
		resp.Reset()
	}
	body := resp.Body()
	a := Attempt{Status: resp.StatusCode(), Body: string(body[:min(len(body), c.opts.MaxBody)])}
	a.Class = classify(a.Status)
	switch {
	case isRedirect(a.Status) && hops >= c.opts.MaxRedirects && hops > 0:
		a.Err = fmt.Errorf("redirect loop: still redirected after %d redirects, the last from %s to %s; check --woopra-url (and any proxy in between), then replay",
			hops, req.URI().String(), resp.Header.Peek(fasthttp.HeaderLocation))
	case a.Status == http.StatusUnauthorized && hasHeader(r.Headers, "Authorization"):
		a.Err = errors.New("woopra refused the tracking credentials (secure tracking): check the user and password in the source's woopra_auth_env variable, then replay")
	case a.Status == http.StatusUnauthorized:
		a.Err = errors.New("the project has secure tracking enabled and the request carried no credentials: set woopra_auth_env on the source (a variable holding user:password for HTTP Basic), then replay")
	case a.Status == http.StatusPaymentRequired:
		a.Err = errors.New("over quota: woopra logged the event but runs no triggers until the plan is upgraded")
	}
	if a.Class == Retry {
		a.RetryAfter = parseRetryAfter(string(resp.Header.Peek(fasthttp.HeaderRetryAfter)), time.Now())
	}
	if a.Class == Done && notRegistered(a.Body) {
		a.Class = Dead
		a.Err = errors.New("woopra says the project is not registered; fix the project setting, then replay")
	}
	return a
}

// transportError words a failed round trip, naming timeouts as such.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("attempt abandoned: %w", ctx.Err())
	}
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("timed out after %s (will retry): %w", c.opts.Timeout, err)
	}
	return err
}

// ctxWatch is what the Client knows of one context with attempts under way.
type ctxWatch struct{ inflight atomic.Int64 }

// watch returns ctx's watch, registering ctx the first time (nil for a context that is never
// cancelled). When ctx is cancelled with attempts under way, their connections are closed.
func (c *Client) watch(ctx context.Context) *ctxWatch {
	if ctx.Done() == nil {
		return nil
	}
	if v, ok := c.watched.Load(ctx); ok {
		return v.(*ctxWatch)
	}
	w := &ctxWatch{}
	if v, loaded := c.watched.LoadOrStore(ctx, w); loaded {
		return v.(*ctxWatch)
	}
	context.AfterFunc(ctx, func() {
		c.watched.Delete(ctx)
		if w.inflight.Load() > 0 {
			c.conns.closeAll()
		}
	})
	return w
}

// connSet holds the Client's open connections.
type connSet struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

// tracking wraps dial so that every connection it opens is in the set until closed.
func (s *connSet) tracking(dial fasthttp.DialFunc) fasthttp.DialFunc {
	return func(addr string) (net.Conn, error) {
		conn, err := dial(addr)
		if err != nil {
			return nil, err
		}
		t := &trackedConn{Conn: conn, set: s}
		s.mu.Lock()
		if s.conns == nil {
			s.conns = map[*trackedConn]struct{}{}
		}
		s.conns[t] = struct{}{}
		s.mu.Unlock()
		return t, nil
	}
}

// closeAll closes every open connection; the attempts using them fail at once.
func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := slices.Collect(maps.Keys(s.conns))
	s.mu.Unlock()
	for _, t := range conns {
		_ = t.Close()
	}
}

// trackedConn is a connection of a connSet; closing it takes it out.
type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

// Close closes the connection and removes it from its set.
func (t *trackedConn) Close() error {
	err := net.ErrClosed
	t.once.Do(func() {
		t.set.mu.Lock()
		delete(t.set.conns, t)
		t.set.mu.Unlock()
		err = t.Conn.Close()
	})
	return err
}

// hasHeader reports whether hs has a header named name (any case).
func hasHeader(hs []queue.Header, name string) bool {
	for _, h := range hs {
		if strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

// isRedirect reports whether a status is a redirect that names where to go.
func isRedirect(status int) bool {
	switch status {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		return true
	}
	return false
}

// isToken reports whether v is an HTTP token (RFC 9110 §5.6.2), as methods and header names are.
func isToken(v string) bool {
	return v != "" && strings.IndexFunc(v, func(r rune) bool { return !isTokenChar(r) }) < 0
}

// headerProblem says why a header cannot be sent as it is, naming what is wrong: a name
// that is not a token, or a value holding CR or LF (which would split the request) or NUL;
// "" when it can be sent.
func headerProblem(h queue.Header) string {
	switch {
	case !isToken(h.Name):
		return "its name is not an HTTP token"
	case strings.ContainsAny(h.Value, "\r\n"):
		return "its value holds a line break (CR or LF)"
	case strings.IndexByte(h.Value, 0) >= 0:
		return "its value holds a NUL byte"
	}
	return ""
}

func isTokenChar(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return r < 0x80 && strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

// classify maps an HTTP status to a Class: 2xx and 402 done; 408, 429 and 5xx except 501
// retried; everything else (other 4xx, 501, 1xx, and a 3xx that was not followed) dead. A
// 402 Over Quota is done because Woopra logs the data (only its triggers do not run):
// retrying or replaying it would record the event twice.
func classify(status int) Class {
	switch {
	case status >= 200 && status < 300, status == http.StatusPaymentRequired:
		return Done
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return Retry
	case status >= 500 && status < 600 && status != http.StatusNotImplemented:
		return Retry
	}
	return Dead
}

// parseRetryAfter reads a Retry-After value: delta seconds or an HTTP-date. Anything else,
// and a date in the past, gives 0.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(24*time.Hour/time.Second) {
			n = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// notRegistered recognises Woopra's answer to a project it does not know: a 200 whose body
// is a JavaScript comment "Host <project> not registered!". Taking it as success would drop
// every event silently.
func notRegistered(body string) bool {
	return strings.Contains(body, "Host ") && strings.Contains(body, " not registered!")
}
