package bench

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/woorelay/woorelay/emulator"
)

// The wan stage's Woopra: latency ± jitter with room for wanCapacity requests at once.
const (
	wanLatency     = 150 * time.Millisecond
	wanJitter      = 0.2
	wanCapacity    = 600
	wanDropped     = 150 // the capacity during the drop run's middle phase
	wanVisitorsPer = 5   // events per visitor in every backlog
	// Goals (issue: delivery at Internet latency).
	goalWANRatio      = 0.75 // of capacity / latency, steady run
	goalWANRefused    = 0.02
	goalWANDropRatio  = 0.70 // of the bound in the windows after the drop and after the recovery
	goalWANDropRefuse = 0.05
	goalWANFreeRatio  = 0.80 // of the ceiling without a capacity limit
	goalWANRSS        = 256 << 20
	// Phases of the drop run, from the first request: capacity 600, then 150, then 600.
	wanPhaseA = 10 * time.Second
	wanPhaseB = 20 * time.Second
	wanPhaseC = 25 * time.Second
)

// WANRun is one run of the wan stage: a backlog drained by `woorelay serve` with default
// flags into the emulator at wanLatency ± wanJitter.
type WANRun struct {
	Name     string  `json:"name"`
	Events   int     `json:"events"`
	Visitors int     `json:"visitors"`
	Capacity int     `json:"capacity"` // 0: no limit
	Ceiling  float64 `json:"ceiling_events_per_s"`
	Rate     float64 `json:"events_per_s"`
	Ratio    float64 `json:"ratio"`
	// Bare is what a client that knows the answer gets on this machine in the same run: as
	// many workers as the capacity (or --workers without one) sending the same kind of
	// GETs back to back with fasthttp to an emulator with the same setting, for 10 s; on a
	// loaded machine it is below the theoretical ceiling. BareRatio is Rate / Bare.
	Bare      float64     `json:"bare_events_per_s"`
	BareRatio float64     `json:"bare_ratio"`
	Refused   float64     `json:"refused_share"` // refused for capacity / attempts
	Attempts  uint64      `json:"attempts"`
	Drain     string      `json:"drain"`
	RSSPeak   int64       `json:"rss_peak_bytes"`
	CPUCores  float64     `json:"relay_cpu_cores"` // the relay's CPU seconds per second while draining
	LimitLog  []string    `json:"limit_log,omitempty"`
	Windows   []WANWindow `json:"windows,omitempty"`
	Note      string      `json:"note,omitempty"`
}

// WANWindow is the rate and the refusals of one window of a run, against the bound then.
type WANWindow struct {
	What    string  `json:"what"`
	Bound   float64 `json:"bound_events_per_s"`
	Rate    float64 `json:"events_per_s"`
	Ratio   float64 `json:"ratio"`
	Refused float64 `json:"refused_share"`
}

// wanSample is the emulator's counters at one moment.
type wanSample struct {
	at          time.Time
	ok, refused uint64
	requests    uint64
}

// benchWAN runs the three runs of the wan stage: steady (capacity 600), drop (600, then 150,
// then 600 again, mid-drain) and free (no capacity limit).
func benchWAN(o Options) (Result, error) {
	r := Result{Stage: "wan", Goal: fmt.Sprintf("≥ %.2f of capacity/latency with ≤ %.0f%% refused; after the drop and the recovery ≥ %.2f with < %.0f%% refused; no limit ≥ %.2f of the ceiling, RSS < %s",
		goalWANRatio, 100*goalWANRefused, goalWANDropRatio, 100*goalWANDropRefuse, goalWANFreeRatio, FormatMB(goalWANRSS))}
	bound := float64(wanCapacity) / wanLatency.Seconds()
	steady, err := wanRun(o, "steady", 50_000, wanCapacity, nil)
	if err != nil {
		return r, err
	}
	dropBacklog := int((wanPhaseA+wanPhaseC).Seconds()*bound+wanPhaseB.Seconds()*float64(wanDropped)/wanLatency.Seconds()) * 3 / 2
	drop, err := wanRun(o, "drop", dropBacklog/1000*1000, wanCapacity, func(em *emulator.Emulator, first time.Time) {
		time.Sleep(time.Until(first.Add(wanPhaseA)))
		_ = em.SetFaults(wanFaults(wanDropped))
		time.Sleep(time.Until(first.Add(wanPhaseA + wanPhaseB)))
		_ = em.SetFaults(wanFaults(wanCapacity))
	})
	if err != nil {
		return r, err
	}
	free, err := wanRun(o, "free", 100_000, 0, nil)
	if err != nil {
		return r, err
	}
	r.WAN = []WANRun{steady, drop, free}
	r.Ours, r.Ceiling, r.Ratio = steady.Rate, steady.Ceiling, steady.Ratio
	r.Pass = steady.Ratio >= goalWANRatio && steady.Refused <= goalWANRefused &&
		free.Ratio >= goalWANFreeRatio && free.RSSPeak < goalWANRSS
	for _, w := range drop.Windows {
		r.Pass = r.Pass && w.Ratio >= goalWANDropRatio && w.Refused < goalWANDropRefuse
	}
	r.Note = fmt.Sprintf("woorelay serve with default flags (child process), emulator at %s ± %.0f%%, room for %d requests at once (503 beyond): ceiling capacity/latency = %s events/s",
		wanLatency, 100*wanJitter, wanCapacity, FormatRate(bound))
	return r, nil
}

