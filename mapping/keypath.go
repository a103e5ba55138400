package mapping

import (
	"strings"

	"github.com/tidwall/gjson"
)

// Spreads with keys: path read each prefix+key as a lodash path, as RudderStack writes its
// cv_ and ce_ parameters with lodash's set: `cv_dot.key` sets the key "key" of the object
// parameter cv_dot, `cv_br[0]` the first element of the array parameter cv_br. This file holds
// the path syntax (lodash's stringToPath) and the small tree a spread builds its nested
// parameters in, which lives in the run's state and is encoded as JSON when the spread ends.

// maxKeyIndex is the largest array index a path key may write; a larger one is an object key,
// so that a key such as "a[99999999]" cannot make a huge array of nulls.
const maxKeyIndex = 1000

// isDeepKey reports whether lodash's set reads key as a path rather than a property name: it
// has a dot, or a [...] pair with no [ inside.
func isDeepKey(key string) bool {
	open := false
	for i := 0; i < len(key); i++ {
		switch key[i] {
		case '.':
			return true
		case '[':
			open = true
		case ']':
			if open {
				return true
			}
		}
	}
	return false
}

// lodashPath appends the segments of a lodash path to dst, as lodash's stringToPath splits it:
// runs of characters other than . [ ] are keys, [n] and ["quoted"] are keys, and an empty key
// sits between two separators (`a..b`, `a.`). Quoted keys are unescaped (\" is ").
func lodashPath(dst []string, s string) []string {
	if s != "" && s[0] == '.' {
		dst = append(dst, "")
	}
	for i := 0; i < len(s); {
		if c := s[i]; c != '.' && c != '[' && c != ']' {
			j := i
			for j < len(s) && s[j] != '.' && s[j] != '[' && s[j] != ']' {
				j++
			}
			dst = append(dst, s[i:j])
			i = j
			continue
		}
		if s[i] == '[' {
			if seg, n, ok := bracketKey(s[i:]); ok {
				dst = append(dst, seg)
				i += n
				continue
			}
		}
		if emptyKeyAt(s, i) {
			dst = append(dst, "")
		}
		i++
	}
	return dst
}

// separatorAt returns the length of the separator ("." or "[]") at s[i:], or 0.
func separatorAt(s string, i int) int {
	switch {
	case i < len(s) && s[i] == '.':
		return 1
	case strings.HasPrefix(s[i:], "[]"):
		return 2
	}
	return 0
}

// emptyKeyAt reports lodash's zero-width match: a separator followed by another or by the end.
func emptyKeyAt(s string, i int) bool {
	n := separatorAt(s, i)
	return n > 0 && (i+n == len(s) || separatorAt(s, i+n) > 0)
}

// bracketKey reads [number] or ["quoted"] / ['quoted'] at the start of s, returning the key and
// the length read.
func bracketKey(s string) (string, int, bool) {
	if len(s) < 3 {
		return "", 0, false
	}
	if q := s[1]; q == '"' || q == '\'' {
		escaped := false
		for k := 2; k < len(s); k++ {
			switch s[k] {
			case q:
				if k+1 < len(s) && s[k+1] == ']' {
					if escaped {
						return unescapeQuoted(s[2:k]), k + 2, true
					}
					return s[2:k], k + 2, true
				}
				return "", 0, false
			case '\\':
				if k+1 == len(s) || s[k+1] == '\n' || s[k+1] == '\r' {
					return "", 0, false
				}
				escaped = true
				k++
			}
		}
		return "", 0, false
	}
	j := 1
	if s[j] == '-' {
		j++
	}
	d := j
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	if j == d {
		return "", 0, false
	}
	if j+1 < len(s) && s[j] == '.' && s[j+1] >= '0' && s[j+1] <= '9' {
		j++
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
	}
	if j < len(s) && s[j] == ']' {
		return s[1:j], j + 1, true
	}
	return "", 0, false
}

