package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/labstack/echo/v4"
	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
)

// work is the pooled scratch space of one ingest request.
type work struct {
	raw      []byte // compressed body
	body     []byte // the JSON body
	gz       *gzip.Reader
	p        parser
	entries  []queue.Entry
	rejected []rejection
	adjusted []rejection // events the edge changed (a clamped timestamp), listed in the answer
	keys     []string
	ctx      []byte // scratch for a merged context that gets the client's ip
	ip       []byte // the client's address as a JSON string
}

// rejection is an event of an accepted request that was quarantined (dead-lettered).
type rejection struct {
	Index   int    `json:"index"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

var (
	errNoKey   = &reqError{http.StatusUnauthorized, "missing_write_key", "no write key: send it as the HTTP Basic user name (writeKey: with an empty password) or as writeKey in the body"}
	okBody     = []byte(`{"success":true}`)
	errFull    = &reqError{http.StatusServiceUnavailable, "store_full", "the queue is full; retry after the Retry-After delay"}
	errClosed  = &reqError{http.StatusServiceUnavailable, "shutting_down", "the queue is closed while the server shuts down; retry after the Retry-After delay"}
	errStore   = &reqError{http.StatusInternalServerError, "store_error", "the events could not be stored; retry later"}
	errTimeout = &reqError{http.StatusServiceUnavailable, "store_timeout", "storing the events took too long; retry after the Retry-After delay"}
	errUnavail = &reqError{http.StatusServiceUnavailable, "store_unavailable", "the queue's servers did not acknowledge the events; retry after the Retry-After delay"}
)

// ingestHandler handles one route: authenticate, read and validate the body, normalise and
// append the entries, answer.
func (s *Server) ingestHandler(rt route) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := s.now()
		w := s.pool.Get().(*work)
		srcName, outcome := "", "ok"
		defer func() {
			s.metrics.requests.WithLabelValues(rt.path, srcName, outcome).Inc()
			s.metrics.latency.WithLabelValues(rt.path).Observe(s.now().Sub(start).Seconds())
			w.release()
			s.pool.Put(w)
		}()
		fail := func(e *reqError) error {
			outcome = e.code
			if e.status == http.StatusServiceUnavailable || e.status == http.StatusTooManyRequests {
				c.Response().Header().Set("Retry-After", s.retryHdr)
			}
			if e.status >= 500 {
				s.log.Warn("ingest refused", "route", rt.path, "source", srcName, "code", e.code, "status", e.status)
			} else {
				s.log.Debug("ingest refused", "route", rt.path, "source", srcName, "code", e.code, "message", e.msg, "client", clientIP(c.Request(), s.keys.Load().trusted).String())
			}
			return writeError(c, e)
		}
		r := c.Request()
		// The body deadline runs from the end of the headers; it stays when the request is
		// refused, so the server's wait for an unread body is bounded by it too.
		lift := s.bodyDeadline(c)

		// A key in a header (or a beacon's query) is checked before the body is read, and
		// the request takes an in-flight slot only once its key is known good. A request
		// without one is read within the unauthenticated cap and takes its slot after its
		// body named a good key, so clients that never authenticate cannot hold the slots.
		key := headerKey(r)
		if key == "" && rt.beacon {
			key = r.URL.Query().Get("writeKey")
		}
		var src *Source
		var release func()
		defer func() {
			if release != nil {
				release()
			}
		}()
		if key != "" {
			if src = s.lookup(key); src == nil {
				return fail(errUnknownKey)
			}
			srcName = src.Name
			if release = slot(s.sem, s.metrics.inFlight); release == nil {
				return fail(errOverloaded)
			}
		} else if release = slot(s.anon, s.metrics.anon); release == nil {
			return fail(errAnonFull)
		}

		limit := s.limits.MaxRequestBytes
		dlimit := s.limits.MaxDecompressedBytes
		if !rt.batch {
			limit, dlimit = s.limits.MaxEventBytes, s.limits.MaxEventBytes
		}
		if e := w.read(r, rt, limit, dlimit); e != nil {
			if e == errBodySlow || e == errHungUp {
				c.Response().Header().Set("Connection", "close")
			}
			return fail(e)
		}
		lift()
		w.p.reset(w.body, &s.limits)
		var ok bool
		if rt.batch {
			ok = w.p.parseBatch()
		} else {
			ok = w.p.parseEvent()
		}
		if !ok {
			return fail(w.p.err)
		}
		if rt.batch {
			if _, has := w.p.rootGet(fBatch); !has {
				return fail(&reqError{http.StatusBadRequest, "missing_batch", `the body has no "batch" array; send {"batch":[event, ...]}`})
			}
			if len(w.p.events) == 0 {
				return fail(&reqError{http.StatusBadRequest, "empty_batch", `the "batch" array is empty; send at least one event`})
			}
		}

		if src == nil {
			key = w.bodyKey()
			if key == "" {
				return fail(errNoKey)
			}
			if src = s.lookup(key); src == nil {
				return fail(errUnknownKey)
			}
			srcName = src.Name
			release()
			if release = slot(s.sem, s.metrics.inFlight); release == nil {
				return fail(errOverloaded)
			}
		}
		if s.keys.Load().cors.refuse(r.Header.Get("Origin"), src) {
			return fail(errOrigin)
		}

		recv := s.now().UTC()
		var ip []byte
		if a := clientIP(r, s.keys.Load().trusted); a.IsValid() {
			ip = strconv.AppendQuote(w.ip[:0], a.String())
			w.ip = ip
		}
		if e := s.build(w, rt, src, recv, r.Header.Get("SentAt"), ip); e != nil {
			return fail(e)
		}
		s.protect(w, src)
		// The append is not abandoned when the client hangs up (browsers close the socket
		// of a beacon or keepalive request on navigation): the events are stored and counted,
		// and the request is counted client_closed. The write timeout bounds it instead.
		actx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeouts.Write)
		res, err := s.store.Append(actx, w.entries)
		cancel()
		if err != nil {
			switch {
			case errors.Is(err, queue.ErrFull):
				return fail(errFull)
			case errors.Is(err, queue.ErrClosed):
				return fail(errClosed)
			case errors.Is(err, queue.ErrUnavailable):
				return fail(errUnavail)
			case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
				return fail(errTimeout)
			}
			s.log.Error("ingest: store append failed", "route", rt.path, "source", srcName, "events", len(w.entries), "err", err)
			return fail(errStore)
		}
		ev := s.metrics.events
		for _, x := range [...]struct {
			name string
			n    int
		}{{"queued", res.Queued}, {"filtered", res.Filtered}, {"rejected", res.Rejected}, {"duplicate", res.Duplicates}} {
			if x.n > 0 {
				ev.WithLabelValues(rt.path, srcName, x.name).Add(float64(x.n))
			}
		}
		if n := len(w.adjusted); n > 0 {
			s.metrics.clamped.WithLabelValues(rt.path, srcName).Add(float64(n))
		}
		if r.Context().Err() != nil {
			outcome = "client_closed" // stored, but nobody is left to be answered
		}
		if len(w.rejected) == 0 && len(w.adjusted) == 0 {
			return c.JSONBlob(http.StatusOK, okBody)
		}
		body, _ := json.Marshal(struct {
			Success  bool        `json:"success"`
			Rejected []rejection `json:"rejected,omitempty"`
			Adjusted []rejection `json:"adjusted,omitempty"`
		}{true, w.rejected, w.adjusted})
		return c.JSONBlob(http.StatusOK, body)
	}
}

// release drops references the pooled work must not keep.
func (w *work) release() {
	clear(w.entries)
	w.entries = w.entries[:0]
	w.rejected = w.rejected[:0]
	w.adjusted = w.adjusted[:0]
	w.p.data = nil
	if cap(w.body) > 4*DefaultMaxRequestBytes {
		w.body = nil
	}
}

// read reads the body, decompressing gzip, enforcing the limits while reading.
func (w *work) read(r *http.Request, rt route, limit, dlimit int) *reqError {
	tooBig := func() *reqError {
		if !rt.batch {
			return &reqError{http.StatusRequestEntityTooLarge, "event_too_large", "the event body is over the limit of " + strconv.Itoa(limit) + " bytes per event; trim its properties"}
		}
		return &reqError{http.StatusRequestEntityTooLarge, "request_too_large", "the request body is over the limit of " + strconv.Itoa(limit) + " bytes; send smaller batches"}
	}
	if r.ContentLength > int64(limit) {
		return tooBig()
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	switch enc {
	case "", "identity":
		b, over, err := readLimited(w.body[:0], r.Body, limit)
		w.body = b
		if over {
			return tooBig()
		}
		if err != nil {
			return readErr(err)
		}
		return nil
	case "gzip", "x-gzip":
	default:
		return &reqError{http.StatusUnsupportedMediaType, "unsupported_encoding", "Content-Encoding " + strconv.Quote(enc) + " is not supported; send the body uncompressed or gzip-compressed"}
	}
	raw, over, err := readLimited(w.raw[:0], r.Body, limit)
	w.raw = raw
	if over {
		return tooBig()
	}
	if err != nil {
		return readErr(err)
	}
	if w.gz == nil {
		w.gz = new(gzip.Reader)
	}
	if err := w.gz.Reset(bytes.NewReader(raw)); err != nil {
		return &reqError{http.StatusBadRequest, "bad_gzip", "the body is labelled Content-Encoding: gzip but is not gzip data (" + err.Error() + ")"}
	}
	b, over, err := readLimited(w.body[:0], w.gz, dlimit)
	w.body = b
	if over {
		return &reqError{http.StatusRequestEntityTooLarge, "decompressed_too_large", "the gzip body decompresses to more than " + strconv.Itoa(dlimit) + " bytes; send smaller batches"}
	}
	if err != nil {
		return &reqError{http.StatusBadRequest, "bad_gzip", "the gzip body is corrupt or truncated (" + err.Error() + ")"}
	}
	return nil
}

// errHungUp is the outcome of a request whose client closed the connection before its body
// arrived; nobody reads the answer, but the metrics and the log tell it from a bad body.
var errHungUp = &reqError{http.StatusBadRequest, "client_closed", "the connection closed before the whole body arrived; send it again"}

// readErr classifies an error reading the body: the body deadline passed, the client hung
// up, or the body is malformed.
func readErr(err error) *reqError {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errBodySlow
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		return errHungUp
	}
	return &reqError{http.StatusBadRequest, "body_read_error", "the body could not be read (" + err.Error() + "); send it again"}
}

// readLimited appends r's content to dst, reading at most limit+1 bytes; over reports that
// the content is longer than limit.
func readLimited(dst []byte, r io.Reader, limit int) (b []byte, over bool, err error) {
	for {
		if len(dst) == cap(dst) {
			n := max(2*cap(dst), 4096)
			if n > limit+1 {
				n = limit + 1
			}
			if n <= len(dst) {
				return dst, true, nil
			}
			dst = append(dst[:cap(dst)], make([]byte, n-cap(dst))...)[:len(dst)]
		}
		room := dst[len(dst):min(cap(dst), limit+1)]
		if len(room) == 0 {
			return dst, len(dst) > limit, nil
		}
		n, err := r.Read(room)
		dst = dst[:len(dst)+n]
		if len(dst) > limit {
			return dst, true, nil
		}
		if err == io.EOF {
			return dst, false, nil
		}
		if err != nil {
			return dst, false, err
		}
	}
}

// bodyKey returns the write key carried in the body: the wrapper's writeKey, else the first
// event's (analytics.js puts it in every event).
func (w *work) bodyKey() string {
	p := &w.p
	if m, ok := p.rootGet(fWriteKey); ok {
		return jsonString(p.data[m.valStart:m.valEnd])
	}
	if len(p.events) > 0 {
		if m, ok := p.get(&p.events[0], fWriteKey); ok {
			return jsonString(p.data[m.valStart:m.valEnd])
		}
	}
	return ""
}

// jsonString decodes a JSON string value (already validated); "" for other values.
func jsonString(raw []byte) string {
	if len(raw) < 2 || raw[0] != '"' {
		return ""
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	return gjson.Parse(string(raw)).Str
}

// bstr views b as a string without copying; b must not change while the string is used.
func bstr(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

const tsLayout = "2006-01-02T15:04:05.000Z07:00"

// batchCtx is what the wrapper contributes to each event.
type batchCtx struct {
	context, integrations []byte // raw JSON objects, nil when absent
	sentAt                []byte // raw JSON value of the wrapper's sentAt (or the SentAt header, quoted)
	recv                  time.Time
	recvJSON              []byte // "2006-01-02T15:04:05.000Z", quoted
	ip                    []byte // the client's address as a JSON string, set as context.ip when the event has none; nil when unknown
}

// build normalises every event into one new buffer (the entries' Event bytes share it),
// filling w.entries and w.rejected. Mapping happens at delivery (Source.Map), so what is
// stored is the event as received and normalised, and a mapping fix applies to the backlog.
// ip is the client's address as a JSON string (nil when unknown).
func (s *Server) build(w *work, rt route, src *Source, recv time.Time, hdrSentAt string, ip []byte) *reqError {
	p := &w.p
	bc := batchCtx{recv: recv, ip: ip}
	bc.recvJSON = recv.AppendFormat(append(make([]byte, 0, 32), '"'), tsLayout)
	bc.recvJSON = append(bc.recvJSON, '"')
	if rt.batch {
		if m, ok := p.rootGet(fContext); ok && p.data[m.valStart] == '{' {
			bc.context = p.data[m.valStart:m.valEnd]
		}
		if m, ok := p.rootGet(fIntegrations); ok && p.data[m.valStart] == '{' {
			bc.integrations = p.data[m.valStart:m.valEnd]
		}
		if m, ok := p.rootGet(fSentAt); ok && p.data[m.valStart] == '"' {
			bc.sentAt = p.data[m.valStart:m.valEnd]
		}
	}
	if bc.sentAt == nil && hdrSentAt != "" {
		bc.sentAt = strconv.AppendQuote(nil, hdrSentAt)
	}
	// One allocation for every normalised event: the body plus room for the added fields.
	out := make([]byte, 0, len(p.data)+len(p.events)*(200+len(bc.context)+len(bc.integrations)+len(ip)))
	for i := range p.events {
		ev := &p.events[i]
		startOff := len(out)
		var msgID, visitor, code, msg, clamped string
		out, msgID, visitor, code, msg, clamped = s.normalise(out, w, ev, rt, &bc)
		event := out[startOff:len(out):len(out)]
		if code != "" && !rt.batch {
			return &reqError{http.StatusBadRequest, code, msg}
		}
		if clamped != "" {
			w.adjusted = append(w.adjusted, rejection{i, "timestamp_out_of_range", "the event time " + clamped +
				" is before 2000-01-01T00:00:00Z or over 366 days after receivedAt; timestamp is receivedAt instead (fix the client's clock or the time it sends)"})
		}
		if src.Unordered {
			visitor = "" // no ordering key: delivery sends each event on its own
		}
		e := queue.Entry{Source: src.Name, MessageID: msgID, Visitor: visitor, Received: recv, Event: event}
		if code != "" {
			e.Outcome, e.Reason = queue.Rejected, code+": "+msg
			w.rejected = append(w.rejected, rejection{i, code, msg})
		}
		w.entries = append(w.entries, e)
	}
	return nil
}

// present reports whether a raw JSON value counts as an id: anything but null and "".
func present(raw []byte) bool {
	return len(raw) > 0 && string(raw) != "null" && string(raw) != `""`
}

// normalise appends event ev, normalised, to out. It returns the messageId, the visitor key,
// for an event that must be quarantined a code and message, and, when the event time was out
// of range and replaced by receivedAt, the value it had (shortened).
//
// The event keeps its members in order, except that: type comes from the path on single-event
// routes; a missing messageId is generated, and a numeric one becomes its text; the wrapper's
// context and integrations are merged in (the event's own keys win); writeKey is dropped (no
// secrets on disk); and the time fields are rewritten at the end — originalTimestamp (the
// event's, else its timestamp), sentAt (the event's, else the wrapper's, else the SentAt
// header), receivedAt (now) and timestamp: kept when the event has both timestamp and
// originalTimestamp, else corrected for clock skew as receivedAt − (sentAt −
// originalTimestamp) when both parse, else originalTimestamp, else receivedAt; and receivedAt
// when the mapping would read it as a time out of range (inRange).
func (s *Server) normalise(out []byte, w *work, ev *object, rt route, bc *batchCtx) ([]byte, string, string, string, string, string) {
	p := &w.p
	d := p.data
	val := func(f field) []byte {
		if m, ok := p.get(ev, f); ok {
			return d[m.valStart:m.valEnd]
		}
		return nil
	}
	typ, msgRaw := val(fType), val(fMessageID)
	ts, ots, sent := val(fTimestamp), val(fOriginalTimestamp), val(fSentAt)
	userID, anonymousID := val(fUserID), val(fAnonymousID)
	var code, msg string
	if !present(userID) && !present(anonymousID) {
		code, msg = "missing_id", "the event has neither userId nor anonymousId; set anonymousId (or userId once the user is known)"
	}
	if rt.typ == "" && (len(typ) < 2 || typ[0] != '"') && code == "" {
		code, msg = "missing_type", `the event has no "type"; set it to track, identify, page, screen, group or alias`
	}
	if rt.typ == "" && code == "" && !knownType(typ) {
		code, msg = "unknown_type", "the event's type "+shorten(typ)+" is not track, identify, page, screen, group or alias; fix the call that sends it"
	}
	// A string messageId is kept; a number is kept as its text (an SDK's retry carries the
	// same one, so it must dedup); anything else is replaced by a generated one.
	msgID, msgNum := "", false
	switch {
	case len(msgRaw) > 2 && msgRaw[0] == '"':
		msgID = jsonString(msgRaw)
	case len(msgRaw) > 0 && (msgRaw[0] == '-' || isDigit(msgRaw[0])):
		msgID, msgNum = string(msgRaw), true
	}

	out = append(out, '{')
	n := 0
	sep := func() {
		if n > 0 {
			out = append(out, ',')
		}
		n++
	}
	if rt.typ != "" {
		sep()
		out = append(out, `"type":"`...)
		out = append(out, rt.typ...)
		out = append(out, '"')
	}
	if msgID == "" {
		msgID = s.newID()
		sep()
		out = append(out, `"messageId":`...)
		out = strconv.AppendQuote(out, msgID)
	}
	for j := ev.memLo; j < ev.memHi; j++ {
		m := p.members[j]
		if m.f != fNone && int(ev.at[m.f])-1 != j-ev.memLo {
			if m.f == fUserID || m.f == fAnonymousID || m.f == fBatch {
				sep()
				out = append(out, d[m.keyStart:m.valEnd]...)
			}
			continue // a later duplicate of a field the edge rewrites
		}
		switch m.f {
		case fWriteKey, fTimestamp, fOriginalTimestamp, fSentAt, fReceivedAt:
			continue
		case fType:
			if rt.typ != "" {
				continue
			}
		case fMessageID:
			if msgNum {
				sep()
				out = append(out, `"messageId":`...)
				out = strconv.AppendQuote(out, msgID)
				continue
			}
			if len(msgRaw) <= 2 || msgRaw[0] != '"' {
				continue
			}
		case fContext:
			v := d[m.valStart:m.valEnd]
			if bc.context != nil {
				sep()
				out = append(out, `"context":`...)
				if bc.ip == nil || hasIP(bc.context) || v[0] == '{' && hasIP(v) {
					out = w.merge(out, v, bc.context)
				} else {
					w.ctx = w.merge(w.ctx[:0], v, bc.context)
					out = appendWithIP(out, w.ctx, bc.ip)
				}
				continue
			}
			if bc.ip != nil && (v[0] == '{' && !hasIP(v) || string(v) == "null") {
				sep()
				out = append(out, `"context":`...)
				if v[0] == '{' {
					out = appendWithIP(out, v, bc.ip)
				} else {
					out = appendWithIP(out, []byte("{}"), bc.ip)
				}
				continue
			}
		case fIntegrations:
			if bc.integrations != nil {
				sep()
				out = append(out, `"integrations":`...)
				out = w.merge(out, d[m.valStart:m.valEnd], bc.integrations)
				continue
			}
		}
		sep()
		out = append(out, d[m.keyStart:m.valEnd]...)
	}
	if ev.at[fContext] == 0 {
		switch {
		case bc.context != nil && (bc.ip == nil || hasIP(bc.context)):
			sep()
			out = append(out, `"context":`...)
			out = append(out, bc.context...)
		case bc.context != nil:
			sep()
			out = append(out, `"context":`...)
			out = appendWithIP(out, bc.context, bc.ip)
		case bc.ip != nil:
			sep()
			out = append(out, `"context":{"ip":`...)
			out = append(out, bc.ip...)
			out = append(out, '}')
		}
	}
	if ev.at[fIntegrations] == 0 && bc.integrations != nil {
		sep()
		out = append(out, `"integrations":`...)
		out = append(out, bc.integrations...)
	}

	orig := ots
	if orig == nil {
		orig = ts
	}
	if sent == nil || sent[0] != '"' {
		sent = bc.sentAt
	}
	if orig != nil {
		sep()
		out = append(out, `"originalTimestamp":`...)
		out = append(out, orig...)
	}
	if sent != nil {
		sep()
		out = append(out, `"sentAt":`...)
		out = append(out, sent...)
	}
	sep()
	out = append(out, `"receivedAt":`...)
	out = append(out, bc.recvJSON...)
	sep()
	out = append(out, `"timestamp":`...)
	at := len(out)
	var event time.Time
	known := false // event holds the time written
	switch {
	case ts != nil && ots != nil:
		out = append(out, ts...)
	case orig != nil:
		if o, ok := parseTime(orig); ok {
			if st, ok := parseTime(sent); ok {
				event, known = bc.recv.Add(-st.Sub(o)), true
				out = append(out, '"')
				out = event.UTC().AppendFormat(out, tsLayout)
				out = append(out, '"')
				break
			}
		}
		out = append(out, orig...)
	default:
		out = append(out, bc.recvJSON...)
	}
	if !known {
		event, known = eventTime(out[at:])
	}
	clamped := ""
	if known && !inRange(event, bc.recv) {
		clamped = shorten(out[at:])
		out = append(out[:at], bc.recvJSON...)
	}
	out = append(out, '}')
	return out, msgID, visitorKey(userID, anonymousID), code, msg, clamped
}

