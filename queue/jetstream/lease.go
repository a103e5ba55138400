package jetstream

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/woorelay/woorelay/queue"
)

// leaseLoop renews this relay's presence and leases every LeaseTTL/3 and moves partitions as
// relays come and go, until ctx ends.
func (q *Queue) leaseLoop(ctx context.Context) {
	defer close(q.loopDone)
	t := time.NewTicker(q.o.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			q.round(ctx)
		}
	}
}

func leaseKey(p int) string { return "p." + strconv.Itoa(p) }

// assigned is the rendezvous hash of a partition over the live relays: every relay computes
// the same owner from the same member list, and a relay joining or leaving moves only the
// partitions it wins or held.
func assigned(members []string, p int) string {
	var best string
	var bestH uint64
	for _, m := range members {
		h := fnv.New64a()
		h.Write([]byte(m))
		h.Write([]byte{'/'})
		h.Write([]byte(strconv.Itoa(p)))
		if v := mix(h.Sum64()); best == "" || v > bestH {
			best, bestH = m, v
		}
	}
	return best
}

// mix is splitmix64's finaliser: FNV of short keys that differ in one byte is too
// correlated to rank members fairly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// round is one pass of the lease protocol.
func (q *Queue) round(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, q.o.LeaseTTL/3)
	defer cancel()
	me := []byte(q.o.Instance)
	if _, err := q.leases.Put(rctx, "m."+q.o.Instance, me); err != nil {
		if ctx.Err() == nil {
			q.log.Warn("renewing this relay's presence failed", "err", err)
		}
	}
	members := []string{q.o.Instance}
	if l, err := q.leases.ListKeysFiltered(rctx, "m.*"); err == nil {
		for k := range l.Keys() {
			if m := strings.TrimPrefix(k, "m."); m != q.o.Instance {
				members = append(members, m)
			}
		}
		sort.Strings(members)
	}
	now := time.Now()
	var held []*renewal
	for p := range q.o.Partitions {
		want := assigned(members, p) == q.o.Instance
		q.mu.Lock()
		pt := q.parts[p]
		q.mu.Unlock()
		if pt == nil {
			if want {
				q.acquire(rctx, p)
			}
			continue
		}
		if pt.releasing && now.After(pt.releaseAt) {
			q.drop(p, true)
			continue
		}
		held = append(held, &renewal{p: p, pt: pt, want: want})
	}
	// Every lease is renewed at once: a round costs one round trip to the store, not one per
	// partition, so a slow store (a busy machine, a leader election) does not make the last
	// partitions' renewals late.
	var wg sync.WaitGroup
	for _, r := range held {
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, q.o.LeaseTTL/3)
			defer cancel()
			r.sent = time.Now()
			r.rev, r.err = q.renew(rctx, r.p, r.pt.rev)
		})
	}
	wg.Wait()
	for _, r := range held {
		p, pt := r.p, r.pt
		switch err := r.err; {
		case err == nil:
			q.mu.Lock()
			pt.rev, pt.renewed, pt.valid = r.rev, now, r.sent.Add(q.o.LeaseTTL/2)
			q.mu.Unlock()
		case errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyNotFound) || now.Sub(pt.renewed) > q.o.LeaseTTL*2/3:
			q.log.Warn("lost the lease of a partition; another relay delivers it", "partition", p, "err", err)
			q.drop(p, false)
			continue
		default:
			q.log.Warn("renewing a partition's lease failed; retrying", "partition", p, "err", err)
		}
		if !r.want && !pt.releasing {
			q.log.Info("giving a partition up to a relay that joined", "partition", p, "grace", q.o.Grace)
			q.mu.Lock()
			pt.releasing, pt.releaseAt = true, now.Add(q.o.Grace)
			q.mu.Unlock()
			pt.stop()
		}
	}
}

// renewal is one partition's lease renewal in a round.
type renewal struct {
	p    int
	pt   *part
	want bool // the rendezvous hash still gives this relay the partition
	sent time.Time
	rev  uint64
	err  error
}

