package server

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// clientIP is the address of the client that sent r: the TCP peer, or, when the peer is one
// of the trusted proxies, the right-most address of the forwarding header that is not itself
// trusted (every address to its right was added by a trusted proxy, so it is the first one no
// trusted party vouches for; anything to its left the client may have forged). The header is
// X-Forwarded-For, which nearly every proxy and load balancer sets, else the standard
// Forwarded. When every address is trusted, the left-most one is the client. An entry that is
// not an address ("unknown", an obfuscated name) ends the walk at the last address read. A
// header from an untrusted peer is ignored. It returns the zero Addr when the peer's address
// cannot be read.
func clientIP(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	addr := peer.Addr().Unmap().WithZone("")
	if !isTrusted(addr, trusted) {
		return addr
	}
	var chain []string
	if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, line := range xff {
			for entry := range strings.SplitSeq(line, ",") {
				chain = append(chain, strings.TrimSpace(entry))
			}
		}
	} else {
		chain = forwardedFor(r.Header.Values("Forwarded"))
	}
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseHop(chain[i])
		if !ok {
			break
		}
		addr = a
		if !isTrusted(a, trusted) {
			break
		}
	}
	return addr
}

// isTrusted reports whether a is in one of the prefixes.
func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedFor returns the for= values of Forwarded header lines (RFC 7239), in order.
func forwardedFor(lines []string) []string {
	var out []string
	for _, line := range lines {
		for elem := range strings.SplitSeq(line, ",") {
			for pair := range strings.SplitSeq(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(k), "for") {
					v = strings.TrimSpace(v)
					if uq, err := strconv.Unquote(v); err == nil {
						v = uq
					}
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// parseHop reads one address of a forwarding header: 203.0.113.7, 203.0.113.7:4711,
// 2001:db8::1, [2001:db8::1] or [2001:db8::1]:4711.
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap().WithZone(""), true
		}
	}
	return netip.Addr{}, false
}

// hasIP reports whether the JSON object obj has an ip member that is neither null nor "".
func hasIP(obj []byte) bool {
	if obj == nil {
		return false
	}
	r := gjson.GetBytes(obj, "ip")
	return r.Exists() && present([]byte(r.Raw))
}

// appendWithIP appends the JSON object obj with "ip":ipJSON added (replacing an ip member that
// is null or "", so the object keeps one ip).
func appendWithIP(out, obj, ipJSON []byte) []byte {
	if !gjson.GetBytes(obj, "ip").Exists() {
		end := len(obj) - 1 // the closing brace
		for end > 0 && obj[end] != '}' {
			end--
		}
		if strings.TrimSpace(string(obj[1:end])) == "" {
			out = append(out, '{')
		} else {
			out = append(out, obj[:end]...)
			out = append(out, ',')
		}
		out = append(out, `"ip":`...)
		out = append(out, ipJSON...)
		return append(out, '}')
	}
	out = append(out, '{')
	gjson.ParseBytes(obj).ForEach(func(k, v gjson.Result) bool {
		if k.Str == "ip" {
			return true
		}
		out = append(out, k.Raw...)
		out = append(out, ':')
		out = append(out, v.Raw...)
		out = append(out, ',')
		return true
	})
	out = append(out, `"ip":`...)
	out = append(out, ipJSON...)
	return append(out, '}')
}
