package emulator

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark measures the emulator.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// benchRequests builds n /track/ce requests of n different visitors, shaped like the relay's.
func benchRequests(n int) []*http.Request {
	reqs := make([]*http.Request, n)
	for i := range reqs {
		url := fmt.Sprintf("/track/ce?project=mywebsite.com&response=json&timeout=1800000&ce_app=bench&event=purchase"+
			"&cookie=AH47DHS5SF%d&ip=203.0.113.50&cv_email=user%d%%40example.com&cv_name=Jane+Doe&timestamp=1795169730250"+
			"&ce_amount=149.95&ce_order_id=ORD-%d&ce_currency=USD&ce_coupon=WELCOME10", i, i, i)
		r := httptest.NewRequest("GET", url, nil)
		r.Header.Set("User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15")
		reqs[i] = r
	}
	return reqs
}

// BenchmarkEmulator measures tracking requests per second through the handler: with the
// default record and profiles, with counters only, and over HTTP on loopback.
func BenchmarkEmulator(b *testing.B) {
	reqs := benchRequests(10_000)
	for _, c := range []struct {
		name string
		opts Options
	}{
		{"handler/records+profiles", Options{}},
		{"handler/counters-only", Options{MaxRecords: -1, NoProfiles: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			e := New(c.opts)
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					e.ServeHTTP(w, reqs[next.Add(1)%uint64(len(reqs))])
					if w.code != 200 {
						b.Errorf("status %d", w.code)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
		})
	}
	b.Run("http/loopback", func(b *testing.B) {
		e := New(Options{})
		srv := httptest.NewServer(e)
		defer srv.Close()
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		var next atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := client.Get(srv.URL + reqs[next.Add(1)%uint64(len(reqs))].URL.String())
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	})
}
