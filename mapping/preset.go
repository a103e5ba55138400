package mapping

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// fieldDoc is a parsed, not yet compiled, field.
type fieldDoc struct {
	Name        string
	node        *yaml.Node // the key node, for positions
	Description string
	Source      string // one of Sources
	srcNode     *yaml.Node
	Path        string
	First       []string
	Value       Value
	Template    string
	Expr        string
	Setting     string
	Present     Presence
	Default     *Value
	Lookup      string
	lookupNode  *yaml.Node
	Transform   string
	transNode   *yaml.Node
	As          Conversion
	Required    bool
	DropOnError bool
	Omit        bool
}

type spreadDoc struct {
	node        *yaml.Node
	Description string
	From        []string
	Prefix      string
	prefixNode  *yaml.Node
	Exclude     []string
	Nested      string
	Separator   string
	MaxDepth    int
	Conflict    string
	Present     Presence
	PathKeys    bool // keys: path
	keysNode    *yaml.Node
	Transform   string
	transNode   *yaml.Node
	As          Conversion
	OnError     string // reject, drop or keep
}

type mappingDoc struct {
	Name        string
	node        *yaml.Node
	file        string
	Description string
	When        string
	whenNode    *yaml.Node
	Endpoint    string
	endNode     *yaml.Node
	Fields      []*fieldDoc
	Headers     []*fieldDoc
	Spread      []*spreadDoc
	Inherit     bool
	Skip        string
	RejectCode  string
	RejectMsg   string
	hasEndpoint bool
	given       map[string]bool // keys written in the file, for overlays
}

// Table is a lookup table: event renames and similar translations.
type Table struct {
	Name        string
	Description string
	Fold        bool // case-insensitive match
	Otherwise   string
	OtherValue  string
	Rows        map[string]string
	Order       []string // row keys in file order
	rowNodes    map[string]*yaml.Node
	file        string
}

// EventFilter is a preset's allow or deny list of event names (RudderStack's event filtering).
// It applies to events that carry an event name (track calls); others pass.
type EventFilter struct {
	Allow []string
	Deny  []string
	node  *yaml.Node
}

type presetDoc struct {
	file        string
	Name        string
	Description string
	Blueprint   string
	bpNode      *yaml.Node
	settingsN   []*yaml.Node
	Filter      *EventFilter
	Params      map[string]string
	identityN   *yaml.Node
	contractN   *yaml.Node
	Tables      map[string]*Table
	tableOrder  []string
	Common      mappingDoc
	Mappings    []*mappingDoc
}

func parsePreset(r *reader, data []byte) *presetDoc {
	root := r.parseYAML(data)
	if root == nil {
		return nil
	}
	vals, _, ok := r.object(root, &PresetSpec)
	if !ok {
		return nil
	}
	if k := r.str(vals["kind"], "kind"); vals["kind"] != nil && k != "preset" {
		r.errAt(vals["kind"], CodeBadKind, fmt.Sprintf("kind is %q, want preset", k), "a preset file starts with kind: preset")
	}
	p := &presetDoc{
		file:        r.file,
		Name:        r.str(vals["name"], "name"),
		Description: r.str(vals["description"], "description"),
		Blueprint:   r.str(vals["blueprint"], "blueprint"),
		bpNode:      vals["blueprint"],
		settingsN:   []*yaml.Node{vals["settings"]},
		Filter:      r.filter(vals["filter"]),
		identityN:   vals["identity"],
		contractN:   vals["contract"],
		Params:      map[string]string{},
		Tables:      map[string]*Table{},
	}
	for _, e := range r.pairs(vals["params"], "params") {
		p.Params[e.Key] = r.str(e.Value, "a parameter's meaning")
	}
	for _, e := range r.pairs(vals["tables"], "tables") {
		if t := r.table(e); t != nil {
			p.Tables[e.Key] = t
			p.tableOrder = append(p.tableOrder, e.Key)
		}
	}
	if vals["common"] != nil {
		if cv, _, ok := r.object(vals["common"], &CommonSpec); ok {
			p.Common.Fields = r.fields(cv["fields"], "fields")
			p.Common.Headers = r.fields(cv["headers"], "headers")
			p.Common.Spread = r.spreads(cv["spread"])
		}
	}
	p.Mappings = r.mappings(vals["mappings"])
	return p
}

