package mapping_test

import (
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// spreadPreset is a one-mapping preset with the given explicit fields (besides event) and spread
// rules, both as YAML lines indented under their key.
func spreadPreset(fields, spreads string) string {
	s := "identity: {when_none: send}\nmappings:\n  - name: m\n    endpoint: ce\n    fields:\n      event: {value: e}\n"
	if fields != "" {
		s += indent(fields, "      ")
	}
	return s + "    spread:\n" + indent(spreads, "      ")
}

func TestSpread(t *testing.T) {
	props := `{"properties":{"a":"A","n":0,"f":false,"nil":null,"empty":"","obj":{"x":1,"y":{"z":"deep","w":{"v":2,"u":{"t":3}}}},"list":[1, 2],"_private":"p","password":"s","user_password_hash":"h","eo":{}}}`
	tests := []struct {
		name    string
		fields  string
		spreads string
		event   string
		want    []string // params after event=e
	}{
		{"defaults: nested json, null skipped", "", "- {from: properties, prefix: ce_}", props,
			[]string{"ce_a=A", "ce_n=0", "ce_f=false", "ce_empty=", `ce_obj={"x":1,"y":{"z":"deep","w":{"v":2,"u":{"t":3}}}}`, "ce_list=[1,2]",
				"ce__private=p", "ce_password=s", "ce_user_password_hash=h", "ce_eo={}"}},
		{"cv_ prefix", "", "- {from: properties.obj, prefix: cv_}", props,
			[]string{"cv_x=1", `cv_y={"z":"deep","w":{"v":2,"u":{"t":3}}}`}},
		{"cs_ prefix", "", "- {from: properties.obj.y.w, prefix: cs_}", props, []string{"cs_v=2", `cs_u={"t":3}`}},
		{"exclude exact and globs", "",
			`- {from: properties, prefix: ce_, exclude: [a, obj, list, eo, "_*", "*password*", "*pty"]}`, props,
			[]string{"ce_n=0", "ce_f=false"}},
		{"exclude is not a substring match", "", `- {from: properties, prefix: ce_, exclude: [passwor, "pass*", "*hash*x"]}`,
			`{"properties":{"password":"s","user_password_hash":"h"}}`, []string{"ce_user_password_hash=h"}},
		{"nested skip", "", "- {from: properties, prefix: ce_, nested: skip, exclude: [nil, empty, _private, password, user_password_hash]}", props,
			[]string{"ce_a=A", "ce_n=0", "ce_f=false", "ce_list=[1,2]"}},
		{"nested flatten default depth 3", "", "- {from: properties.obj, prefix: ce_, nested: flatten}", props,
			[]string{"ce_x=1", "ce_y_z=deep", "ce_y_w_v=2", `ce_y_w_u={"t":3}`}},
		{"nested flatten max_depth 1", "", "- {from: properties.obj, prefix: ce_, nested: flatten, max_depth: 1}", props,
			[]string{"ce_x=1", `ce_y={"z":"deep","w":{"v":2,"u":{"t":3}}}`}},
		{"nested flatten max_depth 2", "", "- {from: properties.obj, prefix: ce_, nested: flatten, max_depth: 2}", props,
			[]string{"ce_x=1", "ce_y_z=deep", `ce_y_w={"v":2,"u":{"t":3}}`}},
		{"nested flatten max_depth 4", "", "- {from: properties.obj, prefix: ce_, nested: flatten, max_depth: 4}", props,
			[]string{"ce_x=1", "ce_y_z=deep", "ce_y_w_v=2", "ce_y_w_u_t=3"}},
		{"flatten separator", "", `- {from: properties.obj, prefix: ce_, nested: flatten, separator: "."}`, props,
			[]string{"ce_x=1", "ce_y.z=deep", "ce_y.w.v=2", `ce_y.w.u={"t":3}`}},
		{"flatten exclude applies to flattened keys", "", `- {from: properties.obj, prefix: ce_, nested: flatten, exclude: ["y_w", x]}`, props,
			[]string{"ce_y_z=deep"}},
		{"flatten keeps arrays as json", "", "- {from: properties, prefix: ce_, nested: flatten}",
			`{"properties":{"o":{"l":[ {"a" : 1} ], "e":{}}}}`, []string{`ce_o_l=[{"a":1}]`}},
		{"arrays as json", "", "- {from: properties, prefix: ce_, nested: skip}",
			`{"properties":{"tags":[ "a", "b" ],"objs":[{"k": "v"}]}}`, []string{`ce_tags=["a","b"]`, `ce_objs=[{"k":"v"}]`}},
		{"present defined sends null", "", "- {from: properties, prefix: ce_, present: defined}",
			`{"properties":{"a":null,"b":""}}`, []string{"ce_a=", "ce_b="}},
		{"present non_empty", "", "- {from: properties, prefix: ce_, present: non_empty}",
			`{"properties":{"a":null,"b":"","c":{},"d":[],"e":0,"f":false,"g":"G"}}`, []string{"ce_e=0", "ce_f=false", "ce_g=G"}},
		{"from not an object", "", "- {from: properties, prefix: ce_}", `{"properties":[1,2]}`, nil},
		{"from missing", "", "- {from: properties, prefix: ce_}", `{}`, nil},
		{"empty key skipped", "", "- {from: properties, prefix: ce_}", `{"properties":{"":"x","k":"v"}}`, []string{"ce_k=v"}},
		{"keys with spaces", "", "- {from: properties, prefix: ce_}", `{"properties":{"fav movie":"Alien"}}`, []string{"ce_fav movie=Alien"}},

		// conflicts with explicit fields
		{"explicit_wins default", "ce_a: {value: mine}", "- {from: properties, prefix: ce_}", `{"properties":{"a":"theirs","b":"B"}}`,
			[]string{"ce_a=mine", "ce_b=B"}},
		{"explicit_wins drops key even when field absent", "ce_a: {path: properties.none}", "- {from: properties, prefix: ce_, conflict: explicit_wins}",
			`{"properties":{"a":"theirs","b":"B"}}`, []string{"ce_b=B"}},
		{"explicit_when_present lets the spread fill an absent field", "ce_a: {path: properties.none}", "- {from: properties, prefix: ce_, conflict: explicit_when_present}",
			`{"properties":{"a":"theirs","b":"B"}}`, []string{"ce_a=theirs", "ce_b=B"}},
		{"explicit_when_present keeps a present field", "ce_a: {value: mine}", "- {from: properties, prefix: ce_, conflict: explicit_when_present}",
			`{"properties":{"a":"theirs","b":"B"}}`, []string{"ce_a=mine", "ce_b=B"}},
		{"spread_wins replaces in place", "ce_a: {value: mine}\nce_z: {value: z}", "- {from: properties, prefix: ce_, conflict: spread_wins}",
			`{"properties":{"a":"theirs","b":"B"}}`, []string{"ce_a=theirs", "ce_z=z", "ce_b=B"}},
		{"spread_wins fills absent field", "ce_a: {path: properties.none}", "- {from: properties, prefix: ce_, conflict: spread_wins}",
			`{"properties":{"a":"theirs"}}`, []string{"ce_a=theirs"}},
		{"reject without clash sends", "ce_a: {value: mine}", "- {from: properties, prefix: ce_, conflict: reject}",
			`{"properties":{"b":"B"}}`, []string{"ce_a=mine", "ce_b=B"}},
		{"conflict only under the same prefix", "cv_a: {value: mine}", "- {from: properties, prefix: ce_, conflict: reject}",
			`{"properties":{"a":"theirs"}}`, []string{"cv_a=mine", "ce_a=theirs"}},
		{"conflict with flattened key", "ce_o_k: {value: mine}", "- {from: properties, prefix: ce_, nested: flatten}",
			`{"properties":{"o":{"k":"theirs","j":"J"}}}`, []string{"ce_o_k=mine", "ce_o_j=J"}},
		{"earlier spread wins", "", "- {from: properties, prefix: ce_}\n- {from: context, prefix: ce_}",
			`{"properties":{"a":"P"},"context":{"a":"C","b":"CB"}}`, []string{"ce_a=P", "ce_b=CB"}},

		// first-list of objects
		{"first: traits wins", "", "- {first: [traits, context.traits], prefix: cv_}",
			`{"traits":{"name":"T"},"context":{"traits":{"name":"CT","plan":"x"}}}`, []string{"cv_name=T"}},
		{"first: empty traits is present under non_null", "", "- {first: [traits, context.traits], prefix: cv_}",
			`{"traits":{ },"context":{"traits":{"name":"CT"}}}`, nil},
		{"first: empty traits falls back under non_empty", "", "- {first: [traits, context.traits], prefix: cv_, present: non_empty}",
			`{"traits":{ },"context":{"traits":{"name":"CT"}}}`, []string{"cv_name=CT"}},
		{"first: missing traits falls back", "", "- {first: [traits, context.traits], prefix: cv_}",
			`{"context":{"traits":{"name":"CT"}}}`, []string{"cv_name=CT"}},
		{"first: non-object falls back", "", "- {first: [traits, context.traits], prefix: cv_}",
			`{"traits":"nope","context":{"traits":{"name":"CT"}}}`, []string{"cv_name=CT"}},
		{"first: null traits falls back", "", "- {first: [traits, context.traits], prefix: cv_}",
			`{"traits":null,"context":{"traits":{"name":"CT"}}}`, []string{"cv_name=CT"}},
		{"first: none", "", "- {first: [traits, context.traits], prefix: cv_}", `{"traits":{}}`, nil},

		// objects that fields read too: the walk that finds the fields keeps the members for
		// the spread, so every key after the last one a field wants is still spread, repeated
		// keys behave as gjson's ForEach gives them, and nested objects can both be spread
		{"object read by a field: keys after the wanted one", "cv_x: {path: properties.a}", "- {from: properties, prefix: ce_}",
			`{"properties":{"a":"A","b":"B","c":{"d":1}}}`, []string{"cv_x=A", "ce_a=A", "ce_b=B", `ce_c={"d":1}`}},
		{"object read by a field: repeated key", "cv_x: {path: properties.a}", "- {from: properties, prefix: ce_}",
			`{"properties":{"a":"1","b":"B","a":"2"}}`, []string{"cv_x=1", "ce_a=1", "ce_b=B"}},
		{"object read by a field: nested spreads", "cv_e: {path: context.traits.email}\nip: {path: context.ip}",
			"- {from: context.traits, prefix: cv_}\n- {from: context, prefix: ce_, nested: flatten, exclude: [ip]}",
			`{"context":{"ip":"1.2.3.4","traits":{"email":"e@x","plan":"p"},"os":{"name":"n"}}}`,
			[]string{"cv_e=e@x", "ip=1.2.3.4", "cv_email=e@x", "cv_plan=p", "ce_traits_email=e@x", "ce_traits_plan=p", "ce_os_name=n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, spreadPreset(tc.fields, tc.spreads))
			got := params(t, run(p, tc.event))
			want := append([]string{"event=e"}, tc.want...)
			if !equalStrings(got, want) {
				t.Errorf("params\n got %q\nwant %q", got, want)
			}
		})
	}
}

func TestSpreadConflictReject(t *testing.T) {
	p := compile(t, spreadPreset("ce_a: {value: mine}", "- {from: properties, prefix: ce_, conflict: reject}"))
	res := run(p, `{"properties":{"b":"B","a":"theirs"}}`)
	if res.Outcome != mapping.Rejected || res.Code != "spread_conflict" || res.Mapping != "m" {
		t.Fatalf("got %s %q (%s) mapping %q, want rejected spread_conflict", res.Outcome, res.Code, res.Error, res.Mapping)
	}
	if !strings.Contains(res.Error, `"a"`) || !strings.Contains(res.Error, "ce_a") {
		t.Errorf("error %q does not name the key and field", res.Error)
	}
	// The program is reusable after a rejection: the next event is unaffected.
	got := params(t, run(p, `{"properties":{"b":"B"}}`))
	if want := []string{"event=e", "ce_a=mine", "ce_b=B"}; !equalStrings(got, want) {
		t.Errorf("after a rejection: got %q, want %q", got, want)
	}
}

// TestSpreadCommon checks that a mapping's own spreads run before common ones and that explicit
// fields inherited from common take part in conflicts.
func TestSpreadCommon(t *testing.T) {
	p := compile(t, `identity: {when_none: send}
common:
  fields:
    cv_name: {value: fixed}
  spread:
    - {from: properties, prefix: ce_}
    - {first: [traits, context.traits], prefix: cv_}
mappings:
  - name: m
    endpoint: ce
    fields: {event: {value: e}}
    spread:
      - {from: context.extra, prefix: ce_}
  - name: bare
    endpoint: ce
    inherit: false
    fields: {event: {value: bare}}
`)
	got := params(t, run(p, `{"properties":{"a":"P","b":"PB"},"context":{"extra":{"a":"X"},"traits":{"name":"N","plan":"pro"}}}`))
	want := []string{"cv_name=fixed", "event=e", "ce_a=X", "ce_b=PB", "cv_plan=pro"}
	if !equalStrings(got, want) {
		t.Errorf("params\n got %q\nwant %q", got, want)
	}
}
