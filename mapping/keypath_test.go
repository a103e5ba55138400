package mapping_test

import (
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// TestSpreadPathKeys checks keys: path, RudderStack's lodash set: keys that are paths nest,
// merge with the keys that share their head, and later keys replace earlier ones.
func TestSpreadPathKeys(t *testing.T) {
	tests := []struct {
		name    string
		fields  string
		spreads string
		event   string // the properties object
		want    []string
	}{
		// The reference's examples (rudderstack-woopra.md §5).
		{"a dot nests", "", "- {from: properties, prefix: cv_, keys: path}", `{"dot.key":"v"}`, []string{`cv_dot={"key":"v"}`}},
		{"an index makes an array", "", "- {from: properties, prefix: cv_, keys: path}", `{"br[0]":"w"}`, []string{`cv_br=["w"]`}},

		{"keys sharing a head merge", "", "- {from: properties, prefix: cv_, keys: path}", `{"a.b":1,"x":"X","a.c":{"d":true}}`,
			[]string{`cv_a={"b":1,"c":{"d":true}}`, "cv_x=X"}},
		{"deep paths", "", "- {from: properties, prefix: ce_, keys: path}", `{"a.b.c":"v","a.b.d":"w"}`, []string{`ce_a={"b":{"c":"v","d":"w"}}`}},
		{"array holes are null", "", "- {from: properties, prefix: cv_, keys: path}", `{"l[2]":"c","l[0]":"a"}`, []string{`cv_l=["a",null,"c"]`}},
		{"a dotted index makes an array", "", "- {from: properties, prefix: cv_, keys: path}", `{"l.1":"b"}`, []string{`cv_l=[null,"b"]`}},
		{"objects inside arrays", "", "- {from: properties, prefix: cv_, keys: path}", `{"l[0].n":"a","l[1].n":"b"}`, []string{`cv_l=[{"n":"a"},{"n":"b"}]`}},
		{"quoted brackets are one key", "", "- {from: properties, prefix: cv_, keys: path}", `{"a[\"x.y\"]":1}`, []string{`cv_a={"x.y":1}`}},
		{"escapes in quotes", "", "- {from: properties, prefix: cv_, keys: path}", `{"a['it\\'s']":1}`, []string{`cv_a={"it's":1}`}},
		{"empty segments", "", "- {from: properties, prefix: cv_, keys: path}", `{"a..b":1,"c.":2}`, []string{`cv_a={"":{"b":1}}`, `cv_c={"":2}`}},
		{"a plain key written into by a later path", "", "- {from: properties, prefix: cv_, keys: path}", `{"a":{"x":1},"a.y":2}`, []string{`cv_a={"x":1,"y":2}`}},
		{"a scalar is replaced by a container", "", "- {from: properties, prefix: cv_, keys: path}", `{"a":"s","a.b":1}`, []string{`cv_a={"b":1}`}},
		{"a later plain key replaces", "", "- {from: properties, prefix: cv_, keys: path}", `{"a.b":1,"a":"s"}`, []string{"cv_a=s"}},
		{"an event array is extended", "", "- {from: properties, prefix: cv_, keys: path}", `{"l":["a"],"l[1]":"b"}`, []string{`cv_l=["a","b"]`}},
		{"a named key of an array is not shown", "", "- {from: properties, prefix: cv_, keys: path}", `{"l[0]":"a","l.n":"b"}`, []string{`cv_l=["a"]`}},
		{"an index in an object is a key", "", "- {from: properties, prefix: cv_, keys: path}", `{"o.k":"a","o[0]":"b"}`, []string{`cv_o={"k":"a","0":"b"}`}},
		{"a large index is an object key", "", "- {from: properties, prefix: cv_, keys: path}", `{"l[1001]":"x","m[1000]":"y"}`,
			[]string{`cv_l={"1001":"x"}`, `cv_m=[` + strings.Repeat("null,", 1000) + `"y"]`}},
		{"a leading zero is not an index", "", "- {from: properties, prefix: cv_, keys: path}", `{"l[01]":"x"}`, []string{`cv_l={"01":"x"}`}},
		{"a negative or fractional index is a key", "", "- {from: properties, prefix: cv_, keys: path}", `{"l[-1]":"x","m[1.5]":"y"}`, []string{`cv_l={"-1":"x"}`, `cv_m={"1.5":"y"}`}},
		{"unsafe keys stop the write", "", "- {from: properties, prefix: cv_, keys: path}", `{"a.constructor.b":1,"c.__proto__":2}`, []string{"cv_a={}", "cv_c={}"}},
		{"no name before the path", "", "- {from: properties, prefix: cv_, keys: path}", `{".a":1,"[0]":2,"k":3}`, []string{"cv_k=3"}},
		{"a lone bracket is a literal key", "", "- {from: properties, prefix: cv_, keys: path}", `{"a]b":1,"c[d":2}`, []string{"cv_a]b=1", "cv_c[d=2"}},
		{"nested values are written as they are", "", "- {from: properties, prefix: cv_, keys: path, present: non_empty}", `{"a.n":null,"a.e":"","b":""}`,
			[]string{`cv_a={"n":null,"e":""}`}},
		{"a null plain key is skipped", "", "- {from: properties, prefix: cv_, keys: path}", `{"a.b":1,"a":null}`, []string{`cv_a={"b":1}`}},
		{"strings are JSON-escaped", "", "- {from: properties, prefix: cv_, keys: path}", `{"a.b":"say \"hi\"\n"}`, []string{`cv_a={"b":"say \"hi\"\n"}`}},
		{"exclude matches the key as written", "", "- {from: properties, prefix: cv_, keys: path, exclude: [a, \"s.*\"]}", `{"a":1,"a.b":2,"s.x":3}`, []string{`cv_a={"b":2}`}},
		{"literal keys by default", "", "- {from: properties, prefix: cv_}", `{"dot.key":"v","br[0]":"w"}`, []string{"cv_dot.key=v", "cv_br[0]=w"}},
		{"nested skip skips object values", "", "- {from: properties, prefix: cv_, keys: path, nested: skip}", `{"a.b":{"c":1},"a.d":2}`, []string{`cv_a={"d":2}`}},

		// conflicts, decided by the head
		{"spread_wins replaces the explicit field", "cv_ip: {value: 1.2.3.4}", "- {from: properties, prefix: cv_, keys: path, conflict: spread_wins}",
			`{"ip.v4":"9.9.9.9"}`, []string{`cv_ip={"v4":"9.9.9.9"}`}},
		{"explicit_wins keeps the explicit field", "cv_ip: {value: 1.2.3.4}", "- {from: properties, prefix: cv_, keys: path}",
			`{"ip.v4":"9.9.9.9","ip":"8.8.8.8"}`, []string{"cv_ip=1.2.3.4"}},
		{"explicit_when_present fills an absent field", "cv_ip: {path: none}", "- {from: properties, prefix: cv_, keys: path, conflict: explicit_when_present}",
			`{"ip.v4":"9.9.9.9"}`, []string{`cv_ip={"v4":"9.9.9.9"}`}},
		{"an earlier spread wins", "", "- {from: properties, prefix: cv_}\n- {from: context, prefix: cv_, keys: path}",
			`{"a":"P"},"context":{"a.b":1,"c.d":2}`, []string{"cv_a=P", `cv_c={"d":2}`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, spreadPreset(tc.fields, tc.spreads))
			got := params(t, run(p, `{"properties":`+tc.event+`}`))
			// An explicit field comes after event, where a spread_wins key replaces it in place.
			want := append([]string{"event=e"}, tc.want...)
			if !equalStrings(got, want) {
				t.Errorf("params\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestSpreadPathKeysReject checks that a nested key colliding under conflict: reject names the
// parameter it would nest into.
func TestSpreadPathKeysReject(t *testing.T) {
	p := compile(t, spreadPreset("cv_ip: {value: x}", "- {from: properties, prefix: cv_, keys: path, conflict: reject}"))
	res := run(p, `{"properties":{"ip.v4":"9.9.9.9"}}`)
	if res.Outcome != mapping.Rejected || res.Code != "spread_conflict" || !strings.Contains(res.Error, "cv_ip") {
		t.Fatalf("got %s %q %q, want rejected spread_conflict naming cv_ip", res.Outcome, res.Code, res.Error)
	}
}

// TestSpreadConversions checks a spread's transform, as and on_error.
func TestSpreadConversions(t *testing.T) {
	const isoDate = `'type(value) == "string" && value matches "^[0-9]{4}-[0-9]{2}-[0-9]{2}" ? epoch_ms(value) : value'`
	tests := []struct {
		name    string
		spreads string
		event   string // the properties object
		want    []string
		code    string // rejection code, when rejected
	}{
		{"as epoch_ms", "- {from: properties, prefix: cv_, as: epoch_ms}", `{"a":"2024-06-01T12:00:00Z","b":1717243200}`,
			[]string{"cv_a=1717243200000", "cv_b=1717243200000"}, ""},
		{"as int", "- {from: properties, prefix: ce_, as: int}", `{"a":"42","b":7.0}`, []string{"ce_a=42", "ce_b=7"}, ""},
		{"as fails: reject", "- {from: properties, prefix: ce_, as: int}", `{"a":"x"}`, nil, "bad_value"},
		{"as fails: drop", "- {from: properties, prefix: ce_, as: int, on_error: drop}", `{"a":"x","b":"2"}`, []string{"ce_b=2"}, ""},
		{"as fails: keep", "- {from: properties, prefix: ce_, as: int, on_error: keep}", `{"a":"x","b":"2"}`, []string{"ce_a=x", "ce_b=2"}, ""},
		{"transform only converts dates", "- {from: properties, prefix: cv_, transform: " + isoDate + "}",
			`{"created":"2015-11-04T09:20:22.750Z","plan":"pro","logins":42,"o":{"k":1}}`,
			[]string{"cv_created=1446628822750", "cv_plan=pro", "cv_logins=42", `cv_o={"k":1}`}, ""},
		{"an object passed through keeps its key order", "- {from: properties, prefix: cv_, transform: " + isoDate + "}",
			`{"o":{"z":1,"a":[2, 1]}}`, []string{`cv_o={"z":1,"a":[2,1]}`}, ""},
		{"transform to nil drops the key", "- {from: properties, prefix: ce_, transform: 'value == \"x\" ? nil : value'}", `{"a":"x","b":"y"}`, []string{"ce_b=y"}, ""},
		{"transform then as", "- {from: properties, prefix: ce_, transform: 'value * 2', as: string}", `{"a":2}`, []string{"ce_a=4"}, ""},
		{"transform error rejects", "- {from: properties, prefix: ce_, transform: lower(value)}", `{"a":5}`, nil, "expression_error"},
		{"transform error: keep", "- {from: properties, prefix: ce_, transform: lower(value), on_error: keep}", `{"a":5,"b":"B"}`, []string{"ce_a=5", "ce_b=b"}, ""},
		{"transform error: drop", "- {from: properties, prefix: ce_, transform: lower(value), on_error: drop}", `{"a":5,"b":"B"}`, []string{"ce_b=b"}, ""},
		{"flattened leaves are converted", "- {from: properties, prefix: ce_, nested: flatten, as: int}", `{"o":{"a":"1"}}`, []string{"ce_o_a=1"}, ""},
		{"path keys are converted", "- {from: properties, prefix: cv_, keys: path, as: epoch_ms}", `{"d.at":"2024-06-01T12:00:00Z"}`, []string{`cv_d={"at":1717243200000}`}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, spreadPreset("", tc.spreads))
			res := run(p, `{"properties":`+tc.event+`}`)
			if tc.code != "" {
				if res.Outcome != mapping.Rejected || res.Code != tc.code || !strings.Contains(res.Error, `spread key "a"`) {
					t.Fatalf("got %s %q %q, want rejected %q naming key a", res.Outcome, res.Code, res.Error, tc.code)
				}
				return
			}
			if got, want := params(t, res), append([]string{"event=e"}, tc.want...); !equalStrings(got, want) {
				t.Errorf("params\n got %q\nwant %q", got, want)
			}
		})
	}
}

// TestExplainSpreadOptions checks that explain shows what a spread's conversion made of a value
// and which parameter a path key nested into.
func TestExplainSpreadOptions(t *testing.T) {
	p := compile(t, spreadPreset("", "- {from: properties, prefix: cv_, keys: path, as: epoch_ms, on_error: keep}"))
	_, tr := p.Explain([]byte(`{"properties":{"d.at":"2024-06-01T12:00:00Z","n":"x"}}`), now)
	out := tr.String()
	for _, want := range []string{
		`cv_*           spread properties: copied 2 [d.at (as epoch_ms -> 1717243200000) (nested into cv_d), n (kept as is: timestamp "x" is neither ISO-8601 nor an epoch number)]`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain lacks %q:\n%s", want, out)
		}
	}
}

// TestPresetContract checks that a preset's contract: block changes the future-timestamp rule
// within the blueprint's bound.
func TestPresetContract(t *testing.T) {
	const day = 86400000
	body := func(contract string) string {
		return "contract: " + contract + "\n" + fieldsPreset("timestamp: {path: ts, as: epoch_ms}\n")
	}
	tests := []struct {
		name, contract string
		aheadMs        int64
		code           string // rejection code, or "" when sent
		warning        bool
	}{
		{"a year ahead is sent", "{max_future_ms: 31622400000}", 365 * day, "", false},
		{"at the bound", "{max_future_ms: 31622400000}", 366 * day, "", false},
		{"beyond the preset's window", "{max_future_ms: 86400000}", day + 1, "timestamp_in_future", false},
		{"tightened", "{max_future_ms: 0}", 1, "timestamp_in_future", false},
		{"clamp", "{on_future: clamp}", day, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, body(tc.contract))
			ts := now.UnixMilli() + tc.aheadMs
			res := run(p, `{"ts":`+itoa(int(ts))+`}`)
			if tc.code != "" {
				if res.Outcome != mapping.Rejected || res.Code != tc.code {
					t.Fatalf("got %s %q (%s), want rejected %q", res.Outcome, res.Code, res.Error, tc.code)
				}
				return
			}
			if res.Outcome != mapping.Send {
				t.Fatalf("got %s %q (%s), want it sent", res.Outcome, res.Code, res.Error)
			}
			if got := len(res.Warnings) > 0; got != tc.warning {
				t.Errorf("warnings %q, want some: %v", res.Warnings, tc.warning)
			}
		})
	}
}
