// Package ceiling is the hand-written, single-pass reference implementation of the default
// preset (presets/default.yaml) with the settings project=mywebsite.com and app=datafly-signal.
// It is the performance ceiling the mapping engine is measured against: the code a
// performance-minded engineer would write for exactly that mapping without an engine — one
// gjson ForEach over the event's top level, switching on keys and descending only into the
// objects the mapping needs, with the spread walks of properties and traits also collecting the
// fields read from those objects, no reflection, no per-event maps, pooled scratch buffers, and
// the request's URL and values built into one string.
//
// It is independent of the engine: it imports mapping only for the types of its result
// (mapping.Result, Request, Param and the reject codes), parses timestamps itself, and must
// produce the same mapping.Result as the engine for every event (the presets package's
// TestCeilingMatchesEngine checks this on the corpus and on edge cases).
//
// Semantics it reproduces from the engine:
//   - a path's value is found by walking objects only, and at every level the first occurrence
//     of a key wins, as with gjson.Get: a repeated key is ignored entirely (not descended into)
//     and does not count towards the level's wanted keys, so a level's walk stops once every
//     wanted distinct key was seen;
//   - a spread copies every key of its object, but a key whose parameter name an earlier key
//     of the spread already produced (a duplicate key, or a flattening collision) is skipped;
//   - the traits spread (present: non_empty) takes the first of traits and context.traits that
//     is a non-empty object; no spread copies a null, "", {} or [] value, and the page spread
//     and referer drop RudderStack's "$direct";
//   - cv_email's presence rule (non_empty) applies again after its transform, so an email that
//     trims to "" is absent.
package ceiling

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/tidwall/gjson"
	"github.com/woorelay/woorelay/mapping"
)

// The settings the ceiling hard-codes: load the default preset with Settings to compare the
// engine with it.
const (
	Project = "mywebsite.com"  // settings.project
	App     = "datafly-signal" // settings.app
)

// Settings returns the preset settings the ceiling hard-codes, as a new map.
func Settings() map[string]string { return map[string]string{"project": Project, "app": App} }

const (
	ceilProject  = Project
	ceilApp      = App
	ceilResponse = "json"
	ceilTimeout  = "1800000"
	ceilBase     = "https://www.woopra.com"
	maxFutureMs  = 300000
	flattenDepth = 3 // spread max_depth
)

// Ceiling is the hand-written mapping of the default preset. It is safe for concurrent use.
type Ceiling struct {
	pool sync.Pool
}

// New returns a Ceiling ready to map events.
func New() *Ceiling {
	c := &Ceiling{}
	c.pool.New = func() any {
		return &ceilState{names: make([]byte, 0, 1024), sp: make([]spParam, 0, 48), kb: make([]byte, 0, 256)}
	}
	return c
}

// Run maps one event read at time now into a fresh Result, like the engine's Run.
func (c *Ceiling) Run(event []byte, now time.Time) mapping.Result {
	var res mapping.Result
	c.RunInto(&res, event, now)
	return res
}

// RunInto maps one event into *dst, reusing dst's slices, like the engine's RunInto: the event
// is read in place and what the result keeps is copied into one string.
func (c *Ceiling) RunInto(dst *mapping.Result, event []byte, now time.Time) {
	c.runInto(dst, unsafe.String(unsafe.SliceData(event), len(event)), now.UnixMilli())
}

// take stores v in *slot unless the slot already holds a value, and reports whether it did: a
// found value always exists (its Raw is not empty), so a filled slot means the key was seen
// before at this level, and the first occurrence wins.
func take(slot *gjson.Result, v gjson.Result) bool {
	if slot.Exists() {
		return false
	}
	*slot = v
	return true
}

// traitFields are the wanted children of traits and context.traits.
type traitFields struct {
	userID, email, name gjson.Result
	seen                int // distinct wanted keys seen
}

// note records v when k is a wanted key seen for the first time, and reports whether a wanted
// key is still unseen.
func (f *traitFields) note(k string, v gjson.Result) bool {
	var fresh bool
	switch k {
	case "userId":
		fresh = take(&f.userID, v)
	case "email":
		fresh = take(&f.email, v)
	case "name":
		fresh = take(&f.name, v)
	default:
		return true
	}
	if fresh {
		f.seen++
	}
	return f.seen < 3
}

