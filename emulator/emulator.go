// Package emulator is a local stand-in for Woopra's HTTP Tracking API
// (https://docs.woopra.com/reference/intro-http-tracking). It answers /track/ce, /track/identify,
// /track/ping, /track/update and /track/push the way Woopra's clients rely on, records every
// request, builds visitor profiles with their timelines, and injects faults on command (status
// sequences, per-visitor scripts, latency, hangs, dropped connections).
//
// Tests use it in-process through the Go API (New, Handler, Requests, Visitors, SetFaults,
// Script, Release, Reset); `woorelay emulate` serves it over HTTP with a JSON control API under
// /emulator/; `woorelay serve` can run it as a sandbox destination. See README.md beside this
// file for the behaviours emulated and the choices made where Woopra's documentation is silent.
package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Default bounds of Options.
const (
	DefaultMaxRecords = 100_000
	DefaultMaxActions = 10_000
)

// Options configure an Emulator. The zero value accepts every project, keeps the last
// DefaultMaxRecords records and builds profiles.
type Options struct {
	// Projects lists the registered projects (compared case-insensitively). A request for any
	// other project gets Woopra's "Host ... not registered!" reply and is not stored. Empty:
	// every project is registered.
	Projects []string
	// Strict answers 400 with a JSON error, instead of Woopra's lenient 200, to requests
	// without a project, for an unregistered project, without any identifier, or /track/ce
	// without an event; it makes a client's mistakes fail loudly in tests.
	Strict bool
	// MaxRecords bounds the request record: the oldest records are dropped beyond it (and
	// counted in Stats.DroppedRecords). 0 means DefaultMaxRecords; negative keeps no record
	// (the counters are kept regardless).
	MaxRecords int
	// MaxActions bounds each visitor's timeline (oldest dropped). 0 means DefaultMaxActions;
	// negative means unbounded.
	MaxActions int
	// NoProfiles skips building profiles (for load tests that only need the counters).
	NoProfiles bool
	// RecordAllHeaders records every request header instead of the usual few.
	RecordAllHeaders bool
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Emulator is an in-memory Woopra tracking endpoint. It is safe for concurrent use.
type Emulator struct {
	opts     Options
	projects map[string]bool // lower-cased; nil: any

	seq      atomic.Uint64
	counters counters
	records  recorder
	profiles profileStore
	faults   faultState

	release atomic.Pointer[chan struct{}] // closed by Release; hung requests wait on it
	closing atomic.Bool

	hangMu   sync.Mutex
	hanging  int
	hangNote chan struct{} // closed and replaced whenever hanging changes
}

// New returns an Emulator configured by opts.
func New(opts Options) *Emulator {
	e := &Emulator{opts: opts, hangNote: make(chan struct{})}
	if len(opts.Projects) > 0 {
		e.projects = make(map[string]bool, len(opts.Projects))
		for _, p := range opts.Projects {
			e.projects[strings.ToLower(p)] = true
		}
	}
	e.records.max = opts.MaxRecords
	if e.records.max == 0 {
		e.records.max = DefaultMaxRecords
	}
	e.profiles.maxActions = opts.MaxActions
	if e.profiles.maxActions == 0 {
		e.profiles.maxActions = DefaultMaxActions
	}
	ch := make(chan struct{})
	e.release.Store(&ch)
	return e
}

func (e *Emulator) now() time.Time {
	if e.opts.Now != nil {
		return e.opts.Now()
	}
	return time.Now()
}

// Handler returns the HTTP handler serving the tracking paths and the control API.
func (e *Emulator) Handler() http.Handler { return e }

// ServeHTTP serves /track/{ce,identify,ping,update,push} (with or without a trailing slash, and
// under /track/tp/{domain}/), the control API under /emulator/, and a short index at /.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/track/"):
		endpoint, tp, ok := trackEndpoint(path[len("/track/"):])
		if !ok {
			http.Error(w, "404 page not found", http.StatusNotFound)
			return
		}
		e.serveTrack(w, r, endpoint, tp)
	case path == "/emulator" || strings.HasPrefix(path, "/emulator/"):
		e.serveControl(w, r)
	case path == "/":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, indexText)
	default:
		http.Error(w, "404 page not found", http.StatusNotFound)
	}
}

