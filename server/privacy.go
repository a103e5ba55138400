package server

import (
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/privacy"
	"github.com/woorelay/woorelay/queue"
)

// SaltEnv names the environment variable holding the per-deployment salt of the paths a
// source's privacy: hash lists.
const SaltEnv = "WOORELAY_PRIVACY_SALT"

// ReasonSuppressed is the reason of an event dropped because its person is suppressed: ingest
// counts it filtered without storing it, and delivery filters a queued one with it.
const ReasonSuppressed = "suppressed"

// Suppressions tells ingest whether an event's person is suppressed (the relay's suppression
// list, kept in the queue's store).
type Suppressions interface {
	// Suppressed reports whether the event names a suppressed person; known holds the ids
	// ingest has read already. It is called for every event, so it must be cheap while the
	// list is empty.
	Suppressed(event []byte, known privacy.Known) bool
}

// privacyKeys are the keys of a source's privacy: section.
var privacyKeys = []string{"ip", "drop", "hash"}

// privacy reads a source's privacy: section (ip: keep|truncate|drop, drop: [paths], hash:
// [paths]); the salt of hash comes from SaltEnv.
func (l *loader) privacy(v *yaml.Node, source string) *privacy.Minimiser {
	if v.Kind != yaml.MappingNode {
		l.errAt(v, mapping.CodeWrongType, "write privacy: {ip: truncate, drop: [context.traits.phone], hash: [traits.email]}", "privacy must be a mapping")
		return nil
	}
	m := &privacy.Minimiser{}
	l.members(v, privacyKeys, func(k, val *yaml.Node) {
		switch k.Value {
		case "ip":
			m.IP = privacy.IPMode(l.str(val))
			if err := (&privacy.Minimiser{IP: m.IP}).Check(); err != nil {
				l.errAt(val, mapping.CodeBadValue, "write ip: keep, ip: truncate (IPv4 to /24, IPv6 to /48) or ip: drop", "%v", err)
			}
		case "drop":
			m.Drop = l.paths(val, "drop")
		case "hash":
			m.Hash = l.paths(val, "hash")
			m.Salt = os.Getenv(SaltEnv)
			if m.Salt == "" && len(m.Hash) > 0 {
				l.errAt(k, mapping.CodeMissingKey, "export "+SaltEnv+"=<a long random secret, the same on every relay> before starting", "privacy: hash of source %q needs a salt and %s is unset or empty", source, SaltEnv)
			}
		}
	})
	return m
}

// paths reads a list of dotted paths.
func (l *loader) paths(v *yaml.Node, what string) []string {
	ps := l.strList(v, what)
	for i, p := range ps {
		if err := (&privacy.Minimiser{Drop: []string{p}}).Check(); err != nil {
			n := v
			if v.Kind == yaml.SequenceNode {
				n = v.Content[i]
			}
			l.errAt(n, mapping.CodeBadValue, "write paths as dotted keys, like context.traits.phone", "privacy %s: %v", what, err)
		}
	}
	return ps
}

// knownIDs reads the ids an entry's ordering key holds (visitorKey): "u:" and the userId, or
// "a:" and the anonymousId of an event without a userId; none for an unordered source's.
func knownIDs(visitor string) privacy.Known {
	switch {
	case strings.HasPrefix(visitor, "u:"):
		return privacy.Known{UserID: visitor[2:], HaveUser: true}
	case strings.HasPrefix(visitor, "a:"):
		return privacy.Known{AnonymousID: visitor[2:], HaveUser: true, HaveAnonymous: true}
	}
	return privacy.Known{}
}

// protect applies the edge's privacy to the request's entries before they are stored: the
// source's minimisation to every event, and, for an event whose person is suppressed, drops
// its content and makes it an entry counted filtered (ReasonSuppressed) that the queue does
// not keep. An event that cannot be minimised (not a JSON object) is stored as it is: the
// edge already refused what is not JSON.
func (s *Server) protect(w *work, src *Source) {
	sup := s.opts.Suppressions
	if !src.Minimiser.Active() && sup == nil {
		return
	}
	for i := range w.entries {
		e := &w.entries[i]
		if sup != nil && sup.Suppressed(e.Event, knownIDs(e.Visitor)) {
			e.Outcome, e.Reason, e.Event, e.Visitor = queue.Filtered, ReasonSuppressed, nil, ""
			continue
		}
		if src.Minimiser.Active() {
			if out, err := src.Minimiser.Apply(e.Event); err == nil {
				e.Event = out
			}
		}
	}
}
