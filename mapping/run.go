package mapping

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/expr-lang/expr/vm"
	"github.com/tidwall/gjson"
)

// Outcome is what happened to one event.
type Outcome uint8

// The three outcomes of running a program on an event.
const (
	Send     Outcome = iota // the event became one or more requests
	Rejected                // the event cannot be sent; Code and Error say why
	Skipped                 // the event was filtered out on purpose; Reason says why
)

var outcomeNames = [...]string{"send", "rejected", "skipped"}

// String returns send, rejected or skipped.
func (o Outcome) String() string { return outcomeNames[o] }

// Param is one query parameter or header, with its value as it will be sent (before URL encoding).
type Param struct {
	Name  string
	Value string
}

// Request is one HTTP request to the destination.
type Request struct {
	Method   string
	Endpoint string // the endpoint's path, e.g. /track/ce
	URL      string // full URL with the encoded query
	Params   []Param
	Headers  []Param
}

// Result is the outcome of one event.
type Result struct {
	Outcome  Outcome
	Mapping  string    // the mapping that applied, if any
	Requests []Request // when Outcome is Send
	Code     string    // when Rejected
	Error    string    // when Rejected
	Reason   string    // when Skipped
	Warnings []string  // things the contract corrected (a clamped timestamp, ...)
}

// state is the per-goroutine scratch space of a run. A Program keeps states in a pool; a run
// takes one for its whole duration, so nothing in it is shared between concurrent runs.
//
// buf holds the text a run computes (spread keys and names, converted timestamps, lower-cased
// strings, compacted JSON). It is append-only during a run: a string viewing bytes already
// written stays valid until the next run resets it, even when an append moves buf (the old
// array stays alive and unchanged). Such views never leave a run: finish copies every value
// the Result keeps into one fresh string.
type state struct {
	slots        []gjson.Result
	caps         captures // the members of the objects spreads read, kept by the walk
	env          exprEnv
	vm           vm.VM
	budget       budget // what the run's expressions have used (limits.go)
	materialized bool
	params       []Param  // the request's parameters while they are built (values may view buf or the event)
	headers      []Param  // the request's headers while they are built
	warnings     []string // warnings of the run being built
	buf          []byte   // scratch text of the current run; see above
	out          []byte   // the result's text (URL, then values that need escaping) before it becomes a string
	spans        []span   // where each parameter's name and value, then each header's value, lie in out

	// A keys: path spread's parameters while it runs (see keypath.go).
	segs      []string       // the segments of the key being written
	nodes     []jsNode       // the values of its parameters
	heads     []headRef      // its parameters, in the order they were first written
	headIndex map[string]int // parameter name → index in heads
}

// span locates a string in the result's text; a negative start means "not yet written".
type span struct{ start, end int }

// Run maps one event, read at time now, into a fresh Result the caller owns. It is safe to call
// from many goroutines. The result shares no memory with event.
func (p *Program) Run(event []byte, now time.Time) Result {
	var res Result
	p.RunInto(&res, event, now)
	return res
}

// RunString is Run for an event already held as a string.
func (p *Program) RunString(event string, now time.Time) Result {
	var res Result
	st := p.pool.Get().(*state)
	p.runInto(st, &res, event, now.UnixMilli(), false, nil)
	p.pool.Put(st)
	return res
}

// RunInto maps one event like Run but writes the result into *dst, reusing the memory of dst's
// Requests, their Params and Headers, and its Warnings: a caller that maps a stream of events
// with one Result allocates, in the steady state, one string per sent event (the URL and every
// parameter value share it), besides what gjson allocates to unescape JSON strings that contain
// escapes. Everything *dst held before, including the Params and
// Headers slices of its requests, is overwritten: copy out what must outlive the next call
// (the strings themselves stay valid; only the slices are reused). After a call that does not
// send, Requests is empty but may keep its capacity. The result shares no memory with event,
// which the caller may reuse as soon as RunInto returns.
//
// RunInto is safe to call from many goroutines on one Program, each with its own dst.
func (p *Program) RunInto(dst *Result, event []byte, now time.Time) {
	st := p.pool.Get().(*state)
	// The event is read in place: nothing of it outlives the call except through finish, which
	// copies.
	p.runInto(st, dst, unsafe.String(unsafe.SliceData(event), len(event)), now.UnixMilli(), false, nil)
	p.pool.Put(st)
}

// RunStoredInto is RunInto for an event that ingest already checked is well-formed JSON (an
// entry read back from the queue, whose frames are checksummed): it skips the validity scan,
// about a tenth of the mapping's time. Given JSON that is not well-formed it does not reject
// the event as RunInto does, and what it maps is undefined.
func (p *Program) RunStoredInto(dst *Result, event []byte, now time.Time) {
	st := p.pool.Get().(*state)
	p.runInto(st, dst, unsafe.String(unsafe.SliceData(event), len(event)), now.UnixMilli(), true, nil)
	p.pool.Put(st)
}

