package emulator

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Outcome says what the emulator made of one tracking request.
type Outcome string

// Outcomes of tracking requests.
const (
	// OutcomeOK: accepted and applied to the visitor's profile.
	OutcomeOK Outcome = "ok"
	// OutcomeNoProject: no project, host, website or alias parameter. Woopra's answer is not
	// documented; the emulator answers like an unregistered project (200, "not registered").
	OutcomeNoProject Outcome = "no_project"
	// OutcomeUnregistered: the project is not in Options.Projects; answered 200 with Woopra's
	// "Host ... not registered!" comment, nothing stored.
	OutcomeUnregistered Outcome = "unregistered"
	// OutcomeNoEvent: /track/ce without event (or legacy ce_name); visitor properties are
	// applied, no action is added.
	OutcomeNoEvent Outcome = "no_event"
	// OutcomeNoIdentity: none of cv_id, cv_email, cookie; answered as a success, no profile.
	OutcomeNoIdentity Outcome = "no_identity"
	// OutcomeFault: answered with a fault status (not 2xx), nothing stored.
	OutcomeFault Outcome = "fault"
	// OutcomeHanging: held by a hang fault right now.
	OutcomeHanging Outcome = "hanging"
	// OutcomeAbandoned: the client went away before the request was answered (during a hang or
	// latency); the status is 0.
	OutcomeAbandoned Outcome = "abandoned"
	// OutcomeReset: the connection was dropped by a reset step; the status is 0.
	OutcomeReset Outcome = "reset"
	// OutcomeBadRequest: the method is not GET or POST (405), or the body is too large (413).
	OutcomeBadRequest Outcome = "bad_request"
	// OutcomeOverloaded: refused because Faults.Capacity requests were being served.
	OutcomeOverloaded Outcome = "overloaded"
)

// Item is one beacon item of a /track/push request.
type Item struct {
	// Endpoint is ce, update or identify.
	Endpoint string `json:"endpoint"`
	// Params are the item's own parameters, in order.
	Params Params `json:"params"`
	// Visitor is the item's visitor id (cv_id, else cv_email, else cookie).
	Visitor string `json:"visitor,omitempty"`
}

// Record is one tracking request as the emulator received and answered it.
type Record struct {
	// Seq numbers requests in arrival order, from 1.
	Seq uint64 `json:"seq"`
	// Time is when the request arrived.
	Time time.Time `json:"time"`
	// Method and Path are the request's (Path without the query).
	Method string `json:"method"`
	Path   string `json:"path"`
	// Endpoint is ce, identify, ping, update or push.
	Endpoint string `json:"endpoint"`
	// Params are the merged parameters (query first, then body; the first occurrence wins), in
	// their order.
	Params Params `json:"params"`
	// Items are the beacon items of /track/push.
	Items []Item `json:"items,omitempty"`
	// Headers holds User-Agent, Content-Type, Accept-Language, Authorization, Referer,
	// X-Forwarded-For and Content-Encoding when present (every header with
	// Options.RecordAllHeaders).
	Headers map[string]string `json:"headers,omitempty"`
	// RemoteAddr is the connection's address.
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Status is the HTTP status given; 0 when none was (abandoned, reset, still hanging).
	Status int `json:"status"`
	// Outcome says what was made of the request.
	Outcome Outcome `json:"outcome"`
	// Fault is the step applied, as "visitor:500", "sequence:hang" or "always:403"; "" for none.
	Fault string `json:"fault,omitempty"`
	// Delay is the injected latency waited.
	Delay Duration `json:"delay,omitempty"`
	// Project is the project resolved (project > host > website > alias).
	Project string `json:"project,omitempty"`
	// Visitor is the visitor id: cv_id, else cv_email, else cookie, as sent.
	Visitor string `json:"visitor,omitempty"`
	// Warnings lists what was tolerated (duplicate keys, bad escapes, ignored body, ...).
	Warnings []string `json:"warnings,omitempty"`
}

