//go:build linux

package disk

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// diskSpace returns the bytes free for use (not counting the blocks reserved for root) and the
// size of the file system holding dir; ok is false when the file system cannot say.
func diskSpace(dir string) (free, size int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), int64(st.Blocks) * int64(st.Bsize), true
}

// allocated returns the bytes a file takes on disk: its blocks, which count the space pebble
// preallocates beyond a log file's end and leave out the holes of a sparse file.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// allocate gives f n bytes of blocks on disk, so that deleting it frees that much.
func allocate(f *os.File, n int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, n)
	if errors.Is(err, syscall.EOPNOTSUPP) || errors.Is(err, syscall.ENOSYS) {
		return writeZeros(f, n)
	}
	return err
}

// lockFile takes an exclusive lock on f without waiting; it fails with errLocked when another
// process (or another open of the same file) holds it.
func lockFile(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}
