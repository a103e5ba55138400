package relay

import (
	"errors"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/woorelay/woorelay/admin"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/server"
)

// Changing the configuration live: a reload reads the sources file again with the preset
// files and mapping folders it names (ReloadFromFiles), compiles and validates all of it, and
// swaps it in with Reload's guarantees, or refuses it with findings and keeps the running
// one. It is asked for by a signal (ReloadOnSignals: serve's SIGHUP), by POST /admin/reload,
// or by a change of one of the files (Watch: serve --watch). GET /admin/config shows the
// configuration in force, its version (the files' content hash) and the last attempt; the
// metric woorelay_config_reloads_total counts the attempts by outcome.

// liveConfig is what the relay knows about the configuration in force and its reloads.
type liveConfig struct {
	reloads *prometheus.CounterVec

	mu       sync.Mutex
	sources  *server.Config // in force
	ins      []input        // the files it was read from, as read
	version  string
	files    []admin.ConfigFile
	at       time.Time
	trigger  string
	last     *admin.ReloadResult
	counts   admin.ReloadCounts
	watching int
	changed  chan struct{} // receives (without blocking) when a reload swapped a configuration in
}

func newLiveConfig(sc *server.Config, reg prometheus.Registerer) *liveConfig {
	l := &liveConfig{changed: make(chan struct{}, 1), trigger: "start", at: time.Now()}
	l.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "woorelay_config_reloads_total",
		Help: "Configuration reload attempts by outcome: ok (swapped in) or error (refused; the running configuration stays)."}, []string{"outcome"})
	l.reloads.WithLabelValues(admin.ReloadOK)
	l.reloads.WithLabelValues(admin.ReloadError)
	reg.MustRegister(l.reloads)
	l.ins = inputs(sc)
	l.sources = sc
	l.version, l.files = version(l.ins)
	return l
}

// current is the configuration in force and the files it was read from.
func (l *liveConfig) current() (*server.Config, []input, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sources, l.ins, l.version
}

// record counts an attempt and, when it swapped sc in, makes sc the configuration in force.
func (l *liveConfig) record(trigger string, sc *server.Config, ins []input, err error) admin.ReloadResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	res := admin.ReloadResult{At: time.Now(), Trigger: trigger, Previous: l.version}
	if err == nil {
		l.sources, l.ins = sc, ins
		l.version, l.files = version(ins)
		l.at, l.trigger = res.At, trigger
		res.Outcome, res.Version = admin.ReloadOK, l.version
		res.Message = "configuration " + l.version + " is in force"
		if l.version == res.Previous {
			res.Message += " (the files had not changed)"
		}
		l.counts.OK++
		select {
		case l.changed <- struct{}{}:
		default:
		}
	} else {
		res.Outcome, res.Version = admin.ReloadError, l.version
		res.Findings = findingLines(err)
		res.Message = "the reload was refused; configuration " + l.version + " stays in force; fix the findings and reload again"
		l.counts.Error++
	}
	res.Seq = l.counts.OK + l.counts.Error
	l.reloads.WithLabelValues(res.Outcome).Inc()
	l.last = &res
	return res
}

