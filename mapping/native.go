package mapping

import (
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"github.com/tidwall/gjson"
)

// program is a compiled expression. vm always holds the expr program (it type-checks the
// expression and is the reference semantics); when the expression has one of the shapes that
// dominate presets, boolFn or strFn evaluate it natively in Go instead, without boxing values
// or entering the VM:
//
//   - conditions over event paths: path == "literal", path != "literal", path == nil,
//     path == true/false, path in ["a", "b"], combined with &&, ||, ! (and, or, not);
//   - transforms that chain lower, upper and trim on a string value;
//   - the transform `value == "literal" ? nil : value`, which drops one placeholder string.
//
// Both give exactly the VM's result on those shapes; anything else runs on the VM.
type program struct {
	vm     *vm.Program
	boolFn boolFn
	strFn  func(string) string
	strOps []strOp // what strFn applies, innermost first, for state.applyStrOps
	// dropStr is set for `value == "literal" ? nil : value`: a string value equal to the
	// literal becomes missing, any other string passes unchanged.
	dropStr *string
}

// native fills in the native evaluators for the parsed expression n (which declares no
// variables) where its shape allows.
func (c *exprCompiler) native(n ast.Node, prog *program, asBool bool) {
	if asBool {
		prog.boolFn = c.nativeBool(n)
	} else {
		if ops, ok := nativeString(n); ok {
			prog.strOps = ops
			prog.strFn = func(s string) string { return applyStrOps(ops, s) }
		} else if lit, ok := nativeDrop(n); ok {
			prog.dropStr = &lit
		}
	}
}

// staticPath returns the event path an identifier or member chain reads, as the path patcher
// would register it.
func (c *exprCompiler) staticPath(n ast.Node) (string, bool) {
	switch t := n.(type) {
	case *ast.IdentifierNode:
		if envFields[t.Value] || c.functionNames()[t.Value] || strings.HasPrefix(t.Value, "$") {
			return "", false
		}
		return escapeKey(t.Value), true
	case *ast.MemberNode:
		base, ok := c.staticPath(t.Node)
		if !ok {
			return "", false
		}
		if s, ok := t.Property.(*ast.StringNode); ok {
			return base + "." + escapeKey(s.Value), true
		}
	}
	return "", false
}

func (c *exprCompiler) slotOf(n ast.Node) (int, bool) {
	path, ok := c.staticPath(n)
	if !ok {
		return 0, false
	}
	slot, err := c.paths.add(path, c.at)
	return slot, err == nil
}

// boolFn evaluates a condition natively. ok is false where the VM would fail at run time (which
// a when treats as "does not hold"), so the two agree even on malformed events.
type boolFn func(slots []gjson.Result) (value, ok bool)

func (c *exprCompiler) nativeBool(n ast.Node) boolFn {
	switch t := n.(type) {
	case *ast.BoolNode:
		v := t.Value
		return func([]gjson.Result) (bool, bool) { return v, true }
	case *ast.UnaryNode:
		if t.Operator != "!" && t.Operator != "not" {
			return nil
		}
		if f := c.nativeBool(t.Node); f != nil {
			return func(s []gjson.Result) (bool, bool) { v, ok := f(s); return !v, ok }
		}
	case *ast.BinaryNode:
		switch t.Operator {
		case "&&", "and", "||", "or":
			l, r := c.nativeBool(t.Left), c.nativeBool(t.Right)
			if l == nil || r == nil {
				return nil
			}
			if t.Operator == "&&" || t.Operator == "and" {
				return func(s []gjson.Result) (bool, bool) {
					if v, ok := l(s); !ok || !v {
						return false, ok
					}
					return r(s)
				}
			}
			return func(s []gjson.Result) (bool, bool) {
				if v, ok := l(s); !ok || v {
					return v, ok
				}
				return r(s)
			}
		case "==", "!=":
			eq := c.nativeEqual(t.Left, t.Right)
			if eq == nil {
				eq = c.nativeEqual(t.Right, t.Left)
			}
			if eq == nil {
				return nil
			}
			if t.Operator == "!=" {
				return func(s []gjson.Result) (bool, bool) { return !eq(s), true }
			}
			return func(s []gjson.Result) (bool, bool) { return eq(s), true }
		case "in":
			slot, ok := c.slotOf(t.Left)
			arr, isArr := t.Right.(*ast.ArrayNode)
			if !ok || !isArr {
				return nil
			}
			set := map[string]bool{}
			for _, e := range arr.Nodes {
				s, ok := e.(*ast.StringNode)
				if !ok {
					return nil
				}
				set[s.Value] = true
			}
			return func(s []gjson.Result) (bool, bool) {
				switch r := s[slot]; r.Type {
				case gjson.String:
					return set[r.Str], true
				case gjson.Null: // missing or null: nil is in no list
					return false, true
				}
				return false, false // the VM cannot look a number, bool or object up in a string set
			}
		}
	}
	return nil
}

