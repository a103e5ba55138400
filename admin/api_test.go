package admin

import (
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

// TestGuard: with a token only the right bearer passes; without one only loopback callers.
func TestGuard(t *testing.T) {
	tests := []struct {
		name, token, auth, remote string
		want                      int
	}{
		{"token, right bearer", "s3cret", "Bearer s3cret", "203.0.113.7:5000", 200},
		{"token, wrong bearer", "s3cret", "Bearer nope", "127.0.0.1:5000", 401},
		{"token, none sent", "s3cret", "", "127.0.0.1:5000", 401},
		{"no token, loopback", "", "", "127.0.0.1:5000", 200},
		{"no token, IPv6 loopback", "", "", "[::1]:5000", 200},
		{"no token, remote", "", "", "203.0.113.7:5000", 403},
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
			req := httptest.NewRequest("GET", "/admin/counters", nil)
			req.RemoteAddr = tt.remote
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
		})
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
