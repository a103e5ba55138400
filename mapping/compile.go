package mapping

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/tidwall/gjson"
	"gopkg.in/yaml.v3"
)

// Source is one YAML document handed to the compiler: its name (for diagnostics) and bytes.
type Source struct {
	File string
	Data []byte
}

// Options configures Compile.
type Options struct {
	// Blueprint is the destination the preset configures; its name must match the preset's
	// blueprint: key.
	Blueprint *Blueprint
	// Settings are the user's --set KEY=VALUE pairs.
	Settings map[string]string
	// SettingsFile names where Settings came from in diagnostics (default "--set").
	SettingsFile string
	// AllowUnsetRequired compiles even when a required setting is unset (for lint and docs).
	AllowUnsetRequired bool
	// Overlays are mapping files (kind: mappings) laid over the preset, in order.
	Overlays []Source
}

// Program is a compiled preset: immutable, safe to share between goroutines. Run it on events
// with Run.
type Program struct {
	Name        string
	Description string
	File        string
	bp          *Blueprint
	settings    map[string]Value
	settingDecl []*SettingDecl
	paths       *pathTable
	exprSlots   []int
	mappings    []*cmapping
	tables      map[string]*Table
	identity    IdentityPolicy
	contract    Contract
	filter      *compiledFilter
	warnings    Diagnostics // findings that do not stop the program (see Warnings)
	pool        sync.Pool
}

// Warnings lists what the compiler found questionable without refusing the program: today,
// expression constructs whose cost depends on the event (code unbounded_expression), which the
// evaluation limits stop at run time. config check and lint print them.
func (p *Program) Warnings() Diagnostics { return p.warnings }

type compiledFilter struct {
	eventSlot int
	allow     bool // names is an allow list; otherwise a deny list
	names     map[string]bool
}

type sourceKind uint8

const (
	srcPath sourceKind = iota
	srcFirst
	srcConst
	srcTemplate
	srcExpr
)

type cfield struct {
	doc       *fieldDoc
	header    bool
	at        SourceRef // where the field is declared
	name      string
	src       sourceKind
	slot      int
	slots     []int
	constant  Value
	tmpl      *template
	prog      *program
	present   Presence
	def       *Value
	table     *Table
	transform *program
	as        Conversion
	required  bool
	dropOnErr bool
}

type cspread struct {
	doc      *spreadDoc
	at       SourceRef
	slots    []int
	prefix   string
	exact    map[string]bool
	globs    []glob
	explicit map[string]bool // explicit field names of the mapping with this prefix stripped
	nested   string
	sep      string
	maxDepth int
	conflict string
	present  Presence
	paths    bool     // keys: path
	convert  bool     // transform or as is set
	trans    *program // transform, or nil
	as       Conversion
	onError  string // reject, drop or keep
}

type cmapping struct {
	doc       *mappingDoc
	name      string
	when      *program
	skip      *template
	rejCode   string
	rejMsg    *template
	endpoint  *Endpoint
	url       string
	fields    []*cfield
	headers   []*cfield
	spreads   []*cspread
	needEvent bool
}

// template is a string with {{ path }} or {{ expression }} placeholders.
type template struct {
	parts []tmplPart
}

type tmplPart struct {
	lit  string
	slot int // -1 for literal text or an expression
	prog *program
}

// Compile loads a preset against its blueprint and returns the compiled program, or
// Diagnostics listing every problem with file:line:col.
func Compile(preset Source, opts Options) (*Program, error) {
	r := &reader{file: preset.File}
	doc := parsePreset(r, preset.Data)
	if doc != nil {
		for _, ov := range opts.Overlays {
			r.file = ov.File
			parseOverlay(r, ov.Data, doc)
		}
		r.file = preset.File
	}
	if doc == nil || opts.Blueprint == nil {
		if opts.Blueprint == nil {
			r.errAt(nil, CodeUnknownBlueprint, "no blueprint given to the compiler", "")
		}
		r.diags.Sort()
		return nil, r.diags
	}
	c := &compiler{r: r, bp: opts.Blueprint, doc: doc}
	p := c.program(opts)
	if len(r.diags) > 0 {
		r.diags.Sort()
		return nil, r.diags
	}
	return p, nil
}

