package jetstream

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/jetstream/natstest"
	"github.com/woorelay/woorelay/queue/queuetest"
)

// TestCountersUnderLoad: while two relays deliver a stream of events ingested at one (some
// filtered and some rejected at ingest, finished by the partition's holder), the other
// samples the cluster's counters as often as it can: every sample reconciles, none of Received and
// Delivered ever goes back, and the last one, once the load is delivered, counts every event
// exactly.
func TestCountersUnderLoad(t *testing.T) {
	srv := natstest.Run(t)
	rec := &recorder{failing: map[string]bool{}}
	r := startRelayWith(t, Options{URL: srv.URL(), Stream: "CTR", Partitions: 4, Logger: quiet, Instance: "a"}, rec)
	defer r.close(t)
	b := startRelayWith(t, Options{URL: srv.URL(), Stream: "CTR", Partitions: 4, Logger: quiet, Instance: "b"}, rec)
	defer b.close(t)
	reader := b.q
	const rounds, visitors = 40, 25
	var wg sync.WaitGroup
	var samples []queue.Counters
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			samples = append(samples, reader.Counters())
			time.Sleep(5 * time.Millisecond)
		}
	})
	want := map[queue.Outcome]int64{}
	for i := range rounds {
		var batch []queue.Entry
		for v := range visitors {
			o := queue.Deliver
			switch (i*visitors + v) % 10 {
			case 3:
				o = queue.Filtered
			case 7:
				o = queue.Rejected
			}
			e := queuetest.Entry("web", fmt.Sprintf("v%d-%d", v, i), fmt.Sprint("v", v), o, 200)
			if o == queue.Deliver {
				e.Requests[0].URL = fmt.Sprintf("https://woopra.test/ce?cookie=v%d&id=%d", v, i)
			}
			batch = append(batch, e)
			want[o]++
		}
		queuetest.MustAppend(t, r.q, batch...)
		time.Sleep(10 * time.Millisecond)
	}
	var last queue.Counters
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if last = reader.Counters(); last.Queued == 0 && last.Received == rounds*visitors {
			break
		}
	}
	close(stop)
	wg.Wait()
	bad := 0
	for i, c := range samples {
		if !c.Reconciles() {
			if bad++; bad <= 3 {
				t.Errorf("sample %d does not reconcile: %+v", i, c)
			}
		}
		if i > 0 && (c.Delivered < samples[i-1].Delivered || c.Received < samples[i-1].Received) {
			t.Errorf("sample %d went back: %+v after %+v", i, c, samples[i-1])
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d samples do not reconcile", bad, len(samples))
	}
	if last.Received != rounds*visitors || last.Delivered != want[queue.Deliver] || last.Filtered != want[queue.Filtered] || last.DeadLettered != want[queue.Rejected] || last.Queued != 0 {
		t.Errorf("counters once delivered: %+v; want %d received, %d delivered, %d filtered, %d dead-lettered", last, rounds*visitors, want[queue.Deliver], want[queue.Filtered], want[queue.Rejected])
	}
	rec.mu.Lock()
	if int64(len(rec.sent)) < want[queue.Deliver] {
		t.Errorf("%d sends, want at least %d", len(rec.sent), want[queue.Deliver])
	}
	rec.mu.Unlock()
	t.Logf("%d samples under load, %d not reconciling; last %+v", len(samples), bad, last)
}
