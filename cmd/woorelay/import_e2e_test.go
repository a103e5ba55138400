package main

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/bench"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/importer"
)

// importEvents is the size of each archive of the end-to-end import test: 100,000 events (the
// acceptance's figure) with WOORELAY_LONG_E2E=1, 10,000 otherwise, so that CI stays quick.
func importEvents() int {
	if os.Getenv("WOORELAY_LONG_E2E") != "" {
		return 100_000
	}
	return 10_000
}

var (
	histStart = time.Now().UTC().Add(-45 * 24 * time.Hour).Truncate(24 * time.Hour)
	histSince = histStart.Add(20 * 24 * time.Hour)
	histUntil = histSince.Add(7 * 24 * time.Hour)
)

// importRig is a relay (`woorelay serve`, a child process) delivering to an emulator in this
// process, with two sources of the same preset and settings: import (order: none) and live.
type importRig struct {
	em      *emulator.Emulator
	relay   *proc
	sources string
}

const importSources = `sources:
  - name: import
    write_key: import-key
    preset: default
    settings: {project: history.example.com}
    order: none
  - name: live
    write_key: live-key
    preset: default
    settings: {project: history.example.com}
`

func newImportRig(t *testing.T) *importRig {
	t.Helper()
	em := emulator.New(emulator.Options{MaxRecords: 1 << 21, NoProfiles: true})
	emURL, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(context.Background()) })
	dir := t.TempDir()
	cfg := filepath.Join(dir, "woorelay.yaml")
	if err := os.WriteFile(cfg, []byte(importSources), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, err := bench.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	admin, err := bench.FreeLoopback()
	if err != nil {
		t.Fatal(err)
	}
	p := startWoorelay(t, addr, nil, "serve", "--config", cfg, "--listen", addr, "--admin-listen", admin,
		"--data", filepath.Join(dir, "data"), "--woopra-url", emURL, "--debugger-events", "0", "--log-level", "warn")
	return &importRig{em: em, relay: p, sources: cfg}
}

// writeArchive writes a synthetic archive of layout into a new folder.
func writeArchive(t *testing.T, spec importer.ArchiveSpec) (string, []importer.ArchivedEvent) {
	t.Helper()
	dir := t.TempDir()
	evs, err := importer.WriteArchive(spec, importer.PutFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	return dir, evs
}

// delivered counts the emulator's records by the marker's value (ce_ or cv_ marker).
func (r *importRig) delivered(marker string) map[int][]emulator.Record {
	out := map[int][]emulator.Record{}
	for _, rec := range r.em.Requests() {
		v, ok := rec.Params.Lookup("ce_" + marker)
		if !ok {
			v, ok = rec.Params.Lookup("cv_" + marker)
		}
		if !ok || rec.Status != http.StatusOK {
			continue
		}
		n, _ := strconv.Atoi(v)
		out[n] = append(out[n], rec)
	}
	return out
}

func (r *importRig) importCmd(t *testing.T, ckp, dir string, extra ...string) *exec.Cmd {
	args := append([]string{"import", "--config", r.sources, "--source", "import", "--relay", r.relay.url, "--server", r.relay.admin,
		"--since", histSince.Format(time.RFC3339), "--until", histUntil.Format(time.RFC3339), "--checkpoint", ckp, "--progress", "lines"}, extra...)
	return exec.Command(woorelayBinary(t), append(args, dir)...)
}

var sentRe = regexp.MustCompile(`import: sent (\d+) events`)

// runImport runs an import to its end and returns how many events it says it sent.
func (r *importRig) runImport(t *testing.T, ckp, dir string, extra ...string) int {
	t.Helper()
	cmd := r.importCmd(t, ckp, dir, extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("woorelay import: %v\n%s", err, out)
	}
	m := sentRe.FindSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in the import's output:\n%s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// checkWindow checks that exactly the window's events arrived, each once, each at its own time;
// samples are the events also sent live, which arrive twice.
func checkWindow(t *testing.T, got map[int][]emulator.Record, evs []importer.ArchivedEvent, samples map[int]bool) {
	t.Helper()
	want, wrong := 0, 0
	for _, e := range evs {
		in := !e.At.Before(histSince) && e.At.Before(histUntil)
		recs := got[e.N]
		if in {
			want++
		}
		copies := 0
		if in {
			copies = 1
			if samples[e.N] {
				copies = 2
			}
		}
		if len(recs) != copies {
			if wrong++; wrong <= 5 {
				t.Errorf("event %d (%s, in the window: %v) arrived %d times, want %d", e.N, e.At.Format(time.RFC3339), in, len(recs), copies)
			}
			continue
		}
		for _, rec := range recs {
			if ts := rec.Params.Get("timestamp"); ts != strconv.FormatInt(e.At.UnixMilli(), 10) {
				if wrong++; wrong <= 5 {
					t.Errorf("event %d arrived with timestamp %s, want its own %d", e.N, ts, e.At.UnixMilli())
				}
			}
		}
	}
	if wrong > 5 {
		t.Errorf("... %d events wrong in all", wrong)
	}
	if want < len(evs)/6 {
		t.Fatalf("only %d of %d events in the window: the archive does not span it", want, len(evs))
	}
	t.Logf("%d of %d events in the window arrived once each, with their timestamps", want, len(evs))
}

// sendLive posts events as an SDK would to the live source, with fresh messageIds.
func sendLive(t *testing.T, url string, evs [][]byte) {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(`{"batch":[`)
	for i, ev := range evs {
		if i > 0 {
			b.WriteByte(',')
		}
		mid := gjson.GetBytes(ev, "messageId").String()
		b.Write(bytes.Replace(ev, []byte(`"`+mid+`"`), []byte(`"live-`+mid+`"`), 1))
	}
	b.WriteString(`]}`)
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/batch", &b)
	req.SetBasicAuth("live-key", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("live batch: %s", resp.Status)
	}
}

// Acceptance 1 and 2, Segment's layout: an archive over 30 days imported with a 7-day window
// through serve delivers exactly the window's events, once, each at its own timestamp, mapped as
// the same events sent live are (every parameter compared on a sample); a second run sends 0.
func TestImportSegmentArchiveEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test")
	}
	rig := newImportRig(t)
	dir, evs := writeArchive(t, importer.ArchiveSpec{Layout: importer.Segment, Events: importEvents(), Start: histStart, Span: 30 * 24 * time.Hour, PerObject: 1000, Marker: "seg_n", ID: "seg"})
	ckp := filepath.Join(t.TempDir(), "seg.checkpoint")
	start := time.Now()
	sent := rig.runImport(t, ckp, dir)
	t.Logf("first run sent %d events in %v", sent, time.Since(start).Round(time.Millisecond))

	samples := sendLiveSample(t, rig, evs)
	want := 0
	for _, e := range evs {
		if !e.At.Before(histSince) && e.At.Before(histUntil) {
			want++
		}
	}
	if sent != want {
		t.Errorf("the import says it sent %d events, the window holds %d", sent, want)
	}
	waitFor(t, 2*time.Minute, "every event delivered", func() bool {
		n := 0
		for _, recs := range rig.delivered("seg_n") {
			n += len(recs)
		}
		return n >= want+len(samples)
	})
	got := rig.delivered("seg_n")
	checkWindow(t, got, evs, samples)
	compareSample(t, got, samples)

	if again := rig.runImport(t, ckp, dir); again != 0 {
		t.Errorf("the second run sent %d events, want 0", again)
	}
	time.Sleep(500 * time.Millisecond)
	checkWindow(t, rig.delivered("seg_n"), evs, samples)
}

