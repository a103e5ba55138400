package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/woorelay/woorelay/emulator"
)

// netLog records the URL of every request a tab makes, and the status of each answer.
type netLog struct {
	mu     sync.Mutex
	urls   []string
	status map[string]int64 // by "METHOD URL"
	method map[network.RequestID]string
}

func (n *netLog) listen(ev any) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.status == nil {
		n.status, n.method = map[string]int64{}, map[network.RequestID]string{}
	}
	switch e := ev.(type) {
	case *network.EventRequestWillBeSent:
		n.urls = append(n.urls, e.Request.URL)
		n.method[e.RequestID] = e.Request.Method
	case *network.EventResponseReceived:
		n.status[n.method[e.RequestID]+" "+e.Response.URL] = e.Response.Status
	}
}

// answered returns the status the answer to method url had (0: none yet).
func (n *netLog) answered(method, url string) int64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status[method+" "+url]
}

func (n *netLog) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.urls)
}

// onlyTo fails the test for any request the tab made to a host:port other than allowed.
func (n *netLog) onlyTo(t *testing.T, allowed ...string) {
	t.Helper()
	for _, u := range n.all() {
		pu, err := url.Parse(u)
		if err != nil || pu.Scheme != "http" && pu.Scheme != "https" {
			continue // data: and blob: URLs stay in the browser
		}
		if !slices.Contains(allowed, pu.Host) {
			t.Errorf("the page requested %s, a host other than the page's and the relay's (%v)", u, allowed)
		}
	}
}

// requested reports whether the tab requested a URL with the prefix.
func (n *netLog) requested(prefix string) bool {
	for _, u := range n.all() {
		if strings.HasPrefix(u, prefix) {
			return true
		}
	}
	return false
}

// newTab opens a tab for as long as the test runs, logging its console and its requests.
func newTab(t *testing.T, ctx context.Context, name string) (context.Context, *netLog) {
	t.Helper()
	log := &netLog{}
	tab, cancel := chromedp.NewContext(ctx, chromedp.WithListener(consoleLog(t, name)), chromedp.WithListener(log.listen))
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatal(err)
	}
	return tab, log
}

// sitePages serves the snippet test pages on an origin of their own, as a website would, and
// forwards the site's /rsaRequest to the relay (RudderStack's server-side cookies are set by
// the site's own domain); setCookies records the cookies the relay's answers set.
type sitePages struct {
	url        string
	mu         sync.Mutex
	setCookies []string
}

func newSitePages(t *testing.T, relay, writeKey string) *sitePages {
	t.Helper()
	installBrowserSDKs(t)
	relayHost := strings.TrimPrefix(relay, "http://")
	// The official snippet, with only its host changed; the test relay speaks plain HTTP.
	cmd := exec.Command("node", "-e", `process.stdout.write(require("@segment/snippet").min({host: process.argv[1], apiKey: process.argv[2], page: false}))`, relayHost, writeKey)
	cmd.Dir = browserSDKDir
	snippet, err := cmd.Output()
	if err != nil {
		t.Fatalf("render Segment's snippet with node: %v", err)
	}
	seg := strings.ReplaceAll(string(snippet), "https://"+relayHost, relay)
	if seg == string(snippet) {
		t.Fatalf("the rendered snippet does not load analytics.js from %s:\n%s", relayHost, snippet)
	}
	page := func(file string, fill map[string]string) string {
		b, err := os.ReadFile(filepath.Join(browserSDKDir, file))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for k, v := range fill {
			s = strings.ReplaceAll(s, k, v)
		}
		return s
	}
	segPage := page("segment-snippet.html", map[string]string{"__SNIPPET__": seg})
	rudPage := page("rudder-snippet.html", map[string]string{"__RELAY__": relay, "__WRITE_KEY__": writeKey})
	sp := &sitePages{}
	target, _ := url.Parse(relay)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ModifyResponse = func(r *http.Response) error {
		sp.mu.Lock()
		sp.setCookies = append(sp.setCookies, r.Header.Values("Set-Cookie")...)
		sp.mu.Unlock()
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/rsaRequest", proxy)
	serve := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, body)
		}
	}
	mux.HandleFunc("/segment.html", serve(segPage))
	mux.HandleFunc("/rudder.html", serve(rudPage))
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	sp.url = srv.URL
	return sp
}

