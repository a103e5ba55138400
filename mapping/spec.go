package mapping

// The schema of every YAML document the engine reads, declared once. The loader checks keys
// against it (unknown keys get a did-you-mean), and `woorelay docs` renders it, so the
// documentation cannot drift from what the parser accepts.

// KeySpec documents one key of a YAML object.
type KeySpec struct {
	Name     string // the key as written in YAML
	Type     string // what the value is, in words: "string", "list of paths", "map of field", ...
	Required bool   // whether the key must be present
	Doc      string // one or two sentences for the reference documentation
}

// ObjectSpec documents one kind of YAML object.
type ObjectSpec struct {
	Name string    // the object's name in documentation ("field", "spread", ...)
	Doc  string    // what the object is for
	Keys []KeySpec // the keys it accepts, in documentation order
}

func (o *ObjectSpec) names() []string {
	out := make([]string, len(o.Keys))
	for i, k := range o.Keys {
		out[i] = k.Name
	}
	return out
}

func (o *ObjectSpec) key(name string) *KeySpec {
	for i := range o.Keys {
		if o.Keys[i].Name == name {
			return &o.Keys[i]
		}
	}
	return nil
}

// Sources are the keys of a field of which exactly one must be given.
var Sources = []string{"path", "first", "value", "template", "expr", "setting"}

// FieldSpec is the schema of one output field (a query parameter or a header).
var FieldSpec = ObjectSpec{
	Name: "field",
	Doc: "One output parameter or header. Exactly one source (path, first, value, template, expr, setting); " +
		"then, in this order: presence rule, default, lookup table, transform expression, type conversion. " +
		"A plain string instead of an object is short for {path: <string>}.",
	Keys: []KeySpec{
		{Name: "description", Type: "string", Doc: "What the field carries; shown by lint and explain."},
		{Name: "path", Type: "path", Doc: "Read one gjson path from the event (`context.traits.email`, `properties.fav\\.movie`, `context.externalIds.#(type==\"woopra\").id`)."},
		{Name: "first", Type: "list of paths", Doc: "A precedence list: the first path whose value is present (see `present`) wins."},
		{Name: "value", Type: "scalar", Doc: "A constant."},
		{Name: "template", Type: "string", Doc: "A string with `{{ path }}` placeholders; a missing placeholder renders as an empty string."},
		{Name: "expr", Type: "expression", Doc: "An expr-lang expression over the event (`properties.price * properties.quantity`); nil means missing."},
		{Name: "setting", Type: "setting name", Doc: "The value of a setting of the blueprint or preset; missing when the setting is unset."},
		{Name: "present", Type: "defined | non_null | non_empty | truthy", Doc: "Which values count as present: `defined` (only missing is absent; null sends an empty string), `non_null` (default: missing and null are absent), `non_empty` (also \"\", {} and []), `truthy` (JavaScript's `if (value)`: missing, null, \"\", 0 and false are absent; {} and [] are present). 0 and false are present under every rule but truthy."},
		{Name: "default", Type: "scalar", Doc: "Used when the source is absent."},
		{Name: "lookup", Type: "table name", Doc: "Translate the value through a table of the preset (event renames); the table's `otherwise` decides misses."},
		{Name: "transform", Type: "expression", Doc: "An expression applied to the present value, bound as `value` (`lower(trim(value))`)."},
		{Name: "as", Type: "string | int | float | bool | json | epoch_ms", Doc: "Convert the value. `epoch_ms` accepts ISO-8601 with or without a zone (UTC) and epoch seconds or milliseconds."},
		{Name: "required", Type: "bool", Doc: "Reject the event (code missing_required) when the field ends up absent."},
		{Name: "on_error", Type: "reject | drop", Doc: "What a failed conversion or transform does: reject the event (default, code bad_value) or drop the field."},
		{Name: "omit", Type: "bool", Doc: "Remove a field inherited from `common` in this mapping."},
	},
}

