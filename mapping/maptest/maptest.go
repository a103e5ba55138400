// Package maptest runs the *.test.yaml files that sit beside presets and mapping files: each
// case feeds one event through a compiled preset (with overlays, settings and a frozen clock)
// and checks the outcome, parameters, headers, rejection code, skip reason or a golden request.
// `woorelay test` and `go test` both use it, so every preset's tests run in CI.
package maptest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/tidwall/gjson"
	"gopkg.in/yaml.v3"

	"github.com/woorelay/woorelay/mapping"
)

// FileSpec is the schema of a test file.
var FileSpec = mapping.ObjectSpec{
	Name: "test file",
	Doc:  "Tests beside a preset or mapping file, named <name>.test.yaml and run by `woorelay test` and `go test`.",
	Keys: []mapping.KeySpec{
		{Name: "kind", Type: "test", Required: true, Doc: "Always `test`."},
		{Name: "preset", Type: "string", Required: true, Doc: "The preset under test: a path relative to this file, or a built-in preset name."},
		{Name: "mappings", Type: "list of folders", Doc: "Mapping folders laid over the preset (as --mappings), relative to this file."},
		{Name: "now", Type: "RFC 3339 time", Doc: "The frozen clock every case runs at (default 2026-01-01T00:00:00Z)."},
		{Name: "settings", Type: "map of string", Doc: "Settings for every case (as --set)."},
		{Name: "tests", Type: "list of case", Required: true, Doc: "The cases."},
	},
}

// CaseSpec is the schema of one test case.
var CaseSpec = mapping.ObjectSpec{
	Name: "case",
	Doc:  "One event and what must come of it.",
	Keys: []mapping.KeySpec{
		{Name: "name", Type: "string", Required: true, Doc: "What the case shows."},
		{Name: "event", Type: "object", Doc: "The input event, inline."},
		{Name: "event_file", Type: "string", Doc: "The input event, from a JSON file relative to this file."},
		{Name: "settings", Type: "map of string", Doc: "Settings for this case, over the file's."},
		{Name: "expect", Type: "expect", Required: true, Doc: "What must come of the event."},
	},
}

// ExpectSpec is the schema of a case's expectations.
var ExpectSpec = mapping.ObjectSpec{
	Name: "expect",
	Doc:  "Checks on the outcome. Every given key must hold.",
	Keys: []mapping.KeySpec{
		{Name: "outcome", Type: "send | rejected | skipped", Doc: "The outcome (default: send, or rejected when code is given, or skipped when reason is given)."},
		{Name: "mapping", Type: "string", Doc: "The mapping that applied."},
		{Name: "endpoint", Type: "string", Doc: "The request's endpoint path (/track/ce)."},
		{Name: "method", Type: "string", Doc: "The request's HTTP method."},
		{Name: "params", Type: "map of string", Doc: "Parameters that must be sent with exactly these values (as Woopra decodes them)."},
		{Name: "only_params", Type: "bool", Doc: "No parameter beyond those in params is sent."},
		{Name: "absent", Type: "list of strings", Doc: "Parameters that must not be sent."},
		{Name: "headers", Type: "map of string", Doc: "Headers that must be sent with these values."},
		{Name: "code", Type: "string", Doc: "The rejection code."},
		{Name: "error", Type: "string", Doc: "Text the rejection message must contain."},
		{Name: "reason", Type: "string", Doc: "Text the skip reason must contain."},
		{Name: "golden", Type: "string", Doc: "A file (relative to the test file) holding the whole result as `woorelay transform` prints it; `-update` rewrites it."},
	},
}

// Options says how to find presets and whether to rewrite golden files.
type Options struct {
	// Blueprint is the blueprint presets compile against.
	Blueprint *mapping.Blueprint
	// Resolve finds a built-in preset by name; nil means only files are accepted.
	Resolve func(name string) (mapping.Source, error)
	// Update rewrites golden files instead of comparing them.
	Update bool
	// Explain runs every case with a trace (CaseResult.Trace), for coverage.
	Explain bool
}

// CaseResult is the verdict on one case.
type CaseResult struct {
	File     string   // the test file
	Line     int      // the case's line in it
	Name     string   // the case's name
	Failures []string // empty when the case passed
	Result   mapping.Result
	Trace    *mapping.Trace // with Options.Explain
}

// Passed reports whether every expectation held.
func (c CaseResult) Passed() bool { return len(c.Failures) == 0 }

type testFile struct {
	path     string
	preset   string
	mappings []string
	now      time.Time
	settings map[string]string
	cases    []testCase
}