const indexText = `Woopra HTTP Tracking API emulator (woorelay)

tracking:  GET|POST /track/ce  /track/identify  /track/ping  /track/update  /track/push  (trailing slash optional)
control:   GET /emulator/requests   GET /emulator/visitors[/ID]   GET /emulator/stats
           GET|POST|DELETE /emulator/faults   POST /emulator/scripts   POST /emulator/release
           POST /emulator/reset   DELETE /emulator/requests
`

// trackEndpoint splits the part of a path after /track/ into the endpoint and the third-party
// domain of /track/tp/{domain}/{endpoint}.
func trackEndpoint(rest string) (endpoint, tp string, ok bool) {
	if strings.HasPrefix(rest, "tp/") {
		domain, after, found := strings.Cut(rest[len("tp/"):], "/")
		if !found || domain == "" {
			return "", "", false
		}
		tp, rest = domain, after
	}
	rest = strings.TrimSuffix(rest, "/")
	switch rest {
	case "ce", "identify", "ping", "update", "push":
		return rest, tp, true
	}
	return "", "", false
}

// recordedHeaders are the headers kept in a record unless Options.RecordAllHeaders.
var recordedHeaders = []string{"User-Agent", "Content-Type", "Accept-Language", "Authorization",
	"Referer", "X-Forwarded-For", "Content-Encoding"}

func (e *Emulator) pickHeaders(h http.Header) map[string]string {
	m := make(map[string]string, 4)
	if e.opts.RecordAllHeaders {
		for k, v := range h {
			m[k] = strings.Join(v, ", ")
		}
		return m
	}
	for _, k := range recordedHeaders {
		if v := h[k]; len(v) > 0 {
			m[k] = strings.Join(v, ", ")
		}
	}
	return m
}

// resolveProject returns the project of a request: project, else host, else website, else
// alias (the names Woopra's clients have used over time), matched exactly and then
// case-insensitively (RudderStack sends "Project"); else the domain of /track/tp/{domain}/.
func resolveProject(ps Params, tp string) string {
	keys := [...]string{"project", "host", "website", "alias"}
	for _, k := range keys {
		if v := ps.Get(k); v != "" {
			return v
		}
	}
	for _, k := range keys {
		for _, p := range ps {
			if p.Value != "" && strings.EqualFold(p.Key, k) {
				return p.Value
			}
		}
	}
	return tp
}

// rawIDs returns cv_id, cv_email and cookie as sent.
func rawIDs(ps Params) [3]string {
	var ids [3]string
	for _, p := range ps {
		switch p.Key {
		case "cv_id":
			ids[0] = p.Value
		case "cv_email":
			ids[1] = p.Value
		case "cookie":
			ids[2] = p.Value
		}
	}
	return ids
}

func visitorKey(ids [3]string) string {
	for _, id := range ids {
		if id != "" {
			return id
		}
	}
	return ""
}

func trimmedIDs(ids [3]string) [3]string {
	return [3]string{trimTo(ids[0], maxIDLen), trimTo(ids[1], maxIDLen), trimTo(ids[2], maxCookieLen)}
}

