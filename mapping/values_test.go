package mapping_test

import (
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// TestLookupTables covers hits, misses under each otherwise policy and case-insensitive match.
func TestLookupTables(t *testing.T) {
	tables := "tables:\n" +
		"  keep: {rows: {Order Completed: purchase, page: pv}}\n" +
		"  drop: {otherwise: drop, rows: {Order Completed: purchase}}\n" +
		"  skip: {otherwise: skip, rows: {Order Completed: purchase}}\n" +
		"  value: {otherwise: value, otherwise_value: other, rows: {Order Completed: purchase}}\n" +
		"  fold: {match: case_insensitive, rows: {Order Completed: purchase}}\n"
	tests := []struct {
		name, table, input string
		want               string // value of ce_x; absent when dropped
		skipped            bool
	}{
		{"keep hit", "keep", "Order Completed", "purchase", false},
		{"keep second row", "keep", "page", "pv", false},
		{"keep miss", "keep", "Signed Up", "Signed Up", false},
		{"exact is case sensitive", "keep", "order completed", "order completed", false},
		{"drop hit", "drop", "Order Completed", "purchase", false},
		{"drop miss", "drop", "Signed Up", absent, false},
		{"skip hit", "skip", "Order Completed", "purchase", false},
		{"skip miss", "skip", "Signed Up", "", true},
		{"value hit", "value", "Order Completed", "purchase", false},
		{"value miss", "value", "Signed Up", "other", false},
		{"fold exact case", "fold", "Order Completed", "purchase", false},
		{"fold lower", "fold", "order completed", "purchase", false},
		{"fold upper", "fold", "ORDER COMPLETED", "purchase", false},
		{"fold miss keeps", "fold", "Order Started", "Order Started", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, tables+fieldsPreset("ce_x: {path: event, lookup: "+tc.table+"}\n"))
			res := run(p, `{"event":"`+tc.input+`"}`)
			if tc.skipped {
				if res.Outcome != mapping.Skipped || res.Mapping != "m" {
					t.Fatalf("outcome %s mapping %q, want skipped by m", res.Outcome, res.Mapping)
				}
				if !strings.Contains(res.Reason, tc.input) || !strings.Contains(res.Reason, `"skip"`) {
					t.Errorf("reason %q does not name the value and table", res.Reason)
				}
				return
			}
			checkParam(t, res, "ce_x", tc.want)
		})
	}
}

// TestLookupThenTransform checks the documented order: lookup, then transform, then as.
func TestLookupThenTransform(t *testing.T) {
	p := compile(t, "tables:\n  n: {rows: {a: '5'}}\n"+
		fieldsPreset("ce_x: {path: properties.k, lookup: n, transform: 'value + \"0\"', as: int}\n"))
	checkParam(t, run(p, `{"properties":{"k":"a"}}`), "ce_x", "50")
}