// Explain maps one event like Run and also returns a trace of every decision.
func (p *Program) Explain(event []byte, now time.Time) (Result, *Trace) {
	st := p.pool.Get().(*state)
	tr := &Trace{}
	var res Result
	p.runInto(st, &res, string(event), now.UnixMilli(), false, tr)
	p.pool.Put(st)
	return res, tr
}

// runInto runs the program and writes the outcome into dst, keeping dst's slices for reuse.
func (p *Program) runInto(st *state, dst *Result, event string, now int64, checked bool, tr *Trace) {
	st.buf = st.buf[:0]
	st.warnings = st.warnings[:0]
	st.budget = budget{}
	reqs, warns := dst.Requests[:0], dst.Warnings[:0]
	res, m := p.run(st, event, now, checked, tr)
	if le := st.budget.err; le != nil && (res.Outcome != Rejected || res.Code != RejectExpression) {
		// An expression went past a limit: the event fails whatever on_error, a when or a
		// template would make of the error, so a runaway expression is never half-applied.
		name := res.Mapping
		if m != nil {
			name = m.name
		}
		res, m = rejected(name, RejectExpression, le.Error()), nil
	}
	if m == nil {
		*dst = res
		dst.Requests, dst.Warnings = reqs, warns
		return
	}
	*dst = Result{Outcome: Send, Mapping: m.name, Requests: reqs, Warnings: append(warns, st.warnings...)}
	st.finish(dst, m)
	if tr != nil {
		tr.Result = dst.Requests[0].URL
	}
}

// finish builds the request of a sent event into dst: the URL and every value the request
// keeps go into one new string, so the result owns its memory and costs one allocation when
// dst's slices are large enough. A name or value that URL encoding leaves unchanged is a
// substring of the URL; the others follow the URL as they are.
func (st *state) finish(dst *Result, m *cmapping) {
	params, headers := st.params, st.headers
	b := append(st.out[:0], m.url...)
	spans := st.spans[:0]
	for i := range params {
		if i == 0 {
			b = append(b, '?')
		} else {
			b = append(b, '&')
		}
		var n, v span
		b, n = appendQueryEscapeSpan(b, params[i].Name)
		b = append(b, '=')
		b, v = appendQueryEscapeSpan(b, params[i].Value)
		spans = append(spans, n, v)
	}
	urlEnd := len(b)
	for i := range params {
		if spans[2*i].start < 0 {
			spans[2*i] = span{len(b), len(b) + len(params[i].Name)}
			b = append(b, params[i].Name...)
		}
		if spans[2*i+1].start < 0 {
			spans[2*i+1] = span{len(b), len(b) + len(params[i].Value)}
			b = append(b, params[i].Value...)
		}
	}
	for i := range headers {
		spans = append(spans, span{len(b), len(b) + len(headers[i].Value)})
		b = append(b, headers[i].Value...)
	}
	text := string(b)
	st.out, st.spans = b, spans

	if cap(dst.Requests) == 0 {
		dst.Requests = make([]Request, 1)
	} else {
		dst.Requests = dst.Requests[:1]
	}
	req := &dst.Requests[0]
	out := req.Params[:0]
	if out == nil || cap(out) < len(params) {
		out = make([]Param, 0, len(params))
	}
	for i := range params {
		n, v := spans[2*i], spans[2*i+1]
		out = append(out, Param{Name: text[n.start:n.end], Value: text[v.start:v.end]})
	}
	hs := req.Headers[:0]
	if cap(hs) < len(headers) {
		hs = make([]Param, 0, len(headers))
	}
	for i := range headers {
		v := spans[2*len(params)+i]
		hs = append(hs, Param{Name: headers[i].Name, Value: text[v.start:v.end]})
	}
	*req = Request{Method: m.endpoint.Method, Endpoint: m.endpoint.Path, URL: text[:urlEnd], Params: out, Headers: hs}
}

func rejected(mapping, code, msg string) Result {
	return Result{Outcome: Rejected, Mapping: mapping, Code: code, Error: msg}
}

