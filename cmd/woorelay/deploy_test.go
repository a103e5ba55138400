package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// The dashboard (deploy/grafana) and the alert rules (deploy/prometheus) query woorelay's
// metrics by name and label; this file checks them against a running relay's /metrics.

// dashboardExprs returns every PromQL expression of the Grafana dashboards.
func dashboardExprs(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../../deploy/grafana/*.json")
	if len(files) == 0 {
		t.Fatal("no dashboard under deploy/grafana")
	}
	out := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string
				Targets []struct{ Expr string }
			}
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for i, tg := range p.Targets {
				out[fmt.Sprintf("%s: %s #%d", filepath.Base(f), p.Title, i)] = tg.Expr
			}
		}
	}
	return out
}

// ruleExprs returns every expression of the alert rules (not of their promtool tests).
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	files, _ := filepath.Glob("../../deploy/prometheus/*.yaml")
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, ".promtest.yaml") { // promtool's tests of the rules
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// The rules are YAML; their expressions are what follows "expr:" up to the next key.
		var alert string
		var expr *strings.Builder
		for _, line := range strings.Split(string(data), "\n") {
			trim := strings.TrimSpace(line)
			switch {
			case strings.HasPrefix(trim, "- alert:"):
				alert = strings.TrimSpace(strings.TrimPrefix(trim, "- alert:"))
			case strings.HasPrefix(trim, "expr:"):
				expr = &strings.Builder{}
				expr.WriteString(strings.TrimPrefix(strings.TrimSpace(strings.TrimPrefix(trim, "expr:")), "|"))
				out[filepath.Base(f)+": "+alert] = ""
			case expr != nil && (strings.HasPrefix(line, "          ") || trim == ""):
				expr.WriteString(" " + trim)
			case expr != nil:
				out[filepath.Base(f)+": "+alert] = expr.String()
				expr = nil
			}
		}
	}
	if len(out) < 6 {
		t.Fatalf("found %d alert rules under deploy/prometheus, want at least 6", len(out))
	}
	return out
}

var (
	metricRef = regexp.MustCompile(`\b(woorelay_[a-z0-9_]+)(\{[^}]*\})?`)
	labelRef  = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!=|!~|=)`)
	byRef     = regexp.MustCompile(`\bby\s*\(([^)]*)\)`)
)

// targetLabels are added by Prometheus when it scrapes, not by woorelay.
var targetLabels = map[string]bool{"instance": true, "job": true, "le": true}

// scrape reads a /metrics page: each family's label names (histograms' series under the
// family's name with its _bucket, _sum and _count).
func scrape(t *testing.T, url string) map[string]map[string]bool {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fams := map[string]map[string]bool{}
	series := regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	for sc := bufio.NewScanner(strings.NewReader(string(body))); sc.Scan(); {
		m := series.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name := m[1]
		if fams[name] == nil {
			fams[name] = map[string]bool{}
		}
		for _, l := range regexp.MustCompile(`([a-z_]+)="`).FindAllStringSubmatch(m[2], -1) {
			fams[name][l[1]] = true
		}
	}
	return fams
}

// TestDashboardAndAlertMetricsExist starts a relay, makes it deliver, retry, dead-letter and
// refuse a reload, and checks that every metric the dashboard and the alert rules query is on
// its /metrics, with every label they select or group by.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	x := newE2E(t)
	cfg := filepath.Join(t.TempDir(), "woorelay.yaml")
	os.WriteFile(cfg, []byte("sources:\n  - name: web\n    write_key: k-web\n    preset: default\n    settings: {project: example.com}\n"), 0o644)
	x.args = append(x.args, "--config", cfg)
	p := x.start()
	x.em.Script("v-dead", 403)
	x.em.Script("v-retry", 500)
	for i, v := range []string{"v-ok", "v-dead", "v-retry"} {
		if code := postEvent(t, p.url, "k-web", "Checked", v, fmt.Sprintf("m%d", i)); code != 200 {
			t.Fatalf("ingest answered %d", code)
		}
	}
	waitFor(t, 30*time.Second, "a delivery and a dead letter", func() bool {
		c := x.counters(p)
		return c.Delivered >= 2 && c.DeadLettered == 1
	})
	os.WriteFile(cfg, []byte("sources:\n  - name: web\n    write_key: k-web\n    preset: no-such-preset\n"), 0o644)
	var out, errb strings.Builder
	if code := run([]string{"config", "--server", p.admin, "reload"}, nil, &out, &errb); code != 1 {
		t.Fatalf("config reload of a broken file: exit %d, want 1: %s%s", code, out.String(), errb.String())
	}

	fams := scrape(t, p.url+"/metrics")
	check := func(where, expr string) {
		refs := metricRef.FindAllStringSubmatch(expr, -1)
		if len(refs) == 0 {
			t.Errorf("%s: %q queries no woorelay metric", where, expr)
		}
		var names []string
		for _, r := range refs {
			labels, ok := fams[r[1]]
			if !ok {
				t.Errorf("%s: %s is not on /metrics", where, r[1])
				continue
			}
			names = append(names, r[1])
			for _, l := range labelRef.FindAllStringSubmatch(r[2], -1) {
				if !targetLabels[l[1]] && !labels[l[1]] {
					t.Errorf("%s: %s has no label %q", where, r[1], l[1])
				}
			}
		}
		for _, by := range byRef.FindAllStringSubmatch(expr, -1) {
			for _, l := range strings.Split(by[1], ",") {
				l = strings.TrimSpace(l)
				if targetLabels[l] {
					continue
				}
				if !slices.ContainsFunc(names, func(n string) bool { return fams[n][l] }) {
					t.Errorf("%s: groups by %q, which none of %v has", where, l, names)
				}
			}
		}
	}
	exprs := dashboardExprs(t)
	for where, e := range exprs {
		check(where, e)
	}
	for where, e := range ruleExprs(t) {
		check(where, e)
	}
	for _, want := range []string{"woorelay_queue_oldest_event_age_seconds", "woorelay_queue_dead_letters", "woorelay_ready"} {
		if _, ok := fams[want]; !ok {
			t.Errorf("%s is not on /metrics", want)
		}
	}
	for _, want := range []string{"woorelay_delivery_attempts_total", "woorelay_delivery_events_total", "woorelay_delivery_latency_seconds_bucket"} {
		if !fams[want]["source"] {
			t.Errorf("%s has no source label", want)
		}
	}
	checkDashboardPromQL(t, exprs)
}

// checkDashboardPromQL has promtool parse the dashboard's expressions (as recording rules,
// with Grafana's variables filled in), so a typo fails here rather than on a blank panel.
func checkDashboardPromQL(t *testing.T, exprs map[string]string) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool is not installed (Debian: apt-get install -y prometheus); .ci/run installs it")
		}
		t.Log("promtool is not installed; the dashboard's PromQL is not parsed")
		return
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	fill := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*", "$source", ".*")
	i := 0
	for _, e := range exprs {
		i++
		q, _ := json.Marshal(fill.Replace(e))
		fmt.Fprintf(&b, "      - record: dashboard:expr%d\n        expr: %s\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	os.WriteFile(f, []byte(b.String()), 0o644)
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
}
