package mapping

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// Kind classifies a Value the way the mapping language reasons about presence and encoding.
type Kind uint8

// The kinds a Value can have. Missing is the zero Kind: a path that found nothing.
const (
	Missing Kind = iota
	Null
	String
	Number
	Bool
	Object
	Array
)

var kindNames = [...]string{"missing", "null", "string", "number", "bool", "object", "array"}

// String returns the lower-case name of the kind, as used in traces and errors.
func (k Kind) String() string { return kindNames[k] }

// Value is one value read from an event or computed by a field. Text holds the string's content,
// the number's JSON text exactly as it appeared ("42.50" stays "42.50"), "true"/"false" for a bool,
// or the raw JSON of an object or array (compacted only when it is encoded).
type Value struct {
	Kind Kind
	Text string
}

// fromResult turns a gjson result into a Value without copying.
func fromResult(r gjson.Result) Value {
	if r.Raw == "" && r.Type == gjson.Null {
		return Value{}
	}
	switch r.Type {
	case gjson.Null:
		return Value{Kind: Null}
	case gjson.String:
		return Value{Kind: String, Text: r.Str}
	case gjson.Number:
		return Value{Kind: Number, Text: r.Raw}
	case gjson.True:
		return Value{Kind: Bool, Text: "true"}
	case gjson.False:
		return Value{Kind: Bool, Text: "false"}
	default:
		if r.IsArray() {
			return Value{Kind: Array, Text: r.Raw}
		}
		return Value{Kind: Object, Text: r.Raw}
	}
}

// Presence is the rule that decides whether a value counts as present.
type Presence uint8

// Presence rules. 0 and false are present under every rule but PresentTruthy.
const (
	// PresentNonNull (the default): missing and JSON null are absent.
	PresentNonNull Presence = iota
	// PresentDefined: only a missing value is absent; null is sent as an empty string.
	PresentDefined
	// PresentNonEmpty: missing, null, "" and empty objects or arrays are absent.
	PresentNonEmpty
	// PresentTruthy is JavaScript's `if (value)`: missing, null, "", 0 and false are absent;
	// every object and array, even empty, is present.
	PresentTruthy
)

var presenceNames = map[string]Presence{"non_null": PresentNonNull, "defined": PresentDefined, "non_empty": PresentNonEmpty, "truthy": PresentTruthy}

// presenceOptions are the names of the presence rules, as the YAML key present: takes them.
var presenceOptions = []string{"defined", "non_null", "non_empty", "truthy"}

func (p Presence) String() string {
	for k, v := range presenceNames {
		if v == p {
			return k
		}
	}
	return "?"
}

// absence reports why v is absent under rule p, or "" when it is present.
func (p Presence) absence(v Value) string {
	switch v.Kind {
	case Missing:
		return "missing"
	case Null:
		if p != PresentDefined {
			return "null"
		}
	case String:
		if (p == PresentNonEmpty || p == PresentTruthy) && v.Text == "" {
			return "empty string"
		}
	case Number:
		if p == PresentTruthy && isZero(v.Text) {
			return "zero"
		}
	case Bool:
		if p == PresentTruthy && v.Text == "false" {
			return "false"
		}
	case Object, Array:
		if p == PresentNonEmpty && isEmptyContainer(v.Text) {
			return "empty " + v.Kind.String()
		}
	}
	return ""
}

// isZero reports whether a JSON number is zero (0, -0, 0.0, 0e5, ...): every digit of its
// mantissa is 0.
func isZero(num string) bool {
	for i := 0; i < len(num); i++ {
		switch c := num[i]; c {
		case '-', '+', '.', '0':
		case 'e', 'E':
			return true
		default:
			return false
		}
	}
	return true
}

func isEmptyContainer(raw string) bool {
	n := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case ' ', '\t', '\n', '\r':
		default:
			n++
			if n > 2 {
				return false
			}
		}
	}
	return true
}

// QueryText is the text a value is sent as: strings as they are, numbers as their JSON text,
// booleans as true/false, objects and arrays as compact JSON, null as "".
func (v Value) QueryText() string {
	switch v.Kind {
	case Object, Array:
		return compactJSON(v.Text)
	case Null, Missing:
		return ""
	}
	return v.Text
}

// compactJSON removes insignificant whitespace; raw JSON that is already compact is returned as is.
func compactJSON(raw string) string {
	if !needsCompact(raw) {
		return raw
	}
	return string(appendCompact(nil, raw))
}

func needsCompact(raw string) bool {
	inStr := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inStr {
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case ' ', '\t', '\n', '\r':
			return true
		}
	}
	return false
}

// appendCompact appends raw JSON without its insignificant whitespace, as @ugly does: bytes up to
// and including space are dropped outside strings, strings are copied as they are.
func appendCompact(b []byte, raw string) []byte {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c <= ' ' {
			continue
		}
		if c != '"' {
			b = append(b, c)
			continue
		}
		j := i + 1
		for ; j < len(raw); j++ {
			if raw[j] == '\\' {
				j++
			} else if raw[j] == '"' {
				break
			}
		}
		end := min(j+1, len(raw))
		b = append(b, raw[i:end]...)
		i = end - 1
	}
	return b
}

