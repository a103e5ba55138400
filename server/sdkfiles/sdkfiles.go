// Package sdkfiles holds the browser SDK files the relay serves, so a site loads Segment's
// analytics.js and RudderStack's analytics-js from its own relay rather than from a CDN that
// ad blockers drop: @segment/analytics-next's standalone build and its chunks, and
// @rudderstack/analytics-js's bundled builds (every plugin included) run as the CDN's
// rsa.min.js. They are taken from pinned npm package versions (both MIT; the licences are in
// files/) by `go generate ./server/sdkfiles`, which checks each tarball against its pinned
// sha512 and writes files/SHA256SUMS of what is served. The files are embedded
// gzip-compressed.
package sdkfiles

//go:generate go run ./update

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"embed"
	"io"
	"io/fs"
	"strings"
	"sync"
)

// The pinned npm package versions (server/sdkfiles/update pins their tarballs' checksums).
const (
	SegmentVersion     = "1.84.3" // @segment/analytics-next
	RudderStackVersion = "3.34.1" // @rudderstack/analytics-js
)

//go:embed files
var files embed.FS

// File is one served file.
type File struct {
	Name   string // its name under files/, without .gz: segment/analytics.min.js
	Gzip   []byte // the content, gzip-compressed
	SHA256 string // hex SHA-256 of the uncompressed content (files/SHA256SUMS)
}

// Content returns the uncompressed content.
func (f *File) Content() ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(f.Gzip))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

var (
	once  sync.Once
	index map[string]*File
)

func load() {
	index = map[string]*File{}
	sums, err := files.ReadFile("files/SHA256SUMS")
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			continue
		}
		gz, err := fs.ReadFile(files, "files/"+name+".gz")
		if err != nil {
			continue
		}
		index[name] = &File{Name: name, Gzip: gz, SHA256: sum}
	}
}

// Lookup returns the served file of that name (segment/analytics.min.js,
// segment/bundles/NAME.js, rudderstack/modern/rsa.min.js, rudderstack/legacy/rsa.min.js).
func Lookup(name string) (*File, bool) {
	once.Do(load)
	f, ok := index[name]
	return f, ok
}

// Names lists the served files.
func Names() []string {
	once.Do(load)
	out := make([]string, 0, len(index))
	for n := range index {
		out = append(out, n)
	}
	return out
}