// renew updates partition p's lease from revision rev. When the store has a later revision
// that is still this relay's (an earlier renewal that timed out here but was stored), it
// renews from that one: the lease was never another relay's.
func (q *Queue) renew(ctx context.Context, p int, rev uint64) (uint64, error) {
	me := []byte(q.o.Instance)
	n, err := q.leases.Update(ctx, leaseKey(p), me, rev)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return n, err
	}
	e, gerr := q.leases.Get(ctx, leaseKey(p))
	if gerr != nil || string(e.Value()) != q.o.Instance {
		return 0, err
	}
	return q.leases.Update(ctx, leaseKey(p), me, e.Revision())
}

// acquire takes partition p's lease if it is free (or still this relay's) and starts
// reading the partition.
func (q *Queue) acquire(ctx context.Context, p int) {
	me := []byte(q.o.Instance)
	sent := time.Now()
	rev, err := q.leases.Create(ctx, leaseKey(p), me)
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Held: by another relay (wait for it to expire or be given up), or by this one from
		// before a lost renewal.
		e, gerr := q.leases.Get(ctx, leaseKey(p))
		if gerr != nil || string(e.Value()) != q.o.Instance {
			return
		}
		rev, err = q.leases.Update(ctx, leaseKey(p), me, e.Revision())
	}
	if err != nil {
		return
	}
	rctx, stop := context.WithCancel(context.Background())
	pt := &part{rev: rev, renewed: time.Now(), valid: sent.Add(q.o.LeaseTTL / 2), stop: stop, done: make(chan struct{}), room: make(chan struct{}, 1)}
	q.mu.Lock()
	q.parts[p] = pt
	q.mu.Unlock()
	q.log.Info("delivering a partition", "partition", p)
	go q.read(rctx, p, pt)
}

// drop forgets partition p and its items; with release it deletes the lease so another relay
// takes it at once.
func (q *Queue) drop(p int, release bool) {
	q.mu.Lock()
	pt := q.parts[p]
	if pt == nil {
		q.mu.Unlock()
		return
	}
	delete(q.parts, p)
	for _, r := range q.recs {
		if r.part == p {
			q.removeLocked(r)
		}
	}
	q.mu.Unlock()
	pt.stop()
	<-pt.done
	if release {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := q.leases.Delete(ctx, leaseKey(p), jetstream.LastRevision(pt.rev)); err != nil {
			q.log.Warn("giving a partition's lease up failed; it expires", "partition", p, "err", err)
		}
	}
}

// read loads partition p: the retry states of its items, then every message it holds, from
// the first, through an ordered consumer: one without acknowledgements that notices a
// delivery lost on the way (a gap in its sequence, missed heartbeats, a reconnect) and
// starts again after the last message it gave out. The stream, not the consumer, says what
// is pending, so nothing is acknowledged to it; a hold waits while it has MaxPending items.
// Delivered items are held for delivery; filtered and rejected ones are finished here.
func (q *Queue) read(ctx context.Context, p int, pt *part) {
	defer close(pt.done)
	for ctx.Err() == nil {
		err := q.readOnce(ctx, p, pt)
		if ctx.Err() != nil {
			return
		}
		q.log.Warn("reading a partition failed; retrying in 1s", "partition", p, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (q *Queue) readOnce(ctx context.Context, p int, pt *part) error {
	states := map[uint64]state{}
	w, err := q.states.WatchFiltered(ctx, []string{strconv.Itoa(p) + ".*"}, jetstream.IgnoreDeletes())
	if err != nil {
		return err
	}
	// The states are read with a deadline, like every other call: a server that sends nothing
	// for 10 s makes the reader start again (on another server once the connection moved).
	timeout := time.NewTimer(2 * callTimeout)
	defer timeout.Stop()
read:
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				break read
			}
			_, s, _ := strings.Cut(e.Key(), ".")
			sseq, _ := strconv.ParseUint(s, 10, 64)
			if st, err := decodeState(e.Value(), "state "+e.Key()); err == nil {
				states[sseq] = st
			}
			timeout.Reset(2 * callTimeout)
		case <-timeout.C:
			_ = w.Stop()
			return fmt.Errorf("reading the retry states of partition %d: nothing for %s", p, 2*callTimeout)
		}
	}
	_ = w.Stop()
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{q.subject(p)}, DeliverPolicy: jetstream.DeliverAllPolicy,
		NamePrefix: fmt.Sprintf("%s_p%d_%s_%d", q.o.Stream, p, q.o.Instance, q.readers.Add(1))}
	if pt.next > 0 { // after a read error: the items before are held or finished
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, pt.next
	}
	cons, err := q.js.OrderedConsumer(ctx, q.o.Stream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return err
	}
	stopped := make(chan struct{})
	defer close(stopped)
	go func() {
		select {
		case <-ctx.Done():
			it.Stop()
		case <-stopped:
		}
	}()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(stallCheck))
		if errors.Is(err, nats.ErrTimeout) && ctx.Err() == nil {
			// Quiet for a while: if the stream holds a message of the partition this reader
			// has not given out, the consumer stalled (a pull request or its deliveries lost
			// with a server, unnoticed by the client): read again from there.
			if q.unread(ctx, p, pt.next) {
				it.Stop()
				if info := cons.CachedInfo(); info != nil {
					dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_ = q.js.DeleteConsumer(dctx, q.o.Stream, info.Name)
					cancel()
				}
				return errStalled
			}
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			it.Stop()
			return err
		}
		q.take(ctx, p, pt, msg, states)
	}
}