// JSON returns v as a JSON value: strings quoted, others as their JSON text.
func (v Value) JSON() string {
	switch v.Kind {
	case String:
		return strconv.Quote(v.Text)
	case Missing, Null:
		return "null"
	case Object, Array:
		return compactJSON(v.Text)
	}
	return v.Text
}

// toAny converts a value to the Go form expr programs work with.
func (v Value) toAny() any {
	switch v.Kind {
	case String:
		return v.Text
	case Number:
		if i, err := strconv.ParseInt(v.Text, 10, 64); err == nil && i >= -(1<<53) && i <= 1<<53 {
			return int(i)
		}
		f, _ := strconv.ParseFloat(v.Text, 64)
		return f
	case Bool:
		return v.Text == "true"
	case Object, Array:
		var out any
		if err := json.Unmarshal([]byte(v.Text), &out); err != nil {
			return nil
		}
		return out
	}
	return nil
}

// fromAny converts an expr result back into a Value.
func fromAny(x any) (Value, error) {
	switch t := x.(type) {
	case nil:
		return Value{}, nil
	case string:
		return Value{Kind: String, Text: t}, nil
	case bool:
		if t {
			return Value{Kind: Bool, Text: "true"}, nil
		}
		return Value{Kind: Bool, Text: "false"}, nil
	case int:
		return Value{Kind: Number, Text: strconv.Itoa(t)}, nil
	case int64:
		return Value{Kind: Number, Text: strconv.FormatInt(t, 10)}, nil
	case float64:
		if math.IsNaN(t) || math.IsInf(t, 0) {
			return Value{}, errNotFinite
		}
		return Value{Kind: Number, Text: strconv.FormatFloat(t, 'f', -1, 64)}, nil
	case []any:
		b, err := json.Marshal(t)
		return Value{Kind: Array, Text: string(b)}, err
	case map[string]any:
		b, err := json.Marshal(t)
		return Value{Kind: Object, Text: string(b)}, err
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return Value{}, err
		}
		return fromResult(gjson.ParseBytes(b)), nil
	}
}

type valueError string

func (e valueError) Error() string { return string(e) }

const errNotFinite = valueError("number is not finite")

// Conversion is a declared type conversion (`as:`) applied after lookup and transform.
type Conversion uint8

// The conversions a field can declare.
const (
	AsNone Conversion = iota
	AsString
	AsInt
	AsFloat
	AsBool
	AsJSON
	AsEpochMs
)

var conversionNames = map[string]Conversion{"string": AsString, "int": AsInt, "float": AsFloat, "bool": AsBool, "json": AsJSON, "epoch_ms": AsEpochMs}

// conversionOptions are the names of the conversions, as the YAML key as: takes them.
var conversionOptions = []string{"string", "int", "float", "bool", "json", "epoch_ms"}

func (c Conversion) String() string {
	for k, v := range conversionNames {
		if v == c {
			return k
		}
	}
	return ""
}

// convert applies c to a present value.
func convert(c Conversion, v Value) (Value, error) {
	switch c {
	case AsString:
		return Value{Kind: String, Text: v.QueryText()}, nil
	case AsJSON:
		return Value{Kind: String, Text: v.JSON()}, nil
	case AsInt:
		switch v.Kind {
		case Number, String:
			t := strings.TrimSpace(v.Text)
			if _, err := strconv.ParseInt(t, 10, 64); err == nil {
				return Value{Kind: Number, Text: t}, nil
			}
			f, err := strconv.ParseFloat(t, 64)
			if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<63 {
				return Value{}, valueError("cannot convert " + strconv.Quote(v.Text) + " to an integer")
			}
			return Value{Kind: Number, Text: strconv.FormatInt(int64(f), 10)}, nil
		case Bool:
			if v.Text == "true" {
				return Value{Kind: Number, Text: "1"}, nil
			}
			return Value{Kind: Number, Text: "0"}, nil
		}
	case AsFloat:
		switch v.Kind {
		case Number:
			return v, nil
		case String:
			t := strings.TrimSpace(v.Text)
			if _, err := strconv.ParseFloat(t, 64); err == nil && gjson.Valid(t) {
				return Value{Kind: Number, Text: t}, nil
			}
			return Value{}, valueError("cannot convert " + strconv.Quote(v.Text) + " to a number")
		}
	case AsBool:
		switch v.Kind {
		case Bool:
			return v, nil
		case String, Number:
			if b, err := strconv.ParseBool(strings.TrimSpace(v.Text)); err == nil {
				return fromAny(b)
			}
			return Value{}, valueError("cannot convert " + strconv.Quote(v.Text) + " to a boolean")
		}
	case AsEpochMs:
		ms, err := EpochMillis(v)
		if err != nil {
			return Value{}, err
		}
		return Value{Kind: Number, Text: strconv.FormatInt(ms, 10)}, nil
	default:
		return v, nil
	}
	return Value{}, valueError("cannot convert a " + v.Kind.String() + " to " + c.String())
}
