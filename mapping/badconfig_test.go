package mapping_test

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// TestBadConfigs compiles every testdata/bad_*.yaml (each a preset with exactly one problem)
// and checks the one diagnostic's exact file:line:col and code.
func TestBadConfigs(t *testing.T) {
	tests := map[string]struct {
		at   string // file:line:col
		code string
		hint string // a substring of the hint, when it matters
	}{
		// The unclosed { of line 8, at its column.
		"bad_yaml.yaml": {"testdata/bad_yaml.yaml:8:14", "yaml_syntax", ""},
		// yaml.v3 gives only the line of the block the bad indentation breaks (the list item
		// on line 5), not the mis-indented line 7.
		"bad_yaml_indent.yaml":       {"testdata/bad_yaml_indent.yaml:5:1", "yaml_syntax", ""},
		"bad_yaml_tab.yaml":          {"testdata/bad_yaml_tab.yaml:8:1", "yaml_syntax", ""},
		"bad_unknown_key.yaml":       {"testdata/bad_unknown_key.yaml:10:9", "unknown_key", `did you mean "present"?`},
		"bad_two_sources.yaml":       {"testdata/bad_two_sources.yaml:11:9", "multiple_sources", ""},
		"bad_no_source.yaml":         {"testdata/bad_no_source.yaml:9:7", "no_source", ""},
		"bad_expression.yaml":        {"testdata/bad_expression.yaml:9:24", "bad_expression", ""},
		"bad_when.yaml":              {"testdata/bad_when.yaml:6:11", "bad_expression", ""},
		"bad_unknown_setting.yaml":   {"testdata/bad_unknown_setting.yaml:10:18", "unknown_setting", "project"},
		"bad_unknown_prefix.yaml":    {"testdata/bad_unknown_prefix.yaml:9:7", "unknown_prefix", "ce_, cv_, cs_"},
		"bad_spread_prefix.yaml":     {"testdata/bad_spread_prefix.yaml:11:17", "unknown_prefix", "ce_, cv_, cs_"},
		"bad_unknown_table.yaml":     {"testdata/bad_unknown_table.yaml:11:36", "unknown_table", `did you mean "event_names"?`},
		"bad_unknown_endpoint.yaml":  {"testdata/bad_unknown_endpoint.yaml:6:15", "unknown_endpoint", "ce, identify"},
		"bad_missing_endpoint.yaml":  {"testdata/bad_missing_endpoint.yaml:5:5", "missing_key", ""},
		"bad_identify_event.yaml":    {"testdata/bad_identify_event.yaml:10:7", "contract", ""},
		"bad_missing_event.yaml":     {"testdata/bad_missing_event.yaml:5:5", "contract", ""},
		"bad_template.yaml":          {"testdata/bad_template.yaml:9:28", "bad_template", ""},
		"bad_enum_value.yaml":        {"testdata/bad_enum_value.yaml:8:37", "bad_value", "defined, non_null, non_empty"},
		"bad_header_name.yaml":       {"testdata/bad_header_name.yaml:10:7", "bad_value", ""},
		"bad_path.yaml":              {"testdata/bad_path.yaml:9:20", "bad_path", ""},
		"bad_first_entry.yaml":       {"testdata/bad_first_entry.yaml:12:13", "bad_path", ""},
		"bad_duplicate_key.yaml":     {"testdata/bad_duplicate_key.yaml:10:7", "duplicate", ""},
		"bad_duplicate_mapping.yaml": {"testdata/bad_duplicate_mapping.yaml:9:5", "duplicate", ""},
		"bad_wrong_kind.yaml":        {"testdata/bad_wrong_kind.yaml:1:7", "wrong_kind", ""},
		"bad_unknown_blueprint.yaml": {"testdata/bad_unknown_blueprint.yaml:3:12", "unknown_blueprint", ""},
		"bad_keys_flatten.yaml":      {"testdata/bad_keys_flatten.yaml:10:15", "bad_value", "keep one of them"},
		"bad_future_bound.yaml":      {"testdata/bad_future_bound.yaml:5:18", "contract", "31622400000 ms (366 days)"},
		"bad_spread_transform.yaml":  {"testdata/bad_spread_transform.yaml:8:48", "bad_expression", "bound as `value`"},
	}

	files, err := filepath.Glob("../testdata/bad_*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range files {
		seen[filepath.Base(f)] = true
		if _, ok := tests[filepath.Base(f)]; !ok {
			t.Errorf("%s has no expectation in TestBadConfigs", f)
		}
	}
	names := make([]string, 0, len(tests))
	for name := range tests {
		names = append(names, name)
		if !seen[name] {
			t.Errorf("testdata/%s is missing", name)
		}
	}
	sort.Strings(names)

	for _, name := range names {
		tc := tests[name]
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("..", "testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			_, err = mapping.Compile(mapping.Source{File: "testdata/" + name, Data: data},
				mapping.Options{Blueprint: woopra(t), Settings: map[string]string{"project": "example.com"}})
			var ds mapping.Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("got error %v (%T), want Diagnostics", err, err)
			}
			if len(ds) != 1 {
				t.Fatalf("got %d diagnostics, want exactly 1:\n%v", len(ds), ds)
			}
			d := ds[0]
			if got := d.File + ":" + itoa(d.Line) + ":" + itoa(d.Col); got != tc.at || d.Code != tc.code {
				t.Errorf("got %s %s, want %s %s\n(%v)", got, d.Code, tc.at, tc.code, d)
			}
			if !strings.HasPrefix(d.Error(), tc.at+": "+tc.code+": ") {
				t.Errorf("Error() = %q, want prefix %q", d.Error(), tc.at+": "+tc.code+": ")
			}
			if d.Msg == "" {
				t.Error("empty message")
			}
			if tc.hint != "" && !strings.Contains(d.Hint, tc.hint) {
				t.Errorf("hint %q does not contain %q", d.Hint, tc.hint)
			}
		})
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// TestBadSettings checks --set problems: unknown keys, missing required settings and values
// that do not fit a setting's type or enum.
func TestBadSettings(t *testing.T) {
	body := fieldsPreset("ce_x: {value: x}\n")
	tests := []struct {
		name     string
		settings map[string]string
		code     string
		msg      string // a substring of the message
		hint     string // a substring of the hint
	}{
		{"unknown key", map[string]string{"project": "p", "nosuch": "1"}, "unknown_setting", `unknown setting "nosuch"`, "project"},
		{"misspelt key", map[string]string{"project": "p", "timout": "1"}, "unknown_setting", `unknown setting "timout"`, `did you mean "timeout"?`},
		{"missing project", map[string]string{}, "bad_setting", `setting "project" is required`, "--set project="},
		{"nil settings", nil, "bad_setting", `setting "project" is required`, ""},
		{"int not a number", map[string]string{"project": "p", "timeout": "30m"}, "bad_setting", `"30m" is not an integer`, ""},
		{"int with fraction", map[string]string{"project": "p", "timeout": "1.5"}, "bad_setting", "not an integer", ""},
		{"enum outside", map[string]string{"project": "p", "response": "html"}, "bad_setting", "json, xml, js", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds := compileErr(t, body, tc.settings)
			if len(ds) != 1 {
				t.Fatalf("got %d diagnostics, want 1:\n%v", len(ds), ds)
			}
			d := ds[0]
			if d.File != "--set" || d.Line != 0 || d.Code != tc.code {
				t.Errorf("got %s:%d %s, want --set (no position) %s", d.File, d.Line, d.Code, tc.code)
			}
			if !strings.Contains(d.Msg, tc.msg) || !strings.Contains(d.Hint, tc.hint) {
				t.Errorf("got %q (hint %q), want message with %q and hint with %q", d.Msg, d.Hint, tc.msg, tc.hint)
			}
			if !strings.HasPrefix(d.Error(), "--set: "+tc.code+": ") {
				t.Errorf("Error() = %q", d.Error())
			}
		})
	}

	t.Run("settings file name", func(t *testing.T) {
		_, err := mapping.Compile(mapping.Source{File: "p.yaml", Data: []byte(header + body)},
			mapping.Options{Blueprint: woopra(t), Settings: map[string]string{"project": "p", "nosuch": "1"}, SettingsFile: "woorelay.yaml"})
		if err == nil || !strings.HasPrefix(err.Error(), "woorelay.yaml: unknown_setting: ") {
			t.Errorf("got %v", err)
		}
	})
	t.Run("AllowUnsetRequired", func(t *testing.T) {
		_, err := mapping.Compile(mapping.Source{File: "p.yaml", Data: []byte(header + body)},
			mapping.Options{Blueprint: woopra(t), AllowUnsetRequired: true})
		if err != nil {
			t.Errorf("got %v", err)
		}
	})
	t.Run("no blueprint", func(t *testing.T) {
		_, err := mapping.Compile(mapping.Source{File: "p.yaml", Data: []byte(header + body)}, mapping.Options{})
		var ds mapping.Diagnostics
		if !errors.As(err, &ds) || len(ds) != 1 || ds[0].Code != "unknown_blueprint" {
			t.Errorf("got %v", err)
		}
	})
}