// run maps the event. When it sends, it returns the mapping that applied and leaves the
// request's parameters, headers and warnings in st for finish; otherwise it returns the Result
// and a nil mapping. checked skips the JSON validity scan (see RunStoredInto).
func (p *Program) run(st *state, event string, now int64, checked bool, tr *Trace) (Result, *cmapping) {
	if !checked && !gjson.Valid(event) {
		return rejected("", RejectInvalidJSON, "the event is not valid JSON"), nil
	}
	root := gjson.Parse(event)
	if !root.IsObject() {
		return rejected("", RejectInvalidJSON, "the event is a JSON "+fromResult(root).Kind.String()+", want an object"), nil
	}
	clear(st.slots)
	st.materialized = false
	st.caps.reset(len(st.slots))
	p.paths.walk(root, st.slots, &st.caps)

	if f := p.filter; f != nil {
		if ev := st.slots[f.eventSlot]; ev.Type == gjson.String {
			if listed := f.names[ev.Str]; listed != f.allow {
				verdict := "is in the preset's deny list"
				if f.allow {
					verdict = "is not in the preset's allow list"
				}
				return Result{Outcome: Skipped, Reason: fmt.Sprintf("event %q %s", ev.Str, verdict)}, nil
			}
		}
	}
	var m *cmapping
	for _, cand := range p.mappings {
		if cand.when == nil {
			m = cand
			tr.when(cand.name, "", true, nil)
			break
		}
		ok, err := p.evalBool(st, cand.when)
		tr.when(cand.name, cand.doc.When, ok, err)
		if err == errNotBool {
			return rejected(cand.name, RejectExpression, fmt.Sprintf("when of mapping %q did not return true or false", cand.name)), nil
		}
		// Any other run-time error (a comparison with a missing property, say) means the
		// condition does not hold; explain shows the error.
		if ok {
			m = cand
			break
		}
	}
	if m == nil {
		t := fromResult(root.Get("type"))
		return Result{Outcome: Skipped, Reason: fmt.Sprintf("no mapping of preset %q applies to this event (type %s)", p.Name, t.JSON())}, nil
	}
	if tr != nil {
		tr.Mapping = m.name
	}
	if m.skip != nil {
		return Result{Outcome: Skipped, Mapping: m.name, Reason: strings.Clone(p.render(st, m.skip))}, nil
	}
	if m.rejMsg != nil {
		return rejected(m.name, m.rejCode, strings.Clone(p.render(st, m.rejMsg))), nil
	}

	params := st.params[:0]
	for _, f := range m.fields {
		v, out := p.evalField(st, f, tr)
		if out != nil {
			out.Mapping = m.name
			return *out, nil
		}
		if v.Kind != Missing {
			params = append(params, Param{Name: f.name, Value: st.queryText(v)})
		}
	}
	headers := st.headers[:0]
	for _, f := range m.headers {
		v, out := p.evalField(st, f, tr)
		if out != nil {
			out.Mapping = m.name
			return *out, nil
		}
		if v.Kind != Missing {
			headers = append(headers, Param{Name: f.name, Value: st.queryText(v)})
		}
	}
	st.headers = headers
	nExplicit := len(params)
	for _, s := range m.spreads {
		var code, msg string
		params, code, msg = p.spread(st, s, params, nExplicit, tr)
		if code != "" {
			st.params = params
			return rejected(m.name, code, msg), nil
		}
	}
	st.params = params

	params, res := p.checkIdentity(params, tr)
	if res != nil {
		res.Mapping = m.name
		return *res, nil
	}
	if m.needEvent && indexOf(params, p.bp.EventParam) < 0 {
		return rejected(m.name, RejectContract, fmt.Sprintf("no %q parameter: %s records events and needs one", p.bp.EventParam, m.endpoint.Path)), nil
	}
	if tp := p.contract.TimestampParam; tp != "" {
		if i := indexOf(params, tp); i >= 0 {
			ts, err := strconv.ParseInt(params[i].Value, 10, 64)
			if err != nil {
				return rejected(m.name, RejectBadValue, fmt.Sprintf("parameter %q must be epoch milliseconds, got %q", tp, params[i].Value)), nil
			}
			if ts > now+p.contract.MaxFutureMs {
				switch p.contract.OnFuture {
				case "clamp":
					params[i].Value = st.appendInt(now)
					st.warnings = append(st.warnings, fmt.Sprintf("timestamp %d was in the future; clamped to now (%d)", ts, now))
				case "drop":
					params = append(params[:i], params[i+1:]...)
					st.warnings = append(st.warnings, fmt.Sprintf("timestamp %d was in the future; dropped", ts))
				default:
					return rejected(m.name, RejectFuture, fmt.Sprintf("timestamp %s is %s in the future; Woopra does not report future events reliably",
						time.UnixMilli(ts).UTC().Format(time.RFC3339Nano), aheadBy(ts-now))), nil
				}
			}
		}
	}
	st.params = params
	return Result{}, m
}

