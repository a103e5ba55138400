package destination

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// fakeQueue is an in-memory queue.Queue that records the delivery side's calls and checks
// them: finishing an item twice, or one that is not pending, is a violation.
type fakeQueue struct {
	mu       sync.Mutex
	seq      uint64
	order    []uint64 // seqs in append order (ascending); finished ones are skipped
	items    map[uint64]*queue.Item
	dead     []queue.DeadLetter
	deadSeq  map[uint64]queue.Failure
	counters queue.Counters
	appended chan struct{}

	done       []uint64               // Done calls, in order
	filtered   []uint64               // Filter calls
	progress   map[uint64][]int       // Progress calls per seq
	retrying   map[uint64][]time.Time // Retrying calls per seq (first-attempt time passed)
	violations []string
	failWrites error // when set, Done, Progress, Retrying and Dead fail with it
	scans      int
	vscans     int
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{
		items:    map[uint64]*queue.Item{},
		deadSeq:  map[uint64]queue.Failure{},
		appended: make(chan struct{}, 1),
		progress: map[uint64][]int{},
		retrying: map[uint64][]time.Time{},
	}
}

func (q *fakeQueue) Append(_ context.Context, entries []queue.Entry) (queue.AppendResult, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var res queue.AppendResult
	for _, e := range entries {
		q.counters.Received++
		switch e.Outcome {
		case queue.Filtered:
			q.counters.Filtered++
			res.Filtered++
			continue
		case queue.Rejected:
			q.counters.DeadLettered++
			res.Rejected++
			q.dead = append(q.dead, queue.DeadLetter{ID: uint64(len(q.dead) + 1), Entry: e, Failure: queue.Failure{Reason: e.Reason}})
			continue
		}
		q.seq++
		q.items[q.seq] = &queue.Item{Seq: q.seq, Entry: e}
		q.order = append(q.order, q.seq)
		q.counters.Queued++
		res.Queued++
	}
	if res.Queued > 0 {
		select {
		case q.appended <- struct{}{}:
		default:
		}
	}
	return res, nil
}

// add appends one deliverable entry and returns its Seq.
func (q *fakeQueue) add(visitor string, reqs ...queue.Request) uint64 {
	_, _ = q.Append(context.Background(), []queue.Entry{{Visitor: visitor, Requests: reqs, Event: []byte(`{"e":1}`), Received: time.Now()}})
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.seq
}

func (q *fakeQueue) scan(after uint64, limit int, keep func(*queue.Item) bool) []queue.Item {
	i := sort.Search(len(q.order), func(i int) bool { return q.order[i] > after })
	var out []queue.Item
	for ; i < len(q.order) && len(out) < limit; i++ {
		it, ok := q.items[q.order[i]]
		if ok && keep(it) {
			c := *it
			c.Entry.Requests = append([]queue.Request(nil), it.Entry.Requests...)
			out = append(out, c)
		}
	}
	return out
}

func (q *fakeQueue) Scan(after uint64, limit int) ([]queue.Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.scans++
	return q.scan(after, limit, func(*queue.Item) bool { return true }), nil
}

func (q *fakeQueue) ScanVisitor(visitor string, after uint64, limit int) ([]queue.Item, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.vscans++
	return q.scan(after, limit, func(it *queue.Item) bool { return it.Entry.Visitor == visitor }), nil
}

func (q *fakeQueue) Appended() <-chan struct{} { return q.appended }

func (q *fakeQueue) pending(op string, seq uint64) (*queue.Item, error) {
	if q.failWrites != nil {
		return nil, q.failWrites
	}
	it, ok := q.items[seq]
	if !ok {
		q.violations = append(q.violations, fmt.Sprintf("%s(%d) on an item that is not pending", op, seq))
		return nil, fmt.Errorf("item %d not pending", seq)
	}
	return it, nil
}

func (q *fakeQueue) Done(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, err := q.pending("Done", seq); err != nil {
		return err
	}
	delete(q.items, seq)
	q.done = append(q.done, seq)
	q.counters.Delivered++
	q.counters.Queued--
	return nil
}

func (q *fakeQueue) Filter(seq uint64, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, err := q.pending("Filter", seq); err != nil {
		return err
	}
	delete(q.items, seq)
	q.filtered = append(q.filtered, seq)
	q.counters.Filtered++
	q.counters.Queued--
	return nil
}

func (q *fakeQueue) Progress(seq uint64, n int) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, err := q.pending("Progress", seq)
	if err != nil {
		return err
	}
	if n <= it.NextRequest || (len(it.Entry.Requests) > 0 && n >= len(it.Entry.Requests)) {
		q.violations = append(q.violations, fmt.Sprintf("Progress(%d, %d) with NextRequest %d of %d requests", seq, n, it.NextRequest, len(it.Entry.Requests)))
	}
	it.NextRequest = n
	q.progress[seq] = append(q.progress[seq], n)
	return nil
}

func (q *fakeQueue) Retrying(seq uint64, attempts int, first time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, err := q.pending("Retrying", seq)
	if err != nil {
		return err
	}
	if attempts != it.Attempts+1 {
		q.violations = append(q.violations, fmt.Sprintf("Retrying(%d, %d) after %d attempts", seq, attempts, it.Attempts))
	}
	it.Attempts, it.FirstAttempt = attempts, first
	q.retrying[seq] = append(q.retrying[seq], first)
	return nil
}

func (q *fakeQueue) Dead(seq uint64, f queue.Failure) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, err := q.pending("Dead", seq)
	if err != nil {
		return err
	}
	delete(q.items, seq)
	q.deadSeq[seq] = f
	q.dead = append(q.dead, queue.DeadLetter{ID: uint64(len(q.dead) + 1), At: time.Now(), Entry: it.Entry, Failure: f})
	q.counters.DeadLettered++
	q.counters.Queued--
	return nil
}

func (q *fakeQueue) DeadLetters(after uint64, limit int) ([]queue.DeadLetter, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []queue.DeadLetter
	for _, d := range q.dead {
		if d.ID > after && len(out) < limit {
			out = append(out, d)
		}
	}
	return out, nil
}

func (q *fakeQueue) DeadLetter(id uint64) (queue.DeadLetter, bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, d := range q.dead {
		if d.ID == id {
			return d, true, nil
		}
	}
	return queue.DeadLetter{}, false, nil
}

func (q *fakeQueue) Replay(ids []uint64, remap func(queue.Entry) (queue.Entry, error)) (int, error) {
	return 0, errors.New("fakeQueue: Replay not supported")
}

func (q *fakeQueue) Counters() queue.Counters {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.counters
}

func (q *fakeQueue) Close() error { return nil }

// snapshot helpers for assertions

func (q *fakeQueue) failure(seq uint64) (queue.Failure, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f, ok := q.deadSeq[seq]
	return f, ok
}

func (q *fakeQueue) isPending(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	_, ok := q.items[seq]
	return ok
}

func (q *fakeQueue) retries(seq uint64) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.retrying[seq])
}

func (q *fakeQueue) problems() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]string(nil), q.violations...)
}

// setItem changes a pending item as a previous run would have left it.
func (q *fakeQueue) setItem(seq uint64, f func(*queue.Item)) {
	q.mu.Lock()
	defer q.mu.Unlock()
	f(q.items[seq])
}

var _ queue.Queue = (*fakeQueue)(nil)
