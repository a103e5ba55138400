package importer

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// HTTPSink posts batches to a relay's /v1/import with a source's write key, and holds back
// while the relay's queue is long: a live event queued behind the import waits about MaxDelay
// at most. The sink measures how fast the relay delivers (from its backlog, read every 100 ms
// while it waits) and lets the queue hold that rate × MaxDelay events (at least
// MinBacklog, at most MaxBacklog).
type HTTPSink struct {
	// URL is the relay's ingest base URL (http://127.0.0.1:8080).
	URL string
	// WriteKey is the write key of the source whose preset maps the events.
	WriteKey string
	// MaxDelay is how long a live event may wait behind the import's events in the relay's
	// queue (woorelay_queue_backlog on its /metrics, live events included); 0: no throttle.
	MaxDelay time.Duration
	// MinBacklog is the queue the import may keep whatever the measured rate (default 2,000),
	// so that delivery never runs dry; MaxBacklog caps it (0: no cap).
	MinBacklog, MaxBacklog int64
	// RetryFor is how long a batch is retried while the relay refuses it for now (503, 429,
	// a network error) before the import stops (default 10 minutes).
	RetryFor time.Duration
	// Client is the HTTP client (default: one with keep-alive connections).
	Client *http.Client
	// ReadBacklog, when set, reads the relay's queue length instead of its /metrics: the
	// admin API's counters cost the relay less than a scrape (which also walks the queue's
	// index for the oldest event's age).
	ReadBacklog func(ctx context.Context) (int64, error)

	mu       sync.Mutex
	polled   time.Time
	backlog  int64   // last value read
	added    int64   // events acknowledged since then
	inFlight int64   // events sent and not yet acknowledged
	rate     float64 // events/s the relay delivers (moving average while it has work)
	peak     float64 // the most events/s it was seen to deliver
}

// UserAgent is what the importer's requests carry, so the relay's logs tell them apart.
const UserAgent = "woorelay-import/1"

func (s *HTTPSink) client() *http.Client {
	if s.Client != nil {
		return s.Client
	}
	return http.DefaultClient
}

