package queuetest

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
)

// Tmpfs mounts a tmpfs of size bytes on a new temporary directory and returns it, unmounted
// when the test ends: a file system the test can fill without filling the machine's disk. The
// test is skipped where one cannot be mounted (not Linux, not root, a container without the
// right): a full disk cannot be shown there.
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	if runtime.GOOS != "linux" || os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root on Linux: a full disk cannot be shown here")
	}
	dir, err := os.MkdirTemp("", "woorelay-tmpfs-")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount a tmpfs (%v: %s): a full disk cannot be shown here", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
		os.Remove(dir)
	})
	return dir
}

// Fill writes a file of zeros at path until the file system has no room left, and returns
// how many bytes it wrote; removing the file frees them.
func Fill(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			return n
		}
	}
}
