package bench

import (
	"context"
	"errors"
	"fmt"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/woorelay/woorelay/queue/jetstream/natstest"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/mapping/corpus"
	"github.com/woorelay/woorelay/presets"
	"github.com/woorelay/woorelay/presets/ceiling"
	"github.com/woorelay/woorelay/relay"
)

// transformNow is after every corpus timestamp, so every corpus event is sent.
var transformNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// benchTransform measures the default preset (Program.RunInto, one reused Result) against the
// hand-written ceiling (ceiling.RunInto) on the corpus, on one core: in each round the two map
// alternating blocks of 500 events for o.Duration in all.
func benchTransform(o Options) (Result, error) {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	prog, err := presets.Load("default", ceiling.Settings())
	if err != nil {
		return Result{}, fmt.Errorf("load the default preset: %v", err)
	}
	ceil := ceiling.New()
	events := corpus.Generate(1, 10000)
	var engineRes, ceilRes mapping.Result
	engine := func(ev []byte) bool {
		prog.RunInto(&engineRes, ev, transformNow)
		return engineRes.Outcome == mapping.Send
	}
	hand := func(ev []byte) bool { ceil.RunInto(&ceilRes, ev, transformNow); return ceilRes.Outcome == mapping.Send }
	for _, ev := range events { // warm up: grow the scratch buffers, check every event is sent
		if !engine(ev) || !hand(ev) {
			return Result{}, fmt.Errorf("a corpus event was not sent: engine %s %s, ceiling %s %s", engineRes.Outcome, engineRes.Error, ceilRes.Outcome, ceilRes.Error)
		}
	}
	r := Result{Stage: "transform", Goal: fmt.Sprintf("ratio ≥ %.2f, ≤ %.0f allocs/event", goalTransformRatio, goalTransformAllocs)}
	const block = 500
	for round := range o.Rounds {
		var te, tc time.Duration
		n, i := 0, 0
		deadline := time.Now().Add(o.Duration)
		for time.Now().Before(deadline) {
			blk := events[i : i+block]
			t0 := time.Now()
			for _, ev := range blk {
				engine(ev)
			}
			t1 := time.Now()
			for _, ev := range blk {
				hand(ev)
			}
			t2 := time.Now()
			te += t1.Sub(t0)
			tc += t2.Sub(t1)
			n += block
			i = (i + block) % len(events)
		}
		r.OursR = append(r.OursR, float64(n)/te.Seconds())
		r.CeilR = append(r.CeilR, float64(n)/tc.Seconds())
		o.progressf("transform round %d: engine %s events/s, ceiling %s events/s", round+1, FormatRate(r.OursR[round]), FormatRate(r.CeilR[round]))
	}
	r.AllocsPerEvent = allocsPerEvent(events, engine)
	r.CeilAllocs = allocsPerEvent(events, hand)
	r.summarise()
	r.Pass = r.Ratio >= goalTransformRatio && r.AllocsPerEvent <= goalTransformAllocs
	return r, nil
}

// allocsPerEvent counts the heap allocations of mapping every event once, per event.
func allocsPerEvent(events [][]byte, run func([]byte) bool) float64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.Mallocs
	for _, ev := range events {
		run(ev)
	}
	runtime.ReadMemStats(&ms)
	return float64(ms.Mallocs-before) / float64(len(events))
}

// benchLogger is the relay's logger during benchmarks: errors only, to the progress output.
func benchLogger(o Options) *slog.Logger {
	w := o.Progress
	if w == nil {
		w = io.Discard
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelError}))
}

// benchRelay is a relay started for one side of a round, with its emulator and data directory.
type benchRelay struct {
	r      *relay.Relay
	em     *emulator.Emulator
	emStop func(context.Context) error
	dir    string
	nats   *natstest.Server // the JetStream server of a relay on NATS
}

// startBenchRelay starts an emulator (records off, no profiles) and a durable relay with a new
// data directory delivering to it. With idle set the emulator holds every request until close,
// so delivery waits and ingest has the machine to itself.
func startBenchRelay(o Options, idle bool) (*benchRelay, error) {
	return startBenchRelayOn(o, idle, "")
}

