package mapping

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/vm/runtime"
)

// The limits of expression evaluation. expr's own budgets count only part of what an
// expression can build (its VM counts the elements of ranges, arrays and maps, not the bytes
// of strings that + or a builtin makes), so a mapping bounds every evaluation itself: the
// compiler rewrites each expression so that every value a + or a builtin produces, and every
// iteration of a loop (map, filter, reduce, all, ...), is counted against a budget that one
// event's expressions share. Going past a limit fails the expression with a *LimitError; the
// event is then rejected with expression_error whatever on_error says, so delivery
// dead-letters it and carries on with the other events.
const (
	// MaxValue is the largest value an expression may build: bytes of a string, elements of
	// an array or map (and, for JSON or text made from a value, its encoded size).
	MaxValue = 1 << 20
	// MaxWork is what one event's expressions may build in all: the sizes of the values.
	MaxWork = 32 << 20
	// MaxSteps is how many loop iterations (of map, filter, reduce, all, ..., nested or
	// not) one event's expressions may run in all.
	MaxSteps = 1 << 20
	// MaxLoopTime is a backstop on the time one event's expression loops may run, for loops
	// whose iterations are costly without building anything (a membership test over a large
	// array, say). The counted limits above stop any realistic runaway long before it.
	MaxLoopTime = time.Second
)

// LimitError is an expression that went past one of the evaluation limits.
type LimitError struct{ Msg string }

// Error says which limit was passed and what to do.
func (e *LimitError) Error() string {
	return "expression limit: " + e.Msg + "; bound the expression (no accumulator that doubles, no repeat or range sized by the event)"
}

func limitErr(format string, args ...any) *LimitError {
	return &LimitError{Msg: fmt.Sprintf(format, args...)}
}

// budget is what one event's expressions have used; state keeps one, reset by every run, and
// expressions reach it through the environment field __b.
type budget struct {
	work  int
	steps int
	start time.Time
	err   *LimitError // the first limit passed; every later count fails with it too
}

func (b *budget) fail(e *LimitError) error {
	if b.err == nil {
		b.err = e
	}
	return b.err
}

// charge counts a value an expression built.
func (b *budget) charge(v any) error {
	if b.err != nil {
		return b.err
	}
	n := shallowSize(v)
	if n > MaxValue {
		return b.fail(limitErr("a value of %d bytes or elements is larger than the limit of %d", n, MaxValue))
	}
	b.work += n
	if b.work > MaxWork {
		return b.fail(limitErr("the expressions of this event built more than %d bytes or elements in all", MaxWork))
	}
	return nil
}

// step counts one loop iteration.
func (b *budget) step() error {
	b.steps++
	if b.steps > MaxSteps {
		return b.fail(limitErr("the loops of this event ran more than %d iterations", MaxSteps))
	}
	if b.steps&255 == 1 {
		if b.start.IsZero() {
			b.start = time.Now()
		} else if time.Since(b.start) > MaxLoopTime && b.err == nil {
			return b.fail(limitErr("the loops of this event ran for more than %v", MaxLoopTime))
		}
	}
	if b.err != nil {
		return b.err
	}
	return nil
}

// shallowSize is the size charge of a value: bytes of a string, elements of a collection, 1
// for anything else. Nested collections are not walked: they are counted when they are built.
func shallowSize(v any) int {
	switch t := v.(type) {
	case string:
		return len(t)
	case []any:
		return len(t)
	case map[string]any:
		return len(t)
	case nil, bool, int, float64:
		return 1
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map, reflect.String:
		return rv.Len()
	}
	return 1
}

// encodedSize estimates, walking v, the size of its JSON or text form, stopping as soon as it
// passes limit: values built by sharing (an array holding the same array twice, over and
// over) expand when encoded, so the walk is what bounds them.
func encodedSize(v any, limit int) int {
	n := 0
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		if n > limit {
			return
		}
		if depth > 1000 {
			n = limit + 1
			return
		}
		switch t := v.(type) {
		case string:
			n += len(t) + 2
			return
		case nil, bool, int, float64:
			n += 8
			return
		case []any:
			n += 2
			for _, e := range t {
				n++
				walk(e, depth+1)
			}
			return
		case map[string]any:
			n += 2
			for k, e := range t {
				n += len(k) + 4
				walk(e, depth+1)
			}
			return
		}
		rv := reflect.ValueOf(v)
		switch rv.Kind() {
		case reflect.Slice, reflect.Array:
			n += 2
			for i := 0; i < rv.Len() && n <= limit; i++ {
				n++
				walk(rv.Index(i).Interface(), depth+1)
			}
		case reflect.Map:
			n += 2
			it := rv.MapRange()
			for it.Next() && n <= limit {
				n += 4
				walk(it.Key().Interface(), depth+1)
				walk(it.Value().Interface(), depth+1)
			}
		case reflect.String:
			n += rv.Len() + 2
		default:
			n += 8
		}
	}
	walk(v, 0)
	return n
}