// SpreadSpec is the schema of a spread rule.
var SpreadSpec = ObjectSpec{
	Name: "spread",
	Doc:  "Copy every key of an object (properties, traits, ...) to a parameter under a prefix, after the explicit fields.",
	Keys: []KeySpec{
		{Name: "description", Type: "string", Doc: "What the spread is for."},
		{Name: "from", Type: "path", Doc: "The object to copy."},
		{Name: "first", Type: "list of paths", Doc: "A precedence list of objects; the first object present under `present` is copied ({} counts unless present: non_empty)."},
		{Name: "prefix", Type: "ce_ | cv_ | cs_", Required: true, Doc: "Prefix of every produced parameter; must be one of the blueprint's custom prefixes."},
		{Name: "exclude", Type: "list of keys", Doc: "Keys not copied. `*` matches any run of characters (`_*`, `*password*`)."},
		{Name: "nested", Type: "json | flatten | skip", Doc: "What to do with object values: send compact JSON (default), flatten into prefix+a_b keys, or skip them. Arrays are always sent as JSON."},
		{Name: "separator", Type: "string", Doc: "Separator for flattened keys (default `_`)."},
		{Name: "max_depth", Type: "int", Doc: "Deepest level flattened; deeper objects are sent as JSON (default 3)."},
		{Name: "conflict", Type: "explicit_wins | explicit_when_present | spread_wins | reject", Doc: "What happens when a produced key equals an explicit field of the mapping: the explicit field owns the name (default: the spread key is dropped even when the field is absent), the explicit field wins only when it has a value, the spread value replaces it, or the event is rejected."},
		{Name: "present", Type: "defined | non_null | non_empty | truthy", Doc: "Which values are copied (default non_null: null values are skipped), as a field's `present`. In `first`, objects are always truthy."},
		{Name: "keys", Type: "literal | path", Doc: "How a key names its parameter: `literal` (default) sends prefix+key as it is; `path` reads prefix+key as a lodash path, as RudderStack's `set` does: `.` and `[n]` nest (`{\"dot.key\":\"v\"}` → cv_dot={\"key\":\"v\"}, `{\"br[0]\":\"w\"}` → cv_br=[\"w\"]), keys sharing a head merge into one parameter sent as JSON, a later key replaces an earlier one, and a nested value is written as it is (null included). Indexes above 1000 are object keys. Not with nested: flatten."},
		{Name: "transform", Type: "expression", Doc: "An expression applied to every copied value, bound as `value` (Segment's ISO dates to epoch ms); nil drops the key."},
		{Name: "as", Type: "string | int | float | bool | json | epoch_ms", Doc: "Convert every copied value, after `transform`, as a field's `as`."},
		{Name: "on_error", Type: "reject | drop | keep", Doc: "What a failed transform or conversion does: reject the event (default; code expression_error for a transform, bad_value for a conversion), drop the key, or keep the value unconverted."},
	},
}

// MappingSpec is the schema of one mapping: the rule that turns a matching event into a request.
var MappingSpec = ObjectSpec{
	Name: "mapping",
	Doc:  "Turns events for which `when` holds into one request to an endpoint. Mappings are tried in order; the first whose `when` is true applies.",
	Keys: []KeySpec{
		{Name: "name", Type: "string", Required: true, Doc: "Unique name; traces and overlays refer to it."},
		{Name: "description", Type: "string", Doc: "What the mapping is for."},
		{Name: "when", Type: "expression", Doc: "A boolean expr-lang expression over the event (`type == \"track\"`). Absent means always."},
		{Name: "endpoint", Type: "endpoint name", Doc: "The blueprint endpoint the request goes to (`ce`, `identify`)."},
		{Name: "fields", Type: "map of field", Doc: "Query parameters, in the order they are sent."},
		{Name: "headers", Type: "map of field", Doc: "HTTP headers (User-Agent, Accept-Language, ...)."},
		{Name: "spread", Type: "list of spread", Doc: "Spread rules, applied after `fields`."},
		{Name: "inherit", Type: "bool", Doc: "Whether the preset's `common` fields, headers and spreads apply (default true)."},
		{Name: "skip", Type: "string", Doc: "Skip matching events with this reason instead of sending them (filtering)."},
		{Name: "reject", Type: "reject", Doc: "Reject matching events with `{code, message}` instead of sending them."},
	},
}

// RejectSpec is the schema of a mapping's reject: block.
var RejectSpec = ObjectSpec{
	Name: "reject",
	Doc:  "A rejection with a code and a message.",
	Keys: []KeySpec{
		{Name: "code", Type: "string", Required: true, Doc: "Stable code reported with the rejection."},
		{Name: "message", Type: "string", Required: true, Doc: "Message reported with the rejection; `{{ path }}` placeholders are filled from the event."},
	},
}

// TableSpec is the schema of a lookup table.
var TableSpec = ObjectSpec{
	Name: "table",
	Doc:  "A lookup table (event renames and the like).",
	Keys: []KeySpec{
		{Name: "description", Type: "string", Doc: "What the table translates."},
		{Name: "match", Type: "exact | case_insensitive", Doc: "How keys are compared (default exact)."},
		{Name: "otherwise", Type: "keep | drop | skip | value", Doc: "A value not in the table is kept (default), dropped from the request, makes the event skipped, or replaced by `otherwise_value`."},
		{Name: "otherwise_value", Type: "string", Doc: "The replacement when `otherwise: value`."},
		{Name: "rows", Type: "map of string", Required: true, Doc: "Input value → output value."},
	},
}

