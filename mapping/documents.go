package mapping

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// SettingDecl declares a setting: its type, default and whether it must be set.
type SettingDecl struct {
	Name        string
	Type        string // string, int or bool
	Required    bool
	Default     *Value
	Enum        []string
	Description string
	node        *yaml.Node
}

// Endpoint is one endpoint of a blueprint.
type Endpoint struct {
	Name        string
	Method      string
	Path        string
	Event       string // required, forbidden or optional
	Description string
}

// IdentityPolicy says which parameters identify a visitor and what to do without one.
type IdentityPolicy struct {
	Order    []string // highest first
	WhenNone string   // reject or send
	Send     string   // all or highest
}

// Contract is the output contract every request must satisfy.
type Contract struct {
	CustomPrefixes []string
	TimestampParam string
	MaxFutureMs    int64
	OnFuture       string // reject, clamp or drop
	// MaxFutureLimitMs is the most a preset may raise MaxFutureMs to; 0 means presets cannot
	// raise it.
	MaxFutureLimitMs int64
}

// Blueprint describes a destination: endpoints, settings, built-in parameters, identity policy
// and output contract. It is itself YAML; see the blueprint package for Woopra's.
type Blueprint struct {
	Name           string
	Description    string
	BaseURLSetting string
	EventParam     string
	Settings       []*SettingDecl
	Endpoints      map[string]*Endpoint
	Params         map[string]string // built-in unprefixed parameter → meaning
	Identity       IdentityPolicy
	Contract       Contract
	File           string
}

// ParseBlueprint reads a blueprint document. Errors are Diagnostics with file:line:col.
func ParseBlueprint(file string, data []byte) (*Blueprint, error) {
	r := &reader{file: file}
	root := r.parseYAML(data)
	if root == nil {
		return nil, r.diags
	}
	vals, _, ok := r.object(root, &BlueprintSpec)
	if !ok {
		return nil, r.diags
	}
	if k := r.str(vals["kind"], "kind"); vals["kind"] != nil && k != "blueprint" {
		r.errAt(vals["kind"], CodeBadKind, fmt.Sprintf("kind is %q, want blueprint", k), "")
	}
	bp := &Blueprint{
		Name:           r.str(vals["name"], "name"),
		Description:    r.str(vals["description"], "description"),
		BaseURLSetting: r.str(vals["base_url_setting"], "base_url_setting"),
		EventParam:     r.str(vals["event_param"], "event_param"),
		Endpoints:      map[string]*Endpoint{},
		Params:         map[string]string{},
		File:           file,
		Identity:       IdentityPolicy{WhenNone: "reject", Send: "all"},
	}
	bp.Settings = r.settings(vals["settings"], nil)
	for _, e := range r.pairs(vals["endpoints"], "endpoints") {
		ev, _, ok := r.object(e.Value, &EndpointSpec)
		if !ok {
			continue
		}
		bp.Endpoints[e.Key] = &Endpoint{
			Name:        e.Key,
			Method:      r.enum(ev["method"], "method", "GET", "POST"),
			Path:        r.str(ev["path"], "path"),
			Event:       r.enum(ev["event"], "event", "required", "forbidden", "optional"),
			Description: r.str(ev["description"], "description"),
		}
	}
	for _, e := range r.pairs(vals["params"], "params") {
		bp.Params[e.Key] = r.str(e.Value, "a parameter's meaning")
	}
	r.identity(vals["identity"], &bp.Identity)
	if cv, _, ok := r.object(vals["contract"], &ContractSpec); ok {
		bp.Contract.CustomPrefixes = r.strList(cv["custom_prefixes"], "custom_prefixes")
		bp.Contract.TimestampParam = r.str(cv["timestamp_param"], "timestamp_param")
		bp.Contract.MaxFutureMs, _ = r.integer(cv["max_future_ms"], "max_future_ms")
		bp.Contract.OnFuture = r.enum(cv["on_future"], "on_future", futureOptions...)
		if bp.Contract.OnFuture == "" {
			bp.Contract.OnFuture = "reject"
		}
		bp.Contract.MaxFutureLimitMs, _ = r.integer(cv["max_future_limit_ms"], "max_future_limit_ms")
	}
	found := false
	for _, s := range bp.Settings {
		found = found || s.Name == bp.BaseURLSetting
	}
	if !found && vals["base_url_setting"] != nil {
		r.errAt(vals["base_url_setting"], CodeUnknownSetting, fmt.Sprintf("base_url_setting names %q, which is not a setting", bp.BaseURLSetting), "declare it under settings")
	}
	if len(r.diags) > 0 {
		return nil, r.diags
	}
	return bp, nil
}

