package mapping

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// reader walks yaml.Node trees against an ObjectSpec, collecting diagnostics with positions.
type reader struct {
	file     string
	diags    Diagnostics
	nodeFile map[*yaml.Node]string // which file each node came from, when several files are merged
}

// fileOf returns the file a node was read from.
func (r *reader) fileOf(n *yaml.Node) string {
	if f, ok := r.nodeFile[n]; ok {
		return f
	}
	return r.file
}

func (r *reader) errAt(n *yaml.Node, code, msg, hint string) {
	d := Diagnostic{File: r.fileOf(n), Code: code, Msg: msg, Hint: hint}
	if n != nil {
		d.Line, d.Col = n.Line, n.Column
	}
	r.diags = append(r.diags, d)
}

// parseYAML parses a document into its root mapping node.
func (r *reader) parseYAML(data []byte) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlErrorLine(err)
		col := 1
		switch msg {
		case "did not find expected ',' or ']'": // the line is the unclosed [ one's
			col = unclosedCol(data, line, '[', ']')
		case "did not find expected ',' or '}'":
			col = unclosedCol(data, line, '{', '}')
		}
		r.diags = append(r.diags, Diagnostic{File: r.file, Line: line, Col: col, Code: CodeYAML, Msg: msg,
			Hint: "fix the YAML syntax; indentation must use spaces"})
		return nil
	}
	if len(doc.Content) == 0 {
		r.errAt(&doc, CodeYAML, "the file is empty", "")
		return nil
	}
	if r.nodeFile == nil {
		r.nodeFile = map[*yaml.Node]string{}
	}
	r.register(doc.Content[0])
	return doc.Content[0]
}

func (r *reader) register(n *yaml.Node) {
	if _, seen := r.nodeFile[n]; seen {
		return
	}
	r.nodeFile[n] = r.file
	for _, c := range n.Content {
		r.register(c)
	}
}

// yamlErrorLine extracts "line N" from a yaml.v3 error message.
func yamlErrorLine(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if i := strings.Index(msg, "line "); i >= 0 {
		rest := msg[i+5:]
		j := 0
		for j < len(rest) && rest[j] >= '0' && rest[j] <= '9' {
			j++
		}
		if n, err := strconv.Atoi(rest[:j]); err == nil {
			after := strings.TrimLeft(rest[j:], ": ")
			if yamlParserProblems[after] {
				n++ // yaml.v3 numbers the lines of parser (not scanner) errors from 0
			}
			return n, after
		}
	}
	return 1, msg
}

// unclosedCol returns the column of the last open bracket on the line that no close bracket on
// it matches, outside quotes (1 when there is none): yaml.v3 reports an unclosed flow
// collection at its line only.
func unclosedCol(data []byte, line int, open, close byte) int {
	lines := strings.Split(string(data), "\n")
	if line < 1 || line > len(lines) {
		return 1
	}
	var stack []int
	var quote byte
	text := lines[line-1]
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '#' && (i == 0 || text[i-1] == ' '):
			i = len(text) // a comment
		case c == open:
			stack = append(stack, i)
		case c == close && len(stack) > 0:
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) == 0 {
		return 1
	}
	return utf8.RuneCountInString(text[:stack[len(stack)-1]]) + 1
}

// yamlParserProblems are libyaml's parser error messages; its scanner messages differ from all of them.
var yamlParserProblems = map[string]bool{
	"did not find expected ',' or ']'": true, "did not find expected ',' or '}'": true,
	"did not find expected '-' indicator": true, "did not find expected <document start>": true,
	"did not find expected <stream-start>": true, "did not find expected key": true,
	"did not find expected node content": true, "found duplicate %TAG directive": true,
	"found duplicate %YAML directive": true, "found incompatible YAML document": true,
	"found undefined tag handle": true,
}

// entry is one key/value pair of a YAML mapping, in document order.
type entry struct {
	Key   string
	KeyN  *yaml.Node
	Value *yaml.Node
}

// pairs returns the entries of a mapping node, reporting duplicate keys.
func (r *reader) pairs(n *yaml.Node, what string) []entry {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		if n != nil && !(n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
			r.errAt(n, CodeWrongType, what+" must be a mapping of key: value", "")
		}
		return nil
	}
	out := make([]entry, 0, len(n.Content)/2)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			r.errAt(k, CodeWrongType, "keys of "+what+" must be plain scalars", "")
			continue
		}
		if seen[k.Value] {
			r.errAt(k, CodeDuplicate, fmt.Sprintf("%q appears twice in %s", k.Value, what), "remove one of them")
			continue
		}
		seen[k.Value] = true
		out = append(out, entry{Key: k.Value, KeyN: k, Value: v})
	}
	return out
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		return n.Content[0]
	}
	return n
}