// Acceptance 1 and 2, RudderStack's layout: an import killed (SIGKILL) at about half of the
// window and run again delivers every event of the window once; a third run sends 0.
func TestImportRudderStackArchiveKilledAndResumed(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test")
	}
	rig := newImportRig(t)
	dir, evs := writeArchive(t, importer.ArchiveSpec{Layout: importer.RudderStack, Events: importEvents(), Start: histStart, Span: 30 * 24 * time.Hour, PerObject: 500, Marker: "rud_n", ID: "rud", Seed: 2})
	want := 0
	for _, e := range evs {
		if !e.At.Before(histSince) && e.At.Before(histUntil) {
			want++
		}
	}
	ckp := filepath.Join(t.TempDir(), "rud.checkpoint")
	// Slow enough to be killed half-way: the window's events over about 8 s.
	cmd := rig.importCmd(t, ckp, dir, "--rate", strconv.Itoa(max(100, want/8)), "--batch", "50")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	count := func() int {
		n := 0
		for _, recs := range rig.delivered("rud_n") {
			n += len(recs)
		}
		return n
	}
	waitFor(t, 2*time.Minute, "half of the window delivered", func() bool { return count() >= want/2 })
	cmd.Process.Signal(syscall.SIGKILL)
	if err := <-exited; err == nil {
		t.Fatalf("the import ended before it was killed:\n%s", out.String())
	}
	time.Sleep(300 * time.Millisecond)
	atKill := count()
	if atKill >= want {
		t.Fatalf("all %d events were delivered before the kill", atKill)
	}
	t.Logf("killed with %d of %d delivered", atKill, want)

	resumed := rig.runImport(t, ckp, dir)
	if resumed == 0 || resumed >= want {
		t.Errorf("the resumed run sent %d of %d events: it did not resume where the first stopped", resumed, want)
	}
	waitFor(t, 2*time.Minute, "every event delivered", func() bool { return count() >= want })
	time.Sleep(500 * time.Millisecond)
	checkWindow(t, rig.delivered("rud_n"), evs, nil)
	if again := rig.runImport(t, ckp, dir); again != 0 {
		t.Errorf("a third run sent %d events, want 0", again)
	}
	// Mapped as live: the archive's requestIP is the address the SDK's request came from, which
	// the live copy, posted from here, cannot have; every other parameter must match.
	samples := sendLiveSample(t, rig, evs)
	waitFor(t, time.Minute, "the live sample delivered", func() bool { return count() >= want+len(samples) })
	got := rig.delivered("rud_n")
	checkWindow(t, got, evs, samples)
	compareSample(t, got, samples, "ip")
}

