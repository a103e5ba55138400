package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/importer"
)

// smallArchive writes a 600-event NDJSON archive over 30 days and returns its folder and how
// many events fall in the window [histSince, histUntil).
func smallArchive(t *testing.T) (string, int) {
	t.Helper()
	dir, evs := writeArchive(t, importer.ArchiveSpec{Layout: importer.NDJSON, Events: 600, Start: histStart, Span: 30 * 24 * time.Hour, PerObject: 100, Marker: "small_n", ID: "small"})
	in := 0
	for _, e := range evs {
		if !e.At.Before(histSince) && e.At.Before(histUntil) {
			in++
		}
	}
	return dir, in
}

var windowArgs = []string{"--since", histSince.Format(time.RFC3339), "--until", histUntil.Format(time.RFC3339)}

// --dry-run maps the window's events with the preset and counts them by mapping and outcome,
// writing no checkpoint; the counts add up to the window.
func TestImportDryRun(t *testing.T) {
	dir, in := smallArchive(t)
	ckp := filepath.Join(t.TempDir(), "c")
	args := append([]string{"import", "--dry-run", "--set", "project=p.example.com", "--checkpoint", ckp, "-q"}, windowArgs...)
	code, out, errs := runCmd(t, "", append(args, dir)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "dry run (source import): "+strconv.Itoa(in)+" events would be sent; read 600 events") {
		t.Errorf("summary does not say %d of 600:\n%s", in, out)
	}
	rows := regexp.MustCompile(`(?m)^  (\S+)\s+(send \S+|rejected \S+|skipped)\s+(\d+)$`).FindAllStringSubmatch(out, -1)
	sum, sends := 0, 0
	for _, r := range rows {
		n, _ := strconv.Atoi(r[3])
		sum += n
		if strings.HasPrefix(r[2], "send /track/") {
			sends++
		}
	}
	if sum != in || sends < 2 {
		t.Errorf("rows add up to %d (want %d), %d send rows (want track and identify at least):\n%s", sum, in, sends, out)
	}
	if _, err := os.Stat(ckp); !os.IsNotExist(err) {
		t.Errorf("a dry run wrote the checkpoint (%v)", err)
	}
}

// --embedded runs a relay in the process: the window's events reach Woopra (the emulator), and
// a second run sends nothing.
func TestImportEmbedded(t *testing.T) {
	dir, in := smallArchive(t)
	em := emulator.New(emulator.Options{NoProfiles: true})
	emURL, stop, err := em.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	data, ckp := filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "c")
	args := append([]string{"import", "--embedded", "--data", data, "--woopra-url", emURL, "--set", "project=p.example.com", "--checkpoint", ckp, "-q"}, windowArgs...)
	code, out, errs := runCmd(t, "", append(args, dir)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "import: sent "+strconv.Itoa(in)+" events") || !strings.Contains(out, "relay: delivered "+strconv.Itoa(in)+",") {
		t.Errorf("want %d sent and delivered:\n%s", in, out)
	}
	if got := em.Stats().ByStatus[200]; got != uint64(in) {
		t.Errorf("the emulator answered %d requests, want %d", got, in)
	}
	code, out, errs = runCmd(t, "", append(args, dir)...)
	if code != 0 || !strings.Contains(out, "import: sent 0 events") {
		t.Errorf("second run: exit %d, %s %s", code, out, errs)
	}
}

// Flag combinations that cannot do what they say are usage errors that say what to give.
func TestImportUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "x"}, "--write-key KEY, or --config FILE --source NAME"},
		{[]string{"import", "--preset", "segment", "x"}, "add --embedded or --dry-run"},
		{[]string{"import", "--config", "f.yaml", "x"}, "--config needs --source"},
		{[]string{"import", "--write-key", "k", "--since", "yesterday", "x"}, `--since "yesterday" is not a time`},
		{[]string{"import", "--write-key", "k", "--since", "2024-05-02", "--until", "2024-05-01", "x"}, "is not before --until"},
		{[]string{"import", "--write-key", "k"}, "name at least one LOCATION"},
	} {
		code, _, errs := runCmd(t, "", c.args...)
		if code != 2 || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, errs, c.want)
		}
	}
	code, _, errs := runCmd(t, "", "import", "--write-key", "k", "--relay", "http://127.0.0.1:1", "/no/such/archive")
	if code != 1 || !strings.Contains(errs, "/no/such/archive") {
		t.Errorf("a missing location: exit %d, %q", code, errs)
	}
}

// On a terminal the progress is one bar redrawn in place with rate and ETA; otherwise plain
// lines.
func TestImportProgress(t *testing.T) {
	st := importer.Stats{Bytes: 1000, BytesRead: 250, Sent: 5000, Elapsed: 2 * time.Second}
	var bar, lines bytes.Buffer
	newProgressPrinter("bar", &bar).update(st)
	newProgressPrinter("lines", &lines).update(st)
	if got := bar.String(); !strings.HasPrefix(got, "\r[#######.......................]  25%") || !strings.Contains(got, "5,000 sent  2,500 events/s  ETA 6s") || strings.Contains(got, "\n") {
		t.Errorf("bar: %q", got)
	}
	if got := lines.String(); got != "import: 25% read, sent 5000, 2,500 events/s, ETA 6s\n" {
		t.Errorf("lines: %q", got)
	}
	var none bytes.Buffer
	newProgressPrinter("none", &none).update(st)
	if none.Len() != 0 {
		t.Errorf("none printed %q", none.String())
	}
}
