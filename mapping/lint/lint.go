// Package lint finds problems in presets and mapping files beyond what the compiler rejects:
// paths that look misspelt when checked against sample events, spread keys that collide with
// explicit fields in those samples, table rows and fields that no test exercises, and the
// compiler's warnings (expressions whose cost depends on the event). Every
// finding has file:line:col, a stable code and a hint.
package lint

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/mapping/maptest"
)

// Finding codes, stable like the compiler's.
const (
	CodeMisspeltPath   = "misspelt_path"   // a path no sample has, next to one they do
	CodeSpreadConflict = "spread_conflict" // a spread key collides with an explicit field in a sample
	CodeUntestedRow    = "untested_row"    // a table row no test case exercises
	CodeUntestedField  = "untested_field"  // a field no test case sends
	CodeNoTests        = "no_tests"        // no *.test.yaml was found for the preset
	CodeTestFailure    = "test_failure"    // a test case fails
)

// Input is what to lint.
type Input struct {
	Program *mapping.Program // the compiled preset with its overlays
	Samples [][]byte         // sample events (may be empty)
	Tests   []string         // *.test.yaml files exercising the preset (may be empty)
	Test    maptest.Options  // how to run them
}

// Run returns every finding, sorted by file and position.
func Run(in Input) mapping.Diagnostics {
	var out mapping.Diagnostics
	if len(in.Samples) > 0 {
		out = append(out, misspeltPaths(in.Program, in.Samples)...)
		out = append(out, spreadConflicts(in.Program, in.Samples)...)
	}
	out = append(out, coverage(in)...)
	out = append(out, in.Program.Warnings()...)
	out.Sort()
	return out
}

func at(ref mapping.SourceRef, code, msg, hint string) mapping.Diagnostic {
	return mapping.Diagnostic{File: ref.File, Line: ref.Line, Col: ref.Col, Code: code, Msg: msg, Hint: hint}
}

// samplePaths returns every dotted key path that occurs in the samples (array elements are
// looked into, their indexes left out of the path).
func samplePaths(samples [][]byte) map[string]bool {
	set := map[string]bool{}
	var walk func(prefix string, v gjson.Result)
	walk = func(prefix string, v gjson.Result) {
		switch {
		case v.IsObject():
			v.ForEach(func(k, val gjson.Result) bool {
				p := gjson.Escape(k.Str)
				if prefix != "" {
					p = prefix + "." + p
				}
				set[p] = true
				walk(p, val)
				return true
			})
		case v.IsArray():
			v.ForEach(func(_, val gjson.Result) bool {
				walk(prefix, val)
				return true
			})
		}
	}
	for _, s := range samples {
		walk("", gjson.ParseBytes(s))
	}
	return set
}

// misspeltPaths reports paths whose plain-key prefix no sample has while a sample has a close one.
func misspeltPaths(p *mapping.Program, samples [][]byte) mapping.Diagnostics {
	known := samplePaths(samples)
	candidates := make([]string, 0, len(known))
	for k := range known {
		candidates = append(candidates, k)
	}
	sort.Strings(candidates)
	var out mapping.Diagnostics
	for _, ref := range p.Paths() {
		if len(ref.Keys) == 0 {
			continue
		}
		escaped := make([]string, len(ref.Keys))
		for i, k := range ref.Keys {
			escaped[i] = gjson.Escape(k)
		}
		// Find the deepest prefix the samples know; the first unknown key is where it goes wrong.
		for depth := 1; depth <= len(escaped); depth++ {
			prefix := strings.Join(escaped[:depth], ".")
			if known[prefix] {
				continue
			}
			if s := closest(prefix, candidates); s != "" {
				suggestion := s + strings.TrimPrefix(ref.Path, prefix)
				for _, r := range ref.Refs {
					out = append(out, at(r, CodeMisspeltPath,
						fmt.Sprintf("path %q never occurs in the %d sample events", ref.Path, len(samples)),
						"did you mean "+strconv.Quote(suggestion)+"?"))
				}
			}
			break
		}
	}
	return out
}

