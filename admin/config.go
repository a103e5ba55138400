package admin

import (
	"context"
	"net/http"
	"time"
)

// The configuration routes, served by the relay on the admin listener next to the API's own:
//
//	GET  /admin/config  the configuration in force, its version and the last reload (ConfigView)
//	POST /admin/reload  read the sources file, its presets and mapping folders again and swap
//	                    them in; 200 with a ReloadResult when it took, 422 with one (and its
//	                    findings) when it did not and the running configuration stays

// Reload outcomes, the values of ReloadResult.Outcome and of the outcome label of
// woorelay_config_reloads_total.
const (
	ReloadOK    = "ok"    // the new configuration is in force
	ReloadError = "error" // it was refused; the running configuration stays
)

// ConfigView is the answer of GET /admin/config: the configuration in force. Write keys are
// never shown, only where each comes from.
type ConfigView struct {
	// Version is the content hash of the files the configuration was read from
	// ("sha256:" and 12 hex digits); `woorelay config check` prints the same for the same files.
	Version string `json:"version"`
	// LoadedAt is when this version was swapped in.
	LoadedAt time.Time `json:"loaded_at"`
	// LoadedFrom is the sources file; empty in development mode.
	LoadedFrom string `json:"loaded_from"`
	// Trigger is what loaded it: start, signal, admin, watch, or call (relay.Reload in Go).
	Trigger string `json:"trigger"`
	// Development is set when serve runs without a sources file.
	Development bool `json:"development,omitempty"`
	// Files are the files the version covers, with their own hashes.
	Files          []ConfigFile `json:"files"`
	PublicURL      string       `json:"public_url,omitempty"`
	AllowedOrigins []string     `json:"allowed_origins,omitempty"`
	TrustedProxies []string     `json:"trusted_proxies,omitempty"`
	Sources        []SourceView `json:"sources"`
	// Watching is set while the files are watched for changes (serve --watch).
	Watching bool `json:"watching"`
	// LastReload is the outcome of the last reload attempt; nil before the first.
	LastReload *ReloadResult `json:"last_reload"`
	// Reloads counts the attempts by outcome since the start.
	Reloads ReloadCounts `json:"reloads"`
}

// ConfigFile is one file a configuration version was read from: its path relative to the
// sources file's folder ("(built-in) NAME" for a built-in preset) and its SHA-256.
type ConfigFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// SourceView is one configured source as GET /admin/config shows it.
type SourceView struct {
	Name string `json:"name"`
	// WriteKey says where the key comes from, never the key: "write_key" (the file),
	// "$VARIABLE" (write_key_env), or "any" (the development source).
	WriteKey       string            `json:"write_key"`
	Preset         string            `json:"preset"`
	Mappings       []string          `json:"mappings,omitempty"`
	Settings       map[string]string `json:"settings,omitempty"`
	AllowedOrigins []string          `json:"allowed_origins,omitempty"`
}

// ReloadResult is the outcome of one reload attempt, the answer of POST /admin/reload.
type ReloadResult struct {
	// Seq numbers the attempts from 1.
	Seq int64 `json:"seq"`
	// At is when the attempt ended.
	At time.Time `json:"at"`
	// Trigger is what asked for it: signal, admin, watch or call.
	Trigger string `json:"trigger"`
	// Outcome is ReloadOK or ReloadError.
	Outcome string `json:"outcome"`
	// Version is the version in force after the attempt: the new one, or the running one
	// when the attempt was refused.
	Version string `json:"version"`
	// Previous is the version in force before the attempt.
	Previous string `json:"previous"`
	// Findings are the problems that refused it, one per line as
	// "file:line:col: code: message (hint: ...)".
	Findings []string `json:"findings,omitempty"`
	// Message says in a sentence what happened.
	Message string `json:"message"`
}

// ReloadCounts counts reload attempts by outcome.
type ReloadCounts struct {
	OK    int64 `json:"ok"`
	Error int64 `json:"error"`
}

// Config reads GET /admin/config.
func (a *Client) Config(ctx context.Context) (ConfigView, error) {
	var v ConfigView
	err := a.do(ctx, http.MethodGet, "/admin/config", nil, &v)
	return v, err
}

// Reload calls POST /admin/reload. A refused reload is not an error of the call: its
// ReloadResult has Outcome ReloadError and the findings.
func (a *Client) Reload(ctx context.Context) (ReloadResult, error) {
	var r ReloadResult
	err := a.doAccepting(ctx, http.MethodPost, "/admin/reload", nil, &r, http.StatusUnprocessableEntity)
	return r, err
}
