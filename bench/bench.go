// Package bench measures every stage of the relay against a ceiling measured in the same
// run, interleaved round by round so that a noisy machine slows both sides alike, and reports
// the medians and their ratios with a verdict against the project's goals (`woorelay bench`
// is its command line; BENCHMARKS.md has the figures):
//
//	transform  the default preset (engine, RunInto) vs the hand-written single-pass ceiling
//	           (presets/ceiling), on one core (GOMAXPROCS=1)
//	ingest     durable acknowledgement of 20-event batches by a real relay (fsync per group
//	           commit) vs a bare echo handler that reads the body and answers 200, beside the
//	           sync floor (the bare handler plus a group-committed append and fdatasync)
//	e2e        ingest to the emulator's acknowledgement of the Woopra GET vs a bare Go client
//	           sending the same GETs to the same emulator
//	outage     `woorelay serve` as a child process while the emulator refuses everything:
//	           resident memory, backlog, drain time after recovery, events lost
//	import     an archive in Segment's S3 layout imported into a relay (package importer) until
//	           the emulator has every event vs the drain stage's relay, alternated in each round
//	wan        `woorelay serve` (default flags) draining a backlog into the emulator at
//	           150 ms ± 20 % with room for 600 requests at once, against capacity/latency;
//	           then with the capacity dropped to 150 and back mid-drain, and without a limit
//
// It also holds the load generator (RunLoad, BatchGen, PostBatches) that the stages and the
// end-to-end tests drive relays with, and the helpers that run `woorelay serve` as a child
// process (FreeLoopback, WaitReady, ReadRSS, DirSize).
package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Goals of the stages (ratios are ours / ceiling, medians of the rounds).
const (
	goalTransformRatio  = 0.80
	goalTransformAllocs = 2.0
	goalIngestRatio     = 0.60 // of the sync floor
	goalIngestP99       = 50 * time.Millisecond
	goalE2ERatio        = 0.50
	goalDrainRatio      = 0.80
	goalOutageRSS       = 256 << 20
	goalNATSRatio       = 0.50 // ingest-nats of the sync floor, e2e-nats of the bare GET loop
)

// Options choose the stages and how long and how hard each is driven (the flags of
// `woorelay bench`).
type Options struct {
	Stages     []string
	Rounds     int
	Conns      int
	Duration   time.Duration // measured time of each side in a round
	Warmup     time.Duration // unmeasured load before each side of a round
	Outage     time.Duration // how long the emulator refuses in the outage stage
	OutageRate int           // events/s offered during the outage
	DrainLimit time.Duration // how long the outage stage waits for the backlog to drain
	Backlog    int           // events on disk that the drain stage delivers (0: 200,000)
	Exe        string        // the woorelay binary the outage stage starts
	LiveIngest bool          // ingest stage: deliver while ingesting instead of holding delivery
	NoSync     bool          // diagnostics: the relay acknowledges before the disk sync
	Progress   io.Writer     // progress lines; nil: none
	// Queue "nats" also runs the ingest and e2e stages with the relay's queue on JetStream
	// (a nats-server started in this process for each side, file storage, one replica), in the
	// same run, after the disk queue's: results "ingest-nats" and "e2e-nats".
	Queue string

	onNATS bool // this pass runs the relay on JetStream
}

// progressf writes one progress line.
func (o *Options) progressf(format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...)
	}
}

// Result is the outcome of one stage: medians over the rounds, the ratio and the verdict.
type Result struct {
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
	AllocsPerEvent float64 `json:"allocs_per_event,omitempty"`
	// CPUPerEvent is the CPU time the bench process spent per event on woorelay's side of a
	// round (woorelay, the emulator and the load generator together), in µs, median of the
	// rounds; CeilCPUPerEvent the same for the ceiling's side (e2e, drain: the bare loop and
	// the emulator; ingest: the sync floor and the load generator). Less noisy than the
	// rates on a shared machine, and what the per-event budget in BENCHMARKS.md counts.
	CPUPerEvent     float64       `json:"cpu_us_per_event,omitempty"`
	CeilCPUPerEvent float64       `json:"ceiling_cpu_us_per_event,omitempty"`
	CPUR            []float64     `json:"cpu_us_per_event_rounds,omitempty"`
	CeilCPUR        []float64     `json:"ceiling_cpu_us_per_event_rounds,omitempty"`
	CeilAllocs      float64       `json:"ceiling_allocs_per_event,omitempty"`
	Outage          *OutageResult `json:"outage,omitempty"`
	// WAN holds the wan stage's runs: steady, drop and free.
	WAN []WANRun `json:"wan,omitempty"`
	// Bare is the ingest stage's bare Echo handler (reads the body, answers 200: no durability),
	// median events/s, and FloorRatio the median ratio of the stage's ceiling, the sync floor,
	// to it: what syncing before answering costs on this disk, before any work of the relay's.
	Bare       float64   `json:"bare_echo_events_per_s,omitempty"`
	BareR      []float64 `json:"bare_echo_rounds,omitempty"`
	FloorRatio float64   `json:"sync_floor_to_bare_ratio,omitempty"`
	Goal       string    `json:"goal"`
	Pass       bool      `json:"pass"`
	Note       string    `json:"note,omitempty"`
}

