package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
)

// Param is one request parameter as Woopra decodes it.
type Param struct {
	Key   string // the parameter's name, decoded
	Value string // its value, decoded; non-string JSON values as their JSON text
}

// Params is an ordered list of parameters with distinct keys. It marshals to a JSON object whose
// keys keep their order, and unmarshals from one the same way.
type Params []Param

// Lookup returns the value of key and whether it is present.
func (ps Params) Lookup(key string) (string, bool) {
	for i := range ps {
		if ps[i].Key == key {
			return ps[i].Value, true
		}
	}
	return "", false
}

// Get returns the value of key, or "" when it is absent.
func (ps Params) Get(key string) string {
	v, _ := ps.Lookup(key)
	return v
}

// Map returns the parameters as a map.
func (ps Params) Map() map[string]string {
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.Key] = p.Value
	}
	return m
}

// MarshalJSON writes the parameters as a JSON object in their order.
func (ps Params) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, 16+len(ps)*24)
	b = append(b, '{')
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, p.Key)
		b = append(b, ':')
		b = appendJSONString(b, p.Value)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads a JSON object in key order. Non-string values become their JSON text
// (numbers and booleans as written, objects and arrays compacted); null values are dropped; a
// repeated key keeps its first value.
func (ps *Params) UnmarshalJSON(b []byte) error {
	var s paramSet
	if err := s.addJSONObject(b, ""); err != nil {
		return err
	}
	*ps = s.list
	return nil
}

func appendJSONString(b []byte, s string) []byte {
	simple := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x7f || c == '<' || c == '>' || c == '&' {
			simple = false
			break
		}
	}
	if simple {
		b = append(b, '"')
		b = append(b, s...)
		return append(b, '"')
	}
	enc, _ := json.Marshal(s)
	return append(b, enc...)
}

// paramSet builds the merged parameters of one request: the first occurrence of a key wins, and
// everything tolerated along the way is noted as a warning.
type paramSet struct {
	list     Params
	index    map[string]int // built once the list grows past a handful of keys
	warnings []string
}

func (s *paramSet) warn(format string, args ...any) {
	s.warnings = append(s.warnings, fmt.Sprintf(format, args...))
}

func (s *paramSet) has(key string) bool {
	if s.index != nil {
		_, ok := s.index[key]
		return ok
	}
	_, ok := s.list.Lookup(key)
	return ok
}

// add appends key=value unless key is already present; source names where it came from for
// the duplicate warning ("" suppresses it).
func (s *paramSet) add(key, value, source string) {
	if key == "" {
		if value != "" && source != "" {
			s.warn("%s: parameter with an empty name ignored", source)
		}
		return
	}
	if s.has(key) {
		if source != "" {
			s.warn("%s: duplicate parameter %q ignored (the first value is kept)", source, key)
		}
		return
	}
	s.list = append(s.list, Param{Key: key, Value: value})
	if s.index != nil {
		s.index[key] = len(s.list) - 1
	} else if len(s.list) > 24 {
		s.index = make(map[string]int, 2*len(s.list))
		for i, p := range s.list {
			s.index[p.Key] = i
		}
	}
}

// addURLEncoded parses an application/x-www-form-urlencoded string tolerantly: empty pairs
// ("&&", a trailing "&") are skipped, a key without "=" has the empty value, and an invalid
// percent escape keeps its raw text (with a warning).
func (s *paramSet) addURLEncoded(raw, source string) {
	for raw != "" {
		var seg string
		seg, raw, _ = strings.Cut(raw, "&")
		if seg == "" {
			continue
		}
		k, v, _ := strings.Cut(seg, "=")
		key, ok1 := unescape(k)
		value, ok2 := unescape(v)
		if !ok1 || !ok2 {
			s.warn("%s: invalid percent-encoding in %q kept as written", source, seg)
		}
		s.add(key, value, source)
	}
}

func unescape(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	if err != nil {
		return s, false
	}
	return u, true
}

// addJSONObject adds the members of a flat JSON object in order.
func (s *paramSet) addJSONObject(data []byte, source string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return err
		}
		value, present := jsonValueText(raw)
		if !present {
			continue
		}
		s.add(key, value, source)
	}
	if _, err := dec.Token(); err != nil {
		return err
	}
	return nil
}

// jsonValueText turns one JSON value into the text Woopra stores: strings unquoted, numbers and
// booleans as written, objects and arrays compacted; null is absent.
func jsonValueText(raw json.RawMessage) (string, bool) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", false
	}
	switch raw[0] {
	case '"':
		var v string
		if json.Unmarshal(raw, &v) == nil {
			return v, true
		}
		return string(raw), true
	case 'n':
		return "", false
	case '{', '[':
		var buf bytes.Buffer
		if json.Compact(&buf, raw) == nil {
			return buf.String(), true
		}
	}
	return string(raw), true
}