// SettingSpec is the schema of a setting declaration.
var SettingSpec = ObjectSpec{
	Name: "setting",
	Doc:  "A setting the user gives with --set KEY=VALUE (or in configuration).",
	Keys: []KeySpec{
		{Name: "type", Type: "string | int | bool", Doc: "The type the value must parse as (default string)."},
		{Name: "required", Type: "bool", Doc: "Whether the setting must be set."},
		{Name: "default", Type: "scalar", Doc: "Value used when the setting is not given."},
		{Name: "enum", Type: "list of strings", Doc: "The only values allowed."},
		{Name: "description", Type: "string", Doc: "What the setting does."},
	},
}

// CommonSpec is the schema of a preset's common block.
var CommonSpec = ObjectSpec{
	Name: "common",
	Doc:  "Fields, headers and spreads shared by every mapping of the preset (a mapping's own entries take precedence).",
	Keys: []KeySpec{
		{Name: "fields", Type: "map of field", Doc: "Parameters sent by every mapping, first."},
		{Name: "headers", Type: "map of field", Doc: "Headers sent by every mapping."},
		{Name: "spread", Type: "list of spread", Doc: "Spreads applied after each mapping's own."},
	},
}

// IdentitySpec is the schema of the identity policy.
var IdentitySpec = ObjectSpec{
	Name: "identity",
	Doc:  "Which parameters identify the visitor, in precedence order, and what happens when none is present.",
	Keys: []KeySpec{
		{Name: "order", Type: "list of parameters", Doc: "Identifiers, highest first (Woopra: cv_id > cv_email > cookie)."},
		{Name: "when_none", Type: "reject | send", Doc: "With no identifier: reject the event (code no_identity, default) or send it and let Woopra invent a cookie."},
		{Name: "send", Type: "all | highest", Doc: "Send every identifier present (default) or only the highest one."},
	},
}

// ContractSpec is the schema of the blueprint's output contract.
var ContractSpec = ObjectSpec{
	Name: "contract",
	Doc:  "Rules every request must satisfy, checked at load (names) and at run time (values).",
	Keys: []KeySpec{
		{Name: "custom_prefixes", Type: "list of strings", Required: true, Doc: "Prefixes that custom parameters must carry."},
		{Name: "timestamp_param", Type: "string", Doc: "The parameter holding the event time in epoch ms."},
		{Name: "max_future_ms", Type: "int", Doc: "How far ahead of now a timestamp may be (clock skew)."},
		{Name: "on_future", Type: "reject | clamp | drop", Doc: "A later timestamp rejects the event (code timestamp_in_future), is clamped to now, or is dropped."},
		{Name: "max_future_limit_ms", Type: "int", Doc: "The most a preset's `contract.max_future_ms` may allow; without it a preset cannot raise max_future_ms."},
	},
}

// PresetContractSpec is the schema of a preset's contract: block, what a preset may change of
// its blueprint's output contract.
var PresetContractSpec = ObjectSpec{
	Name: "preset contract",
	Doc:  "Changes to the blueprint's future-timestamp rule, for presets of systems that pass future timestamps through. The blueprint bounds them: max_future_ms may not exceed its `max_future_limit_ms` (Woopra: 366 days).",
	Keys: []KeySpec{
		{Name: "max_future_ms", Type: "int", Doc: "How far ahead of now a timestamp may be, from 0 up to the blueprint's max_future_limit_ms."},
		{Name: "on_future", Type: "reject | clamp | drop", Doc: "What a later timestamp does, as the blueprint's on_future."},
	},
}

// EndpointSpec is the schema of a blueprint endpoint.
var EndpointSpec = ObjectSpec{
	Name: "endpoint",
	Doc:  "One HTTP endpoint of the destination.",
	Keys: []KeySpec{
		{Name: "method", Type: "GET | POST", Required: true, Doc: "HTTP method."},
		{Name: "path", Type: "string", Required: true, Doc: "Path appended to the base URL."},
		{Name: "event", Type: "required | forbidden | optional", Doc: "Whether requests to it carry the event parameter."},
		{Name: "description", Type: "string", Doc: "What the endpoint is for."},
	},
}

