package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/woorelay/woorelay/emulator"
)

// The debugger's browser tests: a real headless Chromium (Debian's chromium package) driven
// with chromedp, on a real `woorelay serve` process, with the real browser SDKs from npm.
// They need chromium, node and npm, so they run with WOORELAY_SDK_TEST=1 (which CI sets) and
// are skipped otherwise. WOORELAY_SCREENSHOTS=1 rewrites the README's screenshots in debugger/screenshots/.

// browserSDKDir holds the npm packages of the browser SDKs (package.json pins them).
var browserSDKDir = filepath.Join("testdata", "browser")

// newBrowser starts headless Chromium and returns a context of its first tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if os.Getenv("WOORELAY_SDK_TEST") != "1" {
		t.Skip("set WOORELAY_SDK_TEST=1 to run the browser tests (need chromium, node, npm and the npm registry)")
	}
	if testing.Short() {
		t.Skip("browser test; skipped with -short")
	}
	exe := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			exe = p
			break
		}
	}
	if exe == "" {
		t.Fatal("no chromium on PATH: install it (Debian: apt-get install -y chromium); .ci/run does")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 860),
		chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// consoleLog logs what a page writes to its console and the exceptions it throws.
func consoleLog(t *testing.T, page string) func(ev any) {
	return func(ev any) {
		switch e := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			var parts []string
			for _, a := range e.Args {
				if len(a.Value) > 0 {
					parts = append(parts, string(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			t.Logf("%s console.%s: %s", page, e.Type, strings.Join(parts, " "))
		case *cdpruntime.EventExceptionThrown:
			msg := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				msg += " " + e.ExceptionDetails.Exception.Description
			}
			t.Logf("%s exception: %s", page, msg)
		}
	}
}

// installBrowserSDKs runs npm ci in testdata/browser when a package of package.json is missing.
func installBrowserSDKs(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(browserSDKDir, "node_modules", "@segment", "snippet")); err == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
	cmd.Dir = browserSDKDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", browserSDKDir, err, out)
	}
}

// sdkPage serves the test page and the SDKs' prebuilt standalone bundles from their npm
// packages, on an origin of its own (as a website would be).
func sdkPage(t *testing.T) string {
	t.Helper()
	installBrowserSDKs(t)
	mux := http.NewServeMux()
	nm := filepath.Join(browserSDKDir, "node_modules")
	mux.Handle("/segment/", http.StripPrefix("/segment/", http.FileServer(http.Dir(filepath.Join(nm, "@segment", "analytics-next", "dist", "umd")))))
	mux.Handle("/rudder/", http.StripPrefix("/rudder/", http.FileServer(http.Dir(filepath.Join(nm, "@rudderstack", "analytics-js", "dist", "npm", "modern", "bundled", "umd")))))
	mux.HandleFunc("/sdk.html", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join(browserSDKDir, "sdk.html"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

// screenshot writes debugger/screenshots/NAME.png from the current tab when WOORELAY_SCREENSHOTS=1.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("WOORELAY_SCREENSHOTS") != "1" {
		return
	}
	time.Sleep(300 * time.Millisecond) // let the last render settle
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join("..", "..", "debugger", "screenshots", name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// browse runs chromedp actions with a time limit, failing the test with what was being done.
func browse(t *testing.T, ctx context.Context, what string, limit time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// read runs one chromedp action that reads a string, with a time limit.
func read(t *testing.T, ctx context.Context, what string, a chromedp.Action[string]) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// poll waits until the JavaScript expression is truthy.
func poll(expr string, timeout time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Poll[bool]("!!("+expr+")", chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(20*time.Millisecond))(ctx, tg)
		return err
	})
}

// eval runs a JavaScript statement.
func eval(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool]("("+js+", true)")(ctx, tg)
		return err
	})
}

