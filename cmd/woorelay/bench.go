package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// `woorelay bench` measures every stage of the pipeline against a ceiling measured in the same
// run, interleaved round by round so that a noisy machine slows both sides alike, and prints
// the medians and their ratios with a PASS or FAIL against the project's goals:
//
//	transform  the default preset (engine, RunInto) vs the hand-written single-pass ceiling
//	           (presets/ceiling), on one core (GOMAXPROCS=1)
//	ingest     durable acknowledgement of 20-event batches by a real relay (fsync per group
//	           commit) vs a bare echo handler that reads the body and answers 200
//	e2e        ingest to the emulator's acknowledgement of the Woopra GET vs a bare Go client
//	           sending the same GETs to the same emulator
//	outage     `woorelay serve` as a child process while the emulator refuses everything:
//	           resident memory, backlog, drain time after recovery, events lost

// Goals of the stages (ratios are ours / ceiling, medians of the rounds).
const (
	goalTransformRatio  = 0.67
	goalTransformAllocs = 2.0
	goalIngestRatio     = 0.40
	goalIngestP99       = 50 * time.Millisecond
	goalE2ERatio        = 0.70
	goalOutageRSS       = 256 << 20
)

// benchOptions are the flags of `woorelay bench`.
type benchOptions struct {
	stages     []string
	rounds     int
	conns      int
	duration   time.Duration // measured time of each side in a round
	warmup     time.Duration // unmeasured load before each side of a round
	outage     time.Duration // how long the emulator refuses in the outage stage
	outageRate int           // events/s offered during the outage
	drainLimit time.Duration // how long the outage stage waits for the backlog to drain
	exe        string        // the woorelay binary the outage stage starts
	liveIngest bool          // ingest stage: deliver while ingesting instead of holding delivery
	noSync     bool          // diagnostics: the relay acknowledges before the disk sync
	progress   io.Writer     // progress lines; nil: none
}

// progressf writes one progress line.
func (o *benchOptions) progressf(format string, args ...any) {
	if o.progress != nil {
		fmt.Fprintf(o.progress, "bench: "+format+"\n", args...)
	}
}

// stageResult is the outcome of one stage: medians over the rounds, the ratio and the verdict.
type stageResult struct {
	Stage   string    `json:"stage"`
	Ours    float64   `json:"ours_events_per_s"`              // median events/s of woorelay
	Ceiling float64   `json:"ceiling_events_per_s,omitempty"` // median events/s of the ceiling
	Ratio   float64   `json:"ratio,omitempty"`                // median of the per-round ratios ours/ceiling
	OursR   []float64 `json:"ours_rounds,omitempty"`
	CeilR   []float64 `json:"ceiling_rounds,omitempty"`
	RatioR  []float64 `json:"ratio_rounds,omitempty"`
	// Latency of one request (ingest: one 20-event batch), median of the rounds' percentiles.
	P50     time.Duration `json:"p50_ns,omitempty"`
	P99     time.Duration `json:"p99_ns,omitempty"`
	CeilP50 time.Duration `json:"ceiling_p50_ns,omitempty"`
	CeilP99 time.Duration `json:"ceiling_p99_ns,omitempty"`
	// AllocsPerEvent is the engine's heap allocations per event (transform only);
	// CeilAllocs the ceiling's.
	AllocsPerEvent float64       `json:"allocs_per_event,omitempty"`
	CeilAllocs     float64       `json:"ceiling_allocs_per_event,omitempty"`
	Outage         *outageResult `json:"outage,omitempty"`
	// Floor is the ingest stage's sync floor (events/s of a bare handler that only appends and
	// fdatasyncs each body with group commit), FloorRatio its median ratio to the ceiling: no
	// durable acknowledgement at this concurrency can do better on this disk.
	Floor      float64   `json:"sync_floor_events_per_s,omitempty"`
	FloorR     []float64 `json:"sync_floor_rounds,omitempty"`
	FloorRatio float64   `json:"sync_floor_ratio,omitempty"`
	Goal       string    `json:"goal"`
	Pass       bool      `json:"pass"`
	Note       string    `json:"note,omitempty"`
}