// maxBody bounds the body of one tracking request.
const maxBody = 1 << 20

var errTooLarge = errors.New("request body larger than 1 MiB")

// parsed is what one tracking request carries.
type parsed struct {
	params   Params
	items    []Item // /track/push only
	warnings []string
}

// parseRequest merges the parameters of r: the query string first, then the body (a form,
// a JSON object, or multipart fields). The first occurrence of a key wins, so the query string
// takes precedence over the body, as a servlet container's getParameter does.
func parseRequest(r *http.Request, endpoint string) (parsed, error) {
	var s paramSet
	s.list = make(Params, 0, 16)
	s.addURLEncoded(r.URL.RawQuery, "query")
	var items []Item
	if r.Method == http.MethodPost && r.Body != nil && r.Body != http.NoBody {
		ct, ctParams, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if strings.HasPrefix(ct, "multipart/") {
			var err error
			items, err = s.addMultipart(r, ctParams["boundary"], endpoint)
			if err != nil {
				if errors.Is(err, errTooLarge) {
					return parsed{}, err
				}
				s.warn("body: %v", err)
			}
		} else {
			body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
			if err != nil {
				s.warn("body: %v", err)
			}
			if len(body) > maxBody {
				return parsed{}, errTooLarge
			}
			s.addBody(body, ct)
		}
	}
	return parsed{params: s.list, items: items, warnings: s.warnings}, nil
}

// addBody adds the parameters of a non-multipart body: a JSON object when the type says JSON,
// a form when it says form; without a useful type the body is sniffed.
func (s *paramSet) addBody(body []byte, ct string) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return
	}
	isJSON := ct == "application/json" || strings.HasSuffix(ct, "+json")
	isForm := ct == "application/x-www-form-urlencoded"
	if !isJSON && !isForm {
		switch {
		case trimmed[0] == '{':
			isJSON = true
		case bytes.IndexByte(trimmed, '=') >= 0:
			isForm = true
		default:
			s.warn("body: %d bytes of %q ignored (neither a form nor a JSON object)", len(body), ct)
			return
		}
	}
	if isJSON {
		if err := s.addJSONObject(trimmed, "json body"); err != nil {
			s.warn("json body: %v (body ignored from there on)", err)
		}
		return
	}
	s.addURLEncoded(string(trimmed), "form body")
}

// addMultipart adds the fields of a multipart/form-data body. On /track/push the field
// "payload" holds newline-delimited JSON items {"endpoint":..., "params":{...}}.
func (s *paramSet) addMultipart(r *http.Request, boundary, endpoint string) ([]Item, error) {
	if boundary == "" {
		return nil, errors.New("multipart body without a boundary")
	}
	mr := multipart.NewReader(io.LimitReader(r.Body, maxBody+1), boundary)
	var items []Item
	total := 0
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return items, nil
		}
		if err != nil {
			return items, err
		}
		value, err := io.ReadAll(part)
		total += len(value)
		if total > maxBody {
			return items, errTooLarge
		}
		if err != nil {
			return items, err
		}
		name := part.FormName()
		if endpoint == "push" && name == "payload" {
			items = append(items, s.pushItems(value)...)
			continue
		}
		s.add(name, string(value), "multipart body")
	}
}

// pushItems parses the beacon payload of /track/push: one JSON object per line.
func (s *paramSet) pushItems(payload []byte) []Item {
	var items []Item
	for n, line := range bytes.Split(payload, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var raw struct {
			Endpoint string          `json:"endpoint"`
			Params   json.RawMessage `json:"params"`
		}
		if err := json.Unmarshal(line, &raw); err != nil {
			s.warn("push payload line %d: %v (line ignored)", n+1, err)
			continue
		}
		ep := strings.Trim(raw.Endpoint, "/")
		if !pushEndpoints[ep] {
			s.warn("push payload line %d: endpoint %q is not ce, update or identify (line ignored)", n+1, raw.Endpoint)
			continue
		}
		var ps paramSet
		if len(raw.Params) > 0 {
			if err := ps.addJSONObject(raw.Params, ""); err != nil {
				s.warn("push payload line %d: params: %v (line ignored)", n+1, err)
				continue
			}
		}
		items = append(items, Item{Endpoint: ep, Params: ps.list})
	}
	return items
}

var pushEndpoints = map[string]bool{"ce": true, "update": true, "identify": true}