// stallCheck is how long a partition's reader waits for a message before it asks the stream
// whether it missed one.
const stallCheck = 5 * time.Second

var errStalled = errors.New("queue/jetstream: the partition's consumer stopped delivering messages the stream holds")

// unread reports whether the stream holds a message of partition p at sequence from or later.
func (q *Queue) unread(ctx context.Context, p int, from uint64) bool {
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := q.items.GetMsg(gctx, max(from, 1), jetstream.WithGetMsgSubject(q.subject(p)))
	return err == nil
}

// take handles one message read from partition p.
func (q *Queue) take(ctx context.Context, p int, pt *part, msg jetstream.Msg, states map[uint64]state) {
	md, err := msg.Metadata()
	if err != nil {
		return
	}
	sseq := md.Sequence.Stream
	q.mu.Lock()
	_, dup := q.bySSeq[sseq]
	q.mu.Unlock()
	if dup {
		return // a redelivery of an item held
	}
	r := &rec{sseq: sseq, part: p, pt: pt}
	e, derr := decodeEntry(msg.Data(), "item "+strconv.FormatUint(sseq, 10))
	var finish func() error
	switch {
	case derr != nil:
		r.entry = queue.Entry{Event: msg.Data()}
		finish = func() error { return q.deadLetter(r, q.o.Clock(), queue.Failure{Reason: derr.Error()}) }
	case e.Outcome == queue.Filtered:
		r.entry = e
		finish = func() error { return q.finish(r, cFiltered) }
	case e.Outcome == queue.Rejected:
		r.entry = e
		at := q.o.Clock()
		if n, err := strconv.ParseInt(msg.Headers().Get("Woorelay-At"), 10, 64); err == nil {
			at = time.Unix(0, n).UTC()
		}
		finish = func() error { return q.deadLetter(r, at, queue.Failure{Reason: e.Reason}) }
	}
	if finish != nil {
		for ctx.Err() == nil {
			if err := finish(); err == nil {
				pt.next = sseq + 1
				return
			} else {
				q.log.Warn("finishing a filtered or rejected event failed; retrying", "item", sseq, "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
		return
	}
	r.entry = e
	if st, ok := states[sseq]; ok {
		r.st, r.hasState = st, true
	}
	q.mu.Lock()
	for pt.held >= q.o.MaxPending && q.parts[p] == pt {
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-pt.room:
		}
		q.mu.Lock()
	}
	if q.parts[p] != pt || pt.releasing {
		q.mu.Unlock()
		return
	}
	pt.held++
	pt.next = sseq + 1
	q.nextSeq++
	r.seq = q.nextSeq
	q.recs[r.seq] = r
	q.bySSeq[sseq] = r.seq
	q.order = append(q.order, r.seq)
	q.byVisitor[e.Visitor] = append(q.byVisitor[e.Visitor], r.seq)
	q.mu.Unlock()
	q.signal()
}