// walk reads the wanted children of obj when it is an object.
func (f *traitFields) walk(obj gjson.Result) {
	if obj.IsObject() {
		obj.ForEach(func(k, v gjson.Result) bool { return f.note(k.Str, v) })
	}
}

// propFields are the wanted children of properties.
type propFields struct {
	email, revenue, name, category, url, title, referrer gjson.Result
	seen                                                 int
}

func (f *propFields) note(k string, v gjson.Result) bool {
	var fresh bool
	switch k {
	case "email":
		fresh = take(&f.email, v)
	case "revenue":
		fresh = take(&f.revenue, v)
	case "name":
		fresh = take(&f.name, v)
	case "category":
		fresh = take(&f.category, v)
	case "url":
		fresh = take(&f.url, v)
	case "title":
		fresh = take(&f.title, v)
	case "referrer":
		fresh = take(&f.referrer, v)
	default:
		return true
	}
	if fresh {
		f.seen++
	}
	return f.seen < 7
}

func (f *propFields) walk(obj gjson.Result) {
	if obj.IsObject() {
		obj.ForEach(func(k, v gjson.Result) bool { return f.note(k.Str, v) })
	}
}

// spParam is a spread parameter: its name is names[off:end] of the state, its value as sent.
type spParam struct {
	off, end int
	value    string
}

// ceilState is the per-event scratch space. Each value is the first occurrence of its key.
type ceilState struct {
	typ, event, anonymousID, userID                gjson.Result
	timestamp, origTS, receivedAt                  gjson.Result
	name, category                                 gjson.Result
	props, traits, context, integrations, vendorID gjson.Result
	ip, userAgent, locale, ctxTraits, page         gjson.Result
	externalIDs, externalID, ctxWoopra             gjson.Result
	integCookie, ctxCookie, vendorCk               gjson.Result
	pageURL, pageTitle, pageReferrer               gjson.Result

	// The wanted children of properties, traits and context.traits are read in the spread walk
	// of the object, or on demand (the Done flags) when the object is not spread.
	tf, ctf         traitFields
	pf              propFields
	ctfDone, pfDone bool

	names []byte    // spread names and generated values of the event, viewed in place until finish copies them
	sp    []spParam // spread parameters, in order
	kb    []byte    // the flattened key being built

	out, hdrs []mapping.Param // the request's parameters and headers while they are built
	url       []byte          // the result's text (URL, then values that need escaping)
	at        []int           // where each parameter's name and value start in url
}

func (st *ceilState) reset() {
	*st = ceilState{names: st.names[:0], sp: st.sp[:0], kb: st.kb[:0], out: st.out[:0], hdrs: st.hdrs[:0], url: st.url[:0], at: st.at[:0]}
}

// walkRoot is the one pass over the event's top level; it descends into context, integrations
// and vendor_ids as it meets them.
func (st *ceilState) walkRoot(root gjson.Result) {
	seen := 0
	root.ForEach(func(k, v gjson.Result) bool {
		var fresh bool
		switch k.Str {
		case "type":
			fresh = take(&st.typ, v)
		case "event":
			fresh = take(&st.event, v)
		case "anonymousId":
			fresh = take(&st.anonymousID, v)
		case "userId":
			fresh = take(&st.userID, v)
		case "timestamp":
			fresh = take(&st.timestamp, v)
		case "originalTimestamp":
			fresh = take(&st.origTS, v)
		case "receivedAt":
			fresh = take(&st.receivedAt, v)
		case "name":
			fresh = take(&st.name, v)
		case "category":
			fresh = take(&st.category, v)
		case "properties":
			fresh = take(&st.props, v)
		case "traits":
			fresh = take(&st.traits, v)
		case "context":
			if fresh = take(&st.context, v); fresh && v.IsObject() {
				st.walkContext(v)
			}
		case "integrations":
			if fresh = take(&st.integrations, v); fresh && v.IsObject() {
				if w := child1(v, "Woopra"); w.IsObject() {
					st.integCookie = child1(w, "cookie")
				}
			}
		case "vendor_ids":
			if fresh = take(&st.vendorID, v); fresh && v.IsObject() {
				st.vendorCk = child1(v, "woopra_cookie")
			}
		default:
			return true
		}
		if fresh {
			seen++
		}
		return seen < 14
	})
}

// child1 returns the value of the first occurrence of key in obj, an object with one wanted key.
func child1(obj gjson.Result, key string) (r gjson.Result) {
	obj.ForEach(func(k, v gjson.Result) bool {
		if k.Str != key {
			return true
		}
		r = v
		return false
	})
	return r
}