// Send posts events as one batch, retrying refusals that say "later", and returns once the
// relay acknowledged them (stored and synced).
func (s *HTTPSink) Send(ctx context.Context, events [][]byte) error {
	if err := s.waitRoom(ctx, int64(len(events))); err != nil {
		return err
	}
	defer func() {
		s.mu.Lock()
		s.inFlight -= int64(len(events))
		s.mu.Unlock()
	}()
	n := 12
	for _, e := range events {
		n += len(e) + 1
	}
	body := make([]byte, 0, n)
	body = append(body, `{"batch":[`...)
	body = append(body, bytes.Join(events, []byte{','})...)
	body = append(body, "]}"...)
	retryFor := s.RetryFor
	if retryFor <= 0 {
		retryFor = 10 * time.Minute
	}
	deadline := time.Now().Add(retryFor)
	wait := 200 * time.Millisecond
	for {
		status, after, msg, err := s.post(ctx, body)
		if err == nil && status == http.StatusOK {
			s.mu.Lock()
			s.added += int64(len(events))
			s.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		retry := err != nil || status == http.StatusTooManyRequests || status >= 500
		if !retry {
			hint := ""
			if status == http.StatusUnauthorized {
				hint = " (the write key is not one of the relay's sources: give --write-key, or --config and --source naming the relay's sources file)"
			}
			return fmt.Errorf("the relay answered %d to a batch of %d events: %s%s", status, len(events), msg, hint)
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("the relay at %s did not take a batch for %v: %w", s.URL, retryFor, err)
			}
			return fmt.Errorf("the relay at %s refused a batch for %v: %d %s", s.URL, retryFor, status, msg)
		}
		if after > 0 {
			wait = after
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// post sends one request and returns its status, Retry-After and the start of its body.
func (s *HTTPSink) post(ctx context.Context, body []byte) (int, time.Duration, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(s.URL, "/")+"/v1/import", bytes.NewReader(body))
	if err != nil {
		return 0, 0, "", err
	}
	req.SetBasicAuth(s.WriteKey, "")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	resp, err := s.client().Do(req)
	if err != nil {
		return 0, 0, "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	var after time.Duration
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		after = time.Duration(secs) * time.Second
	}
	return resp.StatusCode, after, strings.TrimSpace(string(msg)), nil
}

// waitRoom waits until the relay's queue, with what this sink has added since it last looked
// and what is in flight, leaves room for n more events.
func (s *HTTPSink) waitRoom(ctx context.Context, n int64) error {
	for {
		s.mu.Lock()
		if s.MaxDelay <= 0 {
			s.inFlight += n
			s.mu.Unlock()
			return nil
		}
		if since := time.Since(s.polled); since >= s.pollInterval() {
			s.mu.Unlock()
			read := s.Backlog
			if s.ReadBacklog != nil {
				read = s.ReadBacklog
			}
			b, err := read(ctx)
			if err != nil {
				return err
			}
			s.mu.Lock()
			s.observe(b, since)
		}
		if q := s.backlog + s.added + s.inFlight; q+n <= s.allowed() || q == 0 {
			s.inFlight += n
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// How often the sink reads the relay's queue length while it waits for room: the admin API's
// counters are cheap; a /metrics scrape also walks the queue's index (the oldest event's
// age), so that is read less often. Between two readings the sink counts what it added.
const (
	pollEvery        = 100 * time.Millisecond
	pollEveryMetrics = time.Second
)

func (s *HTTPSink) pollInterval() time.Duration {
	if s.ReadBacklog != nil {
		return pollEvery
	}
	return pollEveryMetrics
}

// observe takes a new reading of the relay's backlog, since the last one. The delivery rate
// is learnt only from intervals in which the relay never ran out of work (the queue ended
// above a quarter of what is allowed): a relay that ran dry delivered what it was given, not
// what it can, and then the estimate grows by a quarter instead (to at most twice the most it
// was seen to deliver), so a starved relay is fed more until its queue no longer runs dry.
func (s *HTTPSink) observe(b int64, since time.Duration) {
	delivered := s.backlog + s.added - b
	if !s.polled.IsZero() && since < 4*s.pollInterval() && delivered >= 0 {
		inst := float64(delivered) / since.Seconds()
		s.peak = max(s.peak, inst)
		switch {
		case b < s.allowed()/4:
			s.rate = min(max(s.rate, inst)*1.25, 2*s.peak)
		case s.rate == 0:
			s.rate = inst
		default:
			s.rate = 0.7*s.rate + 0.3*inst
		}
	}
	s.backlog, s.added, s.polled = b, 0, time.Now()
}

// allowed is the queue the import may keep now.
func (s *HTTPSink) allowed() int64 {
	floor := s.MinBacklog
	if floor <= 0 {
		floor = 2000
	}
	a := max(floor, int64(s.rate*s.MaxDelay.Seconds()))
	if s.MaxBacklog > 0 {
		a = min(a, s.MaxBacklog)
	}
	return a
}

// DeliveryRate returns the relay's delivery rate as the sink measured it (events/s; 0: not yet).
func (s *HTTPSink) DeliveryRate() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rate
}

// Backlog reads woorelay_queue_backlog from the relay's /metrics (ReadBacklog's default).
func (s *HTTPSink) Backlog(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(s.URL, "/")+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client().Do(req)
	if err != nil {
		return 0, fmt.Errorf("reading the relay's backlog: %w (is woorelay serve running there? --max-delay 0 imports without reading it)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading the relay's backlog: GET /metrics answered %s (--max-delay 0 imports without the throttle)", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "woorelay_queue_backlog "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				return 0, fmt.Errorf("reading the relay's backlog: %q: %w", v, err)
			}
			return int64(f), nil
		}
	}
	return 0, fmt.Errorf("reading the relay's backlog: /metrics has no woorelay_queue_backlog (--max-delay 0 imports without the throttle)")
}
