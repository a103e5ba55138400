package mapping_test

import (
	"strings"
	"testing"
)

// TestSources covers every field source: path, first, value, template, expr and setting.
func TestSources(t *testing.T) {
	tests := []struct {
		name  string
		field string // one field named ce_x, as YAML
		event string
		want  string // absent when the field must not be sent
	}{
		// path
		{"path string", `ce_x: {path: properties.a}`, `{"properties":{"a":"hello"}}`, "hello"},
		{"path shorthand", `ce_x: properties.a`, `{"properties":{"a":"hello"}}`, "hello"},
		{"path number", `ce_x: {path: properties.a}`, `{"properties":{"a":7}}`, "7"},
		{"path bool false", `ce_x: {path: properties.a}`, `{"properties":{"a":false}}`, "false"},
		{"path missing", `ce_x: {path: properties.a}`, `{"properties":{}}`, absent},
		{"path missing parent", `ce_x: {path: properties.a}`, `{}`, absent},
		{"path null", `ce_x: {path: properties.a}`, `{"properties":{"a":null}}`, absent},
		{"path escaped dot", `ce_x: {path: 'properties.fav\.movie'}`, `{"properties":{"fav.movie":"Alien","fav":{"movie":"no"}}}`, "Alien"},
		{"path array index", `ce_x: {path: properties.list.1}`, `{"properties":{"list":["a","b"]}}`, "b"},
		{"path query", `ce_x: {path: 'context.externalIds.#(type=="woopra").id'}`,
			`{"context":{"externalIds":[{"type":"x","id":"1"},{"type":"woopra","id":"w9"}]}}`, "w9"},
		{"path default when missing", `ce_x: {path: properties.a, default: dflt}`, `{}`, "dflt"},
		{"path default when null", `ce_x: {path: properties.a, default: 0}`, `{"properties":{"a":null}}`, "0"},
		{"path default not used when present", `ce_x: {path: properties.a, default: dflt}`, `{"properties":{"a":""}}`, ""},

		// value
		{"value string", `ce_x: {value: constant}`, `{}`, "constant"},
		{"value number keeps text", `ce_x: {value: 42.50}`, `{}`, "42.50"},
		{"value zero", `ce_x: {value: 0}`, `{}`, "0"},
		{"value false", `ce_x: {value: false}`, `{}`, "false"},
		{"value null is absent", `ce_x: {value: null}`, `{}`, absent},
		{"value null defined sends empty", `ce_x: {value: null, present: defined}`, `{}`, ""},
		{"value quoted number stays string", `ce_x: {value: "007"}`, `{}`, "007"},

		// template
		{"template paths", `ce_x: {template: "{{ properties.a }}-{{properties.b}}!"}`, `{"properties":{"a":"x","b":2}}`, "x-2!"},
		{"template missing renders empty", `ce_x: {template: "[{{ properties.nope }}]"}`, `{}`, "[]"},
		{"template null renders empty", `ce_x: {template: "[{{ properties.a }}]"}`, `{"properties":{"a":null}}`, "[]"},
		{"template expression", `ce_x: {template: "{{ upper(properties.a) }}/{{ properties.n + 1 }}"}`, `{"properties":{"a":"ab","n":41}}`, "AB/42"},
		{"template literal only", `ce_x: {template: "plain"}`, `{}`, "plain"},
		{"template object compact", `ce_x: {template: "o={{ properties.o }}"}`, `{"properties":{"o":{ "k" : [1, 2] }}}`, `o={"k":[1,2]}`},
		{"template empty result non_empty is absent", `ce_x: {template: "{{ properties.a }}", present: non_empty}`, `{}`, absent},

		// expr
		{"expr product", `ce_x: {expr: properties.price * properties.quantity}`, `{"properties":{"price":3,"quantity":4}}`, "12"},
		{"expr float product", `ce_x: {expr: properties.price * properties.quantity}`, `{"properties":{"price":2.5,"quantity":3}}`, "7.5"},
		{"expr get escaped", `ce_x: {expr: 'get("properties.fav\\.movie")'}`, `{"properties":{"fav.movie":"Alien"}}`, "Alien"},
		{"expr get escaped upper", `ce_x: {expr: 'upper(get("properties.fav\\.movie"))'}`, `{"properties":{"fav.movie":"Alien"}}`, "ALIEN"},
		{"expr nil is absent", `ce_x: {expr: properties.missing}`, `{}`, absent},
		{"expr nil takes default", `ce_x: {expr: properties.missing, default: d}`, `{}`, "d"},
		{"expr conditional", `ce_x: {expr: 'properties.n > 10 ? "big" : "small"'}`, `{"properties":{"n":11}}`, "big"},
		{"expr string concat", `ce_x: {expr: 'properties.a + "-" + type'}`, `{"type":"track","properties":{"a":"x"}}`, "x-track"},
		{"expr bool", `ce_x: {expr: properties.n == 0}`, `{"properties":{"n":0}}`, "true"},
		{"expr object as json", `ce_x: {expr: properties.o}`, `{"properties":{"o":{"a":1}}}`, `{"a":1}`},
		{"expr settings", `ce_x: {expr: 'settings.project + "!"'}`, `{}`, "example.com!"},
		{"expr md5", `ce_x: {expr: md5("a")}`, `{}`, "0cc175b9c0f1b6a831c399e269772661"},
		{"expr anonymize_ip v4", `ce_x: {expr: anonymize_ip(context.ip)}`, `{"context":{"ip":"203.0.113.50"}}`, "203.0.113.0"},
		{"expr anonymize_ip v6", `ce_x: {expr: anonymize_ip(context.ip)}`, `{"context":{"ip":"2001:db8:85a3:8d3::1"}}`, "2001:db8:85a3::"},
		{"expr epoch_ms", `ce_x: {expr: epoch_ms(properties.t)}`, `{"properties":{"t":"1970-01-01T00:00:01Z"}}`, "1000"},
		{"expr empty", `ce_x: {expr: 'empty(properties.l) ? "e" : "ne"'}`, `{"properties":{"l":[]}}`, "e"},
		{"expr json", `ce_x: {expr: json(properties.l)}`, `{"properties":{"l":[1,"a"]}}`, `[1,"a"]`},
		{"expr let", `ce_x: {expr: 'let p = properties.price; p * 2'}`, `{"properties":{"price":5}}`, "10"},

		// setting
		{"setting set", `ce_x: {setting: project}`, `{}`, "example.com"},
		{"setting defaulted", `ce_x: {setting: base_url}`, `{}`, "https://www.woopra.com"},
		{"setting unset is absent", `ce_x: {setting: response}`, `{}`, absent},
		{"setting unset takes default", `ce_x: {setting: response, default: json}`, `{}`, "json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, fieldsPreset(tc.field))
			checkParam(t, run(p, tc.event), "ce_x", tc.want)
		})
	}
}

