package presets

import (
	"testing"
	"time"

	"github.com/woorelay/woorelay/mapping"
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

// BenchmarkCeiling measures the hand-written equivalent of the default preset on the corpus.
func BenchmarkCeiling(b *testing.B) {
	benchEvents(b, newCeiling().Run)
}

// BenchmarkEngineVsCeiling measures the engine against the hand-written ceiling in one run,
// interleaved: blocks of 500 corpus events go through the engine, then the same block through
// the ceiling, so both see the same machine conditions. It reports each side's events/s and
// their ratio as engine/ceiling (1.00 would mean the engine is as fast as hand-written code).
func BenchmarkEngineVsCeiling(b *testing.B) {
	prog := loadDefault(b)
	c := newCeiling()
	events := benchCorpus()
	const block = 500
	var engineTime, ceilTime time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(block, b.N-done)
		t0 := time.Now()
		for i := done; i < done+n; i++ {
			if prog.Run(events[i%len(events)], benchNow).Outcome != mapping.Send {
				b.Fatal("engine did not send a corpus event")
			}
		}
		t1 := time.Now()
		for i := done; i < done+n; i++ {
			if c.Run(events[i%len(events)], benchNow).Outcome != mapping.Send {
				b.Fatal("ceiling did not send a corpus event")
			}
		}
		t2 := time.Now()
		engineTime += t1.Sub(t0)
		ceilTime += t2.Sub(t1)
		done += n
	}
	b.StopTimer()
	engine := float64(b.N) / engineTime.Seconds()
	ceil := float64(b.N) / ceilTime.Seconds()
	b.ReportMetric(engine, "engine-events/s")
	b.ReportMetric(ceil, "ceiling-events/s")
	b.ReportMetric(engine/ceil, "engine/ceiling")
}
