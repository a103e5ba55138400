package maptest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/blueprint"
)

const preset = `kind: preset
name: t
blueprint: woopra
identity: {when_none: send}
mappings:
  - name: m
    when: type == "track"
    endpoint: ce
    fields:
      project: {setting: project}
      event: {path: event}
`

// TestRunFile checks that cases pass and fail on the right expectations, and that a malformed
// test file is refused with file:line:col.
func TestRunFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("p.yaml", preset)
	bp, err := blueprint.Woopra()
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Blueprint: bp}

	good := write("good.test.yaml", `kind: test
preset: p.yaml
settings: {project: x.com}
tests:
  - name: pass
    event: {type: track, event: E}
    expect: {params: {event: E, project: x.com}, only_params: true, endpoint: /track/ce}
  - name: wrong value
    event: {type: track, event: E}
    expect: {params: {event: F}}
  - name: wrong outcome
    event: {type: page}
    expect: {code: no_identity}
  - name: skip reason
    event: {type: page}
    expect: {reason: no mapping}
  - name: unexpected param
    event: {type: track, event: E}
    expect: {params: {event: E}, only_params: true}
`)
	results, err := RunFile(good, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"pass":             "",
		"wrong value":      `param event = "E", want "F"`,
		"wrong outcome":    "outcome is skipped",
		"skip reason":      "",
		"unexpected param": `unexpected param project = "x.com"`,
	}
	if len(results) != len(want) {
		t.Fatalf("%d results, want %d", len(results), len(want))
	}
	for _, r := range results {
		w := want[r.Name]
		got := strings.Join(r.Failures, "; ")
		if (w == "") != r.Passed() || !strings.Contains(got, w) {
			t.Errorf("case %q: failures %q, want %q", r.Name, got, w)
		}
	}

	for name, tc := range map[string]struct{ body, want string }{
		"unknown key":    {"kind: test\npreset: p.yaml\ntests:\n  - name: a\n    evnt: {}\n    expect: {}\n", `bad.test.yaml:5:5: unknown_key: unknown key "evnt"`},
		"two events":     {"kind: test\npreset: p.yaml\ntests:\n  - name: a\n    event: {}\n    event_file: x.json\n    expect: {}\n", "multiple_sources"},
		"bad outcome":    {"kind: test\npreset: p.yaml\ntests:\n  - name: a\n    event: {}\n    expect: {outcome: sent}\n", `outcome "sent" is not send`},
		"missing preset": {"kind: test\npreset: nosuch.yaml\ntests:\n  - name: a\n    event: {}\n    expect: {}\n", `preset "nosuch.yaml" is neither a file`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := RunFile(write("bad.test.yaml", tc.body), opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
}