// sendLiveSample sends up to 40 of the window's events (every 97th) live, as an SDK would, to
// a source with the same preset and settings, and returns their numbers.
func sendLiveSample(t *testing.T, rig *importRig, evs []importer.ArchivedEvent) map[int]bool {
	t.Helper()
	samples := map[int]bool{}
	var live [][]byte
	for _, e := range evs {
		if !e.At.Before(histSince) && e.At.Before(histUntil) && e.N%97 == 0 && len(live) < 40 {
			samples[e.N] = true
			live = append(live, e.Event)
		}
	}
	if len(live) == 0 {
		t.Fatal("no event of the window to send live")
	}
	sendLive(t, rig.relay.url, live)
	return samples
}

// compareSample checks that each sampled event reached Woopra twice, imported and live, with
// the same parameters (but those in ignore), and with a mapping's worth of them.
func compareSample(t *testing.T, got map[int][]emulator.Record, samples map[int]bool, ignore ...string) {
	t.Helper()
	for n := range samples {
		recs := got[n]
		if len(recs) != 2 {
			t.Errorf("event %d reached Woopra %d times, want twice (imported and live)", n, len(recs))
			continue
		}
		a, b := recs[0].Params.Map(), recs[1].Params.Map()
		for _, k := range ignore {
			delete(a, k)
			delete(b, k)
		}
		if !maps.Equal(a, b) {
			t.Errorf("event %d imported and sent live differ:\n%v\n%v", n, a, b)
		}
		if len(a) < 6 {
			t.Errorf("event %d has only %d parameters: %v", n, len(a), a)
		}
	}
}

// Acceptance 3: live events sent while an import runs are still delivered within seconds. Their
// latency (sent to the emulator's record) is measured without and with the import running.
func TestImportKeepsLiveTrafficFlowing(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end process test")
	}
	rig := newImportRig(t)
	dir, evs := writeArchive(t, importer.ArchiveSpec{Layout: importer.Segment, Events: 12_000, Start: histStart, Span: 30 * 24 * time.Hour, PerObject: 1000, Marker: "lat_n", ID: "lat"})
	measure := func(label string, n int, during func() bool) []time.Duration {
		var lat []time.Duration
		for i := range n {
			visitor := fmt.Sprintf("live-%s-%d", label, i)
			ev := fmt.Sprintf(`{"batch":[{"type":"track","event":"Live","userId":%q,"properties":{"i":%d}}]}`, visitor, i)
			req, _ := http.NewRequest(http.MethodPost, rig.relay.url+"/v1/batch", strings.NewReader(ev))
			req.SetBasicAuth("live-key", "")
			t0 := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			waitFor(t, time.Minute, "a live event delivered", func() bool { return len(rig.em.RequestsOf(visitor)) > 0 })
			lat = append(lat, time.Since(t0))
			if during != nil && !during() {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		slices.Sort(lat)
		return lat
	}
	quiet := measure("quiet", 20, nil)

	ckp := filepath.Join(t.TempDir(), "lat.checkpoint")
	cmd := exec.Command(woorelayBinary(t), "import", "--config", rig.sources, "--source", "import", "--relay", rig.relay.url, "--server", rig.relay.admin, "--checkpoint", ckp, "-q", dir)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	waitFor(t, time.Minute, "the import under way", func() bool { return len(rig.delivered("lat_n")) > 1000 })
	running := func() bool {
		select {
		case <-exited:
			return false
		default:
			return len(rig.delivered("lat_n")) < len(evs)
		}
	}
	busy := measure("busy", 40, running)
	imported := len(rig.delivered("lat_n"))
	<-exited
	if cmd.ProcessState.ExitCode() != 0 {
		t.Fatalf("import: %s\n%s", cmd.ProcessState, out.String())
	}
	t.Logf("live latency without an import: median %v, max %v; during it (%d measured, %d of %d imported events delivered by then): median %v, max %v",
		quiet[len(quiet)/2], quiet[len(quiet)-1], len(busy), imported, len(evs), busy[len(busy)/2], busy[len(busy)-1])
	if len(busy) < 3 {
		t.Fatalf("the import ended after %d live events: too fast to measure alongside", len(busy))
	}
	if worst := busy[len(busy)-1]; worst > 5*time.Second {
		t.Errorf("a live event took %v to be delivered during the import; want within seconds", worst)
	}
}
