package jetstream

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/woorelay/woorelay/queue/jetstream/natstest"
)

// TestDedupWindowMemory measures what the dedup window costs the NATS server: 100,000 message
// ids like woorelay's (source and a UUID messageId) are published to a stream with a 1 h
// window and the messages removed; what the server's heap keeps is the window's map. The
// README quotes the figure (about 130 bytes per id per replica); the test fails above 512.
func TestDedupWindowMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 100,000 messages")
	}
	srv := natstest.Run(t)
	nc := connect(t, srv.URL())
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "DD", Subjects: []string{"DD.>"}, Storage: jetstream.MemoryStorage, Duplicates: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const n = 100_000
	for i := range n {
		m := nats.NewMsg("DD.q.1")
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("3:web:%08x-1c2d-4e5f-8a9b-%012x", i, i))
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			// In rounds of 1,000: more outstanding than the client allows stalls it on a
			// busy machine.
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	if err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	per := (int64(heap()) - int64(before)) / n
	t.Logf("the dedup window holds %d bytes per message id", per)
	if per > 512 {
		t.Errorf("%d bytes per message id; the README says about 130", per)
	}
}