// knownType reports whether raw, a JSON string, is one of the six calls, in any case
// (RudderStack's SDKs have sent "TRACK"; the presets read the type case-insensitively).
func knownType(raw []byte) bool {
	typ := bstr(raw[1 : len(raw)-1])
	if bytes.IndexByte(raw, '\\') >= 0 {
		typ = jsonString(raw)
	}
	for _, k := range [...]string{"track", "identify", "page", "screen", "group", "alias"} {
		if strings.EqualFold(typ, k) {
			return true
		}
	}
	return false
}

// shorten returns a raw JSON value for a message, cut to 40 bytes.
func shorten(raw []byte) string {
	if len(raw) > 40 {
		return string(raw[:37]) + "..."
	}
	return string(raw)
}

// The range of event times the edge lets through (inRange); the mapping's contract decides
// within it (a preset may accept up to 366 days ahead, and rejects later ones).
var minEventTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxEventAhead = 366 * 24 * time.Hour

// inRange reports whether an event time is sane: not before 2000-01-01T00:00:00Z (epoch 0,
// Go's zero time, a negative epoch are client bugs) and at most 366 days after receivedAt.
func inRange(t, recv time.Time) bool {
	return !t.Before(minEventTime) && !t.After(recv.Add(maxEventAhead))
}

