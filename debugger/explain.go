package debugger

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/woorelay/woorelay/blueprint"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/mapping/lint"
	"github.com/woorelay/woorelay/presets"
)

// Explanation is what a program made of one event and why: the trace `woorelay explain`
// prints, as data and as its text.
type Explanation struct {
	Outcome  string          `json:"outcome"` // send, rejected, skipped
	Mapping  string          `json:"mapping,omitempty"`
	Code     string          `json:"code,omitempty"`
	Error    string          `json:"error,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Warnings []string        `json:"warnings,omitempty"`
	Requests []ExplainedCall `json:"requests"`
	Trace    *mapping.Trace  `json:"trace,omitempty"`
	Text     string          `json:"text"`
}

// ExplainedCall is one request the program made, with its parameters in order.
type ExplainedCall struct {
	Method   string          `json:"method"`
	Endpoint string          `json:"endpoint"`
	URL      string          `json:"url"`
	Params   []mapping.Param `json:"params"`
	Headers  []mapping.Param `json:"headers,omitempty"`
}

// explainWith runs p on event, read at now, with the trace on.
func explainWith(p *mapping.Program, event []byte, now time.Time) *Explanation {
	res, tr := p.Explain(event, now)
	out := &Explanation{Outcome: res.Outcome.String(), Mapping: res.Mapping, Code: res.Code, Error: res.Error, Reason: res.Reason,
		Warnings: res.Warnings, Requests: []ExplainedCall{}, Trace: tr}
	for _, r := range res.Requests {
		out.Requests = append(out.Requests, ExplainedCall{Method: r.Method, Endpoint: r.Endpoint, URL: r.URL, Params: r.Params, Headers: r.Headers})
	}
	if tr != nil {
		out.Text = tr.String()
	}
	return out
}

// PlaygroundRequest is the body of POST /debugger/api/playground: an event and the mapping to
// try on it. Preset is a whole preset's YAML; when it is empty PresetName names a built-in
// preset. Mappings, when not empty, is a mapping file laid over the preset.
type PlaygroundRequest struct {
	Event      json.RawMessage   `json:"event"`
	Preset     string            `json:"preset"`
	PresetName string            `json:"preset_name"`
	Mappings   string            `json:"mappings"`
	Settings   map[string]string `json:"settings"`
	Now        time.Time         `json:"now"`
}

// PlaygroundResult is what the playground shows: every finding at its line:col, and, when
// the files compile, what the event became and why.
type PlaygroundResult struct {
	Findings []Finding    `json:"findings"`
	Result   *Explanation `json:"result,omitempty"`
}

// Finding is one compiler or lint diagnostic.
type Finding struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
	Code string `json:"code"`
	Msg  string `json:"message"`
	Hint string `json:"hint,omitempty"`
	Text string `json:"text"` // file:line:col: code: message (hint: ...)
}

// The file names the playground's documents carry in findings.
const (
	PlaygroundPreset   = "preset.yaml"
	PlaygroundMappings = "mappings.yaml"
)

// playground compiles the posted preset and mapping with the relay's engine and runs the
// event through them. It uses nothing of the running configuration, changes none of it and
// sends nothing.
func (d *Debugger) playground(c echo.Context) error {
	var req PlaygroundRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, Playground(req))
}

// Playground compiles and runs one PlaygroundRequest.
func Playground(req PlaygroundRequest) PlaygroundResult {
	out := PlaygroundResult{Findings: []Finding{}}
	bad := func(code, msg, hint string) PlaygroundResult {
		out.Findings = append(out.Findings, finding(mapping.Diagnostic{File: PlaygroundPreset, Code: code, Msg: msg, Hint: hint}))
		return out
	}
	var preset mapping.Source
	switch {
	case strings.TrimSpace(req.Preset) != "":
		preset = mapping.Source{File: PlaygroundPreset, Data: []byte(req.Preset)}
	case slices.Contains(presets.Names(), req.PresetName):
		src, err := presets.Source(req.PresetName)
		if err != nil {
			return bad("bad_preset", err.Error(), "")
		}
		preset = src
	default:
		return bad("bad_preset", "no preset: give a preset's YAML or the name of a built-in preset", "one of "+strings.Join(presets.Names(), ", "))
	}
	bp, err := blueprint.Woopra()
	if err != nil {
		return bad("bad_blueprint", err.Error(), "")
	}
	opts := mapping.Options{Blueprint: bp, Settings: req.Settings, SettingsFile: "settings"}
	if strings.TrimSpace(req.Mappings) != "" {
		opts.Overlays = []mapping.Source{{File: PlaygroundMappings, Data: []byte(req.Mappings)}}
	}
	prog, err := mapping.Compile(preset, opts)
	if err != nil {
		var ds mapping.Diagnostics
		var one mapping.Diagnostic
		switch {
		case errors.As(err, &ds):
			for _, dg := range ds {
				out.Findings = append(out.Findings, finding(dg))
			}
		case errors.As(err, &one):
			out.Findings = append(out.Findings, finding(one))
		default:
			return bad("compile_error", err.Error(), "")
		}
		return out
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	out.Result = explainWith(prog, req.Event, now)
	if json.Valid(req.Event) {
		for _, dg := range lint.Run(lint.Input{Program: prog, Samples: [][]byte{req.Event}}) {
			switch dg.Code {
			case lint.CodeNoTests, lint.CodeUntestedRow, lint.CodeUntestedField, lint.CodeTestFailure:
				continue // the playground has no tests: coverage would only be noise
			}
			if dg.File != PlaygroundPreset && dg.File != PlaygroundMappings {
				continue // a built-in preset's own findings are not the user's to fix here
			}
			out.Findings = append(out.Findings, finding(dg))
		}
	}
	return out
}

func finding(d mapping.Diagnostic) Finding {
	return Finding{File: d.File, Line: d.Line, Col: d.Col, Code: d.Code, Msg: d.Msg, Hint: d.Hint, Text: d.Error()}
}