type compiler struct {
	r       *reader
	bp      *Blueprint
	doc     *presetDoc
	p       *Program
	ec      *exprCompiler
	allowed map[string]bool
}

func (c *compiler) program(opts Options) *Program {
	bp, doc, r := c.bp, c.doc, c.r
	if doc.Blueprint != "" && doc.Blueprint != bp.Name {
		r.errAt(doc.bpNode, CodeUnknownBlueprint, fmt.Sprintf("blueprint %q is not available", doc.Blueprint), "this build ships the "+strconv.Quote(bp.Name)+" blueprint")
	}
	p := &Program{
		Name:        doc.Name,
		Description: doc.Description,
		File:        doc.file,
		bp:          bp,
		paths:       newPathTable(),
		tables:      doc.Tables,
		identity:    bp.Identity,
		contract:    bp.Contract,
		settings:    map[string]Value{},
	}
	c.p = p
	r.identity(doc.identityN, &p.identity)
	r.presetContract(doc.contractN, &p.contract)
	p.settingDecl = bp.Settings
	for _, n := range doc.settingsN {
		p.settingDecl = r.settings(n, p.settingDecl)
	}
	c.resolveSettings(opts)
	settingsAny := map[string]any{}
	for k, v := range p.settings {
		settingsAny[k] = v.toAny()
	}
	c.ec = &exprCompiler{paths: p.paths, used: map[int]bool{}, tables: p.tables, settings: settingsAny}
	c.allowed = map[string]bool{}
	for k := range bp.Params {
		c.allowed[k] = true
	}
	for k := range doc.Params {
		c.allowed[k] = true
	}
	for _, id := range p.identity.Order {
		if !c.nameAllowed(id) {
			r.errAt(doc.identityN, CodeUnknownPrefix, fmt.Sprintf("identity parameter %q is neither built in nor custom", id), "")
		}
	}
	base := p.settings[bp.BaseURLSetting].Text
	base = strings.TrimRight(base, "/")
	for _, md := range doc.Mappings {
		if m := c.mapping(md, base); m != nil {
			p.mappings = append(p.mappings, m)
		}
	}
	if f := doc.Filter; f != nil {
		p.filter = &compiledFilter{eventSlot: c.path("event", f.node), allow: len(f.Allow) > 0, names: map[string]bool{}}
		for _, n := range append(f.Allow, f.Deny...) {
			p.filter.names[n] = true
		}
	}
	p.warnings = c.ec.warnings
	for slot := range c.ec.used {
		p.exprSlots = append(p.exprSlots, slot)
	}
	sort.Ints(p.exprSlots)
	nslots := len(p.paths.paths)
	p.pool.New = func() any {
		st := &state{slots: make([]gjson.Result, nslots), env: exprEnv{P: make([]any, nslots), Settings: settingsAny}}
		st.env.B = &st.budget
		return st
	}
	return p
}

func (c *compiler) resolveSettings(opts Options) {
	p, r := c.p, c.r
	setFile := opts.SettingsFile
	if setFile == "" {
		setFile = "--set"
	}
	decls := map[string]*SettingDecl{}
	var names []string
	for _, d := range p.settingDecl {
		decls[d.Name] = d
		names = append(names, d.Name)
	}
	keys := make([]string, 0, len(opts.Settings))
	for k := range opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		d := decls[k]
		if d == nil {
			hint := "settings of this preset: " + strings.Join(names, ", ")
			if s := didYouMean(k, names); s != "" {
				hint = "did you mean " + strconv.Quote(s) + "?"
			}
			r.diags = append(r.diags, Diagnostic{File: setFile, Code: CodeUnknownSetting, Msg: fmt.Sprintf("unknown setting %q", k), Hint: hint})
			continue
		}
		v, err := checkSetting(d, opts.Settings[k])
		if err != nil {
			r.diags = append(r.diags, Diagnostic{File: setFile, Code: CodeBadSetting, Msg: fmt.Sprintf("setting %q: %v", k, err), Hint: d.Description})
			continue
		}
		p.settings[k] = v
	}
	for _, d := range p.settingDecl {
		if _, ok := p.settings[d.Name]; ok {
			continue
		}
		if d.Default != nil {
			p.settings[d.Name] = *d.Default
		} else if d.Required && !opts.AllowUnsetRequired {
			r.diags = append(r.diags, Diagnostic{File: setFile, Code: CodeBadSetting,
				Msg: fmt.Sprintf("setting %q is required", d.Name), Hint: fmt.Sprintf("pass --set %s=VALUE; %s", d.Name, d.Description)})
		}
	}
}

