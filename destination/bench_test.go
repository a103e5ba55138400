package destination

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

type noopSender struct{}

func (noopSender) Send(context.Context, queue.Request) Attempt {
	return Attempt{Class: Done, Status: 200}
}

const benchWorkers = 32

// fillQueue appends n single-request items spread over visitors with at most 16 items each
// (below PerVisitor, so the fake queue's linear ScanVisitor stays out of the measurement).
func fillQueue(n int, base string) *fakeQueue {
	q := newFakeQueue()
	visitors := n/16 + 1
	entries := make([]queue.Entry, 0, n)
	for i := range n {
		v := "v" + strconv.Itoa(i%visitors)
		entries = append(entries, queue.Entry{Visitor: v, Requests: []queue.Request{{Method: "GET",
			URL:     base + "/track/ce?project=bench.example&event=purchase&cookie=" + v + "&ce_i=" + strconv.Itoa(i),
			Headers: []queue.Header{{Name: "User-Agent", Value: "Mozilla/5.0 (bench)"}}}}})
	}
	_, _ = q.Append(context.Background(), entries)
	return q
}

// drain runs a dispatcher over q until it is empty and returns the elapsed time.
func drain(b *testing.B, q *fakeQueue, s Sender) time.Duration {
	d := NewDispatcher(q, s, DispatcherOptions{Workers: benchWorkers, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- d.Run(ctx) }()
	for q.Counters().Queued > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	return elapsed
}

// BenchmarkDispatcher measures items/s through the dispatcher: with a no-op Sender (the
// scheduling cost alone), and with the real Client against a local server answering 200,
// beside a bare loop of the same GETs from the same number of goroutines over the same
// Client; client_ratio = dispatcher / bare.
func BenchmarkDispatcher(b *testing.B) {
	b.Run("noop", func(b *testing.B) {
		q := fillQueue(b.N, "http://woopra.test")
		b.ResetTimer()
		elapsed := drain(b, q, noopSender{})
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "items/s")
	})
	b.Run("client", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
			fmt.Fprint(w, `{"success":1}`)
		}))
		defer srv.Close()
		c := NewClient(ClientOptions{Conns: benchWorkers})
		q := fillQueue(b.N, srv.URL)
		reqs := make([]queue.Request, 0, b.N)
		for _, it := range q.items {
			reqs = append(reqs, it.Entry.Requests[0])
		}
		b.ResetTimer()
		elapsed := drain(b, q, c)
		b.StopTimer()

		var next atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for range benchWorkers {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < int64(len(reqs)); i = next.Add(1) - 1 {
					if a := c.Send(context.Background(), reqs[i]); a.Class != Done {
						b.Errorf("bare send: %s %v", a.Class, a.Err)
						return
					}
				}
			})
		}
		wg.Wait()
		bare := time.Since(start)
		b.ReportMetric(float64(b.N)/elapsed.Seconds(), "items/s")
		b.ReportMetric(float64(b.N)/bare.Seconds(), "bare_req/s")
		b.ReportMetric(bare.Seconds()/elapsed.Seconds(), "client_ratio")
	})
}