// wanFaults is the emulator's setting with room for capacity requests at once (0: no limit).
func wanFaults(capacity int) emulator.Faults {
	return emulator.Faults{Latency: emulator.Duration(wanLatency), Jitter: wanJitter, Capacity: capacity, Overload: emulator.OverloadRefuse503}
}

// wanRun fills a new data directory with events (wanVisitorsPer per visitor, interleaved),
// then drains it with `woorelay serve` (default flags) into an emulator with the given
// capacity, sampling the emulator's counters and the child's memory and CPU. during, when
// set, runs from the first request the emulator sees (to change the capacity mid-drain).
func wanRun(o Options, name string, events, capacity int, during func(em *emulator.Emulator, first time.Time)) (WANRun, error) {
	run := WANRun{Name: name, Events: events, Visitors: events / wanVisitorsPer, Capacity: capacity}
	dir, err := os.MkdirTemp("", "woorelay-bench-wan-")
	if err != nil {
		return run, fmt.Errorf("create a data directory (set TMPDIR to a writable disk): %v", err)
	}
	defer os.RemoveAll(dir)
	data := filepath.Join(dir, "data")
	workers := 1024 // serve's default --workers
	conc := capacity
	if conc == 0 {
		conc = workers
	}
	if run.Bare, err = wanBare(conc, capacity, 10*time.Second); err != nil {
		return run, err
	}
	o.progressf("wan %s: a bare client with %d workers gets %s events/s", name, conc, FormatRate(run.Bare))
	o.progressf("wan %s: filling a backlog of %s events over %s visitors", name, FormatRate(float64(events)), FormatRate(float64(run.Visitors)))
	if err := wanFill(o, data, events, run.Visitors); err != nil {
		return run, err
	}

	em := emulator.New(emulator.Options{MaxRecords: -1, NoProfiles: true})
	if err := em.SetFaults(wanFaults(capacity)); err != nil {
		return run, err
	}
	emURL, emStop, err := em.Start("127.0.0.1:0")
	if err != nil {
		return run, err
	}
	defer emStop(context.Background())
	addr, adminAddr, err := twoLoopbacks()
	if err != nil {
		return run, err
	}
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return run, err
	}
	defer logf.Close()
	cmd := exec.Command(o.Exe, "serve", "--listen", addr, "--admin-listen", adminAddr, "--data", data, "--woopra-url", emURL)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return run, fmt.Errorf("start %s serve: %v", o.Exe, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	// Sample every 100 ms: the emulator's counters, the child's RSS (every second) and CPU.
	var mu sync.Mutex
	var samples []wanSample
	var firstAt time.Time
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	started := make(chan time.Time, 1)
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			s := em.Stats()
			now := time.Now()
			mu.Lock()
			if s.Requests > 0 && firstAt.IsZero() {
				firstAt = now
				started <- now
			}
			samples = append(samples, wanSample{at: now, ok: s.ByStatus[http.StatusOK], refused: s.Refused, requests: s.Requests})
			mu.Unlock()
			if i%10 == 0 {
				if rss, err := ReadRSS(cmd.Process.Pid); err == nil {
					run.RSSPeak = max(run.RSSPeak, rss)
				}
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()
	var duringDone chan struct{}
	if during != nil {
		duringDone = make(chan struct{})
		go func() {
			defer close(duringDone)
			select {
			case first := <-started:
				during(em, first)
			case <-stopSampling:
			}
		}()
	}
	cpu0, _ := procCPU(cmd.Process.Pid)
	limit := time.Now().Add(10 * time.Minute)
	for em.Stats().ByStatus[http.StatusOK] < uint64(events) {
		select {
		case <-exited:
			log, _ := os.ReadFile(logPath)
			return run, fmt.Errorf("woorelay serve exited during the wan stage:\n%s", log)
		default:
		}
		if time.Now().After(limit) {
			return run, fmt.Errorf("wan %s: %d of %d events delivered after 10 minutes", name, em.Stats().ByStatus[http.StatusOK], events)
		}
		time.Sleep(20 * time.Millisecond)
	}
	end := time.Now()
	cpu1, _ := procCPU(cmd.Process.Pid)
	close(stopSampling)
	<-sampled
	if duringDone != nil {
		<-duringDone
	}
	mu.Lock()
	defer mu.Unlock()
	st := em.Stats()
	elapsed := end.Sub(firstAt)
	run.Drain = elapsed.Round(10 * time.Millisecond).String()
	run.Rate = float64(events) / elapsed.Seconds()
	run.Attempts = st.Requests
	run.Refused = float64(st.Refused) / float64(max(st.Requests, 1))
	run.CPUCores = (cpu1 - cpu0).Seconds() / elapsed.Seconds()
	run.BareRatio = run.Rate / run.Bare
	switch {
	case capacity > 0:
		run.Ceiling = float64(capacity) / wanLatency.Seconds()
	default:
		run.Ceiling = float64(workers) / wanLatency.Seconds()
		run.Note = fmt.Sprintf("no capacity limit: the ceiling is --workers/latency = %s events/s; the relay used %.2f cores of %d", FormatRate(run.Ceiling), run.CPUCores, DescribeMachine().CPUs)
	}
	run.Ratio = run.Rate / run.Ceiling
	if name == "drop" {
		high, low := float64(wanCapacity)/wanLatency.Seconds(), float64(wanDropped)/wanLatency.Seconds()
		a, b, c := firstAt.Add(wanPhaseA), firstAt.Add(wanPhaseA+wanPhaseB), firstAt.Add(wanPhaseA+wanPhaseB+wanPhaseC)
		for _, w := range []struct {
			what     string
			from, to time.Time
			bound    float64
		}{
			{"before the drop (0-10 s)", firstAt, a, high},
			{"5-10 s after the drop to 150", a.Add(5 * time.Second), a.Add(10 * time.Second), low},
			{"10-20 s after the drop to 150", a.Add(10 * time.Second), b, low},
			{"10-20 s after the recovery to 600", b.Add(10 * time.Second), b.Add(20 * time.Second), high},
		} {
			if w.to.After(end) || w.to.After(c) {
				run.Note = fmt.Sprintf("the backlog drained before the window %q ended; raise it", w.what)
				continue
			}
			x, y := sampleAt(samples, w.from), sampleAt(samples, w.to)
			win := WANWindow{What: w.what, Bound: w.bound, Rate: float64(y.ok-x.ok) / y.at.Sub(x.at).Seconds()}
			win.Ratio = win.Rate / w.bound
			win.Refused = float64(y.refused-x.refused) / float64(max(y.requests-x.requests, 1))
			if w.what != "before the drop (0-10 s)" {
				run.Windows = append(run.Windows, win)
			} else {
				run.Note = fmt.Sprintf("before the drop: %s events/s (%.2f of %s), %.1f%% refused", FormatRate(win.Rate), win.Ratio, FormatRate(w.bound), 100*win.Refused)
			}
		}
	}
	if log, err := os.ReadFile(logPath); err == nil {
		for _, line := range strings.Split(string(log), "\n") {
			if strings.Contains(line, "concurrency limit moved") {
				run.LimitLog = append(run.LimitLog, line)
			}
		}
	}
	o.progressf("wan %s: %s events/s in %s = %.2f of the ceiling %s (%.2f of the bare client's %s), %.1f%% of %d attempts refused, RSS peak %s, relay CPU %.2f cores",
		name, FormatRate(run.Rate), run.Drain, run.Ratio, FormatRate(run.Ceiling), run.BareRatio, FormatRate(run.Bare), 100*run.Refused, run.Attempts, FormatMB(run.RSSPeak), run.CPUCores)
	for _, w := range run.Windows {
		o.progressf("wan %s: %s: %s events/s = %.2f of %s, %.1f%% refused", name, w.What, FormatRate(w.Rate), w.Ratio, FormatRate(w.Bound), 100*w.Refused)
	}
	return run, nil
}

// sampleAt is the last sample at or before t (the first when none is).
func sampleAt(samples []wanSample, t time.Time) wanSample {
	best := samples[0]
	for _, s := range samples {
		if s.at.After(t) {
			break
		}
		best = s
	}
	return best
}

// procCPU is the CPU time (user and system) a process has used, from /proc (Linux).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its ')' are fixed.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100, nil // clock ticks of 1/100 s
}

