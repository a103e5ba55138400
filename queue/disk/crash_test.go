package disk

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/woorelay/woorelay/queue"
)

const (
	helperDirEnv  = "WOORELAY_QUEUE_HELPER_DIR"
	helperRunEnv  = "WOORELAY_QUEUE_HELPER_RUN"
	helperDupsEnv = "WOORELAY_QUEUE_HELPER_DUPS"
)

// TestHelperProcess is the child of TestCrashKill9, not a test of its own: it appends in a loop
// from several goroutines and prints "ack <id>" for every entry of every acknowledged Append,
// while a consumer delivers (Done) or dead-letters (Dead) items, printing "done <id>" just
// before each Done (so a reported id may or may not be removed) and "dead <id>" after each
// Dead. The parent kills it with SIGKILL.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashKill9")
	}
	run := os.Getenv(helperRunEnv)
	q, err := Open(dir, Options{Logger: quietLogger})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(3)
	}
	var out sync.Mutex
	say := func(lines []string) {
		out.Lock()
		defer out.Unlock()
		// One write per call: a line cut short by the kill has no newline and is ignored.
		_, _ = os.Stdout.WriteString(strings.Join(lines, ""))
	}
	// Ids acknowledged by earlier runs come back first: they must all be duplicates.
	if dups := os.Getenv(helperDupsEnv); dups != "" {
		var batch []queue.Entry
		for _, id := range strings.Split(dups, ",") {
			batch = append(batch, entry("web", id, "dup", queue.Deliver, 300))
		}
		res, err := q.Append(context.Background(), batch)
		if err != nil {
			fmt.Fprintln(os.Stderr, "append dups:", err)
			os.Exit(3)
		}
		say([]string{fmt.Sprintf("dups %d %d\n", len(batch), res.Duplicates)})
	}
	go func() { // consumer
		after := uint64(0)
		for {
			items, err := q.Scan(after, 50)
			if err != nil {
				fmt.Fprintln(os.Stderr, "scan:", err)
				os.Exit(3)
			}
			if len(items) == 0 {
				<-q.Appended()
				continue
			}
			for _, it := range items {
				after = it.Seq
				if it.Seq%7 == 0 {
					if err := q.Dead(it.Seq, queue.Failure{Reason: "woopra answered 400 Bad Request", Status: 400}); err != nil {
						fmt.Fprintln(os.Stderr, "dead:", err)
						os.Exit(3)
					}
					say([]string{"dead " + it.Entry.MessageID + "\n"})
				} else if it.Seq%3 == 0 {
					// Said before Done: a kill between Done's write and a report after it would
					// leave a delivered id that looks lost.
					say([]string{"done " + it.Entry.MessageID + "\n"})
					if err := q.Done(it.Seq); err != nil {
						fmt.Fprintln(os.Stderr, "done:", err)
						os.Exit(3)
					}
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				batch := make([]queue.Entry, 1+i%5)
				lines := make([]string, len(batch))
				for j := range batch {
					id := fmt.Sprintf("%s-g%d-%d-%d", run, g, i, j)
					o := queue.Deliver
					switch (i + j) % 11 {
					case 3:
						o = queue.Filtered
					case 7:
						o = queue.Rejected
					}
					batch[j] = entry("web", id, fmt.Sprintf("visitor-%d", (i+j)%13), o, 1200)
					lines[j] = "ack " + id + "\n"
				}
				if _, err := q.Append(context.Background(), batch); err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				say(lines)
			}
		})
	}
	wg.Wait()
}

// TestCrashKill9 kills a child process that appends and delivers under load with SIGKILL, five
// times over the same store, then checks that every acknowledged entry is there exactly once
// (pending, or a dead letter, unless the child reported delivering it), that no id is stored
// twice, that ids acknowledged before a crash are duplicates after it, and that the counters
// reconcile with what the store holds.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary")
	}
	dir := t.TempDir()
	type fate struct{ acked, done, dead bool }
	ids := map[string]*fate{}
	get := func(id string) *fate {
		f := ids[id]
		if f == nil {
			f = &fate{}
			ids[id] = f
		}
		return f
	}
	var prevAcked []string
	for run := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		env := []string{helperDirEnv + "=" + dir, fmt.Sprintf("%s=r%d", helperRunEnv, run)}
		if len(prevAcked) > 0 {
			env = append(env, helperDupsEnv+"="+strings.Join(prevAcked[max(0, len(prevAcked)-20):], ","))
		}
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acks, killed := 0, false
		prevAcked = prevAcked[:0]
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			kind, id, _ := strings.Cut(sc.Text(), " ")
			switch kind {
			case "ack":
				get(id).acked = true
				prevAcked = append(prevAcked, id)
				acks++
			case "done":
				get(id).done = true
			case "dead":
				get(id).dead = true
			case "dups":
				var n, d int
				fmt.Sscanf(id, "%d %d", &n, &d)
				if n != d {
					t.Errorf("run %d: %d of %d ids acknowledged before the crash were duplicates", run, d, n)
				}
			}
			if acks >= 300 && !killed {
				if err := cmd.Process.Kill(); err != nil { // SIGKILL
					t.Fatal(err)
				}
				killed = true
			}
		}
		err = cmd.Wait()
		if !killed {
			t.Fatalf("run %d: child exited before it was killed: %v\n%s", run, err, stderr.String())
		}
		if stderr.Len() > 0 && strings.Contains(stderr.String(), ":") && !strings.Contains(stderr.String(), "signal: killed") {
			t.Logf("run %d child stderr: %s", run, stderr.String())
		}
		t.Logf("run %d: %d acknowledged before the kill", run, acks)
	}

	q := open(t, dir, Options{})
	c := checkStore(t, q)
	stored := map[string]int{}
	for _, it := range scanAll(t, q) {
		stored[it.Entry.MessageID]++
	}
	for _, dl := range deadAll(t, q) {
		stored[dl.Entry.MessageID]++
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("%s is stored %d times", id, n)
		}
	}
	acked := 0
	for id, f := range ids {
		if !f.acked {
			continue
		}
		acked++
		if stored[id] == 0 && !f.done && !isFiltered(id) {
			t.Errorf("%s was acknowledged, never reported delivered, and is not in the store", id)
		}
	}
	if c.Received < int64(acked) {
		t.Errorf("Received %d < %d acknowledged", c.Received, acked)
	}
	t.Logf("%d acknowledged; counters %+v", acked, c)
}

// isFiltered tells, from the helper's id scheme (run-g-i-j), whether the entry was Filtered.
func isFiltered(id string) bool {
	var run string
	var g, i, j int
	if _, err := fmt.Sscanf(strings.ReplaceAll(id, "-", " "), "%s g%d %d %d", &run, &g, &i, &j); err != nil {
		return false
	}
	return (i+j)%11 == 3
}
