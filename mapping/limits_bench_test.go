package mapping_test

import (
	"slices"
	"testing"
	"time"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/mapping/corpus"
	"github.com/woorelay/woorelay/presets"
)

// BenchmarkExpressionLimits measures what the evaluation limits cost: each shipped preset, and
// a mapping whose expressions all run on the VM (loops included), compiled with and without
// the limits and run over the corpus in alternating slices of the same run, so machine load
// affects both sides alike. It reports the median over the slices of the ratio
// bounded/unbounded of their times, and the allocations per event the limits add.
func BenchmarkExpressionLimits(b *testing.B) {
	events := corpus.Generate(1, 5000)
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	vmHeavy := `kind: preset
name: vm
blueprint: woopra
identity: {when_none: send}
mappings:
  - name: m
    when: lower(type) in ["track", "page", "identify"] && len(string(userId ?? "")) >= 0
    endpoint: ce
    fields:
      event: {expr: 'upper(trim(string(event ?? type)))'}
      ce_keys: {expr: 'join(map(keys(properties ?? {}), lower(#)), ",")'}
      ce_n: {expr: 'len(filter(values(properties ?? {}), # != nil))'}
      ce_name: {expr: '"x-" + string(anonymousId ?? "") + "-" + type'}
`
	compile := func(name string) *mapping.Program {
		if name == "vm" {
			p, err := mapping.Compile(mapping.Source{File: "vm.yaml", Data: []byte(vmHeavy)},
				mapping.Options{Blueprint: woopra(b), Settings: map[string]string{"project": "example.com"}})
			if err != nil {
				b.Fatal(err)
			}
			return p
		}
		p, err := presets.Load(name, map[string]string{"project": "example.com"})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	for _, name := range append(presets.Names(), "vm") {
		b.Run(name, func(b *testing.B) {
			bounded := compile(name)
			restore := mapping.SetBounded(false)
			plain := compile(name)
			restore()
			var res mapping.Result
			slice := func(p *mapping.Program, from, n int) time.Duration {
				start := time.Now()
				for i := from; i < from+n; i++ {
					p.RunInto(&res, events[i%len(events)], now)
				}
				return time.Since(start)
			}
			var tb time.Duration
			var ratios []float64
			const step = 500
			b.ResetTimer()
			for done := 0; done < b.N; done += step {
				n := min(step, b.N-done)
				var p, bd time.Duration
				if done/step%2 == 0 { // alternate which goes first
					p, bd = slice(plain, done, n), slice(bounded, done, n)
				} else {
					bd, p = slice(bounded, done, n), slice(plain, done, n)
				}
				tb += bd
				ratios = append(ratios, float64(bd)/float64(p))
			}
			slices.Sort(ratios)
			allocs := func(p *mapping.Program) float64 {
				i := 0
				return testing.AllocsPerRun(len(events), func() { p.RunInto(&res, events[i%len(events)], now); i++ })
			}
			b.ReportMetric(ratios[len(ratios)/2], "bounded/unbounded")
			b.ReportMetric(allocs(bounded)-allocs(plain), "extra-allocs/event")
			b.ReportMetric(float64(tb.Nanoseconds())/float64(b.N), "ns/event")
		})
	}
}
