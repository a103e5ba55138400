//go:build !linux

package disk

import (
	"io/fs"
	"os"
)

// diskSpace cannot tell the free space on this system: the queue then notices a full disk
// only when a write fails with it.
func diskSpace(string) (free, size int64, ok bool) { return 0, 0, false }

// allocated returns a file's size (this system's block counts are not read).
func allocated(fi fs.FileInfo) int64 { return fi.Size() }

// allocate writes n zero bytes to f.
func allocate(f *os.File, n int64) error { return writeZeros(f, n) }

// lockFile does nothing on this system: pebble's own lock still keeps a second process out,
// without naming it.
func lockFile(*os.File) error { return nil }
