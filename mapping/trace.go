package mapping

import (
	"fmt"
	"strings"
)

// Trace records every decision a run made for one event: which when chose the mapping, which
// path of each precedence list won and why the others did not, which table row fired, which
// spread keys were copied, excluded or collided, and how identity was settled. All methods are
// safe on a nil *Trace, so the hot path pays one nil check when nobody explains.
type Trace struct {
	When     []WhenStep
	Mapping  string
	Fields   []*FieldTrace
	Spreads  []*SpreadTrace
	Identity string
	Result   string
}

// WhenStep is one mapping's condition, evaluated in order.
type WhenStep struct {
	Mapping string
	When    string
	Matched bool
	Err     string
}

// FieldTrace is the history of one field.
type FieldTrace struct {
	Name   string
	Header bool // an HTTP header rather than a query parameter
	File   string
	Line   int
	Col    int
	Table  string // the lookup table consulted, if any
	Row    string // the table row that matched, if any
	Steps  []string
	Value  string // the final value as sent; "" with Absent set when nothing is sent
	Absent bool
}

// SpreadTrace is the history of one spread rule.
type SpreadTrace struct {
	SourceRef
	Prefix   string
	From     string
	Copied   []string
	Excluded []string
	Collided []string
}

func (t *Trace) when(mapping, src string, matched bool, err error) {
	if t == nil {
		return
	}
	s := WhenStep{Mapping: mapping, When: src, Matched: matched}
	if err != nil {
		s.Err = err.Error()
	}
	t.When = append(t.When, s)
}

func (t *Trace) identity(s string) {
	if t != nil {
		t.Identity = s
	}
}

func (t *Trace) field(f *cfield) *FieldTrace {
	ft := &FieldTrace{Name: f.name, Header: f.header, File: f.at.File, Line: f.at.Line, Col: f.at.Col}
	t.Fields = append(t.Fields, ft)
	return ft
}

func (t *Trace) spread(s *cspread) *SpreadTrace {
	st := &SpreadTrace{Prefix: s.prefix, SourceRef: s.at}
	t.Spreads = append(t.Spreads, st)
	return st
}

func (f *FieldTrace) step(format string, args ...any) {
	if f != nil {
		f.Steps = append(f.Steps, fmt.Sprintf(format, args...))
	}
}

func (f *FieldTrace) done(v Value) {
	if f == nil {
		return
	}
	if v.Kind == Missing {
		f.Absent = true
		return
	}
	f.Value = strings.Clone(v.QueryText()) // the run's text may be scratch memory
}

type spreadEvent uint8

const (
	copiedKey spreadEvent = iota
	excludedKey
	collidedKey
)

func (s *SpreadTrace) add(what spreadEvent, key, note string) {
	if s == nil {
		return
	}
	key = strings.Clone(key) + note // the key may be the run's scratch memory
	switch what {
	case copiedKey:
		s.Copied = append(s.Copied, key)
	case excludedKey:
		s.Excluded = append(s.Excluded, key)
	default:
		s.Collided = append(s.Collided, key)
	}
}

// String renders the trace as aligned text, one decision per line.
func (t *Trace) String() string {
	var b strings.Builder
	for _, w := range t.When {
		status := "false"
		if w.Matched {
			status = "true"
		}
		if w.Err != "" {
			status = "error: " + w.Err
		}
		when := w.When
		if when == "" {
			when = "(always)"
		}
		fmt.Fprintf(&b, "%-14s %s: when %s -> %s\n", "mapping", w.Mapping, when, status)
	}
	for _, f := range t.Fields {
		val := f.Value
		if f.Absent {
			val = "(absent)"
		}
		fmt.Fprintf(&b, "%-14s %s => %s\n", f.Name, strings.Join(f.Steps, "; "), val)
	}
	for _, s := range t.Spreads {
		from := s.From
		if from == "" {
			from = "(no object)"
		}
		fmt.Fprintf(&b, "%-14s spread %s: copied %d [%s]", s.Prefix+"*", from, len(s.Copied), strings.Join(s.Copied, ", "))
		if len(s.Excluded) > 0 {
			fmt.Fprintf(&b, "; excluded [%s]", strings.Join(s.Excluded, ", "))
		}
		if len(s.Collided) > 0 {
			fmt.Fprintf(&b, "; collided [%s]", strings.Join(s.Collided, ", "))
		}
		b.WriteByte('\n')
	}
	if t.Identity != "" {
		fmt.Fprintf(&b, "%-14s %s\n", "identity", t.Identity)
	}
	if t.Result != "" {
		fmt.Fprintf(&b, "%-14s %s\n", "result", t.Result)
	}
	return b.String()
}