// startBenchRelayOn is startBenchRelay on the data directory dir when it is not "" (the caller
// keeps it: close leaves it in place); a relay whose emulator holds every request waits for
// its answers for as long as it runs.
func startBenchRelayOn(o Options, idle bool, dir string) (*benchRelay, error) {
	b := &benchRelay{em: emulator.New(emulator.Options{MaxRecords: -1, NoProfiles: true})}
	if idle {
		if err := b.em.SetFaults(emulator.Faults{Always: emulator.StepHang}); err != nil {
			return nil, err
		}
	}
	emURL, emStop, err := b.em.Start("127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start the emulator: %v", err)
	}
	b.emStop = emStop
	dataDir := dir
	if dir == "" {
		if b.dir, err = os.MkdirTemp("", "woorelay-bench-"); err != nil {
			b.close()
			return nil, fmt.Errorf("create a data directory (set TMPDIR to a writable disk): %v", err)
		}
		dataDir = b.dir
	}
	cfg := relay.Config{Listen: "127.0.0.1:0", DataDir: dataDir, WoopraURL: emURL, DrainTimeout: 5 * time.Second, NoSync: o.NoSync, Logger: benchLogger(o)}
	if o.onNATS {
		if b.nats, err = natstest.Start(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: filepath.Join(dataDir, "nats"), NoSigs: true, NoLog: true}); err != nil {
			b.close()
			return nil, fmt.Errorf("start nats-server: %v", err)
		}
		cfg.QueueURL = b.nats.URL()
	}
	if idle {
		cfg.WoopraTimeout = time.Hour // held requests are not retried while the stage runs
	}
	if b.r, err = relay.New(cfg); err == nil {
		if err = b.r.Start(); err != nil {
			b.r.Stop(time.Second)
		}
	}
	if err != nil {
		b.r = nil
		b.close()
		return nil, fmt.Errorf("start the relay: %v", err)
	}
	return b, nil
}

// close stops the relay and the emulator and removes the data directory.
func (b *benchRelay) close() {
	b.em.ClearFaults()
	b.em.Release()
	if b.r != nil {
		_ = b.r.Stop(5 * time.Second)
	}
	if b.nats != nil {
		b.nats.Shutdown()
		b.nats.WaitForShutdown()
	}
	if b.emStop != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.emStop(ctx)
		cancel()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// delivered is the number of requests the emulator answered 200.
func (b *benchRelay) delivered() uint64 { return b.em.Stats().ByStatus[http.StatusOK] }

// startBareEcho starts the ingest ceiling: an Echo server whose batch route reads the body and
// answers 200 with the ingest API's success body.
func startBareEcho() (url string, stop func(), err error) {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/v1/batch", func(c echo.Context) error {
		if _, err := io.Copy(io.Discard, c.Request().Body); err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, []byte(`{"success":true}`))
	})
	url, srv, err := serveOnLoopback(e)
	if err != nil {
		return "", nil, err
	}
	return url, func() { srv.Close() }, nil
}

// serveOnLoopback serves h on a new loopback port.
func serveOnLoopback(h http.Handler) (string, *http.Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), srv, nil
}

// startSyncFloor starts the durable floor of the ingest stage, with its file in the temporary
// directory (where the relay of the stage keeps its data): the bare Echo handler plus the
// least any durable acknowledgement must do, appending each body to one file with group commit
// (one write and one fdatasync for all the requests waiting) before answering 200. No parsing,
// no index, no dedup: what it reaches is what the disk's sync allows at this concurrency.
func startSyncFloor() (url string, stop func(), err error) {
	f, err := os.CreateTemp("", "sync-floor-*.log")
	if err != nil {
		return "", nil, err
	}
	type waiter struct {
		body []byte
		done chan error
	}
	in := make(chan waiter, 4096)
	go func() {
		var buf []byte
		for w := range in {
			group := []waiter{w}
			for more := true; more; {
				select {
				case x, ok := <-in:
					if !ok {
						more = false
						break
					}
					group = append(group, x)
				default:
					more = false
				}
			}
			buf = buf[:0]
			for _, g := range group {
				buf = append(buf, g.body...)
			}
			_, err := f.Write(buf)
			if err == nil {
				err = f.Sync()
			}
			for _, g := range group {
				g.done <- err
			}
		}
	}()
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.POST("/v1/batch", func(c echo.Context) error {
		body, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		done := make(chan error, 1)
		in <- waiter{body, done}
		if err := <-done; err != nil {
			return err
		}
		return c.JSONBlob(http.StatusOK, []byte(`{"success":true}`))
	})
	url, srv, err := serveOnLoopback(e)
	if err != nil {
		f.Close()
		return "", nil, err
	}
	stop = func() {
		// Shutdown waits for the handlers, so none sends on in once it is closed.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) == nil {
			close(in) // else a handler may still send: leave the committer running
		} else {
			srv.Close()
		}
		f.Close()
		os.Remove(f.Name())
	}
	return url, stop, nil
}

