package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/queue"
)

// TestNodeSDKs runs testdata/sdk/send.js — the real @segment/analytics-node and
// @rudderstack/rudder-sdk-node, at the versions package.json pins — against the server and
// checks every event arrived mapped. It needs node and npm, so it runs only with
// WOORELAY_SDK_TEST=1; it installs the packages when node_modules is missing.
func TestNodeSDKs(t *testing.T) {
	if os.Getenv("WOORELAY_SDK_TEST") != "1" {
		t.Skip("set WOORELAY_SDK_TEST=1 to run the Node SDK integration test (needs node, npm and the npm registry)")
	}
	dir := filepath.Join("testdata", "sdk")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); err != nil {
		cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm install in %s: %v\n%s", dir, err, out)
		}
	}

	s, st := newTest(t, func(o *Options) { o.Now = time.Now; o.NewMessageID = nil })
	var mu sync.Mutex
	var shapes []string // Content-Encoding and Content-Type of each request
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		shapes = append(shapes, r.Header.Get("Content-Encoding")+" "+r.Header.Get("Content-Type"))
		mu.Unlock()
		s.Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()

	cmd := exec.CommandContext(ctx, "node", "send.js", ts.URL, keyWeb, keyBackend)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	t.Logf("send.js: %s", out)
	if err != nil {
		t.Fatalf("send.js failed: %v", err)
	}

	type want struct {
		outcome queue.Outcome
		params  map[string]string
	}
	// The key is source, type and event (or page/screen name); both SDKs send the same calls.
	wants := map[string]want{}
	for _, sdk := range []struct{ prefix, source, anon, user string }{
		{"Segment", "website", "seg-anon-1", "seg-user-1"},
		{"Rudder", "shop", "rs-anon-1", "rs-user-1"},
	} {
		p := sdk.prefix
		wants[sdk.source+" track "+p+" Order Completed"] = want{queue.Deliver, map[string]string{"event": p + " Order Completed", "cookie": sdk.anon, "ce_amount": "12.5", "ce_order_id": p + "-o1"}}
		wants[sdk.source+" identify "] = want{queue.Deliver, map[string]string{"cv_id": sdk.user, "cv_email": strings.ToLower(p) + "@example.com", "cv_name": p + " User"}}
		wants[sdk.source+" page "+p+" Pricing"] = want{queue.Deliver, map[string]string{"event": "pv", "ce_url": "https://example.com/pricing", "cookie": sdk.anon}}
		wants[sdk.source+" screen "+p+" Home"] = want{queue.Deliver, map[string]string{"event": "screen", "cv_id": sdk.user}}
		wants[sdk.source+" group "] = want{queue.Filtered, nil}
		wants[sdk.source+" alias "] = want{queue.Filtered, nil}
		acct := want{queue.Deliver, map[string]string{"cv_id": sdk.user}}
		if sdk.source == "website" { // the website's mapping folder turns it into signup
			acct.params["event"], acct.params["ce_plan"] = "signup", p+"-pro"
		} else {
			acct.params["event"], acct.params["ce_plan"] = "Account Created", p+"-pro"
		}
		wants[sdk.source+" track Account Created"] = acct
	}

	es := st.mapped()
	var got []string
	for _, e := range es {
		ev := gjson.ParseBytes(e.Event)
		name := ev.Get("event").String()
		if name == "" {
			name = ev.Get("name").String()
		}
		k := e.Source + " " + ev.Get("type").String() + " " + name
		got = append(got, k)
		w, ok := wants[k]
		if !ok {
			t.Errorf("unexpected event %s: %s", k, e.Event)
			continue
		}
		if e.Outcome != w.outcome {
			t.Errorf("%s: %s (%s), want %s", k, e.Outcome, e.Reason, w.outcome)
			continue
		}
		for pn, pv := range w.params {
			if g := param(t, e, pn); g != pv {
				t.Errorf("%s: %s = %q, want %q", k, pn, g, pv)
			}
		}
		if !ev.Get("messageId").Exists() || !ev.Get("receivedAt").Exists() || !ev.Get("timestamp").Exists() || ev.Get("writeKey").Exists() {
			t.Errorf("%s: not normalised: %s", k, e.Event)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(shapes, "gzip application/x-www-form-urlencoded") {
		t.Errorf("rudder-sdk-node was expected to send gzip labelled x-www-form-urlencoded; requests were %q", shapes)
	}
	sort.Strings(got)
	if len(es) != len(wants) {
		t.Errorf("stored %d events, want %d:\n%s", len(es), len(wants), strings.Join(got, "\n"))
	}
}