func (st *ceilState) walkContext(ctx gjson.Result) {
	seen := 0
	ctx.ForEach(func(k, v gjson.Result) bool {
		var fresh bool
		switch k.Str {
		case "ip":
			fresh = take(&st.ip, v)
		case "userAgent":
			fresh = take(&st.userAgent, v)
		case "locale":
			fresh = take(&st.locale, v)
		case "traits":
			fresh = take(&st.ctxTraits, v)
		case "externalIds":
			fresh = take(&st.externalIDs, v)
		case "externalId":
			fresh = take(&st.externalID, v)
		case "page":
			if fresh = take(&st.page, v); fresh && v.IsObject() {
				st.walkPage(v)
			}
		case "Woopra":
			if fresh = take(&st.ctxWoopra, v); fresh && v.IsObject() {
				st.ctxCookie = child1(v, "cookie")
			}
		default:
			return true
		}
		if fresh {
			seen++
		}
		return seen < 8
	})
}

func (st *ceilState) walkPage(page gjson.Result) {
	seen := 0
	page.ForEach(func(k, v gjson.Result) bool {
		var fresh bool
		switch k.Str {
		case "url":
			fresh = take(&st.pageURL, v)
		case "title":
			fresh = take(&st.pageTitle, v)
		case "referrer":
			fresh = take(&st.pageReferrer, v)
		default:
			return true
		}
		if fresh {
			seen++
		}
		return seen < 3
	})
}

// spreadRule is one of the preset's spreads: its prefix, excluded and explicit keys.
type spreadRule uint8

const (
	spreadTrack  spreadRule = iota // track: properties → ce_
	spreadPage                     // page: properties → ce_
	spreadScreen                   // screen: properties → ce_
	spreadTraits                   // common: traits or context.traits → cv_
)

var passwordGlob = []byte("password")

func (r spreadRule) prefix() string {
	if r == spreadTraits {
		return "cv_"
	}
	return "ce_"
}

func (r spreadRule) excluded(k []byte) bool {
	switch r {
	case spreadTrack:
		switch string(k) {
		case "revenue", "email":
			return true
		}
	case spreadPage:
		switch string(k) {
		case "name", "category", "url", "title", "referrer", "email":
			return true
		}
	case spreadScreen:
		if string(k) == "email" {
			return true
		}
	case spreadTraits:
		switch string(k) {
		case "email", "name", "anonymousId", "userId", "id":
			return true
		}
	}
	return bytes.Contains(k, passwordGlob)
}

// explicit reports whether k is the name of an explicit field of the mapping once the
// spread's prefix is added (explicit_wins drops it). Keys the spread excludes never get here,
// so they are not listed: ce_name, ce_category, ce_url and ce_title of page, and cv_id, cv_email
// and cv_name of traits.
func (r spreadRule) explicit(k []byte) bool {
	switch r {
	case spreadTrack:
		switch string(k) {
		case "app", "amount":
			return true
		}
	case spreadPage:
		return string(k) == "app"
	case spreadScreen:
		switch string(k) {
		case "app", "name":
			return true
		}
	}
	return false
}

// absent is the spreads' presence rule for a value (non_empty), with the page spread's
// transform that drops RudderStack's "$direct".
func (r spreadRule) absent(v gjson.Result) bool {
	return !nonEmpty(v) || r == spreadPage && isDirect(v)
}

// isDirect reports whether v is RudderStack's "$direct" placeholder for "no referrer".
func isDirect(v gjson.Result) bool { return v.Type == gjson.String && v.Str == "$direct" }

// spreadProps copies properties under ce_ and reads properties' wanted children on the way.
func (st *ceilState) spreadProps(r spreadRule, obj gjson.Result) {
	start, open := len(st.sp), true
	obj.ForEach(func(k, v gjson.Result) bool {
		if open {
			open = st.pf.note(k.Str, v)
		}
		st.spreadValue(r, append(st.kb[:0], k.Str...), v, 1, start)
		return true
	})
	st.pfDone = true
}

// spreadTraitsOf copies traits (or context.traits) under cv_, reading their wanted children.
func (st *ceilState) spreadTraitsOf(obj gjson.Result, f *traitFields) {
	start, open := len(st.sp), true
	obj.ForEach(func(k, v gjson.Result) bool {
		if open {
			open = f.note(k.Str, v)
		}
		st.spreadValue(spreadTraits, append(st.kb[:0], k.Str...), v, 1, start)
		return true
	})
}

