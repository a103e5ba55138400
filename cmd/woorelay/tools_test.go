package main

import (
	"bytes"
	"strings"
	"testing"
)

// runCmd runs a command line and returns its exit status and outputs.
func runCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// TestLint checks that lint reports one finding of each kind at its position, and nothing on a clean preset.
func TestLint(t *testing.T) {
	code, out, errs := runCmd(t, "", "lint", "--preset", "../../testdata/lint/preset.yaml", "--samples", "../../testdata/lint/small_samples.ndjson")
	if code != 1 {
		t.Errorf("exit %d, want 1 (problems found); stderr %s", code, errs)
	}
	for _, want := range []string{
		`preset.yaml:10:7: untested_row: row "Signed Up" → "signup" of table names is not exercised by any test`,
		`preset.yaml:18:7: untested_field: parameter cv_email (mapping track) is never sent by any test`,
		`preset.yaml:18:24: misspelt_path: path "context.trait.email" never occurs in the 2 sample events (hint: did you mean "context.traits.email"?)`,
		`preset.yaml:21:9: spread_conflict: spread key "plan" becomes ce_plan, which an explicit field also sends (2 of 2 samples; explicit wins)`,
		"4 problems",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lint output lacks %q:\n%s", want, out)
		}
	}
	golden(t, "lint.txt", out)

	code, out, _ = runCmd(t, "", "lint", "--preset", "../../testdata/lint/preset.yaml", "--tests", "../../testdata/lint/preset.test.yaml")
	if code != 1 || strings.Contains(out, "misspelt_path") || strings.Contains(out, "spread_conflict") {
		t.Errorf("without samples only coverage is checked; exit %d:\n%s", code, out)
	}

	code, out, _ = runCmd(t, "", "lint", "--preset", "../../testdata/bad_unknown_key.yaml")
	if code != 1 || !strings.Contains(out, "bad_unknown_key.yaml:") || !strings.Contains(out, "unknown_key") {
		t.Errorf("compile errors are lint findings; exit %d:\n%s", code, out)
	}
}

// TestTestCommand checks woorelay test on passing and failing test files.
func TestTestCommand(t *testing.T) {
	code, out, errs := runCmd(t, "", "test", "../../presets", "../../testdata/mappings_example")
	if code != 0 || !strings.Contains(out, "0 failed") {
		t.Errorf("exit %d, want 0:\n%s%s", code, out, errs)
	}
	code, out, _ = runCmd(t, "", "test", "../../testdata/maptest/failing.test.yaml")
	if code != 1 {
		t.Errorf("exit %d, want 1 for a failing case:\n%s", code, out)
	}
	for _, want := range []string{
		"FAIL ../../testdata/maptest/failing.test.yaml:9 a wrong expectation",
		`param event = "purchase", want "order"`,
		"1 files, 2 cases, 1 failed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := runCmd(t, "", "test", "../../testdata/golden"); code != 2 || !strings.Contains(errs, "no *.test.yaml") {
		t.Errorf("a folder without tests: exit %d, stderr %q", code, errs)
	}
}

// TestExplain checks the per-field trace: the winning path of a precedence list and why the
// others lost, the rename row, the spreads and the when that chose the mapping.
func TestExplain(t *testing.T) {
	code, out, errs := runCmd(t, "", "explain", "--set", "project=mywebsite.com", "--now", testNow, "../../testdata/datafly_purchase.json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{
		`mapping        track: when type == "track" -> true`,
		`first[0] integrations.Woopra.cookie: missing;`,
		`first[5] vendor_ids.woopra_cookie = "AH47DHS5SF182DIQZJD" (wins) => AH47DHS5SF182DIQZJD`,
		`table event_names: "Order Completed" -> "purchase" => purchase`,
		`ce_app         setting app is unset => (absent)`,
		`spread properties: copied 3 [order_id, currency, coupon]; excluded [revenue]`,
		`identity       order cv_id > cv_email > cookie: cv_email wins; send all`,
		"result         https://www.woopra.com/track/ce?project=mywebsite.com&",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain output lacks %q:\n%s", want, out)
		}
	}
	golden(t, "explain.txt", out)
	_, out, _ = runCmd(t, `{"type":"track","event":"E"}`, "explain", "--set", "project=p.com", "--now", testNow, "-")
	if !strings.Contains(out, "rejected       no_identity: ") {
		t.Errorf("a rejection is explained:\n%s", out)
	}
}

// TestDiff checks the per-field summary of two configurations over the same events.
func TestDiff(t *testing.T) {
	code, out, errs := runCmd(t, "", "diff", "--set", "project=example.com", "--now", testNow,
		"--mappings", "../../testdata/mappings_example", "default", "default", "../../testdata/lint/samples.ndjson")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	golden(t, "diff.txt", out)
	if !strings.Contains(out, "over 200 events:") || !strings.Contains(out, "0 newly rejected, 0 newly skipped") {
		t.Errorf("summary line:\n%s", out)
	}
	if !strings.Contains(out, `event                    `) || !strings.Contains(out, `"Video Played" -> "video_play"`) {
		t.Errorf("the renamed event is summarised:\n%s", out)
	}
	code, out, _ = runCmd(t, "", "diff", "--set", "project=example.com", "--now", testNow, "default", "default", "../../testdata/lint/samples.ndjson")
	if code != 0 || !strings.Contains(out, ": 0 changed,") || strings.Contains(out, "fields") {
		t.Errorf("a preset against itself changes nothing:\n%s", out)
	}
	if code, _, errs := runCmd(t, "", "diff", "default"); code != 2 || !strings.Contains(errs, "usage: woorelay diff") {
		t.Errorf("missing arguments: exit %d, %q", code, errs)
	}
}

// TestDocsAndPresets checks that docs renders every schema the loader enforces and that
// presets lists the four built-in presets.
func TestDocsAndPresets(t *testing.T) {
	code, out, _ := runCmd(t, "", "docs")
	if code != 0 {
		t.Fatalf("docs exit %d", code)
	}
	for _, want := range []string{"## preset", "## mappings file", "## field", "## spread", "## test file", "## expect",
		"| `first` | list of paths |", "| `epoch_ms(v) int` |", "| `ua_browser(ua) string` |"} {
		if !strings.Contains(out, want) {
			t.Errorf("docs lack %q", want)
		}
	}
	code, out, _ = runCmd(t, "", "presets")
	if code != 0 || strings.Count(out, "\n") != 4 {
		t.Errorf("presets exit %d:\n%s", code, out)
	}
	for _, name := range []string{"datafly", "default", "rudderstack", "segment"} {
		if !strings.Contains(out, name+" ") {
			t.Errorf("presets lack %s:\n%s", name, out)
		}
	}
	if code, _, errs := runCmd(t, "", "nosuch"); code != 2 || !strings.Contains(errs, `unknown command "nosuch"`) {
		t.Errorf("unknown command: exit %d %q", code, errs)
	}
}
