package debugger

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/tidwall/gjson"
	"github.com/woorelay/woorelay/queue"
)

// record is one event in the ring, as the page shows it.
type record struct {
	ID        uint64 `json:"id"`
	Source    string `json:"source"`
	MessageID string `json:"message_id"`
	// Seq orders the records as the page lists them, latest first: the record's place when it
	// was added, and again when it is replayed (a replayed event moves to the top).
	Seq uint64 `json:"seq"`
	// Visitor is the visitor as Woopra knows it: the cv_id, else the cookie, else the cv_email
	// its request sent, or, when it became none, the id the queue orders it by.
	Visitor string `json:"visitor,omitempty"`
	// key is the queue's ordering key (u:userId, a:anonymousId).
	key      string
	Type     string    `json:"type"`
	Name     string    `json:"name,omitempty"`
	Received time.Time `json:"received"`
	Updated  time.Time `json:"updated"`
	Outcome  string    `json:"outcome"`
	// Stage says where a dead letter was made: "edge" (rejected at ingest), "mapping"
	// (rejected when mapped for delivery) or "delivery" (Woopra refused it, or the retries
	// ran out).
	Stage   string `json:"stage,omitempty"`
	Code    string `json:"code,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Replays int    `json:"replays,omitempty"`
	// Duplicates counts the times the event was sent again with the same messageId (the
	// queue drops those).
	Duplicates int `json:"duplicates,omitempty"`
	// DuplicateAt is when the latest duplicate came.
	DuplicateAt time.Time `json:"duplicate_at,omitzero"`
	Requests    []request `json:"requests,omitempty"`
	// Earlier are the requests of the deliveries before the latest replay, with their
	// attempts, oldest first (at most maxEarlier).
	Earlier []request `json:"earlier,omitempty"`
	event   []byte
	// described is set once Type and Name have been read from event: only when the record is
	// first shown, so that ingest does not pay for parsing events nobody looks at.
	described bool
}

// describe reads the event's type and name from its JSON, once.
func (r *record) describe() {
	if r.described {
		return
	}
	r.described = true
	r.Type = gjson.GetBytes(r.event, "type").String()
	r.Name = gjson.GetBytes(r.event, "event").String()
	if r.Name == "" {
		r.Name = gjson.GetBytes(r.event, "name").String()
	}
}

// request is one request an event became, with every attempt at it.
type request struct {
	Method   string      `json:"method"`
	Endpoint string      `json:"endpoint"`
	URL      string      `json:"url"`
	Params   [][2]string `json:"params"`
	Headers  [][2]string `json:"headers,omitempty"` // the HTTP headers sent with it (User-Agent, ...)
	Done     bool        `json:"done"`
	Attempts []attempt   `json:"attempts,omitempty"`
}

// attempt is one answer of Woopra (or why none came).
type attempt struct {
	At         time.Time `json:"at"`
	Status     int       `json:"status"`
	LatencyMS  float64   `json:"latency_ms"`
	Class      string    `json:"class"`
	RetryAfter string    `json:"retry_after,omitempty"`
	Body       string    `json:"body,omitempty"`
	Error      string    `json:"error,omitempty"`
}

func (a attempt) reason() string {
	switch {
	case a.Error != "" && a.Status != 0:
		return fmt.Sprintf("woopra answered %d %s: %s", a.Status, http.StatusText(a.Status), a.Error)
	case a.Error != "":
		return a.Error
	}
	return fmt.Sprintf("woopra answered %d %s", a.Status, http.StatusText(a.Status))
}

// newRequest records a queued request; its endpoint and parameters are read back from the URL
// when the record is first shown (see request.parse).
func newRequest(q queue.Request) request {
	r := request{Method: q.Method, URL: q.URL}
	for _, h := range q.Headers {
		r.Headers = append(r.Headers, [2]string{h.Name, h.Value})
	}
	return r
}

// parse reads the request's endpoint and parameters, in their order, from its URL, once.
func (r *request) parse() {
	if r.Params != nil {
		return
	}
	r.Params = [][2]string{}
	u, err := url.Parse(r.URL)
	if err != nil {
		return
	}
	r.Endpoint = u.Path
	r.Params = queryParams(u.RawQuery)
}

// queryParams decodes a query string keeping the parameters' order.
func queryParams(raw string) [][2]string {
	out := [][2]string{}
	for raw != "" {
		var kv string
		kv, raw, _ = cut(raw, '&')
		if kv == "" {
			continue
		}
		k, v, _ := cut(kv, '=')
		k, _ = url.QueryUnescape(k)
		v, _ = url.QueryUnescape(v)
		out = append(out, [2]string{k, v})
	}
	return out
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// maxEarlier bounds the earlier deliveries a record keeps.
const maxEarlier = 8

// summary is the record as the stream sends it: without the raw event.
func (r *record) json() []byte {
	r.describe()
	for i := range r.Requests {
		r.Requests[i].parse()
	}
	for i := range r.Earlier {
		r.Earlier[i].parse()
	}
	r.Visitor = r.visitor()
	b, _ := json.Marshal(r)
	return b
}

// visitor is the visitor as Woopra got it: the cv_id, cookie or cv_email of the event's
// latest requests (or of its earlier ones), else its ordering key without the u:/a: prefix.
func (r *record) visitor() string {
	for _, qs := range [][]request{r.Requests, r.Earlier} {
		for _, name := range []string{"cv_id", "cookie", "cv_email"} {
			for _, q := range qs {
				for _, p := range q.Params {
					if p[0] == name && p[1] != "" {
						return p[1]
					}
				}
			}
		}
	}
	if len(r.key) > 2 && r.key[1] == ':' {
		return r.key[2:]
	}
	return r.key
}
