package mapping_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/blueprint"
	"github.com/woorelay/woorelay/mapping"
)

// now is the frozen clock every run uses: 2024-06-01T12:00:00Z.
var now = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)

// header is the start of every inline preset.
const header = "kind: preset\nname: t\nblueprint: woopra\n"

// woopra returns the shipped blueprint.
func woopra(t testing.TB) *mapping.Blueprint {
	t.Helper()
	bp, err := blueprint.Woopra()
	if err != nil {
		t.Fatalf("blueprint: %v", err)
	}
	return bp
}

// compileWith compiles a preset body (everything after kind/name/blueprint) with settings.
func compileWith(t testing.TB, body string, settings map[string]string) *mapping.Program {
	t.Helper()
	p, err := mapping.Compile(mapping.Source{File: "inline.yaml", Data: []byte(header + body)},
		mapping.Options{Blueprint: woopra(t), Settings: settings})
	if err != nil {
		t.Fatalf("compile:\n%v\npreset:\n%s", err, body)
	}
	return p
}

// compile compiles a preset body with project=example.com.
func compile(t testing.TB, body string) *mapping.Program {
	t.Helper()
	return compileWith(t, body, map[string]string{"project": "example.com"})
}

// compileErr compiles a preset body that must fail and returns its diagnostics.
func compileErr(t testing.TB, body string, settings map[string]string) mapping.Diagnostics {
	t.Helper()
	_, err := mapping.Compile(mapping.Source{File: "inline.yaml", Data: []byte(header + body)},
		mapping.Options{Blueprint: woopra(t), Settings: settings})
	if err == nil {
		t.Fatalf("compile succeeded, want an error; preset:\n%s", body)
	}
	var ds mapping.Diagnostics
	if !errors.As(err, &ds) {
		t.Fatalf("error is %T, want Diagnostics: %v", err, err)
	}
	return ds
}

// fieldsPreset is a one-mapping preset sending to /track/ce with event "e", no identity
// requirement, and the given fields (YAML lines indented by six spaces) appended.
func fieldsPreset(fields string) string {
	return "identity: {when_none: send}\n" +
		"mappings:\n" +
		"  - name: m\n" +
		"    endpoint: ce\n" +
		"    fields:\n" +
		"      event: {value: e}\n" +
		indent(fields, "      ")
}

// indent prefixes every non-empty line of s.
func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}

// param returns the value of the named parameter of the result's only request.
func param(t testing.TB, res mapping.Result, name string) (string, bool) {
	t.Helper()
	if res.Outcome != mapping.Send || len(res.Requests) != 1 {
		t.Fatalf("outcome %s (code %q, error %q, reason %q), want one request", res.Outcome, res.Code, res.Error, res.Reason)
	}
	for _, p := range res.Requests[0].Params {
		if p.Name == name {
			return p.Value, true
		}
	}
	return "", false
}

// params renders the parameters of the result's only request as name=value pairs.
func params(t testing.TB, res mapping.Result) []string {
	t.Helper()
	if res.Outcome != mapping.Send || len(res.Requests) != 1 {
		t.Fatalf("outcome %s (code %q, error %q, reason %q), want one request", res.Outcome, res.Code, res.Error, res.Reason)
	}
	out := make([]string, 0, len(res.Requests[0].Params))
	for _, p := range res.Requests[0].Params {
		out = append(out, p.Name+"="+p.Value)
	}
	return out
}

// run runs the program on an event at the frozen time.
func run(p *mapping.Program, event string) mapping.Result {
	return p.Run([]byte(event), now)
}

// absent is the expectation "the parameter is not sent".
const absent = "<absent>"

// checkParam asserts one parameter's value, or its absence when want is absent.
func checkParam(t testing.TB, res mapping.Result, name, want string) {
	t.Helper()
	got, ok := param(t, res, name)
	switch {
	case want == absent && ok:
		t.Errorf("%s = %q, want it absent", name, got)
	case want != absent && !ok:
		t.Errorf("%s is absent, want %q", name, want)
	case want != absent && got != want:
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