func (r *reader) mappings(n *yaml.Node) []*mappingDoc {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.errAt(n, CodeWrongType, "mappings must be a list", "start each mapping with `- name: ...`")
		return nil
	}
	var out []*mappingDoc
	seen := map[string]bool{}
	for _, c := range n.Content {
		m := r.mapping(c)
		if m == nil {
			continue
		}
		if seen[m.Name] {
			r.errAt(m.node, CodeDuplicate, fmt.Sprintf("mapping %q is declared twice", m.Name), "give each mapping a unique name")
		}
		seen[m.Name] = true
		out = append(out, m)
	}
	return out
}

func (r *reader) mapping(n *yaml.Node) *mappingDoc {
	mv, _, ok := r.object(n, &MappingSpec)
	if !ok {
		return nil
	}
	given := map[string]bool{}
	for k := range mv {
		given[k] = true
	}
	m := &mappingDoc{
		given:       given,
		node:        resolve(n),
		file:        r.file,
		Name:        r.str(mv["name"], "name"),
		Description: r.str(mv["description"], "description"),
		When:        r.str(mv["when"], "when"),
		whenNode:    mv["when"],
		Endpoint:    r.str(mv["endpoint"], "endpoint"),
		endNode:     mv["endpoint"],
		hasEndpoint: mv["endpoint"] != nil,
		Inherit:     true,
		Skip:        r.str(mv["skip"], "skip"),
	}
	if mv["inherit"] != nil {
		m.Inherit = r.boolean(mv["inherit"], "inherit")
	}
	if mv["reject"] != nil {
		if rv, _, ok := r.object(mv["reject"], &RejectSpec); ok {
			m.RejectCode = r.str(rv["code"], "code")
			m.RejectMsg = r.str(rv["message"], "message")
		}
	}
	m.Fields = r.fields(mv["fields"], "fields")
	m.Headers = r.fields(mv["headers"], "headers")
	m.Spread = r.spreads(mv["spread"])
	if m.Skip != "" && m.RejectCode != "" {
		r.errAt(mv["reject"], CodeMultipleSources, fmt.Sprintf("mapping %q has both skip and reject", m.Name), "keep one of them")
	}
	return m
}

func (r *reader) fields(n *yaml.Node, what string) []*fieldDoc {
	var out []*fieldDoc
	for _, e := range r.pairs(n, what) {
		if f := r.field(e); f != nil {
			out = append(out, f)
		}
	}
	return out
}

func (r *reader) field(e entry) *fieldDoc {
	f := &fieldDoc{Name: e.Key, node: e.KeyN}
	v := resolve(e.Value)
	if v != nil && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		f.Source, f.Path, f.srcNode = "path", v.Value, v
		return f
	}
	before := len(r.diags)
	fv, keys, ok := r.object(v, &FieldSpec)
	if !ok {
		return nil
	}
	misspelt := len(r.diags) > before // an unknown key was reported; do not also say "no source"
	f.Description = r.str(fv["description"], "description")
	f.Omit = r.boolean(fv["omit"], "omit")
	var given []string
	for _, s := range Sources {
		if fv[s] != nil {
			given = append(given, s)
		}
	}
	switch {
	case len(given) > 1:
		r.errAt(keys[given[1]], CodeMultipleSources,
			fmt.Sprintf("field %q has %d sources (%s); a field takes exactly one", e.Key, len(given), strings.Join(given, ", ")),
			"keep one; use first: [a, b] for a precedence list, or expr: for a computed value")
		return nil
	case len(given) == 0:
		if !f.Omit && !misspelt {
			r.errAt(e.KeyN, CodeNoSource, fmt.Sprintf("field %q has no source", e.Key),
				"give one of: "+strings.Join(Sources, ", "))
			return nil
		}
		return f
	}
	f.Source, f.srcNode = given[0], fv[given[0]]
	switch f.Source {
	case "path":
		f.Path = r.str(fv["path"], "path")
	case "first":
		f.First = r.strList(fv["first"], "first")
		if len(f.First) == 0 {
			r.errAt(fv["first"], CodeWrongType, "first needs at least one path", "")
		}
	case "value":
		f.Value, _ = r.scalarValue(fv["value"], "value")
	case "template":
		f.Template = r.str(fv["template"], "template")
	case "expr":
		f.Expr = r.str(fv["expr"], "expr")
	case "setting":
		f.Setting = r.str(fv["setting"], "setting")
	}
	if fv["present"] != nil {
		f.Present = presenceNames[r.enum(fv["present"], "present", presenceOptions...)]
	}
	if fv["default"] != nil {
		if d, ok := r.scalarValue(fv["default"], "default"); ok {
			f.Default = &d
		}
	}
	f.Lookup, f.lookupNode = r.str(fv["lookup"], "lookup"), fv["lookup"]
	f.Transform, f.transNode = r.str(fv["transform"], "transform"), fv["transform"]
	if fv["as"] != nil {
		f.As = conversionNames[r.enum(fv["as"], "as", conversionOptions...)]
	}
	f.Required = r.boolean(fv["required"], "required")
	f.DropOnError = r.enum(fv["on_error"], "on_error", "reject", "drop") == "drop"
	return f
}

