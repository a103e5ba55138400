package server

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/presets"
	"github.com/woorelay/woorelay/privacy"
)

// Config is the server's source configuration, as read from a YAML file by LoadConfig or made
// by DevConfig. Compile turns it into the Sources that New takes.
//
// The file format:
//
//	public_url: https://ingest.example.com   # optional: what the settings endpoint tells browser SDKs
//	allowed_origins: [https://www.example.com] # optional: CORS allow list of every source; default any origin
//	trusted_proxies: [127.0.0.1, 10.0.0.0/8]  # optional: proxies whose X-Forwarded-For / Forwarded is believed; default none
//	queue: {urls: [nats://127.0.0.1:4222]}    # optional: the queue on NATS JetStream (QueueConfig); default the disk queue
//	sources:
//	  - name: website                        # required, unique: names the source in metrics and the queue
//	    write_key: 2bQZ4kE7xN                # or write_key_env: WEBSITE_WRITE_KEY (read from the environment)
//	    preset: default                      # a built-in preset or a preset file (relative to this file)
//	    settings: {project: example.com}     # the preset's settings
//	    mappings: [mappings/website]         # optional folders of mapping files (relative to this file)
//	    allowed_origins: [https://www.example.com]  # optional: origins browsers may send this source's key from
//	    order: none                          # optional: visitor (default) keeps each visitor's events in order; none sends them side by side
//	    woopra_auth_env: WOOPRA_AUTH         # optional: a variable holding user:password, sent as HTTP Basic on tracking requests (secure tracking)
//	    privacy: {ip: truncate, drop: [context.traits.phone]}  # optional: what the edge removes (or hashes: hash: [paths]) before storing the event
type Config struct {
	// File is the path the configuration was read from ("" for DevConfig).
	File string
	// PublicURL is the server's public base URL (scheme and host, optionally a path); empty
	// means derive it from each request.
	PublicURL string
	// AllowedOrigins is the CORS allow list shared by every source; empty allows any origin.
	AllowedOrigins []string
	// TrustedProxies are the addresses (CIDRs; a bare address is one host) of the reverse
	// proxies whose forwarding headers name the client; empty trusts none.
	TrustedProxies []netip.Prefix
	// Queue, when the file has a queue: section, puts the relay's queue on NATS JetStream.
	Queue *QueueConfig
	// Sources are the configured sources, in file order.
	Sources []SourceConfig
}

// SourceConfig is one configured source.
type SourceConfig struct {
	// Name identifies the source in metrics, logs and queued entries.
	Name string
	// WriteKey is the key SDKs authenticate with (read from WriteKeyEnv when that is set).
	WriteKey string
	// WriteKeyEnv names the environment variable the key was read from, if any.
	WriteKeyEnv string
	// AnyKey accepts every write key (the development source).
	AnyKey bool
	// Preset is a built-in preset name or a preset file path (resolved against the config's folder).
	Preset string
	// Settings are the preset's settings.
	Settings map[string]string
	// Mappings are folders of mapping files laid over the preset (resolved against the config's folder).
	Mappings []string
	// AllowedOrigins restricts which browser origins may send this source's events; empty
	// leaves it to the server-wide list.
	AllowedOrigins []string
	// Unordered (order: none) lets delivery send one visitor's events side by side instead of
	// one after the other.
	Unordered bool
	// WoopraAuthEnv names the environment variable holding "user:password" for HTTP Basic
	// authentication of the tracking requests (Woopra's secure tracking); WoopraAuth is its
	// value, read at load, never written in the file.
	WoopraAuthEnv, WoopraAuth string
	// Privacy is the source's minimisation (privacy: ip, drop, hash), applied at the edge
	// before anything stores the event; nil changes nothing.
	Privacy *privacy.Minimiser

	overlays []mapping.Source
	where    string // "file:line:col" of the source, for diagnostics
}