// benchIngest measures durable ingest (a relay from startRelay with a new data directory,
// fsync per group commit, delivery idle) against a bare Echo handler, o.Conns connections
// sending 20-event batches back to back. Each round runs the bare side then the relay, each
// after its own warm-up.
func benchIngest(o Options) (Result, error) {
	g, err := NewBatchGen(fmt.Sprintf("bi%d-", time.Now().UnixNano()), 50)
	if err != nil {
		return Result{}, err
	}
	r := Result{Stage: "ingest", Goal: fmt.Sprintf("ratio ≥ %.2f, p99 < %s", goalIngestRatio, goalIngestP99),
		Note: "durable relay (fsync per group commit), delivery held (the emulator holds every request); ceiling: the sync floor, a bare handler that appends each body to one file with group commit and fdatasync before answering, nothing else"}
	if o.LiveIngest {
		r.Note = "durable relay (fsync per group commit), delivering to the emulator while ingesting; ceiling: the sync floor, a bare handler that appends each body to one file with group commit and fdatasync before answering, nothing else"
	}
	if o.NoSync {
		r.Note = "NOT DURABLE (--nosync, diagnostics only): " + r.Note
	}
	var p50, p99, cp50, cp99 []time.Duration
	for round := range o.Rounds {
		url, stop, err := startBareEcho()
		if err != nil {
			return r, err
		}
		bare := RunLoad(LoadConfig{Conns: o.Conns, Warmup: o.Warmup, Duration: o.Duration, Send: PostBatches(url+"/v1/batch", g)})
		stop()
		if bare.Failed > 0 || bare.Events == 0 {
			return r, fmt.Errorf("bare echo: %d requests failed, %d events acknowledged: %v", bare.Failed, bare.Events, bare.FirstErr)
		}
		br, err := startBenchRelay(o, !o.LiveIngest)
		if err != nil {
			return r, err
		}
		ours := RunLoad(LoadConfig{Conns: o.Conns, Warmup: o.Warmup, Duration: o.Duration, Send: PostBatches(br.r.URL()+"/v1/batch", g)})
		br.close()
		if ours.Failed > 0 || ours.Events == 0 {
			return r, fmt.Errorf("relay: %d requests failed, %d events acknowledged: %v", ours.Failed, ours.Events, ours.FirstErr)
		}
		floorURL, stopFloor, err := startSyncFloor()
		if err != nil {
			return r, err
		}
		floor := RunLoad(LoadConfig{Conns: o.Conns, Warmup: o.Warmup, Duration: o.Duration, Send: PostBatches(floorURL+"/v1/batch", g)})
		stopFloor()
		if floor.Failed > 0 || floor.Events == 0 {
			return r, fmt.Errorf("sync floor: %d requests failed, %d events acknowledged: %v", floor.Failed, floor.Events, floor.FirstErr)
		}
		r.BareR = append(r.BareR, bare.Rate())
		r.OursR, r.CeilR = append(r.OursR, ours.Rate()), append(r.CeilR, floor.Rate())
		r.CPUR, r.CeilCPUR = append(r.CPUR, ours.CPUPerEvent()), append(r.CeilCPUR, floor.CPUPerEvent())
		p50, p99 = append(p50, percentile(ours.Latencies, 50)), append(p99, percentile(ours.Latencies, 99))
		cp50, cp99 = append(cp50, percentile(floor.Latencies, 50)), append(cp99, percentile(floor.Latencies, 99))
		o.progressf("ingest round %d: relay %s events/s (p50 %s, p99 %s), sync floor %s events/s (p50 %s, p99 %s), bare echo %s events/s", round+1,
			FormatRate(ours.Rate()), FormatMs(p50[round]), FormatMs(p99[round]), FormatRate(floor.Rate()), FormatMs(cp50[round]), FormatMs(cp99[round]), FormatRate(bare.Rate()))
	}
	r.summarise()
	r.Bare = median(r.BareR)
	fr := make([]float64, len(r.BareR))
	for i := range fr {
		fr[i] = r.CeilR[i] / r.BareR[i]
	}
	r.FloorRatio = median(fr)
	r.Note += fmt.Sprintf("; the bare Echo handler (body read, 200, no durability) did %s events/s: the sync floor is %.2f of it, the relay %.2f",
		FormatRate(r.Bare), r.FloorRatio, r.Ours/r.Bare)
	r.P50, r.P99, r.CeilP50, r.CeilP99 = medianDuration(p50), medianDuration(p99), medianDuration(cp50), medianDuration(cp99)
	r.Pass = r.Ratio >= goalIngestRatio && r.P99 < goalIngestP99
	return r, nil
}

