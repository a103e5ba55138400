package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/bench"
	"github.com/woorelay/woorelay/importer"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/relay"
	"github.com/woorelay/woorelay/server"
)

const importUsage = `usage: woorelay import [flags] LOCATION...

Sends the events of Segment's S3 destination, RudderStack's event archive or plain NDJSON files
(gzipped or not) to Woopra through a relay, once: a re-run sends nothing again, and a run that
was stopped resumes where the relay last acknowledged. LOCATION is a file, a folder, or
s3://bucket/prefix (add ?region=R, and for an S3-compatible store &endpoint=URL&use_path_style=true)
or gs://bucket/prefix, with the provider's credentials from its usual environment.

By default the events go to the relay running at --relay, with the write key of one of its
sources (--write-key, or --source of --config), and wait while its queue holds more than
what it delivers in --max-delay (read from its admin API at --server, else
its /metrics), so that live events keep flowing; --embedded runs a relay in this
process on --data instead (for a machine where none runs). --dry-run sends nothing and counts
what would be sent, by mapping and outcome. See README.md, "Moving history".
`

// importFlags are the flags of `woorelay import`.
type importFlags struct {
	programFlags
	since, until, relayURL, writeKey, config, source string
	data, woopraURL, checkpoint, progress            string
	embedded, dryRun, quiet                          bool
	maxBacklog                                       int64
	maxDelay                                         time.Duration
	batch, concurrency                               int
	rate                                             float64
	presetGiven                                      bool
}