func (r *reader) spreads(n *yaml.Node) []*spreadDoc {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		r.errAt(n, CodeWrongType, "spread must be a list", "start each rule with `- from: ...`")
		return nil
	}
	var out []*spreadDoc
	for _, c := range n.Content {
		sv, keys, ok := r.object(c, &SpreadSpec)
		if !ok {
			continue
		}
		s := &spreadDoc{
			node:        resolve(c),
			Description: r.str(sv["description"], "description"),
			Prefix:      r.str(sv["prefix"], "prefix"),
			prefixNode:  sv["prefix"],
			Exclude:     r.strList(sv["exclude"], "exclude"),
			Nested:      r.enum(sv["nested"], "nested", "json", "flatten", "skip"),
			Separator:   "_",
			MaxDepth:    3,
			Conflict:    r.enum(sv["conflict"], "conflict", "explicit_wins", "explicit_when_present", "spread_wins", "reject"),
		}
		switch {
		case sv["from"] != nil && sv["first"] != nil:
			r.errAt(keys["first"], CodeMultipleSources, "a spread takes from: or first:, not both", "")
		case sv["from"] != nil:
			s.From = []string{r.str(sv["from"], "from")}
		case sv["first"] != nil:
			s.From = r.strList(sv["first"], "first")
		default:
			r.errAt(s.node, CodeNoSource, "a spread needs from: (an object path) or first: (a list of them)", "")
		}
		if sv["separator"] != nil {
			s.Separator = r.str(sv["separator"], "separator")
		}
		if d, ok := r.integer(sv["max_depth"], "max_depth"); ok {
			s.MaxDepth = int(d)
		}
		if sv["present"] != nil {
			s.Present = presenceNames[r.enum(sv["present"], "present", presenceOptions...)]
		}
		s.PathKeys, s.keysNode = r.enum(sv["keys"], "keys", "literal", "path") == "path", sv["keys"]
		s.Transform, s.transNode = r.str(sv["transform"], "transform"), sv["transform"]
		if sv["as"] != nil {
			s.As = conversionNames[r.enum(sv["as"], "as", conversionOptions...)]
		}
		s.OnError = r.enum(sv["on_error"], "on_error", "reject", "drop", "keep")
		if s.OnError == "" {
			s.OnError = "reject"
		}
		if s.PathKeys && s.Nested == "flatten" {
			r.errAt(sv["keys"], CodeBadValue, "keys: path cannot be combined with nested: flatten",
				"path keys build nested objects and flatten takes them apart; keep one of them")
		}
		if s.Nested == "" {
			s.Nested = "json"
		}
		if s.Conflict == "" {
			s.Conflict = "explicit_wins"
		}
		out = append(out, s)
	}
	return out
}

func (r *reader) table(e entry) *Table {
	tv, _, ok := r.object(e.Value, &TableSpec)
	if !ok {
		return nil
	}
	t := &Table{
		Name:        e.Key,
		Description: r.str(tv["description"], "description"),
		Fold:        r.enum(tv["match"], "match", "exact", "case_insensitive") == "case_insensitive",
		Otherwise:   r.enum(tv["otherwise"], "otherwise", "keep", "drop", "skip", "value"),
		OtherValue:  r.str(tv["otherwise_value"], "otherwise_value"),
		Rows:        map[string]string{},
		rowNodes:    map[string]*yaml.Node{},
		file:        r.file,
	}
	if t.Otherwise == "" {
		t.Otherwise = "keep"
	}
	if t.Otherwise == "value" && tv["otherwise_value"] == nil {
		r.errAt(tv["otherwise"], CodeMissingKey, "otherwise: value needs otherwise_value", "")
	}
	for _, row := range r.pairs(tv["rows"], "rows") {
		key := row.Key
		if t.Fold {
			key = strings.ToLower(key)
		}
		if _, dup := t.Rows[key]; dup {
			r.errAt(row.KeyN, CodeDuplicate, fmt.Sprintf("table %q has %q twice (ignoring case)", e.Key, row.Key), "")
		}
		t.Rows[key] = r.str(row.Value, "a table value")
		t.rowNodes[row.Key] = row.KeyN
		t.Order = append(t.Order, row.Key)
	}
	return t
}