// benchGet is one precomputed Woopra request.
type benchGet struct {
	url     string
	headers []mapping.Param
}

// precomputeGets maps n batches of generated events with the default preset (the relay's
// development source settings, delivering to baseURL) into the GETs the relay would send.
func precomputeGets(g *BatchGen, n int, baseURL string) ([]benchGet, error) {
	prog, err := presets.Load("default", map[string]string{"project": relay.SandboxProject, "base_url": baseURL})
	if err != nil {
		return nil, fmt.Errorf("load the default preset: %v", err)
	}
	var gets []benchGet
	for i := range n {
		evs, err := g.sampleEvents(i, uint64(i*BatchSize))
		if err != nil {
			return nil, err
		}
		for _, ev := range evs {
			res := prog.Run(ev, time.Now())
			if res.Outcome != mapping.Send {
				return nil, fmt.Errorf("a generated event was not sent (%s %s %s): %s", res.Outcome, res.Error, res.Reason, ev)
			}
			for _, q := range res.Requests {
				gets = append(gets, benchGet{url: q.URL, headers: q.Headers})
			}
		}
	}
	return gets, nil
}

// getLoop returns a send function sending the precomputed GETs in turn, one event each.
func getLoop(gets []benchGet) SendFunc {
	var next atomic.Uint64
	return func(ctx context.Context, client *http.Client, buf []byte) ([]byte, int, uint64, error) {
		q := gets[int(next.Add(1)-1)%len(gets)]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, q.url, nil)
		if err != nil {
			return buf, 0, 0, err
		}
		for _, h := range q.headers {
			req.Header.Set(h.Name, h.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return buf, 0, 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return buf, 0, 0, fmt.Errorf("GET %s: %s", q.url, resp.Status)
		}
		return buf, 1, 0, nil
	}
}

// benchE2E measures events/s from ingest to the emulator's acknowledgement of the Woopra
// request against a bare Go client sending the same GETs to the same kind of emulator (records
// off, no profiles). Per round: the bare loop runs o.Duration with o.Conns workers; then the
// relay, after a warm-up it fully delivers, gets as many events as the bare loop sent through
// o.Conns ingest connections, timed from the first send until the emulator has acknowledged
// all of them.
func benchE2E(o Options) (Result, error) {
	g, err := NewBatchGen(fmt.Sprintf("be%d-", time.Now().UnixNano()), 50)
	if err != nil {
		return Result{}, err
	}
	r := Result{Stage: "e2e", Goal: fmt.Sprintf("ratio ≥ %.2f", goalE2ERatio),
		Note: "ingest → durable queue → delivery → emulator 200, vs the same GETs from a bare Go client (same emulator settings)"}
	for round := range o.Rounds {
		em := emulator.New(emulator.Options{MaxRecords: -1, NoProfiles: true})
		emURL, emStop, err := em.Start("127.0.0.1:0")
		if err != nil {
			return r, err
		}
		gets, err := precomputeGets(g, 50, emURL)
		if err != nil {
			emStop(context.Background())
			return r, err
		}
		bare := RunLoad(LoadConfig{Conns: o.Conns, Warmup: o.Warmup, Duration: o.Duration, Send: getLoop(gets)})
		emStop(context.Background())
		if bare.Failed > 0 || bare.Events == 0 {
			return r, fmt.Errorf("bare GET loop: %d requests failed, %d acknowledged: %v", bare.Failed, bare.Events, bare.FirstErr)
		}

		br, err := startBenchRelay(o, false)
		if err != nil {
			return r, err
		}
		rate, cpu, err := relayEndToEnd(o, br, g, int(bare.Events))
		br.close()
		if err != nil {
			return r, err
		}
		r.OursR, r.CeilR = append(r.OursR, rate), append(r.CeilR, bare.Rate())
		r.CPUR, r.CeilCPUR = append(r.CPUR, cpu), append(r.CeilCPUR, bare.CPUPerEvent())
		o.progressf("e2e round %d: relay %s events/s (%.1f µs of CPU an event), bare GET loop %s events/s (%.1f µs)", round+1, FormatRate(rate), cpu, FormatRate(bare.Rate()), bare.CPUPerEvent())
	}
	r.summarise()
	r.Pass = r.Ratio >= goalE2ERatio
	return r, nil
}

