package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/woorelay/woorelay/bench"
)

// debuggerHealth is the part of /debugger/api/health this test reads.
type debuggerHealth struct {
	Viewers       int   `json:"viewers"`
	ViewerDropped int64 `json:"viewer_dropped"`
}

func readDebuggerHealth(t *testing.T, p *proc) debuggerHealth {
	t.Helper()
	resp, err := http.Get(p.admin + "/debugger/api/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h debuggerHealth
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		t.Fatal(err)
	}
	return h
}

// lifecycle sets the page's web lifecycle state, as Chromium does to a tab in the background
// ("frozen": its scripts and its loading stop, so it no longer reads its event stream).
func lifecycle(state page.SetWebLifecycleStateState) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.SetWebLifecycleState, page.SetWebLifecycleStateParams{State: state})
		return err
	})
}

// TestFrozenDebuggerTabDoesNotSlowIngest: a debugger tab that Chromium has frozen stops
// reading its live stream; on a real `woorelay serve` process, ingest goes on at the same pace
// and the relay drops the tab's changes instead of waiting for it. Rounds alternate between
// no debugger tab and a frozen one; every request is acknowledged in both, the frozen tab's
// lost changes are counted by the relay (so it really stalled), and the throughputs are
// logged side by side (the ratio is measured, not asserted: BENCHMARKS.md quotes it).
func TestFrozenDebuggerTabDoesNotSlowIngest(t *testing.T) {
	ctx := newBrowser(t)
	x := newE2E(t)
	x.args = append(x.args, "--debugger-follow", "0") // every event followed: the most a tab can cost
	p := x.start()
	gen, err := bench.NewBatchGen("frozen", 64)
	if err != nil {
		t.Fatal(err)
	}
	load := func(what string) float64 {
		t.Helper()
		r := bench.RunLoad(bench.LoadConfig{Conns: 8, Warmup: 300 * time.Millisecond, Duration: 2 * time.Second,
			Timeout: 20 * time.Second, Send: bench.PostBatches(p.url+"/v1/batch", gen)})
		if r.Failed > 0 || r.Events == 0 {
			t.Fatalf("ingest %s: %d requests not acknowledged (%v), %d events", what, r.Failed, r.FirstErr, r.Events)
		}
		return r.Rate()
	}
	const rounds = 4
	var alone, frozen []float64
	for round := range rounds {
		if round%2 == 0 { // alternate which goes first, so neither always meets the other's backlog
			alone = append(alone, load("without a debugger tab"))
		}
		_, closeTab := openFrozenDebugger(t, ctx, p, round)
		before := readDebuggerHealth(t, p)
		frozen = append(frozen, load("with a frozen debugger tab"))
		after := readDebuggerHealth(t, p)
		if after.Viewers < 1 || after.ViewerDropped <= before.ViewerDropped {
			t.Errorf("round %d: health %+v after %+v: the frozen tab lost no changes, so it did not stall", round, after, before)
		}
		closeTab()
		if round%2 == 1 {
			alone = append(alone, load("without a debugger tab"))
		}
	}
	med := func(v []float64) float64 { s := slices.Clone(v); slices.Sort(s); return s[len(s)/2] }
	t.Logf("ingest on a real serve process, 8 connections, %d rounds of 2 s: %s events/s without a debugger tab, %s with a frozen one (ratio of medians %.2f; per round %s)",
		rounds, bench.FormatRate(med(alone)), bench.FormatRate(med(frozen)), med(frozen)/med(alone), perRound(frozen, alone))
	x.drained(p)
}

// openFrozenDebugger opens the debugger in a new tab, waits until its live stream is up and
// freezes the tab. The tab has a browser context of its own, so the frozen tabs before it keep
// no connection of its pool busy. A tab that does not come up is reported and tried once more
// (a busy machine has been seen to miss the first page's 45 s); a second failure fails the test.
func openFrozenDebugger(t *testing.T, browser context.Context, p *proc, round int) (context.Context, context.CancelFunc) {
	t.Helper()
	for try := 1; ; try++ {
		tab, closeTab := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
		if err := chromedp.Do(tab); err != nil { // opens the tab, for as long as tab lives
			t.Fatal(err)
		}
		octx, ocancel := context.WithTimeout(tab, 60*time.Second)
		err := chromedp.Do(octx, chromedp.Navigate(p.admin+"/debugger/"),
			poll(`document.querySelector('#status').textContent === 'live'`, 45*time.Second),
			lifecycle(page.SetWebLifecycleStateStateFrozen))
		ocancel()
		if err == nil {
			return tab, closeTab
		}
		sctx, scancel := context.WithTimeout(tab, 5*time.Second)
		shown, serr := chromedp.Run(sctx, chromedp.Evaluate[string](`document.readyState + ' / ' + (document.querySelector('#status') || {}).textContent`))
		scancel()
		closeTab()
		what := fmt.Sprintf("round %d, try %d: open the debugger in a tab: %v; the page: %q (%v); the relay: %+v", round, try, err, shown, serr, readDebuggerHealth(t, p))
		if try == 2 {
			t.Fatal(what)
		}
		t.Log(what)
	}
}

// perRound formats the ratios a[i]/b[i].
func perRound(a, b []float64) string {
	s := ""
	for i := range a {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.2f", a[i]/b[i])
	}
	return s
}