// DevConfig returns the development configuration: one source named "dev" that accepts any
// write key and maps events with the default preset. It has no settings, so the caller must
// supply at least the Woopra project through Compile's adjust function.
func DevConfig() *Config {
	return &Config{Sources: []SourceConfig{{Name: "dev", AnyKey: true, Preset: "default", Settings: map[string]string{}, where: "development source"}}}
}

// LoadConfig reads a YAML configuration file. Every problem is reported as
// "file:line:col: code: message (hint: ...)", all of them, not only the first. It resolves
// preset files and mapping folders against the file's folder, reads write_key_env variables,
// and compiles every source once (tolerating unset required settings, which the serve command
// may still fill) so mapping errors surface at load.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the configuration: %w", err)
	}
	l := &loader{file: path, dir: filepath.Dir(path)}
	cfg := l.parse(data)
	if len(l.diags) > 0 {
		l.diags.Sort()
		return nil, l.diags
	}
	return cfg, nil
}

type loader struct {
	file  string
	dir   string
	diags mapping.Diagnostics
}

func (l *loader) errAt(n *yaml.Node, code, hint, format string, args ...any) {
	d := mapping.Diagnostic{File: l.file, Code: code, Msg: fmt.Sprintf(format, args...), Hint: hint}
	if n != nil {
		d.Line, d.Col = n.Line, n.Column
	}
	l.diags = append(l.diags, d)
}

var (
	topKeys    = []string{"public_url", "allowed_origins", "trusted_proxies", "queue", "sources"}
	sourceKeys = []string{"name", "write_key", "write_key_env", "preset", "settings", "mappings", "allowed_origins", "order", "woopra_auth_env", "privacy"}
)

func (l *loader) parse(data []byte) *Config {
	cfg := &Config{File: l.file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		d := mapping.Diagnostic{File: l.file, Code: mapping.CodeYAML, Msg: err.Error(), Hint: "fix the YAML syntax"}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			if line := yamlErrLine(err.Error()); line > 0 {
				d.Line, d.Col = line, 1
			}
		}
		l.diags = append(l.diags, d)
		return nil
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		l.errAt(first(doc.Content), mapping.CodeWrongType, "start the file with a sources: list", "the configuration must be a mapping with a sources: list")
		return nil
	}
	top := doc.Content[0]
	var sourcesNode *yaml.Node
	l.members(top, topKeys, func(k, v *yaml.Node) {
		switch k.Value {
		case "public_url":
			cfg.PublicURL = l.str(v)
			if cfg.PublicURL != "" && !strings.HasPrefix(cfg.PublicURL, "http://") && !strings.HasPrefix(cfg.PublicURL, "https://") {
				l.errAt(v, mapping.CodeBadValue, "write it as https://host[/path]", "public_url %q has no http:// or https:// scheme", cfg.PublicURL)
			}
		case "allowed_origins":
			cfg.AllowedOrigins = l.origins(v)
		case "trusted_proxies":
			cfg.TrustedProxies = l.prefixes(v)
		case "queue":
			cfg.Queue = l.queue(v)
		case "sources":
			sourcesNode = v
		}
	})
	if sourcesNode == nil {
		l.errAt(top, mapping.CodeMissingKey, "list at least one source with a name, a write_key and a preset", "the configuration has no sources:")
		return cfg
	}
	if sourcesNode.Kind != yaml.SequenceNode {
		l.errAt(sourcesNode, mapping.CodeWrongType, "write sources: as a list of `- name: ...` items", "sources must be a list")
		return cfg
	}
	if len(sourcesNode.Content) == 0 {
		l.errAt(sourcesNode, mapping.CodeMissingKey, "list at least one source with a name, a write_key and a preset", "sources is empty")
	}
	names := map[string]*yaml.Node{}
	keys := map[string]*yaml.Node{}
	for _, sn := range sourcesNode.Content {
		sc, keyNode, ok := l.source(sn)
		if !ok {
			continue
		}
		if prev, dup := names[sc.Name]; dup {
			l.errAt(sn, mapping.CodeDuplicate, "give every source its own name", "source name %q is already used at line %d", sc.Name, prev.Line)
		} else {
			names[sc.Name] = sn
		}
		if sc.WriteKey != "" {
			if prev, dup := keys[sc.WriteKey]; dup {
				l.errAt(keyNode, mapping.CodeDuplicate, "every source needs its own write key, or the server cannot tell them apart", "source %q uses the same write key as the source at line %d", sc.Name, prev.Line)
			} else {
				keys[sc.WriteKey] = sn
			}
		}
		cfg.Sources = append(cfg.Sources, sc)
	}
	return cfg
}

