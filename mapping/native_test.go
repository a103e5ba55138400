package mapping

import (
	"testing"

	"github.com/tidwall/gjson"
)

// TestNativeMatchesVM checks that every expression evaluated natively gives exactly what the
// expr VM gives, over events that put each path in every state (missing, null, string, number,
// bool, object, array).
func TestNativeMatchesVM(t *testing.T) {
	bools := []string{
		`type == "track"`, `"track" == type`, `type != "track"`, `type == nil`, `type != nil`,
		`flag == true`, `flag == false`, `flag != true`,
		`type in ["track", "page"]`, `!(type in ["track"])`, `not (type == "page")`,
		`type == "track" && event == "Video Played"`, `type == "page" || event == "x"`,
		`type == "track" and (event == "a" or event == "b")`, `true`, `false`,
		`context.traits.plan == "pro"`, `properties["fav.movie"] == "Alien"`,
	}
	events := []string{
		`{}`, `{"type":"track","event":"Video Played","flag":true}`, `{"type":"page","event":"a","flag":false}`,
		`{"type":null,"event":"b","flag":null}`, `{"type":1,"event":true,"flag":"true"}`, `{"type":{"a":1},"event":["x"]}`,
		`{"type":"TRACK","event":"x","context":{"traits":{"plan":"pro"}}}`, `{"context":{"traits":null}}`,
		`{"properties":{"fav.movie":"Alien"}}`, `{"type":"track","event":"a"}`,
	}
	for _, src := range bools {
		c := &exprCompiler{paths: newPathTable(), used: map[int]bool{}}
		prog, err := c.compile(src, true)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if prog.boolFn == nil {
			if src == `properties["fav.movie"] == "Alien"` {
				continue // an index expression stays on the VM
			}
			t.Errorf("%s: no native form", src)
			continue
		}
		p := &Program{paths: c.paths, exprSlots: keysOf2(c.used)}
		for _, ev := range events {
			st := &state{slots: make([]gjson.Result, len(c.paths.paths)), env: exprEnv{P: make([]any, len(c.paths.paths))}}
			st.caps.reset(len(st.slots))
			c.paths.walk(gjson.Parse(ev), st.slots, &st.caps)
			native, ok := prog.boolFn(st.slots)
			vmOut, vmErr := p.evalAny(st, &program{vm: prog.vm}, nil)
			if (vmErr == nil) != ok {
				t.Errorf("%s on %s: VM error %v, native ok %v", src, ev, vmErr, ok)
				continue
			}
			if ok && vmOut != native {
				t.Errorf("%s on %s: native %v, VM %v", src, ev, native, vmOut)
			}
		}
	}

	strs := []string{`lower(value)`, `upper(value)`, `trim(value)`, `lower(trim(value))`, `trim(upper(trim(value)))`}
	for _, src := range strs {
		c := &exprCompiler{paths: newPathTable(), used: map[int]bool{}}
		prog, err := c.compile(src, false)
		if err != nil || prog.strFn == nil {
			t.Fatalf("%s: %v, native %v", src, err, prog != nil && prog.strFn != nil)
		}
		p := &Program{paths: c.paths}
		for _, in := range []string{"", "  Ann@Example.COM \t", "ÄÖÜ straße", "x"} {
			st := &state{env: exprEnv{P: []any{}}}
			vmOut, err := p.evalAny(st, &program{vm: prog.vm}, in)
			if err != nil || vmOut != prog.strFn(in) {
				t.Errorf("%s(%q): native %q, VM %v (%v)", src, in, prog.strFn(in), vmOut, err)
			}
		}
	}
	// The placeholder-dropping transform: the literal becomes missing (nil), other strings pass.
	{
		src := `value == "$direct" ? nil : value`
		c := &exprCompiler{paths: newPathTable(), used: map[int]bool{}}
		prog, err := c.compile(src, false)
		if err != nil || prog.dropStr == nil || *prog.dropStr != "$direct" {
			t.Fatalf("%s: %v, native %v", src, err, prog != nil && prog.dropStr != nil)
		}
		p := &Program{paths: c.paths}
		for _, in := range []string{"$direct", "", "https://a.example/", "$Direct"} {
			st := &state{env: exprEnv{P: []any{}}}
			vmOut, err := p.evalAny(st, &program{vm: prog.vm}, in)
			got, _ := p.transform(st, prog, Value{Kind: String, Text: in})
			want, _ := fromAny(vmOut)
			if err != nil || got != want {
				t.Errorf("%s(%q): native %+v, VM %+v (%v)", src, in, got, want, err)
			}
		}
	}
	for _, src := range []string{`lower(value) + "x"`, `len(value)`, `value`, `value == "x" ? value : nil`, `value != "x" ? nil : value`} {
		c := &exprCompiler{paths: newPathTable(), used: map[int]bool{}}
		prog, _ := c.compile(src, false)
		if src != "value" && (prog.strFn != nil || prog.dropStr != nil) {
			t.Errorf("%s should stay on the VM", src)
		}
	}
}

func keysOf2(m map[int]bool) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
