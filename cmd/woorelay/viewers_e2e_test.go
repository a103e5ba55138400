package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/woorelay/woorelay/debugger"
)

// rssMB is the resident memory of a process in MB, read from /proc; -1 where there is none.
func rssMB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return kb / 1024
		}
	}
	return -1
}

// openViewer opens the debugger's stream with a tiny receive buffer and reads only the status
// line, as a tab that stopped reading would; it returns the status and the connection.
func openViewer(t *testing.T, adminURL string, headers ...string) (int, net.Conn) {
	return openStalled(t, adminURL, "/debugger/api/stream", headers...)
}

// openStalled GETs path on the admin listener as openViewer does.
func openStalled(t *testing.T, adminURL, path string, headers ...string) (int, net.Conn) {
	t.Helper()
	host := strings.TrimPrefix(adminURL, "http://")
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2048) })
	}}
	conn, err := d.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, host, strings.Join(headers, ""))
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReaderSize(conn, 16).ReadString('\n')
	if err != nil {
		t.Fatalf("the stream answered %q, %v", line, err)
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("the stream answered %q", line)
	}
	status, _ := strconv.Atoi(f[1])
	return status, conn
}

// ingestBig posts n track events of about 4 KB each, in batches of 50, and fails unless each
// batch is answered 200.
func ingestBig(t *testing.T, url, tag string, n int) {
	t.Helper()
	pad := strings.Repeat("x", 4000)
	for i := 0; i < n; i += 50 {
		var b bytes.Buffer
		b.WriteString(`{"batch":[`)
		for j := i; j < min(i+50, n); j++ {
			if j > i {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `{"type":"track","event":"Big","userId":"u%d","messageId":"%s-%d","properties":{"mid":"%s-%d","pad":%q}}`, j%17, tag, j, tag, j, pad)
		}
		b.WriteString(`]}`)
		req, _ := http.NewRequest("POST", url+"/v1/batch", &b)
		req.SetBasicAuth("any-key", "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("ingest answered %d", resp.StatusCode)
		}
	}
}

// TestDebuggerViewersAreBounded: on a real serve process whose debugger ring holds 1,000 events
// of ~10 KB each, twice as many stream viewers as the limit connect and never read, and twelve
// lists of the ring are asked for and never read. The ones past the limits are answered 503
// too_many_viewers with Retry-After; the others hold a bounded page each (or a ring, for the
// few lists), so the relay's memory stays bounded, and ingest goes on acknowledging (and
// delivering) every event. Cross-site requests for the stream are refused. When the viewers go
// away the relay lets them go by itself, and a new viewer gets a recent page, not the ring, and
// then the live changes.
func TestDebuggerViewersAreBounded(t *testing.T) {
	x := newE2E(t, "--debugger-follow", "0")
	p := x.start()
	ingestBig(t, p.url, "a", 1000)
	waitFor(t, time.Minute, "the first events delivered", func() bool { return x.counters(p).Delivered == 1000 })
	before := rssMB(p.cmd.Process.Pid)

	// Refused across sites, before anything is streamed.
	for _, h := range []string{"Sec-Fetch-Site: cross-site\r\n", "Sec-Fetch-Site: same-site\r\n", "Origin: http://evil.example\r\n"} {
		status, conn := openViewer(t, p.admin, h)
		conn.Close()
		if status != http.StatusForbidden {
			t.Errorf("a stream request with %q was answered %d, want 403", strings.TrimSpace(h), status)
		}
	}

	var conns []net.Conn
	refused := 0
	for range 2 * debugger.DefaultMaxViewers {
		status, conn := openViewer(t, p.admin)
		conns = append(conns, conn)
		switch status {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("a viewer was answered %d", status)
		}
	}
	if refused < debugger.DefaultMaxViewers {
		t.Errorf("%d of %d viewers were refused, want at least %d (the limit is %d)", refused, len(conns), debugger.DefaultMaxViewers, debugger.DefaultMaxViewers)
	}
	// Lists of the whole ring that are never read: a few at a time, the others refused.
	listRefused := 0
	for range 12 {
		status, conn := openStalled(t, p.admin, "/debugger/api/events")
		conns = append(conns, conn)
		if status == http.StatusServiceUnavailable {
			listRefused++
		}
	}
	if listRefused < 9 {
		t.Errorf("%d of 12 unread lists of the ring were refused, want at least 9", listRefused)
	}
	if h := readDebuggerHealth(t, p); h.Viewers > debugger.DefaultMaxViewers {
		t.Errorf("%d viewers on the stream, over the limit of %d", h.Viewers, debugger.DefaultMaxViewers)
	}
	ingestBig(t, p.url, "b", 500)
	during := rssMB(p.cmd.Process.Pid)
	if before > 0 && during-before > 200 {
		t.Errorf("the relay grew from %d MB to %d MB with stalled viewers; their bytes are bounded (%d MB in all)", before, during, debugger.DefaultStreamBytes>>20)
	}
	t.Logf("resident memory: %d MB before the viewers, %d MB with %d stalled ones", before, during, len(conns)-refused-listRefused)

	for _, c := range conns {
		c.Close()
	}
	waitFor(t, time.Minute, "the viewers let go", func() bool { return readDebuggerHealth(t, p).Viewers == 0 })

	// A new viewer reads a recent page, then "ready", then a live change.
	resp, err := http.Get(p.admin + "/debugger/api/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("a new viewer after the others left was answered %d", resp.StatusCode)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	page := 0
	for sc.Scan() && sc.Text() != "event: ready" {
		if sc.Text() == "event: event" {
			page++
		}
	}
	if page == 0 || page > debugger.DefaultStreamPage {
		t.Errorf("a new viewer was sent %d events before ready; want a page of at most %d, not the ring of 1000", page, debugger.DefaultStreamPage)
	}
	live := make(chan bool, 1)
	go func() {
		for sc.Scan() {
			if strings.Contains(sc.Text(), `"m-live"`) {
				live <- true
				return
			}
		}
		live <- false
	}()
	if s := sendOne(t, p.url, "live-visitor", "m-live"); s != 200 {
		t.Fatalf("ingest answered %d", s)
	}
	select {
	case ok := <-live:
		if !ok {
			t.Error("the stream ended before the live change")
		}
	case <-time.After(30 * time.Second):
		t.Error("the new viewer did not see the live change within 30 s")
	}
	c := x.drained(p)
	if c.Delivered != 1501 || c.DeadLettered != 0 {
		t.Errorf("counters %+v; want all 1501 events delivered", c)
	}
}