// BlueprintSpec is the schema of a destination blueprint.
var BlueprintSpec = ObjectSpec{
	Name: "blueprint",
	Doc:  "What a destination accepts: endpoints, settings, built-in parameters, identity and the output contract.",
	Keys: []KeySpec{
		{Name: "kind", Type: "blueprint", Required: true, Doc: "Always `blueprint`."},
		{Name: "name", Type: "string", Required: true, Doc: "The destination's name."},
		{Name: "description", Type: "string", Doc: "What the destination is."},
		{Name: "base_url_setting", Type: "setting name", Required: true, Doc: "The setting holding the base URL endpoints' paths are appended to."},
		{Name: "event_param", Type: "string", Doc: "The parameter naming the event (checked against endpoints' `event` rule)."},
		{Name: "settings", Type: "map of setting", Doc: "Settings every preset of this destination takes."},
		{Name: "endpoints", Type: "map of endpoint", Required: true, Doc: "The endpoints mappings may send to."},
		{Name: "params", Type: "map of string", Doc: "Built-in parameters sent without a prefix, with their meaning."},
		{Name: "identity", Type: "identity", Doc: "The identity policy."},
		{Name: "contract", Type: "contract", Required: true, Doc: "The output contract."},
	},
}

// PresetSpec is the schema of a preset.
var PresetSpec = ObjectSpec{
	Name: "preset",
	Doc:  "A complete configuration of a destination: settings, tables, common fields and mappings.",
	Keys: []KeySpec{
		{Name: "kind", Type: "preset", Required: true, Doc: "Always `preset`."},
		{Name: "name", Type: "string", Required: true, Doc: "The preset's name."},
		{Name: "description", Type: "string", Doc: "What the preset reproduces or recommends."},
		{Name: "blueprint", Type: "string", Required: true, Doc: "The blueprint it configures (`woopra`)."},
		{Name: "settings", Type: "map of setting", Doc: "New settings, or new defaults and descriptions for the blueprint's."},
		{Name: "params", Type: "map of string", Doc: "Extra built-in parameter names this preset sends unprefixed, with their meaning."},
		{Name: "identity", Type: "identity", Doc: "Overrides of the blueprint's identity policy."},
		{Name: "tables", Type: "map of table", Doc: "Lookup tables fields refer to with `lookup`."},
		{Name: "filter", Type: "filter", Doc: "An allow or deny list of event names; filtered events are skipped."},
		{Name: "common", Type: "common", Doc: "Fields, headers and spreads shared by every mapping."},
		{Name: "contract", Type: "preset contract", Doc: "Relax (or tighten) the blueprint's future-timestamp rule, within the blueprint's bound."},
		{Name: "mappings", Type: "list of mapping", Required: true, Doc: "The mappings, tried in order."},
	},
}

// FilterSpec is the schema of a preset's event filter.
var FilterSpec = ObjectSpec{
	Name: "filter",
	Doc:  "RudderStack-style event filtering: only events whose name is allowed are sent, or every event but the denied ones. It applies to events that carry an event name (track calls); use a mapping with `when:` and `skip:` for any other condition.",
	Keys: []KeySpec{
		{Name: "allow", Type: "list of event names", Doc: "Send only these events (exact names); others are skipped."},
		{Name: "deny", Type: "list of event names", Doc: "Skip these events."},
	},
}

// OverlaySpec is the schema of a mapping file added with --mappings.
var OverlaySpec = ObjectSpec{
	Name: "mappings file",
	Doc:  "A file of mappings laid over a preset (`--mappings DIR` loads every *.yaml in DIR, in name order). A mapping with a new name is tried before the preset's own; one with an existing name overrides it key by key (fields and headers merge by name).",
	Keys: []KeySpec{
		{Name: "kind", Type: "mappings", Required: true, Doc: "Always `mappings`."},
		{Name: "description", Type: "string", Doc: "What the file adds."},
		{Name: "settings", Type: "map of setting", Doc: "New settings the added mappings read."},
		{Name: "tables", Type: "map of table", Doc: "Tables added, or replacing the preset's of the same name."},
		{Name: "filter", Type: "filter", Doc: "Replaces the preset's event filter."},
		{Name: "mappings", Type: "list of mapping", Doc: "Mappings to add or override."},
	},
}

// AllSpecs lists every object schema, in documentation order.
var AllSpecs = []*ObjectSpec{&PresetSpec, &OverlaySpec, &FilterSpec, &MappingSpec, &FieldSpec, &SpreadSpec, &TableSpec, &SettingSpec, &CommonSpec, &RejectSpec, &IdentitySpec, &PresetContractSpec, &BlueprintSpec, &EndpointSpec, &ContractSpec}