// futureOptions are the values of on_future.
var futureOptions = []string{"reject", "clamp", "drop"}

// presetContract applies a preset's contract: block to the blueprint's contract c: a
// max_future_ms beyond the blueprint's max_future_limit_ms (or above its own max_future_ms
// when it sets no limit) is reported where it is written.
func (r *reader) presetContract(n *yaml.Node, c *Contract) {
	if n == nil {
		return
	}
	cv, _, ok := r.object(n, &PresetContractSpec)
	if !ok {
		return
	}
	if ms, ok := r.integer(cv["max_future_ms"], "max_future_ms"); ok {
		limit := max(c.MaxFutureLimitMs, c.MaxFutureMs)
		switch {
		case ms < 0:
			r.errAt(cv["max_future_ms"], CodeBadValue, fmt.Sprintf("max_future_ms is %d; it cannot be negative", ms), "0 rejects every timestamp later than now")
		case ms > limit:
			r.errAt(cv["max_future_ms"], CodeContract, fmt.Sprintf("max_future_ms %d is beyond the blueprint's bound of %d ms", ms, limit),
				fmt.Sprintf("a preset may allow timestamps at most %d ms (%s) ahead; the bound is the blueprint's max_future_limit_ms", limit, aheadBy(limit)))
		default:
			c.MaxFutureMs = ms
		}
	}
	if s := r.enum(cv["on_future"], "on_future", futureOptions...); s != "" {
		c.OnFuture = s
	}
}

func (r *reader) identity(n *yaml.Node, into *IdentityPolicy) {
	if n == nil {
		return
	}
	iv, _, ok := r.object(n, &IdentitySpec)
	if !ok {
		return
	}
	if iv["order"] != nil {
		into.Order = r.strList(iv["order"], "identity order")
	}
	if s := r.enum(iv["when_none"], "when_none", "reject", "send"); s != "" {
		into.WhenNone = s
	}
	if s := r.enum(iv["send"], "send", "all", "highest"); s != "" {
		into.Send = s
	}
}

// settings reads setting declarations. With base set, a declaration may instead refine a
// setting of the base (default, required, description) without repeating its type.
func (r *reader) settings(n *yaml.Node, base []*SettingDecl) []*SettingDecl {
	out := make([]*SettingDecl, 0, len(base))
	index := map[string]*SettingDecl{}
	for _, b := range base {
		c := *b
		out = append(out, &c)
		index[c.Name] = &c
	}
	for _, e := range r.pairs(n, "settings") {
		sv, _, ok := r.object(e.Value, &SettingSpec)
		if !ok {
			continue
		}
		d := index[e.Key]
		if d == nil {
			d = &SettingDecl{Name: e.Key, Type: "string"}
			out = append(out, d)
			index[e.Key] = d
		}
		d.node = e.KeyN
		if sv["type"] != nil {
			d.Type = r.enum(sv["type"], "setting type", "string", "int", "bool")
		}
		if sv["required"] != nil {
			d.Required = r.boolean(sv["required"], "required")
		}
		if sv["description"] != nil {
			d.Description = r.str(sv["description"], "description")
		}
		if sv["enum"] != nil {
			d.Enum = r.strList(sv["enum"], "enum")
		}
		if sv["default"] != nil {
			v, ok := r.scalarValue(sv["default"], "default")
			if ok {
				if _, err := checkSetting(d, v.QueryText()); err != nil {
					r.errAt(sv["default"], CodeBadSetting, fmt.Sprintf("default of setting %q: %v", e.Key, err), "")
				}
				d.Default = &v
			}
		}
	}
	return out
}

// checkSetting validates a setting's text against its declaration and returns it as a Value.
func checkSetting(d *SettingDecl, text string) (Value, error) {
	switch d.Type {
	case "int":
		if !isJSONNumber(text) || strings.ContainsAny(text, ".eE") {
			return Value{}, fmt.Errorf("%q is not an integer", text)
		}
		return Value{Kind: Number, Text: text}, nil
	case "bool":
		switch text {
		case "true", "false":
			return Value{Kind: Bool, Text: text}, nil
		}
		return Value{}, fmt.Errorf("%q is not true or false", text)
	}
	if len(d.Enum) > 0 {
		for _, e := range d.Enum {
			if e == text {
				return Value{Kind: String, Text: text}, nil
			}
		}
		return Value{}, fmt.Errorf("%q is not one of %s", text, strings.Join(d.Enum, ", "))
	}
	return Value{Kind: String, Text: text}, nil
}
