package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/mapping/corpus"
)

// BatchSize is the number of events in one ingest request.
const BatchSize = 20

// WriteKey is the write key the load generator sends (development mode accepts any).
const WriteKey = "bench-write-key"

// MarkerKey is the property (track, page, screen) or trait (identify) every generated event
// carries with its messageId, so that the Woopra request shows which event it delivers
// (ce_bench_mid or cv_bench_mid).
const MarkerKey = "bench_mid"

// BatchGen makes 20-event Segment batches of corpus events in which every event has a fresh
// messageId (the relay deduplicates on it) and the marker property holding the same id. The
// ids are prefix + a sequence number, so the outage stage can tell which arrived.
type BatchGen struct {
	prefix string
	tmpl   []batchTemplate
	next   atomic.Uint64 // sequence number of the next event
	pick   atomic.Uint64 // next template
}

// batchTemplate is one batch as literal pieces with an id hole after each but the last;
// hole i belongs to event owner[i] of the batch.
type batchTemplate struct {
	lits  [][]byte
	owner []int
}

// NewBatchGen builds templates of n batches from corpus seed 1; prefix makes the ids unique
// to the run.
func NewBatchGen(prefix string, n int) (*BatchGen, error) {
	events := corpus.Generate(1, n*BatchSize)
	g := &BatchGen{prefix: prefix}
	for i := range n {
		var t batchTemplate
		lit := []byte(`{"sentAt":"2024-12-31T23:59:59.000Z","batch":[`)
		for j, ev := range events[i*BatchSize : (i+1)*BatchSize] {
			if j > 0 {
				lit = append(lit, ',')
			}
			parts, err := eventTemplate(ev)
			if err != nil {
				return nil, fmt.Errorf("corpus event %d: %v", i*BatchSize+j, err)
			}
			for k, p := range parts {
				lit = append(lit, p...)
				if k < len(parts)-1 {
					t.lits = append(t.lits, lit)
					t.owner = append(t.owner, j)
					lit = nil
				}
			}
		}
		t.lits = append(t.lits, append(lit, `]}`...))
		g.tmpl = append(g.tmpl, t)
	}
	return g, nil
}

// eventTemplate splits one event into literal parts between which its id goes: the messageId's
// value and the marker (in properties, or traits for identify, created when absent).
func eventTemplate(ev []byte) ([][]byte, error) {
	type edit struct {
		at, del int
		pre     string // before the id
		post    string // after the id
	}
	root := gjson.ParseBytes(ev)
	if !root.IsObject() {
		return nil, errors.New("not a JSON object")
	}
	open := bytes.IndexByte(ev, '{') + 1
	var edits []edit
	if mid := root.Get("messageId"); mid.Exists() {
		edits = append(edits, edit{at: mid.Index, del: len(mid.Raw), pre: `"`, post: `"`})
	} else {
		edits = append(edits, edit{at: open, pre: `"messageId":"`, post: `",`})
	}
	obj := "properties"
	if root.Get("type").Str == "identify" {
		obj = "traits"
	}
	switch o := root.Get(obj); {
	case !o.Exists():
		edits = append(edits, edit{at: open, pre: `"` + obj + `":{"` + MarkerKey + `":"`, post: `"},`})
	case o.IsObject():
		post := `",`
		if len(o.Map()) == 0 {
			post = `"`
		}
		edits = append(edits, edit{at: o.Index + 1, pre: `"` + MarkerKey + `":"`, post: post})
	default:
		return nil, fmt.Errorf("%s is not an object", obj)
	}
	slices.SortStableFunc(edits, func(a, b edit) int { return a.at - b.at })
	var parts [][]byte
	cur := []byte{}
	pos := 0
	for _, e := range edits {
		cur = append(cur, ev[pos:e.at]...)
		cur = append(cur, e.pre...)
		parts = append(parts, cur)
		cur = []byte(e.post)
		pos = e.at + e.del
	}
	parts = append(parts, append(cur, ev[pos:]...))
	return parts, nil
}

