package relay

import (
	"fmt"
	"github.com/woorelay/woorelay/server"
	"reflect"
)

// Reload swaps in cfg's sources (write keys, presets, settings, mapping folders, allowed
// origins, public URL, trusted proxies) atomically, for ingest and delivery at once: the next request is
// authenticated against the new write keys, and every event delivered from then on, the
// backlog included, is mapped with the new presets. It validates and compiles everything
// first; on any finding it returns a *ConfigError and the running configuration stays.
// Settings that only a restart can change (the listener, the queue, delivery's workers and
// timings) are findings when they differ from the running ones. Every attempt is recorded for
// GET /admin/config and counted in woorelay_config_reloads_total (trigger "call").
func (r *Relay) Reload(cfg Config) error {
	err := r.swap(cfg)
	r.recordCall(cfg, err)
	return err
}

// swap is Reload without recording the attempt (ReloadFromFiles records its own).
func (r *Relay) swap(cfg Config) error {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	if fs := r.cfg.restartOnly(cfg); len(fs) > 0 {
		return &ConfigError{Findings: fs}
	}
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	sc := cfg.sourcesConfig()
	compiled, err := r.compile(sc)
	if err != nil {
		return err
	}
	if err := r.srv.SetSources(compiled, sc.AllowedOrigins, sc.PublicURL, sc.TrustedProxies); err != nil {
		return &ConfigError{Sources: err}
	}
	r.sources.set(compiled)
	r.cfg.Sources = cfg.Sources
	return nil
}

// restartOnly lists the settings of next that differ from c and need a restart.
func (c Config) restartOnly(next Config) []Finding {
	var fs []Finding
	for _, s := range []struct {
		name      string
		old, next any
	}{
		{"listen", c.Listen, next.Listen}, {"admin-listen", c.AdminListen, next.AdminListen},
		{"tls-cert", c.TLSCert, next.TLSCert}, {"tls-key", c.TLSKey, next.TLSKey}, {"data", c.DataDir, next.DataDir}, {"woopra-url", c.WoopraURL, next.WoopraURL},
		{"disk-budget", c.DiskBudget, next.DiskBudget}, {"workers", c.Workers, next.Workers}, {"workers-min", c.WorkersMin, next.WorkersMin},
		{"woopra-timeout", c.WoopraTimeout, next.WoopraTimeout}, {"retry-window", c.RetryWindow, next.RetryWindow},
		{"retry-min", c.RetryMin, next.RetryMin}, {"retry-max", c.RetryMax, next.RetryMax},
		{"admin-token", c.AdminToken, next.AdminToken}, {"nosync", c.NoSync, next.NoSync},
		{"debugger-events", c.DebuggerEvents, next.DebuggerEvents}, {"debugger-follow", c.DebuggerFollow, next.DebuggerFollow},
	} {
		if !reflect.DeepEqual(s.old, s.next) {
			fs = append(fs, Finding{Setting: s.name, Message: fmt.Sprintf("changing it from %v to %v needs a restart of serve; a reload changes only the sources file", redact(s.name, s.old), redact(s.name, s.next))})
		}
	}
	if a, b := c.queueConfig(), next.queueConfig(); !reflect.DeepEqual(a, b) && (a == nil || b == nil || !reflect.DeepEqual(*a, withWhere(*b, a.Where))) {
		fs = append(fs, Finding{Setting: "queue", Message: "changing the queue (--queue or the sources file's queue: section) needs a restart of serve"})
	}
	if next.Queue != nil && next.Queue != c.Queue {
		fs = append(fs, Finding{Setting: "queue", Message: "another queue backend needs a restart of serve"})
	}
	return fs
}

// redact hides secrets in findings.
func redact(name string, v any) any {
	if name == "admin-token" {
		if v == "" {
			return "none"
		}
		return "(a token)"
	}
	return v
}

func withWhere(q server.QueueConfig, where string) server.QueueConfig {
	q.Where = where
	return q
}