// summarise fills the medians and the ratio from the rounds.
func (r *Result) summarise() {
	r.Ours, r.Ceiling = median(r.OursR), median(r.CeilR)
	r.RatioR = r.RatioR[:0]
	for i := range min(len(r.OursR), len(r.CeilR)) {
		if r.CeilR[i] > 0 {
			r.RatioR = append(r.RatioR, r.OursR[i]/r.CeilR[i])
		}
	}
	r.Ratio = median(r.RatioR)
	r.CPUPerEvent, r.CeilCPUPerEvent = median(r.CPUR), median(r.CeilCPUR)
}

// Report is the --json output.
type Report struct {
	Machine  Machine  `json:"machine"`
	Conns    int      `json:"conns"`
	Rounds   int      `json:"rounds"`
	Duration string   `json:"duration"`
	Stages   []Result `json:"stages"`
}

// stageOrder is the order stages run and print in.
var stageOrder = []string{"transform", "ingest", "e2e", "drain", "import", "outage", "wan"}

// ParseStages reads --stage.
func ParseStages(s string) ([]string, error) {
	want := map[string]bool{}
	for _, p := range strings.Split(s, ",") {
		switch p = strings.TrimSpace(p); p {
		case "all":
			want["transform"], want["ingest"], want["e2e"], want["drain"] = true, true, true, true
		case "transform", "ingest", "e2e", "drain", "import", "outage", "wan":
			want[p] = true
		default:
			return nil, fmt.Errorf("unknown stage %q; use transform, ingest, e2e, drain, import, outage, wan or all", p)
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

// Run runs the chosen stages in order.
func Run(o Options) ([]Result, error) {
	var out []Result
	for _, st := range o.Stages {
		var r Result
		var err error
		switch st {
		case "transform":
			r, err = benchTransform(o)
		case "ingest":
			r, err = benchIngest(o)
		case "e2e":
			r, err = benchE2E(o)
		case "drain":
			r, err = benchDrain(o)
		case "import":
			r, err = benchImport(o)
		case "outage":
			r, err = benchOutage(o)
		case "wan":
			r, err = benchWAN(o)
		}
		if err != nil {
			return out, fmt.Errorf("%s stage: %w", st, err)
		}
		out = append(out, r)
		if o.Queue == "nats" && (st == "ingest" || st == "e2e") {
			on := o
			on.onNATS = true
			var rn Result
			if st == "ingest" {
				rn, err = benchIngest(on)
			} else {
				rn, err = benchE2E(on)
			}
			if err != nil {
				return out, fmt.Errorf("%s stage on JetStream: %w", st, err)
			}
			rn.Stage += "-nats"
			rn.Note = "queue on JetStream (nats-server in process, file storage, 1 replica, 16 partitions): " + rn.Note
			rn.Goal, rn.Pass = fmt.Sprintf("ratio ≥ %.2f", goalNATSRatio), rn.Ratio >= goalNATSRatio
			out = append(out, rn)
		}
	}
	return out, nil
}

// FormatRate writes events/s with thousands separators.
func FormatRate(v float64) string {
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

// FormatMs writes a duration in milliseconds.
func FormatMs(d time.Duration) string {
	return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
}

// FormatMB writes a byte count in MB.
func FormatMB(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }

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

// Machine describes where the benchmark ran.
type Machine struct {
	CPU  string `json:"cpu"`
	CPUs int    `json:"cpus"`
	Go   string `json:"go"`
	OS   string `json:"os"`
}

// DescribeMachine reads the CPU model from /proc/cpuinfo (Linux) and the Go version.
func DescribeMachine() Machine {
	m := Machine{CPU: "unknown CPU", CPUs: runtime.NumCPU(), Go: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
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
