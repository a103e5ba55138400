package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/woorelay/woorelay/bench"
)

// ledger is the end-to-end tests' oracle: it mints message ids, and an id becomes an
// obligation only when woorelay answered 200 to the request that carried it.
type ledger struct {
	mu           sync.Mutex
	issued       map[string]bool
	acked        map[string]bool
	statuses     map[int]int // answers by status (0 = transport error)
	noRetryAfter int         // 429 and 503 answers without a Retry-After header
	next         atomic.Int64
}

func newLedger() *ledger {
	return &ledger{issued: map[string]bool{}, acked: map[string]bool{}, statuses: map[int]int{}}
}

// batch builds a /v1/batch body of n track events spread over visitors visitors.
func (l *ledger) batch(n, visitors int) ([]byte, []string) {
	var b bytes.Buffer
	ids := make([]string, n)
	b.WriteString(`{"batch":[`)
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i := 0; i < n; i++ {
		k := l.next.Add(1)
		id := fmt.Sprintf("m-%d", k)
		ids[i] = id
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","event":"Load Test","messageId":%q,"userId":"v%d","timestamp":%q,"properties":{"mid":%q,"n":%d}}`,
			id, k%int64(visitors), now, id, k)
	}
	fmt.Fprintf(&b, `],"sentAt":%q}`, now)
	l.mu.Lock()
	for _, id := range ids {
		l.issued[id] = true
	}
	l.mu.Unlock()
	return b.Bytes(), ids
}

// send posts one batch with Basic auth and records the answer; it returns the status (0 on a
// transport error, as when the server is killed mid-request).
func (l *ledger) send(client *http.Client, url, writeKey string, body []byte, ids []string) int {
	req, _ := http.NewRequest("POST", url+"/v1/batch", bytes.NewReader(body))
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	status := 0
	resp, err := client.Do(req)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status = resp.StatusCode
	}
	l.mu.Lock()
	if (status == 429 || status == 503) && resp.Header.Get("Retry-After") == "" {
		l.noRetryAfter++
	}
	l.statuses[status]++
	if status == 200 {
		for _, id := range ids {
			l.acked[id] = true
		}
	}
	l.mu.Unlock()
	return status
}

// ackedIDs returns a copy of the acknowledged ids.
func (l *ledger) ackedIDs() map[string]bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]bool, len(l.acked))
	for id := range l.acked {
		out[id] = true
	}
	return out
}

// load runs the bench load generator with workers connections, each sending batches of size
// events through the ledger until stop is closed; the WaitGroup is done when the load is.
func (l *ledger) load(url, writeKey string, workers, size, visitors int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bench.RunLoad(bench.LoadConfig{Conns: workers, Stop: stop, Timeout: 10 * time.Second,
			Send: func(_ context.Context, client *http.Client, buf []byte) ([]byte, int, uint64, error) {
				body, ids := l.batch(size, visitors)
				switch status := l.send(client, url, writeKey, body, ids); status {
				case http.StatusOK:
					return buf, size, 0, nil
				case 0:
					time.Sleep(10 * time.Millisecond) // server down: back off a little, as SDKs do
					return buf, 0, 0, errors.New("woorelay is not answering")
				default:
					return buf, 0, 0, fmt.Errorf("woorelay answered %d", status)
				}
			}})
	}()
	return &wg
}
