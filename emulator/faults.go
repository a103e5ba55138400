package emulator

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Step is what the emulator does with one tracking request: an HTTP status (2xx answers
// normally with that status and records the request into the profiles; anything else answers
// that status without touching the profiles), or one of StepHang and StepReset.
//
// In JSON a step is a number (500) or a string ("500", "hang", "reset").
type Step int

const (
	// StepHang holds the request without answering until Release is called (then the request
	// is answered normally) or the client gives up (its context ends).
	StepHang Step = -1
	// StepReset drops the connection without answering (panics with http.ErrAbortHandler, which
	// net/http turns into a closed connection or a reset stream).
	StepReset Step = -2
)

// String names the step as the record and the JSON API show it.
func (s Step) String() string {
	switch s {
	case StepHang:
		return "hang"
	case StepReset:
		return "reset"
	}
	return strconv.Itoa(int(s))
}

// MarshalJSON writes a status as a number and hang or reset as a string.
func (s Step) MarshalJSON() ([]byte, error) {
	if s < 0 {
		return json.Marshal(s.String())
	}
	return []byte(strconv.Itoa(int(s))), nil
}

// UnmarshalJSON reads a number, a numeric string, "hang" or "reset".
func (s *Step) UnmarshalJSON(b []byte) error {
	text := string(b)
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &text); err != nil {
			return err
		}
	}
	switch strings.ToLower(strings.TrimSpace(text)) {
	case "hang":
		*s = StepHang
		return nil
	case "reset":
		*s = StepReset
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil || n < 100 || n > 599 {
		return fmt.Errorf("step %s: want an HTTP status (100-599), \"hang\" or \"reset\"", b)
	}
	*s = Step(n)
	return nil
}

func (s Step) valid() bool {
	return s == StepHang || s == StepReset || (s >= 100 && s <= 599)
}

// Duration is a time.Duration that reads and writes JSON as a Go duration string ("250ms",
// "2s"); a bare JSON number is read as milliseconds.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "250ms".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "250ms"-style strings or a number of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return fmt.Errorf("duration %s: want a string such as \"250ms\" or a number of milliseconds", b)
	}
	*d = Duration(ms * float64(time.Millisecond))
	return nil
}

// Faults is the misbehaviour the emulator injects. Each tracking request takes at most one
// step: the next step of the script of its visitor if one remains, else the next step of
// Sequence, else Always. Latency applies to every tracking request on top of that.
//
// JSON (POST /emulator/faults):
//
//	{"sequence": [500, 500], "always": 403, "latency": "50ms", "retry_after": "2",
//	 "visitors": {"v7": [500, 500, 200], "v9": [403], "v3": ["hang"]}}
//
// The capacity model: {"latency": "150ms", "jitter": 0.2, "capacity": 600, "overload": "503"}.
// Every field may change while requests are under way (POST the whole set again): a lower
// capacity refuses or queues new arrivals until enough of those served have finished.
type Faults struct {
	// Sequence is consumed one step per tracking request, whichever the visitor.
	Sequence []Step `json:"sequence,omitempty"`
	// Always is the step of every request once Sequence is used up; 0 means none ("500 until
	// cleared" is Always: 500).
	Always Step `json:"always,omitempty"`
	// Latency delays every tracking request before it is answered.
	Latency Duration `json:"latency,omitempty"`
	// Jitter spreads Latency uniformly over Latency × [1 - Jitter, 1 + Jitter] (0 to 1).
	Jitter float64 `json:"jitter,omitempty"`
	// Capacity is the most tracking requests served at once (0: no limit), from arrival to
	// answer, latency included. What happens beyond it is Overload's choice.
	Capacity int `json:"capacity,omitempty"`
	// Overload is what a request beyond Capacity gets: "503" (the default) or "429", answered
	// after the latency (a refusal also crosses the network) with Retry-After from RetryAfter
	// when set, or "queue": it waits for a slot in arrival order, so latency grows.
	Overload string `json:"overload,omitempty"`
	// RetryAfter, when set, is sent as the Retry-After header of 429 and 503 answers.
	RetryAfter string `json:"retry_after,omitempty"`
	// Visitors maps a visitor id to its script, consumed one step per request of that visitor;
	// when the script is used up the visitor is answered normally again. A request matches the
	// script of its cv_id, else of its cv_email, else of its cookie (first that has a script).
	Visitors map[string][]Step `json:"visitors,omitempty"`
}