// strOp is one step of a native string transform.
type strOp uint8

const (
	opLower strOp = iota
	opUpper
	opTrim
)

// nativeString compiles chains of lower, upper and trim applied to value into the steps they
// apply, innermost first.
func nativeString(n ast.Node) ([]strOp, bool) {
	var name string
	var args []ast.Node
	switch t := n.(type) {
	case *ast.IdentifierNode:
		if t.Value == "value" {
			return []strOp{}, true
		}
		return nil, false
	case *ast.CallNode:
		id, ok := t.Callee.(*ast.IdentifierNode)
		if !ok {
			return nil, false
		}
		name, args = id.Value, t.Arguments
	case *ast.BuiltinNode:
		name, args = t.Name, t.Arguments
	default:
		return nil, false
	}
	if len(args) != 1 {
		return nil, false
	}
	inner, ok := nativeString(args[0])
	if !ok {
		return nil, false
	}
	switch name {
	case "lower":
		return append(inner, opLower), true
	case "upper":
		return append(inner, opUpper), true
	case "trim":
		return append(inner, opTrim), true
	}
	return nil, false
}

// nativeDrop matches `value == "literal" ? nil : value` and returns the literal.
func nativeDrop(n ast.Node) (string, bool) {
	t, ok := n.(*ast.ConditionalNode)
	if !ok {
		return "", false
	}
	cond, ok := t.Cond.(*ast.BinaryNode)
	if !ok || cond.Operator != "==" || !isValueIdent(cond.Left) || !isValueIdent(t.Exp2) {
		return "", false
	}
	lit, ok := cond.Right.(*ast.StringNode)
	if _, isNil := t.Exp1.(*ast.NilNode); !ok || !isNil {
		return "", false
	}
	return lit.Value, true
}

func isValueIdent(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "value"
}

// applyStrOps applies the steps with the strings package, allocating as it does.
func applyStrOps(ops []strOp, s string) string {
	for _, op := range ops {
		switch op {
		case opLower:
			s = strings.ToLower(s)
		case opUpper:
			s = strings.ToUpper(s)
		case opTrim:
			s = strings.TrimSpace(s)
		}
	}
	return s
}

// applyStrOps gives applyStrOps's result, writing a changed ASCII string to the scratch text
// instead of allocating (on ASCII, strings.ToLower and ToUpper change only the letters).
func (st *state) applyStrOps(ops []strOp, s string) string {
	for i, op := range ops {
		if op == opTrim {
			s = strings.TrimSpace(s)
			continue
		}
		from := byte('A') // the letters op changes: A-Z for lower, a-z for upper
		if op == opUpper {
			from = 'a'
		}
		ascii, change := true, false
		for j := 0; j < len(s); j++ {
			c := s[j]
			if c >= utf8.RuneSelf {
				ascii = false
				break
			}
			change = change || from <= c && c <= from+25
		}
		switch {
		case !ascii:
			s = applyStrOps(ops[i:i+1], s)
		case change:
			start := len(st.buf)
			for j := 0; j < len(s); j++ {
				c := s[j]
				if from <= c && c <= from+25 {
					c ^= 'a' - 'A'
				}
				st.buf = append(st.buf, c)
			}
			s = st.view(start)
		}
	}
	return s
}

// nativeEqual compiles path == literal for string, nil and boolean literals.
func (c *exprCompiler) nativeEqual(pathNode, lit ast.Node) func([]gjson.Result) bool {
	var test func(gjson.Result) bool
	switch l := lit.(type) {
	case *ast.StringNode:
		want := l.Value
		test = func(r gjson.Result) bool { return r.Type == gjson.String && r.Str == want }
	case *ast.NilNode:
		test = func(r gjson.Result) bool { return r.Type == gjson.Null }
	case *ast.BoolNode:
		want := gjson.False
		if l.Value {
			want = gjson.True
		}
		test = func(r gjson.Result) bool { return r.Type == want }
	default:
		return nil
	}
	slot, ok := c.slotOf(pathNode)
	if !ok {
		return nil
	}
	return func(s []gjson.Result) bool { return test(s[slot]) }
}