// TestSettingSources checks settings declared by the preset: set, defaulted, typed and unset.
func TestSettingSources(t *testing.T) {
	body := "settings:\n" +
		"  app: {type: string}\n" +
		"  level: {type: int, default: 3}\n" +
		"  flag: {type: bool}\n" +
		"  timeout: {default: 1800000}\n" +
		fieldsPreset("ce_app: {setting: app}\nce_level: {setting: level}\nce_flag: {setting: flag}\ntimeout: {setting: timeout}\n")
	tests := []struct {
		name     string
		settings map[string]string
		want     map[string]string
	}{
		{"none given", map[string]string{"project": "p"},
			map[string]string{"ce_app": absent, "ce_level": "3", "ce_flag": absent, "timeout": "1800000"}},
		{"all given", map[string]string{"project": "p", "app": "signal", "level": "7", "flag": "false", "timeout": "60000"},
			map[string]string{"ce_app": "signal", "ce_level": "7", "ce_flag": "false", "timeout": "60000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := run(compileWith(t, body, tc.settings), `{}`)
			for k, v := range tc.want {
				checkParam(t, res, k, v)
			}
		})
	}
}

// TestFirstPresence checks precedence lists under each presence rule: missing, null and ""
// decide the winner according to the rule, and 0 and false always win.
func TestFirstPresence(t *testing.T) {
	tests := []struct {
		name    string
		present string // "" for the default (non_null)
		event   string // a, b and c are candidate keys of properties, in that order
		want    string
	}{
		{"default first present", "", `{"a":"A","b":"B"}`, "A"},
		{"default missing skipped", "", `{"b":"B"}`, "B"},
		{"default null skipped", "", `{"a":null,"b":"B"}`, "B"},
		{"default empty wins", "", `{"a":"","b":"B"}`, ""},
		{"default zero wins", "", `{"a":0,"b":"B"}`, "0"},
		{"default false wins", "", `{"a":false,"b":"B"}`, "false"},
		{"default none", "", `{"a":null}`, absent},
		{"default third", "", `{"c":"C"}`, "C"},

		{"defined missing skipped", "defined", `{"b":"B"}`, "B"},
		{"defined null wins as empty", "defined", `{"a":null,"b":"B"}`, ""},
		{"defined empty wins", "defined", `{"a":"","b":"B"}`, ""},
		{"defined zero wins", "defined", `{"a":0,"b":"B"}`, "0"},
		{"defined false wins", "defined", `{"a":false,"b":"B"}`, "false"},
		{"defined none", "defined", `{}`, absent},

		{"non_null missing skipped", "non_null", `{"b":"B"}`, "B"},
		{"non_null null skipped", "non_null", `{"a":null,"b":"B"}`, "B"},
		{"non_null empty wins", "non_null", `{"a":"","b":"B"}`, ""},
		{"non_null zero wins", "non_null", `{"a":0,"b":"B"}`, "0"},
		{"non_null false wins", "non_null", `{"a":false,"b":"B"}`, "false"},

		{"non_empty missing skipped", "non_empty", `{"b":"B"}`, "B"},
		{"non_empty null skipped", "non_empty", `{"a":null,"b":"B"}`, "B"},
		{"non_empty empty skipped", "non_empty", `{"a":"","b":"B"}`, "B"},
		{"non_empty empty object skipped", "non_empty", `{"a":{},"b":"B"}`, "B"},
		{"non_empty empty array skipped", "non_empty", `{"a":[ ],"b":"B"}`, "B"},
		{"non_empty zero wins", "non_empty", `{"a":0,"b":"B"}`, "0"},
		{"non_empty false wins", "non_empty", `{"a":false,"b":"B"}`, "false"},
		{"non_empty all empty", "non_empty", `{"a":"","b":null,"c":""}`, absent},

		{"truthy missing skipped", "truthy", `{"b":"B"}`, "B"},
		{"truthy null skipped", "truthy", `{"a":null,"b":"B"}`, "B"},
		{"truthy empty skipped", "truthy", `{"a":"","b":"B"}`, "B"},
		{"truthy zero skipped", "truthy", `{"a":0,"b":"B"}`, "B"},
		{"truthy negative zero skipped", "truthy", `{"a":-0.0e3,"b":"B"}`, "B"},
		{"truthy false skipped", "truthy", `{"a":false,"b":"B"}`, "B"},
		{"truthy empty object wins", "truthy", `{"a":{},"b":"B"}`, "{}"},
		{"truthy empty array wins", "truthy", `{"a":[],"b":"B"}`, "[]"},
		{"truthy string zero wins", "truthy", `{"a":"0","b":"B"}`, "0"},
		{"truthy small number wins", "truthy", `{"a":0.001,"b":"B"}`, "0.001"},
		{"truthy true wins", "truthy", `{"a":true,"b":"B"}`, "true"},
		{"truthy all falsy", "truthy", `{"a":0,"b":false,"c":""}`, absent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			field := "ce_x:\n  first: [properties.a, properties.b, properties.c]\n"
			if tc.present != "" {
				field += "  present: " + tc.present + "\n"
			}
			p := compile(t, fieldsPreset(field))
			checkParam(t, run(p, `{"properties":`+tc.event+`}`), "ce_x", tc.want)
		})
	}
}