// TestBadInline checks a few more diagnostics on inline presets, including that several
// problems are all reported, in file order.
func TestBadInline(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string // "line:col code", in order
	}{
		{"bad setting default", "settings:\n  timeout: {default: soon}\n" + fieldsPreset(""), []string{"5:22 bad_setting"}},
		{"otherwise value without value", "tables:\n  t: {otherwise: value, rows: {a: b}}\n" + fieldsPreset(""), []string{"5:18 missing_key"}},
		{"bad transform", fieldsPreset("ce_x: {path: a, transform: 'lower('}\n"), []string{"10:34 bad_expression"}},
		{"bad template placeholder", fieldsPreset("ce_x: {template: 'a {{ 1 + }} b'}\n"), []string{"10:24 bad_expression"}},
		{"empty placeholder", fieldsPreset("ce_x: {template: 'a {{ }} b'}\n"), []string{"10:24 bad_template"}},
		{"several problems in order", fieldsPreset("ce_a: {path: a, value: b}\nbad: {path: x}\nce_c: {setting: nope}\n"),
			[]string{"10:23 multiple_sources", "11:7 unknown_prefix", "12:23 unknown_setting"}},
		{"identity param without prefix", "identity: {order: [user]}\nmappings:\n  - name: m\n    skip: x\n", []string{"4:11 unknown_prefix"}},
		{"skip and reject", "mappings:\n  - name: m\n    skip: x\n    reject: {code: c, message: m}\n", []string{"7:13 multiple_sources"}},
		{"mappings not a list", "mappings: {name: m}\n", []string{"4:11 wrong_type"}},
		{"field not an object", fieldsPreset("ce_x: [a, b]\n"), []string{"10:13 wrong_type"}},
		{"unknown mapping key", "mappings:\n  - name: m\n    endpont: ce\n", []string{"5:5 missing_key", "6:5 unknown_key"}},
		{"misspelt spread keys option", spreadPreset("", "- {from: traits, prefix: cv_, keys: paths}"), []string{"11:43 bad_value"}},
		{"bad spread on_error", spreadPreset("", "- {from: traits, prefix: cv_, on_error: ignore}"), []string{"11:47 bad_value"}},
		{"bad spread as", spreadPreset("", "- {from: traits, prefix: cv_, as: date}"), []string{"11:41 bad_value"}},
		{"misspelt truthy", fieldsPreset("ce_x: {path: a, present: truthyy}\n"), []string{"10:32 bad_value"}},
		{"negative max_future_ms", "contract: {max_future_ms: -1}\n" + fieldsPreset(""), []string{"4:27 bad_value"}},
		{"unknown preset contract key", "contract: {timestamp_param: ts}\n" + fieldsPreset(""), []string{"4:12 unknown_key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ds := compileErr(t, tc.body, map[string]string{"project": "p"})
			var got []string
			for _, d := range ds {
				if d.File != "inline.yaml" {
					t.Errorf("diagnostic in file %q", d.File)
				}
				got = append(got, itoa(d.Line)+":"+itoa(d.Col)+" "+d.Code)
			}
			if !equalStrings(got, tc.want) {
				t.Errorf("got %q, want %q\n%v", got, tc.want, ds)
			}
		})
	}
}

