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
	ID        uint64    `json:"id"`
	Source    string    `json:"source"`
	MessageID string    `json:"message_id"`
	Visitor   string    `json:"visitor,omitempty"`
	Type      string    `json:"type"`
	Name      string    `json:"name,omitempty"`
	Received  time.Time `json:"received"`
	Updated   time.Time `json:"updated"`
	Outcome   string    `json:"outcome"`
	Code      string    `json:"code,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Replays   int       `json:"replays,omitempty"`
	// Duplicates counts the times the event was sent again with the same messageId (the
	// queue drops those).
	Duplicates int       `json:"duplicates,omitempty"`
	Requests   []request `json:"requests,omitempty"`
	event      []byte
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
	return request{Method: q.Method, URL: q.URL}
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

// summary is the record as the stream sends it: without the raw event.
func (r *record) json() []byte {
	r.describe()
	for i := range r.Requests {
		r.Requests[i].parse()
	}
	b, _ := json.Marshal(r)
	return b
}