type testCase struct {
	name     string
	line     int
	event    []byte
	settings map[string]string
	expect   expect
}

type expect struct {
	outcome    string
	mapping    string
	endpoint   string
	method     string
	params     map[string]string
	paramOrder []string
	onlyParams bool
	absent     []string
	headers    map[string]string
	code       string
	errText    string
	reason     string
	golden     string
}

// RunFile runs every case of one test file. A file that cannot be read or compiled is an error;
// failing cases are reported in the results.
func RunFile(path string, opts Options) ([]CaseResult, error) {
	tf, err := parseFile(path)
	if err != nil {
		return nil, err
	}
	progs := map[string]*mapping.Program{}
	var out []CaseResult
	for _, tc := range tf.cases {
		cr := CaseResult{File: path, Line: tc.line, Name: tc.name}
		settings := map[string]string{}
		for k, v := range tf.settings {
			settings[k] = v
		}
		for k, v := range tc.settings {
			settings[k] = v
		}
		key := settingsKey(settings)
		prog := progs[key]
		if prog == nil {
			prog, err = compile(tf, settings, opts)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: compiling %s for case %q:\n%w", path, tc.line, tf.preset, tc.name, err)
			}
			progs[key] = prog
		}
		if opts.Explain {
			cr.Result, cr.Trace = prog.Explain(tc.event, tf.now)
		} else {
			cr.Result = prog.Run(tc.event, tf.now)
		}
		cr.Failures = check(tf, tc, cr.Result, opts)
		out = append(out, cr)
	}
	return out, nil
}

func settingsKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + m[k] + "\x00")
	}
	return b.String()
}

// compile loads the preset and overlays of a test file.
func compile(tf *testFile, settings map[string]string, opts Options) (*mapping.Program, error) {
	src, err := presetSource(tf, opts)
	if err != nil {
		return nil, err
	}
	var overlays []mapping.Source
	for _, dir := range tf.mappings {
		ov, err := mapping.LoadDir(filepath.Join(filepath.Dir(tf.path), dir))
		if err != nil {
			return nil, err
		}
		overlays = append(overlays, ov...)
	}
	return mapping.Compile(src, mapping.Options{Blueprint: opts.Blueprint, Settings: settings, SettingsFile: tf.path, Overlays: overlays})
}

func presetSource(tf *testFile, opts Options) (mapping.Source, error) {
	local := filepath.Join(filepath.Dir(tf.path), tf.preset)
	if data, err := os.ReadFile(local); err == nil {
		return mapping.Source{File: local, Data: data}, nil
	}
	if opts.Resolve != nil && !strings.ContainsAny(tf.preset, "/\\") {
		return opts.Resolve(strings.TrimSuffix(tf.preset, ".yaml"))
	}
	return mapping.Source{}, fmt.Errorf("%s: preset %q is neither a file beside the test nor a built-in preset", tf.path, tf.preset)
}