func (r *reader) filter(n *yaml.Node) *EventFilter {
	if n == nil {
		return nil
	}
	fv, _, ok := r.object(n, &FilterSpec)
	if !ok {
		return nil
	}
	f := &EventFilter{Allow: r.strList(fv["allow"], "allow"), Deny: r.strList(fv["deny"], "deny"), node: resolve(n)}
	if fv["allow"] != nil && fv["deny"] != nil {
		r.errAt(fv["deny"], CodeMultipleSources, "a filter takes an allow list or a deny list, not both", "keep one of them")
	}
	return f
}

// parseOverlay reads a mappings file and merges it into the preset: tables and settings are
// added or replaced, a filter replaces the preset's, a mapping with a new name is tried before
// the preset's own mappings (so a specific event wins over a generic `type == "track"`), and a
// mapping with an existing name is overlaid key by key: fields and headers merge by name
// (omit: true removes one), and when, endpoint, spread, skip, reject and inherit replace.
func parseOverlay(r *reader, data []byte, into *presetDoc) {
	root := r.parseYAML(data)
	if root == nil {
		return
	}
	vals, _, ok := r.object(root, &OverlaySpec)
	if !ok {
		return
	}
	if k := r.str(vals["kind"], "kind"); vals["kind"] != nil && k != "mappings" {
		r.errAt(vals["kind"], CodeBadKind, fmt.Sprintf("kind is %q, want mappings", k), "a mapping file added with --mappings starts with kind: mappings")
	}
	if vals["settings"] != nil {
		into.settingsN = append(into.settingsN, vals["settings"])
	}
	if vals["filter"] != nil {
		into.Filter = r.filter(vals["filter"])
	}
	for _, e := range r.pairs(vals["tables"], "tables") {
		if t := r.table(e); t != nil {
			if into.Tables[e.Key] == nil {
				into.tableOrder = append(into.tableOrder, e.Key)
			}
			into.Tables[e.Key] = t
		}
	}
	var added []*mappingDoc
	for _, m := range r.mappings(vals["mappings"]) {
		base := into.mapping(m.Name)
		if base == nil {
			added = append(added, m)
			continue
		}
		overlayMapping(base, m)
	}
	into.Mappings = append(added, into.Mappings...)
}

func (p *presetDoc) mapping(name string) *mappingDoc {
	for _, m := range p.Mappings {
		if m.Name == name {
			return m
		}
	}
	return nil
}

func overlayMapping(base, over *mappingDoc) {
	g := over.given
	if g["description"] {
		base.Description = over.Description
	}
	if g["when"] {
		base.When, base.whenNode = over.When, over.whenNode
	}
	if g["endpoint"] {
		base.Endpoint, base.endNode, base.hasEndpoint = over.Endpoint, over.endNode, true
	}
	if g["inherit"] {
		base.Inherit = over.Inherit
	}
	if g["skip"] {
		base.Skip, base.RejectCode, base.RejectMsg = over.Skip, "", ""
	}
	if g["reject"] {
		base.RejectCode, base.RejectMsg, base.Skip = over.RejectCode, over.RejectMsg, ""
	}
	if g["spread"] {
		base.Spread = over.Spread
	}
	base.Fields = overlayFields(base.Fields, over.Fields)
	base.Headers = overlayFields(base.Headers, over.Headers)
}

// overlayFields replaces same-named fields in place and appends new ones; omit: true entries
// are kept so that they can also remove a field inherited from common.
func overlayFields(base, over []*fieldDoc) []*fieldDoc {
	out := append([]*fieldDoc{}, base...)
	for _, f := range over {
		replaced := false
		for i := range out {
			if out[i].Name == f.Name {
				out[i], replaced = f, true
				break
			}
		}
		if !replaced {
			out = append(out, f)
		}
	}
	return out
}