// spreadValue handles one key (flattened to key) of a spread at nesting depth.
func (st *ceilState) spreadValue(r spreadRule, key []byte, v gjson.Result, depth, start int) {
	if len(key) == 0 || r.excluded(key) || r.absent(v) {
		return
	}
	if depth < flattenDepth && v.IsObject() {
		key = append(key, '_')
		v.ForEach(func(k, c gjson.Result) bool {
			st.spreadValue(r, append(key, k.Str...), c, depth+1, start)
			return true
		})
		return
	}
	if r.explicit(key) {
		return
	}
	off := len(st.names)
	st.names = append(st.names, r.prefix()...)
	st.names = append(st.names, key...)
	name := st.names[off:]
	for _, p := range st.sp[start:] {
		if string(st.names[p.off:p.end]) == string(name) {
			st.names = st.names[:off] // an earlier key of this spread wins
			return
		}
	}
	st.sp = append(st.sp, spParam{off: off, end: len(st.names), value: queryText(v)})
}

// present is the non_null rule; nonEmpty the non_empty rule.
func present(r gjson.Result) bool { return r.Type != gjson.Null }

func nonEmpty(r gjson.Result) bool {
	switch r.Type {
	case gjson.Null:
		return false
	case gjson.String:
		return r.Str != ""
	case gjson.JSON:
		return !isEmptyContainer(r.Raw)
	}
	return true
}

func isEmptyContainer(raw string) bool {
	n := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case ' ', '\t', '\n', '\r':
		default:
			n++
			if n > 2 {
				return false
			}
		}
	}
	return true
}

// queryText is the text a present value is sent as.
func queryText(r gjson.Result) string {
	switch r.Type {
	case gjson.String:
		return r.Str
	case gjson.Number:
		return r.Raw
	case gjson.True:
		return "true"
	case gjson.False:
		return "false"
	case gjson.JSON:
		return compactJSON(r.Raw)
	}
	return ""
}

func compactJSON(raw string) string {
	inStr := false
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if inStr {
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case ' ', '\t', '\n', '\r':
			return gjson.Get(raw, "@ugly").Raw
		}
	}
	return raw
}

// kindName names the kind of a JSON value as the engine's messages do: missing, null, string,
// number, bool, object or array.
func kindName(r gjson.Result) string {
	switch r.Type {
	case gjson.Null:
		if r.Raw == "" {
			return "missing"
		}
		return "null"
	case gjson.String:
		return "string"
	case gjson.Number:
		return "number"
	case gjson.True, gjson.False:
		return "bool"
	}
	if r.IsArray() {
		return "array"
	}
	return "object"
}

// first returns the first non-empty value, or the zero Result.
func first(rs ...gjson.Result) gjson.Result {
	for _, r := range rs {
		if nonEmpty(r) {
			return r
		}
	}
	return gjson.Result{}
}

var eventNames = map[string]string{
	"page":                 "pv",
	"Signed Up":            "signup",
	"Logged In":            "login",
	"Products Searched":    "search",
	"Product Viewed":       "product_viewed",
	"Plan Viewed":          "plan_viewed",
	"Product Added":        "add_to_cart",
	"Checkout Started":     "checkout_started",
	"Order Completed":      "purchase",
	"Subscription Started": "subscription_started",
	"Lead Generated":       "lead",
}

func reject(m, code, msg string) mapping.Result {
	return mapping.Result{Outcome: mapping.Rejected, Mapping: m, Code: code, Error: msg}
}

// goTypeOf is the Go type expr sees for a value bound as `value` (mapping.Value.toAny).
func goTypeOf(r gjson.Result) string {
	switch r.Type {
	case gjson.Number:
		if i, err := strconv.ParseInt(r.Raw, 10, 64); err == nil && i >= -(1<<53) && i <= 1<<53 {
			return "int"
		}
		return "float64"
	case gjson.True, gjson.False:
		return "bool"
	case gjson.JSON:
		if r.IsArray() {
			return "[]interface {}"
		}
		return "map[string]interface {}"
	}
	return "<nil>"
}