func (sp *sitePages) cookiesSet() []string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Clone(sp.setCookies)
}

// emulatorHas waits until the emulator received a request on endpoint with all of want.
func emulatorHas(t *testing.T, em *emulator.Emulator, what, endpoint string, want map[string]string) {
	t.Helper()
	waitShowing(t, 20*time.Second, what, func() bool { return hasParams(em, endpoint, want) }, func() string {
		var b strings.Builder
		for _, r := range em.Requests() {
			fmt.Fprintf(&b, "%s %d %v\n", r.Endpoint, r.Status, r.Params)
		}
		return b.String()
	})
}

// TestSDKsServedByTheRelay: a site's pages on another origin load Segment's analytics.js (its
// official snippet, host changed) and RudderStack's analytics-js (its v3 loading snippet, URLs
// changed) from the relay itself. Page, identify, track, trackLink, Segment's ajs_uid/ajs_event
// query string and a reload are all delivered; the browser requests nothing from any host but
// the page's and the relay's (no CDN); RudderStack's cookies are set by the relay's answer to
// /rsaRequest and the same anonymous id is used after a reload.
func TestSDKsServedByTheRelay(t *testing.T) {
	ctx := newBrowser(t)
	x := newE2E(t)
	p := x.start()
	const key = "site-key"
	site := newSitePages(t, p.url, key)
	pageHost := strings.TrimPrefix(site.url, "http://")
	relayHost := strings.TrimPrefix(p.url, "http://")

	t.Run("segment", func(t *testing.T) {
		tab, log := newTab(t, ctx, "segment page")
		browse(t, tab, "open the page", 30*time.Second,
			chromedp.Navigate(site.url+"/segment.html"),
			poll(`window.segReady === true`, 20*time.Second))
		emulatorHas(t, x.em, "the snippet's page", "ce", map[string]string{"event": "pv", "ce_name": "Segment Snippet Page"})
		emulatorHas(t, x.em, "the snippet's identify", "identify", map[string]string{"cv_id": "seg-snippet-user", "cv_email": "segment.snippet@example.com"})
		emulatorHas(t, x.em, "the snippet's track", "ce", map[string]string{"event": "Segment Snippet Track", "ce_plan": "seg-snip"})
		anon := read(t, tab, "read the anonymous id", chromedp.Evaluate[string](`analytics.user().anonymousId()`))

		browse(t, tab, "click the tracked link", 10*time.Second,
			eval(`document.getElementById('link').click()`),
			poll(`location.hash === '#clicked'`, 5*time.Second))
		emulatorHas(t, x.em, "trackLink's track", "ce", map[string]string{"event": "Segment Link Clicked", "ce_where": "body", "cookie": anon})

		browse(t, tab, "reload", 30*time.Second,
			eval(`sessionStorage.setItem('reloaded', '1')`),
			chromedp.Reload(),
			poll(`window.segReady === true`, 20*time.Second),
			eval(`analytics.track('Segment After Reload')`))
		emulatorHas(t, x.em, "the track after the reload, from the same visitor", "ce", map[string]string{"event": "Segment After Reload", "cookie": anon, "cv_id": "seg-snippet-user"})

		// analytics.js's query-string API loads a chunk of its own.
		browse(t, tab, "open the page with ajs_uid and ajs_event", 30*time.Second,
			chromedp.Navigate(site.url+"/segment.html?ajs_uid=seg-qs-user&ajs_event=Segment%20QS%20Event"),
			poll(`window.segReady === true`, 20*time.Second))
		emulatorHas(t, x.em, "ajs_uid's identify", "identify", map[string]string{"cv_id": "seg-qs-user"})
		emulatorHas(t, x.em, "ajs_event's track", "ce", map[string]string{"event": "Segment QS Event", "cv_id": "seg-qs-user"})

		for _, path := range []string{"/analytics.js/v1/" + key + "/analytics.min.js", "/v1/projects/" + key + "/settings", "/analytics-next/bundles/"} {
			if !log.requested(p.url + path) {
				t.Errorf("the page did not request %s from the relay; it requested:\n%s", path, strings.Join(log.all(), "\n"))
			}
		}
		log.onlyTo(t, pageHost, relayHost)
	})

	t.Run("rudderstack", func(t *testing.T) {
		tab, log := newTab(t, ctx, "rudderstack page")
		browse(t, tab, "open the page", 30*time.Second,
			chromedp.Navigate(site.url+"/rudder.html"),
			poll(`window.rsReady === true`, 20*time.Second))
		anon := read(t, tab, "read the anonymous id", chromedp.Evaluate[string](`rudderanalytics.getAnonymousId()`))
		emulatorHas(t, x.em, "the snippet's page", "ce", map[string]string{"event": "pv", "ce_name": "Rudder Snippet Page", "cookie": anon})
		emulatorHas(t, x.em, "the snippet's identify", "identify", map[string]string{"cv_id": "rs-snippet-user", "cv_email": "rudder.snippet@example.com"})
		emulatorHas(t, x.em, "the snippet's track", "ce", map[string]string{"event": "Rudder Snippet Track", "ce_plan": "rs-snip"})
		waitShowing(t, 10*time.Second, "the relay's Set-Cookie for rl_anonymous_id", func() bool {
			return slices.ContainsFunc(site.cookiesSet(), func(c string) bool { return strings.HasPrefix(c, "rl_anonymous_id=") })
		}, func() string { return strings.Join(site.cookiesSet(), "\n") })

		browse(t, tab, "reload", 30*time.Second,
			eval(`sessionStorage.setItem('reloaded', '1')`),
			chromedp.Reload(),
			poll(`window.rsReady === true`, 20*time.Second),
			eval(`rudderanalytics.track('Rudder After Reload')`))
		if again := read(t, tab, "read the anonymous id again", chromedp.Evaluate[string](`rudderanalytics.getAnonymousId()`)); again != anon {
			t.Errorf("after a reload the anonymous id is %q, before it %q", again, anon)
		}
		emulatorHas(t, x.em, "the track after the reload, from the same visitor", "ce", map[string]string{"event": "Rudder After Reload", "cookie": anon})
		probe := p.url + "/sourceConfig/?view=ad"
		waitShowing(t, 10*time.Second, "the SDK's ad-blocker probe answered", func() bool { return log.answered("HEAD", probe) != 0 },
			func() string { return strings.Join(log.all(), "\n") })
		if s := log.answered("HEAD", probe); s != 200 {
			t.Errorf("HEAD %s was answered %d: the SDK takes the page for ad-blocked", probe, s)
		}
		if hasParams(x.em, "ce", map[string]string{"ce_name": "ad-block page request"}) {
			t.Error("the SDK took the page for ad-blocked (its HEAD sourceConfig?view=ad probe failed)")
		}
		for _, path := range []string{"/v3/modern/rsa.min.js", "/sourceConfig"} {
			if !log.requested(p.url + path) {
				t.Errorf("the page did not request %s from the relay; it requested:\n%s", path, strings.Join(log.all(), "\n"))
			}
		}
		if !log.requested(site.url + "/rsaRequest") {
			t.Errorf("the SDK did not post its cookies to the site's /rsaRequest; it requested:\n%s", strings.Join(log.all(), "\n"))
		}
		log.onlyTo(t, pageHost, relayHost)
	})
}
