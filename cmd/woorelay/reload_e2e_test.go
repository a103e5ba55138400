package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/woorelay/woorelay/admin"
)

// The end-to-end test of changing the configuration live: `woorelay serve --watch` under
// continuous SDK batch traffic on three write keys takes 20 reloads, alternating good and
// broken configurations, asked for by SIGHUP, POST /admin/reload and the watched edit itself,
// with files replaced by rename (as editors save) and written in place.

// reloadSources is the e2e sources file: three sources sharing the marker mapping folder, each
// telling itself apart by its app setting (ce_app). With moved, key-moved has gone from
// source a to source b, key-b is removed and key-a2 added.
func reloadSources(moved bool) []byte {
	keyA, keyB := "key-moved", "key-b"
	if moved {
		keyA, keyB = "key-a2", "key-moved"
	}
	var b strings.Builder
	for _, s := range [][2]string{{"web", "key-web"}, {"a", keyA}, {"b", keyB}} {
		fmt.Fprintf(&b, "  - name: %s\n    write_key: %s\n    preset: default\n    settings: {project: p.com, app: %s}\n    mappings: [mappings]\n", s[0], s[1], s[0])
	}
	return []byte("sources:\n" + b.String())
}

// reloadMarker marks every track event with ce_cfg=marker: which configuration mapped it.
func reloadMarker(marker string) []byte {
	return []byte("kind: mappings\nmappings:\n  - name: track\n    fields:\n      ce_cfg: {value: " + marker + "}\n")
}

