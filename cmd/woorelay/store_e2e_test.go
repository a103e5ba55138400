package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/woorelay/woorelay/bench"
	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/queue/queuetest"
)

// The store's faults on a real `woorelay serve`: a store that cannot be opened, a full disk
// (and, in e2e_test.go's TestDiskBudget, the disk budget counted as du counts).

// runWoorelay runs `woorelay <args>` to its end (within two minutes) and returns its exit
// status and output.
func runWoorelay(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, woorelayBinary(t), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("woorelay %s: %v\n%s", strings.Join(args, " "), err, out.String())
	return 0, ""
}

// withData is x's serve arguments with another data directory and fresh listen addresses.
func (x *e2e) withData(t *testing.T, data string) []string {
	t.Helper()
	args := append([]string(nil), x.args...)
	for i := 0; i+1 < len(args); i++ {
		var err error
		switch args[i] {
		case "--data":
			args[i+1] = data
		case "--listen", "--admin-listen":
			if args[i+1], err = bench.FreeLoopback(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return args
}

// copyDir copies the regular files of a store (two levels) to a new directory.
func copyDir(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	err := filepath.WalkDir(from, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

// onlyFile returns the one file of dir matching pattern.
func onlyFile(t *testing.T, dir, pattern string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(m) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	return m[0]
}

// overwrite writes b into the file at off.
func overwrite(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// notPanicked fails the test when out shows a Go panic or crash.
func notPanicked(t *testing.T, what, out string) {
	t.Helper()
	if strings.Contains(out, "panic:") || strings.Contains(out, "SIGSEGV") || strings.Contains(out, "goroutine ") {
		t.Errorf("%s: woorelay crashed:\n%s", what, out)
	}
}

// TestStoreOpenFailures: every store that cannot be opened ends `serve` with exit status 1 and
// its cause, never a panic: a second relay on the same --data is told which process holds it;
// a damaged manifest, a table cut short and a table failing its checksum are named as damage
// with the way to recover; a read-only directory is named as such. Recovering as the README
// says delivers every acknowledged event.
func TestStoreOpenFailures(t *testing.T) {
	x := newE2E(t, "--drain-timeout", "1s")
	x.em.SetFaults(emulator.Faults{Always: 500}) // keep the events pending
	p := x.start()
	l := newLedger()
	for i := 0; i < 10; i++ {
		body, ids := l.batch(20, 5)
		if s := l.send(http.DefaultClient, p.url, "any-key", body, ids); s != 200 {
			t.Fatalf("ingest answered %d", s)
		}
	}

	code, out := runWoorelay(t, x.withData(t, x.data)...)
	want := fmt.Sprintf("in use by another woorelay (pid %d on", p.cmd.Process.Pid)
	if code != 1 || !strings.Contains(out, want) {
		t.Errorf("a second relay on the same --data: exit %d, want 1 naming the holder (%q):\n%s", code, want, out)
	}
	notPanicked(t, "a second relay", out)
	if err := p.term(); err != nil {
		t.Fatal(err)
	}

	damages := []struct {
		name   string
		damage func(dir string)
	}{
		{"16 bytes overwritten in the manifest", func(dir string) {
			overwrite(t, onlyFile(t, dir, "MANIFEST-*"), 20, bytes.Repeat([]byte{'X'}, 16))
		}},
		{"a table cut to half", func(dir string) {
			sst := onlyFile(t, dir, "*.sst")
			fi, _ := os.Stat(sst)
			if err := os.Truncate(sst, fi.Size()/2); err != nil {
				t.Fatal(err)
			}
		}},
		{"a table failing its checksum", func(dir string) {
			overwrite(t, onlyFile(t, dir, "*.sst"), 100, []byte("ZZZZ"))
		}},
	}
	var damaged string
	for _, d := range damages {
		dir := copyDir(t, x.data)
		d.damage(dir)
		code, out := runWoorelay(t, x.withData(t, dir)...)
		if code != 1 || !strings.Contains(out, "cannot be read") || !strings.Contains(out, "Recovering a damaged store") {
			t.Errorf("%s: exit %d, want 1 saying the store is damaged and how to recover:\n%s", d.name, code, out)
		}
		notPanicked(t, d.name, out)
		if damaged == "" {
			damaged = dir
		}
	}

	readOnly := copyDir(t, x.data)
	if os.Geteuid() == 0 {
		// root writes through permissions: a read-only mount shows it.
		readOnly = queuetest.Tmpfs(t, "64m")
		if err := os.CopyFS(readOnly, os.DirFS(x.data)); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-o", "remount,ro", readOnly).CombinedOutput(); err != nil {
			t.Fatalf("remount read-only: %v: %s", err, out)
		}
	} else if err := os.Chmod(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	code, out = runWoorelay(t, x.withData(t, readOnly)...)
	if code != 1 || !strings.Contains(out, "not writable") {
		t.Errorf("a read-only data directory: exit %d, want 1 saying it is not writable:\n%s", code, out)
	}
	notPanicked(t, "a read-only data directory", out)

	// The README's recovery of a damaged index: move it aside, keep segments/.
	aside := t.TempDir()
	names, _ := os.ReadDir(damaged)
	for _, n := range names {
		if !n.IsDir() && !strings.HasPrefix(n.Name(), "woorelay.") {
			if err := os.Rename(filepath.Join(damaged, n.Name()), filepath.Join(aside, n.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	x.em.ClearFaults()
	args := x.withData(t, damaged)
	startWoorelay(t, strings.TrimPrefix(args[2], "http://"), nil, args...)
	dups := x.waitDelivered(l, 2*time.Minute)
	t.Logf("%d acknowledged events, all delivered after the index was rebuilt from the payload log (%d duplicates)", len(l.ackedIDs()), dups)
}

// freeBytes is the free space of the file system holding dir.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// answer is one ingest or readiness answer.
type answer struct {
	status     int
	code       string
	retryAfter string
}

// ask sends a one-event batch (or GETs /readyz when path is) and returns the answer.
func ask(t *testing.T, url, path string) answer {
	t.Helper()
	var resp *http.Response
	var err error
	if path == "/readyz" {
		resp, err = http.Get(url + path)
	} else {
		req, _ := http.NewRequest("POST", url+path, strings.NewReader(`{"batch":[{"type":"track","event":"probe","userId":"probe"}]}`))
		req.SetBasicAuth("any-key", "")
		req.Header.Set("Content-Type", "application/json")
		resp, err = http.DefaultClient.Do(req)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var e struct {
		Code string `json:"code"`
	}
	json.Unmarshal(b, &e)
	code := e.Code
	if code == "" {
		code = string(b)
	}
	return answer{resp.StatusCode, code, resp.Header.Get("Retry-After")}
}

// TestFullDisk: with Woopra failing, `serve` fills its disk (a tmpfs, most of it taken by
// another file): ingest answers 503 store_full with Retry-After (never a 500), /readyz says
// so, and the process does not die; killed and restarted on the full disk it starts and
// answers the same; once Woopra is back, delivery empties the queue and ingest accepts again
// without a restart. Every acknowledged event is delivered.
func TestFullDisk(t *testing.T) {
	x := newE2E(t)
	dir := queuetest.Tmpfs(t, "32m")
	args := x.withData(t, dir)
	x.data, x.args = dir, args
	x.addr = strings.TrimPrefix(args[2], "http://")
	x.admin = args[4]
	p := x.start()
	f, err := os.Create(filepath.Join(dir, "other-files"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(0); err != nil {
		t.Fatal(err)
	}
	// Another program's data leaves the relay 8 MiB.
	if n := freeBytes(t, dir) - 8<<20; n > 0 {
		if _, err := f.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()

	l := x.loadUntilRefused(p, nil)
	if l.statuses[500] > 0 || l.noRetryAfter > 0 {
		t.Errorf("on a full disk ingest answered %v, %d of the 503s without Retry-After; want 503 with Retry-After, never 500", l.statuses, l.noRetryAfter)
	}
	if a := ask(t, p.url, "/v1/batch"); a.status != 503 || a.code != "store_full" || a.retryAfter == "" {
		t.Errorf("ingest on a full disk answered %+v, want 503 store_full with Retry-After", a)
	}
	waitFor(t, 30*time.Second, "/readyz to say store_full", func() bool { return ask(t, p.url, "/readyz").code == "store_full" })
	time.Sleep(2 * time.Second) // delivery keeps failing and recording its retries meanwhile
	select {
	case <-p.done:
		t.Fatalf("woorelay died on the full disk:\n%s", p.output.String())
	default:
	}
	notPanicked(t, "a full disk", p.output.String())

	// A restart on the full disk starts and answers the same.
	p.kill()
	p = launchWoorelay(t, x.addr, nil, x.args...)
	waitFor(t, time.Minute, "the restarted relay's listener", func() bool {
		resp, err := http.Get(p.url + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	if a := ask(t, p.url, "/v1/batch"); a.status != 503 || a.code != "store_full" || a.retryAfter == "" {
		t.Errorf("ingest after a restart on the full disk answered %+v, want 503 store_full with Retry-After", a)
	}
	if a := ask(t, p.url, "/readyz"); a.status != 503 || a.code != "store_full" {
		t.Errorf("/readyz after a restart on the full disk answered %+v, want 503 store_full", a)
	}

	// Woopra comes back: delivery makes room, and ingest accepts again by itself.
	x.em.ClearFaults()
	waitFor(t, 2*time.Minute, "ingest to accept events again", func() bool {
		body, ids := l.batch(5, 5)
		return l.send(http.DefaultClient, p.url, "any-key", body, ids) == 200
	})
	waitFor(t, 30*time.Second, "/readyz to answer 200", func() bool { return ask(t, p.url, "/readyz").status == 200 })
	dups := x.waitDelivered(l, 2*time.Minute)
	c := x.drained(p)
	notPanicked(t, "a restart on a full disk", p.output.String())
	t.Logf("full disk: answers %v; %d acknowledged, all delivered (%d duplicates); counters %+v", l.statuses, len(l.ackedIDs()), dups, c)
}

// duBytes adds up the blocks of the files under dir, as du does.
func duBytes(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				total += st.Blocks * 512
			}
		}
		return nil
	})
	return total
}