// object checks a mapping node against spec and returns its values by key (key nodes under "@key").
func (r *reader) object(n *yaml.Node, spec *ObjectSpec) (vals map[string]*yaml.Node, keys map[string]*yaml.Node, ok bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		r.errAt(n, CodeWrongType, "a "+spec.Name+" must be a mapping", "see `woorelay docs` for the keys a "+spec.Name+" takes")
		return nil, nil, false
	}
	vals, keys = map[string]*yaml.Node{}, map[string]*yaml.Node{}
	for _, e := range r.pairs(n, "a "+spec.Name) {
		if spec.key(e.Key) == nil {
			hint := "valid keys: " + strings.Join(spec.names(), ", ")
			if s := didYouMean(e.Key, spec.names()); s != "" {
				hint = "did you mean " + strconv.Quote(s) + "?"
			}
			r.errAt(e.KeyN, CodeUnknownKey, fmt.Sprintf("unknown key %q in a %s", e.Key, spec.Name), hint)
			continue
		}
		vals[e.Key] = resolve(e.Value)
		keys[e.Key] = e.KeyN
	}
	for _, k := range spec.Keys {
		if k.Required && vals[k.Name] == nil {
			r.errAt(n, CodeMissingKey, fmt.Sprintf("a %s needs %q", spec.Name, k.Name), k.Doc)
		}
	}
	return vals, keys, true
}

// str reads a scalar string; nil nodes give "".
func (r *reader) str(n *yaml.Node, what string) string {
	if n == nil {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		r.errAt(n, CodeWrongType, what+" must be a string", "")
		return ""
	}
	return n.Value
}

func (r *reader) boolean(n *yaml.Node, what string) bool {
	if n == nil {
		return false
	}
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		r.errAt(n, CodeWrongType, what+" must be true or false", "")
	}
	return b
}

func (r *reader) integer(n *yaml.Node, what string) (int64, bool) {
	if n == nil {
		return 0, false
	}
	var i int64
	if n.Kind != yaml.ScalarNode || n.Decode(&i) != nil {
		r.errAt(n, CodeWrongType, what+" must be an integer", "")
		return 0, false
	}
	return i, true
}

// strList reads a sequence of strings; a single scalar is a one-element list.
func (r *reader) strList(n *yaml.Node, what string) []string {
	if n == nil {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []string{n.Value}
	}
	if n.Kind != yaml.SequenceNode {
		r.errAt(n, CodeWrongType, what+" must be a list of strings", "")
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		c = resolve(c)
		if c.Kind != yaml.ScalarNode {
			r.errAt(c, CodeWrongType, what+" must be a list of strings", "")
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

// enum reads a scalar that must be one of options.
func (r *reader) enum(n *yaml.Node, what string, options ...string) string {
	s := r.str(n, what)
	if n == nil || s == "" {
		return ""
	}
	for _, o := range options {
		if s == o {
			return s
		}
	}
	hint := "one of: " + strings.Join(options, ", ")
	if d := didYouMean(s, options); d != "" {
		hint = "did you mean " + strconv.Quote(d) + "? (" + hint + ")"
	}
	r.errAt(n, CodeBadValue, fmt.Sprintf("%s %q is not allowed", what, s), hint)
	return ""
}

// scalarValue turns a YAML scalar into a Value: YAML strings stay strings; ints, floats and
// bools keep their text as JSON numbers and booleans.
func (r *reader) scalarValue(n *yaml.Node, what string) (Value, bool) {
	n = resolve(n)
	if n == nil {
		return Value{}, false
	}
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return Value{Kind: Null}, true
		case "!!bool":
			var b bool
			_ = n.Decode(&b)
			v, _ := fromAny(b)
			return v, true
		case "!!int", "!!float":
			if isJSONNumber(n.Value) {
				return Value{Kind: Number, Text: n.Value}, true
			}
			return Value{Kind: String, Text: n.Value}, true
		}
		return Value{Kind: String, Text: n.Value}, true
	default:
		var x any
		if err := n.Decode(&x); err != nil {
			r.errAt(n, CodeWrongType, what+" is not a valid value: "+err.Error(), "")
			return Value{}, false
		}
		v, err := fromAny(normalizeYAML(x))
		if err != nil {
			r.errAt(n, CodeWrongType, what+" cannot be encoded as JSON: "+err.Error(), "")
			return Value{}, false
		}
		return v, true
	}
}

func normalizeYAML(x any) any {
	switch t := x.(type) {
	case map[string]any:
		for k, v := range t {
			t[k] = normalizeYAML(v)
		}
	case []any:
		for i, v := range t {
			t[i] = normalizeYAML(v)
		}
	}
	return x
}

func isJSONNumber(s string) bool {
	if s == "" {
		return false
	}
	i := 0
	if s[0] == '-' {
		i++
	}
	digitsSeen := false
	for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		digitsSeen = true
	}
	if !digitsSeen {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := false
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			d = true
		}
		if !d {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := false
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			d = true
		}
		if !d {
			return false
		}
	}
	return i == len(s)
}
