package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/woorelay/woorelay/bench"
)

// This file runs woorelay as a real process: the end-to-end tests build the binary once, start
// `woorelay serve` against an emulator, kill it, restart it and read its admin API.

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// woorelayBinary builds the command once per test run and returns its path.
func woorelayBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "woorelay-e2e-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "woorelay")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test reading.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running woorelay process.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	admin  string // the admin listener's base URL
	output *syncBuffer
	done   chan struct{}
}

// startWoorelay starts `woorelay <args>` listening on addr and waits until /readyz answers 200;
// the proc's admin URL is that of the --admin-listen argument.
func startWoorelay(t *testing.T, addr string, env []string, args ...string) *proc {
	t.Helper()
	p := launchWoorelay(t, addr, env, args...)
	if err := bench.WaitReady(p.url, p.done, 30*time.Second); err != nil {
		t.Fatalf("woorelay %s: %v:\n%s", strings.Join(args, " "), err, p.output.String())
	}
	return p
}

// launchWoorelay starts `woorelay <args>` listening on addr without waiting for it.
func launchWoorelay(t *testing.T, addr string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(woorelayBinary(t), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, cmd: cmd, url: "http://" + addr, output: out, done: make(chan struct{})}
	for i, a := range args[:len(args)-1] {
		if a == "--admin-listen" {
			p.admin = "http://" + args[i+1]
		}
	}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

// kill sends SIGKILL and waits for the process to end.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits up to a minute for a clean exit; it returns the exit error.
func (p *proc) term() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if !p.cmd.ProcessState.Success() {
			return fmt.Errorf("exit %v:\n%s", p.cmd.ProcessState, p.output.String())
		}
		return nil
	case <-time.After(time.Minute):
		p.kill()
		return fmt.Errorf("no exit within a minute of SIGTERM:\n%s", p.output.String())
	}
}

// waitFor polls cond every 20 ms until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