// eventTime reads a raw JSON time as the mapping's epoch_ms does (ISO-8601, epoch seconds or
// milliseconds); ok is false when the mapping could not read it either (it rejects it then).
func eventTime(raw []byte) (t time.Time, ok bool) {
	var v mapping.Value
	switch {
	case len(raw) >= 2 && raw[0] == '"' && bytes.IndexByte(raw, '\\') < 0:
		v = mapping.Value{Kind: mapping.String, Text: bstr(raw[1 : len(raw)-1])}
	case len(raw) >= 2 && raw[0] == '"':
		v = mapping.Value{Kind: mapping.String, Text: jsonString(raw)}
	case len(raw) > 0 && (raw[0] == '-' || isDigit(raw[0])):
		v = mapping.Value{Kind: mapping.Number, Text: bstr(raw)}
	default:
		return time.Time{}, false
	}
	ms, err := mapping.EpochMillis(v)
	if err != nil {
		return time.Time{}, false
	}
	return time.UnixMilli(ms), true
}

// visitorKey is the ordering key of an event at the edge: its userId when present, else its
// anonymousId. Delivery keeps the events of one key in order; it is known before mapping, so
// the queue can index it when the event is stored.
func visitorKey(userID, anonymousID []byte) string {
	switch {
	case present(userID):
		return "u:" + idText(userID)
	case present(anonymousID):
		return "a:" + idText(anonymousID)
	}
	return ""
}

