package server

import (
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
)

// Map runs the source's program on a stored entry's event (checked at ingest, so its JSON is
// not scanned again), as delivery does just before sending: Send becomes Deliver with the
// requests, Skipped becomes Filtered and Rejected a dead letter, each with "code: message" in
// Reason. The event's receipt time is the mapping's clock, so the same event maps the same way
// whenever it is delivered. res is scratch space
// reused between calls (one per goroutine); the requests are copied out of it. The entry's
// Visitor (its ordering key, set at ingest) is left as it is.
func (s *Source) Map(res *mapping.Result, e *queue.Entry) {
	s.Program.RunStoredInto(res, e.Event, e.Received)
	e.Requests, e.Reason = nil, ""
	switch res.Outcome {
	case mapping.Send:
		if len(res.Requests) == 0 {
			e.Outcome, e.Reason = queue.Filtered, "no_request: the mapping produced no request"
			return
		}
		e.Outcome = queue.Deliver
		e.Requests = convertRequests(res.Requests)
	case mapping.Skipped:
		e.Outcome, e.Reason = queue.Filtered, res.Reason
	default:
		e.Outcome, e.Reason = queue.Rejected, res.Code+": "+res.Error
	}
}

// convertRequests copies mapped requests into the queue's form, headers sharing one slice.
func convertRequests(rs []mapping.Request) []queue.Request {
	out := make([]queue.Request, len(rs))
	n := 0
	for _, r := range rs {
		n += len(r.Headers)
	}
	hs := make([]queue.Header, 0, n)
	for i, r := range rs {
		lo := len(hs)
		for _, h := range r.Headers {
			hs = append(hs, queue.Header{Name: h.Name, Value: h.Value})
		}
		out[i] = queue.Request{Method: r.Method, URL: r.URL, Headers: hs[lo:len(hs):len(hs)]}
	}
	return out
}