// check compares a result with a case's expectations.
func check(tf *testFile, tc testCase, res mapping.Result, opts Options) []string {
	var fails []string
	failf := func(format string, args ...any) { fails = append(fails, fmt.Sprintf(format, args...)) }
	e := tc.expect
	if res.Outcome.String() != e.outcome {
		detail := ""
		switch res.Outcome {
		case mapping.Rejected:
			detail = fmt.Sprintf(" (%s: %s)", res.Code, res.Error)
		case mapping.Skipped:
			detail = fmt.Sprintf(" (%s)", res.Reason)
		}
		failf("outcome is %s%s, want %s", res.Outcome, detail, e.outcome)
	}
	if e.mapping != "" && res.Mapping != e.mapping {
		failf("mapping is %q, want %q", res.Mapping, e.mapping)
	}
	if e.code != "" && res.Code != e.code {
		failf("code is %q, want %q", res.Code, e.code)
	}
	if e.errText != "" && !strings.Contains(res.Error, e.errText) {
		failf("error %q does not contain %q", res.Error, e.errText)
	}
	if e.reason != "" && !strings.Contains(res.Reason, e.reason) {
		failf("reason %q does not contain %q", res.Reason, e.reason)
	}
	var req *mapping.Request
	if len(res.Requests) > 0 {
		req = &res.Requests[0]
	}
	wantsRequest := e.endpoint != "" || e.method != "" || len(e.params) > 0 || len(e.headers) > 0 || len(e.absent) > 0
	if wantsRequest && req == nil {
		failf("no request was made, but the case checks one")
	}
	if req != nil {
		if e.endpoint != "" && req.Endpoint != e.endpoint {
			failf("endpoint is %s, want %s", req.Endpoint, e.endpoint)
		}
		if e.method != "" && req.Method != e.method {
			failf("method is %s, want %s", req.Method, e.method)
		}
		got := map[string]string{}
		for _, p := range req.Params {
			got[p.Name] = p.Value
		}
		for _, k := range e.paramOrder {
			if v, ok := got[k]; !ok {
				failf("param %s is absent, want %q", k, e.params[k])
			} else if v != e.params[k] {
				failf("param %s = %q, want %q", k, v, e.params[k])
			}
		}
		if e.onlyParams {
			for _, p := range req.Params {
				if _, ok := e.params[p.Name]; !ok {
					failf("unexpected param %s = %q", p.Name, p.Value)
				}
			}
		}
		for _, k := range e.absent {
			if v, ok := got[k]; ok {
				failf("param %s = %q, want it absent", k, v)
			}
		}
		hdr := map[string]string{}
		for _, h := range req.Headers {
			hdr[h.Name] = h.Value
		}
		for k, v := range e.headers {
			if hdr[k] != v {
				failf("header %s = %q, want %q", k, hdr[k], v)
			}
		}
	}
	if e.golden != "" {
		path := filepath.Join(filepath.Dir(tf.path), e.golden)
		line := res.AppendJSONLine(nil, 0)
		if opts.Update {
			if err := os.WriteFile(path, line, 0o644); err != nil {
				failf("writing golden %s: %v", path, err)
			}
		} else if want, err := os.ReadFile(path); err != nil {
			failf("golden %s: %v (run with -update to create it)", path, err)
		} else if !bytes.Equal(want, line) {
			failf("result differs from golden %s (run with -update to accept)\n got: %s\nwant: %s", path, bytes.TrimSpace(line), bytes.TrimSpace(want))
		}
	}
	return fails
}

// parseFile reads and validates a test file.
func parseFile(path string) (*testFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, fmt.Errorf("%s: yaml_syntax: %v", path, err)
	}
	if len(root.Content) == 0 {
		return nil, fmt.Errorf("%s: the test file is empty", path)
	}
	p := &parser{file: path}
	doc := root.Content[0]
	vals := p.object(doc, &FileSpec)
	tf := &testFile{path: path, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if vals != nil {
		if k := p.scalar(vals["kind"]); k != "test" {
			p.errAt(vals["kind"], "wrong_kind", fmt.Sprintf("kind is %q, want test", k))
		}
		tf.preset = p.scalar(vals["preset"])
		tf.mappings = p.strings(vals["mappings"])
		tf.settings = p.stringMap(vals["settings"])
		if n := vals["now"]; n != nil {
			t, err := time.Parse(time.RFC3339Nano, n.Value)
			if err != nil {
				p.errAt(n, "bad_value", "now must be an RFC 3339 time such as 2026-01-01T00:00:00Z")
			}
			tf.now = t
		}
		if n := vals["tests"]; n != nil {
			if n.Kind != yaml.SequenceNode {
				p.errAt(n, "wrong_type", "tests must be a list")
			} else {
				for _, c := range n.Content {
					if tc, ok := p.testCase(c, tf); ok {
						tf.cases = append(tf.cases, tc)
					}
				}
			}
		}
	}
	if len(p.errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(p.errs, "\n"))
	}
	return tf, nil
}

type parser struct {
	file string
	errs []string
}

func (p *parser) errAt(n *yaml.Node, code, msg string) {
	line, col := 0, 0
	if n != nil {
		line, col = n.Line, n.Column
	}
	p.errs = append(p.errs, fmt.Sprintf("%s:%d:%d: %s: %s", p.file, line, col, code, msg))
}

func (p *parser) object(n *yaml.Node, spec *mapping.ObjectSpec) map[string]*yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		p.errAt(n, "wrong_type", "a "+spec.Name+" must be a mapping")
		return nil
	}
	out := map[string]*yaml.Node{}
	valid := map[string]bool{}
	var names []string
	for _, k := range spec.Keys {
		valid[k.Name] = true
		names = append(names, k.Name)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if !valid[k.Value] {
			p.errAt(k, "unknown_key", fmt.Sprintf("unknown key %q in a %s (valid: %s)", k.Value, spec.Name, strings.Join(names, ", ")))
			continue
		}
		out[k.Value] = n.Content[i+1]
	}
	for _, k := range spec.Keys {
		if k.Required && out[k.Name] == nil {
			p.errAt(n, "missing_key", fmt.Sprintf("a %s needs %q", spec.Name, k.Name))
		}
	}
	return out
}

