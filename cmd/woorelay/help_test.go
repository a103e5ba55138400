package main

import (
	"bufio"
	"os"
	"regexp"
	"strings"
	"testing"
)

// sentence is a usage line, a blank line, then a paragraph that starts with a capital and
// ends with a full stop (or a colon before a list).
var sentence = regexp.MustCompile(`^usage: [^\n]*\n\n[A-Z](?:[^\n]|\n[^\n])*[.:]\n`)

// TestEveryCommandHelp runs `woorelay CMD -h` for every command: it exits 0 and prints, on
// standard output, a usage line naming the command and its positional arguments, then a
// sentence saying what the command does.
func TestEveryCommandHelp(t *testing.T) {
	for _, c := range []struct {
		cmd        string
		positional []string // what the usage line must name
	}{
		{"transform", []string{"[FILE|-]"}},
		{"explain", []string{"[FILE|-]"}},
		{"test", []string{"[PATH]..."}},
		{"lint", []string{"[--samples FILE]...", "[--tests PATH]..."}},
		{"diff", []string{"OLD_PRESET NEW_PRESET [FILE|-]"}},
		{"corpus", []string{"[-n N]"}},
		{"serve", []string{"[flags]"}},
		{"emulate", []string{"[--listen ADDR]"}},
		{"dlq", []string{"list | show ID | replay (ID...|--all)"}},
		{"config", []string{"[reload | check FILE...]"}},
		{"config check", []string{"check FILE..."}},
		{"dlq replay", []string{"replay (ID...|--all)"}},
		{"privacy", []string{"suppress|unsuppress|erase SELECTOR... | list"}},
		{"bench", []string{"[--stage S[,S...]]"}},
		{"import", []string{"[flags] LOCATION..."}},
		{"health", []string{"[--listen ADDR]"}},
		{"presets", nil},
		{"docs", nil},
	} {
		for _, h := range []string{"-h", "--help"} {
			words := strings.Fields(c.cmd)
			code, out, errs := runCmd(t, "", append(words, h)...)
			if code != 0 || errs != "" {
				t.Errorf("woorelay %s %s: exit %d, stderr %q; want 0 and the help on stdout", c.cmd, h, code, errs)
				continue
			}
			lines := strings.Split(out, "\n")
			if !strings.HasPrefix(lines[0], "usage: woorelay "+words[0]) {
				t.Errorf("woorelay %s %s: first line %q is not its usage line", c.cmd, h, lines[0])
				continue
			}
			for _, p := range c.positional {
				if !strings.Contains(lines[0], p) {
					t.Errorf("woorelay %s %s: usage line %q does not name %s", c.cmd, h, lines[0], p)
				}
			}
			if !sentence.MatchString(out) {
				t.Errorf("woorelay %s %s: no sentence of what it does after the usage line:\n%s", c.cmd, h, out)
			}
		}
	}
}

// TestHelpSaysWhatOperatorsNeed checks the particular promises of some commands' help.
func TestHelpSaysWhatOperatorsNeed(t *testing.T) {
	_, out, _ := runCmd(t, "", "serve", "-h")
	if !strings.Contains(out, "WOORELAY_<FLAG>") || !strings.Contains(out, "WOORELAY_WOOPRA_URL") {
		t.Errorf("serve -h does not say that every flag is also WOORELAY_<FLAG>:\n%s", out)
	}
	_, out, _ = runCmd(t, "", "dlq", "-h")
	if strings.Contains(out, "restart serve") || !strings.Contains(out, "config reload") {
		t.Errorf("dlq -h should say to reload (not restart) after a fix:\n%s", out)
	}
	code, _, errs := runCmd(t, "", "diff", "--preset", "segment", "default", "default")
	if code != 2 || !strings.Contains(errs, "-preset") {
		t.Errorf("diff --preset: exit %d, %q; want 2 (the presets are diff's arguments)", code, errs)
	}
	code, _, errs = runCmd(t, "", "presets", "extra")
	if code != 2 || !strings.Contains(errs, "unexpected argument") {
		t.Errorf("presets extra: exit %d, %q; want 2", code, errs)
	}
}

// TestTestCommandPassesOverTestdata: `woorelay test` with no path, at the repository's root,
// runs the presets' tests and not the fixtures under testdata (one of them fails on purpose);
// naming the fixture still runs it.
func TestTestCommandPassesOverTestdata(t *testing.T) {
	t.Chdir("../..")
	code, out, errs := runCmd(t, "", "test")
	if code != 0 || strings.Contains(out, "testdata") || !strings.Contains(out, "presets/default.test.yaml") {
		t.Errorf("woorelay test at the root: exit %d, stderr %q:\n%s", code, errs, out)
	}
	if code, _, _ := runCmd(t, "", "test", "testdata/maptest"); code != 1 {
		t.Errorf("woorelay test testdata/maptest: exit %d, want 1 (its failing fixture runs when named)", code)
	}
}

// TestReadmeTransformExampleRuns runs the README's `woorelay transform --mappings` example
// from the repository's root: every file it names exists, and it maps the Video Played event.
func TestReadmeTransformExampleRuns(t *testing.T) {
	t.Chdir("../..")
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var args []string
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if l := sc.Text(); strings.HasPrefix(l, "woorelay transform --mappings") {
			args = strings.Fields(strings.TrimPrefix(l, "woorelay "))
		}
	}
	if args == nil {
		t.Fatal("README has no `woorelay transform --mappings` example")
	}
	code, out, errs := runCmd(t, "", args...)
	if code != 0 || !strings.Contains(out, "video_play") {
		t.Errorf("woorelay %s: exit %d, stderr %q; want the Video Played event mapped to video_play:\n%.500s", strings.Join(args, " "), code, errs, out)
	}
}
