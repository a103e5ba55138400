package importer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Progress of one object in the checkpoint.
type objectState struct {
	ID    string `json:"o"`
	Size  int64  `json:"s"`
	Lines int64  `json:"n"` // lines acknowledged from the start of the object
	Done  bool   `json:"d,omitempty"`
}

// Checkpoint is the import's own record of what the relay acknowledged: an append-only journal
// (one JSON line per step, synced before Advance returns), compacted when it is opened. A torn
// last line, from a process killed while it wrote, is ignored.
type Checkpoint struct {
	mu       sync.Mutex
	path     string
	f        *os.File
	state    map[string]objectState
	readOnly bool
}

// OpenCheckpoint reads the checkpoint at path (none yet: an empty one) and, unless readOnly,
// rewrites it compacted and keeps it open for Advance.
func OpenCheckpoint(path string, readOnly bool) (*Checkpoint, error) {
	c := &Checkpoint{path: path, state: map[string]objectState{}, readOnly: readOnly}
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("reading the checkpoint: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var s objectState
		if json.Unmarshal(sc.Bytes(), &s) != nil || s.ID == "" {
			continue // a line torn by a kill
		}
		c.state[s.ID] = s
	}
	if readOnly {
		return c, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating the checkpoint's folder: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return nil, fmt.Errorf("writing the checkpoint: %w", err)
	}
	ids := make([]string, 0, len(c.state))
	for id := range c.state {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	w := bufio.NewWriter(f)
	for _, id := range ids {
		b, _ := json.Marshal(c.state[id])
		w.Write(append(b, '\n'))
	}
	if err = w.Flush(); err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("writing the checkpoint: %w", err)
	}
	f.Close()
	if err := os.Rename(tmp, path); err != nil {
		return nil, fmt.Errorf("writing the checkpoint: %w", err)
	}
	if c.f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err != nil {
		return nil, fmt.Errorf("opening the checkpoint: %w", err)
	}
	return c, nil
}

// Path returns where the checkpoint is kept.
func (c *Checkpoint) Path() string { return c.path }

// get returns what is recorded of an object.
func (c *Checkpoint) get(id string) objectState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state[id]
}

// advance records objects' progress and syncs it to disk (nothing in a read-only checkpoint).
func (c *Checkpoint) advance(states []objectState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf []byte
	for _, s := range states {
		c.state[s.ID] = s
		b, _ := json.Marshal(s)
		buf = append(append(buf, b...), '\n')
	}
	if c.readOnly || len(buf) == 0 {
		return nil
	}
	if _, err := c.f.Write(buf); err != nil {
		return fmt.Errorf("writing the checkpoint: %w", err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("syncing the checkpoint: %w", err)
	}
	return nil
}

// Close closes the checkpoint file.
func (c *Checkpoint) Close() error {
	if c.f == nil {
		return nil
	}
	return c.f.Close()
}