func cmdImport(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("import", importUsage)
	var f importFlags
	f.register(fs)
	fs.StringVar(&f.since, "since", "", "send only events at or after this `time` (RFC 3339, or YYYY-MM-DD for midnight UTC)")
	fs.StringVar(&f.until, "until", "", "send only events before this `time` (RFC 3339, or YYYY-MM-DD)")
	fs.StringVar(&f.relayURL, "relay", "http://127.0.0.1:8080", "ingest `URL` of the running relay (serve's --listen)")
	fs.StringVar(&f.writeKey, "write-key", "", "write key of the relay's source whose preset maps the events")
	fs.StringVar(&f.config, "config", "", "sources `file`: take --source's write key (and, with --embedded or --dry-run, its preset, settings and mappings) from it")
	fs.StringVar(&f.source, "source", "", "`name` of the source in --config")
	fs.BoolVar(&f.embedded, "embedded", false, "no relay running: run one in this process on --data, deliver everything, then stop")
	fs.StringVar(&f.data, "data", relay.Defaults().DataDir, "with --embedded: the queue's directory (serve's --data)")
	fs.StringVar(&f.woopraURL, "woopra-url", "", "with --embedded: deliver to this endpoint instead of each source's base_url")
	fs.StringVar(&f.checkpoint, "checkpoint", "", "`file` recording what the relay acknowledged (default: woorelay-import-HASH.checkpoint here, HASH of the locations, window and source)")
	fs.DurationVar(&f.maxDelay, "max-delay", time.Second, "keep the relay's queue to what it delivers in this long, so live events wait about that at most (0: no throttle)")
	fs.Int64Var(&f.maxBacklog, "max-backlog", 0, "and to at most this many events (0: no cap)")
	fs.Float64Var(&f.rate, "rate", 0, "most events sent per second (0: no limit)")
	fs.IntVar(&f.batch, "batch", 500, "events in one request to the relay (at most 2,500)")
	fs.IntVar(&f.concurrency, "concurrency", 4, "requests to the relay under way at once")
	fs.BoolVar(&f.dryRun, "dry-run", false, "send nothing: map the events that would be sent and count them by mapping and outcome")
	fs.StringVar(&f.progress, "progress", "auto", "auto (a bar on a terminal, lines otherwise), bar, lines or none")
	fs.BoolVar(&f.quiet, "q", false, "no progress (as --progress none)")
	adminURL, adminToken := adminClientFlags(fs)
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	fs.Visit(func(fl *flagT) {
		if fl.Name == "preset" || fl.Name == "set" || fl.Name == "mappings" {
			f.presetGiven = true
		}
	})
	if err := applyEnv(fs); err != nil {
		fmt.Fprintf(stderr, "woorelay import: %v\n", err)
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintf(stderr, "woorelay import: name at least one LOCATION (a file, a folder, s3://... or gs://...)\n\n%s", importUsage)
		return 2
	}
	opts, err := f.window()
	if err == nil {
		err = f.check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "woorelay import: %v\n", err)
		return 2
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	for _, loc := range fs.Args() {
		l, err := importer.Open(ctx, loc)
		if err != nil {
			fmt.Fprintf(stderr, "woorelay import: %v\n", err)
			return 1
		}
		defer l.Close()
		objs, err := l.List(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "woorelay import: %v\n", err)
			return 1
		}
		opts.Objects = append(opts.Objects, objs...)
	}
	src, err := f.resolveSource()
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	ckpPath := f.checkpoint
	if ckpPath == "" {
		ckpPath = defaultCheckpoint(fs.Args(), f.since, f.until, src.identity)
	}
	cp, err := importer.OpenCheckpoint(ckpPath, f.dryRun)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay import: %v\n", err)
		return 1
	}
	defer cp.Close()
	opts.Checkpoint = cp
	opts.BatchEvents, opts.Concurrency, opts.Rate = f.batch, f.concurrency, f.rate
	progress := newProgressPrinter(f.progressMode(), stderr)
	opts.Progress = progress.update

	if f.dryRun {
		dr := &dryRunSink{prog: src.prog, now: time.Now(), counts: map[[2]string]int{}}
		opts.Sink = dr
		st, err := importer.Run(ctx, opts)
		progress.finish()
		if err != nil {
			fmt.Fprintf(stderr, "woorelay import: %v\n", err)
			return 1
		}
		dr.write(stdout, src.name, st)
		return 0
	}

	relayURL, admURL := f.relayURL, *adminURL
	var embedded *relay.Relay
	if f.embedded {
		if embedded, err = startEmbedded(f, src, stderr); err != nil {
			fmt.Fprintf(stderr, "woorelay import: %v\n", err)
			return 1
		}
		defer embedded.Stop(20 * time.Second)
		relayURL, admURL = embedded.URL(), embedded.AdminURL()
	}
	sink := &importer.HTTPSink{URL: relayURL, WriteKey: src.writeKey, MaxDelay: f.maxDelay, MaxBacklog: f.maxBacklog}
	if f.maxDelay > 0 {
		adm := admin.NewClient(admURL, *adminToken, nil)
		counters := func(ctx context.Context) (int64, error) {
			c, err := adm.Counters(ctx)
			return c.Queued, err
		}
		if _, err := counters(ctx); err == nil {
			sink.ReadBacklog = counters
		} else if _, err2 := sink.Backlog(ctx); err2 != nil {
			fmt.Fprintf(stderr, "woorelay import: %v\n(no relay running? start woorelay serve, or pass --embedded)\n", err2)
			return 1
		} else {
			fmt.Fprintf(stderr, "import: the admin API at %s did not answer (%v): reading the relay's backlog from %s/metrics instead, which costs it more (give --server and --admin-token)\n", admURL, err, relayURL)
		}
	}
	opts.Sink = sink
	fmt.Fprintf(stderr, "import: %d objects to %s (source %s); checkpoint %s\n", len(opts.Objects), relayURL, src.name, ckpPath)
	st, err := importer.Run(ctx, opts)
	progress.finish()
	writeImportSummary(stdout, st, ckpPath)
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "woorelay import: stopped; what the relay acknowledged is in %s: run the same command again to resume\n", ckpPath)
		} else {
			fmt.Fprintf(stderr, "woorelay import: %v\n(what the relay acknowledged is in %s: run the same command again to resume)\n", err, ckpPath)
		}
		return 1
	}
	if embedded != nil {
		return waitEmbedded(ctx, embedded, stdout, stderr)
	}
	return 0
}

// flagT is flag.Flag (named here so Visit's callback reads short).
type flagT = flag.Flag

// window reads --since and --until.
func (f *importFlags) window() (importer.Options, error) {
	var o importer.Options
	var err error
	if o.Since, err = parseWhen("--since", f.since); err != nil {
		return o, err
	}
	if o.Until, err = parseWhen("--until", f.until); err != nil {
		return o, err
	}
	if !o.Since.IsZero() && !o.Until.IsZero() && !o.Since.Before(o.Until) {
		return o, fmt.Errorf("--since %s is not before --until %s", f.since, f.until)
	}
	return o, nil
}