func (c *compiler) nameAllowed(name string) bool {
	if c.allowed[name] {
		return true
	}
	for _, pre := range c.bp.Contract.CustomPrefixes {
		if strings.HasPrefix(name, pre) && len(name) > len(pre) {
			return true
		}
	}
	return false
}

func (c *compiler) mapping(md *mappingDoc, base string) *cmapping {
	r := c.r
	m := &cmapping{doc: md, name: md.Name}
	if md.When != "" {
		prog, err := c.compileExpr(md.When, true, md.whenNode)
		if err != nil {
			r.errAt(md.whenNode, CodeBadExpression, fmt.Sprintf("when of mapping %q: %v", md.Name, err), "a when is an expr-lang boolean, e.g. type == \"track\"")
		}
		m.when = prog
	}
	if md.Skip != "" {
		m.skip = c.template(md.Skip, md.node)
		return m
	}
	if md.RejectCode != "" {
		m.rejCode = md.RejectCode
		m.rejMsg = c.template(md.RejectMsg, md.node)
		return m
	}
	ep := c.bp.Endpoints[md.Endpoint]
	if !md.hasEndpoint {
		r.errAt(md.node, CodeMissingKey, fmt.Sprintf("mapping %q needs an endpoint", md.Name), "add endpoint: ce (or identify), or skip:/reject: to filter events")
		return nil
	}
	if ep == nil {
		names := make([]string, 0, len(c.bp.Endpoints))
		for k := range c.bp.Endpoints {
			names = append(names, k)
		}
		sort.Strings(names)
		hint := "endpoints: " + strings.Join(names, ", ")
		if s := didYouMean(md.Endpoint, names); s != "" {
			hint = "did you mean " + strconv.Quote(s) + "?"
		}
		r.errAt(md.endNode, CodeUnknownEndpoint, fmt.Sprintf("mapping %q sends to unknown endpoint %q", md.Name, md.Endpoint), hint)
		return nil
	}
	m.endpoint = ep
	m.url = base + ep.Path
	m.needEvent = ep.Event == "required"

	fields := md.Fields
	headers := md.Headers
	spreads := md.Spread
	if md.Inherit {
		fields = mergeFields(c.doc.Common.Fields, md.Fields)
		headers = mergeFields(c.doc.Common.Headers, md.Headers)
		spreads = append(append([]*spreadDoc{}, md.Spread...), c.doc.Common.Spread...)
	}
	hasEvent := false
	for _, fd := range fields {
		if !c.nameAllowed(fd.Name) {
			hint := "custom parameters start with " + strings.Join(c.bp.Contract.CustomPrefixes, ", ")
			if s := didYouMean(fd.Name, keysOf(c.allowed)); s != "" {
				hint = "did you mean " + strconv.Quote(s) + "? otherwise " + hint
			}
			r.errAt(fd.node, CodeUnknownPrefix, fmt.Sprintf("parameter %q is not a built-in %s parameter and has no custom prefix", fd.Name, c.bp.Name), hint)
			continue
		}
		if fd.Name == c.bp.EventParam {
			hasEvent = true
			if ep.Event == "forbidden" {
				r.errAt(fd.node, CodeContract, fmt.Sprintf("mapping %q sends %q to %s, which takes no event", md.Name, fd.Name, ep.Path), "remove the field, or send to an endpoint that records events")
				continue
			}
		}
		if f := c.field(fd); f != nil {
			m.fields = append(m.fields, f)
		}
	}
	if m.needEvent && !hasEvent {
		r.errAt(md.node, CodeContract, fmt.Sprintf("mapping %q sends to %s, which needs an %q field", md.Name, ep.Path, c.bp.EventParam), "add fields: {event: {path: event}}")
	}
	for _, hd := range headers {
		if !validHeaderName(hd.Name) {
			r.errAt(hd.node, CodeBadValue, fmt.Sprintf("%q is not a valid HTTP header name", hd.Name), "")
			continue
		}
		if f := c.field(hd); f != nil {
			f.header = true
			m.headers = append(m.headers, f)
		}
	}
	for _, sd := range spreads {
		if s := c.spread(sd, m.fields); s != nil {
			m.spreads = append(m.spreads, s)
		}
	}
	return m
}