// build appends the next batch to buf and returns it with the sequence number of its first
// event (the others follow).
func (g *BatchGen) build(buf []byte) ([]byte, uint64) {
	t := &g.tmpl[int(g.pick.Add(1)-1)%len(g.tmpl)]
	first := g.next.Add(BatchSize) - BatchSize
	return g.fill(buf, t, first), first
}

// fill appends batch template t with the ids of the events from sequence number first on.
func (g *BatchGen) fill(buf []byte, t *batchTemplate, first uint64) []byte {
	for i, lit := range t.lits {
		buf = append(buf, lit...)
		if i < len(t.owner) {
			buf = append(buf, g.prefix...)
			buf = strconv.AppendUint(buf, first+uint64(t.owner[i]), 10)
		}
	}
	return buf
}

// sampleEvents returns the events of batch template tmpl with the sequence numbers from first
// on, for mapping them ahead of time.
func (g *BatchGen) sampleEvents(tmpl int, first uint64) ([][]byte, error) {
	buf := g.fill(nil, &g.tmpl[tmpl%len(g.tmpl)], first)
	var out [][]byte
	gjson.GetBytes(buf, "batch").ForEach(func(_, v gjson.Result) bool {
		out = append(out, []byte(v.Raw))
		return true
	})
	if len(out) != BatchSize {
		return nil, fmt.Errorf("a generated batch has %d events, want %d: %.200s", len(out), BatchSize, buf)
	}
	return out, nil
}

// benchTransport is a keep-alive transport for conns concurrent clients.
func benchTransport(conns int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * conns,
		MaxIdleConnsPerHost: 2 * conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// SendFunc sends one request with client, reusing buf for its body, and returns buf, the
// events the answer acknowledged (0 for none), the sequence number of the first of them, and
// an error when the request was not acknowledged.
type SendFunc func(ctx context.Context, client *http.Client, buf []byte) (buf2 []byte, events int, first uint64, err error)

// LoadConfig is one run of the load generator.
type LoadConfig struct {
	Conns    int             // concurrent workers, each with a keep-alive connection
	Warmup   time.Duration   // unmeasured load first
	Duration time.Duration   // measured; 0 with Batches or Stop set: until they end it
	Batches  int             // measured requests to send (0: no limit)
	Rate     int             // requests per second offered (0: back to back)
	Stop     <-chan struct{} // when not nil (and Batches 0), the measured window lasts until it is closed
	Timeout  time.Duration   // time limit of one request (default 60 s)
	Send     SendFunc
}

// LoadResult is what the load generator measured.
type LoadResult struct {
	Events    int64           // events acknowledged in the measured window
	Elapsed   time.Duration   // the measured window
	Latencies []time.Duration // latency of every acknowledged request in the window, sorted
	Failed    int64           // requests not acknowledged (any phase)
	FirstErr  error
	Acked     []uint64 // first sequence numbers of acknowledged batches (every phase)
	Start     time.Time
	// CPU is the CPU time (user and system) the whole process used in the measured window:
	// the load generator and whatever it drives in the same process.
	CPU time.Duration
}

// CPUPerEvent is the process's CPU time in the window per acknowledged event, in µs.
func (r LoadResult) CPUPerEvent() float64 { return cpuPerEvent(r.CPU, r.Events) }

// cpuPerEvent is cpu per event in µs (0 without events).
func cpuPerEvent(cpu time.Duration, events int64) float64 {
	if events <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / float64(events)
}

// processCPU is the CPU time (user and system) the process has used so far, 0 when the system
// does not say.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Rate is the events acknowledged per second in the window.
func (r LoadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Events) / r.Elapsed.Seconds()
}

