package server

import (
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	rudder "github.com/rudderlabs/analytics-go/v4"
	analytics "gopkg.in/segmentio/analytics-go.v3"

	"github.com/woorelay/woorelay/queue"
)

// goCallback records what the SDK reports.
type goCallback struct {
	mu       sync.Mutex
	ok, fail int
	errs     []string
}

func (c *goCallback) Success(analytics.Message) { c.mu.Lock(); c.ok++; c.mu.Unlock() }
func (c *goCallback) Failure(_ analytics.Message, err error) {
	c.mu.Lock()
	c.fail++
	c.errs = append(c.errs, err.Error())
	c.mu.Unlock()
}

// TestSegmentGoSDK drives the server with the real Segment Go client (which sends batches
// with a wrapper context and sentAt, and HTTP Basic auth) and checks every event arrived
// mapped.
func TestSegmentGoSDK(t *testing.T) {
	s, st := newTest(t, func(o *Options) { o.Now = time.Now; o.NewMessageID = nil })
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	cb := &goCallback{}
	client, err := analytics.NewWithConfig(keyWeb, analytics.Config{
		Endpoint:  ts.URL,
		BatchSize: 4, // several batches
		Interval:  time.Hour,
		Callback:  cb,
		Logger:    testLogger{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []analytics.Message{
		analytics.Track{MessageId: "go-1", AnonymousId: "a-1", Event: "Order Completed", Properties: analytics.NewProperties().Set("revenue", 19.99).Set("order_id", "o-1")},
		analytics.Identify{MessageId: "go-2", UserId: "u-1", Traits: analytics.NewTraits().SetEmail("Jane@Example.com").SetName("Jane")},
		analytics.Page{MessageId: "go-3", AnonymousId: "a-1", Name: "Pricing", Properties: analytics.NewProperties().SetURL("https://example.com/pricing")},
		analytics.Screen{MessageId: "go-4", UserId: "u-1", Name: "Home"},
		analytics.Group{MessageId: "go-5", UserId: "u-1", GroupId: "g-1"},
		analytics.Alias{MessageId: "go-6", UserId: "u-1", PreviousId: "a-1"},
		analytics.Track{MessageId: "go-7", UserId: "u-1", Event: "Account Created", Properties: analytics.NewProperties().Set("plan", "pro")},
		analytics.Track{MessageId: "go-8", AnonymousId: "a-2", Event: "Signed Up", Timestamp: time.Now().Add(-time.Hour)},
	}
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Close(); err != nil { // flushes
		t.Fatal(err)
	}
	if cb.fail != 0 || cb.ok != len(msgs) {
		t.Fatalf("SDK callbacks: %d ok, %d failed %v", cb.ok, cb.fail, cb.errs)
	}
	checkGoSDKEntries(t, st, "go-")
}

// TestRudderStackGoSDK drives the server with RudderStack's Go library (gzip batches to
// /v1/batch, Basic auth, its RS-* proxy headers, the library in each message's context) with
// the same calls as the Segment test, and checks every event arrived mapped the same way.
func TestRudderStackGoSDK(t *testing.T) {
	s, st := newTest(t, func(o *Options) { o.Now = time.Now; o.NewMessageID = nil })
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	cb := &rudderCallback{}
	client, err := rudder.NewWithConfig(keyWeb, rudder.Config{
		DataPlaneUrl: ts.URL,
		BatchSize:    4, // several batches
		Interval:     time.Hour,
		Callback:     cb,
		Logger:       testLogger{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := []rudder.Message{
		rudder.Track{MessageId: "rs-1", AnonymousId: "a-1", Event: "Order Completed", Properties: rudder.NewProperties().Set("revenue", 19.99).Set("order_id", "o-1")},
		rudder.Identify{MessageId: "rs-2", UserId: "u-1", Traits: rudder.NewTraits().SetEmail("Jane@Example.com").SetName("Jane")},
		rudder.Page{MessageId: "rs-3", AnonymousId: "a-1", Name: "Pricing", Properties: rudder.NewProperties().SetURL("https://example.com/pricing")},
		rudder.Screen{MessageId: "rs-4", UserId: "u-1", Name: "Home"},
		rudder.Group{MessageId: "rs-5", UserId: "u-1", GroupId: "g-1"},
		rudder.Alias{MessageId: "rs-6", UserId: "u-1", PreviousId: "a-1"},
		rudder.Track{MessageId: "rs-7", UserId: "u-1", Event: "Account Created", Properties: rudder.NewProperties().Set("plan", "pro")},
		rudder.Track{MessageId: "rs-8", AnonymousId: "a-2", Event: "Signed Up", OriginalTimestamp: time.Now().Add(-time.Hour)},
	}
	for _, m := range msgs {
		if err := client.Enqueue(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := client.Close(); err != nil { // flushes
		t.Fatal(err)
	}
	if cb.fail != 0 || cb.ok != len(msgs) {
		t.Fatalf("SDK callbacks: %d ok, %d failed %v", cb.ok, cb.fail, cb.errs)
	}
	checkGoSDKEntries(t, st, "rs-")
}

// rudderCallback records what RudderStack's Go library reports.
type rudderCallback struct {
	mu       sync.Mutex
	ok, fail int
	errs     []string
}

func (c *rudderCallback) Success(rudder.Message) { c.mu.Lock(); c.ok++; c.mu.Unlock() }
func (c *rudderCallback) Failure(_ rudder.Message, err error) {
	c.mu.Lock()
	c.fail++
	c.errs = append(c.errs, err.Error())
	c.mu.Unlock()
}

// checkGoSDKEntries checks what the Go SDK tests' eight calls (message ids prefix+1..8) became.
func checkGoSDKEntries(t *testing.T, st *memStore, prefix string) {
	t.Helper()
	type want struct {
		outcome  queue.Outcome
		endpoint string
		params   map[string]string
	}
	wants := map[string]want{
		prefix + "1": {queue.Deliver, "/track/ce", map[string]string{"event": "purchase", "cookie": "a-1", "ce_amount": "19.99", "ce_order_id": "o-1", "project": "example.com"}},
		prefix + "2": {queue.Deliver, "/track/identify", map[string]string{"cv_id": "u-1", "cv_email": "jane@example.com", "cv_name": "Jane"}},
		prefix + "3": {queue.Deliver, "/track/ce", map[string]string{"event": "pv", "ce_url": "https://example.com/pricing"}},
		prefix + "4": {queue.Deliver, "/track/ce", map[string]string{"event": "screen", "cv_id": "u-1"}},
		prefix + "5": {queue.Filtered, "", nil},
		prefix + "6": {queue.Filtered, "", nil},
		prefix + "7": {queue.Deliver, "/track/ce", map[string]string{"event": "signup", "ce_plan": "pro"}},
		prefix + "8": {queue.Deliver, "/track/ce", map[string]string{"event": "signup", "cookie": "a-2"}},
	}
	es := st.mapped()
	var got []string
	for _, e := range es {
		got = append(got, e.MessageID)
		w, ok := wants[e.MessageID]
		if !ok {
			t.Errorf("unexpected entry %s", e.MessageID)
			continue
		}
		if e.Outcome != w.outcome || e.Source != "website" {
			t.Errorf("%s: %s (%s) from %s, want %s", e.MessageID, e.Outcome, e.Reason, e.Source, w.outcome)
			continue
		}
		if w.endpoint != "" && !strings.Contains(e.Requests[0].URL, w.endpoint+"?") {
			t.Errorf("%s: %s", e.MessageID, e.Requests[0].URL)
		}
		for k, v := range w.params {
			if got := param(t, e, k); got != v {
				t.Errorf("%s: %s = %q, want %q", e.MessageID, k, got, v)
			}
		}
		// The wrapper's context (library) was pushed into the event.
		if !strings.Contains(string(e.Event), `"library"`) || !strings.Contains(string(e.Event), `analytics-go`) {
			t.Errorf("%s: the batch context was not merged: %s", e.MessageID, e.Event)
		}
	}
	sort.Strings(got)
	if len(got) != len(wants) {
		t.Errorf("stored %v, want the %d events sent", got, len(wants))
	}
}

type testLogger struct{ t *testing.T }

func (l testLogger) Logf(format string, args ...any)   { l.t.Logf(format, args...) }
func (l testLogger) Errorf(format string, args ...any) { l.t.Logf("error: "+format, args...) }
