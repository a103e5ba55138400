package mapping

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/woorelay/woorelay/mapping/useragent"
	"github.com/woorelay/woorelay/privacy"
)

// exprEnv is the typed environment every expression is compiled against. Event paths written
// in an expression (`properties.total`, `context.traits.email`, `get("properties.fav\\.movie")`)
// are rewritten at compile time into reads of P, which a run fills from the one walk of the
// event; nothing in an expression touches the raw JSON.
type exprEnv struct {
	P        []any          `expr:"__p"`
	Value    any            `expr:"value"`
	Settings map[string]any `expr:"settings"`
	B        *budget        `expr:"__b"` // what this event's expressions have used (limits.go)
}

// Functions is the list of the project's own functions available to expressions, with their
// documentation. They run as compiled Go, not as expr builtins.
var Functions = []struct{ Name, Signature, Doc string }{
	{"get", `get("path") any`, "Read a path that is not a valid identifier chain (quoted keys, queries); the path must be a literal."},
	{"epoch_ms", "epoch_ms(v) int", "A timestamp (ISO-8601 with or without zone, epoch seconds or ms) as epoch milliseconds."},
	{"empty", "empty(v) bool", "True for nil, \"\", and empty arrays or maps."},
	{"truthy", "truthy(v) bool", "JavaScript's `if (v)`: false for nil, \"\", 0, false and NaN; true for everything else, empty arrays and maps included (the presence rule `truthy`)."},
	{"json", "json(v) string", "Compact JSON text of v."},
	{"md5", "md5(s) string", "Lower-case hex MD5 of a string."},
	{"sha256", "sha256(s) string", "Lower-case hex SHA-256 of a string."},
	{"anonymize_ip", "anonymize_ip(ip) string", "The network of an IP address: IPv4 to /24 (`203.0.113.0`), IPv6 to /48; a value that is not an address is returned as its text."},
	{"lookup", `lookup("table", v) any`, "Translate v through a preset table; nil when the table has no row (whatever the table's otherwise)."},
	{"ua_browser", "ua_browser(ua) string", "Browser name and full version of a User-Agent, as ua-parser-js 1.x names them, joined with no separator (`Chrome86.0.4240.111`); \"\" for a non-string, a bot or an unknown agent."},
}

// exprCompiler compiles expressions for one program, registering their paths in its table.
type exprCompiler struct {
	paths    *pathTable
	used     map[int]bool // slots read by some expression
	tables   map[string]*Table
	settings map[string]any
	at       SourceRef   // where the expression being compiled is written
	warnings Diagnostics // constructs the limits stop only at run time (limits.go)
	warned   map[Diagnostic]bool
}

var envFields = map[string]bool{"__p": true, "value": true, "settings": true}

func (c *exprCompiler) functionNames() map[string]bool {
	m := map[string]bool{}
	for _, f := range Functions {
		m[f.Name] = true
	}
	for name := range boundedBuiltins {
		m[name] = true // overridden builtins are functions to the parser (limits.go)
	}
	return m
}

// compile compiles src. asBool requires a boolean result.
func (c *exprCompiler) compile(src string, asBool bool) (*program, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return nil, cleanExprError(err)
	}
	for _, msg := range unboundedConstructs(tree.Node) {
		d := Diagnostic{File: c.at.File, Line: c.at.Line, Col: c.at.Col, Code: CodeUnbounded, Msg: msg,
			Hint: "bound it by the mapping, not the event (literal counts, take(), no growing accumulator); past the limits the event is dead-lettered with expression_error"}
		if !c.warned[d] {
			if c.warned == nil {
				c.warned = map[Diagnostic]bool{}
			}
			c.warned[d] = true
			c.warnings = append(c.warnings, d)
		}
	}
	lets := map[string]bool{}
	ast.Walk(&tree.Node, letCollector(lets))
	p := &pathPatcher{c: c, lets: lets, funcs: c.functionNames()}
	g := &getPatcher{c: c}
	opts := []expr.Option{
		expr.Env(exprEnv{}),
		expr.Patch(p),
		expr.Patch(g),
	}
	if boundExpressions {
		opts = append(opts, expr.Patch(&boundPatcher{}))
		opts = append(opts, boundOpts...)
	}
	opts = append(opts, expr.MaxNodes(2000))
	opts = append(opts, c.functionOptions()...)
	if asBool {
		opts = append(opts, expr.AsBool())
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		return nil, cleanExprError(err)
	}
	if g.err != nil {
		return nil, g.err
	}
	out := &program{vm: prog}
	if len(lets) == 0 {
		c.native(tree.Node, out, asBool)
	}
	return out, nil
}

// truthy is JavaScript's truthiness of an expression value: the presence rule PresentTruthy,
// with NaN false and the infinities true as in JavaScript.
func truthy(x any) bool {
	if f, ok := x.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
		return !math.IsNaN(f)
	}
	v, err := fromAny(x)
	return err == nil && PresentTruthy.absence(v) == ""
}