// Stats are the emulator's counters. The counters by status and outcome are kept even when no
// records are.
type Stats struct {
	// Requests is the number of tracking requests received.
	Requests uint64 `json:"requests"`
	// ByStatus counts the statuses given (0: none given).
	ByStatus map[int]uint64 `json:"by_status"`
	// ByOutcome counts the outcomes (hanging counts those hanging now).
	ByOutcome map[Outcome]uint64 `json:"by_outcome"`
	// Faults counts the requests a fault step was applied to.
	Faults uint64 `json:"faults"`
	// Hanging is the number of requests held by a hang right now.
	Hanging int `json:"hanging"`
	// Records is the number of records held; DroppedRecords those dropped (oldest first)
	// because of Options.MaxRecords.
	Records        int    `json:"records"`
	DroppedRecords uint64 `json:"dropped_records"`
	// Visitors is the number of visitor profiles.
	Visitors int `json:"visitors"`
	// Refused counts the requests refused for capacity (Faults.Capacity, Overload 503 or 429).
	Refused uint64 `json:"refused"`
	// Serving is the number of requests inside the capacity model now (admitted, not yet
	// answered); Waiting those queued for a slot (Overload queue).
	Serving int `json:"serving"`
	Waiting int `json:"waiting"`
}

// counters are updated with atomics on the hot path.
type counters struct {
	requests  atomic.Uint64
	faults    atomic.Uint64
	refused   atomic.Uint64
	byStatus  [600]atomic.Uint64
	byOutcome [len(outcomesIndex)]atomic.Uint64
}

var outcomesIndex = [...]Outcome{OutcomeOK, OutcomeNoProject, OutcomeUnregistered, OutcomeNoEvent,
	OutcomeNoIdentity, OutcomeFault, OutcomeHanging, OutcomeAbandoned, OutcomeReset, OutcomeBadRequest, OutcomeOverloaded}

func outcomeIndex(o Outcome) int {
	for i, x := range outcomesIndex {
		if x == o {
			return i
		}
	}
	return 0
}

func (c *counters) count(status int, o Outcome) {
	if status >= 0 && status < len(c.byStatus) {
		c.byStatus[status].Add(1)
	}
	c.byOutcome[outcomeIndex(o)].Add(1)
}

func (c *counters) reset() {
	c.requests.Store(0)
	c.faults.Store(0)
	c.refused.Store(0)
	for i := range c.byStatus {
		c.byStatus[i].Store(0)
	}
	for i := range c.byOutcome {
		c.byOutcome[i].Store(0)
	}
}

// recorder keeps the most recent records in a ring of at most max (max < 0: none).
type recorder struct {
	mu      sync.Mutex
	max     int
	buf     []*Record
	start   int // index of the oldest record once the ring is full
	dropped uint64
}

func (rc *recorder) add(r *Record) {
	if rc.max < 0 {
		return
	}
	rc.mu.Lock()
	if len(rc.buf) < rc.max {
		rc.buf = append(rc.buf, r)
	} else {
		rc.buf[rc.start] = r
		rc.start++
		if rc.start == len(rc.buf) {
			rc.start = 0
		}
		rc.dropped++
	}
	rc.mu.Unlock()
}

// update changes a record already added (a hang being resolved) under the lock readers take.
func (rc *recorder) update(r *Record, fn func(*Record)) {
	if rc.max < 0 {
		fn(r)
		return
	}
	rc.mu.Lock()
	fn(r)
	rc.mu.Unlock()
}

// snapshot copies the records, oldest arrival first.
func (rc *recorder) snapshot(keep func(*Record) bool) []Record {
	rc.mu.Lock()
	out := make([]Record, 0, len(rc.buf))
	for i := range rc.buf {
		r := rc.buf[(rc.start+i)%len(rc.buf)]
		if keep == nil || keep(r) {
			out = append(out, *r)
		}
	}
	rc.mu.Unlock()
	slices.SortStableFunc(out, func(a, b Record) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}

func (rc *recorder) stats() (n int, dropped uint64) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.buf), rc.dropped
}

func (rc *recorder) reset() {
	rc.mu.Lock()
	rc.buf, rc.start, rc.dropped = nil, 0, 0
	rc.mu.Unlock()
}
