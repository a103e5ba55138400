package mapping_test

import (
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// TestExpressionLimits checks that expressions that would grow without bound (strings that
// double, repeat, replace, join, values shared then encoded, loops that never end in practice)
// fail the event with expression_error within the limits, wherever they are written: a field,
// a transform under on_error: drop, a when, a template. Ordinary expressions are untouched.
func TestExpressionLimits(t *testing.T) {
	runaway := []struct{ name, expr string }{
		{"doubling string", `len(reduce(1..40, #acc + #acc, "a"))`},
		{"doubling without a loop", `let a = properties.s + properties.s; let b = a + a; let c = b + b; let d = c + c; let e = d + d; let f = e + e; let g = f + f; let h = g + g; let i = h + h; let j = i + i; let k = j + j; let l = k + k; let m = l + l; let n = m + m; let o = n + n; let p = o + o; let q = p + p; let r = q + q; let s = r + r; let t = s + s; let u = t + t; let v = u + u; len(v + v + v)`},
		{"repeat of a large string", `len(repeat(repeat("ab", 1000000), 1000000))`},
		{"repeat sized by the event", `len(repeat("abc", properties.n))`},
		{"replace that multiplies", `len(replace(repeat("a", 1000), "", repeat("b", 5000)))`},
		{"join with a large glue", `len(join(map(1..100000, "x"), repeat("g", 1000)))`},
		{"shared arrays encoded", `len(toJSON(reduce(1..40, [#acc, #acc], [1])))`},
		{"shared arrays as text", `len(string(reduce(1..40, [#acc, #acc], [1])))`},
		{"shared arrays flattened", `len(flatten(reduce(1..40, [#acc, #acc], [1])))`},
		{"shared arrays through json()", `len(json(reduce(1..40, [#acc, #acc], [1])))`},
		{"shared arrays as the result", `reduce(1..40, [#acc, #acc], [1])`},
		{"many large values", `len(map(1..100000, upper(repeat("a", 500000))))`},
		{"ranges over expr's memory budget", `count(1..900, all(1..900, all(1..900, # > 0)))`},
		{"endless loop", `let r = 1..900; count(r, all(r, all(r, # > 0)))`},
		{"concat that doubles", `len(reduce(1..40, concat(#acc, #acc), [1]))`},
	}
	for _, tc := range runaway {
		t.Run(tc.name, func(t *testing.T) {
			for _, form := range []string{
				"fields: {event: {path: event}, ce_x: {expr: '" + tc.expr + "'}}",
				"fields: {event: {path: event}, ce_x: {value: 1, transform: '" + tc.expr + "', on_error: drop}}",
				"when: 'userId == \"u\" && len(toJSON(" + tc.expr + ")) > 0'\n    fields: {event: {path: event}}",
				"fields: {event: {path: event}, ce_x: {template: 'x{{ " + tc.expr + " }}'}}",
			} {
				p := compile(t, "identity: {when_none: send}\nmappings:\n  - name: m\n    endpoint: ce\n    "+form+"\n")
				res := p.Run([]byte(`{"type":"track","event":"e","userId":"u","properties":{"s":"xy","n":100000000}}`), now)
				if res.Outcome != mapping.Rejected || res.Code != mapping.RejectExpression || !strings.Contains(res.Error, "expression limit") {
					t.Fatalf("%s: got %v %s %q, want rejected expression_error with an expression limit", form, res.Outcome, res.Code, res.Error)
				}
			}
		})
	}

	// Ordinary expressions, loops included, still work, and a limit in one event does not
	// leak into the next run.
	p := compile(t, `identity: {when_none: send}
mappings:
  - name: m
    endpoint: ce
    fields:
      event: {path: event}
      ce_a: {expr: 'join(map(properties.items, upper(#.name)), ",") + "!"'}
      ce_b: {expr: 'len(reduce(1..200, #acc + "ab", ""))'}
      ce_c: {expr: 'toJSON(properties.items[0])'}
      ce_d: {expr: 'len(repeat(properties.s, 1000))'}
`)
	bad := compile(t, "identity: {when_none: send}\nmappings:\n  - name: m\n    endpoint: ce\n    fields: {event: {path: event}, ce_x: {expr: 'len(reduce(1..40, #acc + #acc, \"a\"))'}}\n")
	ev := []byte(`{"type":"track","event":"e","userId":"u","properties":{"s":"xy","items":[{"name":"a"},{"name":"b"}]}}`)
	for i := 0; i < 3; i++ {
		if res := bad.Run(ev, now); res.Code != mapping.RejectExpression {
			t.Fatalf("runaway run %d: %v %s", i, res.Outcome, res.Code)
		}
		res := p.Run(ev, now)
		if res.Outcome != mapping.Send {
			t.Fatalf("ordinary run %d: %v %s %s", i, res.Outcome, res.Code, res.Error)
		}
		got := map[string]string{}
		for _, pr := range res.Requests[0].Params {
			got[pr.Name] = pr.Value
		}
		if got["ce_a"] != "A,B!" || got["ce_b"] != "400" || got["ce_c"] != "{\n  \"name\": \"a\"\n}" || got["ce_d"] != "2000" {
			t.Fatalf("ordinary values: %v", got)
		}
	}
}

// TestUnboundedWarnings checks the compiler's warnings about constructs whose cost depends on
// the event, and that bounded ones are not flagged.
func TestUnboundedWarnings(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want string // "" for no warning
	}{
		{`len(reduce(1..40, #acc + #acc, "a"))`, "accumulator grows"},
		{`reduce(properties.items, concat(#acc, [#.id]), [])`, "accumulator grows"},
		{`reduce(properties.items, #acc + #.price, 0)`, ""},
		{`repeat("ab", properties.n)`, "repeat() with a count"},
		{`repeat("ab", 3)`, ""},
		{`map(1..properties.n, #)`, "a range whose bounds"},
		{`map(-2..5, #)`, ""},
		{`upper(event)`, ""},
	} {
		p := compile(t, "identity: {when_none: send}\nmappings:\n  - name: m\n    endpoint: ce\n    fields: {event: {path: event}, ce_x: {expr: '"+tc.expr+"'}}\n")
		ws := p.Warnings()
		if tc.want == "" {
			if len(ws) != 0 {
				t.Errorf("%s: warnings %v, want none", tc.expr, ws)
			}
			continue
		}
		if len(ws) != 1 || ws[0].Code != mapping.CodeUnbounded || !strings.Contains(ws[0].Msg, tc.want) || ws[0].Line != 8 {
			t.Errorf("%s: warnings %v, want one %s at line 8 saying %q", tc.expr, ws, mapping.CodeUnbounded, tc.want)
		}
	}
}
