package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestEmulateCommand(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	saved := emulateContext
	emulateContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	defer func() { emulateContext = saved }()

	outR, outW := io.Pipe()
	var stderr strings.Builder
	code := make(chan int, 1)
	go func() {
		code <- cmdEmulate([]string{"--listen", "127.0.0.1:0", "--projects", "p.com"}, outW, &stderr)
		outW.Close()
	}()
	lines := bufio.NewScanner(outR)
	if !lines.Scan() {
		t.Fatalf("no output; stderr %q", stderr.String())
	}
	first := lines.Text()
	const prefix = "woorelay emulate: Woopra emulator listening on "
	if !strings.HasPrefix(first, prefix) {
		t.Fatalf("first line %q", first)
	}
	url, _, _ := strings.Cut(strings.TrimPrefix(first, prefix), " ")

	for _, c := range []struct {
		path, want string
	}{
		{"/track/ce/?project=p.com&cookie=c1&event=e&response=json", `{"success":1}`},
		{"/track/ce?project=other.com&cookie=c1&event=e", "/*\nHost other.com not registered!\n*/"},
	} {
		resp, err := http.Get(url + c.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != c.want {
			t.Errorf("%s: %d %q, want %q", c.path, resp.StatusCode, body, c.want)
		}
	}
	resp, err := http.Get(url + "/emulator/requests")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(body), "\n"); n != 2 || !strings.Contains(string(body), `"outcome":"unregistered"`) {
		t.Errorf("requests: %s", body)
	}

	cancel() // as SIGINT would
	rest, _ := io.ReadAll(outR)
	if c := <-code; c != 0 {
		t.Errorf("exit %d, stderr %q", c, stderr.String())
	}
	if !strings.Contains(string(rest), "stopped after 2 tracking requests") {
		t.Errorf("final output %q", rest)
	}
}

func TestEmulateCommandErrors(t *testing.T) {
	t.Setenv("WOORELAY_LISTEN", "256.0.0.1:1") // the default when --listen is absent
	var stdout, stderr strings.Builder
	if c := cmdEmulate(nil, &stdout, &stderr); c != 1 || !strings.Contains(stderr.String(), "256.0.0.1:1") {
		t.Errorf("bad WOORELAY_LISTEN: exit %d, stderr %q", c, stderr.String())
	}
	stderr.Reset()
	if c := cmdEmulate([]string{"extra"}, &stdout, &stderr); c != 2 || !strings.Contains(stderr.String(), "unexpected argument") {
		t.Errorf("extra argument: exit %d, stderr %q", c, stderr.String())
	}
	stderr.Reset()
	if c := cmdEmulate([]string{"--nope"}, &stdout, &stderr); c != 2 {
		t.Errorf("unknown flag: exit %d", c)
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q", stdout.String())
	}
}
