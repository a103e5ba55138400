package mapping

import (
	"fmt"
	"sort"
	"strings"
)

// Diagnostic is one problem found in a blueprint, preset or mapping file. Its position points at
// the YAML node at fault, so editors and CI logs can jump straight to it.
type Diagnostic struct {
	File string // file name as given to the loader
	Line int    // 1-based; 0 when the problem has no position
	Col  int    // 1-based
	Code string // stable, machine-readable code such as "unknown_key"
	Msg  string // what is wrong
	Hint string // what to do about it; may be empty
}

// Error formats the diagnostic as "file:line:col: code: message (hint)".
func (d Diagnostic) Error() string {
	var b strings.Builder
	b.WriteString(d.File)
	if d.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", d.Line, d.Col)
	}
	b.WriteString(": ")
	b.WriteString(d.Code)
	b.WriteString(": ")
	b.WriteString(d.Msg)
	if d.Hint != "" {
		b.WriteString(" (hint: ")
		b.WriteString(d.Hint)
		b.WriteString(")")
	}
	return b.String()
}

// Diagnostics is a list of problems; as an error it prints one per line, in file order.
type Diagnostics []Diagnostic

// Error prints every diagnostic on its own line.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.Error()
	}
	return strings.Join(lines, "\n")
}

// Sort orders diagnostics by file, line and column.
func (ds Diagnostics) Sort() {
	sort.SliceStable(ds, func(i, j int) bool {
		a, b := ds[i], ds[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

// Configuration diagnostic codes. They are part of the command-line contract: scripts may
// match on them, so they never change meaning.
const (
	CodeYAML             = "yaml_syntax"       // the file is not valid YAML
	CodeUnknownKey       = "unknown_key"       // a key the schema does not define
	CodeWrongType        = "wrong_type"        // a value of the wrong YAML type
	CodeMissingKey       = "missing_key"       // a required key is absent
	CodeMultipleSources  = "multiple_sources"  // a field declares more than one source
	CodeNoSource         = "no_source"         // a field declares no source
	CodeBadExpression    = "bad_expression"    // an expr program does not compile
	CodeUnknownSetting   = "unknown_setting"   // a setting nobody declared
	CodeBadSetting       = "bad_setting"       // a setting value of the wrong type, or a required one unset
	CodeUnknownPrefix    = "unknown_prefix"    // a custom parameter without ce_/cv_/cs_, or a spread prefix outside them
	CodeBadPath          = "bad_path"          // a path that cannot be compiled
	CodeBadTemplate      = "bad_template"      // a template with an unclosed placeholder
	CodeUnknownTable     = "unknown_table"     // a lookup names a table that does not exist
	CodeUnknownEndpoint  = "unknown_endpoint"  // a mapping names an endpoint the blueprint lacks
	CodeBadValue         = "bad_value"         // an enumerated option with a value outside its set
	CodeDuplicate        = "duplicate"         // the same name declared twice
	CodeContract         = "contract"          // the output contract forbids this
	CodeUnknownBlueprint = "unknown_blueprint" // a preset names a blueprint that is not built in
	CodeUnknownPreset    = "unknown_preset"    // a preset name that is neither built in nor a file
	CodeBadKind          = "wrong_kind"        // a file whose kind: is not what was expected
)

// Event outcome codes for rejected events. Like the configuration codes, they are stable.
const (
	RejectInvalidJSON = "invalid_json"        // the event is not a JSON object
	RejectNoIdentity  = "no_identity"         // no identifier of the blueprint's identity order is present
	RejectMissing     = "missing_required"    // a field marked required: true has no value
	RejectBadValue    = "bad_value"           // a value could not be converted (timestamp, int, ...)
	RejectFuture      = "timestamp_in_future" // the timestamp is later than now plus the allowed skew
	RejectExpression  = "expression_error"    // an expression failed at run time
	RejectSpreadClash = "spread_conflict"     // a spread key collided with an explicit field under policy reject
	RejectContract    = "contract"            // the request breaks the blueprint's output contract
)

// didYouMean returns the candidate closest to s, or "" when none is close.
func didYouMean(s string, candidates []string) string {
	best, bestD := "", len(s)/2+2
	for _, c := range candidates {
		if d := EditDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// EditDistance is the Levenshtein distance between a and b, used for did-you-mean hints.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
