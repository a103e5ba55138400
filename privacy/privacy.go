// Package privacy holds what the relay does about personal data, independent of where the data
// is kept: selectors that name a person (by userId, anonymousId, e-mail or Woopra cookie), a
// set of them that tells whether an event is that person's, and minimisation of an event before
// anything stores it (IP truncation, paths dropped or hashed).
//
// E-mail addresses are never kept in clear: an e-mail selector holds the SHA-256 of the address
// trimmed and lower-cased, and an event matches it when one of its e-mail fields hashes the same.
package privacy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/tidwall/gjson"
)

// Kind is what a selector compares.
type Kind string

// The kinds of selector.
const (
	// UserID matches an event's userId.
	UserID Kind = "user_id"
	// AnonymousID matches an event's anonymousId.
	AnonymousID Kind = "anonymous_id"
	// Email matches an event whose traits.email, context.traits.email or properties.email hashes
	// to the selector's value (the hex SHA-256 of the address, trimmed and lower-cased).
	Email Kind = "email_sha256"
	// Cookie matches an event carrying the Woopra cookie (integrations.Woopra.cookie,
	// context.Woopra.cookie or vendor_ids.woopra_cookie).
	Cookie Kind = "cookie"
)

// Selector names a person by one identifier.
type Selector struct {
	Kind  Kind   `json:"kind"`
	Value string `json:"value"`
}

// String is the selector's stored form, "kind:value", which ParseSelector reads back.
func (s Selector) String() string { return string(s.Kind) + ":" + s.Value }

// HashEmail is the value of an e-mail selector for an address: the hex SHA-256 of the address
// trimmed and lower-cased.
func HashEmail(email string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	return hex.EncodeToString(sum[:])
}

// NewSelector builds a selector of kind from a value given by an operator; an e-mail address
// is hashed (an e-mail selector given as a 64-digit hex hash is taken as it is).
func NewSelector(kind Kind, value string) (Selector, error) {
	if value == "" {
		return Selector{}, fmt.Errorf("privacy: an empty %s selects nobody; give the identifier", kind)
	}
	switch kind {
	case UserID, AnonymousID, Cookie:
		return Selector{kind, value}, nil
	case Email, "email":
		if isHash(value) {
			return Selector{Email, strings.ToLower(value)}, nil
		}
		return Selector{Email, HashEmail(value)}, nil
	}
	return Selector{}, fmt.Errorf("privacy: unknown selector kind %q; use user_id, anonymous_id, email or cookie", kind)
}

func isHash(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// ParseSelector reads a selector's stored form, "kind:value".
func ParseSelector(s string) (Selector, error) {
	k, v, ok := strings.Cut(s, ":")
	if !ok {
		return Selector{}, fmt.Errorf("privacy: selector %q is not kind:value (user_id:u1, anonymous_id:a1, email:jane@example.com, cookie:C1)", s)
	}
	return NewSelector(Kind(k), v)
}

// Identity is what names the person of one event.
type Identity struct {
	UserID, AnonymousID string
	EmailHashes         []string
	Cookies             []string
}

// identityPaths are what Identify reads, in this order: the ids, the e-mail fields, the
// cookie fields.
var identityPaths = []string{
	"userId", "anonymousId",
	"traits.email", "context.traits.email", "properties.email",
	"integrations.Woopra.cookie", "context.Woopra.cookie", "vendor_ids.woopra_cookie",
}

// idText reads an id as the edge keeps it: a string, or a number's text.
func idText(r gjson.Result) string {
	switch r.Type {
	case gjson.String:
		return r.Str
	case gjson.Number:
		return r.Raw
	}
	return ""
}

// Identify reads the identifiers of an event's JSON; an event that is not JSON has none.
func Identify(event []byte) Identity { return identify(event, allKinds) }

// kinds is a set of selector kinds, as bits.
type kinds uint8

const (
	kindUser kinds = 1 << iota
	kindAnon
	kindEmail
	kindCookie
	allKinds = kindUser | kindAnon | kindEmail | kindCookie
)

func kindBit(k Kind) kinds {
	switch k {
	case UserID:
		return kindUser
	case AnonymousID:
		return kindAnon
	case Email:
		return kindEmail
	case Cookie:
		return kindCookie
	}
	return 0
}

// identify reads only the identifiers of the kinds in ks: each path read costs a scan of the
// event, and ingest asks for every event while a list is in force.
func identify(event []byte, ks kinds) Identity {
	var id Identity
	if ks&kindUser != 0 {
		id.UserID = idText(gjson.GetBytes(event, identityPaths[0]))
	}
	if ks&kindAnon != 0 {
		id.AnonymousID = idText(gjson.GetBytes(event, identityPaths[1]))
	}
	if ks&kindEmail != 0 {
		for _, p := range identityPaths[2:5] {
			if r := gjson.GetBytes(event, p); r.Type == gjson.String && strings.TrimSpace(r.Str) != "" {
				id.EmailHashes = append(id.EmailHashes, HashEmail(r.Str))
			}
		}
	}
	if ks&kindCookie != 0 {
		for _, p := range identityPaths[5:] {
			if r := gjson.GetBytes(event, p); r.Type == gjson.String && r.Str != "" {
				id.Cookies = append(id.Cookies, r.Str)
			}
		}
	}
	return id
}

// Set is a set of selectors. The zero value is empty; it is not safe for concurrent change.
type Set struct {
	m     map[Selector]struct{}
	kinds kinds // the kinds it holds
}

// NewSet returns a set of the selectors.
func NewSet(sels ...Selector) *Set {
	s := &Set{m: make(map[Selector]struct{}, len(sels))}
	for _, x := range sels {
		s.m[x] = struct{}{}
		s.kinds |= kindBit(x.Kind)
	}
	return s
}

// Len is the number of selectors.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.m)
}