// defaultBacklog is the drain stage's backlog when Options.Backlog is 0.
const defaultBacklog = 200_000

// benchDrain measures what users wait for after an outage: a backlog already on disk delivered
// with ingest idle, against the bare GET loop sending as many of the same requests to the same
// kind of emulator. Per round: the bare loop sends o.Backlog GETs with o.Conns workers; then a
// relay whose emulator holds every request is given o.Backlog events through ingest and
// stopped (its held requests are abandoned, nothing recorded), and a new relay on the same data
// directory, delivering to a live emulator, is timed from Start until the emulator has
// acknowledged every event.
// backlog is the drain stage's backlog (and the import stage's archive): --backlog, or
// defaultBacklog, in whole batches.
func (o Options) backlog() int {
	n := o.Backlog
	if n <= 0 {
		n = defaultBacklog
	}
	return max(BatchSize, n/BatchSize*BatchSize)
}

func benchDrain(o Options) (Result, error) {
	backlog := o.backlog()
	g, err := NewBatchGen(fmt.Sprintf("bd%d-", time.Now().UnixNano()), 50)
	if err != nil {
		return Result{}, err
	}
	r := Result{Stage: "drain", Goal: fmt.Sprintf("ratio ≥ %.2f", goalDrainRatio),
		Note: fmt.Sprintf("a backlog of %s events on disk delivered after a restart, ingest idle, vs the same number of the same GETs from a bare Go client", FormatRate(float64(backlog)))}
	for round := range o.Rounds {
		bare, err := bareGets(o, g, backlog)
		if err != nil {
			return r, err
		}
		rate, cpu, err := relayDrain(o, g, backlog)
		if err != nil {
			return r, err
		}
		r.OursR, r.CeilR = append(r.OursR, rate), append(r.CeilR, bare.Rate())
		r.CPUR, r.CeilCPUR = append(r.CPUR, cpu), append(r.CeilCPUR, bare.CPUPerEvent())
		o.progressf("drain round %d: relay %s events/s (%.1f µs of CPU an event), bare GET loop %s events/s (%.1f µs)", round+1, FormatRate(rate), cpu, FormatRate(bare.Rate()), bare.CPUPerEvent())
	}
	r.summarise()
	r.Pass = r.Ratio >= goalDrainRatio
	return r, nil
}

// bareGets sends n precomputed GETs to a new emulator with o.Conns workers.
func bareGets(o Options, g *BatchGen, n int) (LoadResult, error) {
	em := emulator.New(emulator.Options{MaxRecords: -1, NoProfiles: true})
	emURL, emStop, err := em.Start("127.0.0.1:0")
	if err != nil {
		return LoadResult{}, err
	}
	defer emStop(context.Background())
	gets, err := precomputeGets(g, 50, emURL)
	if err != nil {
		return LoadResult{}, err
	}
	res := RunLoad(LoadConfig{Conns: o.Conns, Batches: n, Send: getLoop(gets)})
	if res.Failed > 0 || res.Events != int64(n) {
		return res, fmt.Errorf("bare GET loop: %d requests failed, %d of %d acknowledged: %v", res.Failed, res.Events, n, res.FirstErr)
	}
	return res, nil
}