func yamlErrLine(msg string) int {
	var line int
	if _, err := fmt.Sscanf(msg, "yaml: line %d:", &line); err == nil {
		return line
	}
	return 0
}

func first(ns []*yaml.Node) *yaml.Node {
	if len(ns) > 0 {
		return ns[0]
	}
	return nil
}

// members calls fn for each key of a mapping node, reporting unknown and duplicate keys.
func (l *loader) members(n *yaml.Node, known []string, fn func(k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(known, k.Value) {
			hint := "known keys: " + strings.Join(known, ", ")
			if s := closest(k.Value, known); s != "" {
				hint = fmt.Sprintf("did you mean %q?", s)
			}
			l.errAt(k, mapping.CodeUnknownKey, hint, "unknown key %q", k.Value)
			continue
		}
		if seen[k.Value] {
			l.errAt(k, mapping.CodeDuplicate, "keep one of them", "key %q is given twice", k.Value)
			continue
		}
		seen[k.Value] = true
		fn(k, v)
	}
}

// closest returns the known key within edit distance 2 of s, if any.
func closest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := mapping.EditDistance(s, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func (l *loader) str(v *yaml.Node) string {
	if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
		l.errAt(v, mapping.CodeWrongType, "write a plain value", "want a single value here")
		return ""
	}
	return v.Value
}