// validate reports the first step that is not a status, "hang" or "reset".
func (f Faults) validate() error {
	check := func(where string, steps ...Step) error {
		for _, s := range steps {
			if !s.valid() {
				return fmt.Errorf("%s: step %d is not an HTTP status (100-599), hang or reset", where, int(s))
			}
		}
		return nil
	}
	if err := check("sequence", f.Sequence...); err != nil {
		return err
	}
	if f.Always != 0 {
		if err := check("always", f.Always); err != nil {
			return err
		}
	}
	if f.Latency < 0 {
		return fmt.Errorf("latency %v is negative", time.Duration(f.Latency))
	}
	if f.Jitter < 0 || f.Jitter > 1 {
		return fmt.Errorf("jitter %v: want a fraction of the latency from 0 to 1", f.Jitter)
	}
	if f.Capacity < 0 {
		return fmt.Errorf("capacity %d is negative (0 means no limit)", f.Capacity)
	}
	if !validOverload(f.Overload) {
		return fmt.Errorf("overload %q: use 503, 429 or queue", f.Overload)
	}
	for v, steps := range f.Visitors {
		if err := check("visitors["+strconv.Quote(v)+"]", steps...); err != nil {
			return err
		}
	}
	return nil
}

func (f Faults) clone() Faults {
	c := f
	c.Sequence = append([]Step(nil), f.Sequence...)
	if f.Visitors != nil {
		c.Visitors = make(map[string][]Step, len(f.Visitors))
		for v, steps := range f.Visitors {
			if len(steps) > 0 {
				c.Visitors[v] = append([]Step(nil), steps...)
			}
		}
	}
	return c
}

func (f Faults) empty() bool {
	return len(f.Sequence) == 0 && f.Always == 0 && f.Latency == 0 && f.Capacity == 0 && len(f.Visitors) == 0
}

// faultState holds the current faults. active lets the hot path skip the lock when there are
// none.
type faultState struct {
	active atomic.Bool
	mu     sync.Mutex
	f      Faults
	gate   gate // the capacity model's slots
}

// decision is the fault applied to one request.
type decision struct {
	step       Step   // 0: none
	source     string // "visitor", "sequence" or "always"
	latency    time.Duration
	retryAfter string
	capacity   int
	overload   string
}

func (fs *faultState) set(f Faults) {
	fs.mu.Lock()
	fs.f = f.clone()
	fs.active.Store(!fs.f.empty())
	fs.gate.setLimit(f.Capacity)
	fs.mu.Unlock()
}

func (fs *faultState) get() Faults {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.f.clone()
}

func (fs *faultState) script(visitor string, steps []Step) {
	fs.mu.Lock()
	if len(steps) == 0 {
		delete(fs.f.Visitors, visitor)
	} else {
		if fs.f.Visitors == nil {
			fs.f.Visitors = map[string][]Step{}
		}
		fs.f.Visitors[visitor] = append([]Step(nil), steps...)
	}
	fs.active.Store(!fs.f.empty())
	fs.mu.Unlock()
}

// clearHang drops an Always hang (Release calls it so new requests stop hanging).
func (fs *faultState) clearHang() {
	fs.mu.Lock()
	if fs.f.Always == StepHang {
		fs.f.Always = 0
	}
	fs.active.Store(!fs.f.empty())
	fs.mu.Unlock()
}

// next takes the step for a request whose identifiers are ids (cv_id, cv_email, cookie).
func (fs *faultState) next(ids [3]string) decision {
	if !fs.active.Load() {
		return decision{}
	}
	fs.mu.Lock()
	defer fs.mu.Unlock()
	d := decision{latency: jittered(time.Duration(fs.f.Latency), fs.f.Jitter), retryAfter: fs.f.RetryAfter,
		capacity: fs.f.Capacity, overload: fs.f.Overload}
	if len(fs.f.Visitors) > 0 {
		for _, id := range ids {
			if id == "" {
				continue
			}
			if steps, ok := fs.f.Visitors[id]; ok && len(steps) > 0 {
				d.step, d.source = steps[0], "visitor"
				if len(steps) == 1 {
					delete(fs.f.Visitors, id)
				} else {
					fs.f.Visitors[id] = steps[1:]
				}
				fs.active.Store(!fs.f.empty())
				return d
			}
		}
	}
	if len(fs.f.Sequence) > 0 {
		d.step, d.source = fs.f.Sequence[0], "sequence"
		fs.f.Sequence = fs.f.Sequence[1:]
		if len(fs.f.Sequence) == 0 {
			fs.f.Sequence = nil
		}
		fs.active.Store(!fs.f.empty())
		return d
	}
	if fs.f.Always != 0 {
		d.step, d.source = fs.f.Always, "always"
	}
	return d
}
