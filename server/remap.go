package server

import (
	"time"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
)

// Remap maps a stored entry's event again with the source's current program, as ingest would
// now: it is how a dead letter is replayed after a preset or mapping fix. The entry keeps its
// source, messageId, event and receipt time; its outcome, visitor, reason and requests are
// replaced.
func (s *Source) Remap(e queue.Entry, now time.Time) queue.Entry {
	res := s.Program.Run(e.Event, now)
	out := queue.Entry{Source: e.Source, MessageID: e.MessageID, Received: e.Received, Event: e.Event}
	switch res.Outcome {
	case mapping.Send:
		if len(res.Requests) == 0 {
			out.Outcome, out.Reason = queue.Filtered, "the mapping produced no request"
			break
		}
		out.Outcome = queue.Deliver
		out.Visitor = s.Program.Visitor(res.Requests[0])
		out.Requests = convertRequests(res.Requests)
	case mapping.Skipped:
		out.Outcome, out.Reason = queue.Filtered, res.Reason
	default:
		out.Outcome, out.Reason = queue.Rejected, res.Code+": "+res.Error
	}
	return out
}
