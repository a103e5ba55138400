package mapping

import (
	"fmt"
	"sort"
	"strings"

	"github.com/tidwall/gjson"
)

// pathTable compiles every path a program reads into one tree of object keys, so an event is
// walked once, visiting only the keys some field needs and stopping an object as soon as all of
// its wanted keys were seen. Each path gets a slot; a walk fills the slots of one event.
//
// A path is a gjson path. Its leading run of plain keys becomes branches of the tree. From the
// first segment that is not a plain key (an array index, a #(...) query, a wildcard or a
// modifier) the rest of the path is a tail, evaluated with gjson on the value found at the end of
// the plain run: `context.externalIds.#(type=="woopra").id` walks context → externalIds, then
// runs `#(type=="woopra").id` on that array only.
type pathTable struct {
	root  pnode
	paths []string       // slot → path as written
	index map[string]int // path → slot
	refs  [][]SourceRef  // slot → every place in the configuration that reads it
}

// SourceRef is a position in a configuration file.
type SourceRef struct {
	File string
	Line int
	Col  int
}

type pnode struct {
	children map[string]*pnode
	index    int // position among its parent's children, for duplicate-key tracking
	slot     int // slot of the value at this node, or -1
	tails    []ptail
	// capture: a spread reads this node's object, so the walk keeps every key and value it
	// steps over (see captures) and the spread does not parse the object a second time.
	capture bool

	// The children again, for the walk: sorted by key length, so a key is compared only with
	// the wanted keys of its length (cheaper than hashing it). Keys of length l are
	// byLen[l] <= i < byLen[l+1].
	keys  []string
	kids  []*pnode
	byLen []int
}

// child returns the child for key k, or nil.
func (n *pnode) child(k string) *pnode {
	l := len(k)
	if l+1 >= len(n.byLen) {
		return nil
	}
	for i := n.byLen[l]; i < n.byLen[l+1]; i++ {
		if n.keys[i] == k {
			return n.kids[i]
		}
	}
	return nil
}

// reindex rebuilds keys, kids and byLen from children.
func (n *pnode) reindex() {
	n.keys = n.keys[:0]
	for k := range n.children {
		n.keys = append(n.keys, k)
	}
	sort.Slice(n.keys, func(i, j int) bool {
		a, b := n.keys[i], n.keys[j]
		return len(a) < len(b) || len(a) == len(b) && a < b
	})
	n.kids = n.kids[:0]
	maxLen := 0
	for _, k := range n.keys {
		n.kids = append(n.kids, n.children[k])
		maxLen = max(maxLen, len(k))
	}
	n.byLen = make([]int, maxLen+2)
	for l := range n.byLen {
		n.byLen[l] = sort.Search(len(n.keys), func(i int) bool { return len(n.keys[i]) >= l })
	}
}

type ptail struct {
	path string
	slot int
}

func newPathTable() *pathTable {
	return &pathTable{root: pnode{slot: -1}, index: map[string]int{}}
}

// add registers path and returns its slot.
func (t *pathTable) add(path string, at SourceRef) (int, error) {
	if s, ok := t.index[path]; ok {
		for _, r := range t.refs[s] {
			if r == at {
				return s, nil
			}
		}
		t.refs[s] = append(t.refs[s], at)
		return s, nil
	}
	keys, tail, err := splitPath(path)
	if err != nil {
		return 0, err
	}
	slot := len(t.paths)
	t.paths = append(t.paths, path)
	t.refs = append(t.refs, []SourceRef{at})
	t.index[path] = slot
	n := &t.root
	for _, k := range keys {
		c := n.children[k]
		if c == nil {
			if n.children == nil {
				n.children = map[string]*pnode{}
			}
			c = &pnode{slot: -1, index: len(n.children)}
			n.children[k] = c
			n.reindex()
		}
		n = c
	}
	if tail == "" {
		n.slot = slot
	} else {
		n.tails = append(n.tails, ptail{path: tail, slot: slot})
	}
	return slot, nil
}

// splitPath separates the plain keys of a path from its gjson tail.
func splitPath(path string) (keys []string, tail string, err error) {
	if path == "" {
		return nil, "", fmt.Errorf("the path is empty")
	}
	segs := splitUnescaped(path)
	for i, seg := range segs {
		if seg == "" {
			return nil, "", fmt.Errorf("path %q has an empty segment", path)
		}
		if !isPlainKey(seg) {
			if strings.Count(seg, "(") != strings.Count(seg, ")") {
				return nil, "", fmt.Errorf("path %q has an unbalanced query in %q", path, seg)
			}
			return keys, strings.Join(segs[i:], "."), nil
		}
		keys = append(keys, unescapeKey(seg))
	}
	return keys, "", nil
}

