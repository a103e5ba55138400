package disk

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
)

// BenchmarkAppend measures synced Appends of 20-event batches (~1.2 KB per event, unique
// message ids, so every event also writes its dedup keys) from 1, 16 and 64 concurrent writers,
// as concurrent HTTP requests would. It reports events/s and syncs (group commits) per call.
//
//	go test ./queue/disk -run '^$' -bench Append -benchtime 3s
func BenchmarkAppend(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			benchAppend(b, writers, Options{})
		})
	}
}

func benchAppend(b *testing.B, writers int, opts Options) {
	q := open(b, b.TempDir(), opts)
	const batchSize = 20
	// Pre-build the batches so the benchmark measures the queue, not the test's allocations.
	const distinct = 64
	batches := make([][]queue.Entry, distinct)
	for i := range batches {
		batches[i] = make([]queue.Entry, batchSize)
		for j := range batches[i] {
			batches[i][j] = entry("web", "", fmt.Sprint("visitor-", j), queue.Deliver, 1200)
		}
	}
	var next atomic.Int64
	var seq atomic.Int64
	commits := q.commits.Load()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			batch := make([]queue.Entry, batchSize)
			for next.Add(1) <= int64(b.N) {
				src := batches[seq.Load()%distinct]
				copy(batch, src)
				for j := range batch {
					batch[j].MessageID = fmt.Sprint("m-", seq.Add(1))
				}
				if _, err := q.Append(ctx, batch); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N*batchSize)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(q.commits.Load()-commits)/float64(b.N), "syncs/call")
}

// BenchmarkDone measures removing delivered items the way the dispatcher does: items read by
// Scan (so their removal needs no read), each removed by one of 32 concurrent workers.
func BenchmarkDone(b *testing.B) {
	q := open(b, b.TempDir(), Options{NoSync: true})
	const batchSize = 100
	for n := 0; n < b.N; n += batchSize {
		batch := make([]queue.Entry, batchSize)
		for j := range batch {
			batch[j] = entry("web", fmt.Sprint("m-", n+j), fmt.Sprint("visitor-", (n+j)%5000), queue.Deliver, 600)
		}
		if _, err := q.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	var items []queue.Item
	for after := uint64(0); ; {
		got, err := q.Scan(after, 1000)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		items = append(items, got...)
		after = got[len(got)-1].Seq
	}
	var next atomic.Int64
	writes := q.removalWrites.Load()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(items)); i = next.Add(1) - 1 {
				if err := q.Done(items[i].Seq); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(len(items))/float64(q.removalWrites.Load()-writes), "items/write")
	if c := q.Counters(); c.Queued != 0 {
		b.Fatalf("%d items left queued", c.Queued)
	}
}
