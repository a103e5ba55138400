package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/woorelay/woorelay/bench"
)

// cmdBench is `woorelay bench`.
func cmdBench(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("bench", `usage: woorelay bench [--stage S[,S...]] [--queue disk|nats] [--rounds N] [--conns N] [--duration D] [--outage D] [--json]

Measures each stage against its ceiling in the same run (interleaved rounds, medians, ratios):
  transform  default preset vs the hand-written single-pass ceiling, one core
  ingest     durable acknowledgement of 20-event batches vs a bare echo handler
  e2e        ingest to the emulator's acknowledgement vs a bare Go GET loop
  drain      a backlog on disk (--backlog events) delivered after a restart vs the bare GET loop
  import     an archive of --backlog events (Segment's S3 layout) imported into a relay until
             delivered vs the drain stage in the same round (goal 0.80)
  outage     woorelay serve (child process) while the emulator refuses: memory, drain, loss
  wan        woorelay serve (default flags) draining into the emulator at 150 ms ± 20 % with room
             for 600 requests at once, then with the room dropped to 150 and back, then unlimited
"all" is transform, ingest, e2e and drain; import, outage and wan run only when named. See BENCHMARKS.md.

`)
	var o bench.Options
	stage := fs.String("stage", "all", "stages to run: transform, ingest, e2e, drain, import, outage, wan or all (comma-separated)")
	fs.IntVar(&o.Rounds, "rounds", 5, "interleaved rounds per stage; the table shows medians")
	fs.IntVar(&o.Conns, "conns", 32, "concurrent keep-alive connections of the load generator")
	fs.DurationVar(&o.Duration, "duration", 3*time.Second, "measured time of each side in a round")
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured load before each side of a round")
	fs.DurationVar(&o.Outage, "outage", 10*time.Minute, "how long the emulator refuses in the outage stage")
	fs.IntVar(&o.OutageRate, "outage-rate", 1000, "events per second offered during the outage")
	fs.DurationVar(&o.DrainLimit, "drain-limit", 15*time.Minute, "how long the outage stage waits for the backlog to drain")
	fs.IntVar(&o.Backlog, "backlog", 200_000, "events on disk that the drain stage delivers (and in the import stage's archive)")
	fs.BoolVar(&o.LiveIngest, "ingest-live", false, "ingest stage: let delivery run while ingesting (default: delivery held, ingest measured alone)")
	fs.StringVar(&o.Queue, "queue", "disk", "disk, or nats: also run ingest and e2e with the queue on JetStream (in-process nats-server), beside the disk queue's, in the same run")
	fs.BoolVar(&o.NoSync, "nosync", false, "diagnostics only: the relay acknowledges before the disk sync (not durable; shows what the sync costs)")
	jsonOut := fs.Bool("json", false, "print the results as JSON instead of a table")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (relay, load generator and ceilings alike) to this file, for go tool pprof")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintf(stderr, "woorelay bench: --cpuprofile: %v\n", err)
			return 2
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "woorelay bench: unexpected argument %q (flags only; see woorelay bench -h)\n", fs.Arg(0))
		return 2
	}
	stages, err := bench.ParseStages(*stage)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay bench: --stage: %v\n", err)
		return 2
	}
	if o.Rounds < 1 || o.Conns < 1 || o.Duration <= 0 || o.Outage <= 0 || o.OutageRate < 20 {
		fmt.Fprintln(stderr, "woorelay bench: --rounds and --conns must be at least 1, --duration and --outage positive, --outage-rate at least 20")
		return 2
	}
	if o.Queue != "disk" && o.Queue != "nats" {
		fmt.Fprintf(stderr, "woorelay bench: --queue %q: use disk or nats\n", o.Queue)
		return 2
	}
	o.Stages = stages
	if !*quiet {
		o.Progress = stderr
	}
	if slices.Contains(stages, "outage") || slices.Contains(stages, "wan") {
		if o.Exe, err = os.Executable(); err != nil {
			fmt.Fprintf(stderr, "woorelay bench: find the woorelay binary for the outage stage: %v\n", err)
			return 1
		}
	}
	results, err := bench.Run(o)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay bench: %v\n", err)
		return 1
	}
	if *jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(bench.Report{Machine: bench.DescribeMachine(), Conns: o.Conns, Rounds: o.Rounds, Duration: o.Duration.String(), Stages: results}); err != nil {
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

// writeTable prints the results as a table.
func writeTable(w io.Writer, o bench.Options, rs []bench.Result) {
	m := bench.DescribeMachine()
	fmt.Fprintf(w, "woorelay bench: %s, %d CPUs, %s, %d rounds of %s, %d connections\n\n", m.CPU, m.CPUs, m.Go, o.Rounds, o.Duration, o.Conns)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stage\tours ev/s\tceiling ev/s\tratio\tours p50/p99\tceiling p50/p99\tallocs/ev\tcpu µs/ev\tgoal\tresult\t")
	for _, r := range rs {
		if r.Outage != nil {
			continue
		}
		lat, ceilLat, allocs, cpu := "-", "-", "-", "-"
		if r.P99 > 0 {
			lat = bench.FormatMs(r.P50) + "/" + bench.FormatMs(r.P99)
		}
		if r.CeilP99 > 0 {
			ceilLat = bench.FormatMs(r.CeilP50) + "/" + bench.FormatMs(r.CeilP99)
		}
		if r.Stage == "transform" {
			allocs = fmt.Sprintf("%.2f (%.2f)", r.AllocsPerEvent, r.CeilAllocs)
		}
		if r.CPUPerEvent > 0 {
			cpu = fmt.Sprintf("%.1f (%.1f)", r.CPUPerEvent, r.CeilCPUPerEvent)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Stage, bench.FormatRate(r.Ours), bench.FormatRate(r.Ceiling), r.Ratio, lat, ceilLat, allocs, cpu, r.Goal, passFail(r.Pass))
	}
	tw.Flush()
	for _, r := range rs {
		if r.Outage == nil {
			continue
		}
		u := r.Outage
		fmt.Fprintf(w, "\noutage (%s at %d events/s offered, emulator answering 500):\n", u.Outage, u.Rate)
		fmt.Fprintf(w, "  acknowledged %d events, backlog %d events (%s on disk)\n", u.Acked, u.Backlog, bench.FormatMB(u.BacklogBytes))
		fmt.Fprintf(w, "  resident memory during the outage: median %s, peak %s; during the drain: peak %s\n", bench.FormatMB(u.RSSMedian), bench.FormatMB(u.RSSPeak), bench.FormatMB(u.DrainRSSPeak))
		fmt.Fprintf(w, "  drained in %s (%s events/s); delivered %d, lost %d, duplicates %d, dead-lettered %d, counters reconcile: %v\n",
			u.Drain.Round(100*time.Millisecond), bench.FormatRate(u.DrainRate), u.Delivered, u.Lost, u.Duplicates, u.DeadLettered, u.Reconciles)
		fmt.Fprintf(w, "  goal %s: %s\n", r.Goal, passFail(r.Pass))
	}
	for _, r := range rs {
		for _, run := range r.WAN {
			fmt.Fprintf(w, "\nwan %s: %d events over %d visitors, capacity %d: %s events/s in %s = %.2f of the ceiling %s (%.2f of a bare client's %s); %.1f%% of %d attempts refused; relay RSS peak %s, CPU %.2f cores\n",
				run.Name, run.Events, run.Visitors, run.Capacity, bench.FormatRate(run.Rate), run.Drain, run.Ratio, bench.FormatRate(run.Ceiling), run.BareRatio, bench.FormatRate(run.Bare), 100*run.Refused, run.Attempts, bench.FormatMB(run.RSSPeak), run.CPUCores)
			for _, win := range run.Windows {
				fmt.Fprintf(w, "  %s: %s events/s = %.2f of %s, %.1f%% refused\n", win.What, bench.FormatRate(win.Rate), win.Ratio, bench.FormatRate(win.Bound), 100*win.Refused)
			}
			if run.Note != "" {
				fmt.Fprintf(w, "  %s\n", run.Note)
			}
		}
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
