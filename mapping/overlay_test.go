package mapping_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

const overlayBase = header + `identity: {when_none: send}
settings:
  app: {type: string}
tables:
  names: {rows: {Order Completed: purchase}}
common:
  fields:
    project: {setting: project}
    cv_id: {path: userId}
mappings:
  - name: track
    when: type == "track"
    endpoint: ce
    fields:
      event: {path: event, lookup: names}
      ce_total: {path: properties.total}
  - name: identify
    when: type == "identify"
    endpoint: identify
`

func compileOverlay(t *testing.T, overlays ...string) (*mapping.Program, error) {
	t.Helper()
	var srcs []mapping.Source
	for i, o := range overlays {
		srcs = append(srcs, mapping.Source{File: "overlay" + string(rune('a'+i)) + ".yaml", Data: []byte(o)})
	}
	return mapping.Compile(mapping.Source{File: "base.yaml", Data: []byte(overlayBase)},
		mapping.Options{Blueprint: woopra(t), Settings: map[string]string{"project": "p.com"}, Overlays: srcs})
}

// TestOverlay checks how mapping files lay over a preset.
func TestOverlay(t *testing.T) {
	tests := []struct {
		name    string
		overlay string
		event   string
		mapping string
		want    []string // params, in order
	}{
		{"no overlay", "", `{"type":"track","event":"Order Completed","userId":"u","properties":{"total":3}}`, "track",
			[]string{"project=p.com", "cv_id=u", "event=purchase", "ce_total=3"}},
		{"a new mapping is tried first", `kind: mappings
mappings:
  - name: video
    when: type == "track" && event == "Video Played"
    endpoint: ce
    fields: {event: {value: video_play}}
`, `{"type":"track","event":"Video Played","userId":"u"}`, "video", []string{"project=p.com", "cv_id=u", "event=video_play"}},
		{"a new mapping leaves other events alone", `kind: mappings
mappings:
  - name: video
    when: type == "track" && event == "Video Played"
    endpoint: ce
    fields: {event: {value: video_play}}
`, `{"type":"track","event":"Order Completed","userId":"u"}`, "track", []string{"project=p.com", "cv_id=u", "event=purchase"}},
		{"an existing mapping's field is replaced in place and a new one appended", `kind: mappings
mappings:
  - name: track
    fields:
      ce_total: {path: properties.total, as: string, transform: 'string(value) + " EUR"'}
      ce_plan: {path: context.traits.plan}
`, `{"type":"track","event":"Order Completed","userId":"u","properties":{"total":3},"context":{"traits":{"plan":"pro"}}}`, "track",
			[]string{"project=p.com", "cv_id=u", "event=purchase", "ce_total=3 EUR", "ce_plan=pro"}},
		{"omit removes a field, also an inherited one", `kind: mappings
mappings:
  - name: track
    fields:
      ce_total: {omit: true}
      cv_id: {omit: true}
`, `{"type":"track","event":"Order Completed","userId":"u","properties":{"total":3}}`, "track", []string{"project=p.com", "event=purchase"}},
		{"tables are added or replaced", `kind: mappings
tables:
  names: {rows: {Order Completed: order}}
`, `{"type":"track","event":"Order Completed","userId":"u"}`, "track", []string{"project=p.com", "cv_id=u", "event=order"}},
		{"settings declared by an overlay", `kind: mappings
settings:
  tier: {type: string, default: gold}
mappings:
  - name: track
    fields: {ce_tier: {setting: tier}}
`, `{"type":"track","event":"E","userId":"u"}`, "track", []string{"project=p.com", "cv_id=u", "event=E", "ce_tier=gold"}},
		{"when can be replaced", `kind: mappings
mappings:
  - name: identify
    when: type == "identify" || type == "track"
`, `{"type":"track","event":"E","userId":"u"}`, "track", []string{"project=p.com", "cv_id=u", "event=E"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var overlays []string
			if tc.overlay != "" {
				overlays = append(overlays, tc.overlay)
			}
			p, err := compileOverlay(t, overlays...)
			if err != nil {
				t.Fatal(err)
			}
			res := run(p, tc.event)
			if res.Mapping != tc.mapping {
				t.Fatalf("mapping %q (%s %s %s), want %q", res.Mapping, res.Outcome, res.Error, res.Reason, tc.mapping)
			}
			if got := params(t, res); !equalStrings(got, tc.want) {
				t.Errorf("params\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestOverlayDiagnostics checks that problems in a mapping file are reported against that file.
func TestOverlayDiagnostics(t *testing.T) {
	tests := []struct {
		name, overlay, want string
	}{
		{"wrong kind", "kind: preset\nmappings: []\n", "overlaya.yaml:1:7: wrong_kind"},
		{"unknown key in a field", "kind: mappings\nmappings:\n  - name: track\n    fields:\n      ce_x: {pth: a}\n", "overlaya.yaml:5:14: unknown_key"},
		{"new mapping without endpoint", "kind: mappings\nmappings:\n  - name: new\n    fields: {ce_x: {path: a}}\n", "overlaya.yaml:3:5: missing_key"},
		{"unprefixed parameter", "kind: mappings\nmappings:\n  - name: track\n    fields:\n      total: {path: a}\n", "overlaya.yaml:5:7: unknown_prefix"},
		{"bad expression", "kind: mappings\nmappings:\n  - name: track\n    when: 'type =='\n", "overlaya.yaml:4:11: bad_expression"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileOverlay(t, tc.overlay)
			var ds mapping.Diagnostics
			if !errors.As(err, &ds) || len(ds) == 0 {
				t.Fatalf("got %v, want diagnostics", err)
			}
			if !strings.HasPrefix(ds[0].Error(), tc.want) {
				t.Errorf("got %q, want prefix %q", ds.Error(), tc.want)
			}
		})
	}
}

// TestEventFilter checks allow and deny lists: they skip what they should and keep what they should.
func TestEventFilter(t *testing.T) {
	allow := compile(t, `identity: {when_none: send}
filter: {allow: [Order Completed, Signed Up]}
mappings:
  - name: m
    endpoint: ce
    fields: {event: {path: event, default: page}}
`)
	deny := compile(t, `identity: {when_none: send}
filter: {deny: [Debug Ping]}
mappings:
  - name: m
    endpoint: ce
    fields: {event: {path: event, default: page}}
`)
	tests := []struct {
		name    string
		p       *mapping.Program
		event   string
		outcome mapping.Outcome
		reason  string
	}{
		{"allowed event is sent", allow, `{"type":"track","event":"Order Completed"}`, mapping.Send, ""},
		{"other event is skipped", allow, `{"type":"track","event":"Debug Ping"}`, mapping.Skipped, `event "Debug Ping" is not in the preset's allow list`},
		{"allow list is exact", allow, `{"type":"track","event":"order completed"}`, mapping.Skipped, "allow list"},
		{"events without a name pass the allow list", allow, `{"type":"page"}`, mapping.Send, ""},
		{"denied event is skipped", deny, `{"type":"track","event":"Debug Ping"}`, mapping.Skipped, `event "Debug Ping" is in the preset's deny list`},
		{"other event is sent", deny, `{"type":"track","event":"Order Completed"}`, mapping.Send, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := run(tc.p, tc.event)
			if res.Outcome != tc.outcome || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("got %s %q, want %s %q", res.Outcome, res.Reason, tc.outcome, tc.reason)
			}
		})
	}
	ds := compileErr(t, "filter: {allow: [a], deny: [b]}\nmappings: [{name: m, skip: x}]\n", map[string]string{"project": "p"})
	if ds[0].Code != mapping.CodeMultipleSources {
		t.Errorf("allow and deny together: %v", ds)
	}
}
