package jetstream

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/woorelay/woorelay/internal/natstest"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/queuetest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

var streams atomic.Int64

// backend opens queues on one in-process JetStream server, a fresh stream per store.
func backend(t *testing.T) queuetest.Backend {
	srv := natstest.Run(t)
	return queuetest.Backend{
		New: func(t testing.TB, cfg queuetest.Config) func(t testing.TB) queue.Queue {
			name := fmt.Sprintf("T%d", streams.Add(1))
			return func(t testing.TB) queue.Queue {
				q, err := Open(Options{URL: srv.URL(), Stream: name, Partitions: 4, DedupWindow: cfg.DedupWindow,
					Clock: cfg.Clock, Logger: quiet, LeaseTTL: 3 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = q.Close() })
				return q
			}
		},
		DedupWindow: 1500 * time.Millisecond,
		DedupSlack:  700 * time.Millisecond,
		RealTime:    true,
		Settle:      10 * time.Second,
	}
}

// TestSuite runs the behavioural suite queue/disk passes on an in-process JetStream server.
func TestSuite(t *testing.T) {
	queuetest.Run(t, backend(t))
}

func connect(t *testing.T, url string) *nats.Conn {
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
