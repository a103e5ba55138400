package presets

import (
	"runtime"
	"testing"
	"time"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/presets/ceiling"
)

// benchNow is after every corpus timestamp, so every corpus event is sent.
var benchNow = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// benchEvents runs run over the corpus events in turn, b.N times, and reports events/s. It
// returns the events per second measured. Both sides take the event as []byte (and convert it to
// a string once) and build the full request: parameters, headers and the encoded URL.
func benchEvents(b *testing.B, run func([]byte, time.Time) mapping.Result) float64 {
	events := benchCorpus()
	total := 0
	for _, ev := range events {
		total += len(ev)
	}
	b.SetBytes(int64(total / len(events)))
	b.ReportAllocs()
	sent := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res := run(events[i%len(events)], benchNow); res.Outcome == mapping.Send {
			sent++
		}
	}
	b.StopTimer()
	if sent != b.N {
		b.Fatalf("%d of %d events were sent, want all", sent, b.N)
	}
	perSec := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(perSec, "events/s")
	return perSec
}

// BenchmarkDefaultPreset measures the engine running the default preset on the corpus.
func BenchmarkDefaultPreset(b *testing.B) {
	prog := loadDefault(b)
	benchEvents(b, prog.Run)
}

// BenchmarkDefaultPresetInto measures the engine's reuse path (Program.RunInto with one Result
// for every event) running the default preset on the corpus.
func BenchmarkDefaultPresetInto(b *testing.B) {
	prog := loadDefault(b)
	var res mapping.Result
	benchEvents(b, func(ev []byte, now time.Time) mapping.Result {
		prog.RunInto(&res, ev, now)
		return res
	})
}

// BenchmarkCeiling measures the hand-written equivalent of the default preset on the corpus.
func BenchmarkCeiling(b *testing.B) {
	benchEvents(b, ceiling.New().Run)
}

// BenchmarkCeilingInto measures the ceiling's reuse path (RunInto with one Result for every
// event), the counterpart of BenchmarkDefaultPresetInto.
func BenchmarkCeilingInto(b *testing.B) {
	c := ceiling.New()
	var res mapping.Result
	benchEvents(b, func(ev []byte, now time.Time) mapping.Result {
		c.RunInto(&res, ev, now)
		return res
	})
}

// BenchmarkEngineVsCeiling measures the engine against the hand-written ceiling in one run,
// interleaved: blocks of 500 corpus events go through the engine, then the same block through
// the ceiling, so both see the same machine conditions. It reports each side's events/s and
// their ratio as engine/ceiling (1.00 would mean the engine is as fast as hand-written code).
// Both sides return a fresh Result per event (Run).
func BenchmarkEngineVsCeiling(b *testing.B) {
	prog := loadDefault(b)
	c := ceiling.New()
	interleave(b, prog.Run, c.Run)
}

// BenchmarkEngineVsCeilingInto is BenchmarkEngineVsCeiling on the reuse path: each side maps
// every event into one Result of its own (RunInto), as a delivery loop would.
func BenchmarkEngineVsCeilingInto(b *testing.B) {
	prog := loadDefault(b)
	c := ceiling.New()
	var engineRes, ceilRes mapping.Result
	interleave(b,
		func(ev []byte, now time.Time) mapping.Result { prog.RunInto(&engineRes, ev, now); return engineRes },
		func(ev []byte, now time.Time) mapping.Result { c.RunInto(&ceilRes, ev, now); return ceilRes })
}

// interleave runs engine and ceiling over the corpus in alternating blocks of 500 events and
// reports each side's events/s, their ratio, and the engine's allocations per event.
func interleave(b *testing.B, engine, ceiling func([]byte, time.Time) mapping.Result) {
	events := benchCorpus()
	const block = 500
	var engineTime, ceilTime time.Duration
	var engineAllocs uint64
	var ms runtime.MemStats
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(block, b.N-done)
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		before := ms.Mallocs
		b.StartTimer()
		t0 := time.Now()
		for i := done; i < done+n; i++ {
			if engine(events[i%len(events)], benchNow).Outcome != mapping.Send {
				b.Fatal("engine did not send a corpus event")
			}
		}
		t1 := time.Now()
		b.StopTimer()
		runtime.ReadMemStats(&ms)
		engineAllocs += ms.Mallocs - before
		b.StartTimer()
		t2 := time.Now()
		for i := done; i < done+n; i++ {
			if ceiling(events[i%len(events)], benchNow).Outcome != mapping.Send {
				b.Fatal("ceiling did not send a corpus event")
			}
		}
		t3 := time.Now()
		engineTime += t1.Sub(t0)
		ceilTime += t3.Sub(t2)
		done += n
	}
	b.StopTimer()
	engineRate := float64(b.N) / engineTime.Seconds()
	ceilRate := float64(b.N) / ceilTime.Seconds()
	b.ReportMetric(engineRate, "engine-events/s")
	b.ReportMetric(ceilRate, "ceiling-events/s")
	b.ReportMetric(engineRate/ceilRate, "engine/ceiling")
	b.ReportMetric(float64(engineAllocs)/float64(b.N), "engine-allocs/event")
}