func (p *parser) scalar(n *yaml.Node) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.errAt(n, "wrong_type", "expected a scalar")
		return ""
	}
	return n.Value
}

func (p *parser) strings(n *yaml.Node) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	var out []string
	for _, c := range n.Content {
		out = append(out, p.scalar(c))
	}
	return out
}

// stringMap reads a map whose values are scalars, keeping their text (42.50 stays "42.50").
func (p *parser) stringMap(n *yaml.Node) map[string]string {
	_, m := p.orderedMap(n)
	return m
}

func (p *parser) orderedMap(n *yaml.Node) ([]string, map[string]string) {
	if n == nil {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		p.errAt(n, "wrong_type", "expected a map of name: value")
		return nil, nil
	}
	var keys []string
	m := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			p.errAt(v, "wrong_type", fmt.Sprintf("%s must be a scalar (write objects as JSON strings)", k))
			continue
		}
		keys = append(keys, k)
		m[k] = v.Value
	}
	return keys, m
}

func (p *parser) testCase(n *yaml.Node, tf *testFile) (testCase, bool) {
	tc := testCase{line: n.Line}
	vals := p.object(n, &CaseSpec)
	if vals == nil {
		return tc, false
	}
	tc.name = p.scalar(vals["name"])
	tc.settings = p.stringMap(vals["settings"])
	switch {
	case vals["event"] != nil && vals["event_file"] != nil:
		p.errAt(vals["event_file"], "multiple_sources", "a case takes event or event_file, not both")
	case vals["event"] != nil:
		var x any
		if err := vals["event"].Decode(&x); err != nil {
			p.errAt(vals["event"], "bad_value", err.Error())
		}
		b, err := json.Marshal(jsonable(x))
		if err != nil {
			p.errAt(vals["event"], "bad_value", err.Error())
		}
		// YAML has no number text to keep: a number written in YAML is sent as Go renders it.
		tc.event = b
	case vals["event_file"] != nil:
		path := filepath.Join(filepath.Dir(tf.path), p.scalar(vals["event_file"]))
		data, err := os.ReadFile(path)
		if err != nil {
			p.errAt(vals["event_file"], "bad_value", err.Error())
		}
		tc.event = data
	default:
		p.errAt(n, "missing_key", "a case needs event or event_file")
	}
	ev := vals["expect"]
	if ev == nil {
		return tc, false
	}
	ex := p.object(ev, &ExpectSpec)
	if ex == nil {
		return tc, false
	}
	e := expect{
		outcome:  p.scalar(ex["outcome"]),
		mapping:  p.scalar(ex["mapping"]),
		endpoint: p.scalar(ex["endpoint"]),
		method:   p.scalar(ex["method"]),
		absent:   p.strings(ex["absent"]),
		headers:  p.stringMap(ex["headers"]),
		code:     p.scalar(ex["code"]),
		errText:  p.scalar(ex["error"]),
		reason:   p.scalar(ex["reason"]),
		golden:   p.scalar(ex["golden"]),
	}
	e.paramOrder, e.params = p.orderedMap(ex["params"])
	if n := ex["only_params"]; n != nil {
		e.onlyParams = n.Value == "true"
	}
	if e.outcome == "" {
		switch {
		case e.code != "" || e.errText != "":
			e.outcome = "rejected"
		case e.reason != "":
			e.outcome = "skipped"
		default:
			e.outcome = "send"
		}
	}
	switch e.outcome {
	case "send", "rejected", "skipped":
	default:
		p.errAt(ex["outcome"], "bad_value", fmt.Sprintf("outcome %q is not send, rejected or skipped", e.outcome))
	}
	tc.expect = e
	if tc.event != nil && !gjson.ValidBytes(tc.event) && e.code != mapping.RejectInvalidJSON {
		p.errAt(vals["event_file"], "bad_value", "the event file is not valid JSON")
	}
	return tc, true
}

// jsonable converts YAML-decoded maps into JSON-encodable ones.
func jsonable(x any) any {
	switch t := x.(type) {
	case map[string]any:
		for k, v := range t {
			t[k] = jsonable(v)
		}
	case []any:
		for i, v := range t {
			t[i] = jsonable(v)
		}
	}
	return x
}

// Find returns every *.test.yaml under the given files and folders, sorted.
func Find(roots ...string) ([]string, error) {
	var out []string
	for _, root := range roots {
		info, err := os.Stat(root)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			out = append(out, root)
			continue
		}
		err = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(path, ".test.yaml") {
				out = append(out, path)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}