// lowerTrim is lower(trim(value)) for a string. An ASCII string that needs lowering is written
// to the names buffer at [off, end) instead of being allocated; otherwise off is -1.
func (st *ceilState) lowerTrim(s string) (out string, off, end int) {
	s = strings.TrimSpace(s)
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return strings.ToLower(s), -1, -1
		}
		upper = upper || 'A' <= c && c <= 'Z'
	}
	if !upper {
		return s, -1, -1
	}
	off = len(st.names)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		st.names = append(st.names, c)
	}
	return "", off, len(st.names)
}

// runInto maps event into dst, reusing dst's slices like the engine's RunInto.
func (c *Ceiling) runInto(dst *mapping.Result, event string, now int64) {
	reqs, warns := dst.Requests[:0], dst.Warnings[:0]
	if !gjson.Valid(event) {
		*dst = reject("", mapping.RejectInvalidJSON, "the event is not valid JSON")
		dst.Requests, dst.Warnings = reqs, warns
		return
	}
	root := gjson.Parse(event)
	if !root.IsObject() {
		*dst = reject("", mapping.RejectInvalidJSON, "the event is a JSON "+kindName(root)+", want an object")
		dst.Requests, dst.Warnings = reqs, warns
		return
	}
	st := c.pool.Get().(*ceilState)
	st.reset()
	st.walkRoot(root)
	res, path := st.build(now)
	*dst = res
	dst.Requests, dst.Warnings = reqs, warns
	if path != "" {
		st.finish(dst, reqs, path)
	}
	c.pool.Put(st)
}