// TestTransform covers transform expressions and their errors.
func TestTransform(t *testing.T) {
	tests := []struct {
		name, field, event string
		want               string
		code               string // rejection code, when rejected
	}{
		{"lower trim", `ce_x: {path: properties.e, transform: lower(trim(value))}`, `{"properties":{"e":"  Ann@Example.COM "}}`, "ann@example.com", ""},
		{"number arithmetic", `ce_x: {path: properties.n, transform: value * 100}`, `{"properties":{"n":2}}`, "200", ""},
		{"not run on absent", `ce_x: {path: properties.e, transform: lower(value)}`, `{}`, absent, ""},
		{"nil result is absent", `ce_x: {path: properties.e, transform: 'value == "x" ? nil : value'}`, `{"properties":{"e":"x"}}`, absent, ""},
		{"runs on default", `ce_x: {path: properties.e, default: ABC, transform: lower(value)}`, `{}`, "abc", ""},
		{"error rejects", `ce_x: {path: properties.e, transform: lower(value)}`, `{"properties":{"e":5}}`, "", "expression_error"},
		{"error dropped", `ce_x: {path: properties.e, transform: lower(value), on_error: drop}`, `{"properties":{"e":5}}`, absent, ""},
		{"expr error rejects", `ce_x: {expr: lower(properties.c)}`, `{"properties":{"c":1}}`, "", "expression_error"},
		{"expr error dropped", `ce_x: {expr: lower(properties.c), on_error: drop}`, `{"properties":{"c":1}}`, absent, ""},
		{"an object passed through keeps its key order", `ce_x: {path: properties.o, transform: 'type(value) == "string" ? lower(value) : value'}`, `{"properties":{"o":{"z":1,"a":2}}}`, `{"z":1,"a":2}`, ""},
		{"truthy of a truthy value", `ce_x: {expr: 'truthy(properties.c) ? "t" : "f"'}`, `{"properties":{"c":{}}}`, "t", ""},
		{"truthy of 0", `ce_x: {expr: 'truthy(properties.c) ? "t" : "f"'}`, `{"properties":{"c":0}}`, "f", ""},
		{"truthy of an empty string", `ce_x: {expr: 'truthy(properties.c) ? "t" : "f"'}`, `{"properties":{"c":""}}`, "f", ""},
		{"truthy of false", `ce_x: {expr: 'truthy(properties.c) ? "t" : "f"'}`, `{"properties":{"c":false}}`, "f", ""},
		{"truthy of a missing path", `ce_x: {expr: 'truthy(properties.c) ? "t" : "f"'}`, `{}`, "f", ""},
		{"truthy of NaN", `ce_x: {expr: 'truthy(0.0 / 0.0) ? "t" : "f"'}`, `{}`, "f", ""},
		{"truthy of the string 0", `ce_x: {expr: 'truthy(properties.c) ? "t" : "f"'}`, `{"properties":{"c":"0"}}`, "t", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := run(compile(t, fieldsPreset(tc.field)), tc.event)
			if tc.code != "" {
				if res.Outcome != mapping.Rejected || res.Code != tc.code {
					t.Fatalf("got %s %q %q, want rejected %q", res.Outcome, res.Code, res.Error, tc.code)
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

// TestConversions covers every as: conversion, its errors (bad_value) and on_error: drop.
func TestConversions(t *testing.T) {
	tests := []struct {
		name, as, value string // value is the JSON of properties.v
		want            string
		bad             bool // the conversion fails
	}{
		{"string of number", "string", `42.50`, "42.50", false},
		{"string of bool", "string", `true`, "true", false},
		{"string of object", "string", `{ "a" : 1 }`, `{"a":1}`, false},
		{"int of int", "int", `42`, "42", false},
		{"int of numeric string", "int", `" 17 "`, "17", false},
		{"int of whole float", "int", `42.0`, "42", false},
		{"int of exponent", "int", `1e3`, "1000", false},
		{"int of true", "int", `true`, "1", false},
		{"int of false", "int", `false`, "0", false},
		{"int of fraction", "int", `4.5`, "", true},
		{"int of word", "int", `"abc"`, "", true},
		{"int of object", "int", `{"a":1}`, "", true},
		{"float keeps text", "float", `42.50`, "42.50", false},
		{"float of string", "float", `"3.25"`, "3.25", false},
		{"float of word", "float", `"3.2.5"`, "", true},
		{"float of NaN string", "float", `"NaN"`, "", true},
		{"float of bool", "float", `true`, "", true},
		{"bool of bool", "bool", `false`, "false", false},
		{"bool of string", "bool", `"true"`, "true", false},
		{"bool of one", "bool", `1`, "true", false},
		{"bool of zero", "bool", `0`, "false", false},
		{"bool of word", "bool", `"yes"`, "", true},
		{"bool of array", "bool", `[true]`, "", true},
		{"json of string", "json", `"a b"`, `"a b"`, false},
		{"json of number", "json", `42.50`, `42.50`, false},
		{"json of object", "json", `{ "a" : [ 1, 2 ] }`, `{"a":[1,2]}`, false},
		{"json of bool", "json", `false`, `false`, false},
		{"epoch_ms of iso", "epoch_ms", `"2024-06-01T12:00:00Z"`, "1717243200000", false},
		{"epoch_ms of seconds", "epoch_ms", `1717243200`, "1717243200000", false},
		{"epoch_ms of ms", "epoch_ms", `1717243200000`, "1717243200000", false},
		{"epoch_ms of garbage", "epoch_ms", `"yesterday"`, "", true},
		{"epoch_ms of bool", "epoch_ms", `true`, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			event := `{"properties":{"v":` + tc.value + `}}`
			res := run(compile(t, fieldsPreset("ce_x: {path: properties.v, as: "+tc.as+"}\n")), event)
			if !tc.bad {
				checkParam(t, res, "ce_x", tc.want)
				return
			}
			if res.Outcome != mapping.Rejected || res.Code != "bad_value" || res.Mapping != "m" {
				t.Fatalf("got %s %q (%s), want rejected bad_value", res.Outcome, res.Code, res.Error)
			}
			if !strings.HasPrefix(res.Error, `field "ce_x": `) {
				t.Errorf("error %q does not start with the field name", res.Error)
			}
			// The same conversion under on_error: drop sends the event without the field.
			dropped := run(compile(t, fieldsPreset("ce_x: {path: properties.v, as: "+tc.as+", on_error: drop}\nce_y: {value: kept}\n")), event)
			checkParam(t, dropped, "ce_x", absent)
			checkParam(t, dropped, "ce_y", "kept")
		})
	}
}

// TestNumberEncoding checks numbers keep their JSON text and objects and arrays are sent as
// compact JSON, through every route a value can take to the request.
func TestNumberEncoding(t *testing.T) {
	event := `{
	  "type": "track",
	  "properties": {
	    "price": 42.50,
	    "big": 12345678901234567890,
	    "exp": 1e3,
	    "neg": -0.0,
	    "obj": { "a" : 1 ,  "b" : [ 1 , 2.50 ],
	             "s" : "x  y" },
	    "arr": [ 1,  { "k" : null } ]
	  }
	}`
	tests := []struct {
		name, field, want string
	}{
		{"decimal path", `ce_x: properties.price`, "42.50"},
		{"big path", `ce_x: properties.big`, "12345678901234567890"},
		{"exponent path", `ce_x: properties.exp`, "1e3"},
		{"negative zero path", `ce_x: properties.neg`, "-0.0"},
		{"decimal first", `ce_x: {first: [properties.none, properties.price]}`, "42.50"},
		{"big template", `ce_x: {template: "{{ properties.big }}"}`, "12345678901234567890"},
		{"big as string", `ce_x: {path: properties.big, as: string}`, "12345678901234567890"},
		{"big as float", `ce_x: {path: properties.big, as: float}`, "12345678901234567890"},
		{"object path", `ce_x: properties.obj`, `{"a":1,"b":[1,2.50],"s":"x  y"}`},
		{"array path", `ce_x: properties.arr`, `[1,{"k":null}]`},
		{"object template", `ce_x: {template: "{{ properties.obj }}"}`, `{"a":1,"b":[1,2.50],"s":"x  y"}`},
		{"object as json", `ce_x: {path: properties.obj, as: json}`, `{"a":1,"b":[1,2.50],"s":"x  y"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkParam(t, run(compile(t, fieldsPreset(tc.field)), event), "ce_x", tc.want)
		})
	}

	t.Run("spread", func(t *testing.T) {
		p := compile(t, "identity: {when_none: send}\nmappings:\n  - name: m\n    endpoint: ce\n    fields: {event: {value: e}}\n"+
			"    spread: [{from: properties, prefix: ce_}]\n")
		got := params(t, run(p, event))
		want := []string{"event=e", "ce_price=42.50", "ce_big=12345678901234567890", "ce_exp=1e3", "ce_neg=-0.0",
			`ce_obj={"a":1,"b":[1,2.50],"s":"x  y"}`, `ce_arr=[1,{"k":null}]`}
		if !equalStrings(got, want) {
			t.Errorf("params\n got %q\nwant %q", got, want)
		}
	})
}
