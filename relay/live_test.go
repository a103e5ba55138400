package relay

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/server"
)

// configDir is a sources file with a mapping folder in a temporary folder, edited as editors
// do: the new text is written to a temporary file renamed over the old one.
type configDir struct {
	t   *testing.T
	dir string
}

// markerMapping is a mapping file that marks every track event with ce_cfg=marker, so a
// delivered request tells which configuration mapped it.
func markerMapping(marker string) []byte {
	return []byte("kind: mappings\nmappings:\n  - name: track\n    fields:\n      ce_cfg: {value: " + marker + "}\n")
}

func newConfigDir(t *testing.T, marker string) *configDir {
	t.Helper()
	d := &configDir{t: t, dir: t.TempDir()}
	if err := os.Mkdir(filepath.Join(d.dir, "mappings"), 0o755); err != nil {
		t.Fatal(err)
	}
	d.write("woorelay.yaml", testdata(t, "good.yaml"))
	d.write("mappings/marker.yaml", markerMapping(marker))
	return d
}

func testdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// write replaces name (relative to the folder) by a rename, as an editor saves.
func (d *configDir) write(name string, data []byte) {
	d.t.Helper()
	p := filepath.Join(d.dir, name)
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".swp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		d.t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		d.t.Fatal(err)
	}
}

func (d *configDir) file() string { return filepath.Join(d.dir, "woorelay.yaml") }

// sources loads the sources file.
func (d *configDir) sources() *server.Config {
	d.t.Helper()
	sc, err := server.LoadConfig(d.file())
	if err != nil {
		d.t.Fatal(err)
	}
	return sc
}

// adminView reads GET /admin/config.
func adminView(t *testing.T, r *Relay) admin.ConfigView {
	t.Helper()
	v, err := admin.NewClient(r.AdminURL(), "", nil).Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// nextReload waits until GET /admin/config shows a reload attempt after seq, and returns it.
func nextReload(t *testing.T, r *Relay, seq int64) admin.ReloadResult {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if v := adminView(t, r); v.LastReload != nil && v.LastReload.Seq > seq {
			return *v.LastReload
		}
	}
	t.Fatalf("no reload attempt after #%d within 10 s", seq)
	return admin.ReloadResult{}
}

func lastSeq(v admin.ConfigView) int64 {
	if v.LastReload == nil {
		return 0
	}
	return v.LastReload.Seq
}

// reloadPath is one way of asking a running relay to reload its files.
type reloadPath struct {
	name    string
	start   func(t *testing.T, r *Relay)              // before the first edit
	trigger func(t *testing.T, r *Relay, edited bool) // after an edit (edited) or none
}

