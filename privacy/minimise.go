package privacy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// IPMode says what minimisation does with an event's client address.
type IPMode string

// The IP modes.
const (
	// IPKeep leaves the address as it is.
	IPKeep IPMode = "keep"
	// IPTruncate keeps the network only: IPv4 to /24, IPv6 to /48 (TruncateIP).
	IPTruncate IPMode = "truncate"
	// IPDrop removes the address.
	IPDrop IPMode = "drop"
)

// ipPaths are where events carry the client's address: Segment's context.ip, and the
// request_ip RudderStack's servers add.
var ipPaths = []string{"context.ip", "request_ip"}

// Minimiser changes an event before anything stores it. The zero value changes nothing.
type Minimiser struct {
	// IP is what happens to context.ip (and request_ip); "" is IPKeep.
	IP IPMode
	// Drop lists dotted paths (context.traits.phone) removed from the event.
	Drop []string
	// Hash lists dotted paths whose values are replaced by the hex SHA-256 of Salt and the
	// value's text (a string's characters, any other value's JSON).
	Hash []string
	// Salt is prepended to each hashed value, so a hash cannot be looked up in a table of
	// common values; it comes from the environment, never from a file.
	Salt string
}

// Active reports whether Apply changes anything.
func (m *Minimiser) Active() bool {
	return m != nil && ((m.IP != "" && m.IP != IPKeep) || len(m.Drop) > 0 || len(m.Hash) > 0)
}

// Check reports a mode or path the minimiser cannot apply.
func (m *Minimiser) Check() error {
	switch m.IP {
	case "", IPKeep, IPTruncate, IPDrop:
	default:
		return fmt.Errorf("ip %q is not keep, truncate or drop", m.IP)
	}
	for _, p := range append(append([]string(nil), m.Drop...), m.Hash...) {
		if p == "" || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..") {
			return fmt.Errorf("path %q is not a dotted path like context.traits.phone", p)
		}
	}
	return nil
}

// Apply returns the event minimised. The members of the objects it changes keep no order (the
// event is read and written again as JSON); an event that is not a JSON object is returned as
// it is, with an error.
func (m *Minimiser) Apply(event []byte) ([]byte, error) {
	if !m.Active() {
		return event, nil
	}
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber()
	var root map[string]any
	if err := dec.Decode(&root); err != nil {
		return event, fmt.Errorf("privacy: the event is not a JSON object: %w", err)
	}
	for _, p := range ipPaths {
		switch m.IP {
		case IPTruncate:
			update(root, p, func(v any) (any, bool) {
				if s, ok := v.(string); ok {
					return TruncateIP(s), true
				}
				return v, true
			})
		case IPDrop:
			update(root, p, func(any) (any, bool) { return nil, false })
		}
	}
	for _, p := range m.Drop {
		update(root, p, func(any) (any, bool) { return nil, false })
	}
	for _, p := range m.Hash {
		update(root, p, func(v any) (any, bool) { return m.hash(v), true })
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(root); err != nil {
		return event, fmt.Errorf("privacy: write the minimised event: %w", err)
	}
	return bytes.TrimRight(out.Bytes(), "\n"), nil
}

// hash is the salted hex SHA-256 of a value's text.
func (m *Minimiser) hash(v any) string {
	text, ok := v.(string)
	if !ok {
		b, _ := json.Marshal(v)
		text = string(b)
	}
	sum := sha256.Sum256([]byte(m.Salt + text))
	return hex.EncodeToString(sum[:])
}

// update calls fn with the value at the dotted path when there is one, and sets what it
// returns (or deletes the member when keep is false).
func update(root map[string]any, path string, fn func(any) (v any, keep bool)) {
	obj := root
	keys := strings.Split(path, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := obj[k].(map[string]any)
		if !ok {
			return
		}
		obj = next
	}
	last := keys[len(keys)-1]
	v, ok := obj[last]
	if !ok {
		return
	}
	if nv, keep := fn(v); keep {
		obj[last] = nv
	} else {
		delete(obj, last)
	}
}