// hasParams reports whether the emulator received a request on endpoint with all of want.
func hasParams(em *emulator.Emulator, endpoint string, want map[string]string) bool {
	for _, r := range em.Requests() {
		if r.Endpoint != endpoint || r.Status != 200 {
			continue
		}
		ok := true
		for k, v := range want {
			if got, _ := r.Params.Lookup(k); got != v {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// waitShowing is waitFor that, on a time-out, shows what describe says.
func waitShowing(t *testing.T, timeout time.Duration, what string, cond func() bool, describe func() string) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s:\n%s", timeout, what, describe())
		}
	}
}

// rowJS is a JavaScript test for a live-view row holding text whose outcome is outcome.
func rowJS(text, outcome string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#events tbody tr')].some(tr => tr.dataset.outcome === %q && tr.textContent.includes(%q))`, outcome, text)
}

// TestDebuggerInBrowser: the real browser SDKs send page, identify and track from a test page;
// every call reaches the emulator mapped and appears in the debugger's live view within 2 s
// with its request and Woopra's answer; opening one shows the explain trace; a dead letter is
// replayed from the page and delivered; a typo in the playground shows its finding at its
// line:col; the health view shows the reconciling counters.
func TestDebuggerInBrowser(t *testing.T) {
	ctx := newBrowser(t)
	page := sdkPage(t)
	x := newE2E(t)
	p := x.start()

	browse(t, ctx, "open the debugger", 60*time.Second,
		chromedp.Navigate(p.admin+"/debugger/"),
		chromedp.WaitVisible(chromedp.CSS("#events")),
		poll(`document.querySelector('#status').textContent === 'live'`, 45*time.Second))

	// The SDK page in a tab of its own, as a website would be.
	sdkTab, cancel := chromedp.NewContext(ctx, chromedp.WithListener(consoleLog(t, "sdk page")))
	defer cancel()
	if err := chromedp.Do(sdkTab); err != nil { // opens the tab, for as long as sdkTab lives
		t.Fatal(err)
	}
	browse(t, sdkTab, "load the SDK page", 20*time.Second, chromedp.Navigate(page+"/sdk.html"),
		poll(`typeof AnalyticsNext === 'object' && typeof rudderanalytics === 'object'`, 10*time.Second))

	type sdk struct {
		name, fn, anon, user, prefix, nameTrait, plan string
	}
	for _, s := range []sdk{
		{"segment", "runSegment", "seg-anon-1", "seg-user-1", "Segment", "Segment User", "seg-pro"},
		{"rudderstack", "runRudder", "rs-anon-1", "rs-user-1", "Rudder", "Rudder User", "rs-pro"},
	} {
		sctx, scancel := context.WithTimeout(sdkTab, 20*time.Second)
		res, err := chromedp.Run(sctx, chromedp.Evaluate[string](fmt.Sprintf(`%s(%q, "browser-key")`, s.fn, p.url), chromedp.EvalAwaitPromise))
		scancel()
		if err != nil || res != "sent" {
			pctx, pcancel := context.WithTimeout(sdkTab, 5*time.Second)
			progress, _ := chromedp.Run(pctx, chromedp.Evaluate[string](`progress.join(", ")`))
			pcancel()
			t.Fatalf("%s sends page, identify and track: %q, %v (it got to: %s)\n%s", s.name, res, err, progress, p.output.String())
		}
		sent := time.Now()
		// Within 2 s of the SDK's call, the live view shows the track delivered, with its
		// request and Woopra's answer.
		browse(t, ctx, s.name+": the track appears delivered in the live view within 2 s", 2*time.Second,
			poll(rowJS(s.prefix+" Browser Signed Up", "delivered"), 2*time.Second))
		t.Logf("%s: the track was shown delivered %v after the SDK's call returned", s.name, time.Since(sent).Round(time.Millisecond))
		cells := read(t, ctx, "read the row", chromedp.Evaluate[string](fmt.Sprintf(
			`[...document.querySelectorAll('#events tbody tr')].find(tr => tr.textContent.includes(%q)).textContent`, s.prefix+" Browser Signed Up")))
		for _, want := range []string{"GET /track/ce", "event=" + strings.ToLower(s.prefix) + " browser signed up", "200 in"} {
			if !strings.Contains(strings.ToLower(cells), strings.ToLower(want)) {
				t.Errorf("%s: the live row lacks %q: %s", s.name, want, cells)
			}
		}
		waitShowing(t, 10*time.Second, s.name+"'s page, identify and track at the emulator, mapped", func() bool {
			return hasParams(x.em, "ce", map[string]string{"event": "pv", "cookie": s.anon}) &&
				hasParams(x.em, "identify", map[string]string{"cv_id": s.user, "cv_email": strings.ToLower(s.prefix) + "@example.com", "cv_name": s.nameTrait}) &&
				hasParams(x.em, "ce", map[string]string{"cv_id": s.user, "ce_plan": s.plan})
		}, func() string {
			var b strings.Builder
			for _, r := range x.em.Requests() {
				fmt.Fprintf(&b, "%s %d %v\n", r.Endpoint, r.Status, r.Params)
			}
			return b.String()
		})
	}
	screenshot(t, ctx, "debugger-live")

	t.Run("open an event: requests and the explain trace", func(t *testing.T) {
		browse(t, ctx, "open the Segment track", 10*time.Second,
			eval(`[...document.querySelectorAll('#events tbody tr')].find(tr => tr.textContent.includes('Segment Browser Signed Up')).click()`),
			chromedp.WaitVisible(chromedp.CSS("#trace table.trace")))
		trace := read(t, ctx, "read the trace", chromedp.Text(chromedp.CSS("#trace")))
		params := read(t, ctx, "read the parameters", chromedp.Text(chromedp.CSS("#detail table.params")))
		for _, want := range []string{"mapping", "when", "(wins)", "identity", "cv_id", "spread"} {
			if !strings.Contains(trace, want) {
				t.Errorf("the explain trace lacks %q:\n%s", want, trace)
			}
		}
		for _, want := range []string{"event", "segment browser signed up", "ce_plan", "seg-pro"} {
			if !strings.Contains(strings.ToLower(params), want) {
				t.Errorf("the request's parameter table lacks %q:\n%s", want, params)
			}
		}
		raw := read(t, ctx, "read the raw event", chromedp.Text(chromedp.CSS("#raw")))
		if !strings.Contains(raw, `"messageId"`) || !strings.Contains(raw, `"plan": "seg-pro"`) {
			t.Errorf("the raw event is not shown as stored:\n%s", raw)
		}
		// What the page shows of it: a date with the time, the visitor Woopra got (not the
		// queue's u:/a: key), the request's headers, its timestamp readable, and a trace whose
		// cookie row (six candidates missing before anonymousId wins) takes a few lines.
		shown := read(t, ctx, "read the opened event", chromedp.Evaluate[string](`(() => {
			const d = document.querySelector('#detail');
			const cookie = [...d.querySelectorAll('table.trace tbody.field')].find((f) => f.querySelector('td.name').textContent.startsWith('cookie'));
			const steps = cookie.querySelector('td.steps');
			const cs = getComputedStyle(steps);
			const lines = (steps.getBoundingClientRect().height - parseFloat(cs.paddingTop) - parseFloat(cs.paddingBottom)) / parseFloat(cs.lineHeight);
			const row = [...document.querySelectorAll('#events tbody tr')].find(tr => tr.textContent.includes('Segment Browser Signed Up'));
			return JSON.stringify({
				received: row.cells[0].textContent, visitor: row.cells[4].textContent, lines,
				headers: (d.querySelector('table.headers') || {}).textContent || '',
				when: (d.querySelector('table.params .when') || {}).textContent || '',
				where: cookie.querySelector('.where').textContent,
			});
		})()`))
		var got struct {
			Received, Visitor, Headers, When, Where string
			Lines                                   float64
		}
		if err := json.Unmarshal([]byte(shown), &got); err != nil {
			t.Fatalf("%v: %s", err, shown)
		}
		dated := regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$`)
		if !dated.MatchString(got.Received) {
			t.Errorf("the received time %q has no date", got.Received)
		}
		if got.Visitor != "seg-user-1" {
			t.Errorf("the visitor column shows %q, want the cv_id Woopra got (seg-user-1)", got.Visitor)
		}
		if !strings.Contains(got.Headers, "User-Agent") {
			t.Errorf("the opened event does not show its request's headers: %q", got.Headers)
		}
		if !regexp.MustCompile(`\(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\)`).MatchString(got.When) {
			t.Errorf("the timestamp parameter is not shown as a date: %q", got.When)
		}
		if got.Lines > 4.5 || !strings.Contains(got.Where, "default.yaml:") {
			t.Errorf("the cookie's trace takes %.1f lines (want at most 4), its place %q", got.Lines, got.Where)
		}
		browse(t, ctx, "scroll to the trace", 5*time.Second, eval(`(() => { const d = document.querySelector('#detail'); d.scrollTop += document.querySelector('#trace-title').getBoundingClientRect().top - d.getBoundingClientRect().top - 150 })()`))
		screenshot(t, ctx, "debugger-event")
	})

	t.Run("dead letters made at the edge, and duplicates", func(t *testing.T) {
		// A batch's events with no user or anonymous id are dead letters made at the edge.
		if s := postRaw(t, p.url+"/v1/batch", `{"batch":[{"type":"track","event":"Edge Reject","messageId":"m-edge-1"},{"type":"track","event":"Edge Reject","messageId":"m-edge-2"}]}`); s != 200 {
			t.Fatalf("ingest answered %d", s)
		}
		for range 2 { // the second is a duplicate
			if s := sendOne(t, p.url, "v-dup", "m-dup"); s != 200 {
				t.Fatalf("ingest answered %d", s)
			}
		}
		waitFor(t, 20*time.Second, "the edge's dead letters and the duplicate", func() bool {
			c := x.counters(p)
			return c.DeadLettered >= 2 && c.Duplicates >= 1
		})
		want := x.counters(p).DeadLettered
		browse(t, ctx, "the live filter dead_lettered shows as many as health counts", 10*time.Second,
			chromedp.Navigate(p.admin+"/debugger/#live"),
			poll(`document.querySelector('#status').textContent === 'live'`, 5*time.Second),
			eval(`(() => { const f = document.querySelector('#f-outcome'); f.value = 'dead_lettered'; f.dispatchEvent(new Event('change')); })()`),
			poll(fmt.Sprintf(`document.querySelectorAll('#events tbody tr').length === %d`, want), 5*time.Second))
		edge := read(t, ctx, "read an edge row", chromedp.Evaluate[string](`[...document.querySelectorAll('#events tbody tr')].map(tr => tr.textContent).join('\n')`))
		if !strings.Contains(edge, "rejected at the edge") {
			t.Errorf("the edge's dead letters do not say where they were made:\n%s", edge)
		}
		browse(t, ctx, "the duplicate shows on its event", 10*time.Second,
			eval(`(() => { const f = document.querySelector('#f-outcome'); f.value = ''; f.dispatchEvent(new Event('change')); })()`),
			poll(`[...document.querySelectorAll('#events tbody tr')].some(tr => tr.dataset.messageId === 'm-dup' && tr.textContent.includes('+1 duplicate'))`, 5*time.Second),
			eval(`[...document.querySelectorAll('#events tbody tr')].find(tr => tr.dataset.messageId === 'm-dup').click()`),
			poll(`document.querySelector('#duplicates') && /1 duplicate: .* the latest at \d{4}-\d\d-\d\d/.test(document.querySelector('#duplicates').textContent)`, 5*time.Second))
	})

	t.Run("a dead letter replayed from the page is delivered", func(t *testing.T) {
		if err := x.em.Script("v403", 403); err != nil {
			t.Fatal(err)
		}
		before := x.counters(p).DeadLettered // the edge's, from the test before
		if s := sendOne(t, p.url, "v403", "m-403"); s != 200 {
			t.Fatalf("ingest answered %d", s)
		}
		waitFor(t, 20*time.Second, "the dead letter", func() bool { return x.counters(p).DeadLettered == before+1 })
		browse(t, ctx, "the live view shows it dead-lettered", 5*time.Second, poll(rowJS("v403", "dead_lettered"), 5*time.Second))
		const row403 = `[...document.querySelectorAll('#dlq-table tr[data-dlq-id]')].find((tr) => tr.textContent.includes('v403'))`
		browse(t, ctx, "open it in the dead letters", 10*time.Second,
			chromedp.Navigate(p.admin+"/debugger/#dlq"),
			poll(row403, 5*time.Second),
			eval(row403+`.querySelector('td:nth-child(8)').click()`),
			chromedp.WaitVisible(chromedp.CSS(`#dlq-detail table.trace`)))
		detail := read(t, ctx, "read it", chromedp.Text(chromedp.CSS("#dlq-detail")))
		for _, want := range []string{"403", "m-403", "/track/ce", "cv_id", "1 attempt ·"} {
			if !strings.Contains(detail, want) {
				t.Errorf("the opened dead letter lacks %q:\n%s", want, detail)
			}
		}
		if answer := read(t, ctx, "read Woopra's answer", chromedp.Text(chromedp.CSS("#dlq-answer"))); !strings.HasPrefix(answer, "403 Forbidden") {
			t.Errorf("Woopra's answer is shown as %q, want it once: 403 Forbidden ...", answer)
		}
		listed := read(t, ctx, "read the list row", chromedp.Evaluate[string](row403+`.textContent`))
		if !strings.Contains(listed, "track") || !strings.Contains(listed, "One") || strings.Contains(listed, "u:") {
			t.Errorf("the dead-letter list row lacks the event's type and name, or shows the queue's key: %q", listed)
		}
		browse(t, ctx, "replay it", 10*time.Second,
			eval(row403+`.querySelector('button.replay').click()`),
			poll(`document.querySelector('#dlq-note').textContent.includes('replayed 1 of 1')`, 5*time.Second))
		waitFor(t, 20*time.Second, "the replayed event at the emulator", func() bool { return x.delivered()["m-403"] == 1 })
		browse(t, ctx, "the live view shows it delivered, at the top, with its earlier attempt", 10*time.Second,
			chromedp.Navigate(p.admin+"/debugger/#live"),
			poll(rowJS("v403", "delivered"), 5*time.Second),
			poll(`document.querySelector('#events tbody tr').dataset.messageId === 'm-403'`, 5*time.Second),
			eval(`document.querySelector('#events tbody tr').click()`),
			poll(`document.querySelector('#detail').textContent.includes('before the replay') && document.querySelector('#detail').textContent.includes('403')`, 5*time.Second))
		if c := x.counters(p); c.DeadLettered != before || c.Replayed != 1 || !c.Reconciles {
			t.Errorf("after the replay: %+v", c)
		}
	})

	t.Run("the playground shows a typo's finding at its line:col", func(t *testing.T) {
		browse(t, ctx, "open the playground", 10*time.Second,
			chromedp.Navigate(p.admin+"/debugger/#playground"),
			poll(`document.querySelector('#pg-requests').textContent.includes('/track/ce')`, 5*time.Second))
		for _, c := range []struct{ typo, fixed, want string }{
			{"    feilds:\n", "    fields:\n", "mappings.yaml:6:5: unknown_key"},
			{"context.trait.email", "context.traits.email", "mappings.yaml:8:24: misspelt_path"},
			{"expr: [properties.position_ms", "expr: 'properties.position_ms != nil ? int(properties.position_ms / 1000) : nil'", "mappings.yaml:10:15: yaml_syntax"},
		} {
			js := fmt.Sprintf(`(() => { const ta = document.querySelector('#pg-yaml'); ta.value = ta.value.replace(%q, %q); ta.dispatchEvent(new Event('input')); })()`, c.fixed, c.typo)
			browse(t, ctx, "type "+c.typo, 10*time.Second, eval(js),
				poll(fmt.Sprintf(`document.querySelector('#pg-findings').textContent.includes(%q)`, c.want), 5*time.Second))
			if c.typo == "context.trait.email" {
				screenshot(t, ctx, "debugger-playground")
			}
			js = fmt.Sprintf(`(() => { const ta = document.querySelector('#pg-yaml'); ta.value = ta.value.replace(%q, %q); ta.dispatchEvent(new Event('input')); })()`, c.typo, c.fixed)
			fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
			err := chromedp.Do(fctx, eval(js), poll(`document.querySelector('#pg-findings').textContent === 'no findings'`, 5*time.Second))
			fcancel()
			if err != nil {
				shown := read(t, ctx, "read the findings", chromedp.Evaluate[string](`document.querySelector('#pg-findings').textContent + '\n' + document.querySelector('#pg-yaml').value`))
				t.Fatalf("fix %s: %v; the page shows:\n%s", c.typo, err, shown)
			}
		}
	})

	t.Run("the playground's trace shows every field's place whole", func(t *testing.T) {
		clipped := read(t, ctx, "measure the places", chromedp.Evaluate[string](`(() => {
			const out = document.querySelector('#pg-trace').closest('.pg-out').getBoundingClientRect();
			const wheres = [...document.querySelectorAll('#pg-trace .where')];
			if (!wheres.length) return 'no places shown';
			return wheres.filter((w) => w.scrollWidth > w.clientWidth + 1 || w.getBoundingClientRect().right > out.right + 1).map((w) => w.textContent).join(', ');
		})()`))
		if clipped != "" {
			t.Errorf("the playground's trace clips: %s", clipped)
		}
	})

	t.Run("health shows the reconciling counters", func(t *testing.T) {
		browse(t, ctx, "open health", 10*time.Second,
			chromedp.Navigate(p.admin+"/debugger/#health"),
			poll(`document.querySelector('#c-reconciles') && document.querySelector('#c-reconciles').textContent === 'yes' && document.querySelector('#chart-rate polyline') !== null`, 5*time.Second))
		received := read(t, ctx, "read received", chromedp.Text(chromedp.CSS("#c-received")))
		if c := x.counters(p); received != fmt.Sprint(c.Received) {
			t.Errorf("health shows %s received, the admin API %d", received, c.Received)
		}
		// Every chart labels its time axis with clock times, its text is readable, and a series
		// drawn over another (in and out are equal here) is dashed so both show.
		charts := read(t, ctx, "read the charts", chromedp.Evaluate[string](`JSON.stringify([...document.querySelectorAll('#tab-health svg')].map((svg) => ({
			times: [...svg.querySelectorAll('text.time')].map((t) => t.textContent),
			font: Math.min(...[...svg.querySelectorAll('text')].map((t) => t.getBoundingClientRect().height)),
			dashed: [...svg.querySelectorAll('polyline')].map((l) => l.getAttribute('stroke-dasharray') || ''),
		})))`))
		var cs []struct {
			Times  []string
			Font   float64
			Dashed []string
		}
		if err := json.Unmarshal([]byte(charts), &cs); err != nil || len(cs) != 4 {
			t.Fatalf("%v: %s", err, charts)
		}
		clockRE := regexp.MustCompile(`^\d\d:\d\d:\d\d$`)
		for i, c := range cs {
			if len(c.Times) < 3 || !clockRE.MatchString(c.Times[0]) || !clockRE.MatchString(c.Times[len(c.Times)-1]) {
				t.Errorf("chart %d's time labels: %v", i, c.Times)
			}
			if c.Font < 11 {
				t.Errorf("chart %d's text is %.1f px high, want at least 11", i, c.Font)
			}
		}
		if d := cs[0].Dashed; len(d) != 2 || d[0] != "" || d[1] == "" {
			t.Errorf("events/s in and out: dash patterns %q, want the second dashed", d)
		}
		if s := read(t, ctx, "fetch the favicon", chromedp.Evaluate[string](`fetch('/favicon.ico').then((r) => r.status + ' ' + r.headers.get('content-type'))`, chromedp.EvalAwaitPromise)); s != "200 image/x-icon" {
			t.Errorf("/favicon.ico: %s", s)
		}
		screenshot(t, ctx, "debugger-health")
	})
}

// postRaw posts a body to an ingest URL with a write key and returns the status.
func postRaw(t *testing.T, url, body string) int {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.SetBasicAuth("any-key", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