// checkEncoded fails when v's JSON or text form would be larger than MaxValue.
func checkEncoded(what string, v any) error {
	if _, ok := v.(string); ok {
		return nil
	}
	if encodedSize(v, MaxValue) > MaxValue {
		return limitErr("%s would be larger than the limit of %d bytes", what, MaxValue)
	}
	return nil
}

// asLimit returns the *LimitError in err's chain, if any.
func asLimit(err error) *LimitError {
	var le *LimitError
	if errors.As(err, &le) {
		return le
	}
	return nil
}

// boundedBuiltins are expr's builtins whose result can be far larger than their arguments;
// each is replaced by a version that checks the size of the result before building it and
// otherwise does exactly what the builtin does.
var boundedBuiltins = map[string]func(args []any) error{
	"repeat": func(args []any) error {
		s, _ := args[0].(string)
		if n := runtime.ToInt(args[1]); n > 0 && len(s) > 0 && n > MaxValue/len(s) {
			return limitErr("repeat would build a string of %d×%d bytes, over the limit of %d", len(s), n, MaxValue)
		}
		return nil
	},
	"replace": func(args []any) error {
		s, _ := args[0].(string)
		old, _ := args[1].(string)
		repl, _ := args[2].(string)
		count := strings.Count(s, old)
		if len(args) == 4 {
			if n := runtime.ToInt(args[3]); n >= 0 && n < count {
				count = n
			}
		}
		if old == "" {
			count = min(count, utf8.RuneCountInString(s)+1)
		}
		if grow := len(repl) - len(old); grow > 0 && len(s)+count*grow > MaxValue {
			return limitErr("replace would build a string of more than %d bytes", MaxValue)
		}
		return nil
	},
	"join": func(args []any) error {
		glue := ""
		if len(args) == 2 {
			glue, _ = args[1].(string)
		}
		n := encodedSize(args[0], MaxValue)
		if rv := reflect.ValueOf(args[0]); rv.Kind() == reflect.Slice {
			n += rv.Len() * len(glue)
		}
		if n > MaxValue {
			return limitErr("join would build a string of more than %d bytes", MaxValue)
		}
		return nil
	},
	"toJSON":  func(args []any) error { return checkEncoded("toJSON", args[0]) },
	"string":  func(args []any) error { return checkEncoded("string", args[0]) },
	"flatten": func(args []any) error { return checkEncoded("flatten", args[0]) },
}

var boundOpts = boundOptions()

// boundExpressions is true but in the benchmark that measures what the bounds cost.
var boundExpressions = true

// boundOptions are the compile options that install the budget: its two counting functions
// and the checked builtins.
func boundOptions() []expr.Option {
	opts := []expr.Option{
		expr.Function("__step", func(args ...any) (any, error) {
			return true, args[0].(*budget).step()
		}, new(func(*budget) bool)),
		expr.Function("__charge", func(args ...any) (any, error) {
			return true, args[0].(*budget).charge(args[1])
		}, new(func(*budget, any) bool)),
	}
	for name, check := range boundedBuiltins {
		orig := builtin.Builtins[builtin.Index[name]]
		call := func(args ...any) (any, error) {
			if err := check(args); err != nil {
				return nil, err
			}
			switch {
			case orig.Func != nil:
				return orig.Func(args...)
			case orig.Safe != nil:
				out, _, err := orig.Safe(args...)
				return out, err
			}
			return orig.Fast(args[0]), nil
		}
		opts = append(opts, func(c *conf.Config) {
			c.Functions[name] = &builtin.Function{Name: name, Func: call, Types: orig.Types, Validate: orig.Validate}
		})
	}
	return opts
}

// boundPatcher rewrites an expression so that what it builds is counted: the body of every
// loop becomes `__step(__b); body`, and every + that may join strings and every
// call of a builtin that returns a string or a collection becomes `let v = x; __charge(__b,
// v); v`. The rewrite keeps each node's type. It runs last, after the path patchers.
type boundPatcher struct{ n int }