var reloadPaths = []reloadPath{
	{"signal",
		func(t *testing.T, r *Relay) { t.Cleanup(r.ReloadOnSignals(syscall.SIGHUP)) },
		func(t *testing.T, r *Relay, _ bool) {
			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}},
	{"admin call",
		func(*testing.T, *Relay) {},
		func(t *testing.T, r *Relay, _ bool) {
			if _, err := admin.NewClient(r.AdminURL(), "", nil).Reload(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
	{"watch",
		func(t *testing.T, r *Relay) {
			stop, err := r.Watch(50 * time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(stop)
		},
		func(t *testing.T, _ *Relay, edited bool) {
			if !edited {
				t.Fatal("a watch reloads only on an edit")
			}
		}},
}

// brokenFiles are the kinds of broken file a reload must refuse: the testdata file, the file
// of the configuration it replaces, and the start of the finding it must give.
var brokenFiles = []struct {
	kind, testdata, replaces, finding string
}{
	{"bad YAML", "bad_yaml.yaml", "woorelay.yaml", `woorelay.yaml:5:1: yaml_syntax: yaml: line 5: did not find expected ',' or '}'`},
	{"unknown preset", "bad_unknown_preset.yaml", "woorelay.yaml", `woorelay.yaml:5:13: unknown_preset: there is no built-in preset "defualt"`},
	{"bad expression", "bad_expression.yaml", "mappings/marker.yaml", `marker.yaml:6:22: bad_expression: expr of field "ce_cfg": unexpected token EOF`},
	{"duplicate write key", "bad_duplicate_write_key.yaml", "woorelay.yaml", `woorelay.yaml:9:16: duplicate: source "old" uses the same write key as the source at line 3`},
}

// TestReloadPathsRefuseBrokenFiles: for each reload path (SIGHUP, POST /admin/reload, a
// watched edit) and each kind of broken file, the reload is refused with its finding, and the
// running configuration does not change: same version, same sources, both write keys still
// answer 200 and events are still mapped by it. Restoring the file reloads it; a good edit
// then adds and removes write keys and changes the mapping of the next delivery.
func TestReloadPathsRefuseBrokenFiles(t *testing.T) {
	for _, path := range reloadPaths {
		t.Run(path.name, func(t *testing.T) {
			em, url := woopra(t)
			d := newConfigDir(t, "v1")
			cfg := testConfig(t, url)
			cfg.Sources = d.sources()
			r := started(t, cfg)
			path.start(t, r)
			good := adminView(t, r)
			n := 0
			mid := func() string { n++; return fmt.Sprintf("%s-%d", strings.ReplaceAll(path.name, " ", "-"), n) }
			send := func(key string) int { return track(t, r, key, "u1", mid()) }
			mapped := func(want string) {
				t.Helper()
				mid := mid()
				if s := track(t, r, "key-web", "u1", mid); s != 200 {
					t.Fatalf("key-web answered %d", s)
				}
				if got := delivered(t, em, mid, "ce_cfg"); got != want {
					t.Errorf("event mapped with ce_cfg=%q, want %q (the configuration in force)", got, want)
				}
			}
			mapped("v1")
			for _, bf := range brokenFiles {
				t.Run(bf.kind, func(t *testing.T) {
					before := adminView(t, r)
					original, err := os.ReadFile(filepath.Join(d.dir, bf.replaces))
					if err != nil {
						t.Fatal(err)
					}
					d.write(bf.replaces, testdata(t, bf.testdata))
					path.trigger(t, r, true)
					res := nextReload(t, r, lastSeq(before))
					if res.Outcome != admin.ReloadError || res.Version != good.Version || res.Previous != good.Version {
						t.Errorf("reload = %+v; want refused with version %s kept", res, good.Version)
					}
					if !containsFinding(res.Findings, bf.finding) {
						t.Errorf("findings %q; want one with %q", res.Findings, bf.finding)
					}
					for _, f := range res.Findings {
						if !strings.Contains(f, "(hint: ") {
							t.Errorf("finding %q has no hint", f)
						}
					}
					after := adminView(t, r)
					if after.Version != good.Version || !reflect.DeepEqual(after.Sources, good.Sources) || !after.LoadedAt.Equal(before.LoadedAt) {
						t.Errorf("the configuration in force changed after a refused reload:\nbefore %+v\nafter  %+v", before, after)
					}
					if after.Reloads.Error != before.Reloads.Error+1 {
						t.Errorf("refused reloads %d -> %d; want one more", before.Reloads.Error, after.Reloads.Error)
					}
					for _, key := range []string{"key-web", "key-old"} {
						if s := send(key); s != 200 {
							t.Errorf("%s answered %d after the refused reload; want 200", key, s)
						}
					}
					mapped("v1")

					d.write(bf.replaces, original)
					seq := lastSeq(adminView(t, r))
					path.trigger(t, r, true)
					if res := nextReload(t, r, seq); res.Outcome != admin.ReloadOK || res.Version != good.Version {
						t.Errorf("reload of the restored file = %+v; want ok with version %s", res, good.Version)
					}
				})
			}
			if path.name == "watch" {
				// Rewriting a file with the same text reloads nothing.
				seq := lastSeq(adminView(t, r))
				d.write("woorelay.yaml", testdata(t, "good.yaml"))
				time.Sleep(300 * time.Millisecond)
				if v := adminView(t, r); lastSeq(v) != seq {
					t.Errorf("a rewrite with the same content reloaded: %+v", v.LastReload)
				}
			}

			// A good edit: key-old goes, key-new comes, the mapping marks v2.
			next := strings.Replace(string(testdata(t, "good.yaml")), "key-old", "key-new", 1)
			d.write("woorelay.yaml", []byte(next))
			d.write("mappings/marker.yaml", markerMapping("v2"))
			want, _, err := CheckSourcesFile(d.file())
			if err != nil {
				t.Fatal(err)
			}
			path.trigger(t, r, true)
			for deadline := time.Now().Add(10 * time.Second); adminView(t, r).Version != want; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("version %s never came into force: %+v", want, adminView(t, r))
				}
			}
			if s := send("key-old"); s != 401 {
				t.Errorf("the removed key-old answered %d; want 401", s)
			}
			if s := send("key-new"); s != 200 {
				t.Errorf("the added key-new answered %d; want 200", s)
			}
			mapped("v2")
			v := adminView(t, r)
			if got := metricValue(t, r, "woorelay_config_reloads_total", "outcome", "error"); got != float64(v.Reloads.Error) || got != float64(len(brokenFiles)) {
				t.Errorf("woorelay_config_reloads_total{outcome=error} = %v; /admin/config counts %d, want %d", got, v.Reloads.Error, len(brokenFiles))
			}
			if got := metricValue(t, r, "woorelay_config_reloads_total", "outcome", "ok"); got != float64(v.Reloads.OK) {
				t.Errorf("woorelay_config_reloads_total{outcome=ok} = %v; /admin/config counts %d", got, v.Reloads.OK)
			}
		})
	}
}

func containsFinding(findings []string, want string) bool {
	for _, f := range findings {
		if strings.Contains(f, want) {
			return true
		}
	}
	return false
}

// metricValue reads one labelled value of a metric from the relay's registry.
func metricValue(t *testing.T, r *Relay, name, label, value string) float64 {
	t.Helper()
	mfs, err := r.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// TestConfigView: GET /admin/config shows the version (the one CheckSourcesFile gives for the
// same files), where and when the configuration was loaded, the files, and the sources with
// their presets and mapping folders, and never a write key.
func TestConfigView(t *testing.T) {
	_, url := woopra(t)
	d := newConfigDir(t, "v1")
	t.Setenv("RELAY_TEST_BACKEND_KEY", "secret-env-key")
	d.write("woorelay.yaml", []byte(`sources:
  - name: web
    write_key: secret-file-key
    preset: default
    settings: {project: p.com}
    mappings: [mappings]
  - name: backend
    write_key_env: RELAY_TEST_BACKEND_KEY
    preset: segment
    settings: {project: p.com}
`))
	cfg := testConfig(t, url)
	cfg.Sources = d.sources()
	r := started(t, cfg)
	resp, err := http.Get(r.AdminURL() + "/admin/config")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, secret := range []string{"secret-file-key", "secret-env-key"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("GET /admin/config shows a write key:\n%s", body)
		}
	}
	v := adminView(t, r)
	want, _, err := CheckSourcesFile(d.file())
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != want || !strings.HasPrefix(v.Version, "sha256:") || len(v.Version) != len("sha256:")+12 {
		t.Errorf("version %q; want %q, as config check gives", v.Version, want)
	}
	if v.LoadedFrom != d.file() || v.Trigger != "start" || time.Since(v.LoadedAt) > time.Minute || v.LastReload != nil || v.Development || v.Watching {
		t.Errorf("view %+v; want loaded from %s at the start, no reload yet", v, d.file())
	}
	var files []string
	for _, f := range v.Files {
		files = append(files, f.Path)
		if len(f.SHA256) != 64 {
			t.Errorf("file %s has hash %q", f.Path, f.SHA256)
		}
	}
	if got := strings.Join(files, ","); got != "woorelay.yaml,(built-in) default,mappings/marker.yaml,(built-in) segment" {
		t.Errorf("files %s", got)
	}
	wantSources := []admin.SourceView{
		{Name: "web", WriteKey: "write_key", Preset: "default", Mappings: []string{"mappings"}, Settings: map[string]string{"project": "p.com"}},
		{Name: "backend", WriteKey: "$RELAY_TEST_BACKEND_KEY", Preset: "segment", Settings: map[string]string{"project": "p.com"}},
	}
	if !reflect.DeepEqual(v.Sources, wantSources) {
		t.Errorf("sources %+v\nwant    %+v", v.Sources, wantSources)
	}

	// A mapping file edit changes the version, and only that file's hash.
	d.write("mappings/marker.yaml", markerMapping("v2"))
	res, err := admin.NewClient(r.AdminURL(), "", nil).Reload(context.Background())
	if err != nil || res.Outcome != admin.ReloadOK || res.Version == v.Version || res.Previous != v.Version || res.Trigger != "admin" {
		t.Fatalf("reload = %+v, %v; want ok with a new version", res, err)
	}
	v2 := adminView(t, r)
	for i, f := range v2.Files {
		if changed := f.SHA256 != v.Files[i].SHA256; changed != (f.Path == "mappings/marker.yaml") {
			t.Errorf("file %s: hash changed %v", f.Path, changed)
		}
	}
	if v2.Trigger != "admin" || v2.Version != res.Version || !v2.LoadedAt.After(v.LoadedAt) {
		t.Errorf("after the reload %+v", v2)
	}
}

// TestReloadInDevelopmentMode: without a sources file a reload has nothing to read; it is
// refused with a finding saying so, and counted.
func TestReloadInDevelopmentMode(t *testing.T) {
	_, url := woopra(t)
	r := started(t, testConfig(t, url))
	if _, err := r.Watch(0); err == nil || !strings.Contains(err.Error(), "--watch needs a sources file") {
		t.Errorf("Watch in development mode = %v; want an error", err)
	}
	resp, err := http.Post(r.AdminURL()+"/admin/reload", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var res admin.ReloadResult
	json.NewDecoder(resp.Body).Decode(&res)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity || res.Outcome != admin.ReloadError || len(res.Findings) != 1 ||
		!strings.HasPrefix(res.Findings[0], "--config: no_sources_file: serve runs in development mode") {
		t.Errorf("POST /admin/reload = %d %+v; want 422 with the no_sources_file finding", resp.StatusCode, res)
	}
	v := adminView(t, r)
	if !v.Development || v.LoadedFrom != "" || v.Reloads.Error != 1 || v.LastReload == nil || v.LastReload.Seq != 1 {
		t.Errorf("view %+v; want development mode with one refused reload", v)
	}
	if got := metricValue(t, r, "woorelay_config_reloads_total", "outcome", "error"); got != 1 {
		t.Errorf("refused reloads metric %v, want 1", got)
	}
}

// TestCheckSourcesFile: the offline check gives the findings a reload gives, for each kind of
// broken file, and the good file's version.
func TestCheckSourcesFile(t *testing.T) {
	d := newConfigDir(t, "v1")
	ver, n, err := CheckSourcesFile(d.file())
	if err != nil || n != 2 || !strings.HasPrefix(ver, "sha256:") {
		t.Fatalf("check of the good file = %q, %d, %v", ver, n, err)
	}
	for _, bf := range brokenFiles {
		t.Run(bf.kind, func(t *testing.T) {
			d := newConfigDir(t, "v1")
			d.write(bf.replaces, testdata(t, bf.testdata))
			_, _, err := CheckSourcesFile(d.file())
			if err == nil || !containsFinding(strings.Split(err.Error(), "\n"), bf.finding) {
				t.Errorf("check = %v; want the finding %q", err, bf.finding)
			}
		})
	}
}
