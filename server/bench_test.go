package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/mapping/corpus"
	"github.com/woorelay/woorelay/queue"
)

// discardStore counts entries and keeps nothing.
type discardStore struct{ n int }

func (d *discardStore) Append(_ context.Context, es []queue.Entry) (queue.AppendResult, error) {
	d.n += len(es)
	return queue.AppendResult{Queued: len(es)}, nil
}

// benchBatches builds n Segment-style batches of 20 corpus events (~1.27 KB each).
func benchBatches(n int) [][]byte {
	events := corpus.Generate(1, n*20)
	out := make([][]byte, n)
	for i := range out {
		var b bytes.Buffer
		b.WriteString(`{"sentAt":"2024-12-31T23:59:59.000Z","batch":[`)
		for j, ev := range events[i*20 : i*20+20] {
			if j > 0 {
				b.WriteByte(',')
			}
			b.Write(ev)
		}
		b.WriteString(`]}`)
		out[i] = b.Bytes()
	}
	return out
}

// BenchmarkIngest compares the ingest handler (validation, normalisation, mapping with the
// default preset, one Append to a store that discards) with a bare Echo handler that reads the
// body and answers 200, over the same 20-event batches of corpus events. The two run
// interleaved in blocks of 25 requests, so a noisy machine slows both alike; each reports
// events/s and the ratio woorelay/bare. "inprocess" calls the handlers directly; "http" goes
// through a loopback HTTP server with a keep-alive client.
//
//	GOMAXPROCS=1 go test ./server -run '^$' -bench Ingest -benchtime 2000x -count 6
func BenchmarkIngest(b *testing.B) {
	batches := benchBatches(50)
	size := 0
	for _, bt := range batches {
		size += len(bt)
	}
	auth := basic(keyWeb)

	bare := echo.New()
	bare.POST("/v1/batch", func(c echo.Context) error {
		if _, err := io.ReadAll(c.Request().Body); err != nil {
			return err
		}
		return c.JSONBlob(200, okBody)
	})
	st := &discardStore{}
	s, err := New(Options{Sources: testSources(b), Store: st, Registerer: prometheus.NewRegistry(), Now: func() time.Time { return testNow }})
	if err != nil {
		b.Fatal(err)
	}

	compare := func(b *testing.B, send func(side, i int)) {
		b.SetBytes(int64(size / len(batches)))
		b.ReportAllocs()
		var spent [2]time.Duration
		const block = 25
		b.ResetTimer()
		for done := 0; done < b.N; done += block {
			n := min(block, b.N-done)
			for side := range 2 {
				start := time.Now()
				for i := done; i < done+n; i++ {
					send(side, i)
				}
				spent[side] += time.Since(start)
			}
		}
		b.StopTimer()
		bareRate := float64(b.N*20) / spent[0].Seconds()
		relayRate := float64(b.N*20) / spent[1].Seconds()
		b.ReportMetric(bareRate, "bare-events/s")
		b.ReportMetric(relayRate, "woorelay-events/s")
		b.ReportMetric(relayRate/bareRate, "woorelay/bare")
	}

	b.Run("inprocess", func(b *testing.B) {
		handlers := [2]http.Handler{bare, s.Handler()}
		compare(b, func(side, i int) {
			r := httptest.NewRequest("POST", "/v1/batch", bytes.NewReader(batches[i%len(batches)]))
			r.Header.Set("Authorization", auth)
			r.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			handlers[side].ServeHTTP(rec, r)
			if rec.Code != 200 {
				b.Fatalf("got %d %s", rec.Code, rec.Body)
			}
		})
	})
	b.Run("http", func(b *testing.B) {
		servers := [2]*httptest.Server{httptest.NewServer(bare), httptest.NewServer(s.Handler())}
		defer servers[0].Close()
		defer servers[1].Close()
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		compare(b, func(side, i int) {
			r, _ := http.NewRequest("POST", servers[side].URL+"/v1/batch", bytes.NewReader(batches[i%len(batches)]))
			r.Header.Set("Authorization", auth)
			r.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(r)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("got %d", resp.StatusCode)
			}
		})
	})
}