// RunLoad drives cfg.Conns workers, each a keep-alive client sending requests back to back
// (or paced by cfg.Rate), first for cfg.Warmup unmeasured, then measured for cfg.Duration, or
// until cfg.Batches were sent, or until cfg.Stop is closed. A timed window lasts at least
// until the first acknowledgement. When it ends, the context cfg.Send gets is cancelled; a
// Send that must see every answer (a ledger of acknowledged events) leaves it unused.
func RunLoad(cfg LoadConfig) LoadResult {
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	client := &http.Client{Transport: benchTransport(cfg.Conns), Timeout: timeout}
	defer client.Transport.(*http.Transport).CloseIdleConnections()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var measuring atomic.Bool
	var countedAcks atomic.Int64 // acknowledged requests in the measured window
	var budget atomic.Int64
	budget.Store(int64(cfg.Batches))
	var tokens chan struct{}
	if cfg.Rate > 0 {
		tokens = make(chan struct{}, cfg.Conns)
		go func() {
			interval := time.Second / time.Duration(cfg.Rate)
			next := time.Now()
			for ctx.Err() == nil {
				next = next.Add(interval)
				time.Sleep(time.Until(next))
				select {
				case tokens <- struct{}{}:
				default: // the relay is not keeping up: the offer is dropped, not queued
				}
			}
		}()
	}

	type workerOut struct {
		events, failed int64
		lat            []time.Duration
		acked          []uint64
		err            error
	}
	outs := make([]workerOut, cfg.Conns)
	var wg sync.WaitGroup
	for w := range cfg.Conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &outs[w]
			buf := make([]byte, 0, 64<<10)
			for ctx.Err() == nil {
				if tokens != nil {
					select {
					case <-tokens:
					case <-ctx.Done():
						return
					}
				}
				counted := measuring.Load()
				if counted && cfg.Batches > 0 && budget.Add(-1) < 0 {
					return
				}
				t0 := time.Now()
				var n int
				var first uint64
				var err error
				buf, n, first, err = cfg.Send(ctx, client, buf[:0])
				d := time.Since(t0)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					out.failed++
					if out.err == nil {
						out.err = err
					}
					continue
				}
				if n > 0 {
					out.acked = append(out.acked, first)
				}
				if counted && measuring.Load() {
					countedAcks.Add(1)
					out.events += int64(n)
					out.lat = append(out.lat, d)
				}
			}
		}()
	}
	time.Sleep(cfg.Warmup)
	start, cpu0 := time.Now(), processCPU()
	measuring.Store(true)
	switch {
	case cfg.Batches > 0:
		wg.Wait() // every worker returns once the budget is spent
	case cfg.Stop != nil:
		<-cfg.Stop
	default:
		time.Sleep(cfg.Duration)
		// A window shorter than one answer measures nothing: on a loaded machine (a short
		// smoke run, the race detector) it is extended until the first acknowledgement.
		for limit := time.Now().Add(time.Minute); countedAcks.Load() == 0 && time.Now().Before(limit); {
			time.Sleep(time.Millisecond)
		}
	}
	measuring.Store(false)
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	cancel()
	wg.Wait()

	res := LoadResult{Elapsed: elapsed, Start: start, CPU: cpu}
	for _, o := range outs {
		res.Events += o.events
		res.Failed += o.failed
		res.Latencies = append(res.Latencies, o.lat...)
		res.Acked = append(res.Acked, o.acked...)
		if res.FirstErr == nil {
			res.FirstErr = o.err
		}
	}
	slices.Sort(res.Latencies)
	return res
}

// PostBatches returns a send function posting generated batches to url (an ingest batch
// route): a batch counts as acknowledged when the answer is 200.
func PostBatches(url string, g *BatchGen) SendFunc {
	return func(ctx context.Context, client *http.Client, buf []byte) ([]byte, int, uint64, error) {
		buf, first := g.build(buf)
		if err := postBatch(ctx, client, url, buf); err != nil {
			return buf, 0, 0, err
		}
		return buf, BatchSize, first, nil
	}
}

// batchAuth is the Authorization header of the load generator's write key.
var batchAuth = "Basic " + base64.StdEncoding.EncodeToString([]byte(WriteKey+":"))

// postBatch posts one batch body to url with the load generator's write key; an answer other
// than 200 is an error.
func postBatch(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", batchAuth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %.200s", url, resp.Status, answer)
	}
	return nil
}