// TestPathPresence checks the presence rules on a single path.
func TestPathPresence(t *testing.T) {
	tests := []struct {
		present, value, want string
	}{
		{"defined", `null`, ""},
		{"defined", `""`, ""},
		{"non_null", `null`, absent},
		{"non_null", `""`, ""},
		{"non_empty", `""`, absent},
		{"non_empty", `{}`, absent},
		{"non_empty", `[]`, absent},
		{"non_empty", `0`, "0"},
		{"non_empty", `false`, "false"},
		{"non_empty", `" "`, " "},
		{"truthy", `0`, absent},
		{"truthy", `false`, absent},
		{"truthy", `""`, absent},
		{"truthy", `null`, absent},
		{"truthy", `{}`, "{}"},
		{"truthy", `-1`, "-1"},
		{"truthy", `"false"`, "false"},
	}
	for _, tc := range tests {
		t.Run(tc.present+" "+tc.value, func(t *testing.T) {
			p := compile(t, fieldsPreset("ce_x: {path: properties.a, present: "+tc.present+"}\n"))
			checkParam(t, run(p, `{"properties":{"a":`+tc.value+`}}`), "ce_x", tc.want)
		})
	}
}

// TestRequired checks required: true rejects with missing_required when the field is absent.
func TestRequired(t *testing.T) {
	p := compile(t, fieldsPreset("ce_x: {first: [properties.a, properties.b], present: non_empty, required: true}\n"))
	tests := []struct {
		name, event, code, want string
	}{
		{"present", `{"properties":{"b":"B"}}`, "", "B"},
		{"absent", `{"properties":{"a":""}}`, "missing_required", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := run(p, tc.event)
			if tc.code != "" {
				if res.Outcome.String() != "rejected" || res.Code != tc.code || res.Mapping != "m" {
					t.Fatalf("got %s %q (%s) mapping %q, want rejected %q", res.Outcome, res.Code, res.Error, res.Mapping, tc.code)
				}
				if !strings.Contains(res.Error, `"ce_x"`) {
					t.Errorf("error %q does not name the field", res.Error)
				}
				return
			}
			checkParam(t, res, "ce_x", tc.want)
		})
	}
}