// build maps the walked event. For a sent event it returns the endpoint's path, with the
// parameters and headers in st.out and st.hdrs (values may view the event or st.names);
// otherwise the Result and "".
func (st *ceilState) build(now int64) (mapping.Result, string) {
	var m string
	var rule spreadRule
	if st.typ.Type == gjson.String {
		switch st.typ.Str {
		case "track":
			m, rule = "track", spreadTrack
		case "page":
			m, rule = "page", spreadPage
		case "screen":
			m, rule = "screen", spreadScreen
		case "identify":
			m = "identify"
		case "group":
			return mapping.Result{Outcome: mapping.Skipped, Mapping: "group", Reason: "group calls have no Woopra equivalent in the HTTP Tracking API"}, ""
		case "alias":
			return mapping.Result{Outcome: mapping.Skipped, Mapping: "alias", Reason: "alias calls have no Woopra equivalent; Woopra merges profiles on cv_id and cv_email"}, ""
		}
	}
	if m == "" {
		// Rare path: the engine names the event's (first) type.
		var js string
		switch st.typ.Type {
		case gjson.String:
			js = strconv.Quote(st.typ.Str)
		case gjson.Null:
			js = "null"
		case gjson.JSON:
			js = compactJSON(st.typ.Raw)
		default:
			js = queryText(st.typ)
		}
		return mapping.Result{Outcome: mapping.Skipped, Reason: fmt.Sprintf("no mapping of preset %q applies to this event (type %s)", "default", js)}, ""
	}

	// event (track: required, renamed by the table).
	var event string
	switch m {
	case "track":
		if !nonEmpty(st.event) {
			return reject(m, mapping.RejectMissing, `required field "event" has no value (path event)`), ""
		}
		event = queryText(st.event)
		if out, ok := eventNames[event]; ok {
			event = out
		}
	case "page":
		event = "pv"
	case "screen":
		event = "screen"
	}

	// Spreads: properties under ce_ (not identify; any object, the spread's presence rule being
	// non_null), then under cv_ the first of traits and context.traits that is a non-empty
	// object (present: non_empty). They read the wanted children of the objects they walk. A
	// traits object that is not spread is empty, so it has no children to read.
	if m != "identify" && st.props.IsObject() {
		st.spreadProps(rule, st.props)
	}
	switch {
	case st.traits.IsObject() && !isEmptyContainer(st.traits.Raw):
		st.spreadTraitsOf(st.traits, &st.tf)
	case st.ctxTraits.IsObject() && !isEmptyContainer(st.ctxTraits.Raw):
		st.spreadTraitsOf(st.ctxTraits, &st.ctf)
		st.ctfDone = true
	}
	ctxTraits := func() *traitFields {
		if !st.ctfDone {
			st.ctf.walk(st.ctxTraits)
			st.ctfDone = true
		}
		return &st.ctf
	}
	props := func() *propFields {
		if !st.pfDone {
			st.pf.walk(st.props)
			st.pfDone = true
		}
		return &st.pf
	}

	cookie := first(st.integCookie, st.ctxCookie)
	if !cookie.Exists() && st.externalIDs.Exists() {
		if cookie = first(st.externalIDs.Get(`#(type=="woopra").id`)); !cookie.Exists() {
			cookie = first(st.externalIDs.Get(`#(type=="woopra_cookie").id`))
		}
	}
	if !cookie.Exists() && st.externalID.Exists() {
		cookie = first(st.externalID.Get(`#(type=="woopraId").id`))
	}
	if !cookie.Exists() {
		cookie = first(st.vendorCk, st.anonymousID)
	}
	cvID := first(st.userID, st.tf.userID)
	if !cvID.Exists() {
		cvID = first(ctxTraits().userID)
	}
	emailV := first(st.tf.email)
	if !emailV.Exists() {
		emailV = first(ctxTraits().email)
	}
	if !emailV.Exists() {
		emailV = first(props().email)
	}
	cvName := first(st.tf.name)
	if !cvName.Exists() {
		cvName = first(ctxTraits().name)
	}

	// cv_email's transform lower(trim(value)) takes strings only, and the presence rule
	// (non_empty) applies again to its result: an email that trims to "" is absent.
	email, emailOff, emailEnd, hasEmail := "", -1, -1, false
	if emailV.Exists() {
		if emailV.Type != gjson.String {
			return reject(m, mapping.RejectExpression, `field "cv_email": transform: interface conversion: interface {} is `+goTypeOf(emailV)+", not string (1:7)"), ""
		}
		email, emailOff, emailEnd = st.lowerTrim(emailV.Str)
		hasEmail = email != "" || emailOff >= 0
	}

	ts := st.timestamp
	if !present(ts) {
		ts = st.origTS
		if !present(ts) {
			ts = st.receivedAt
		}
	}
	var tsMs int64
	tsOff := -1
	if present(ts) {
		ms, err := epochMillis(ts)
		if err != nil {
			return reject(m, mapping.RejectBadValue, `field "timestamp": `+err.Error()), ""
		}
		tsMs, tsOff = ms, len(st.names)
		st.names = strconv.AppendInt(st.names, ms, 10)
	}
	tsEnd := len(st.names)

	if !cvID.Exists() && !hasEmail && !cookie.Exists() {
		return reject(m, mapping.RejectNoIdentity, "the event has no visitor identifier: none of cv_id, cv_email, cookie is present; Woopra could not attribute it to a profile"), ""
	}
	if tsOff >= 0 && tsMs > now+maxFutureMs {
		return reject(m, mapping.RejectFuture, fmt.Sprintf("timestamp %s is %s in the future; Woopra does not report future events reliably",
			time.UnixMilli(tsMs).UTC().Format(time.RFC3339Nano), aheadBy(tsMs-now))), ""
	}

	// Mapping-specific fields after the common ones.
	var amount, ceName, ceCategory, ceURL, ceTitle, referer gjson.Result
	switch m {
	case "track":
		if pr := props().revenue; present(pr) {
			amount = pr
		}
	case "page":
		p := props()
		ceName = first(st.name, p.name)
		ceCategory = first(st.category, p.category)
		ceURL = first(p.url, st.pageURL)
		ceTitle = first(p.title, st.pageTitle)
		referer = first(p.referrer, st.pageReferrer)
		if isDirect(referer) {
			referer = gjson.Result{} // RudderStack's "no referrer" placeholder
		}
	case "screen":
		ceName = first(st.name, props().name)
	}

	// The text built for this event, viewed in place: finish copies what the result keeps.
	arena := unsafe.String(unsafe.SliceData(st.names), len(st.names))
	out := append(st.out[:0], mapping.Param{Name: "project", Value: ceilProject}, mapping.Param{Name: "response", Value: ceilResponse}, mapping.Param{Name: "timeout", Value: ceilTimeout})
	if m != "identify" {
		out = append(out, mapping.Param{Name: "ce_app", Value: ceilApp}, mapping.Param{Name: "event", Value: event})
	}
	add := func(name string, r gjson.Result) {
		if r.Exists() {
			out = append(out, mapping.Param{Name: name, Value: queryText(r)})
		}
	}
	add("cookie", cookie)
	if nonEmpty(st.ip) {
		add("ip", st.ip)
	}
	add("cv_id", cvID)
	if hasEmail {
		if emailOff >= 0 {
			email = arena[emailOff:emailEnd]
		}
		out = append(out, mapping.Param{Name: "cv_email", Value: email})
	}
	add("cv_name", cvName)
	if tsOff >= 0 {
		out = append(out, mapping.Param{Name: "timestamp", Value: arena[tsOff:tsEnd]})
	}
	switch m {
	case "track":
		add("ce_amount", amount)
	case "page":
		add("ce_name", ceName)
		add("ce_category", ceCategory)
		add("ce_url", ceURL)
		add("ce_title", ceTitle)
		add("referer", referer)
	case "screen":
		add("ce_name", ceName)
	}
	for _, p := range st.sp {
		out = append(out, mapping.Param{Name: arena[p.off:p.end], Value: p.value})
	}
	st.out = out

	st.hdrs = st.hdrs[:0]
	if nonEmpty(st.userAgent) {
		st.hdrs = append(st.hdrs, mapping.Param{Name: "User-Agent", Value: queryText(st.userAgent)})
	}
	if nonEmpty(st.locale) {
		st.hdrs = append(st.hdrs, mapping.Param{Name: "Accept-Language", Value: queryText(st.locale)})
	}

	if m == "identify" {
		return mapping.Result{Outcome: mapping.Send, Mapping: m}, "/track/identify"
	}
	return mapping.Result{Outcome: mapping.Send, Mapping: m}, "/track/ce"
}

