package relay

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultWatchDebounce is how long Watch waits after the last change before it reloads.
const DefaultWatchDebounce = 250 * time.Millisecond

// Watch reloads the configuration from its files (ReloadFromFiles, trigger "watch") when the
// sources file, a preset file it names or a file in one of its mapping folders changes, from
// now until stop is called. Changes are debounced: the reload runs once nothing has changed
// for debounce (0: DefaultWatchDebounce), so an editor's or a deployment's several writes
// make one reload. It watches the folders, not the files, so a file replaced by a rename (as
// editors and Kubernetes ConfigMaps write them) is seen, and it follows the configuration:
// after a reload that names other presets or mapping folders, those are watched. A change
// that leaves every file's content as the configuration in force was read (a touch, a
// rewrite with the same text) reloads nothing. A preset file or mapping folder that the
// configuration in force does not name is watched from the reload that names it; if that
// reload fails because the file is missing, create it and save the sources file again.
func (r *Relay) Watch(debounce time.Duration) (stop func(), err error) {
	if debounce <= 0 {
		debounce = DefaultWatchDebounce
	}
	if sc, _, _ := r.live.current(); sc.File == "" {
		return nil, errors.New("--watch needs a sources file (--config FILE): in development mode there are no files to watch")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	fw := &fileWatch{r: r, w: w, debounce: debounce, watched: map[string]bool{}, quit: make(chan struct{}), done: make(chan struct{})}
	fw.sync()
	r.live.mu.Lock()
	r.live.watching++
	r.live.mu.Unlock()
	go fw.run()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(fw.quit)
			<-fw.done
			w.Close()
			r.live.mu.Lock()
			r.live.watching--
			r.live.mu.Unlock()
		})
	}, nil
}

// fileWatch is one Watch's state.
type fileWatch struct {
	r        *Relay
	w        *fsnotify.Watcher
	debounce time.Duration
	quit     chan struct{}
	done     chan struct{}

	watched map[string]bool // folders
	files   map[string]bool // files whose change counts
	folders map[string]bool // mapping folders: every *.yaml in them counts, and the folder itself
}

// run receives the file events until quit.
func (fw *fileWatch) run() {
	defer close(fw.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-fw.quit:
			timer.Stop()
			return
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			if ev.Op == fsnotify.Chmod || !fw.relevant(ev.Name) {
				continue
			}
			if name := filepath.Clean(ev.Name); fw.folders[name] {
				// A mapping folder appeared or went: watch what is in it now.
				fw.w.Remove(name)
				delete(fw.watched, name)
				fw.sync()
			}
			timer.Reset(fw.debounce)
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			fw.r.log.Warn("watching the configuration files", "err", err)
		case <-timer.C:
			if fw.r.live.unchanged() {
				fw.r.log.Debug("configuration files touched, content unchanged: nothing to reload")
				continue
			}
			fw.r.ReloadFromFiles("watch")
			fw.sync()
		case <-fw.r.live.changed:
			fw.sync() // a reload by another trigger may name other files
		}
	}
}

// relevant reports whether a change of name may change the configuration.
func (fw *fileWatch) relevant(name string) bool {
	name = filepath.Clean(name)
	if fw.files[name] || fw.folders[name] {
		return true
	}
	if dir := filepath.Dir(name); fw.folders[dir] {
		base := filepath.Base(name)
		return (strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml")) && !strings.HasSuffix(base, ".test.yaml")
	}
	// Kubernetes swaps a mounted ConfigMap's files at once by renaming ..data.
	return filepath.Base(name) == "..data" && fw.watched[filepath.Dir(name)]
}

// sync watches the folders of the configuration in force: the sources file's, each preset
// file's, each mapping folder and its parent (to see it created again).
func (fw *fileWatch) sync() {
	sc, _, _ := fw.r.live.current()
	files, folders, dirs := map[string]bool{}, map[string]bool{}, map[string]bool{}
	addFile := func(p string) {
		p = absPath(p)
		files[p] = true
		dirs[filepath.Dir(p)] = true
	}
	addFile(sc.File)
	for _, s := range sc.Sources {
		if !isBuiltin(s.Preset) {
			addFile(s.Preset)
		}
		for _, m := range s.Mappings {
			m = absPath(m)
			folders[m] = true
			dirs[m], dirs[filepath.Dir(m)] = true, true
		}
	}
	for d := range fw.watched {
		if !dirs[d] {
			fw.w.Remove(d)
			delete(fw.watched, d)
		}
	}
	for d := range dirs {
		if fw.watched[d] {
			continue
		}
		if err := fw.w.Add(d); err != nil {
			fw.r.log.Warn("cannot watch a configuration folder; changes in it need a reload (SIGHUP or POST /admin/reload)", "folder", d, "err", err)
			continue
		}
		fw.watched[d] = true
	}
	fw.files, fw.folders = files, folders
}
