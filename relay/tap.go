package relay

import (
	"context"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/queue"
)

// Tap watches events go through the relay: what ingest stored, what delivery's mapping made
// of each event, and every request to Woopra with its answer. It is the seam a debugger
// plugs into.
//
// Its methods are called on the hot paths of ingest and delivery, from many goroutines: they
// must return at once (hand off to a bounded buffer and drop what does not fit, never block)
// and must not modify their arguments. Ingested must copy what it keeps (ingest reuses its
// entries); what Mapped and Attempted are given is never reused or modified by delivery, so
// they may keep it as it is.
type Tap interface {
	// Ingested is called after each Append of one ingest request: its entries (normalised
	// events, unmapped), what the queue did with them, or the error that refused them all.
	Ingested(entries []queue.Entry, res queue.AppendResult, err error)
	// Mapped is called when delivery has mapped a stored event: the requests it became, or
	// the reason it was filtered, or the error that dead-letters it.
	Mapped(e queue.Entry, reqs []queue.Request, filtered string, err error)
	// Attempted is called after each request to Woopra with its outcome.
	Attempted(r queue.Request, a destination.Attempt)
}

// tapStore is the queue as ingest's store, telling the tap about every Append.
type tapStore struct {
	q   queue.Queue
	tap Tap
}

// Append implements server.Store.
func (s tapStore) Append(ctx context.Context, entries []queue.Entry) (queue.AppendResult, error) {
	res, err := s.q.Append(ctx, entries)
	s.tap.Ingested(entries, res, err)
	return res, err
}

// tapSender is delivery's client, telling the tap about every attempt.
type tapSender struct {
	s   destination.Sender
	tap Tap
}

// Send implements destination.Sender.
func (s tapSender) Send(ctx context.Context, r queue.Request) destination.Attempt {
	a := s.s.Send(ctx, r)
	s.tap.Attempted(withoutAuth(r), a)
	return a
}

// bothTaps tells a and b (a may be nil) about everything.
func bothTaps(a, b Tap) Tap {
	if a == nil {
		return b
	}
	return twoTaps{a, b}
}

type twoTaps struct{ a, b Tap }

func (t twoTaps) Ingested(entries []queue.Entry, res queue.AppendResult, err error) {
	t.a.Ingested(entries, res, err)
	t.b.Ingested(entries, res, err)
}

func (t twoTaps) Mapped(e queue.Entry, reqs []queue.Request, filtered string, err error) {
	t.a.Mapped(e, reqs, filtered, err)
	t.b.Mapped(e, reqs, filtered, err)
}

func (t twoTaps) Attempted(r queue.Request, a destination.Attempt) {
	t.a.Attempted(r, a)
	t.b.Attempted(r, a)
}
