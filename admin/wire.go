// Package admin is the admin API of a running relay, its wire types and its client: the
// reconciling counters, the dead-letter store, and replay. The relay mounts API on its admin
// listener (an Echo instance from NewEcho), never on the ingest listener; `woorelay dlq`, the benchmarks and the end-to-end tests use Client. Each JSON shape
// is defined once, here, for both sides.
//
//	GET  /admin/counters          running totals and whether they reconcile (Counters)
//	GET  /admin/dlq?after=&limit= dead letters, oldest first (DeadLetterPage)
//	GET  /admin/dlq/:id           one dead letter, with its event and the failed request (DeadLetter)
//	POST /admin/dlq/replay        ReplayRequest: {"ids":[...]} or {"all":true} (ReplayResult)
//
// A replayed event goes back to the end of the delivery queue and is mapped again when it is
// delivered, with the source's current preset and mappings: replay after fixing Woopra, a
// setting or a mapping.
//
// With a token configured every call needs `Authorization: Bearer <token>`; without one the
// API answers only requests from the loopback interface. Errors are JSON Error values, the
// shape the ingest API uses.
package admin

import (
	"encoding/json"
	"time"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/queue"
)

// Counters is the wire form of queue.Counters, with whether they reconcile.
type Counters struct {
	Received     int64 `json:"received"`
	Delivered    int64 `json:"delivered"`
	DeadLettered int64 `json:"dead_lettered"`
	Filtered     int64 `json:"filtered"`
	Queued       int64 `json:"queued"`
	Duplicates   int64 `json:"duplicates"`
	Replayed     int64 `json:"replayed"`
	Reconciles   bool  `json:"reconciles"`
}

// CountersOf converts the queue's totals to their wire form.
func CountersOf(c queue.Counters) Counters {
	return Counters{c.Received, c.Delivered, c.DeadLettered, c.Filtered, c.Queued, c.Duplicates, c.Replayed, c.Reconciles()}
}

// Request is the wire form of a request to the destination.
type Request struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
}

// DeadLetter is the wire form of queue.DeadLetter. Lists leave Event and Requests out.
type DeadLetter struct {
	ID        uint64          `json:"id"`
	At        time.Time       `json:"at"`
	Source    string          `json:"source"`
	MessageID string          `json:"message_id,omitempty"`
	Visitor   string          `json:"visitor,omitempty"`
	Reason    string          `json:"reason"`
	Request   string          `json:"request,omitempty"`
	Status    int             `json:"status,omitempty"`
	Response  string          `json:"response,omitempty"`
	Attempts  int             `json:"attempts"`
	Received  time.Time       `json:"received"`
	Type      string          `json:"type,omitempty"`       // the event's type (track, page, ...)
	Name      string          `json:"event_name,omitempty"` // its event name, or a page's or screen's name
	Event     json.RawMessage `json:"event,omitempty"`
	Requests  []Request       `json:"requests,omitempty"`
}

// DeadLetterOf converts a dead letter to its wire form; full adds the event and its requests.
func DeadLetterOf(d queue.DeadLetter, full bool) DeadLetter {
	out := DeadLetter{
		ID: d.ID, At: d.At, Source: d.Entry.Source, MessageID: d.Entry.MessageID, Visitor: d.Entry.Visitor,
		Reason: d.Failure.Reason, Request: d.Failure.Request, Status: d.Failure.Status,
		Response: d.Failure.Response, Attempts: d.Failure.Attempts, Received: d.Entry.Received,
	}
	if ev := gjson.ParseBytes(d.Entry.Event); ev.IsObject() {
		out.Type = ev.Get("type").String()
		if out.Name = ev.Get("event").String(); out.Name == "" {
			out.Name = ev.Get("name").String()
		}
	}
	if full {
		if json.Valid(d.Entry.Event) {
			out.Event = json.RawMessage(d.Entry.Event)
		}
		for _, r := range d.Entry.Requests {
			rj := Request{Method: r.Method, URL: r.URL}
			for _, h := range r.Headers {
				if rj.Headers == nil {
					rj.Headers = map[string]string{}
				}
				rj.Headers[h.Name] = h.Value
			}
			out.Requests = append(out.Requests, rj)
		}
	}
	return out
}

// DeadLetterPage is the answer of GET /admin/dlq; Next, when not 0, is the after parameter of
// the following page.
type DeadLetterPage struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	Next        uint64       `json:"next,omitempty"`
}

// ReplayRequest is the body of POST /admin/dlq/replay: either IDs or All.
type ReplayRequest struct {
	IDs []uint64 `json:"ids"`
	All bool     `json:"all"`
}

// ReplayResult is the answer of POST /admin/dlq/replay.
type ReplayResult struct {
	Replayed int `json:"replayed"`
	Asked    int `json:"asked"`
	// Corrupt counts the letters left in place because they are corrupt queue records, not
	// events; Note says so in words.
	Corrupt int    `json:"corrupt,omitempty"`
	Note    string `json:"note,omitempty"`
}

// Error is the body of every error answer.
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
