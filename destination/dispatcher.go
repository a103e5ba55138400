package destination

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/queue"
)

// Sender makes one attempt at a request. *Client implements it; tests script it. Send must
// return promptly once ctx is cancelled.
type Sender interface {
	Send(ctx context.Context, r queue.Request) Attempt
}

// MapFunc turns a stored event into its requests at delivery time, for queues whose entries
// are stored unmapped (Entry.Requests empty). A non-empty filtered reason drops the event on
// purpose (Queue.Filter); an error dead-letters it with the error as the reason. It is
// called on worker goroutines, once per item loaded, and must be deterministic: after a
// restart Item.NextRequest indexes into the requests it returns again.
type MapFunc func(e queue.Entry) (reqs []queue.Request, filtered string, err error)

// Clock tells the time used for retry windows and next-attempt times. Waiting itself uses
// real timers for the durations computed against it, so a test clock may jump forward (to
// exhaust a retry window) but must otherwise move with real time.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// DispatcherOptions configures a Dispatcher. The zero value gives the defaults.
type DispatcherOptions struct {
	// Workers is the most attempts under way at once (default 32): the upper bound of the
	// adaptive limit, or the fixed number when MinWorkers is 0 or not below it. Size the
	// Client's Conns to match. Workers are goroutines started as the limit first needs them.
	Workers int
	// MinWorkers is the floor of the adaptive limit (see the package doc, "Concurrency").
	// 0, or a value not below Workers, pins the limit at Workers.
	MinWorkers int
	// Window is the most queue items held in memory (default 4096, or 4 × Workers when that
	// is more, so that the limit always finds lanes to serve). Items keep their requests but
	// not their event JSON, so memory is about Window × request size.
	Window int
	// PerVisitor is the most items of one visitor held in memory (default 64, at most
	// Window). A visitor with more pending waits for its lane to drain before more are read,
	// so one busy or failing visitor cannot fill the window.
	PerVisitor int
	// RetryWindow is how long an event is retried after its first failed attempt before it
	// is dead-lettered (default 4 h). It survives restarts (the queue keeps the first
	// failure's time).
	RetryWindow time.Duration
	// Backoff spaces the retries of one event (defaults: 1 s to 5 min, full jitter).
	Backoff Backoff
	// DrainTimeout bounds how long Run waits for attempts under way once its context ends
	// (default 30 s); past it they are abandoned and sent again after a restart.
	DrainTimeout time.Duration
	// Rescan is how often the queue is read even without an Appended signal (default 5 s);
	// a safety net only.
	Rescan time.Duration
	// Map, when set, maps entries stored without requests; without it such an entry is
	// dead-lettered ("nothing to send"), never counted as delivered.
	Map MapFunc
	// Drop, when set, is asked before every attempt (a retry too, when the entry holds its
	// requests and no longer its event): a reason filters the item with it instead (a
	// suppressed or erased person's event).
	Drop func(e *queue.Entry) string
	// Clock is for tests (default the system clock).
	Clock Clock
	// Logger receives dead letters, pauses and queue errors (default slog.Default()).
	Logger *slog.Logger
	// Registerer, when set, receives the dispatcher's metrics (woorelay_delivery_* and
	// woorelay_queue_backlog).
	Registerer prometheus.Registerer
}