// findingLines is an error of a reload as findings, one a line.
func findingLines(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// view is GET /admin/config's answer.
func (l *liveConfig) view() admin.ConfigView {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := l.sources
	v := admin.ConfigView{Version: l.version, LoadedAt: l.at, LoadedFrom: sc.File, Trigger: l.trigger, Files: l.files,
		PublicURL: sc.PublicURL, AllowedOrigins: sc.AllowedOrigins, Sources: []admin.SourceView{},
		Watching: l.watching > 0, Reloads: l.counts}
	if l.last != nil {
		last := *l.last
		v.LastReload = &last
	}
	for _, p := range sc.TrustedProxies {
		v.TrustedProxies = append(v.TrustedProxies, p.String())
	}
	root := ""
	if sc.File != "" {
		root = dirOf(sc.File)
	} else {
		v.Development = len(sc.Sources) == 1 && sc.Sources[0].AnyKey
	}
	for _, s := range sc.Sources {
		sv := admin.SourceView{Name: s.Name, WriteKey: "write_key", Preset: s.Preset, Settings: s.Settings, AllowedOrigins: s.AllowedOrigins}
		switch {
		case s.AnyKey:
			sv.WriteKey = "any"
		case s.WriteKeyEnv != "":
			sv.WriteKey = "$" + s.WriteKeyEnv
		}
		if !isBuiltin(s.Preset) {
			sv.Preset = relName(root, absPath(s.Preset))
		}
		for _, m := range s.Mappings {
			sv.Mappings = append(sv.Mappings, relName(root, absPath(m)))
		}
		v.Sources = append(v.Sources, sv)
	}
	return v
}

func dirOf(file string) string { return filepath.Dir(absPath(file)) }

// unchanged reports whether the last attempt took (or there was none) and the files still
// have the content the configuration in force was read from: a reload would change nothing.
func (l *liveConfig) unchanged() bool {
	l.mu.Lock()
	sc, ver, ok := l.sources, l.version, l.last == nil || l.last.Outcome == admin.ReloadOK
	l.mu.Unlock()
	if !ok {
		return false
	}
	now, _ := version(inputs(sc))
	return now == ver
}

// recordCall records a Reload called in Go (trigger "call").
func (r *Relay) recordCall(cfg Config, err error) {
	sc := cfg.withDefaults().sourcesConfig()
	r.logReload(r.live.record("call", sc, inputs(sc), err))
}

// ReloadFromFiles reads the sources file the relay was configured from again (Config.Sources
// .File), with the preset files and mapping folders it names, and swaps it in as Reload does,
// or refuses it and keeps the running configuration. trigger names what asked for it in
// GET /admin/config and the logs ("signal", "admin", "watch"). If a file changes while it is
// being read, the reload is done again, so the version shown is the content in force. In
// development mode (no sources file) there is nothing to read and the attempt is refused.
func (r *Relay) ReloadFromFiles(trigger string) admin.ReloadResult {
	r.filesMu.Lock()
	defer r.filesMu.Unlock()
	running, _, _ := r.live.current()
	if running.File == "" {
		err := mapping.Diagnostic{File: "--config", Code: "no_sources_file", Msg: "serve runs in development mode, without a sources file, so there is nothing to reload",
			Hint: "start serve with --config FILE to configure sources, then edit the file and reload"}
		res := r.live.record(trigger, nil, nil, err)
		r.logReload(res)
		return res
	}
	path := running.File
	before := inputs(running) // read now: if they still read the same after the swap, nothing changed under it
	for try := 1; ; try++ {
		sc, err := server.LoadConfig(path)
		if err != nil {
			var ds mapping.Diagnostics
			var d mapping.Diagnostic
			if !errors.As(err, &ds) && !errors.As(err, &d) {
				err = mapping.Diagnostic{File: path, Code: "unreadable", Msg: err.Error(), Hint: "check that the sources file exists and is readable"}
			}
			res := r.live.record(trigger, nil, nil, err)
			r.logReload(res)
			return res
		}
		next := r.runningConfig()
		next.Sources = sc
		err = r.swap(next)
		after := inputs(sc)
		va, _ := version(after)
		vb, _ := version(before)
		if va == vb || try == 3 {
			res := r.live.record(trigger, sc, after, err)
			r.logReload(res)
			return res
		}
		before = after // a file changed (or the set of files did) while it was read: again
	}
}

// runningConfig is a copy of the configuration in force.
func (r *Relay) runningConfig() Config {
	r.reloadMu.Lock()
	defer r.reloadMu.Unlock()
	return r.cfg
}

// logReload logs an attempt's outcome, a finding a line.
func (r *Relay) logReload(res admin.ReloadResult) {
	if res.Outcome == admin.ReloadOK {
		sc, _, _ := r.live.current()
		r.log.Info("configuration reloaded", "version", res.Version, "previous", res.Previous, "trigger", res.Trigger, "sources", len(sc.Sources))
		return
	}
	r.log.Error("configuration reload refused: the running configuration stays", "version", res.Version, "trigger", res.Trigger, "findings", len(res.Findings))
	for _, f := range res.Findings {
		r.log.Error("reload finding: " + f)
	}
}

// mountLive adds GET /admin/config and POST /admin/reload to the admin listener.
func (r *Relay) mountLive(e *echo.Echo) {
	e.GET("/admin/config", func(c echo.Context) error { return c.JSON(http.StatusOK, r.live.view()) }, r.api.Guard)
	e.POST("/admin/reload", func(c echo.Context) error {
		res := r.ReloadFromFiles("admin")
		if res.Outcome != admin.ReloadOK {
			return c.JSON(http.StatusUnprocessableEntity, res)
		}
		return c.JSON(http.StatusOK, res)
	}, r.api.Guard)
}

// ReloadOnSignals reloads from the files (ReloadFromFiles, trigger "signal") each time the
// process receives one of sigs (serve passes SIGHUP), from now until stop is called; stop
// waits for a reload under way, and from then on those signals are ignored rather than
// ending the process.
func (r *Relay) ReloadOnSignals(sigs ...os.Signal) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case s := <-ch:
				r.log.Info("reloading the configuration", "signal", s.String())
				r.ReloadFromFiles("signal")
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Ignore(sigs...)
			signal.Stop(ch)
			close(quit)
			<-done
		})
	}
}