// splitUnescaped splits on dots that are not escaped and not inside a #(...) query.
func splitUnescaped(path string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '\\':
			i++
		case '(':
			depth++
		case ')':
			depth--
		case '.':
			if depth == 0 {
				out = append(out, path[start:i])
				start = i + 1
			}
		case '|':
			if depth == 0 {
				// A pipe changes how the rest applies; keep it whole in the tail.
				out = append(out, path[start:])
				return out
			}
		}
	}
	return append(out, path[start:])
}

func isPlainKey(seg string) bool {
	allDigits := true
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if c == '\\' {
			i++
			allDigits = false
			continue
		}
		switch c {
		case '*', '?', '#', '@', '|', '!', '(', ')', '=', '<', '>', '%', '{', '}', '[', ']', ',', '~':
			return false
		}
		if c < '0' || c > '9' {
			allDigits = false
		}
	}
	return !allDigits
}

func unescapeKey(seg string) string {
	if !strings.Contains(seg, "\\") {
		return seg
	}
	var b strings.Builder
	for i := 0; i < len(seg); i++ {
		if seg[i] == '\\' && i+1 < len(seg) {
			i++
		}
		b.WriteByte(seg[i])
	}
	return b.String()
}

// escapeKey escapes one object key for use as a path segment.
func escapeKey(k string) string { return gjson.Escape(k) }

// capture marks the node of slot (a path of plain keys) as read whole by a spread: a walk that
// steps over its object anyway keeps its members for the spread (captures.members).
func (t *pathTable) capture(slot int) {
	if n := t.root.find(slot); n != nil {
		n.capture = true
	}
}

func (n *pnode) find(slot int) *pnode {
	if n.slot == slot {
		return n
	}
	for _, c := range n.children {
		if f := c.find(slot); f != nil {
			return f
		}
	}
	return nil
}

// member is one key and value of an object, as gjson's ForEach gives them.
type member struct {
	key string
	val gjson.Result
}

// captures holds, for one walk, the members of each captured object the walk stepped over in
// full, in document order (repeated keys included), by slot. Its buffers are reused from walk
// to walk.
type captures struct {
	members [][]member // slot → the members of its object
	done    []bool     // slot → whether members holds this walk's capture
}

// reset forgets the previous walk's members; slots is the number of slots.
func (c *captures) reset(slots int) {
	if len(c.done) < slots {
		c.done = make([]bool, slots)
		c.members = make([][]member, slots)
	}
	clear(c.done)
}

// of returns the members of the object in slot, when the walk captured them.
func (c *captures) of(slot int) ([]member, bool) {
	if slot >= len(c.done) || !c.done[slot] {
		return nil, false
	}
	return c.members[slot], true
}

// walk fills slots with the values of every registered path in the object event, and caps
// with the members of the captured objects.
func (t *pathTable) walk(event gjson.Result, slots []gjson.Result, caps *captures) {
	walkNode(event, &t.root, slots, caps)
}

func walkNode(v gjson.Result, n *pnode, slots []gjson.Result, caps *captures) {
	if n.slot >= 0 {
		slots[n.slot] = v
	}
	for _, tl := range n.tails {
		slots[tl.slot] = v.Get(tl.path)
	}
	if len(n.children) == 0 || !v.IsObject() {
		return
	}
	// The first occurrence of a key wins, as with gjson.Get; a repeated key is ignored and does
	// not count towards the wanted keys, so the walk still stops as soon as all were seen
	// (unless the object is captured: then it is walked to its end).
	remaining := len(n.children)
	var seenSmall uint64
	var seenBig map[int]bool
	capture := n.capture && n.slot >= 0
	var members []member
	if capture {
		members = caps.members[n.slot][:0]
	}
	v.ForEach(func(k, val gjson.Result) bool {
		if capture {
			members = append(members, member{k.Str, val})
		}
		c := n.child(k.Str)
		if c == nil {
			return true
		}
		if c.index < 64 {
			if seenSmall&(1<<c.index) != 0 {
				return true
			}
			seenSmall |= 1 << c.index
		} else {
			if seenBig[c.index] {
				return true
			}
			if seenBig == nil {
				seenBig = map[int]bool{}
			}
			seenBig[c.index] = true
		}
		walkNode(val, c, slots, caps)
		remaining--
		return remaining > 0 || capture
	})
	if capture {
		caps.members[n.slot], caps.done[n.slot] = members, true
	}
}