// relayDrain fills a new data directory with n events through a relay whose emulator holds
// every request, stops it, and returns the events/s at which a relay restarted on that
// directory delivers them all, and the process's µs of CPU per event while it does.
func relayDrain(o Options, g *BatchGen, n int) (rate, cpu float64, err error) {
	dir, err := os.MkdirTemp("", "woorelay-bench-")
	if err != nil {
		return 0, 0, fmt.Errorf("create a data directory (set TMPDIR to a writable disk): %v", err)
	}
	defer os.RemoveAll(dir)
	fill, err := startBenchRelayOn(o, true, dir)
	if err != nil {
		return 0, 0, err
	}
	res := RunLoad(LoadConfig{Conns: o.Conns, Batches: n / BatchSize, Send: PostBatches(fill.r.URL()+"/v1/batch", g)})
	// Stop the relay before the emulator lets its held requests go, so none is delivered.
	stopErr := fill.r.Stop(time.Second)
	fill.r = nil
	fill.close()
	if res.Failed > 0 || res.Events != int64(n) {
		return 0, 0, fmt.Errorf("filling the backlog: %d requests failed, %d of %d events acknowledged: %v", res.Failed, res.Events, n, res.FirstErr)
	}
	if stopErr != nil {
		return 0, 0, fmt.Errorf("stopping the relay that filled the backlog: %v", stopErr)
	}
	start, cpu0 := time.Now(), processCPU()
	br, err := startBenchRelayOn(o, false, dir)
	if err != nil {
		return 0, 0, err
	}
	defer br.close()
	if err := waitDelivered(br, uint64(n), 10*time.Minute); err != nil {
		return 0, 0, err
	}
	return float64(n) / time.Since(start).Seconds(), cpuPerEvent(processCPU()-cpu0, int64(n)), nil
}

// relayEndToEnd warms the relay up (and waits for the warm-up to be delivered), then sends
// about events events through ingest and returns events/s from the first send until the
// emulator has acknowledged every one, and the process's µs of CPU per event in that time.
func relayEndToEnd(o Options, br *benchRelay, g *BatchGen, events int) (rate, cpu float64, err error) {
	send := PostBatches(br.r.URL()+"/v1/batch", g)
	if o.Warmup > 0 {
		warm := RunLoad(LoadConfig{Conns: o.Conns, Duration: o.Warmup, Send: send})
		if warm.Failed > 0 {
			return 0, 0, fmt.Errorf("relay warm-up: %d requests failed: %v", warm.Failed, warm.FirstErr)
		}
		if err := waitDelivered(br, uint64(len(warm.Acked)*BatchSize), 2*time.Minute); err != nil {
			return 0, 0, fmt.Errorf("relay warm-up: %v", err)
		}
	}
	base := br.delivered()
	batches := max(1, events/BatchSize)
	cpu0 := processCPU()
	res := RunLoad(LoadConfig{Conns: o.Conns, Batches: batches, Send: send})
	if res.Failed > 0 {
		return 0, 0, fmt.Errorf("relay: %d ingest requests failed: %v", res.Failed, res.FirstErr)
	}
	want := uint64(res.Events)
	if err := waitDelivered(br, base+want, 10*time.Minute); err != nil {
		return 0, 0, err
	}
	return float64(want) / time.Since(res.Start).Seconds(), cpuPerEvent(processCPU()-cpu0, int64(want)), nil
}

