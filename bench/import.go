package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/importer"
)

// goalImportRatio is the import stage's goal: events/s of `woorelay import` from an archive
// into a relay and on to the emulator, against the drain stage's in the same round.
const goalImportRatio = 0.80

// benchImport is the import stage: an archive of --backlog events in Segment's S3 layout
// (gzipped NDJSON in a local folder) imported into a relay (HTTPSink with the default
// --max-delay, a checkpoint synced after every batch) until the emulator has every event,
// against the drain stage's relay delivering a backlog of as many events from disk, the two
// alternated in each round.
func benchImport(o Options) (Result, error) {
	n := o.backlog()
	r := Result{Stage: "import", Goal: fmt.Sprintf("ratio ≥ %.2f of drain", goalImportRatio),
		Note: fmt.Sprintf("an archive of %s events in Segment's S3 layout (gzipped NDJSON, 5,000 events an object) imported into a relay through its ingest until the emulator has every event, vs the drain stage (the same number of events delivered from a backlog on disk) in the same round", FormatRate(float64(n)))}
	dir, err := os.MkdirTemp("", "woorelay-bench-archive-")
	if err != nil {
		return r, fmt.Errorf("create the archive's folder (set TMPDIR to a writable disk): %v", err)
	}
	defer os.RemoveAll(dir)
	o.progressf("import: writing an archive of %d events", n)
	if _, err := importer.WriteArchive(importer.ArchiveSpec{Layout: importer.Segment, Events: n, Start: time.Now().Add(-60 * 24 * time.Hour), Span: 30 * 24 * time.Hour, PerObject: 5000, ID: fmt.Sprintf("bi%d", time.Now().UnixNano())},
		importer.PutFile(dir)); err != nil {
		return r, err
	}
	g, err := NewBatchGen(fmt.Sprintf("bi%d-", time.Now().UnixNano()), 50)
	if err != nil {
		return r, err
	}
	for round := range o.Rounds {
		drain, drainCPU, err := relayDrain(o, g, n)
		if err != nil {
			return r, err
		}
		rate, cpu, err := relayImport(o, dir, n)
		if err != nil {
			return r, err
		}
		r.OursR, r.CeilR = append(r.OursR, rate), append(r.CeilR, drain)
		r.CPUR, r.CeilCPUR = append(r.CPUR, cpu), append(r.CeilCPUR, drainCPU)
		o.progressf("import round %d: import %s events/s (%.1f µs of CPU an event), drain %s events/s (%.1f µs)", round+1, FormatRate(rate), cpu, FormatRate(drain), drainCPU)
	}
	r.summarise()
	r.Pass = r.Ratio >= goalImportRatio
	return r, nil
}

// relayImport imports the archive in dir (n events) into a new relay and returns the events/s
// from the start until the emulator has answered every one, and the process's µs of CPU per
// event in that time.
func relayImport(o Options, dir string, n int) (rate, cpu float64, err error) {
	br, err := startBenchRelay(o, false)
	if err != nil {
		return 0, 0, err
	}
	defer br.close()
	ctx := context.Background()
	loc, err := importer.Open(ctx, dir)
	if err != nil {
		return 0, 0, err
	}
	defer loc.Close()
	objs, err := loc.List(ctx)
	if err != nil {
		return 0, 0, err
	}
	cp, err := importer.OpenCheckpoint(filepath.Join(br.dir, "import.checkpoint"), false)
	if err != nil {
		return 0, 0, err
	}
	defer cp.Close()
	start, cpu0 := time.Now(), processCPU()
	adm := admin.NewClient(br.r.AdminURL(), "", nil)
	sink := &importer.HTTPSink{URL: br.r.URL(), WriteKey: WriteKey, MaxDelay: time.Second, ReadBacklog: func(ctx context.Context) (int64, error) {
		c, err := adm.Counters(ctx)
		return c.Queued, err
	}}
	st, err := importer.Run(ctx, importer.Options{Objects: objs, Checkpoint: cp, Sink: sink})
	if err != nil {
		return 0, 0, fmt.Errorf("import: %v", err)
	}
	if st.Sent != int64(n) {
		return 0, 0, fmt.Errorf("import sent %d of %d events (%+v)", st.Sent, n, st)
	}
	if err := waitDelivered(br, uint64(n), 10*time.Minute); err != nil {
		return 0, 0, err
	}
	return float64(n) / time.Since(start).Seconds(), cpuPerEvent(processCPU()-cpu0, int64(n)), nil
}
