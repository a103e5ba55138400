package destination

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/queue"
)

// TestClientRedirectLoopSaysSo: a destination that redirects to itself for ever is
// dead-lettered with a reason that names the loop and where it went, not only "302 Found".
func TestClientRedirectLoopSaysSo(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/track/ce?"+r.URL.RawQuery, http.StatusFound)
	}))
	defer srv.Close()
	a := NewClient(ClientOptions{}).Send(context.Background(), get(srv.URL+"/track/ce?project=p.com"))
	if a.Class != Dead || a.Status != http.StatusFound {
		t.Fatalf("got %s %d, want dead 302", a.Class, a.Status)
	}
	if r := a.Reason(); !strings.Contains(r, "redirect loop") || !strings.Contains(r, "after 5 redirects") || !strings.Contains(r, srv.URL+"/track/ce") {
		t.Errorf("reason %q: want it to say redirect loop, after 5 redirects, and where", r)
	}
}

// TestClientSecureTrackingAndOverQuota: 401 is dead with a reason saying whether credentials
// were sent; 402 Over Quota is done (Woopra logged the data), with the answer kept.
func TestClientSecureTrackingAndOverQuota(t *testing.T) {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("user:secret"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/quota"):
			w.WriteHeader(http.StatusPaymentRequired)
		case r.Header.Get("Authorization") != want:
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	c := NewClient(ClientOptions{})
	a := c.Send(context.Background(), get(srv.URL+"/track/ce?project=p.com"))
	if a.Class != Dead || !strings.Contains(a.Reason(), "secure tracking enabled and the request carried no credentials") {
		t.Errorf("401 without credentials: %s, reason %q", a.Class, a.Reason())
	}
	a = c.Send(context.Background(), get(srv.URL+"/track/ce?project=p.com", queue.Header{Name: "Authorization", Value: "Basic d3Jvbmc6d3Jvbmc="}))
	if a.Class != Dead || !strings.Contains(a.Reason(), "refused the tracking credentials") {
		t.Errorf("401 with wrong credentials: %s, reason %q", a.Class, a.Reason())
	}
	if a = c.Send(context.Background(), get(srv.URL+"/track/ce?project=p.com", queue.Header{Name: "Authorization", Value: want})); a.Class != Done {
		t.Errorf("right credentials: %s %d %v", a.Class, a.Status, a.Err)
	}
	if a = c.Send(context.Background(), get(srv.URL+"/quota?project=p.com")); a.Class != Done || a.Status != http.StatusPaymentRequired {
		t.Errorf("402: %s %d, want done 402", a.Class, a.Status)
	}
}

// TestDispatcherOverQuotaIsDeliveredAndCounted: a 402 answer finishes the event as delivered
// (not dead-lettered, so a replay cannot send it twice), counted apart for an alert.
func TestDispatcherOverQuotaIsDeliveredAndCounted(t *testing.T) {
	q := newFakeQueue()
	s := newScriptSender()
	s.script(evURL("a", 0), resp{status: http.StatusPaymentRequired})
	q.add("a", req(evURL("a", 0)))
	q.add("a", req(evURL("a", 1)))
	reg := prometheus.NewRegistry()
	opts := fastOpts()
	opts.Registerer = reg
	d := NewDispatcher(q, s, opts)
	start(t, d)
	waitFor(t, "delivery", drained(q))
	if c := q.Counters(); c.Delivered != 2 || c.DeadLettered != 0 {
		t.Errorf("counters %+v: want 2 delivered, none dead-lettered", c)
	}
	if v := metricValue(t, reg, "woorelay_delivery_over_quota_total", nil); v != 1 {
		t.Errorf("over quota counter %v, want 1", v)
	}
	waitFor(t, "stats", func() bool { return d.Stats().OverQuota == 1 })
	checkQueue(t, q)
}