func keysOf(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// mergeFields overlays own on common: a field of the same name replaces the common one in
// place, omit: true removes it, new fields are appended.
func mergeFields(common, own []*fieldDoc) []*fieldDoc {
	out := make([]*fieldDoc, 0, len(common)+len(own))
	idx := map[string]int{}
	for _, f := range common {
		idx[f.Name] = len(out)
		out = append(out, f)
	}
	for _, f := range own {
		if i, ok := idx[f.Name]; ok {
			out[i] = f
		} else {
			idx[f.Name] = len(out)
			out = append(out, f)
		}
	}
	kept := out[:0]
	for _, f := range out {
		if !f.Omit {
			kept = append(kept, f)
		}
	}
	return kept
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// ref returns the position of a node.
func (c *compiler) ref(n *yaml.Node) SourceRef {
	if n == nil {
		return SourceRef{File: c.r.file}
	}
	return SourceRef{File: c.r.fileOf(n), Line: n.Line, Col: n.Column}
}

// compileExpr compiles an expression written at node n.
func (c *compiler) compileExpr(src string, asBool bool, n *yaml.Node) (*program, error) {
	c.ec.at = c.ref(n)
	return c.ec.compile(src, asBool)
}

func (c *compiler) path(path string, at *yaml.Node) int {
	slot, err := c.p.paths.add(path, c.ref(at))
	if err != nil {
		c.r.errAt(at, CodeBadPath, err.Error(), "paths are gjson paths: a.b.c, escape dots in keys as a\\.b")
		return -1
	}
	return slot
}

func (c *compiler) field(fd *fieldDoc) *cfield {
	r := c.r
	f := &cfield{doc: fd, at: c.ref(fd.node), name: fd.Name, present: fd.Present, def: fd.Default, as: fd.As, required: fd.Required, dropOnErr: fd.DropOnError, slot: -1}
	switch fd.Source {
	case "path":
		f.src = srcPath
		f.slot = c.path(fd.Path, fd.srcNode)
	case "first":
		f.src = srcFirst
		for i, p := range fd.First {
			at := fd.srcNode
			if at != nil && at.Kind == yaml.SequenceNode && i < len(at.Content) {
				at = at.Content[i]
			}
			f.slots = append(f.slots, c.path(p, at))
		}
	case "value":
		f.src, f.constant = srcConst, fd.Value
	case "setting":
		f.src = srcConst
		if !c.settingDeclared(fd.Setting) {
			names := make([]string, 0, len(c.p.settingDecl))
			for _, d := range c.p.settingDecl {
				names = append(names, d.Name)
			}
			hint := "declare it under settings:, or use one of: " + strings.Join(names, ", ")
			if s := didYouMean(fd.Setting, names); s != "" {
				hint = "did you mean " + strconv.Quote(s) + "?"
			}
			r.errAt(fd.srcNode, CodeUnknownSetting, fmt.Sprintf("field %q reads unknown setting %q", fd.Name, fd.Setting), hint)
			return nil
		}
		f.constant = c.p.settings[fd.Setting]
	case "template":
		f.src = srcTemplate
		f.tmpl = c.template(fd.Template, fd.srcNode)
	case "expr":
		f.src = srcExpr
		prog, err := c.compileExpr(fd.Expr, false, fd.srcNode)
		if err != nil {
			r.errAt(fd.srcNode, CodeBadExpression, fmt.Sprintf("expr of field %q: %v", fd.Name, err), "see `woorelay docs` for the expression language and functions")
			return nil
		}
		f.prog = prog
	}
	if fd.Lookup != "" {
		f.table = c.p.tables[fd.Lookup]
		if f.table == nil {
			hint := "declare it under tables:"
			if s := didYouMean(fd.Lookup, c.doc.tableOrder); s != "" {
				hint = "did you mean " + strconv.Quote(s) + "?"
			}
			r.errAt(fd.lookupNode, CodeUnknownTable, fmt.Sprintf("field %q looks up unknown table %q", fd.Name, fd.Lookup), hint)
		}
	}
	if fd.Transform != "" {
		prog, err := c.compileExpr(fd.Transform, false, fd.transNode)
		if err != nil {
			r.errAt(fd.transNode, CodeBadExpression, fmt.Sprintf("transform of field %q: %v", fd.Name, err), "the value is bound as `value`, e.g. lower(trim(value))")
			return nil
		}
		f.transform = prog
	}
	return f
}

func (c *compiler) settingDeclared(name string) bool {
	for _, d := range c.p.settingDecl {
		if d.Name == name {
			return true
		}
	}
	return false
}

func (c *compiler) spread(sd *spreadDoc, fields []*cfield) *cspread {
	r := c.r
	ok := false
	for _, pre := range c.bp.Contract.CustomPrefixes {
		ok = ok || sd.Prefix == pre
	}
	if !ok {
		r.errAt(sd.prefixNode, CodeUnknownPrefix, fmt.Sprintf("spread prefix %q is not a custom prefix", sd.Prefix),
			"use one of: "+strings.Join(c.bp.Contract.CustomPrefixes, ", "))
		return nil
	}
	s := &cspread{doc: sd, at: c.ref(sd.node), prefix: sd.Prefix, exact: map[string]bool{}, explicit: map[string]bool{},
		nested: sd.Nested, sep: sd.Separator, maxDepth: sd.MaxDepth, conflict: sd.Conflict, present: sd.Present,
		paths: sd.PathKeys, as: sd.As, onError: sd.OnError}
	if sd.Transform != "" {
		prog, err := c.compileExpr(sd.Transform, false, sd.transNode)
		if err != nil {
			r.errAt(sd.transNode, CodeBadExpression, fmt.Sprintf("transform of a spread of %s: %v", sd.Prefix, err), "the value is bound as `value`, e.g. lower(value)")
			return nil
		}
		s.trans = prog
	}
	s.convert = s.trans != nil || s.as != AsNone
	for _, p := range sd.From {
		slot := c.path(p, sd.node)
		s.slots = append(s.slots, slot)
		if slot >= 0 {
			c.p.paths.capture(slot)
		}
	}
	for _, e := range sd.Exclude {
		if strings.Contains(e, "*") {
			s.globs = append(s.globs, compileGlob(e))
		} else {
			s.exact[e] = true
		}
	}
	for _, f := range fields {
		if strings.HasPrefix(f.name, sd.Prefix) {
			s.explicit[f.name[len(sd.Prefix):]] = true
		}
	}
	return s
}

// template compiles {{ placeholder }} text; a placeholder is a path, or else an expression.
func (c *compiler) template(src string, at *yaml.Node) *template {
	t := &template{}
	rest := src
	for {
		i := strings.Index(rest, "{{")
		if i < 0 {
			if rest != "" {
				t.parts = append(t.parts, tmplPart{lit: rest, slot: -1})
			}
			return t
		}
		if i > 0 {
			t.parts = append(t.parts, tmplPart{lit: rest[:i], slot: -1})
		}
		j := strings.Index(rest[i:], "}}")
		if j < 0 {
			c.r.errAt(at, CodeBadTemplate, fmt.Sprintf("template %q has an unclosed {{", src), "close every placeholder with }}")
			return t
		}
		inner := strings.TrimSpace(rest[i+2 : i+j])
		if inner == "" {
			c.r.errAt(at, CodeBadTemplate, fmt.Sprintf("template %q has an empty placeholder", src), "")
		} else if keys, tail, err := splitPath(inner); err == nil && tail == "" && len(keys) > 0 && !strings.ContainsAny(inner, " ()+-*/\"'") {
			t.parts = append(t.parts, tmplPart{slot: c.path(inner, at)})
		} else {
			prog, err := c.compileExpr(inner, false, at)
			if err != nil {
				c.r.errAt(at, CodeBadExpression, fmt.Sprintf("placeholder {{ %s }}: %v", inner, err), "a placeholder is a path or an expression")
			}
			t.parts = append(t.parts, tmplPart{slot: -1, prog: prog})
		}
		rest = rest[i+j+2:]
	}
}

// Settings returns the resolved settings of the program.
func (p *Program) Settings() map[string]Value {
	out := make(map[string]Value, len(p.settings))
	for k, v := range p.settings {
		out[k] = v
	}
	return out
}

// Blueprint returns the blueprint the program was compiled against.
func (p *Program) Blueprint() *Blueprint { return p.bp }
