package importer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/gcsblob" // gs:// URLs, credentials from Google's Application Default Credentials
	_ "gocloud.dev/blob/s3blob"  // s3:// URLs, credentials from the AWS SDK's usual chain
)

// Location is one place events are read from: a bucket (or a local folder) and a prefix in it.
type Location struct {
	// Name is the location as given (a path or a URL), which the checkpoint records.
	Name   string
	bucket *blob.Bucket
	prefix string
	exact  bool // the location names one object: list only it
}

// Object is one archive object to read.
type Object struct {
	Loc      *Location
	Key      string
	Size     int64
	Layout   Layout
	From, To time.Time // when its events were received, when the layout says; else zero
}

// ID identifies the object in the checkpoint.
func (o Object) ID() string { return o.Loc.Name + "|" + o.Key }

// Open opens a location: a local file or folder, a file:// URL, or an object-storage URL that
// gocloud.dev/blob knows (s3://bucket/prefix?region=...&endpoint=...&use_path_style=true,
// gs://bucket/prefix), with the provider's credentials from the environment. Close it after.
func Open(ctx context.Context, loc string) (*Location, error) {
	if !strings.Contains(loc, "://") || strings.HasPrefix(loc, "file://") {
		p := strings.TrimPrefix(loc, "file://")
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (give a file, a folder, or an s3:// or gs:// URL)", loc, err)
		}
		dir, key := p, ""
		if !st.IsDir() {
			dir, key = filepath.Dir(p), filepath.Base(p)
		}
		b, err := fileblob.OpenBucket(dir, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		return &Location{Name: loc, bucket: b, prefix: key, exact: key != ""}, nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	prefix := strings.TrimPrefix(u.Path, "/")
	u.Path, u.RawPath = "", ""
	b, err := blob.OpenBucket(ctx, u.String())
	if err != nil {
		return nil, fmt.Errorf("%s: %w (s3:// and gs:// URLs are known; credentials come from the provider's usual environment)", loc, err)
	}
	return &Location{Name: loc, bucket: b, prefix: prefix}, nil
}

// Close releases the location's bucket.
func (l *Location) Close() error { return l.bucket.Close() }

// List returns the location's objects.
func (l *Location) List(ctx context.Context) ([]Object, error) {
	var out []Object
	it := l.bucket.List(&blob.ListOptions{Prefix: l.prefix})
	for {
		o, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", l.Name, err)
		}
		if o.IsDir || (l.exact && o.Key != l.prefix) {
			continue
		}
		lay, from, to := Classify(o.Key)
		out = append(out, Object{Loc: l, Key: o.Key, Size: o.Size, Layout: lay, From: from, To: to})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no objects found (check the path or prefix)", l.Name)
	}
	return out, nil
}

// open returns a reader of the object's bytes as stored.
func (o Object) open(ctx context.Context) (io.ReadCloser, error) {
	r, err := o.Loc.bucket.NewReader(ctx, o.Key, nil)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", o.ID(), err)
	}
	return r, nil
}

// sortObjects orders objects by when their events were received, where the layout says, then
// by key, so that a visitor's history is sent in about the order it happened.
func sortObjects(objs []Object) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if !a.From.Equal(b.From) {
			return a.From.Before(b.From)
		}
		if a.Loc.Name != b.Loc.Name {
			return a.Loc.Name < b.Loc.Name
		}
		return a.Key < b.Key
	})
}