// unescapeQuoted removes lodash's escapes from a quoted key: a backslash is dropped, and an
// escaped backslash stays one backslash.
func unescapeQuoted(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// keyIndex returns the array index a path segment names (lodash's isIndex: 0 or digits without
// a leading zero), up to maxKeyIndex.
func keyIndex(seg string) (int, bool) {
	if seg == "" || len(seg) > 4 || seg[0] == '0' && len(seg) > 1 {
		return 0, false
	}
	n := 0
	for i := 0; i < len(seg); i++ {
		if seg[i] < '0' || seg[i] > '9' {
			return 0, false
		}
		n = n*10 + int(seg[i]-'0')
	}
	return n, n <= maxKeyIndex
}

// unsafeKey is a segment lodash's set refuses to write (it stops there).
func unsafeKey(seg string) bool {
	return seg == "__proto__" || seg == "constructor" || seg == "prototype"
}

type jsKind uint8

const (
	jsLeaf jsKind = iota
	jsObject
	jsArray
)

// jsNode is one value of a parameter a path-key spread builds: a leaf holding a value (an object
// or array from the event stays raw JSON until a nested key writes into it), or an object or
// array whose children are linked, objects' in the order their keys were first written,
// arrays' by ascending index.
type jsNode struct {
	kind        jsKind
	val         Value  // a leaf's value
	key         string // the key under an object
	idx         int    // the index under an array
	first, next int32  // first child and next sibling, -1 when none
}

// headRef is a parameter a path-key spread writes: where it is in the request's parameters and
// the node holding its value.
type headRef struct{ param, node int32 }

// newNode adds a leaf holding v to the tree and returns its index.
func (st *state) newNode(v Value, key string, idx int) int32 {
	st.nodes = append(st.nodes, jsNode{val: v, key: key, idx: idx, first: -1, next: -1})
	return int32(len(st.nodes) - 1)
}

// setLeaf makes node n a leaf holding v, keeping its place among its siblings.
func (st *state) setLeaf(n int32, v Value) {
	nd := &st.nodes[n]
	nd.kind, nd.val, nd.first = jsLeaf, v, -1
}

// container makes node n an object or an array before seg is written into it, as lodash's set
// does: an object or array stays one (an event's is expanded into nodes), anything else is
// replaced by a new array when seg is an index and a new object otherwise.
func (st *state) container(n int32, seg string) {
	nd := st.nodes[n]
	if nd.kind != jsLeaf {
		return
	}
	switch nd.val.Kind {
	case Object, Array:
		kind := jsObject
		if nd.val.Kind == Array {
			kind = jsArray
		}
		st.nodes[n].kind, st.nodes[n].first = kind, -1
		i, tail := 0, int32(-1)
		gjson.Parse(nd.val.Text).ForEach(func(k, v gjson.Result) bool {
			if kind == jsObject {
				// A repeated key replaces the earlier value in place, as JSON.parse does.
				st.setLeaf(st.child(n, k.Str, -1), fromResult(v))
				return true
			}
			c := st.newNode(fromResult(v), "", i)
			if tail < 0 {
				st.nodes[n].first = c
			} else {
				st.nodes[tail].next = c
			}
			tail = c
			i++
			return true
		})
	default:
		kind := jsObject
		if _, ok := keyIndex(seg); ok {
			kind = jsArray
		}
		st.nodes[n].kind, st.nodes[n].first = kind, -1
	}
}

// child returns the child of container n under key (an object) or idx (an array), adding an
// empty leaf when there is none.
func (st *state) child(n int32, key string, idx int) int32 {
	array := st.nodes[n].kind == jsArray
	prev := int32(-1)
	for c := st.nodes[n].first; c >= 0; c = st.nodes[c].next {
		if array && st.nodes[c].idx == idx || !array && st.nodes[c].key == key {
			return c
		}
		if array && st.nodes[c].idx > idx {
			break
		}
		prev = c
	}
	c := st.newNode(Value{}, key, idx)
	if prev < 0 {
		st.nodes[c].next, st.nodes[n].first = st.nodes[n].first, c
	} else {
		st.nodes[c].next, st.nodes[prev].next = st.nodes[prev].next, c
	}
	return c
}

// setIn writes v at the path segs below node n, as lodash's set: values on the way that are
// not objects or arrays are replaced by new ones; a named key of an array is not written (JSON
// does not show it), and neither is anything at or below __proto__, constructor or prototype.
func (st *state) setIn(n int32, segs []string, v Value) {
	for _, seg := range segs {
		st.container(n, seg)
		if unsafeKey(seg) {
			return
		}
		idx := -1
		if st.nodes[n].kind == jsArray {
			i, ok := keyIndex(seg)
			if !ok {
				return
			}
			idx = i
		}
		n = st.child(n, seg, idx)
	}
	st.setLeaf(n, v)
}

// appendNode writes node n to the scratch text as compact JSON, holes of arrays as null.
func (st *state) appendNode(n int32) {
	nd := st.nodes[n]
	switch nd.kind {
	case jsObject:
		st.buf = append(st.buf, '{')
		for c := nd.first; c >= 0; c = st.nodes[c].next {
			if c != nd.first {
				st.buf = append(st.buf, ',')
			}
			st.buf = appendJSONString(st.buf, st.nodes[c].key)
			st.buf = append(st.buf, ':')
			st.appendNode(c)
		}
		st.buf = append(st.buf, '}')
	case jsArray:
		st.buf = append(st.buf, '[')
		next := 0
		for c := nd.first; c >= 0; c = st.nodes[c].next {
			for ; next < st.nodes[c].idx; next++ {
				st.buf = append(st.buf, "null,"...)
			}
			st.appendNode(c)
			if next++; st.nodes[c].next >= 0 {
				st.buf = append(st.buf, ',')
			}
		}
		st.buf = append(st.buf, ']')
	default:
		switch nd.val.Kind {
		case String:
			st.buf = appendJSONString(st.buf, nd.val.Text)
		case Object, Array:
			st.buf = appendCompact(st.buf, nd.val.Text)
		case Number, Bool:
			st.buf = append(st.buf, nd.val.Text...)
		default:
			st.buf = append(st.buf, "null"...)
		}
	}
}

// headValue is the text a path-key spread's parameter is sent as: its value when nothing was
// nested into it, else the JSON of what was built.
func (st *state) headValue(n int32) string {
	if st.nodes[n].kind == jsLeaf {
		return st.queryText(st.nodes[n].val)
	}
	start := len(st.buf)
	st.appendNode(n)
	return st.view(start)
}