// waitDelivered polls the emulator until it has answered n requests with 200.
func waitDelivered(br *benchRelay, n uint64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		got := br.delivered()
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			c := br.r.Queue().Counters()
			return fmt.Errorf("the emulator acknowledged %d of %d requests after %s (queue: queued %d, delivered %d, dead-lettered %d)", got, n, limit, c.Queued, c.Delivered, c.DeadLettered)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// OutageResult is what the outage stage measured.
type OutageResult struct {
	Outage       string        `json:"outage"`
	Rate         int           `json:"offered_events_per_s"`
	Acked        int64         `json:"acknowledged"`
	Backlog      int64         `json:"backlog_events"`
	BacklogBytes int64         `json:"backlog_disk_bytes"`
	RSSMedian    int64         `json:"rss_median_bytes"`
	RSSPeak      int64         `json:"rss_peak_bytes"`
	DrainRSSPeak int64         `json:"drain_rss_peak_bytes"`
	RSSSamples   []int64       `json:"rss_samples_bytes,omitempty"` // one a second during the outage
	Drain        time.Duration `json:"drain_ns"`
	DrainRate    float64       `json:"drain_events_per_s"`
	Drained      bool          `json:"drained"`
	Delivered    int64         `json:"delivered"`
	Lost         int64         `json:"lost"`
	Duplicates   int64         `json:"duplicates"`
	DeadLettered int64         `json:"dead_lettered"`
	Reconciles   bool          `json:"reconciles"`
}

// deliveryTracker wraps the emulator's handler and records the marker id of every request it
// answers 200.
type deliveryTracker struct {
	h      http.Handler
	prefix string
	mu     sync.Mutex
	seen   []uint64 // bitset of sequence numbers
	dist   int64
	dups   int64
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
	}
	w.ResponseWriter.WriteHeader(s)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (t *deliveryTracker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	t.h.ServeHTTP(sw, r)
	if sw.status != http.StatusOK || !strings.HasPrefix(r.URL.Path, "/track/") {
		return
	}
	q := r.URL.Query()
	id := q.Get("ce_" + MarkerKey)
	if id == "" {
		id = q.Get("cv_" + MarkerKey)
	}
	seq, err := strconv.ParseUint(strings.TrimPrefix(id, t.prefix), 10, 64)
	if err != nil || !strings.HasPrefix(id, t.prefix) {
		return
	}
	t.mu.Lock()
	for uint64(len(t.seen)) <= seq/64 {
		t.seen = append(t.seen, 0)
	}
	if t.seen[seq/64]&(1<<(seq%64)) != 0 {
		t.dups++
	} else {
		t.seen[seq/64] |= 1 << (seq % 64)
		t.dist++
	}
	t.mu.Unlock()
}

// has reports whether the event of seq was delivered.
func (t *deliveryTracker) has(seq uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return seq/64 < uint64(len(t.seen)) && t.seen[seq/64]&(1<<(seq%64)) != 0
}

func (t *deliveryTracker) counts() (distinct, dups int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dist, t.dups
}

// benchOutage starts `woorelay serve` (o.exe) as a child process delivering to an emulator
// that answers 500 to everything, offers o.outageRate events/s for o.outage while sampling
// the child's resident memory every second, then lets the emulator recover and waits until
// the queue is empty and every acknowledged event arrived.
func benchOutage(o Options) (Result, error) {
	r := Result{Stage: "outage", Goal: fmt.Sprintf("RSS < %s, drained, nothing lost", FormatMB(goalOutageRSS))}
	prefix := fmt.Sprintf("bo%d-", time.Now().UnixNano())
	g, err := NewBatchGen(prefix, 50)
	if err != nil {
		return r, err
	}
	em := emulator.New(emulator.Options{MaxRecords: -1, NoProfiles: true})
	if err := em.SetFaults(emulator.Faults{Always: 500}); err != nil {
		return r, err
	}
	tracker := &deliveryTracker{h: em.Handler(), prefix: prefix}
	emURL, emSrv, err := serveOnLoopback(tracker)
	if err != nil {
		return r, err
	}
	defer emSrv.Close()

	dir, err := os.MkdirTemp("", "woorelay-bench-outage-")
	if err != nil {
		return r, fmt.Errorf("create a data directory (set TMPDIR to a writable disk): %v", err)
	}
	defer os.RemoveAll(dir)
	addr, adminAddr, err := twoLoopbacks()
	if err != nil {
		return r, err
	}
	logf, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return r, err
	}
	defer logf.Close()
	cmd := exec.Command(o.Exe, "serve", "--listen", addr, "--admin-listen", adminAddr, "--data", filepath.Join(dir, "data"), "--woopra-url", emURL,
		"--retry-min", "200ms", "--retry-max", "2s", "--log-level", "warn", "--drain-timeout", "5s")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return r, fmt.Errorf("start %s serve: %v", o.Exe, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stopChild := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	base := "http://" + addr
	counters := admin.NewClient("http://"+adminAddr, "", nil)
	if err := WaitReady(base, exited, 30*time.Second); err != nil {
		stopChild()
		log, _ := os.ReadFile(logf.Name())
		return r, fmt.Errorf("%v\n%s", err, log)
	}
	defer stopChild()

	// Resident memory, once a second and at the end of each phase, tagged by phase (0
	// outage, 1 drain).
	var phase atomic.Int32
	var rssMu sync.Mutex
	var outRSS, drainRSS []int64
	sampleRSS := func() {
		rss, err := ReadRSS(cmd.Process.Pid)
		if err != nil {
			return
		}
		rssMu.Lock()
		if phase.Load() == 0 {
			outRSS = append(outRSS, rss)
		} else {
			drainRSS = append(drainRSS, rss)
		}
		rssMu.Unlock()
	}
	samplerDone := make(chan struct{})
	stopSampler := make(chan struct{})
	go func() {
		defer close(samplerDone)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopSampler:
				return
			case <-tick.C:
			}
			sampleRSS()
		}
	}()

	o.progressf("outage: %s at %d events/s offered, emulator answering 500", o.Outage, o.OutageRate)
	load := RunLoad(LoadConfig{Conns: o.Conns, Duration: o.Outage, Rate: max(1, o.OutageRate/BatchSize), Send: PostBatches(base+"/v1/batch", g)})
	sampleRSS()
	u := &OutageResult{Outage: o.Outage.String(), Rate: o.OutageRate, Acked: int64(len(load.Acked) * BatchSize)}
	if c, err := counters.Counters(context.Background()); err == nil {
		u.Backlog = c.Queued
	}
	u.BacklogBytes = DirSize(filepath.Join(dir, "data"))
	phase.Store(1)
	o.progressf("outage over: %d events acknowledged (%d refused), backlog %d events, %s on disk; recovering", u.Acked, load.Failed*BatchSize, u.Backlog, FormatMB(u.BacklogBytes))

	em.ClearFaults()
	recovered := time.Now()
	deadline := recovered.Add(o.DrainLimit)
	var last admin.Counters
	for {
		c, err := counters.Counters(context.Background())
		if err == nil {
			last = c
			dist, _ := tracker.counts()
			if c.Queued == 0 && dist >= u.Acked {
				u.Drained = true
				break
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	u.Drain = time.Since(recovered)
	close(stopSampler)
	<-samplerDone
	sampleRSS()
	if u.Drain > 0 {
		u.DrainRate = float64(u.Backlog) / u.Drain.Seconds()
	}
	u.Delivered, u.Duplicates = tracker.counts()
	for _, first := range load.Acked {
		for i := range uint64(BatchSize) {
			if !tracker.has(first + i) {
				u.Lost++
			}
		}
	}
	u.DeadLettered, u.Reconciles = last.DeadLettered, last.Reconciles
	u.RSSSamples = outRSS
	u.RSSMedian = int64(median(int64sToFloats(outRSS)))
	u.RSSPeak = maxInt64(outRSS)
	u.DrainRSSPeak = maxInt64(drainRSS)
	r.Outage = u
	r.Ours = u.DrainRate
	r.Pass = u.Drained && u.Lost == 0 && u.DeadLettered == 0 && u.Acked > 0 && max(u.RSSPeak, u.DrainRSSPeak) < goalOutageRSS
	if !u.Drained {
		r.Note = fmt.Sprintf("the backlog did not drain within --drain-limit %s (queued %d); raise --drain-limit", o.DrainLimit, last.Queued)
	}
	return r, nil
}

// FreeLoopback returns a loopback address with a free port.
func FreeLoopback() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// twoLoopbacks returns two loopback addresses with free ports: a child serve's ingest and
// admin listeners.
func twoLoopbacks() (string, string, error) {
	a, err := FreeLoopback()
	if err != nil {
		return "", "", err
	}
	b, err := FreeLoopback()
	return a, b, err
}

// WaitReady polls base/readyz until it answers 200, exited is closed (the process ended) or
// limit passes.
func WaitReady(base string, exited <-chan struct{}, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("woorelay serve exited before it was ready")
		default:
		}
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("woorelay serve was not ready at %s within %s", base, limit)
}

// ReadRSS reads VmRSS of a process from /proc (Linux).
func ReadRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS in /proc/<pid>/status")
}

// DirSize is the total size of the files under dir.
func DirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func int64sToFloats(xs []int64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(x)
	}
	return out
}

func maxInt64(xs []int64) int64 {
	var m int64
	for _, x := range xs {
		m = max(m, x)
	}
	return m
}