// editFile writes a file as an editor saves it (a temporary file renamed over it) or, with
// inPlace, by truncating and writing it.
func editFile(t *testing.T, path string, data []byte, inPlace bool) {
	t.Helper()
	if inPlace {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// keyedRequest is one ingest request of the load: its write key, when it was sent and
// answered, the answer, and its events' message ids.
type keyedRequest struct {
	key        string
	start, end time.Time
	status     int
	ids        []string
}

// keyedLoad sends SDK batches on several write keys at once and keeps every request.
type keyedLoad struct {
	l    *ledger
	url  string
	stop chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	reqs []keyedRequest
}

// run starts workers goroutines sending batches of 5 events with key until stop.
func (k *keyedLoad) run(key string, workers int) {
	for i := 0; i < workers; i++ {
		k.wg.Add(1)
		go func() {
			defer k.wg.Done()
			client := &http.Client{Timeout: 10 * time.Second}
			for {
				select {
				case <-k.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				body, ids := k.l.batch(5, 40)
				start := time.Now()
				status := k.l.send(client, k.url, key, body, ids)
				k.mu.Lock()
				k.reqs = append(k.reqs, keyedRequest{key, start, time.Now(), status, ids})
				k.mu.Unlock()
			}
		}()
	}
}

// inForce is when a configuration (by its marker) was in force: from before the edit that
// made it (from) to when the next good one was seen in force (until; zero while it is).
type inForce struct {
	marker, version string
	from, until     time.Time
}

// TestReloadUnderLoad: 20 reloads of a real `woorelay serve --watch` under continuous load,
// alternating good configurations (a new marker in the mapping folder each time; one of them
// moves a write key to another source, removes one and adds one) and broken ones (each kind of
// testdata/bad_*.yaml), asked for by a watched edit, SIGHUP or POST /admin/reload. Every
// request is answered 200, or 401 for the removed key and only once its reload began; every
// acknowledged event is delivered once; the counters reconcile; every event is mapped by the
// configuration in force when it was delivered; the reload counters count every attempt.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	sources := filepath.Join(dir, "woorelay.yaml")
	marker := filepath.Join(dir, "mappings", "marker.yaml")
	if err := os.Mkdir(filepath.Dir(marker), 0o755); err != nil {
		t.Fatal(err)
	}
	editFile(t, sources, reloadSources(false), false)
	editFile(t, marker, reloadMarker("v1"), false)
	x := newE2E(t, "--config", sources, "--watch", "--watch-debounce", "100ms")
	p := x.start()
	cl := admin.NewClient(p.admin, "", nil)
	view := func() admin.ConfigView {
		t.Helper()
		v, err := cl.Config(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	v0 := view()
	if v0.Version == "" || !v0.Watching || v0.LoadedFrom != sources {
		t.Fatalf("GET /admin/config at the start: %+v", v0)
	}
	forces := []*inForce{{marker: "v1", version: v0.Version}}

	l := newLedger()
	load := &keyedLoad{l: l, url: p.url, stop: make(chan struct{})}
	load.run("key-web", 2)
	load.run("key-moved", 2)
	load.run("key-b", 2)
	waitFor(t, 30*time.Second, "the load under way", func() bool { return len(l.ackedIDs()) >= 200 })

	broken := []struct{ file, replaces, code string }{
		{"bad_yaml.yaml", sources, "yaml_syntax"},
		{"bad_unknown_preset.yaml", sources, "unknown_preset"},
		{"bad_expression.yaml", marker, "bad_expression"},
		{"bad_duplicate_write_key.yaml", sources, "duplicate"},
	}
	const rounds, moveRound = 20, 7
	var moveFrom, moveSeen time.Time
	moved := false
	for i := 1; i <= rounds; i++ {
		trigger := []string{"admin", "watch", "signal"}[i%3]
		inPlace := i%4 == 1
		before := view()
		from := time.Now()
		good := i%2 == 1
		if good {
			moved = moved || i == moveRound
			if i == moveRound {
				moveFrom = from
			}
			editFile(t, sources, reloadSources(moved), inPlace)
			editFile(t, marker, reloadMarker("v"+strconv.Itoa(len(forces)+1)), inPlace)
		} else {
			bf := broken[(i/2-1)%len(broken)]
			data, err := os.ReadFile(filepath.Join("..", "..", "relay", "testdata", bf.file))
			if err != nil {
				t.Fatal(err)
			}
			editFile(t, bf.replaces, data, inPlace)
		}
		switch trigger {
		case "signal":
			p.cmd.Process.Signal(syscall.SIGHUP)
		case "admin":
			if _, err := cl.Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		if good {
			want := ""
			if v, _, err := relayCheck(sources); err != nil {
				t.Fatalf("round %d: the good configuration does not check: %v", i, err)
			} else {
				want = v
			}
			var v admin.ConfigView
			waitFor(t, 10*time.Second, fmt.Sprintf("round %d (%s): version %s in force", i, trigger, want), func() bool { v = view(); return v.Version == want })
			seen := time.Now()
			forces[len(forces)-1].until = seen
			forces = append(forces, &inForce{marker: "v" + strconv.Itoa(len(forces)+1), version: want, from: from})
			if i == moveRound {
				moveSeen = seen
			}
			if v.LastReload == nil || v.LastReload.Outcome != admin.ReloadOK {
				t.Errorf("round %d: last reload %+v; want ok", i, v.LastReload)
			}
		} else {
			bf := broken[(i/2-1)%len(broken)]
			var v admin.ConfigView
			waitFor(t, 10*time.Second, fmt.Sprintf("round %d (%s): the refused reload of %s", i, trigger, bf.file), func() bool {
				v = view()
				return v.LastReload != nil && v.LastReload.Seq > lastReloadSeq(before) && v.LastReload.Outcome == admin.ReloadError
			})
			if v.Version != before.Version || !v.LoadedAt.Equal(before.LoadedAt) {
				t.Errorf("round %d: the refused %s changed the configuration in force: %s -> %s", i, bf.file, before.Version, v.Version)
			}
			if len(v.LastReload.Findings) == 0 || !strings.Contains(v.LastReload.Findings[0], ": "+bf.code+": ") || !strings.Contains(v.LastReload.Findings[0], "(hint: ") {
				t.Errorf("round %d: findings %q; want a %s finding with a hint", i, v.LastReload.Findings, bf.code)
			}
		}
		if i == moveRound {
			load.run("key-a2", 1)
		}
		time.Sleep(400 * time.Millisecond) // deliveries under this configuration
	}
	close(load.stop)
	load.wg.Wait()

	// Every request answered 200, or 401 for the removed key-b once its reload began.
	byKey := map[string]map[int]int{}
	for _, r := range load.reqs {
		if byKey[r.key] == nil {
			byKey[r.key] = map[int]int{}
		}
		byKey[r.key][r.status]++
		switch {
		case r.status == 200 && r.key == "key-b" && r.start.After(moveSeen):
			t.Errorf("key-b was accepted %v after its removal was in force", r.start.Sub(moveSeen))
		case r.status == 200:
		case r.status == 401 && r.key == "key-b" && r.end.After(moveFrom):
		default:
			t.Errorf("a %s request sent %s answered %d", r.key, r.start.Format("15:04:05.000"), r.status)
		}
	}
	if byKey["key-b"][401] == 0 || byKey["key-a2"][200] == 0 {
		t.Errorf("answers by key %v: want 401s for the removed key-b and 200s for the added key-a2", byKey)
	}

	// Nothing lost, nothing twice, the counters reconcile.
	dups := x.waitDelivered(l, time.Minute)
	c := x.drained(p)
	acked := len(l.ackedIDs())
	if dups != 0 || c.Received != int64(acked) || c.Delivered != int64(acked) || c.DeadLettered != 0 || c.Filtered != 0 {
		t.Errorf("%d acknowledged, %d duplicate deliveries; counters %+v: want every acknowledged event received and delivered once", acked, dups, c)
	}

	// Each event was mapped by the configuration in force when it was delivered; a key's
	// events went to its source of the moment.
	const inFlight = 500 * time.Millisecond // from mapping to the emulator's record, under load
	ackedBy := map[string]keyedRequest{}
	for _, r := range load.reqs {
		if r.status == 200 {
			for _, id := range r.ids {
				ackedBy[id] = r
			}
		}
	}
	perMarker := map[string]int{}
	for _, rec := range x.em.Requests() {
		mid := rec.Params.Get("ce_mid")
		if rec.Status != 200 || mid == "" {
			continue
		}
		m := rec.Params.Get("ce_cfg")
		perMarker[m]++
		var f *inForce
		for _, cand := range forces {
			if cand.marker == m {
				f = cand
			}
		}
		switch {
		case f == nil:
			t.Errorf("%s delivered with ce_cfg=%q, no configuration's marker", mid, m)
		case rec.Time.Before(f.from):
			t.Errorf("%s delivered at %s with %s, before its configuration was edited in (%s)", mid, rec.Time.Format("15:04:05.000"), m, f.from.Format("15:04:05.000"))
		case !f.until.IsZero() && rec.Time.After(f.until.Add(inFlight)):
			t.Errorf("%s delivered at %s with %s, %v after the next configuration was in force", mid, rec.Time.Format("15:04:05.000"), m, rec.Time.Sub(f.until))
		}
		r := ackedBy[mid]
		app := rec.Params.Get("ce_app")
		switch {
		case r.key == "key-moved" && r.end.Before(moveFrom) && app != "a",
			r.key == "key-moved" && r.start.After(moveSeen) && app != "b",
			r.key == "key-web" && app != "web", r.key == "key-b" && app != "b", r.key == "key-a2" && app != "a":
			t.Errorf("%s sent with %s at %s was mapped by source %q", mid, r.key, r.start.Format("15:04:05.000"), app)
		}
	}
	for _, f := range forces {
		if perMarker[f.marker] == 0 {
			t.Errorf("no event was delivered under %s (%s): the test did not exercise it", f.marker, f.version)
		}
	}

	// The reload counters count every attempt, as /admin/config and the metric.
	v := view()
	ok, refused := scrapeReloads(t, p.url)
	if ok != v.Reloads.OK || refused != v.Reloads.Error || ok+refused != lastReloadSeq(v) || ok < rounds/2 || refused < rounds/2 {
		t.Errorf("woorelay_config_reloads_total ok=%d error=%d; /admin/config %+v, last #%d; want at least %d of each", ok, refused, v.Reloads, lastReloadSeq(v), rounds/2)
	}
	t.Logf("%d reloads (%d ok, %d refused; a signal or admin call and the watch of its edit may both attempt one); %d requests by key and status %v; %d events acknowledged and delivered once; delivered per configuration %v; counters %+v",
		rounds, ok, refused, len(load.reqs), byKey, acked, perMarker, c)
	if err := p.term(); err != nil {
		t.Error(err)
	}
}

func lastReloadSeq(v admin.ConfigView) int64 {
	if v.LastReload == nil {
		return 0
	}
	return v.LastReload.Seq
}

// relayCheck is `woorelay config check` as the test reads it: the version of a good file.
func relayCheck(file string) (string, int, error) {
	var out, errb strings.Builder
	if code := run([]string{"config", "check", file}, nil, &out, &errb); code != 0 {
		return "", 0, fmt.Errorf("exit %d: %s%s", code, out.String(), errb.String())
	}
	s := out.String()
	i := strings.Index(s, "version ")
	if i < 0 {
		return "", 0, fmt.Errorf("no version in %q", s)
	}
	return strings.TrimSuffix(strings.TrimSpace(s[i+len("version "):]), ")"), 0, nil
}

// scrapeReloads reads woorelay_config_reloads_total from /metrics.
func scrapeReloads(t *testing.T, url string) (ok, refused int64) {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for outcome, into := range map[string]*int64{"ok": &ok, "error": &refused} {
			if v, found := strings.CutPrefix(sc.Text(), `woorelay_config_reloads_total{outcome="`+outcome+`"} `); found {
				n, _ := strconv.ParseFloat(v, 64)
				*into = int64(n)
			}
		}
	}
	return ok, refused
}