func (o DispatcherOptions) withDefaults() DispatcherOptions {
	if o.Workers <= 0 {
		o.Workers = 32
	}
	if o.Window <= 0 {
		o.Window = max(4096, 4*o.Workers)
	}
	if o.MinWorkers <= 0 || o.MinWorkers > o.Workers {
		o.MinWorkers = o.Workers
	}
	if o.PerVisitor <= 0 {
		o.PerVisitor = 64
	}
	if o.PerVisitor > o.Window {
		o.PerVisitor = o.Window
	}
	if o.RetryWindow <= 0 {
		o.RetryWindow = 4 * time.Hour
	}
	o.Backoff = o.Backoff.withDefaults()
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Rescan <= 0 {
		o.Rescan = 5 * time.Second
	}
	if o.Clock == nil {
		o.Clock = systemClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Stats is a snapshot of the dispatcher's state.
type Stats struct {
	Loaded      int           // items held in memory (never more than Window)
	Lanes       int           // visitors with items in memory
	InFlight    int           // attempts under way
	Limit       int           // the concurrency limit now (MinWorkers to Workers)
	MinLimit    int           // MinWorkers
	MaxLimit    int           // Workers
	Baseline    time.Duration // the round trip the limit is judged against; 0 before any answer
	PausedUntil time.Time     // end of the current 429 pause; zero when not paused
	OverQuota   uint64        // requests answered 402 Over Quota (delivered; triggers not run)
}

// Dispatcher drains a queue.Queue into a Sender, keeping each visitor's events in order.
// Create it with NewDispatcher and start it once with Run.
type Dispatcher struct {
	q      queue.Queue
	s      Sender
	o      DispatcherOptions
	m      *metrics
	regErr error
	log    *slog.Logger
	ran    atomic.Bool
	lim    *limiter

	overQuota     atomic.Uint64
	overQuotaWarn atomic.Int64 // unix nanoseconds of the last over-quota warning

	statsMu sync.Mutex
	stats   Stats

	// Scheduler state: owned by the goroutine running Run.
	lanes      map[string]*lane
	ready      []*lane
	waiting    laneHeap
	reloads    []*lane
	loaded     int
	cursor     uint64 // every pending item with Seq <= cursor is loaded, or held back by an overflowed lane
	scanMore   bool   // the queue may hold items past cursor
	scanAfter  time.Time
	inflight   int
	workers    int    // worker goroutines started
	spawn      func() // starts one more worker (set by Run)
	pauseUntil time.Time
	fatal      error
}

// NewDispatcher returns a dispatcher that delivers q's items through s. Metrics are
// registered with opts.Registerer here; a registration error is returned by Run.
func NewDispatcher(q queue.Queue, s Sender, opts DispatcherOptions) *Dispatcher {
	o := opts.withDefaults()
	d := &Dispatcher{q: q, s: s, o: o, m: newMetrics(q), log: o.Logger, lanes: map[string]*lane{}}
	d.regErr = d.m.register(o.Registerer)
	d.lim = newLimiter(o.MinWorkers, o.Workers, d.m, o.Logger, o.Clock.Now)
	d.publish()
	return d
}

// Stats returns a snapshot of the dispatcher's state; safe to call at any time.
func (d *Dispatcher) Stats() Stats {
	d.statsMu.Lock()
	defer d.statsMu.Unlock()
	return d.stats
}

type laneState uint8

const (
	idle    laneState = iota // no items in memory
	ready                    // head may be sent now (in d.ready)
	waiting                  // head waits for its next attempt (in d.waiting)
	busy                     // head is being sent
)

// lane is one visitor's FIFO of loaded items; only its head is ever sent.
type lane struct {
	key      string
	visitor  string
	items    []queue.Item
	state    laneState
	nextAt   time.Time
	lastSeq  uint64 // highest Seq loaded into the lane
	overflow bool   // items of the visitor past lastSeq were left in the queue
	reload   bool   // in d.reloads
}

type outcome uint8

const (
	delivered outcome = iota
	deadLettered
	filteredOut
	retrying
	abandoned // the attempt was cut short by shutdown; nothing recorded
	moved     // another process delivers the item now (queue.Owner); nothing sent nor recorded
	paused    // the item is still this process's but may not be attempted now (queue.Owner); nothing sent nor recorded
	failed    // the queue could not record the outcome
)

// pausedRecheck is how long a lane waits when its queue answers that the head may not be
// attempted now (queue.Paused): about a lease renewal's round trip.
const pausedRecheck = 100 * time.Millisecond

type job struct {
	l  *lane
	it queue.Item
}

type result struct {
	l     *lane
	it    queue.Item // the item as the worker left it (attempts, first attempt, next request)
	out   outcome
	next  time.Time // retrying: when to try again
	pause time.Time // retrying after 429 with Retry-After: pause all sending until then
	err   error
}

// Run delivers until ctx ends, then stops taking new work, waits for the attempts under way
// (at most DrainTimeout, after which they are cancelled) and returns. Everything not
// delivered stays in the queue; a new Dispatcher on the same queue resumes from its start.
// There is no Stop method: cancel ctx. Run returns nil after a clean stop, an error when
// metrics could not be registered, when attempts had to be abandoned at the drain timeout,
// or when the queue failed to record an outcome (delivery stops then: fix the store and
// restart; the affected items are sent again).
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.regErr != nil {
		return d.regErr
	}
	if !d.ran.CompareAndSwap(false, true) {
		return errors.New("destination: Run called twice; create a new Dispatcher to run again")
	}
	attemptCtx, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	jobs := make(chan job, d.o.Workers)
	results := make(chan result, d.o.Workers)
	var wg sync.WaitGroup
	// Workers start as the limit first needs them: one per attempt under way at the peak.
	d.spawn = func() {
		wg.Go(func() {
			for j := range jobs {
				results <- d.deliver(attemptCtx, j)
			}
		})
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	rescan := time.NewTicker(d.o.Rescan)
	defer rescan.Stop()
	d.scanMore = true

	for ctx.Err() == nil && d.fatal == nil {
		more := d.fill()
		d.promote()
		d.dispatch(jobs)
		d.publish()
		d.arm(timer)
		if more {
			select {
			case r := <-results:
				d.handle(r)
			default:
			}
			continue
		}
		select {
		case r := <-results:
			d.handle(r)
		case <-d.q.Appended():
			d.scanMore = true
		case <-rescan.C:
			d.scanMore = true
		case <-timer.C:
		case <-ctx.Done():
		}
	}

	// Drain: no new attempts; wait for those under way.
	var err error
	drain := time.NewTimer(d.o.DrainTimeout)
	defer drain.Stop()
	for d.inflight > 0 {
		d.publish()
		select {
		case r := <-results:
			d.handle(r)
		case <-drain.C:
			err = fmt.Errorf("destination: %d attempts still under way after the drain timeout of %s were abandoned; they are sent again on restart (raise DrainTimeout to wait longer)", d.inflight, d.o.DrainTimeout)
			d.log.Warn("delivery drain timed out", "in_flight", d.inflight, "drain_timeout", d.o.DrainTimeout)
			abandon()
		}
	}
	d.publish()
	if d.fatal != nil {
		return errors.Join(d.fatal, err)
	}
	return err
}

// room is how many more items may be loaded.
func (d *Dispatcher) room() int { return d.o.Window - d.loaded }

// fill loads items: first more of the overflowed visitors (they are older), then new items
// past the cursor. It reports whether more reading is due right away.
func (d *Dispatcher) fill() bool {
	now := d.o.Clock.Now()
	if now.Before(d.scanAfter) {
		return false
	}
	for len(d.reloads) > 0 && d.room() > 0 {
		l := d.reloads[0]
		limit := min(d.o.PerVisitor-len(l.items), d.room())
		if d.lanes[l.key] != l { // dropped: its visitor moved to another process
			limit = 0
		}
		if limit > 0 {
			items, err := d.q.ScanVisitor(l.visitor, l.lastSeq, limit)
			if err != nil {
				d.scanFailed("scan_visitor", err)
				return false
			}
			for _, it := range items {
				d.load(l, it)
			}
			if len(items) < limit {
				l.overflow = false
			}
		}
		d.reloads = d.reloads[1:]
		l.reload = false
		if len(l.items) == 0 && !l.overflow && d.lanes[l.key] == l {
			delete(d.lanes, l.key)
		}
	}
	for range 8 {
		if !d.scanMore || d.room() <= 0 || d.refillLater() {
			return false
		}
		limit := min(d.room(), 1024)
		items, err := d.q.Scan(d.cursor, limit)
		if err != nil {
			d.scanFailed("scan", err)
			return false
		}
		for _, it := range items {
			d.admit(it)
			d.cursor = it.Seq
		}
		if len(items) < limit {
			d.scanMore = false
			if len(d.lanes) == 0 {
				// Nothing is held back: read from the start next time, which also picks up an
				// item whose Seq became visible after a higher one did.
				d.cursor = 0
			}
		}
	}
	return d.scanMore && d.room() > 0
}

// refillLater reports whether the global scan should wait for more room: while the items in
// memory keep every worker busy, reading a handful at a time (one per finished attempt, once
// the window is full) would open a queue iterator per delivered event, so the window is
// refilled in chunks of at least a quarter of it (or 1024 items) instead.
func (d *Dispatcher) refillLater() bool {
	chunk := min(max(d.o.Window/4, 1), 1024)
	return d.room() < chunk && len(d.ready)+d.inflight >= d.lim.get()
}

func (d *Dispatcher) scanFailed(op string, err error) {
	d.m.queueErrors.WithLabelValues(op).Inc()
	d.log.Error("reading the queue failed; retrying in 1s", "op", op, "err", err)
	d.scanAfter = d.o.Clock.Now().Add(time.Second)
	d.scanMore = true
}

// admit places one item from the global scan in its visitor's lane, unless the lane already
// has it, or is full or overflowed (then the item stays in the queue for ScanVisitor).
func (d *Dispatcher) admit(it queue.Item) {
	key := it.Entry.Visitor
	if key == "" {
		// No ordering constraint: a lane of its own.
		key = "\x00" + strconv.FormatUint(it.Seq, 10)
	}
	l := d.lanes[key]
	if l == nil {
		l = &lane{key: key, visitor: it.Entry.Visitor}
		d.lanes[key] = l
	} else {
		switch {
		case it.Seq <= l.lastSeq:
			return // loaded by ScanVisitor already
		case l.overflow:
			return
		case len(l.items) >= d.o.PerVisitor:
			l.overflow = true
			d.m.overflows.Inc()
			return
		}
	}
	d.load(l, it)
}

func (d *Dispatcher) load(l *lane, it queue.Item) {
	if len(it.Entry.Requests) > 0 {
		it.Entry.Event = nil // the queue keeps the event; dead letters take it from there
	}
	l.items = append(l.items, it)
	l.lastSeq = it.Seq
	d.loaded++
	if l.state == idle {
		l.state = ready
		d.ready = append(d.ready, l)
	}
}

// promote moves lanes whose wait is over to the ready list.
func (d *Dispatcher) promote() {
	now := d.o.Clock.Now()
	for d.waiting.Len() > 0 && !d.waiting[0].nextAt.After(now) {
		l := heap.Pop(&d.waiting).(*lane)
		l.state = ready
		d.ready = append(d.ready, l)
	}
}

// dispatch hands ready lanes' heads to the workers, round robin, unless paused.
func (d *Dispatcher) dispatch(jobs chan<- job) {
	if d.o.Clock.Now().Before(d.pauseUntil) {
		return
	}
	limit := d.lim.get()
	for d.inflight < limit && len(d.ready) > 0 {
		l := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		l.state = busy
		d.inflight++
		if d.inflight > d.workers {
			d.workers++
			d.spawn()
		}
		jobs <- job{l: l, it: l.items[0]}
	}
	if len(d.ready) > 0 {
		d.lim.blocked()
	}
}

// arm sets the timer to the next moment something becomes due: a lane's next attempt, or the
// end of a pause while lanes are ready.
func (d *Dispatcher) arm(t *time.Timer) {
	var at time.Time
	if d.waiting.Len() > 0 {
		at = d.waiting[0].nextAt
	}
	if len(d.ready) > 0 && d.inflight < d.lim.get() && d.pauseUntil.After(d.o.Clock.Now()) {
		if at.IsZero() || d.pauseUntil.Before(at) {
			at = d.pauseUntil
		}
	}
	if !d.scanAfter.IsZero() && d.scanMore && d.scanAfter.After(d.o.Clock.Now()) {
		if at.IsZero() || d.scanAfter.Before(at) {
			at = d.scanAfter
		}
	}
	wait := time.Hour
	if !at.IsZero() {
		wait = max(at.Sub(d.o.Clock.Now()), 0)
	}
	t.Reset(wait)
}

// handle applies a worker's result to the lanes.
func (d *Dispatcher) handle(r result) {
	d.inflight--
	l := r.l
	switch r.out {
	case delivered, deadLettered, filteredOut:
		d.popHead(l)
		return
	case retrying:
		l.items[0] = r.it
		l.state = waiting
		l.nextAt = r.next
		heap.Push(&d.waiting, l)
		if now := d.o.Clock.Now(); r.pause.After(d.pauseUntil) && r.pause.After(now) {
			// Counted from when it takes effect; a pause that overlaps the current one
			// counts only its extension.
			from := now
			if d.pauseUntil.After(now) {
				from = d.pauseUntil
			} else {
				d.m.pauses.Inc()
			}
			d.m.pauseSeconds.Add(r.pause.Sub(from).Seconds())
			d.log.Info("destination asked to slow down (429); pausing all sending", "until", r.pause, "for", r.pause.Sub(now).Round(time.Millisecond))
			d.pauseUntil = r.pause
		}
		return
	case moved:
		// The visitor's partition moved to another process, which reads these items (and
		// the later ones) from the shared store: drop the whole lane from memory.
		d.loaded -= len(l.items)
		d.m.moved.Add(float64(len(l.items)))
		l.items, l.state, l.overflow = nil, idle, false
		if d.lanes[l.key] == l {
			delete(d.lanes, l.key)
		}
		// The global scan's cursor may be past items of this visitor that were not in the
		// lane yet (the partition came back with new Seqs while the lane held old ones):
		// read again from the start; admit skips what the other lanes hold.
		d.cursor, d.scanMore = 0, true
		return
	case paused:
		// Ask again shortly, keeping the lane's place and its items: nothing was attempted.
		l.items[0] = r.it
		l.state = waiting
		l.nextAt = d.o.Clock.Now().Add(pausedRecheck)
		heap.Push(&d.waiting, l)
		return
	case failed:
		if d.fatal == nil {
			d.fatal = r.err
		}
	}
	// abandoned or failed: keep the item as it is; it is sent again after a restart.
	l.items[0] = r.it
	l.state = ready
	d.ready = append(d.ready, l)
}

// popHead removes a finished head and makes the lane's next item eligible.
func (d *Dispatcher) popHead(l *lane) {
	l.items[0] = queue.Item{}
	l.items = l.items[1:]
	d.loaded--
	if len(l.items) > 0 {
		l.state = ready
		d.ready = append(d.ready, l)
	} else {
		l.state = idle
		l.items = nil
		if !l.overflow {
			delete(d.lanes, l.key)
		}
	}
	if l.overflow && !l.reload && len(l.items) <= d.o.PerVisitor/2 {
		l.reload = true
		d.reloads = append(d.reloads, l)
	}
}

// publish refreshes Stats and the gauges.
func (d *Dispatcher) publish() {
	d.statsMu.Lock()
	d.stats = Stats{Loaded: d.loaded, Lanes: len(d.lanes), InFlight: d.inflight, MinLimit: d.o.MinWorkers, MaxLimit: d.o.Workers, OverQuota: d.overQuota.Load()}
	d.stats.Limit, d.stats.Baseline = d.lim.snapshot()
	if d.pauseUntil.After(d.o.Clock.Now()) {
		d.stats.PausedUntil = d.pauseUntil
	}
	d.statsMu.Unlock()
	d.m.loaded.Set(float64(d.loaded))
	d.m.lanes.Set(float64(len(d.lanes)))
}

// deliver sends an item's remaining requests in order and records the outcome in the queue.
// It runs on a worker goroutine and touches no scheduler state.
func (d *Dispatcher) deliver(ctx context.Context, j job) result {
	it := j.it
	r := result{l: j.l}
	if o, ok := d.q.(queue.Owner); ok {
		switch o.Owns(it.Seq) {
		case queue.Moved:
			r.it, r.out = it, moved
			return r
		case queue.Paused:
			r.it, r.out = it, paused
			return r
		}
	}
	e := &it.Entry
	if d.o.Drop != nil {
		if reason := d.o.Drop(e); reason != "" {
			return d.filter(r, it, reason)
		}
	}
	if e.Outcome != queue.Deliver {
		f := queue.Failure{Reason: fmt.Sprintf("entry with outcome %s in the delivery queue; nothing to send", e.Outcome), Attempts: it.Attempts}
		return d.dead(r, it, f)
	}
	if len(e.Requests) == 0 {
		if d.o.Map == nil {
			f := queue.Failure{Reason: "the entry has no requests and the dispatcher maps none (set DispatcherOptions.Map); nothing was sent", Attempts: it.Attempts}
			return d.dead(r, it, f)
		}
		reqs, filtered, err := d.o.Map(*e)
		switch {
		case err != nil:
			return d.dead(r, it, queue.Failure{Reason: "mapping at delivery: " + err.Error(), Attempts: it.Attempts})
		case filtered != "":
			return d.filter(r, it, filtered)
		case len(reqs) == 0:
			return d.dead(r, it, queue.Failure{Reason: "the mapping produced no request and no filter reason; nothing was sent", Attempts: it.Attempts})
		}
		e.Requests, e.Event = reqs, nil // kept with the lane, so a retry does not map again
	}
	for it.NextRequest < len(e.Requests) {
		req := e.Requests[it.NextRequest]
		d.m.inflight.Inc()
		start := d.o.Clock.Now()
		a := d.s.Send(ctx, req)
		d.m.inflight.Dec()
		d.m.attempt(a, e.Source)
		if a.Duration <= 0 { // a Sender that does not time itself
			a.Duration = d.o.Clock.Now().Sub(start)
		}
		d.lim.observe(start, a)
		if a.Status == http.StatusPaymentRequired && a.Class == Done {
			d.overQuotaSeen(e)
		}
		if a.Class != Done && ctx.Err() != nil {
			r.it, r.out = it, abandoned
			return r
		}
		switch a.Class {
		case Done:
			it.NextRequest++
			if it.NextRequest < len(e.Requests) {
				n := it.NextRequest
				if err := d.write("progress", func() error { return d.q.Progress(it.Seq, n) }); err != nil {
					r.it, r.out, r.err = it, failed, err
					return r
				}
			}
			continue
		case Retry:
			now := d.o.Clock.Now()
			it.Attempts++
			if it.FirstAttempt.IsZero() {
				it.FirstAttempt = now
			}
			if now.Sub(it.FirstAttempt) >= d.o.RetryWindow {
				f := failure(req, a, it.Attempts)
				f.Reason = fmt.Sprintf("retry window of %s exhausted after %d attempts; last: %s", d.o.RetryWindow, it.Attempts, a.Reason())
				return d.dead(r, it, f)
			}
			delay := d.o.Backoff.Delay(it.Attempts, a.RetryAfter)
			first, attempts := it.FirstAttempt, it.Attempts
			if err := d.write("retrying", func() error { return d.q.Retrying(it.Seq, attempts, first) }); err != nil {
				r.it, r.out, r.err = it, failed, err
				return r
			}
			d.m.events.WithLabelValues("retry_scheduled", e.Source).Inc()
			d.log.Debug("delivery will be retried", "seq", it.Seq, "visitor", e.Visitor, "attempts", it.Attempts, "in", delay, "reason", a.Reason())
			r.it, r.out, r.next = it, retrying, now.Add(delay)
			if a.Status == http.StatusTooManyRequests && a.RetryAfter > 0 {
				r.pause = now.Add(d.o.Backoff.CapRetryAfter(a.RetryAfter))
			}
			return r
		default:
			f := failure(req, a, it.Attempts+1)
			f.Reason = a.Reason()
			return d.dead(r, it, f)
		}
	}
	if err := d.write("done", func() error { return d.q.Done(it.Seq) }); err != nil {
		r.it, r.out, r.err = it, failed, err
		return r
	}
	d.m.events.WithLabelValues("delivered", e.Source).Inc()
	if !e.Received.IsZero() {
		d.m.latency.WithLabelValues(e.Source).Observe(d.o.Clock.Now().Sub(e.Received).Seconds())
	}
	r.it, r.out = it, delivered
	return r
}

// overQuotaWarnEvery spaces the warnings about 402 Over Quota answers.
const overQuotaWarnEvery = time.Minute

// overQuotaSeen counts a 402 Over Quota answer (Woopra logged the data but runs no
// triggers) and warns, at most once a minute.
func (d *Dispatcher) overQuotaSeen(e *queue.Entry) {
	n := d.overQuota.Add(1)
	d.m.overQuota.Inc()
	now := d.o.Clock.Now().UnixNano()
	last := d.overQuotaWarn.Load()
	if (last == 0 || now-last >= int64(overQuotaWarnEvery)) && d.overQuotaWarn.CompareAndSwap(last, now) {
		d.log.Warn("woopra answered 402 Over Quota: the project reached its quota of actions; events are logged (counted delivered) but triggers do not run and the interface is locked until the plan is upgraded",
			"source", e.Source, "over_quota_total", n)
	}
}

// filter drops an item on purpose through the queue's Filter (counted as filtered).
func (d *Dispatcher) filter(r result, it queue.Item, reason string) result {
	if err := d.write("filter", func() error { return d.q.Filter(it.Seq, reason) }); err != nil {
		r.it, r.out, r.err = it, failed, err
		return r
	}
	d.m.events.WithLabelValues("filtered", it.Entry.Source).Inc()
	r.it, r.out = it, filteredOut
	return r
}

func (d *Dispatcher) dead(r result, it queue.Item, f queue.Failure) result {
	if err := d.write("dead", func() error { return d.q.Dead(it.Seq, f) }); err != nil {
		r.it, r.out, r.err = it, failed, err
		return r
	}
	d.m.events.WithLabelValues("dead_lettered", it.Entry.Source).Inc()
	d.log.Warn("event dead-lettered", "seq", it.Seq, "visitor", it.Entry.Visitor, "message_id", it.Entry.MessageID,
		"reason", f.Reason, "status", f.Status, "attempts", f.Attempts)
	r.it, r.out = it, deadLettered
	return r
}

// failure builds the dead letter's record of the request and the last answer.
func failure(req queue.Request, a Attempt, attempts int) queue.Failure {
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	return queue.Failure{
		Request:  method + " " + req.URL,
		Status:   a.Status,
		Response: a.Response(),
		Attempts: attempts,
	}
}

// write records an outcome in the queue, retrying a transient error twice. A queue that is
// closed, or keeps failing, stops delivery (see Run).
func (d *Dispatcher) write(op string, f func() error) error {
	var err error
	for i, wait := range []time.Duration{0, 50 * time.Millisecond, 500 * time.Millisecond} {
		if wait > 0 {
			time.Sleep(wait)
		}
		if err = f(); err == nil {
			return nil
		}
		d.m.queueErrors.WithLabelValues(op).Inc()
		d.log.Error("recording a delivery outcome in the queue failed", "op", op, "try", i+1, "err", err)
		if errors.Is(err, queue.ErrClosed) {
			break
		}
	}
	return fmt.Errorf("destination: the queue could not record %q: %w; delivery stopped: fix the store and restart (the event is sent again)", op, err)
}

// laneHeap orders waiting lanes by their next attempt time.
type laneHeap []*lane

func (h laneHeap) Len() int           { return len(h) }
func (h laneHeap) Less(i, j int) bool { return h[i].nextAt.Before(h[j].nextAt) }
func (h laneHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *laneHeap) Push(x any)        { *h = append(*h, x.(*lane)) }
func (h *laneHeap) Pop() any {
	old := *h
	n := len(old)
	l := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return l
}