// view returns the bytes of buf from start as a string, without copying; see state.
func (st *state) view(start int) string {
	b := st.buf[start:]
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// appendInt writes n in decimal to the scratch text.
func (st *state) appendInt(n int64) string {
	start := len(st.buf)
	st.buf = strconv.AppendInt(st.buf, n, 10)
	return st.view(start)
}

// queryText is Value.QueryText, compacting JSON into the scratch text instead of allocating.
func (st *state) queryText(v Value) string {
	switch v.Kind {
	case Object, Array:
		if !needsCompact(v.Text) {
			return v.Text
		}
		start := len(st.buf)
		st.buf = appendCompact(st.buf, v.Text)
		return st.view(start)
	case Null, Missing:
		return ""
	}
	return v.Text
}

// convert is the package's convert with its common results written to the scratch text.
func (st *state) convert(c Conversion, v Value) (Value, error) {
	switch c {
	case AsEpochMs:
		ms, err := EpochMillis(v)
		if err != nil {
			return Value{}, err
		}
		return Value{Kind: Number, Text: st.appendInt(ms)}, nil
	case AsString:
		return Value{Kind: String, Text: st.queryText(v)}, nil
	}
	return convert(c, v)
}

// aheadBy renders a positive number of milliseconds for humans, without overflowing
// time.Duration for timestamps centuries ahead.
func aheadBy(ms int64) string {
	if ms < 48*3600*1000 {
		return (time.Duration(ms) * time.Millisecond).String()
	}
	return strconv.FormatInt(ms/(24*3600*1000), 10) + " days"
}

func indexOf(params []Param, name string) int {
	for i := range params {
		if params[i].Name == name {
			return i
		}
	}
	return -1
}

// first returns the rank in Order of the highest identifier params carries with a value, and
// its index in params; -1, -1 when there is none.
func (id *IdentityPolicy) first(params []Param) (rank, index int) {
	for i, name := range id.Order {
		if j := indexOf(params, name); j >= 0 && params[j].Value != "" {
			return i, j
		}
	}
	return -1, -1
}

func (p *Program) checkIdentity(params []Param, tr *Trace) ([]Param, *Result) {
	id := p.identity
	if len(id.Order) == 0 {
		return params, nil
	}
	best, _ := id.first(params)
	if best < 0 {
		if tr != nil {
			tr.identity(fmt.Sprintf("order %s: none present; when_none: %s", strings.Join(id.Order, " > "), id.WhenNone))
		}
		if id.WhenNone == "send" {
			return params, nil
		}
		return params, &Result{Outcome: Rejected, Code: RejectNoIdentity,
			Error: fmt.Sprintf("the event has no visitor identifier: none of %s is present; Woopra could not attribute it to a profile", strings.Join(id.Order, ", "))}
	}
	if tr != nil {
		tr.identity(fmt.Sprintf("order %s: %s wins; send %s", strings.Join(id.Order, " > "), id.Order[best], id.Send))
	}
	if id.Send == "highest" {
		for _, lower := range id.Order[best+1:] {
			if j := indexOf(params, lower); j >= 0 {
				params = append(params[:j], params[j+1:]...)
			}
		}
	}
	return params, nil
}

// materialize converts the values expressions read into Go values, once per event.
func (p *Program) materialize(st *state) {
	if st.materialized {
		return
	}
	for _, s := range p.exprSlots {
		st.env.P[s] = fromResult(st.slots[s]).toAny()
	}
	st.materialized = true
}

func (p *Program) evalAny(st *state, prog *program, value any) (any, error) {
	p.materialize(st)
	st.env.Value = value
	out, err := st.vm.Run(prog.vm, &st.env)
	st.env.Value = nil
	if err == nil {
		switch out.(type) {
		case string, bool, int, float64, nil:
		default:
			err = checkEncoded("the expression's result", out)
		}
	}
	if err != nil {
		le := asLimit(err)
		if le == nil && strings.Contains(err.Error(), "memory budget exceeded") {
			le = limitErr("the ranges, arrays and maps built are over expr's memory budget of %d elements", st.vm.MemoryBudget)
		}
		if le != nil {
			st.budget.fail(le)
			return nil, le
		}
		return nil, cleanExprError(err)
	}
	return out, nil
}

func (p *Program) evalBool(st *state, prog *program) (bool, error) {
	if prog.boolFn != nil {
		if v, ok := prog.boolFn(st.slots); ok {
			return v, nil
		}
		return false, errNativeFailed
	}
	out, err := p.evalAny(st, prog, nil)
	if err != nil {
		// expr's AsBool cast reports a non-boolean result this way.
		if strings.HasPrefix(err.Error(), "invalid operation: bool(") {
			return false, errNotBool
		}
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, errNotBool
	}
	return b, nil
}

const (
	errNotBool      = valueError("the condition did not return a boolean")
	errNativeFailed = valueError("the condition cannot be evaluated on this event (a value of the wrong type)")
)

// render fills a template's placeholders. The text is written to the scratch text: a caller
// that keeps it past the run copies it.
func (p *Program) render(st *state, t *template) string {
	if len(t.parts) == 1 && t.parts[0].prog == nil && t.parts[0].slot < 0 {
		return t.parts[0].lit
	}
	start := len(st.buf)
	for _, part := range t.parts {
		switch {
		case part.slot >= 0:
			st.appendQueryText(fromResult(st.slots[part.slot]))
		case part.prog != nil:
			out, err := p.evalAny(st, part.prog, nil)
			if err == nil {
				v, _ := fromAny(out)
				st.appendQueryText(v)
			}
		default:
			st.buf = append(st.buf, part.lit...)
		}
	}
	return st.view(start)
}

// appendQueryText writes v's QueryText to the scratch text.
func (st *state) appendQueryText(v Value) {
	switch v.Kind {
	case Object, Array:
		st.buf = appendCompact(st.buf, v.Text)
	case String, Number, Bool:
		st.buf = append(st.buf, v.Text...)
	}
}

// evalField computes one field. A non-nil Result ends the event (rejected or skipped).
func (p *Program) evalField(st *state, f *cfield, tr *Trace) (Value, *Result) {
	var v Value
	var ft *FieldTrace
	if tr != nil {
		ft = tr.field(f)
	}
	switch f.src {
	case srcPath:
		v = fromResult(st.slots[f.slot])
		if why := f.present.absence(v); why != "" {
			if ft != nil {
				ft.step("%s: %s", f.doc.Path, why)
			}
			v = Value{}
		} else {
			if ft != nil {
				ft.step("%s = %s", f.doc.Path, v.JSON())
			}
		}
	case srcFirst:
		for i, s := range f.slots {
			c := fromResult(st.slots[s])
			if why := f.present.absence(c); why != "" {
				if ft != nil {
					ft.step("first[%d] %s: %s", i, f.doc.First[i], why)
				}
				continue
			}
			if ft != nil {
				ft.step("first[%d] %s = %s (wins)", i, f.doc.First[i], c.JSON())
			}
			v = c
			break
		}
	case srcConst:
		v = f.constant
		if f.doc.Source == "setting" {
			if ft != nil && v.Kind == Missing {
				ft.step("setting %s is unset", f.doc.Setting)
			} else if ft != nil {
				ft.step("setting %s = %s", f.doc.Setting, v.JSON())
			}
		} else {
			if ft != nil {
				ft.step("value %s", v.JSON())
			}
		}
	case srcTemplate:
		v = Value{Kind: String, Text: p.render(st, f.tmpl)}
		if ft != nil {
			ft.step("template -> %s", v.JSON())
		}
	case srcExpr:
		out, err := p.evalAny(st, f.prog, nil)
		if err != nil {
			return Value{}, p.fieldError(f, ft, fmt.Errorf("expr: %w", err), RejectExpression)
		}
		cv, err := fromAny(out)
		if err != nil {
			return Value{}, p.fieldError(f, ft, err, RejectExpression)
		}
		v = cv
		if ft != nil {
			ft.step("expr -> %s", v.JSON())
		}
	}
	if f.src != srcFirst && f.src != srcPath {
		if why := f.present.absence(v); why != "" {
			v = Value{}
		}
	} else if v.Kind == Null && f.present != PresentDefined {
		v = Value{}
	}
	if v.Kind == Missing && f.def != nil {
		v = *f.def
		if ft != nil {
			ft.step("default %s", v.JSON())
		}
	}
	if v.Kind == Missing {
		if f.required {
			ft.done(v)
			return v, &Result{Outcome: Rejected, Code: RejectMissing, Error: fmt.Sprintf("required field %q has no value (%s)", f.name, f.sourceText())}
		}
		ft.done(v)
		return v, nil
	}
	if f.table != nil {
		key := st.queryText(v)
		if ft != nil {
			ft.Table = f.table.Name
		}
		if out, ok := f.table.find(key); ok {
			if ft != nil {
				ft.Row = strings.Clone(key)
				ft.step("table %s: %q -> %q", f.table.Name, key, out)
			}
			v = Value{Kind: String, Text: out}
		} else {
			switch f.table.Otherwise {
			case "drop":
				if ft != nil {
					ft.step("table %s: %q not found; dropped", f.table.Name, key)
				}
				ft.done(Value{})
				return Value{}, nil
			case "skip":
				if ft != nil {
					ft.step("table %s: %q not found; event skipped", f.table.Name, key)
				}
				return v, &Result{Outcome: Skipped, Reason: fmt.Sprintf("%s %q is not in table %q", f.name, key, f.table.Name)}
			case "value":
				if ft != nil {
					ft.step("table %s: %q not found; otherwise %q", f.table.Name, key, f.table.OtherValue)
				}
				v = Value{Kind: String, Text: f.table.OtherValue}
			default:
				if ft != nil {
					ft.step("table %s: %q not found; kept", f.table.Name, key)
				}
			}
		}
	}
	if f.transform != nil {
		cv, err := p.transform(st, f.transform, v)
		if err != nil {
			return Value{}, p.fieldError(f, ft, err, RejectExpression)
		}
		if ft != nil {
			ft.step("transform -> %s", cv.JSON())
		}
		v = cv
		if why := f.present.absence(v); why != "" {
			// A transform can empty a value (trim of "  "): the presence rule applies again.
			if ft != nil {
				ft.step("after transform: %s", why)
			}
			ft.done(Value{})
			if f.required {
				return Value{}, &Result{Outcome: Rejected, Code: RejectMissing, Error: fmt.Sprintf("required field %q has no value (%s, then transform)", f.name, f.sourceText())}
			}
			return Value{}, nil
		}
	}
	if f.as != AsNone {
		cv, err := st.convert(f.as, v)
		if err != nil {
			return Value{}, p.fieldError(f, ft, err, RejectBadValue)
		}
		if ft != nil {
			ft.step("as %s -> %s", f.as, cv.JSON())
		}
		v = cv
	}
	ft.done(v)
	return v, nil
}

// transform runs a transform expression on the present value v. A result equal to the value it
// was given keeps v's text as written, so an object a transform passes through keeps its key
// order.
func (p *Program) transform(st *state, prog *program, v Value) (Value, error) {
	if prog.strFn != nil && v.Kind == String {
		return Value{Kind: String, Text: st.applyStrOps(prog.strOps, v.Text)}, nil
	}
	if prog.dropStr != nil && v.Kind == String {
		if v.Text == *prog.dropStr {
			return Value{}, nil
		}
		return v, nil
	}
	in := v.toAny()
	out, err := p.evalAny(st, prog, in)
	if err != nil {
		return Value{}, fmt.Errorf("transform: %v", err)
	}
	if (v.Kind == Object || v.Kind == Array) && reflect.DeepEqual(out, in) {
		return v, nil
	}
	return fromAny(out)
}

func (f *cfield) sourceText() string {
	switch f.doc.Source {
	case "path":
		return "path " + f.doc.Path
	case "first":
		return "first of " + strings.Join(f.doc.First, ", ")
	case "setting":
		return "setting " + f.doc.Setting + " is unset"
	}
	return f.doc.Source
}

// fieldError turns a failed conversion into a rejection, or drops the field under on_error: drop.
func (p *Program) fieldError(f *cfield, ft *FieldTrace, err error, code string) *Result {
	if f.dropOnErr && asLimit(err) == nil {
		if ft != nil {
			ft.step("error %v; dropped (on_error: drop)", err)
		}
		ft.done(Value{})
		return nil
	}
	if ft != nil {
		ft.step("error %v; event rejected", err)
	}
	return &Result{Outcome: Rejected, Code: code, Error: fmt.Sprintf("field %q: %v", f.name, err)}
}

// find looks a key up, folding case when the table says so.
func (t *Table) find(key string) (string, bool) {
	if t.Fold {
		key = strings.ToLower(key)
	}
	v, ok := t.Rows[key]
	return v, ok
}

func (s *cspread) excluded(k string) bool {
	if s.exact[k] {
		return true
	}
	for _, g := range s.globs {
		if g.match(k) {
			return true
		}
	}
	return false
}

// glob is a pattern where * stands for any run of characters, split at its stars once at load.
type glob struct {
	parts []string
}

func compileGlob(pattern string) glob { return glob{parts: strings.Split(pattern, "*")} }

func (g glob) match(s string) bool {
	parts := g.parts
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		j := strings.Index(s, mid)
		if j < 0 {
			return false
		}
		s = s[j+len(mid):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// spreader is one spread's walk over its object.
type spreader struct {
	p         *Program
	st        *state
	s         *cspread
	params    []Param
	nExplicit int
	start     int // where this spread's own parameters begin in params
	tr        *SpreadTrace
	code, msg string // a rejection (spread_conflict under conflict: reject, or a failed conversion)
}

// spread copies the keys of the spread's object. It returns a non-empty code and message when
// the event is rejected: a key collided under the policy reject, or a conversion failed under
// on_error: reject.
func (p *Program) spread(st *state, s *cspread, params []Param, nExplicit int, tr *Trace) ([]Param, string, string) {
	var src gjson.Result
	var st0 *SpreadTrace
	if tr != nil {
		st0 = tr.spread(s)
	}
	srcSlot := -1
	for i, slot := range s.slots {
		r := st.slots[slot]
		if r.IsObject() && s.present.absence(Value{Kind: Object, Text: r.Raw}) == "" {
			src, srcSlot = r, slot
			if st0 != nil {
				st0.From = s.doc.From[i]
			}
			break
		}
	}
	if !src.IsObject() {
		return params, "", ""
	}
	w := spreader{p: p, st: st, s: s, params: params, nExplicit: nExplicit, start: len(params), tr: st0}
	if s.paths {
		st.nodes, st.heads = st.nodes[:0], st.heads[:0]
		if st.headIndex == nil {
			st.headIndex = map[string]int{}
		}
		clear(st.headIndex)
	}
	if members, ok := st.caps.of(srcSlot); ok {
		for _, m := range members {
			if !w.key(m.key, m.val, "", 1) {
				break
			}
		}
	} else {
		w.walk(src, "", 1)
	}
	if s.paths {
		for _, h := range st.heads {
			w.params[h.param].Value = st.headValue(h.node)
		}
	}
	return w.params, w.code, w.msg
}

// walk copies the keys of obj; keyPrefix is the flattened key of obj ("" at the top).
func (w *spreader) walk(obj gjson.Result, keyPrefix string, depth int) {
	obj.ForEach(func(k, val gjson.Result) bool { return w.key(k.Str, val, keyPrefix, depth) })
}

// key handles one key of the spread's object; it returns false to stop the walk.
func (w *spreader) key(key string, val gjson.Result, keyPrefix string, depth int) bool {
	st, s := w.st, w.s
	// The parameter name, prefix + flattened key, is written to the scratch text; the key is
	// its tail.
	start := len(st.buf)
	st.buf = append(st.buf, s.prefix...)
	if keyPrefix != "" {
		st.buf = append(st.buf, keyPrefix...)
		st.buf = append(st.buf, s.sep...)
	}
	st.buf = append(st.buf, key...)
	name := st.view(start)
	key = name[len(s.prefix):]
	if key == "" {
		return true
	}
	if s.excluded(key) {
		w.tr.add(excludedKey, key, "")
		return true
	}
	// With keys: path, a key that is a path names its parameter by its first segment and
	// writes below it; the rest of the path is in st.segs.
	nested := false
	if s.paths && isDeepKey(key) {
		st.segs = lodashPath(st.segs[:0], name)
		name, nested = st.segs[0], true
		if len(name) <= len(s.prefix) || name[:len(s.prefix)] != s.prefix {
			w.tr.add(excludedKey, key, " (no parameter name before the path)")
			return true
		}
	}
	v := fromResult(val)
	if !nested && s.present.absence(v) != "" {
		return true
	}
	if v.Kind == Object {
		switch {
		case s.nested == "skip":
			w.tr.add(excludedKey, key, " (object)")
			return true
		case s.nested == "flatten" && depth < s.maxDepth:
			w.walk(val, key, depth+1)
			return true
		}
	}
	note := ""
	if s.convert {
		var ok bool
		if v, note, ok = w.convert(key, v); !ok {
			return w.code == ""
		}
	}
	if s.paths {
		return w.setPath(name, key, nested, v, note)
	}
	i := w.place(name, key, len(w.params))
	switch {
	case i < 0:
		return w.code == ""
	case i < len(w.params):
		w.params[i].Value = st.queryText(v)
	default:
		w.params = append(w.params, Param{Name: name, Value: st.queryText(v)})
		w.tr.add(copiedKey, key, note)
	}
	return true
}

// place decides where the parameter name goes for the spread's key (a nested key names the
// parameter it nests into), against the explicit fields and the parameters earlier spreads
// sent (params[nExplicit:end]): it returns the index of the explicit parameter it replaces
// (spread_wins), len(params) to append it, or -1 when it is not sent. It traces collisions and
// leaves a reject policy's clash in w.
func (w *spreader) place(name, key string, end int) int {
	s := w.s
	if s.explicit[name[len(s.prefix):]] {
		switch s.conflict {
		case "explicit_wins":
			w.collided(name, key, "explicit wins")
			return -1
		case "explicit_when_present":
			if indexOf(w.params[:w.nExplicit], name) >= 0 {
				w.collided(name, key, "explicit wins")
				return -1
			}
		case "reject":
			w.code, w.msg = RejectSpreadClash, fmt.Sprintf("spread key %q collides with the explicit field %s", key, name)
			return -1
		default: // spread_wins
			if i := indexOf(w.params[:w.nExplicit], name); i >= 0 {
				w.collided(name, key, "spread wins")
				return i
			}
		}
	}
	if indexOf(w.params[w.nExplicit:end], name) >= 0 {
		w.collided(name, key, "an earlier spread wins")
		return -1
	}
	return len(w.params)
}

// collided traces a key that collided over the parameter name, saying which side won and, for
// a nested key, the parameter it nests into.
func (w *spreader) collided(name, key, how string) {
	if w.tr == nil {
		return
	}
	if key != name[len(w.s.prefix):] {
		how = "nested into " + name + "; " + how
	}
	w.tr.add(collidedKey, key, " ("+how+")")
}

// setPath writes one key of a keys: path spread: v becomes the value of the parameter name, or,
// when the key is nested, is set at the rest of its path (st.segs[1:]) below it. The first
// write to a parameter places it against the explicit fields and earlier spreads; later ones
// merge into it or, for a plain key, replace it.
func (w *spreader) setPath(name, key string, nested bool, v Value, note string) bool {
	st := w.st
	h, ok := st.headIndex[name]
	if !ok {
		i := w.place(name, key, w.start)
		if i < 0 {
			return w.code == ""
		}
		if i == len(w.params) {
			w.params = append(w.params, Param{Name: name})
		}
		h = len(st.heads)
		st.heads = append(st.heads, headRef{param: int32(i), node: st.newNode(Value{}, "", 0)})
		st.headIndex[name] = h
	}
	node := st.heads[h].node
	if nested {
		st.setIn(node, st.segs[1:], v)
		if w.tr != nil {
			note += " (nested into " + name + ")"
		}
	} else {
		st.setLeaf(node, v)
	}
	w.tr.add(copiedKey, key, note)
	return true
}

// convert applies the spread's transform and conversion to one value. It returns false when
// the key is not sent: its value became absent, or the conversion failed under on_error: drop
// or reject (the rejection is then in w). The note tells explain what was done.
func (w *spreader) convert(key string, v Value) (Value, string, bool) {
	s, st := w.s, w.st
	in, note := v, ""
	if s.trans != nil {
		cv, err := w.p.transform(st, s.trans, v)
		if err != nil {
			return w.convertError(key, in, err, RejectExpression)
		}
		if w.tr != nil {
			note = " (transform -> " + cv.JSON() + ")"
		}
		if why := s.present.absence(cv); why != "" {
			w.tr.add(excludedKey, key, " (after transform: "+why+")")
			return cv, "", false
		}
		v = cv
	}
	if s.as != AsNone {
		cv, err := st.convert(s.as, v)
		if err != nil {
			return w.convertError(key, in, err, RejectBadValue)
		}
		if w.tr != nil {
			note += " (as " + s.as.String() + " -> " + cv.JSON() + ")"
		}
		v = cv
	}
	return v, note, true
}

// convertError applies the spread's on_error to a failed transform or conversion of key's
// value v.
func (w *spreader) convertError(key string, v Value, err error, code string) (Value, string, bool) {
	switch w.s.onError {
	case "keep":
		note := ""
		if w.tr != nil {
			note = " (kept as is: " + err.Error() + ")"
		}
		return v, note, true
	case "drop":
		w.tr.add(excludedKey, key, " (dropped: "+err.Error()+")")
		return v, "", false
	}
	w.code, w.msg = code, fmt.Sprintf("spread key %q of %s: %v", key, w.s.prefix, err)
	return v, "", false
}

const upperhex = "0123456789ABCDEF"

// unreserved marks the bytes url.QueryEscape leaves as they are.
var unreserved = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['-'], t['_'], t['.'], t['~'] = true, true, true, true
	return t
}()

// appendQueryEscape escapes like url.QueryEscape: unreserved bytes stay, space becomes +.
func appendQueryEscape(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved[c] {
			continue
		}
		b = append(b, s[start:i]...)
		if c == ' ' {
			b = append(b, '+')
		} else {
			b = append(b, '%', upperhex[c>>4], upperhex[c&15])
		}
		start = i + 1
	}
	return append(b, s[start:]...)
}

// appendQueryEscapeSpan appends s escaped and returns where it lies in b when escaping left it
// unchanged, or a span with a negative start when it did not.
func appendQueryEscapeSpan(b []byte, s string) ([]byte, span) {
	for i := 0; i < len(s); i++ {
		if !unreserved[s[i]] {
			return appendQueryEscape(b, s), span{-1, -1}
		}
	}
	at := len(b)
	return append(b, s...), span{at, at + len(s)}
}
