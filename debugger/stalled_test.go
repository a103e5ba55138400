package debugger_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/relay"
)

// startRelay runs a relay with its debugger following every event (the most it can cost the
// relay), delivering to an in-process emulator.
func startRelay(tb testing.TB) *relay.Relay {
	tb.Helper()
	em := emulator.New(emulator.Options{MaxRecords: -1, NoProfiles: true})
	url, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { stop(context.Background()) })
	r, err := relay.New(relay.Config{Listen: "127.0.0.1:0", DataDir: tb.TempDir(), WoopraURL: url, NoSync: true, Workers: 16, DebuggerFollow: -1})
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Stop(5 * time.Second) })
	return r
}

// stalledViewer opens the debugger's stream with a tiny receive buffer and never reads it, as
// a browser tab frozen in the background would; close ends it.
func stalledViewer(tb testing.TB, r *relay.Relay) (close func()) {
	tb.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	conn, err := d.Dial("tcp", strings.TrimPrefix(r.AdminURL(), "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /debugger/api/stream HTTP/1.1\r\nHost: %s\r\n\r\n", strings.TrimPrefix(r.AdminURL(), "http://"))
	line, err := bufio.NewReaderSize(conn, 16).ReadString('\n') // the status line, then no more reading
	if err != nil || !strings.Contains(line, "200") {
		tb.Fatalf("the stream answered %q, %v", line, err)
	}
	return func() { conn.Close() }
}

// ingest posts batches of 100 events from 4 clients and returns the events per second.
func ingest(tb testing.TB, r *relay.Relay, batches int, tag string) float64 {
	tb.Helper()
	bodies := make([][]byte, batches)
	for i := range bodies {
		var b bytes.Buffer
		b.WriteString(`{"batch":[`)
		for j := range 100 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"track","event":"Bench","userId":"u%d","messageId":"%s-%d-%d","properties":{"n":%d}}`, j%20, tag, i, j, j)
		}
		b.WriteString(`]}`)
		bodies[i] = b.Bytes()
	}
	var wg sync.WaitGroup
	next := make(chan []byte)
	start := time.Now()
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for body := range next {
				req, _ := http.NewRequest("POST", r.URL()+"/v1/batch", bytes.NewReader(body))
				req.SetBasicAuth("bench-key", "")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					tb.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					tb.Errorf("ingest answered %d", resp.StatusCode)
				}
			}
		}()
	}
	for _, b := range bodies {
		next <- b
	}
	close(next)
	wg.Wait()
	return float64(batches*100) / time.Since(start).Seconds()
}

type healthView struct {
	Viewers       int   `json:"viewers"`
	ViewerDropped int64 `json:"viewer_dropped"`
	Counters      struct {
		Received int64 `json:"received"`
	} `json:"counters"`
}

func readHealth(t *testing.T, r *relay.Relay) healthView {
	t.Helper()
	resp, err := http.Get(r.AdminURL() + "/debugger/api/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h healthView
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestStalledViewerLosesEventsNotTheRelay: with a viewer that never reads its stream, every
// event is still accepted and folded into the ring, and the stalled viewer's changes are
// dropped instead of queued without bound.
func TestStalledViewerLosesEventsNotTheRelay(t *testing.T) {
	r := startRelay(t)
	defer stalledViewer(t, r)()
	ingest(t, r, 40, "s")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		h := readHealth(t, r)
		if h.Viewers == 1 && h.ViewerDropped > 0 && h.Counters.Received == 4000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health: %+v; want 1 viewer with dropped changes and 4000 events received", h)
		}
	}
	resp, err := http.Get(r.AdminURL() + "/debugger/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ring struct {
		Events []struct {
			MessageID string `json:"message_id"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&ring); err != nil {
		t.Fatal(err)
	}
	if len(ring.Events) != 1000 {
		t.Errorf("the ring holds %d events, want its default 1000", len(ring.Events))
	}
}

// BenchmarkStalledViewer measures ingest with and without a debugger viewer that never reads
// its stream, alternating in the same run; "stalled/alone" is the ratio of their throughputs
// (1.0: the stalled viewer costs ingest nothing).
func BenchmarkStalledViewer(b *testing.B) {
	r := startRelay(b)
	ingest(b, r, 10, "warm")
	var alone, stalled float64
	for i := range b.N {
		withStalled := func() {
			stop := stalledViewer(b, r)
			stalled += ingest(b, r, 300, fmt.Sprint("s", i))
			stop()
		}
		if i%2 == 1 { // alternate which goes first, so neither always meets the other's backlog
			withStalled()
		}
		alone += ingest(b, r, 300, fmt.Sprint("a", i))
		if i%2 == 0 {
			withStalled()
		}
	}
	b.ReportMetric(alone/float64(b.N), "events/s-alone")
	b.ReportMetric(stalled/float64(b.N), "events/s-stalled")
	b.ReportMetric(stalled/alone, "stalled/alone")
}