// finish writes the request of a sent event into dst, reusing dst's slices. The URL and every
// value go into one new string: a name or value that needs no escaping is a substring of the
// URL, the others follow the URL unescaped.
func (st *ceilState) finish(dst *mapping.Result, reqs []mapping.Request, path string) {
	b := append(st.url[:0], ceilBase...)
	b = append(b, path...)
	at := st.at[:0]
	for i, p := range st.out {
		if i == 0 {
			b = append(b, '?')
		} else {
			b = append(b, '&')
		}
		var n, v int
		b, n = escapeAt(b, p.Name)
		b = append(b, '=')
		b, v = escapeAt(b, p.Value)
		at = append(at, n, v)
	}
	urlEnd := len(b)
	for i, p := range st.out {
		if at[2*i] < 0 {
			at[2*i] = len(b)
			b = append(b, p.Name...)
		}
		if at[2*i+1] < 0 {
			at[2*i+1] = len(b)
			b = append(b, p.Value...)
		}
	}
	hdrAt := len(b)
	for _, h := range st.hdrs {
		b = append(b, h.Value...)
	}
	text := string(b)
	st.url, st.at = b, at

	if cap(reqs) == 0 {
		reqs = make([]mapping.Request, 1)
	}
	reqs = reqs[:1]
	params := reqs[0].Params[:0]
	if params == nil || cap(params) < len(st.out) {
		params = make([]mapping.Param, 0, len(st.out))
	}
	for i, p := range st.out {
		n, v := at[2*i], at[2*i+1]
		params = append(params, mapping.Param{Name: text[n : n+len(p.Name)], Value: text[v : v+len(p.Value)]})
	}
	headers := reqs[0].Headers[:0]
	if cap(headers) < len(st.hdrs) {
		headers = make([]mapping.Param, 0, 2)
	}
	for _, h := range st.hdrs {
		headers = append(headers, mapping.Param{Name: h.Name, Value: text[hdrAt : hdrAt+len(h.Value)]})
		hdrAt += len(h.Value)
	}
	reqs[0] = mapping.Request{Method: "GET", Endpoint: path, URL: text[:urlEnd], Params: params, Headers: headers}
	dst.Requests = reqs
}

// unreserved marks the bytes url.QueryEscape leaves as they are.
var unreserved = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
	}
	return t
}()

// escapeAt appends s escaped like url.QueryEscape and returns where it starts in b when
// escaping left it unchanged, or -1.
func escapeAt(b []byte, s string) ([]byte, int) {
	const upperhex = "0123456789ABCDEF"
	start, at := 0, len(b)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved[c] {
			continue
		}
		at = -1
		b = append(b, s[start:i]...)
		if c == ' ' {
			b = append(b, '+')
		} else {
			b = append(b, '%', upperhex[c>>4], upperhex[c&15])
		}
		start = i + 1
	}
	return append(b, s[start:]...), at
}

// aheadBy renders a positive number of milliseconds as the engine's message does.
func aheadBy(ms int64) string {
	if ms < 48*3600*1000 {
		return (time.Duration(ms) * time.Millisecond).String()
	}
	return strconv.FormatInt(ms/(24*3600*1000), 10) + " days"
}
