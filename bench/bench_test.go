package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"
)

// woorelayBinary builds the woorelay command once per test run, for the outage stage's child
// process.
var woorelayBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "woorelay-bench-test-")
	if err != nil {
		return "", err
	}
	exe := filepath.Join(dir, "woorelay")
	if out, err := exec.Command("go", "build", "-o", exe, "github.com/woorelay/woorelay/cmd/woorelay").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/woorelay: %v\n%s", err, out)
	}
	return exe, nil
})

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 9, 1, 9, 1}, 9},
	}
	for _, tt := range tests {
		in := append([]float64(nil), tt.in...)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
		for i := range in {
			if in[i] != tt.in[i] {
				t.Fatalf("median reordered its input: %v, was %v", tt.in, in)
			}
		}
	}
	if got := medianDuration([]time.Duration{3 * time.Millisecond, time.Millisecond, 2 * time.Millisecond}); got != 2*time.Millisecond {
		t.Errorf("medianDuration = %v, want 2ms", got)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {1, time.Millisecond}, {0.1, time.Millisecond}}
	for _, tt := range tests {
		if got := percentile(ds, tt.p); got != tt.want {
			t.Errorf("percentile(1..100ms, %v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := percentile(ds[:3], 99); got != 3*time.Millisecond {
		t.Errorf("p99 of 3 values = %v, want the largest", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of none = %v, want 0", got)
	}
}

func TestStageResultRatioIsMedianOfRounds(t *testing.T) {
	r := Result{OursR: []float64{50, 90, 70}, CeilR: []float64{100, 100, 200}}
	r.summarise()
	if r.Ours != 70 || r.Ceiling != 100 || r.Ratio != 0.5 {
		t.Errorf("summarise: ours %v ceiling %v ratio %v, want 70, 100, 0.5 (median of 0.5, 0.9, 0.35)", r.Ours, r.Ceiling, r.Ratio)
	}
}

func TestParseStages(t *testing.T) {
	got, err := ParseStages("outage, all")
	if err != nil || strings.Join(got, ",") != "transform,ingest,e2e,drain,outage" {
		t.Errorf("ParseStages(outage, all) = %v, %v", got, err)
	}
	if got, _ := ParseStages("all"); strings.Join(got, ",") != "transform,ingest,e2e,drain" {
		t.Errorf("all = %v, want the outage stage left out", got)
	}
	if _, err := ParseStages("transfrom"); err == nil || !strings.Contains(err.Error(), "use transform") {
		t.Errorf("a misspelt stage: %v", err)
	}
}

// TestBatchGen checks the generated batches: valid JSON, 20 events each, every event with a
// fresh messageId and the marker holding the same id in properties (traits for identify).
func TestBatchGen(t *testing.T) {
	g, err := NewBatchGen("t-", 10)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var buf []byte
	for b := range 12 {
		var first uint64
		buf, first = g.build(buf[:0])
		if first != uint64(b*BatchSize) {
			t.Errorf("batch %d starts at %d, want %d", b, first, b*BatchSize)
		}
		if !gjson.ValidBytes(buf) {
			t.Fatalf("batch %d is not valid JSON: %.300s", b, buf)
		}
		evs := gjson.GetBytes(buf, "batch").Array()
		if len(evs) != BatchSize {
			t.Fatalf("batch %d has %d events", b, len(evs))
		}
		for _, ev := range evs {
			id := ev.Get("messageId").Str
			obj := "properties"
			if ev.Get("type").Str == "identify" {
				obj = "traits"
			}
			if m := ev.Get(obj + "." + MarkerKey).Str; m != id || !strings.HasPrefix(id, "t-") {
				t.Fatalf("messageId %q, marker %q in %s: %s", id, m, obj, ev.Raw)
			}
			if seen[id] {
				t.Fatalf("messageId %q generated twice", id)
			}
			seen[id] = true
		}
	}
}

func TestEventTemplateWithoutMessageIDOrProperties(t *testing.T) {
	parts, err := eventTemplate([]byte(`{"type":"track","event":"x","anonymousId":"a","properties":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	ev := bytes.Join(parts, []byte("ID7"))
	if !gjson.ValidBytes(ev) || gjson.GetBytes(ev, "messageId").Str != "ID7" || gjson.GetBytes(ev, "properties.bench_mid").Str != "ID7" {
		t.Errorf("template filled: %s", ev)
	}
	parts, err = eventTemplate([]byte(`{"type":"identify","userId":"u"}`))
	if err != nil {
		t.Fatal(err)
	}
	ev = bytes.Join(parts, []byte("ID8"))
	if !gjson.ValidBytes(ev) || gjson.GetBytes(ev, "traits.bench_mid").Str != "ID8" || gjson.GetBytes(ev, "messageId").Str != "ID8" {
		t.Errorf("template filled: %s", ev)
	}
}

// smokeOptions are tiny stage settings for the smoke tests: they check that each stage runs
// and measures something, not how fast.
func smokeOptions(t testing.TB) Options {
	exe, err := woorelayBinary()
	if err != nil {
		t.Fatal(err)
	}
	return Options{Rounds: 1, Conns: 4, Duration: 100 * time.Millisecond, Warmup: 20 * time.Millisecond,
		Outage: 500 * time.Millisecond, OutageRate: 400, DrainLimit: time.Minute, Backlog: 2000, Exe: exe}
}

func TestBenchStagesSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts relays and a child process")
	}
	o := smokeOptions(t)
	procs := runtime.GOMAXPROCS(0)
	t.Run("transform", func(t *testing.T) {
		r, err := benchTransform(o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ours <= 0 || r.Ceiling <= 0 || r.Ratio <= 0 || r.AllocsPerEvent <= 0 || r.CeilAllocs <= 0 {
			t.Errorf("transform measured nothing: %+v", r)
		}
		if got := runtime.GOMAXPROCS(0); got != procs {
			t.Errorf("GOMAXPROCS is %d after the stage, want %d restored", got, procs)
		}
	})
	t.Run("ingest", func(t *testing.T) {
		r, err := benchIngest(o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ours <= 0 || r.Ceiling <= 0 || r.Bare <= 0 || r.P50 <= 0 || r.P99 < r.P50 || r.CeilP99 <= 0 || r.CPUPerEvent <= 0 || r.CeilCPUPerEvent <= 0 {
			t.Errorf("ingest measured nothing: %+v", r)
		}
	})
	t.Run("e2e", func(t *testing.T) {
		r, err := benchE2E(o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ours <= 0 || r.Ceiling <= 0 || r.Ratio <= 0 || r.CPUPerEvent <= 0 || r.CeilCPUPerEvent <= 0 {
			t.Errorf("e2e measured nothing: %+v", r)
		}
	})
	t.Run("ingest and e2e on JetStream", func(t *testing.T) {
		on := o
		on.Queue, on.Stages = "nats", []string{"ingest", "e2e"}
		rs, err := Run(on)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 4 || rs[1].Stage != "ingest-nats" || rs[3].Stage != "e2e-nats" || rs[1].Ours <= 0 || rs[3].Ours <= 0 || !strings.Contains(rs[3].Note, "JetStream") {
			t.Errorf("stages on JetStream: %+v", rs)
		}
	})
	t.Run("drain", func(t *testing.T) {
		r, err := benchDrain(o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Ours <= 0 || r.Ceiling <= 0 || r.Ratio <= 0 || r.CPUPerEvent <= 0 || r.CeilCPUPerEvent <= 0 || !strings.Contains(r.Note, "2,000 events") {
			t.Errorf("drain measured nothing: %+v", r)
		}
	})
	t.Run("outage", func(t *testing.T) {
		r, err := benchOutage(o)
		if err != nil {
			t.Fatal(err)
		}
		u := r.Outage
		if u == nil || u.Acked == 0 || !u.Drained || u.Lost != 0 || u.Delivered < u.Acked || u.RSSPeak == 0 && u.DrainRSSPeak == 0 {
			t.Errorf("outage: %+v", u)
		}
	})
}

// The stage benchmarks: each runs the stage with one round per iteration and reports the
// medians and the ratio against the ceiling, so a regression shows in review:
//
//	go test ./bench -run '^$' -bench Stage -benchtime 3x

func benchStage(b *testing.B, o Options, stage func(Options) (Result, error)) Result {
	o.Rounds = 1
	var all Result
	for i := 0; i < b.N; i++ {
		r, err := stage(o)
		if err != nil {
			b.Fatal(err)
		}
		all.Stage, all.Goal = r.Stage, r.Goal
		all.OursR = append(all.OursR, r.OursR...)
		all.CeilR = append(all.CeilR, r.CeilR...)
		all.P50, all.P99 = max(all.P50, r.P50), max(all.P99, r.P99)
		all.AllocsPerEvent = max(all.AllocsPerEvent, r.AllocsPerEvent)
		all.Outage = r.Outage
	}
	all.summarise()
	b.ReportMetric(all.Ours, "events/s")
	if all.Ceiling > 0 {
		b.ReportMetric(all.Ceiling, "ceiling-events/s")
		b.ReportMetric(all.Ratio, "ratio")
	}
	return all
}

func benchDefaults(b *testing.B) Options {
	o := smokeOptions(b)
	o.Conns, o.Duration, o.Warmup = 32, 2*time.Second, 500*time.Millisecond
	return o
}

// BenchmarkTransformStage is the transform stage: the default preset against the
// hand-written ceiling on one core (goal: ratio ≥ 0.80, ≤ 2 allocations per event).
func BenchmarkTransformStage(b *testing.B) {
	r := benchStage(b, benchDefaults(b), benchTransform)
	b.ReportMetric(r.AllocsPerEvent, "allocs/event")
}

// BenchmarkIngestStage is the ingest stage: durable acknowledgement at 32 connections against
// the sync floor, a bare handler that only appends and fdatasyncs (goal: ratio ≥ 0.60, p99 < 50 ms).
func BenchmarkIngestStage(b *testing.B) {
	r := benchStage(b, benchDefaults(b), benchIngest)
	b.ReportMetric(float64(r.P50)/1e6, "p50-ms")
	b.ReportMetric(float64(r.P99)/1e6, "p99-ms")
}

// BenchmarkEndToEndStage is the end-to-end stage: ingest to the emulator's acknowledgement
// against a bare GET loop (goal: ratio ≥ 0.50).
func BenchmarkEndToEndStage(b *testing.B) {
	benchStage(b, benchDefaults(b), benchE2E)
}

// BenchmarkDrainStage is the drain stage: a backlog of 200,000 events on disk delivered after
// a restart, against the bare GET loop sending as many (goal: ratio ≥ 0.80).
func BenchmarkDrainStage(b *testing.B) {
	o := benchDefaults(b)
	o.Backlog = defaultBacklog
	benchStage(b, o, benchDrain)
}

// BenchmarkOutageStage is the outage stage with a 10-second outage: resident memory of the
// child process and the drain afterwards (goal: RSS < 256 MB, nothing lost).
func BenchmarkOutageStage(b *testing.B) {
	o := benchDefaults(b)
	o.Outage = 10 * time.Second
	r := benchStage(b, o, benchOutage)
	u := r.Outage
	b.ReportMetric(float64(u.RSSPeak)/(1<<20), "rss-peak-MB")
	b.ReportMetric(float64(u.Lost), "lost")
	b.ReportMetric(u.Drain.Seconds(), "drain-s")
}