// serveTrack handles one tracking request: parse, take a fault step, validate, apply to the
// profiles, record, answer. The record and the profiles are updated before the answer is
// written, so a client that has its answer finds its request in Requests and Visitors.
func (e *Emulator) serveTrack(w http.ResponseWriter, r *http.Request, endpoint, tp string) {
	rec := &Record{
		Seq:        e.seq.Add(1),
		Time:       e.now(),
		Method:     r.Method,
		Path:       r.URL.Path,
		Endpoint:   endpoint,
		RemoteAddr: r.RemoteAddr,
		Headers:    e.pickHeaders(r.Header),
	}
	e.counters.requests.Add(1)
	var stored *Record // the record added when a hang began; updated under the recorder's lock
	finish := func(status int, o Outcome) {
		e.counters.count(status, o)
		if stored != nil {
			e.records.update(stored, func(r *Record) {
				*r = *rec
				r.Status, r.Outcome = status, o
			})
			return
		}
		rec.Status, rec.Outcome = status, o
		e.records.add(rec)
	}

	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		finish(http.StatusMethodNotAllowed, OutcomeBadRequest)
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p, err := parseRequest(r, endpoint)
	if err != nil {
		rec.Warnings = []string{err.Error()}
		finish(http.StatusRequestEntityTooLarge, OutcomeBadRequest)
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	rec.Params, rec.Warnings = p.params, p.warnings
	rec.Project = resolveProject(p.params, tp)
	ids := rawIDs(p.params)
	if endpoint == "push" {
		for i := range p.items {
			it := &p.items[i]
			itemIDs := rawIDs(it.Params)
			it.Visitor = visitorKey(itemIDs)
			if visitorKey(ids) == "" {
				ids = itemIDs
			}
			if rec.Project == "" {
				rec.Project = resolveProject(it.Params, tp)
			}
		}
		rec.Items = p.items
	}
	rec.Visitor = visitorKey(ids)

	gen := e.release.Load() // before the fault step, so a Release that follows cannot be missed
	d := e.faults.next(ids)
	if d.step != 0 {
		rec.Fault = d.source + ":" + d.step.String()
		e.counters.faults.Add(1)
	}
	if !e.admit(w, r, d, finish) {
		return
	}
	if d.capacity > 0 {
		defer e.faults.gate.leave()
	}
	if d.latency > 0 {
		rec.Delay = Duration(d.latency)
		if !wait(r.Context(), d.latency) {
			finish(0, OutcomeAbandoned)
			return
		}
	}
	status := http.StatusOK
	switch {
	case d.step == StepHang:
		if !e.closing.Load() {
			rec.Outcome = OutcomeHanging
			stored = rec
			e.records.add(stored)
			released := e.hang(r.Context(), *gen)
			cp := *stored // go on with a private copy: readers may be copying stored
			cp.Warnings = slices.Clip(cp.Warnings)
			rec = &cp
			if !released {
				finish(0, OutcomeAbandoned)
				return
			}
		}
	case d.step == StepReset:
		finish(0, OutcomeReset)
		panic(http.ErrAbortHandler)
	case d.step >= 200 && d.step <= 299:
		status = int(d.step)
	case d.step != 0:
		finish(int(d.step), OutcomeFault)
		writeFault(w, int(d.step), d.retryAfter)
		return
	}

	outcome, msg := e.accept(rec, p, tp, r)
	if outcome != OutcomeOK && e.opts.Strict {
		finish(http.StatusBadRequest, outcome)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"success":0,"error":%s}`, appendJSONString(nil, msg))
		return
	}
	finish(status, outcome)
	writeReply(w, status, outcome, rec.Project, p.params.Get("response"))
}

// hang blocks until gen is closed (Release) or ctx ends; it reports whether it was released.
func (e *Emulator) hang(ctx context.Context, gen chan struct{}) bool {
	e.changeHanging(1)
	defer e.changeHanging(-1)
	select {
	case <-gen:
		return true
	case <-ctx.Done():
		return false
	}
}

func (e *Emulator) changeHanging(delta int) {
	e.hangMu.Lock()
	e.hanging += delta
	close(e.hangNote)
	e.hangNote = make(chan struct{})
	e.hangMu.Unlock()
}

// accept validates a request that is to be answered normally and applies it to the profiles.
// It returns the outcome and, when not OK, why.
func (e *Emulator) accept(rec *Record, p parsed, tp string, r *http.Request) (Outcome, string) {
	if rec.Endpoint != "push" {
		return e.acceptOne(rec, rec.Endpoint, p.params, rec.Project, r)
	}
	// A beacon: each item is one request of its endpoint, completed by the request's own
	// parameters (project, cookie, ...). Strict mode accepts all items or none.
	merged := make([]Params, len(p.items))
	for i, it := range p.items {
		var s paramSet
		s.list = append(Params(nil), it.Params...)
		for _, q := range p.params {
			s.add(q.Key, q.Value, "")
		}
		merged[i] = s.list
	}
	if e.opts.Strict {
		for i, it := range p.items {
			if o, msg := e.check(it.Endpoint, merged[i], resolveProject(merged[i], tp)); o != OutcomeOK {
				return o, fmt.Sprintf("push item %d: %s", i+1, msg)
			}
		}
	}
	outcome, why := OutcomeOK, ""
	for i, it := range p.items {
		o, msg := e.acceptOne(rec, it.Endpoint, merged[i], resolveProject(merged[i], tp), r)
		if o != OutcomeOK && outcome == OutcomeOK {
			outcome, why = o, fmt.Sprintf("push item %d: %s", i+1, msg)
		}
	}
	return outcome, why
}

// check validates one request of endpoint.
func (e *Emulator) check(endpoint string, ps Params, project string) (Outcome, string) {
	switch {
	case project == "":
		return OutcomeNoProject, "no project (project, host, website or alias parameter)"
	case e.projects != nil && !e.projects[strings.ToLower(project)]:
		return OutcomeUnregistered, fmt.Sprintf("Host %s not registered!", project)
	case visitorKey(rawIDs(ps)) == "":
		return OutcomeNoIdentity, "no visitor identifier (cv_id, cv_email or cookie)"
	case endpoint == "ce" && ps.Get("event") == "" && ps.Get("ce_name") == "":
		return OutcomeNoEvent, "/track/ce without event"
	}
	return OutcomeOK, ""
}

// acceptOne validates one request (or push item) and, when the outcome lets something be
// stored, applies it to the profiles: an OK request, or (unless strict) the visitor
// properties of a /track/ce without an event.
func (e *Emulator) acceptOne(rec *Record, endpoint string, ps Params, project string, r *http.Request) (Outcome, string) {
	o, msg := e.check(endpoint, ps, project)
	if o != OutcomeOK && (o != OutcomeNoEvent || e.opts.Strict) {
		return o, msg
	}
	h := hit{endpoint: endpoint, project: project, ids: trimmedIDs(rawIDs(ps)), params: ps,
		seq: rec.Seq, received: rec.Time}
	timeout := int64(30000)
	if v, ok := ps.Lookup("timeout"); ok && v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			rec.Warnings = append(rec.Warnings, fmt.Sprintf("timeout %q is not a number of milliseconds; 30000 used", v))
		} else {
			timeout = n
		}
	}
	event := ps.Get("event")
	switch endpoint {
	case "identify":
		if event != "" {
			rec.Warnings = append(rec.Warnings, "event "+strconv.Quote(event)+" ignored: /track/identify tracks no event")
		}
	case "ce":
		nameKey := "event"
		if event == "" {
			event, nameKey = ps.Get("ce_name"), "ce_name"
		}
		if event != "" {
			h.action = e.newAction(rec, ps, event, nameKey, timeout, r)
		}
	case "update":
		if ps.Get("idptnc") == "" {
			rec.Warnings = append(rec.Warnings, "/track/update without idptnc: nothing to update")
		}
	}
	if e.opts.NoProfiles {
		return o, msg
	}
	if !e.profiles.apply(&h) {
		rec.Warnings = append(rec.Warnings, fmt.Sprintf("/track/update: no action with idptnc %q", ps.Get("idptnc")))
	}
	return o, msg
}

// newAction builds the timeline entry of a /track/ce request.
func (e *Emulator) newAction(rec *Record, ps Params, name, nameKey string, timeout int64, r *http.Request) *Action {
	a := &Action{Seq: rec.Seq, Name: name, Time: rec.Time, Received: rec.Time, Timeout: timeout}
	for _, p := range ps {
		switch {
		case strings.HasPrefix(p.Key, "ce_"):
			if p.Key != nameKey {
				a.Properties = append(a.Properties, Param{Key: p.Key[3:], Value: p.Value})
			}
		case p.Key == "timestamp":
			a.Time = e.eventTime(rec, p.Value)
		case p.Key == "idptnc":
			a.Idptnc = p.Value
		case p.Key == "duration":
			a.Duration = p.Value
		case p.Key == "ip":
			a.IP = p.Value
		case p.Key == "browser":
			a.Browser = p.Value
		case p.Key == "os":
			a.OS = p.Value
		case p.Key == "device":
			a.Device = p.Value
		case p.Key == "referer":
			a.Referer = p.Value
		case p.Key == "language":
			a.Language = p.Value
		case p.Key == "screen":
			a.Screen = p.Value
		case p.Key == "app":
			a.App = p.Value
		case p.Key == "user-agent" && p.Value != "null":
			a.UserAgent = p.Value
		}
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		a.UserAgent = ua
	}
	if a.IP == "" {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			a.IP = host
		}
	}
	return a
}

// eventTime reads a timestamp parameter (ms since the epoch). Woopra lets events be backdated
// but not dated in the future: a timestamp more than 5 minutes ahead, or one that is not a
// number, gives way to the time received (with a warning).
func (e *Emulator) eventTime(rec *Record, v string) time.Time {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != f {
			rec.Warnings = append(rec.Warnings, fmt.Sprintf("timestamp %q is not milliseconds since the epoch; time received used", v))
			return rec.Time
		}
		ms = int64(f)
	}
	t := time.UnixMilli(ms)
	if t.After(rec.Time.Add(5 * time.Minute)) {
		rec.Warnings = append(rec.Warnings, fmt.Sprintf("timestamp %s is in the future; time received used", v))
		return rec.Time
	}
	if ms > 0 && ms < 1e11 {
		rec.Warnings = append(rec.Warnings, fmt.Sprintf("timestamp %s looks like seconds; Woopra reads milliseconds", v))
	}
	return t
}

// Woopra's no-cache headers, as recorded on its replies.
func setTrackHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-store, no-cache, must-revalidate, post-check=0, pre-check=0")
	h.Set("Pragma", "no-cache")
	h.Set("Expires", "Thu, 19 Nov 1981 08:52:00 GMT")
}

// Reply bodies. JSONReply is Woopra's recorded answer to response=json; the others are this
// emulator's choices where Woopra's bodies are not documented.
const (
	// JSONReply is the body of a success with response=json.
	JSONReply = `{"success":1}`
	// XMLReply is the body of a success with response=xml.
	XMLReply = `<?xml version="1.0" encoding="UTF-8"?><response><success>1</success></response>`
	// ScriptReply is the body of a success without a response parameter: a JavaScript
	// statement, since the browser tracker loads tracking URLs as scripts.
	ScriptReply = `{success: true}`
)

func writeReply(w http.ResponseWriter, status int, o Outcome, project, response string) {
	var body, ct string
	switch {
	case o == OutcomeNoProject || o == OutcomeUnregistered:
		body, ct = "/*\nHost "+project+" not registered!\n*/", "text/javascript; charset=utf-8"
	case strings.EqualFold(response, "json"):
		body, ct = JSONReply, "text/javascript; charset=utf-8"
	case strings.EqualFold(response, "xml"):
		body, ct = XMLReply, "text/xml; charset=utf-8"
	default:
		body, ct = ScriptReply, "text/javascript; charset=utf-8"
	}
	setTrackHeaders(w.Header(), ct)
	if status == http.StatusNoContent || status == http.StatusResetContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func writeFault(w http.ResponseWriter, status int, retryAfter string) {
	if retryAfter != "" && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", retryAfter)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "%d %s (emulated fault)\n", status, http.StatusText(status))
}

// Requests returns the records held, oldest arrival first.
func (e *Emulator) Requests() []Record { return e.records.snapshot(nil) }

// RequestsOf returns the records of one visitor (Record.Visitor), oldest arrival first.
func (e *Emulator) RequestsOf(visitor string) []Record {
	return e.records.snapshot(func(r *Record) bool { return r.Visitor == visitor })
}

// Visitors returns every profile, ordered by project and then by creation.
func (e *Emulator) Visitors() []Visitor { return e.profiles.visitors("") }

// Visitor returns the profile an identifier (cv_id, cv_email or cookie value) leads to, in any
// project.
func (e *Emulator) Visitor(id string) (Visitor, bool) { return e.profiles.find("", id) }

// Stats returns the counters.
func (e *Emulator) Stats() Stats {
	s := Stats{
		Requests:  e.counters.requests.Load(),
		Faults:    e.counters.faults.Load(),
		ByStatus:  map[int]uint64{},
		ByOutcome: map[Outcome]uint64{},
		Visitors:  e.profiles.count(),
	}
	for i := range e.counters.byStatus {
		if n := e.counters.byStatus[i].Load(); n > 0 {
			s.ByStatus[i] = n
		}
	}
	for i, o := range outcomesIndex {
		if n := e.counters.byOutcome[i].Load(); n > 0 {
			s.ByOutcome[o] = n
		}
	}
	e.hangMu.Lock()
	s.Hanging = e.hanging
	e.hangMu.Unlock()
	if s.Hanging > 0 {
		s.ByOutcome[OutcomeHanging] = uint64(s.Hanging)
	}
	s.Records, s.DroppedRecords = e.records.stats()
	s.Refused = e.counters.refused.Load()
	s.Serving, s.Waiting = e.faults.gate.state()
	return s
}

// SetFaults replaces the faults (an empty Faults clears them).
func (e *Emulator) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	e.faults.set(f)
	return nil
}

// Faults returns the faults still to apply (scripts and sequence without the steps consumed).
func (e *Emulator) Faults() Faults { return e.faults.get() }

// ClearFaults removes every fault. Requests already hanging stay hung until Release.
func (e *Emulator) ClearFaults() { e.faults.set(Faults{}) }

// Script gives the visitor (a cv_id, cv_email or cookie value) a script of steps consumed one
// per request of that visitor, replacing any script it had; no steps removes it. Steps that
// are not a status (100-599), StepHang or StepReset are an error.
func (e *Emulator) Script(visitor string, steps ...Step) error {
	if err := (Faults{Sequence: steps}).validate(); err != nil {
		return err
	}
	e.faults.script(visitor, steps)
	return nil
}

// Release answers every request held by a hang (they proceed as if no fault had applied) and
// clears an Always hang so new requests stop hanging. It returns how many were hanging.
func (e *Emulator) Release() int {
	e.faults.clearHang()
	ch := make(chan struct{})
	old := e.release.Swap(&ch)
	e.hangMu.Lock()
	n := e.hanging
	e.hangMu.Unlock()
	close(*old)
	return n
}

// WaitHanging blocks until at least n requests are hanging or ctx ends, so tests can release
// hung requests without sleeping.
func (e *Emulator) WaitHanging(ctx context.Context, n int) error {
	for {
		e.hangMu.Lock()
		h, note := e.hanging, e.hangNote
		e.hangMu.Unlock()
		if h >= n {
			return nil
		}
		select {
		case <-note:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Reset forgets the records, profiles, faults and counters, and releases hung requests.
func (e *Emulator) Reset() {
	e.faults.set(Faults{})
	e.Release()
	e.records.reset()
	e.profiles.reset()
	e.counters.reset()
	e.seq.Store(0)
}

// Start serves the emulator on addr (":0" or "127.0.0.1:0" picks a free port). It returns the
// base URL (an unspecified host is shown as 127.0.0.1) and a stop function that releases hung
// requests, stops hanging new ones and shuts the server down, waiting for requests in flight
// until ctx ends (then closing connections). The Emulator stays readable after stop.
func (e *Emulator) Start(addr string) (url string, stop func(context.Context) error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	url = "http://" + net.JoinHostPort(host, port)
	stop = func(ctx context.Context) error {
		e.closing.Store(true)
		e.Release()
		err := srv.Shutdown(ctx)
		if err != nil {
			srv.Close()
		}
		if serr := <-served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
			return serr
		}
		return err
	}
	return url, stop, nil
}