// closest returns the candidate with the same number of segments within edit distance 2.
func closest(path string, candidates []string) string {
	segs := strings.Count(path, ".")
	best, bestD := "", 3
	for _, c := range candidates {
		if strings.Count(c, ".") != segs {
			continue
		}
		if d := mapping.EditDistance(strings.ToLower(path), strings.ToLower(c)); d > 0 && d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// spreadConflicts runs the samples and reports each spread key that collided with an explicit
// field, once per spread rule and key.
func spreadConflicts(p *mapping.Program, samples [][]byte) mapping.Diagnostics {
	type key struct {
		ref mapping.SourceRef
		k   string
	}
	counts := map[key]int{}
	var order []key
	prefixes := map[key]string{}
	for _, s := range samples {
		_, tr := p.Explain(s, time.Now())
		for _, st := range tr.Spreads {
			for _, c := range st.Collided {
				k := key{st.SourceRef, c}
				if counts[k] == 0 {
					order = append(order, k)
					prefixes[k] = st.Prefix
				}
				counts[k]++
			}
		}
	}
	var out mapping.Diagnostics
	for _, k := range order {
		name, how, _ := strings.Cut(k.k, " (")
		how = strings.TrimSuffix(how, ")")
		becomes := "becomes " + prefixes[k] + name
		if rest, ok := strings.CutPrefix(how, "nested into "); ok { // a keys: path spread's nested key
			param, h, _ := strings.Cut(rest, "; ")
			becomes, how = "nests into "+param, h
		}
		out = append(out, at(k.ref, CodeSpreadConflict,
			fmt.Sprintf("spread key %q %s, which an explicit field also sends (%d of %d samples; %s)", name, becomes, counts[k], len(samples), how),
			"exclude the key from the spread, or remove the explicit field if the spread already sends it"))
	}
	return out
}

// coverage runs the tests and reports rows and fields none of them exercised.
func coverage(in Input) mapping.Diagnostics {
	var out mapping.Diagnostics
	if len(in.Tests) == 0 {
		return mapping.Diagnostics{{File: in.Program.File, Code: CodeNoTests,
			Msg:  "no test file exercises this preset, so rows and fields cannot be checked for coverage",
			Hint: "add " + strings.TrimSuffix(in.Program.File, ".yaml") + ".test.yaml (see `woorelay docs`)"}}
	}
	opts := in.Test
	opts.Explain = true
	rows := map[string]bool{}
	fields := map[mapping.SourceRef]bool{}
	for _, f := range in.Tests {
		results, err := maptest.RunFile(f, opts)
		if err != nil {
			out = append(out, mapping.Diagnostic{File: f, Code: CodeTestFailure, Msg: err.Error()})
			continue
		}
		for _, r := range results {
			for _, fail := range r.Failures {
				out = append(out, mapping.Diagnostic{File: r.File, Line: r.Line, Col: 1, Code: CodeTestFailure, Msg: fmt.Sprintf("case %q: %s", r.Name, fail)})
			}
			if r.Trace == nil {
				continue
			}
			for _, ft := range r.Trace.Fields {
				if ft.Row != "" {
					rows[ft.Table+"\x00"+ft.Row] = true
				}
				if !ft.Absent {
					fields[mapping.SourceRef{File: ft.File, Line: ft.Line, Col: ft.Col}] = true
				}
			}
		}
	}
	for _, row := range in.Program.TableRows() {
		key := row.Key
		if !rows[row.Table+"\x00"+key] && !rows[row.Table+"\x00"+strings.ToLower(key)] {
			out = append(out, at(row.SourceRef, CodeUntestedRow,
				fmt.Sprintf("row %q → %q of table %s is not exercised by any test", row.Key, row.Value, row.Table),
				"add a test case whose event hits this row, or remove the row"))
		}
	}
	seen := map[mapping.SourceRef]bool{}
	for _, f := range in.Program.Fields() {
		if seen[f.SourceRef] {
			continue
		}
		seen[f.SourceRef] = true
		if !fields[f.SourceRef] {
			what := "parameter"
			if f.Header {
				what = "header"
			}
			out = append(out, at(f.SourceRef, CodeUntestedField,
				fmt.Sprintf("%s %s (mapping %s) is never sent by any test", what, f.Name, f.Mapping),
				"add a test case whose event produces it"))
		}
	}
	return out
}