func parseWhen(flagName, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	for _, l := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(l, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%s %q is not a time: write 2024-05-01 (midnight UTC) or 2024-05-01T12:00:00Z", flagName, s)
}

// check rejects flag combinations that cannot do what they say.
func (f *importFlags) check() error {
	switch {
	case f.config != "" && f.source == "":
		return errors.New("--config needs --source NAME: the source whose write key and preset the import uses")
	case f.source != "" && f.config == "":
		return errors.New("--source names a source of a sources file: give --config FILE too")
	case f.writeKey != "" && f.config != "":
		return errors.New("give --write-key or --config with --source, not both")
	case f.presetGiven && f.config != "":
		return errors.New("--preset, --set and --mappings replace a source of --config: give one or the other")
	case f.presetGiven && !f.embedded && !f.dryRun:
		return errors.New("a running relay maps events with its own sources: instead of --preset, --set and --mappings give --write-key (or --config and --source) of one of them; or add --embedded or --dry-run")
	case !f.presetGiven && f.config == "" && f.writeKey == "" && !f.embedded && !f.dryRun:
		return errors.New("say which of the relay's sources maps the events: --write-key KEY, or --config FILE --source NAME (an import source with order: none suits history; see README.md, Moving history)")
	case f.batch < 1 || f.batch > 2500 || f.concurrency < 1 || f.maxBacklog < 0 || f.maxDelay < 0 || f.rate < 0:
		return errors.New("--batch must be 1 to 2,500, --concurrency at least 1, --max-delay, --max-backlog and --rate at least 0")
	}
	return nil
}

func (f *importFlags) progressMode() string {
	if f.quiet {
		return "none"
	}
	if f.progress == "auto" {
		if term.IsTerminal(int(os.Stderr.Fd())) {
			return "bar"
		}
		return "lines"
	}
	return f.progress
}

// importSource is the source the events are mapped by.
type importSource struct {
	name     string
	writeKey string
	prog     *mapping.Program // for --dry-run
	cfg      *server.Config   // for --embedded
	identity string           // what the default checkpoint's name depends on
}

// resolveSource settles the source from --config/--source, --preset/--set or --write-key.
func (f *importFlags) resolveSource() (importSource, error) {
	sandbox := func(_ string, s map[string]string) {
		if s["project"] == "" {
			s["project"] = relay.SandboxProject
		}
	}
	switch {
	case f.config != "":
		cfg, err := server.LoadConfig(f.config)
		if err != nil {
			return importSource{}, err
		}
		var names []string
		for _, sc := range cfg.Sources {
			if sc.Name != f.source {
				names = append(names, sc.Name)
				continue
			}
			src := importSource{name: sc.Name, writeKey: sc.WriteKey, identity: "source " + sc.Name + " " + sc.WriteKey}
			if sc.AnyKey || src.writeKey == "" {
				src.writeKey = "woorelay-import"
			}
			one := *cfg
			one.Sources = []server.SourceConfig{sc}
			srcs, err := one.Compile(sandbox)
			if err != nil {
				return src, err
			}
			src.prog, src.cfg = srcs[0].Program, &one
			return src, nil
		}
		return importSource{}, fmt.Errorf("%s has no source named %q (it has: %s)", f.config, f.source, strings.Join(names, ", "))
	case f.presetGiven || f.writeKey == "":
		prog, err := f.compile(f.preset, f.mappings, true)
		if err != nil {
			return importSource{}, err
		}
		keys := make([]string, 0, len(f.settings))
		for k, v := range f.settings {
			keys = append(keys, k+"="+v)
		}
		sort.Strings(keys)
		src := importSource{name: "import", writeKey: randomKey(), prog: prog, identity: "preset " + f.preset + " " + strings.Join(keys, " ") + " " + strings.Join(f.mappings, " ")}
		if f.embedded {
			cfg, err := presetConfig(f)
			if err != nil {
				return src, err
			}
			cfg.Sources[0].WriteKey = src.writeKey
			src.cfg = cfg
		}
		if f.settings["project"] == "" && (f.dryRun || f.embedded) {
			s := map[string]string{}
			for k, v := range f.settings {
				s[k] = v
			}
			sandbox("", s)
			if src.prog, err = presetProgram(f, s); err != nil {
				return src, err
			}
		}
		return src, nil
	}
	return importSource{name: "of write key " + f.writeKey[:min(4, len(f.writeKey))] + "…", writeKey: f.writeKey, identity: "key " + f.writeKey}, nil
}

// presetProgram compiles --preset and --mappings with settings.
func presetProgram(f *importFlags, settings map[string]string) (*mapping.Program, error) {
	pf := f.programFlags
	pf.settings = settings
	return pf.compile(f.preset, f.mappings, false)
}

// presetConfig writes a one-source sources file for --preset, --set and --mappings (order:
// none: history carries its own timestamps) and loads it, so the embedded relay reads it as
// serve reads any.
func presetConfig(f *importFlags) (*server.Config, error) {
	dir, err := os.MkdirTemp("", "woorelay-import-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	preset := f.preset
	if strings.ContainsAny(preset, "/.") {
		preset = abs(preset)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sources:\n  - name: import\n    write_key: placeholder\n    preset: %q\n    order: none\n    settings:\n", preset)
	for k, v := range f.settings {
		fmt.Fprintf(&b, "      %q: %q\n", k, v)
	}
	if len(f.settings) == 0 {
		b.WriteString("      {}\n")
	}
	if len(f.mappings) > 0 {
		b.WriteString("    mappings:\n")
		for _, m := range f.mappings {
			fmt.Fprintf(&b, "      - %q\n", abs(m))
		}
	}
	file := filepath.Join(dir, "import.yaml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return server.LoadConfig(file)
}

func randomKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return "import-" + hex.EncodeToString(b)
}

// defaultCheckpoint names the checkpoint after what makes one import differ from another.
func defaultCheckpoint(locs []string, since, until, identity string) string {
	h := sha256.New()
	sorted := append([]string(nil), locs...)
	sort.Strings(sorted)
	fmt.Fprintf(h, "%q %q %q %q", sorted, since, until, identity)
	return "woorelay-import-" + hex.EncodeToString(h.Sum(nil))[:12] + ".checkpoint"
}

// startEmbedded starts a relay in this process, its ingest on a free loopback port.
func startEmbedded(f importFlags, src importSource, stderr io.Writer) (*relay.Relay, error) {
	cfg := relay.Defaults()
	addr, err := bench.FreeLoopback()
	if err != nil {
		return nil, err
	}
	cfg.Listen, cfg.AdminListen, cfg.DataDir, cfg.WoopraURL, cfg.Sources = addr, "127.0.0.1:0", f.data, f.woopraURL, src.cfg
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	r, err := relay.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := r.Start(); err != nil {
		return nil, err
	}
	return r, nil
}

// waitEmbedded waits until the embedded relay's queue is empty and prints its counters.
func waitEmbedded(ctx context.Context, r *relay.Relay, stdout, stderr io.Writer) int {
	for {
		c := r.Queue().Counters()
		if c.Queued == 0 {
			fmt.Fprintf(stdout, "relay: delivered %d, dead-lettered %d, filtered %d, duplicates %d\n", c.Delivered, c.DeadLettered, c.Filtered, c.Duplicates)
			if r.Sandbox() != nil {
				fmt.Fprintln(stderr, "woorelay import: no project configured: the events went to the in-process sandbox emulator, not to Woopra (set project with --set or in the sources file)")
			}
			return 0
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(stderr, "woorelay import: stopped with %d events still queued in %s; woorelay serve (or import --embedded) on it delivers them\n", c.Queued, r.URL())
			return 1
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeImportSummary prints what a run did.
func writeImportSummary(w io.Writer, st importer.Stats, ckp string) {
	fmt.Fprintf(w, "import: sent %d events in %s (%s events/s); read %d events from %d objects: %d outside the window, %d without a time, %d too large, %d bad lines",
		st.Sent, st.Elapsed.Round(100*time.Millisecond), bench.FormatRate(st.Rate()), st.Events, st.Objects, st.OutsideWindow, st.NoTime, st.TooLarge, st.Bad)
	if st.ObjectsPruned > 0 {
		fmt.Fprintf(w, "; %d objects passed over (received before the window)", st.ObjectsPruned)
	}
	if st.LinesResumed > 0 || st.ObjectsResumed > 0 {
		fmt.Fprintf(w, "; %d objects and %d lines acknowledged by an earlier run passed over", st.ObjectsResumed, st.LinesResumed)
	}
	fmt.Fprintf(w, "; checkpoint %s\n", ckp)
	if st.FirstBad != "" {
		fmt.Fprintf(w, "first bad line: %s\n", st.FirstBad)
	}
	if st.FirstTooLarge != "" {
		fmt.Fprintf(w, "first event over 32 KB (the relay's limit; not sent): %s\n", st.FirstTooLarge)
	}
}

// dryRunSink maps the events instead of sending them and counts them by mapping and outcome.
type dryRunSink struct {
	prog   *mapping.Program
	now    time.Time
	mu     sync.Mutex
	counts map[[2]string]int
	total  int
}

func (d *dryRunSink) Send(_ context.Context, events [][]byte) error {
	for _, ev := range events {
		r := d.prog.Run(ev, d.now)
		m := r.Mapping
		if m == "" {
			m = "-"
		}
		d.mu.Lock()
		d.counts[[2]string{m, outcomeLabel(r)}]++
		d.total++
		d.mu.Unlock()
	}
	return nil
}

func (d *dryRunSink) write(w io.Writer, source string, st importer.Stats) {
	fmt.Fprintf(w, "dry run (source %s): %d events would be sent; read %d events from %d objects: %d outside the window, %d without a time, %d too large, %d bad lines",
		source, d.total, st.Events, st.Objects, st.OutsideWindow, st.NoTime, st.TooLarge, st.Bad)
	if st.LinesResumed > 0 || st.ObjectsResumed > 0 {
		fmt.Fprintf(w, " (%d objects and %d lines already sent by an earlier run)", st.ObjectsResumed, st.LinesResumed)
	}
	fmt.Fprintln(w)
	keys := make([][2]string, 0, len(d.counts))
	for k := range d.counts {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if d.counts[keys[i]] != d.counts[keys[j]] {
			return d.counts[keys[i]] > d.counts[keys[j]]
		}
		return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1]
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  mapping\toutcome\tevents")
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%s\t%d\n", k[0], k[1], d.counts[k])
	}
	tw.Flush()
}

// progressPrinter shows an import's progress: a bar redrawn in place on a terminal, a line
// every few seconds otherwise.
type progressPrinter struct {
	mode string
	w    io.Writer
	mu   sync.Mutex
	last time.Time
	drew bool
}

func newProgressPrinter(mode string, w io.Writer) *progressPrinter {
	return &progressPrinter{mode: mode, w: w}
}

func (p *progressPrinter) update(st importer.Stats) {
	p.mu.Lock()
	defer p.mu.Unlock()
	every := 2 * time.Second
	if p.mode == "bar" {
		every = 200 * time.Millisecond
	}
	if p.mode == "none" || (!st.Done && time.Since(p.last) < every) {
		return
	}
	p.last = time.Now()
	frac := 0.0
	if st.Bytes > 0 {
		frac = float64(st.BytesRead) / float64(st.Bytes)
	}
	eta := "-"
	if d := st.ETA(); d > 0 {
		eta = d.Round(time.Second).String()
	}
	switch p.mode {
	case "bar":
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%%  %s sent  %s events/s  ETA %s ", strings.Repeat("#", n), strings.Repeat(".", width-n), 100*frac, bench.FormatRate(float64(st.Sent)), bench.FormatRate(st.Rate()), eta)
		p.drew = true
	default:
		fmt.Fprintf(p.w, "import: %.0f%% read, sent %d, %s events/s, ETA %s\n", 100*frac, st.Sent, bench.FormatRate(st.Rate()), eta)
	}
}

// finish ends the bar's line.
func (p *progressPrinter) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.drew {
		fmt.Fprintln(p.w)
		p.drew = false
	}
}
