package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/jetstream/natstest"
)

// The gray-failure tests hang a NATS node (natstest.Faults freezes its traffic, as SIGSTOP of
// its process would: connections stay open, nothing is answered) under a load of appends
// like ingest's: 16 callers with 50-event batches, half of them with a 2 s deadline of their
// own (a client that times out), half with none (a client that waits for ever).

// grayLoad appends batches from 16 goroutines until stop, recording the slowest answer.
type grayLoad struct {
	slowest atomic.Int64 // ns
	oks     atomic.Int64
	fails   atomic.Int64
	wg      sync.WaitGroup
}

func (l *grayLoad) run(q *Queue, stop <-chan struct{}) {
	var n atomic.Int64
	for w := range 16 {
		l.wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				batch := make([]queue.Entry, 50)
				k := n.Add(1)
				for i := range batch {
					batch[i] = queue.Entry{Source: "s", MessageID: fmt.Sprintf("b%d-%d", k, i), Visitor: fmt.Sprintf("w%d-%d", w, i%5), Event: []byte(`{}`), Received: time.Now()}
				}
				ctx, cancel := context.Background(), context.CancelFunc(func() {})
				if w%2 == 0 {
					ctx, cancel = context.WithTimeout(ctx, 2*time.Second)
				}
				start := time.Now()
				_, err := q.Append(ctx, batch)
				cancel()
				d := time.Since(start)
				for old := l.slowest.Load(); int64(d) > old && !l.slowest.CompareAndSwap(old, int64(d)); old = l.slowest.Load() {
				}
				if err == nil {
					l.oks.Add(1)
				} else {
					l.fails.Add(1)
					if !errors.Is(err, queue.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
						panic(fmt.Sprintf("append: %v, want ErrUnavailable or the caller's deadline", err))
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
		})
	}
}

// wait waits for the load's appends to return, failing the test if one is still unanswered
// after 15 s.
func (l *grayLoad) wait(t *testing.T) {
	t.Helper()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatalf("appends still unanswered 15s after the load stopped (slowest answered one %s)", time.Duration(l.slowest.Load()))
	}
}

// openOn opens a queue connected to node i of c first (it learns the others from it).
func openOn(t *testing.T, c *natstest.Cluster, i int, stream string) *Queue {
	t.Helper()
	q, err := Open(Options{URL: c.URL(i), Stream: stream, Partitions: 4, Replicas: 3, MemoryStorage: true, Logger: quiet, Instance: "gray"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() })
	return q
}

// onFollower opens a queue on a stream of c connected to a node that does not lead the
// stream, and returns it, that node and the leader.
func onFollower(t *testing.T, c *natstest.Cluster, stream string) (*Queue, int, int) {
	t.Helper()
	q := openOn(t, c, 0, stream)
	leader := c.Leader(stream)
	if leader < 0 {
		t.Fatal("the stream has no leader")
	}
	if leader != 0 {
		return q, 0, leader
	}
	_ = q.Close()
	return openOn(t, c, 1, stream), 1, leader
}

// waitOK waits up to timeout for an append of one event to succeed.
func waitOK(t *testing.T, q *Queue, timeout time.Duration, what string) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		_, err := q.Append(context.Background(), []queue.Entry{{Source: "s", MessageID: fmt.Sprintf("probe-%d-%d", start.UnixNano(), i), Visitor: "p", Event: []byte(`{}`)}})
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: appends still fail after %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestHungLeaderThenBack: the items stream's leader hangs for 12 s while a relay connected to
// another node appends, then comes back. Every append is answered (stored, or ErrUnavailable)
// within 10 s, the hung leader's lost acknowledgements do not fill the publish window for
// good, Ready reports the failing appends, and appends succeed again within 30 s of the
// cluster having a working leader, and after the old leader returns.
func TestHungLeaderThenBack(t *testing.T) {
	if testing.Short() {
		t.Skip("hangs a NATS node for seconds; skipped with -short")
	}
	c := natstest.RunFaultCluster(t, 3)
	q, _, leader := onFollower(t, c, "HANG")
	waitOK(t, q, 10*time.Second, "before the hang")
	var l grayLoad
	stop := make(chan struct{})
	l.run(q, stop)
	time.Sleep(time.Second)
	c.Faults.Freeze(leader)
	sawNotReady := false
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if q.Ready() != nil {
			sawNotReady = true
		}
	}
	c.Faults.Thaw(leader)
	// A leader is working by now (a new one, or the old one back): the relay serves again.
	took := waitOK(t, q, 30*time.Second, "after the leader came back")
	time.Sleep(3 * time.Second)
	close(stop)
	l.wait(t)
	if s := time.Duration(l.slowest.Load()); s > 10*time.Second {
		t.Errorf("the slowest append took %s, want every one answered within 10s", s)
	}
	if !sawNotReady {
		t.Error("Ready never reported the failing appends while the leader hung")
	}
	// The last appends of the load may have failed on a slow machine; the next one, or the
	// probe of the stream's leader, makes the queue ready again.
	waitOK(t, q, 30*time.Second, "after the load")
	for deadline := time.Now().Add(30 * time.Second); q.Ready() != nil; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("Ready 30s after the leader came back = %v", q.Ready())
		}
	}
	t.Logf("leader n%d hung 12 s: %d appends stored, %d refused, slowest %s; serving again %s after the thaw",
		leader+1, l.oks.Load(), l.fails.Load(), time.Duration(l.slowest.Load()).Round(time.Millisecond), took.Round(time.Millisecond))
}

// TestHungFollower: the node a relay is connected to (not the stream's leader) hangs. Every
// append is answered within 10 s, and the connection moves to another node within 15 s,
// where appends succeed.
func TestHungFollower(t *testing.T) {
	if testing.Short() {
		t.Skip("hangs a NATS node for seconds; skipped with -short")
	}
	c := natstest.RunFaultCluster(t, 3)
	q, node, _ := onFollower(t, c, "FOLLOW")
	name := c.Nodes[node].Opts.ServerName
	waitOK(t, q, 10*time.Second, "before the hang")
	var l grayLoad
	stop := make(chan struct{})
	l.run(q, stop)
	time.Sleep(time.Second)
	hung := time.Now()
	c.Faults.Freeze(node)
	defer c.Faults.Thaw(node)
	var moved time.Duration
	for time.Since(hung) < 15*time.Second {
		if q.nc.IsConnected() && q.nc.ConnectedServerName() != name {
			moved = time.Since(hung)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if moved == 0 {
		t.Fatalf("the connection is still on the hung node %s after 15s", name)
	}
	took := waitOK(t, q, 15*time.Second, "after the connection moved")
	close(stop)
	l.wait(t)
	if s := time.Duration(l.slowest.Load()); s > 10*time.Second {
		t.Errorf("the slowest append took %s, want every one answered within 10s", s)
	}
	if !strings.HasPrefix(q.nc.ConnectedServerName(), "n") {
		t.Errorf("connected to %q", q.nc.ConnectedServerName())
	}
	t.Logf("follower %s hung: connection moved to %s after %s; appends stored again %s later; %d stored, %d refused, slowest %s",
		name, q.nc.ConnectedServerName(), moved.Round(time.Millisecond), took.Round(time.Millisecond), l.oks.Load(), l.fails.Load(), time.Duration(l.slowest.Load()).Round(time.Millisecond))
}