// TestBadBlueprints checks the blueprint parser's diagnostics.
func TestBadBlueprints(t *testing.T) {
	data, err := os.ReadFile("../blueprint/woopra.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mapping.ParseBlueprint("woopra.yaml", data); err != nil {
		t.Fatalf("the shipped blueprint does not parse: %v", err)
	}
	tests := []struct {
		name, old, new, code string
	}{
		{"base url setting not declared", "base_url_setting: base_url", "base_url_setting: base", "unknown_setting"},
		{"bad method", "method: GET", "method: PUT", "bad_value"},
		{"wrong kind", "kind: blueprint", "kind: preset", "wrong_kind"},
		{"unknown key", "event_param: event", "event_parm: event", "unknown_key"},
		{"bad on_future", "on_future: reject", "on_future: ignore", "bad_value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(string(data), tc.old, tc.new, 1)
			_, err := mapping.ParseBlueprint("woopra.yaml", []byte(src))
			var ds mapping.Diagnostics
			if !errors.As(err, &ds) || len(ds) != 1 || ds[0].Code != tc.code || ds[0].Line == 0 {
				t.Fatalf("got %v, want one %s with a position", err, tc.code)
			}
			// The diagnostic points at the line that was changed.
			line := strings.Split(src, "\n")[ds[0].Line-1]
			if !strings.Contains(line, strings.SplitN(tc.new, ":", 2)[0]) {
				t.Errorf("diagnostic %v points at line %q", ds[0], line)
			}
		})
	}
}