// Selectors lists the set, sorted by their stored form.
func (s *Set) Selectors() []Selector {
	if s == nil {
		return nil
	}
	out := make([]Selector, 0, len(s.m))
	for x := range s.m {
		out = append(out, x)
	}
	slices.SortFunc(out, func(a, b Selector) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// Has reports whether the set holds x.
func (s *Set) Has(x Selector) bool {
	if s == nil {
		return false
	}
	_, ok := s.m[x]
	return ok
}

// MatchIdentity reports whether one of id's identifiers is in the set.
func (s *Set) MatchIdentity(id Identity) bool {
	if s.Len() == 0 {
		return false
	}
	if id.UserID != "" && s.Has(Selector{UserID, id.UserID}) {
		return true
	}
	if id.AnonymousID != "" && s.Has(Selector{AnonymousID, id.AnonymousID}) {
		return true
	}
	for _, h := range id.EmailHashes {
		if s.Has(Selector{Email, h}) {
			return true
		}
	}
	for _, c := range id.Cookies {
		if s.Has(Selector{Cookie, c}) {
			return true
		}
	}
	return false
}

// MatchEvent reports whether the event's JSON names a person of the set. An empty set costs
// nothing: the event is not read.
func (s *Set) MatchEvent(event []byte) bool {
	if s.Len() == 0 {
		return false
	}
	return s.MatchIdentity(identify(event, s.kinds))
}

// Known holds the identifiers of an event its caller has read already (ingest reads userId
// and anonymousId as it normalises each event), so that MatchEventKnown reads only the others.
type Known struct {
	UserID, AnonymousID     string
	HaveUser, HaveAnonymous bool // whether UserID ("" when the event has none) and AnonymousID are known
}

// MatchEventKnown is MatchEvent for an event whose identifiers in k are known: a set of user
// ids, with the user id known, does not read the event at all.
func (s *Set) MatchEventKnown(event []byte, k Known) bool {
	if s.Len() == 0 {
		return false
	}
	ks := s.kinds
	if k.HaveUser {
		ks &^= kindUser
	}
	if k.HaveAnonymous {
		ks &^= kindAnon
	}
	id := identify(event, ks)
	if k.HaveUser {
		id.UserID = k.UserID
	}
	if k.HaveAnonymous {
		id.AnonymousID = k.AnonymousID
	}
	return s.MatchIdentity(id)
}

// TruncateIP returns the network of an address: an IPv4 address with its last octet zeroed
// (/24), an IPv6 one with all but its first 48 bits zeroed (/48). What is not an address is
// returned as it is.
func TruncateIP(s string) string {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return s
	}
	bits := 48
	if a.Is4() || a.Is4In6() {
		a, bits = a.Unmap(), 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return s
	}
	return p.Addr().String()
}