func (l *loader) strList(v *yaml.Node, what string) []string {
	if v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
		return []string{v.Value}
	}
	if v.Kind != yaml.SequenceNode {
		l.errAt(v, mapping.CodeWrongType, "write a list like [a, b]", "%s must be a list", what)
		return nil
	}
	var out []string
	for _, e := range v.Content {
		if s := l.str(e); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (l *loader) origins(v *yaml.Node) []string {
	list := l.strList(v, "allowed_origins")
	for i, o := range list {
		if o == "*" {
			continue
		}
		if !strings.HasPrefix(o, "http://") && !strings.HasPrefix(o, "https://") || strings.Count(o, "/") > 2 {
			n := v
			if v.Kind == yaml.SequenceNode && i < len(v.Content) {
				n = v.Content[i]
			}
			l.errAt(n, mapping.CodeBadValue, "write an origin as the browser sends it: https://www.example.com (no path, no trailing slash)", "allowed origin %q is not scheme://host[:port]", o)
		}
	}
	return list
}

// prefixes reads trusted_proxies: CIDRs, or bare addresses meaning one host.
func (l *loader) prefixes(v *yaml.Node) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range l.strList(v, "trusted_proxies") {
		n := v
		if v.Kind == yaml.SequenceNode && i < len(v.Content) {
			n = v.Content[i]
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				l.errAt(n, mapping.CodeBadValue, "write an address like 127.0.0.1 or ::1, or a CIDR like 10.0.0.0/8 (no host names)", "trusted proxy %q is not an IP address or CIDR", s)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		out = append(out, p.Masked())
	}
	return out
}

// source reads one item of sources:.
func (l *loader) source(n *yaml.Node) (SourceConfig, *yaml.Node, bool) {
	sc := SourceConfig{Settings: map[string]string{}, where: fmt.Sprintf("%s:%d:%d", l.file, n.Line, n.Column)}
	if n.Kind != yaml.MappingNode {
		l.errAt(n, mapping.CodeWrongType, "write each source as `- name: ...` with write_key and preset", "a source must be a mapping")
		return sc, nil, false
	}
	before := len(l.diags)
	var keyNode, presetNode, nameNode *yaml.Node
	l.members(n, sourceKeys, func(k, v *yaml.Node) {
		switch k.Value {
		case "name":
			sc.Name, nameNode = l.str(v), v
		case "write_key":
			sc.WriteKey, keyNode = l.str(v), v
		case "write_key_env":
			sc.WriteKeyEnv = l.str(v)
			if keyNode == nil {
				keyNode = v
			}
		case "preset":
			sc.Preset, presetNode = l.str(v), v
		case "order":
			switch l.str(v) {
			case "visitor":
			case "none":
				sc.Unordered = true
			default:
				l.errAt(v, mapping.CodeBadValue, "write order: visitor (the default: each visitor's events in order) or order: none (side by side)", "order %q is not visitor or none", v.Value)
			}
		case "woopra_auth_env":
			sc.WoopraAuthEnv = l.str(v)
			sc.WoopraAuth = os.Getenv(sc.WoopraAuthEnv)
			if u, _, ok := strings.Cut(sc.WoopraAuth, ":"); !ok || u == "" {
				l.errAt(v, mapping.CodeMissingKey, "export "+sc.WoopraAuthEnv+"=<user>:<password> before starting", "environment variable %s (woopra_auth_env of source %q) is unset or not user:password", sc.WoopraAuthEnv, sc.Name)
			}
		case "settings":
			if v.Kind != yaml.MappingNode {
				l.errAt(v, mapping.CodeWrongType, "write settings as a mapping like {project: example.com}", "settings must be a mapping")
				return
			}
			for i := 0; i+1 < len(v.Content); i += 2 {
				sk, sv := v.Content[i], v.Content[i+1]
				if sv.Kind != yaml.ScalarNode {
					l.errAt(sv, mapping.CodeWrongType, "settings take single values", "setting %q must be a single value", sk.Value)
					continue
				}
				sc.Settings[sk.Value] = sv.Value
			}
		case "mappings":
			for i, dir := range l.strList(v, "mappings") {
				n := v
				if v.Kind == yaml.SequenceNode {
					n = v.Content[i]
				}
				full := l.resolve(dir)
				st, err := os.Stat(full)
				if err != nil || !st.IsDir() {
					l.errAt(n, "bad_mappings_folder", "give a folder of *.yaml mapping files, relative to the configuration file", "mapping folder %q (%s) does not exist or is not a folder", dir, full)
					continue
				}
				ov, err := mapping.LoadDir(full)
				if err != nil {
					l.errAt(n, "bad_mappings_folder", "make the folder and its *.yaml files readable", "%v", err)
					continue
				}
				sc.Mappings = append(sc.Mappings, full)
				sc.overlays = append(sc.overlays, ov...)
			}
		case "allowed_origins":
			sc.AllowedOrigins = l.origins(v)
		case "privacy":
			sc.Privacy = l.privacy(v, sc.Name)
		}
	})
	if nameNode == nil {
		l.errAt(n, mapping.CodeMissingKey, "add name: (it labels the source in metrics and the queue)", "the source has no name")
	} else if sc.Name == "" {
		l.errAt(nameNode, mapping.CodeBadValue, "give the source a non-empty name", "the source name is empty")
	}
	switch {
	case sc.WriteKey != "" && sc.WriteKeyEnv != "":
		l.errAt(keyNode, mapping.CodeMultipleSources, "keep write_key_env (it keeps the secret out of the file) or write_key, not both", "source %q has both write_key and write_key_env", sc.Name)
	case sc.WriteKeyEnv != "":
		sc.WriteKey = os.Getenv(sc.WriteKeyEnv)
		if sc.WriteKey == "" {
			l.errAt(keyNode, mapping.CodeMissingKey, "export "+sc.WriteKeyEnv+"=<the write key> before starting", "environment variable %s (write_key_env of source %q) is unset or empty", sc.WriteKeyEnv, sc.Name)
		}
	case keyNode == nil:
		l.errAt(n, mapping.CodeMissingKey, "add write_key: <key> or write_key_env: VARIABLE", "source %q has no write_key", sc.Name)
	case sc.WriteKey == "":
		l.errAt(keyNode, mapping.CodeBadValue, "give the write key the SDKs are configured with", "source %q has an empty write_key", sc.Name)
	}
	if presetNode == nil {
		l.errAt(n, mapping.CodeMissingKey, "add preset: default (or another of "+strings.Join(presets.Names(), ", ")+", or a preset file)", "source %q has no preset", sc.Name)
	} else if sc.Preset != "" {
		if isPresetFile(sc.Preset) {
			sc.Preset = l.resolve(sc.Preset)
		}
		if _, err := presets.Source(sc.Preset); err != nil {
			var d mapping.Diagnostic
			msg, hint := err.Error(), ""
			if errors.As(err, &d) {
				msg, hint = d.Msg, d.Hint
			}
			l.errAt(presetNode, mapping.CodeUnknownPreset, hint, "%s", msg)
		}
	}
	if len(l.diags) > before {
		return sc, keyNode, false
	}
	// Compile once, so mistakes in the preset, the mapping folders or the settings surface now.
	if _, err := sc.compile(sc.Settings, true); err != nil {
		l.diags = append(l.diags, asDiagnostics(err)...)
		return sc, keyNode, false
	}
	return sc, keyNode, true
}

func isPresetFile(p string) bool {
	return strings.ContainsRune(p, '/') || strings.ContainsRune(p, filepath.Separator) || strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")
}

func (l *loader) resolve(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(l.dir, p)
}

func asDiagnostics(err error) mapping.Diagnostics {
	var ds mapping.Diagnostics
	var d mapping.Diagnostic
	switch {
	case errors.As(err, &ds):
		return ds
	case errors.As(err, &d):
		return mapping.Diagnostics{d}
	}
	return mapping.Diagnostics{{Code: "compile", Msg: err.Error()}}
}

func (sc *SourceConfig) compile(settings map[string]string, allowUnset bool) (*mapping.Program, error) {
	return presets.Compile(sc.Preset, mapping.Options{
		Settings:           settings,
		SettingsFile:       sc.where + " (settings of source " + sc.Name + ")",
		Overlays:           sc.overlays,
		AllowUnsetRequired: allowUnset,
	})
}

// Compile builds the Sources New takes. adjust, when not nil, is called with each source's
// name and a copy of its settings before the preset is compiled, so the caller can change
// them (point base_url at an emulator, fill a sandbox project); changes do not touch c.
// Errors name the source and say which setting is wrong.
func (c *Config) Compile(adjust func(name string, settings map[string]string)) ([]*Source, error) {
	var out []*Source
	var errs mapping.Diagnostics
	for i := range c.Sources {
		sc := &c.Sources[i]
		settings := make(map[string]string, len(sc.Settings))
		for k, v := range sc.Settings {
			settings[k] = v
		}
		if adjust != nil {
			adjust(sc.Name, settings)
		}
		prog, err := sc.compile(settings, false)
		if err != nil {
			errs = append(errs, asDiagnostics(err)...)
			continue
		}
		origins := append([]string(nil), sc.AllowedOrigins...)
		out = append(out, &Source{Name: sc.Name, WriteKey: sc.WriteKey, AnyKey: sc.AnyKey, Program: prog, AllowedOrigins: origins,
			Unordered: sc.Unordered, WoopraAuth: sc.WoopraAuth, Minimiser: sc.Privacy})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// Options returns server options for these sources and store with the configuration's
// public URL, allowed origins and trusted proxies filled in; the caller sets the rest.
func (c *Config) Options(sources []*Source, store Store) Options {
	return Options{Sources: sources, Store: store, PublicURL: c.PublicURL, AllowedOrigins: append([]string(nil), c.AllowedOrigins...),
		TrustedProxies: append([]netip.Prefix(nil), c.TrustedProxies...)}
}