func (b *boundPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.PredicateNode:
		step := &ast.CallNode{Callee: &ast.IdentifierNode{Value: "__step"}, Arguments: []ast.Node{&ast.IdentifierNode{Value: "__b"}}}
		ast.Patch(&n.Node, &ast.SequenceNode{Nodes: []ast.Node{step, n.Node}})
	case *ast.BinaryNode:
		if n.Operator == "+" && !(numeric(n.Left.Type()) && numeric(n.Right.Type())) {
			b.wrap(node, "__charge")
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		if _, isBuiltin := builtin.Index[id.Value]; isBuiltin && builds(n.Type()) {
			b.wrap(node, "__charge")
		}
	}
}

func (b *boundPatcher) wrap(node *ast.Node, counter string) {
	name := fmt.Sprintf("__v%d", b.n)
	b.n++
	count := &ast.CallNode{Callee: &ast.IdentifierNode{Value: counter},
		Arguments: []ast.Node{&ast.IdentifierNode{Value: "__b"}, &ast.IdentifierNode{Value: name}}}
	ast.Patch(node, &ast.VariableDeclaratorNode{Name: name, Value: *node,
		Expr: &ast.SequenceNode{Nodes: []ast.Node{count, &ast.IdentifierNode{Value: name}}}})
}

// numeric reports whether t is a number type, whose + cannot grow.
func numeric(t reflect.Type) bool {
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

// builds reports whether a value of type t may be a string or a collection.
func builds(t reflect.Type) bool {
	if t == nil {
		return true
	}
	switch t.Kind() {
	case reflect.String, reflect.Slice, reflect.Array, reflect.Map, reflect.Interface:
		return true
	}
	return false
}

// CodeUnbounded is the warning code of an expression construct whose size or work depends on
// the event or grows with every step: the evaluation limits stop it at run time (the event is
// rejected with expression_error), but `config check` and `lint` point at it beforehand.
const CodeUnbounded = "unbounded_expression"

// unboundedConstructs reports the constructs of a parsed expression whose cost the compiler
// cannot bound: repeat with a count that is not a literal, a range with a bound that is not a
// literal, and a reduce whose accumulator grows with every element (+, concat, an array or a
// repeat holding #acc, unless it starts from a number).
func unboundedConstructs(n ast.Node) []string {
	var found []string
	ast.Walk(&n, visitFunc(func(node ast.Node) {
		if name, args := called(node); name == "repeat" && len(args) == 2 && !literal(args[1]) {
			found = append(found, "repeat() with a count that is not a literal number: the string grows with the event")
		}
		switch t := node.(type) {
		case *ast.BinaryNode:
			if t.Operator == ".." && (!literal(t.Left) || !literal(t.Right)) {
				found = append(found, "a range whose bounds are not literal numbers: its length depends on the event")
			}
		case *ast.BuiltinNode:
			if t.Name != "reduce" || len(t.Arguments) < 2 {
				return
			}
			if len(t.Arguments) == 3 {
				switch t.Arguments[2].(type) {
				case *ast.IntegerNode, *ast.FloatNode:
					return
				}
			}
			if growsAcc(t.Arguments[1]) {
				found = append(found, "reduce() whose accumulator grows with every element (#acc in a +, concat, an array or repeat): its size is bounded only by the evaluation limits")
			}
		}
	}))
	return found
}

// growsAcc reports whether a reduce body builds a larger value out of #acc.
func growsAcc(body ast.Node) bool {
	grows := false
	ast.Walk(&body, visitFunc(func(node ast.Node) {
		var parts []ast.Node
		switch t := node.(type) {
		case *ast.BinaryNode:
			if t.Operator == "+" {
				parts = []ast.Node{t.Left, t.Right}
			}
		case *ast.ArrayNode:
			parts = t.Nodes
		}
		if name, args := called(node); name == "concat" || name == "repeat" {
			parts = args
		}
		for _, p := range parts {
			if pn, ok := p.(*ast.PointerNode); ok && pn.Name == "acc" {
				grows = true
			}
		}
	}))
	return grows
}

// called returns the name and arguments of a call of a function or builtin by name.
func called(n ast.Node) (string, []ast.Node) {
	switch t := n.(type) {
	case *ast.CallNode:
		if id, ok := t.Callee.(*ast.IdentifierNode); ok {
			return id.Value, t.Arguments
		}
	case *ast.BuiltinNode:
		return t.Name, t.Arguments
	}
	return "", nil
}

// literal reports whether n is a number written in the expression (negative ones included).
func literal(n ast.Node) bool {
	switch t := n.(type) {
	case *ast.IntegerNode, *ast.FloatNode:
		return true
	case *ast.UnaryNode:
		return t.Operator == "-" && literal(t.Node)
	}
	return false
}

// visitFunc adapts a function to ast.Visitor.
type visitFunc func(ast.Node)

func (f visitFunc) Visit(n *ast.Node) { f(*n) }