func cleanExprError(err error) error {
	msg := err.Error()
	if i := strings.Index(msg, "\n"); i >= 0 {
		msg = msg[:i]
	}
	return fmt.Errorf("%s", msg)
}

type letCollector map[string]bool

func (l letCollector) Visit(n *ast.Node) {
	if v, ok := (*n).(*ast.VariableDeclaratorNode); ok {
		l[v.Name] = true
	}
}

// pathPatcher rewrites identifiers and member chains over the event into get("path") calls.
type pathPatcher struct {
	c     *exprCompiler
	lets  map[string]bool
	funcs map[string]bool
}

func (p *pathPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		name := n.Value
		if envFields[name] || p.lets[name] || p.funcs[name] || strings.HasPrefix(name, "$") {
			return
		}
		ast.Patch(node, getCall(escapeKey(name)))
	case *ast.MemberNode:
		base, ok := literalGet(n.Node)
		if !ok {
			return
		}
		switch prop := n.Property.(type) {
		case *ast.StringNode:
			ast.Patch(node, getCall(base+"."+escapeKey(prop.Value)))
		case *ast.IntegerNode:
			ast.Patch(node, getCall(fmt.Sprintf("%s.%d", base, prop.Value)))
		}
	}
}

func getCall(path string) *ast.CallNode {
	return &ast.CallNode{Callee: &ast.IdentifierNode{Value: "get"}, Arguments: []ast.Node{&ast.StringNode{Value: path}}}
}

func literalGet(n ast.Node) (string, bool) {
	call, ok := n.(*ast.CallNode)
	if !ok || len(call.Arguments) != 1 {
		return "", false
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || id.Value != "get" {
		return "", false
	}
	s, ok := call.Arguments[0].(*ast.StringNode)
	if !ok {
		return "", false
	}
	return s.Value, true
}

// getPatcher turns get("literal") into __p[slot], registering the path.
type getPatcher struct {
	c   *exprCompiler
	err error
}

func (g *getPatcher) Visit(node *ast.Node) {
	path, ok := literalGet(*node)
	if !ok {
		return
	}
	slot, err := g.c.paths.add(path, g.c.at)
	if err != nil {
		if g.err == nil {
			g.err = err
		}
		return
	}
	g.c.used[slot] = true
	ast.Patch(node, &ast.MemberNode{Node: &ast.IdentifierNode{Value: "__p"}, Property: &ast.IntegerNode{Value: slot}})
}

func (c *exprCompiler) functionOptions() []expr.Option {
	return []expr.Option{
		expr.Function("get", func(args ...any) (any, error) {
			return nil, fmt.Errorf("get() needs a literal path, like get(\"properties.fav\\\\.movie\")")
		}, new(func(string) any)),
		expr.Function("epoch_ms", func(args ...any) (any, error) {
			v, err := fromAny(args[0])
			if err != nil {
				return nil, err
			}
			ms, err := EpochMillis(v)
			return int(ms), err
		}, new(func(any) int)),
		expr.Function("empty", func(args ...any) (any, error) {
			switch t := args[0].(type) {
			case nil:
				return true, nil
			case string:
				return t == "", nil
			}
			rv := reflect.ValueOf(args[0])
			switch rv.Kind() {
			case reflect.Map, reflect.Slice, reflect.Array:
				return rv.Len() == 0, nil
			}
			return false, nil
		}, new(func(any) bool)),
		expr.Function("truthy", func(args ...any) (any, error) {
			return truthy(args[0]), nil
		}, new(func(any) bool)),
		expr.Function("json", func(args ...any) (any, error) {
			if err := checkEncoded("json", args[0]); err != nil {
				return nil, err
			}
			b, err := json.Marshal(args[0])
			return string(b), err
		}, new(func(any) string)),
		expr.Function("md5", func(args ...any) (any, error) {
			s := md5.Sum([]byte(args[0].(string)))
			return hex.EncodeToString(s[:]), nil
		}, new(func(string) string)),
		expr.Function("sha256", func(args ...any) (any, error) {
			s := sha256.Sum256([]byte(args[0].(string)))
			return hex.EncodeToString(s[:]), nil
		}, new(func(string) string)),
		expr.Function("anonymize_ip", func(args ...any) (any, error) {
			s, _ := args[0].(string)
			return privacy.TruncateIP(s), nil
		}, new(func(any) string)),
		expr.Function("lookup", func(args ...any) (any, error) {
			t := c.tables[args[0].(string)]
			if t == nil {
				return nil, fmt.Errorf("lookup: no table %q", args[0])
			}
			v, err := fromAny(args[1])
			if err != nil {
				return nil, err
			}
			if out, ok := t.find(v.QueryText()); ok {
				return out, nil
			}
			return nil, nil
		}, new(func(string, any) any)),
		expr.Function("ua_browser", func(args ...any) (any, error) {
			s, _ := args[0].(string)
			name, version := useragent.Browser(s)
			return name + version, nil
		}, new(func(any) string)),
	}
}