// summarise fills the medians and the ratio from the rounds.
func (r *stageResult) summarise() {
	r.Ours, r.Ceiling = median(r.OursR), median(r.CeilR)
	r.RatioR = r.RatioR[:0]
	for i := range min(len(r.OursR), len(r.CeilR)) {
		if r.CeilR[i] > 0 {
			r.RatioR = append(r.RatioR, r.OursR[i]/r.CeilR[i])
		}
	}
	r.Ratio = median(r.RatioR)
}

// cmdBench is `woorelay bench`.
func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: woorelay bench [--stage S[,S...]] [--rounds N] [--conns N] [--duration D] [--outage D] [--json]

Measures each stage against its ceiling in the same run (interleaved rounds, medians, ratios):
  transform  default preset vs the hand-written single-pass ceiling, one core
  ingest     durable acknowledgement of 20-event batches vs a bare echo handler
  e2e        ingest to the emulator's acknowledgement vs a bare Go GET loop
  outage     woorelay serve (child process) while the emulator refuses: memory, drain, loss
"all" is transform, ingest and e2e; the outage stage runs only when named. See BENCHMARKS.md.

`)
		fs.PrintDefaults()
	}
	var o benchOptions
	stage := fs.String("stage", "all", "stages to run: transform, ingest, e2e, outage or all (comma-separated)")
	fs.IntVar(&o.rounds, "rounds", 5, "interleaved rounds per stage; the table shows medians")
	fs.IntVar(&o.conns, "conns", 32, "concurrent keep-alive connections of the load generator")
	fs.DurationVar(&o.duration, "duration", 3*time.Second, "measured time of each side in a round")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each side of a round")
	fs.DurationVar(&o.outage, "outage", 10*time.Minute, "how long the emulator refuses in the outage stage")
	fs.IntVar(&o.outageRate, "outage-rate", 1000, "events per second offered during the outage")
	fs.DurationVar(&o.drainLimit, "drain-limit", 15*time.Minute, "how long the outage stage waits for the backlog to drain")
	fs.BoolVar(&o.liveIngest, "ingest-live", false, "ingest stage: let delivery run while ingesting (default: delivery held, ingest measured alone)")
	fs.BoolVar(&o.noSync, "nosync", false, "diagnostics only: the relay acknowledges before the disk sync (not durable; shows what the sync costs)")
	jsonOut := fs.Bool("json", false, "print the results as JSON instead of a table")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "woorelay bench: unexpected argument %q (flags only; see woorelay bench -h)\n", fs.Arg(0))
		return 2
	}
	stages, err := parseStages(*stage)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay bench: --stage: %v\n", err)
		return 2
	}
	if o.rounds < 1 || o.conns < 1 || o.duration <= 0 || o.outage <= 0 || o.outageRate < 20 {
		fmt.Fprintln(stderr, "woorelay bench: --rounds and --conns must be at least 1, --duration and --outage positive, --outage-rate at least 20")
		return 2
	}
	o.stages = stages
	if !*quiet {
		o.progress = stderr
	}
	if slices.Contains(stages, "outage") {
		if o.exe, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "woorelay bench: find the woorelay binary for the outage stage: %v\n", err)
			return 1
		}
	}
	results, err := runBench(o)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay bench: %v\n", err)
		return 1
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(benchReport{Machine: describeMachine(), Conns: o.conns, Rounds: o.rounds, Duration: o.duration.String(), Stages: results}); err != nil {
			fmt.Fprintf(stderr, "woorelay bench: %v\n", err)
			return 1
		}
	} else {
		writeTable(stdout, o, results)
	}
	for _, r := range results {
		if !r.Pass {
			return 1
		}
	}
	return 0
}

// benchReport is the --json output.
type benchReport struct {
	Machine  machine       `json:"machine"`
	Conns    int           `json:"conns"`
	Rounds   int           `json:"rounds"`
	Duration string        `json:"duration"`
	Stages   []stageResult `json:"stages"`
}

// stageOrder is the order stages run and print in.
var stageOrder = []string{"transform", "ingest", "e2e", "outage"}

// parseStages reads --stage.
func parseStages(s string) ([]string, error) {
	want := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		switch p = strings.TrimSpace(p); p {
		case "all":
			want["transform"], want["ingest"], want["e2e"] = true, true, true
		case "transform", "ingest", "e2e", "outage":
			want[p] = true
		default:
			return nil, fmt.Errorf("unknown stage %q; use transform, ingest, e2e, outage or all", p)
		}
	}
	var out []string
	for _, st := range stageOrder {
		if want[st] {
			out = append(out, st)
		}
	}
	return out, nil
}

// runBench runs the chosen stages in order.
func runBench(o benchOptions) ([]stageResult, error) {
	var out []stageResult
	for _, st := range o.stages {
		var r stageResult
		var err error
		switch st {
		case "transform":
			r, err = benchTransform(o)
		case "ingest":
			r, err = benchIngest(o)
		case "e2e":
			r, err = benchE2E(o)
		case "outage":
			r, err = benchOutage(o)
		}
		if err != nil {
			return out, fmt.Errorf("%s stage: %w", st, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// writeTable prints the results as a table.
func writeTable(w io.Writer, o benchOptions, rs []stageResult) {
	m := describeMachine()
	fmt.Fprintf(w, "woorelay bench: %s, %d CPUs, %s, %d rounds of %s, %d connections\n\n", m.CPU, m.CPUs, m.Go, o.rounds, o.duration, o.conns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tours ev/s\tceiling ev/s\tratio\tours p50/p99\tceiling p50/p99\tallocs/ev\tgoal\tresult\t")
	for _, r := range rs {
		if r.Outage != nil {
			continue
		}
		lat, ceilLat, allocs := "-", "-", "-"
		if r.P99 > 0 {
			lat = fmtMs(r.P50) + "/" + fmtMs(r.P99)
		}
		if r.CeilP99 > 0 {
			ceilLat = fmtMs(r.CeilP50) + "/" + fmtMs(r.CeilP99)
		}
		if r.Stage == "transform" {
			allocs = fmt.Sprintf("%.2f (%.2f)", r.AllocsPerEvent, r.CeilAllocs)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t\n", r.Stage, fmtRate(r.Ours), fmtRate(r.Ceiling), r.Ratio, lat, ceilLat, allocs, r.Goal, passFail(r.Pass))
	}
	tw.Flush()
	for _, r := range rs {
		if r.Outage == nil {
			continue
		}
		u := r.Outage
		fmt.Fprintf(w, "\noutage (%s at %d events/s offered, emulator answering 500):\n", u.Outage, u.Rate)
		fmt.Fprintf(w, "  acknowledged %d events, backlog %d events (%s on disk)\n", u.Acked, u.Backlog, fmtBytes(u.BacklogBytes))
		fmt.Fprintf(w, "  resident memory during the outage: median %s, peak %s; during the drain: peak %s\n", fmtBytes(u.RSSMedian), fmtBytes(u.RSSPeak), fmtBytes(u.DrainRSSPeak))
		fmt.Fprintf(w, "  drained in %s (%s events/s); delivered %d, lost %d, duplicates %d, dead-lettered %d, counters reconcile: %v\n",
			u.Drain.Round(100*time.Millisecond), fmtRate(u.DrainRate), u.Delivered, u.Lost, u.Duplicates, u.DeadLettered, u.Reconciles)
		fmt.Fprintf(w, "  goal %s: %s\n", r.Goal, passFail(r.Pass))
	}
	for _, r := range rs {
		if r.Note != "" {
			fmt.Fprintf(w, "\n%s: %s", r.Stage, r.Note)
		}
	}
	fmt.Fprintln(w)
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// fmtRate writes events/s with thousands separators.
func fmtRate(v float64) string {
	if v == 0 {
		return "-"
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// fmtMs writes a duration in milliseconds.
func fmtMs(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// fmtBytes writes a byte count in MB.
func fmtBytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

// median returns the median of xs (the mean of the middle two for an even count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianDuration is median for durations.
func medianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the nearest-rank method:
// the smallest value that at least p% of the values are less than or equal to. 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// machine describes where the benchmark ran.
type machine struct {
	CPU  string `json:"cpu"`
	CPUs int    `json:"cpus"`
	Go   string `json:"go"`
	OS   string `json:"os"`
}

// describeMachine reads the CPU model from /proc/cpuinfo (Linux) and the Go version.
func describeMachine() machine {
	m := machine{CPU: "unknown CPU", CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}