// wanFill puts events on disk in data through a relay whose emulator holds every request,
// then stops it: event k belongs to visitor k % visitors, so a visitor's events are spread
// over the backlog and the dispatcher's window holds as many visitors as items.
func wanFill(o Options, data string, events, visitors int) error {
	fill, err := startBenchRelayOn(o, true, data)
	if err != nil {
		return err
	}
	prefix := fmt.Sprintf("bw%d-", time.Now().UnixNano())
	var next struct {
		sync.Mutex
		k int
	}
	url := fill.r.URL() + "/v1/batch"
	send := func(ctx context.Context, client *http.Client, buf []byte) ([]byte, int, uint64, error) {
		next.Lock()
		k := next.k
		next.k += BatchSize
		next.Unlock()
		buf = append(buf[:0], `{"batch":[`...)
		for i := range BatchSize {
			if i > 0 {
				buf = append(buf, ',')
			}
			n := k + i
			buf = fmt.Appendf(buf, `{"type":"track","event":"Played","userId":"wv%d","messageId":"%s%d","timestamp":"2025-01-01T00:00:00Z","properties":{"n":%d}}`, n%visitors, prefix, n, n)
		}
		buf = append(buf, `]}`...)
		if err := postBatch(ctx, client, url, buf); err != nil {
			return buf, 0, 0, err
		}
		return buf, BatchSize, uint64(k), nil
	}
	res := RunLoad(LoadConfig{Conns: o.Conns, Batches: events / BatchSize, Send: send})
	stopErr := fill.r.Stop(time.Second)
	fill.r = nil
	fill.close()
	if res.Failed > 0 || res.Events != int64(events) {
		return fmt.Errorf("filling the wan backlog: %d requests failed, %d of %d events acknowledged: %v", res.Failed, res.Events, events, res.FirstErr)
	}
	if stopErr != nil {
		return fmt.Errorf("stopping the relay that filled the wan backlog: %v", stopErr)
	}
	return nil
}

// wanBare measures the bare client of a wan run: workers goroutines sending GETs back to back
// with fasthttp to a new emulator with the run's setting, for d; it returns the 200s a second.
func wanBare(workers, capacity int, d time.Duration) (float64, error) {
	em := emulator.New(emulator.Options{MaxRecords: -1, NoProfiles: true})
	if err := em.SetFaults(wanFaults(capacity)); err != nil {
		return 0, err
	}
	url, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer stop(context.Background())
	c := &fasthttp.Client{MaxConnsPerHost: workers, NoDefaultUserAgentHeader: true}
	defer c.CloseIdleConnections()
	var ok atomic.Int64
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := 0; time.Now().Before(end); i++ {
				req.SetRequestURI(fmt.Sprintf("%s/track/ce?project=bench.example&event=Played&cv_id=wb%d-%d", url, w, i))
				if c.DoTimeout(req, resp, 10*time.Second) == nil && resp.StatusCode() == http.StatusOK {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return float64(ok.Load()) / d.Seconds(), nil
}
