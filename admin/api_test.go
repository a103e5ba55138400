package admin

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/disk"
)

// adminServer serves the API over a disk queue holding n dead letters.
func adminServer(t *testing.T, token string, n int) (*httptest.Server, queue.Queue) {
	t.Helper()
	q, err := disk.Open(t.TempDir(), disk.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	var entries []queue.Entry
	for i := range n {
		entries = append(entries, queue.Entry{Source: "web", MessageID: "m" + string(rune('a'+i)), Visitor: "v", Received: time.Now(),
			Event: []byte(`{"type":"track"}`), Outcome: queue.Rejected, Reason: "missing_id: no id"})
	}
	if n > 0 {
		if _, err := q.Append(context.Background(), entries); err != nil {
			t.Fatal(err)
		}
	}
	e := echo.New()
	(&API{Queue: q, Token: token}).Mount(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv, q
}

// TestClientRoundTrip: the client reads what the API serves, page by page, and replays.
func TestClientRoundTrip(t *testing.T) {
	srv, q := adminServer(t, "", 3)
	cl := NewClient(srv.URL, "", nil)
	ctx := context.Background()
	c, err := cl.Counters(ctx)
	if err != nil || c.Received != 3 || c.DeadLettered != 3 || !c.Reconciles {
		t.Fatalf("counters %+v, %v", c, err)
	}
	page, err := cl.DeadLetters(ctx, 0, 2)
	if err != nil || len(page.DeadLetters) != 2 || page.Next != page.DeadLetters[1].ID {
		t.Fatalf("first page %+v, %v", page, err)
	}
	if page.DeadLetters[0].Event != nil {
		t.Errorf("a list carries the event: %s", page.DeadLetters[0].Event)
	}
	rest, err := cl.DeadLetters(ctx, page.Next, 2)
	if err != nil || len(rest.DeadLetters) != 1 || rest.Next != 0 {
		t.Fatalf("second page %+v, %v", rest, err)
	}
	d, err := cl.DeadLetter(ctx, rest.DeadLetters[0].ID)
	if err != nil || d.Reason != "missing_id: no id" || string(d.Event) != `{"type":"track"}` || d.Source != "web" {
		t.Fatalf("one letter %+v, %v", d, err)
	}
	res, err := cl.Replay(ctx, ReplayRequest{All: true})
	if err != nil || res.Replayed != 3 || res.Asked != 3 {
		t.Fatalf("replay %+v, %v", res, err)
	}
	if n := q.Counters(); n.Queued != 3 || n.DeadLettered != 0 || n.Replayed != 3 {
		t.Errorf("after the replay: %+v", n)
	}
	if _, err := cl.DeadLetter(ctx, d.ID); err == nil || !strings.Contains(err.Error(), "404 not_found") {
		t.Errorf("a replayed letter: %v; want 404 not_found", err)
	}
}

// TestGuard: with a token only the right bearer passes; without one only loopback callers
// that name a loopback host (not a rebound domain); and never a state-changing call that a
// browser says came from another site.
func TestGuard(t *testing.T) {
	tests := []struct {
		name, token, auth, remote, host string
		method, path, body              string
		headers                         map[string]string
		want                            int
	}{
		{name: "token, right bearer", token: "s3cret", auth: "Bearer s3cret", remote: "203.0.113.7:5000", host: "relay.internal:9090", want: 200},
		{name: "token, wrong bearer", token: "s3cret", auth: "Bearer nope", want: 401},
		{name: "token, none sent", token: "s3cret", want: 401},
		{name: "token, the sign-in cookie", token: "s3cret", remote: "203.0.113.7:5000", headers: map[string]string{"Cookie": TokenCookie + "=s3cret"}, want: 200},
		{name: "no token, loopback", want: 200},
		{name: "no token, IPv6 loopback", remote: "[::1]:5000", host: "[::1]:9090", want: 200},
		{name: "no token, localhost", host: "localhost:9090", want: 200},
		{name: "no token, remote", remote: "203.0.113.7:5000", want: 403},
		{name: "no token, a rebound domain", host: "attacker.example:9090", want: 403},
		{name: "replay from the debugger page", method: "POST", path: "/admin/dlq/replay", body: `{"ids":[1]}`,
			headers: map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:9090"}, want: 200},
		{name: "replay by the CLI", method: "POST", path: "/admin/dlq/replay", body: `{"ids":[1]}`,
			headers: map[string]string{"Content-Type": "application/json"}, want: 200},
		{name: "replay from another site's page", method: "POST", path: "/admin/dlq/replay", body: `{"ids":[1]}`,
			headers: map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site", "Origin": "https://attacker.example"}, want: 403},
		{name: "replay from an old browser on another site", method: "POST", path: "/admin/dlq/replay", body: `{"ids":[1]}`,
			headers: map[string]string{"Content-Type": "application/json", "Origin": "https://attacker.example"}, want: 403},
		{name: "replay from another site, even with the cookie", token: "s3cret", method: "POST", path: "/admin/dlq/replay", body: `{"ids":[1]}`,
			headers: map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site", "Cookie": TokenCookie + "=s3cret"}, want: 403},
		{name: "replay as a form", method: "POST", path: "/admin/dlq/replay", body: `ids=1`,
			headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, want: 415},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := disk.Open(t.TempDir(), disk.Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			e := echo.New()
			(&API{Queue: q, Token: tt.token}).Mount(e)
			method, path := cmp.Or(tt.method, "GET"), cmp.Or(tt.path, "/admin/counters")
			req := httptest.NewRequest(method, path, strings.NewReader(tt.body))
			req.RemoteAddr, req.Host = cmp.Or(tt.remote, "127.0.0.1:5000"), cmp.Or(tt.host, "127.0.0.1:9090")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
		})
	}
}

// TestLoopbackName: the Host names the loopback-only rule accepts.
func TestLoopbackName(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:9090": true, "127.0.0.1": true, "127.8.9.10:1": true, "[::1]:9090": true, "::1": true,
		"localhost": true, "LOCALHOST:9090": true, "app.localhost:9090": true, "localhost.": true,
		"attacker.example:9090": false, "10.0.0.1:9090": false, "[2001:db8::1]:9090": false, "localhost.attacker.example": false, "": false,
	} {
		if got := LoopbackName(host); got != want {
			t.Errorf("LoopbackName(%q) = %v, want %v", host, got, want)
		}
	}
}

// TestBadRequests: each malformed call gets a 400 with the API's error shape.
func TestBadRequests(t *testing.T) {
	srv, _ := adminServer(t, "", 0)
	for _, c := range []struct{ method, path, body, want string }{
		{"GET", "/admin/dlq?after=x", "", "after must be"},
		{"GET", "/admin/dlq?limit=0", "", "limit must be"},
		{"GET", "/admin/dlq/abc", "", "whole number"},
		{"POST", "/admin/dlq/replay", "{", "must be JSON"},
		{"POST", "/admin/dlq/replay", `{"ids":[1],"all":true}`, `give either`},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		buf := make([]byte, 512)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(b.String(), `"code":"bad_request"`) || !strings.Contains(b.String(), c.want) {
			t.Errorf("%s %s: %d %s; want 400 saying %q", c.method, c.path, resp.StatusCode, b.String(), c.want)
		}
	}
}

// TestReplayLeavesCorruptRecords: a dead letter holding a corrupt queue record (no source, its
// reason marked queue.ReasonCorruptRecord) is left in place by a replay, whose answer says why,
// instead of going back to delivery to fail as an event of source "".
func TestReplayLeavesCorruptRecords(t *testing.T) {
	srv, q := adminServer(t, "", 1)
	corrupt := queue.Entry{Event: []byte{0x71, 0x01, 0xff}, Visitor: "v", Outcome: queue.Rejected,
		Reason: queue.ReasonCorruptRecord + ": corrupt record (payload segment 0000000000000001.seg is missing)"}
	if _, err := q.Append(context.Background(), []queue.Entry{corrupt}); err != nil {
		t.Fatal(err)
	}
	res, err := NewClient(srv.URL, "", nil).Replay(context.Background(), ReplayRequest{All: true})
	if err != nil || res.Replayed != 1 || res.Asked != 2 || res.Corrupt != 1 || !strings.Contains(res.Note, "corrupt queue records, not events") {
		t.Fatalf("replay %+v, %v; want the event replayed and the corrupt record left, with a note", res, err)
	}
	if n := q.Counters(); n.Queued != 1 || n.DeadLettered != 1 {
		t.Errorf("after the replay: %+v", n)
	}
}