// idText is an id's text: a JSON string unquoted, any other value (a number, say) as written.
func idText(raw []byte) string {
	if raw[0] == '"' {
		return jsonString(raw)
	}
	return string(raw)
}

// parseTime parses a JSON string holding an RFC 3339 time.
func parseTime(raw []byte) (time.Time, bool) {
	if len(raw) < 2 || raw[0] != '"' || bytes.IndexByte(raw, '\\') >= 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, bstr(raw[1:len(raw)-1]))
	return t, err == nil
}

// merge appends the merge of two JSON objects: every member of ev, then the members of
// batch whose names ev lacks. When ev is not an object, batch wins.
func (w *work) merge(out, ev, batch []byte) []byte {
	if len(ev) == 0 || ev[0] != '{' {
		return append(out, batch...)
	}
	evObj := gjson.Parse(bstr(ev))
	w.keys = w.keys[:0]
	out = append(out, '{')
	n := 0
	evObj.ForEach(func(k, v gjson.Result) bool {
		w.keys = append(w.keys, k.Str)
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = append(out, k.Raw...)
		out = append(out, ':')
		out = append(out, v.Raw...)
		return true
	})
	gjson.Parse(bstr(batch)).ForEach(func(k, v gjson.Result) bool {
		for _, have := range w.keys {
			if have == k.Str {
				return true
			}
		}
		if n > 0 {
			out = append(out, ',')
		}
		n++
		out = append(out, k.Raw...)
		out = append(out, ':')
		out = append(out, v.Raw...)
		return true
	})
	return append(out, '}')
}
