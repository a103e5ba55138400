package destination

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

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
	// Timeout bounds one attempt, from dialling to the end of the body (default 10 s).
	Timeout time.Duration
	// Conns is the number of connections kept to the destination, sized for the number of
	// dispatcher workers (default 32): MaxConnsPerHost and MaxIdleConnsPerHost.
	Conns int
	// MaxRedirects is how many redirects are followed (default 5); a further 3xx is returned
	// as it is and classified Dead.
	MaxRedirects int
	// MaxBody is how much of a response body Attempt keeps (default 2048 bytes). The rest is
	// read and discarded (up to 64 KiB) so the connection can be reused.
	MaxBody int
	// UserAgent is sent when a request carries no User-Agent header. Empty (the default)
	// sends no User-Agent at all rather than Go's, which Woopra would record as the browser.
	UserAgent string
	// Transport replaces the tuned transport (tests, proxies). Its connection limits are
	// then the caller's business.
	Transport http.RoundTripper
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

// drainLimit is how much of an unread body is discarded to keep a connection; beyond it the
// connection is closed instead.
const drainLimit = 64 << 10

// Client sends queue.Requests to the destination and classifies the answers. It is safe for
// concurrent use; one Client serves every dispatcher worker.
type Client struct {
	opts ClientOptions
	http *http.Client
}

// NewClient returns a Client with a keep-alive transport tuned for one destination host.
func NewClient(opts ClientOptions) *Client {
	opts = opts.withDefaults()
	rt := opts.Transport
	if rt == nil {
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		rt = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: opts.Timeout,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          opts.Conns,
			MaxIdleConnsPerHost:   opts.Conns,
			MaxConnsPerHost:       opts.Conns,
			IdleConnTimeout:       90 * time.Second,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		}
	}
	max := opts.MaxRedirects
	return &Client{opts: opts, http: &http.Client{
		Transport: rt,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > max {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}}
}

// CloseIdleConnections closes the kept-alive connections (at shutdown).
func (c *Client) CloseIdleConnections() { c.http.CloseIdleConnections() }

// Send makes one attempt at r and classifies it. It never returns without a Class: a
// request that cannot be built is Dead, a cancelled ctx gives Retry with ctx's error.
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
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		if err == nil {
			err = errors.New("not an absolute http(s) URL")
		}
		return Attempt{Class: Dead, Err: fmt.Errorf("bad request URL %q: %v; fix the mapping's base_url, then replay", r.URL, err)}
	}
	actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, method, r.URL, nil)
	if err != nil {
		return Attempt{Class: Dead, Err: fmt.Errorf("cannot build %s request: %v; fix the mapping, then replay", method, err)}
	}
	for _, h := range r.Headers {
		req.Header.Add(h.Name, h.Value)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		// An empty value tells net/http to send no User-Agent rather than its own.
		req.Header.Set("User-Agent", c.opts.UserAgent)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Attempt{Class: Retry, Err: c.transportError(ctx, actx, err)}
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, int64(c.opts.MaxBody)))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainLimit))
	resp.Body.Close()
	a := Attempt{Status: resp.StatusCode, Body: string(body)}
	a.Class = classify(resp.StatusCode)
	if a.Class == Retry {
		a.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	}
	if a.Class == Done && rerr != nil {
		// The status said yes but the body broke off: the request most likely counted, yet
		// nothing proves it. Retrying risks a duplicate, giving up risks a loss; at-least-once
		// means retrying.
		a.Class = Retry
		a.Err = fmt.Errorf("reading the response body: %w", c.transportError(ctx, actx, rerr))
	}
	if a.Class == Done && notRegistered(a.Body) {
		a.Class = Dead
		a.Err = errors.New("woopra says the project is not registered; fix the project setting, then replay")
	}
	return a
}

// transportError words a failed round trip, naming timeouts as such.
func (c *Client) transportError(parent, actx context.Context, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("attempt abandoned: %w", parent.Err())
	}
	var ne net.Error
	if errors.Is(actx.Err(), context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("timed out after %s (will retry): %w", c.opts.Timeout, err)
	}
	return err
}

// classify maps an HTTP status to a Class: 2xx done; 408, 429 and 5xx except 501 retried;
// everything else (other 4xx, 501, 1xx, and a 3xx that was not followed) dead.
func classify(status int) Class {
	switch {
	case status >= 200 && status < 300:
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
