package sdkfiles

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilesMatchTheirChecksums: every served file decompresses to the content files/SHA256SUMS
// records, and the expected files are there.
func TestFilesMatchTheirChecksums(t *testing.T) {
	names := Names()
	for _, want := range []string{"segment/analytics.min.js", "rudderstack/modern/rsa.min.js", "rudderstack/legacy/rsa.min.js"} {
		if _, ok := Lookup(want); !ok {
			t.Errorf("%s is not embedded (have %v)", want, names)
		}
	}
	bundles := 0
	for _, n := range names {
		f, _ := Lookup(n)
		content, err := f.Content()
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		sum := sha256.Sum256(content)
		if got := hex.EncodeToString(sum[:]); got != f.SHA256 {
			t.Errorf("%s: SHA-256 %s, SHA256SUMS says %s; run go generate ./server/sdkfiles", n, got, f.SHA256)
		}
		if strings.HasPrefix(n, "segment/bundles/") {
			bundles++
		}
	}
	if bundles < 5 {
		t.Errorf("only %d of analytics-next's chunks are embedded", bundles)
	}
	for _, l := range []string{"LICENSE-segment-analytics-next", "LICENSE-rudderstack-analytics-js"} {
		b, err := files.ReadFile("files/" + l)
		if err != nil || !strings.Contains(string(b), "MIT") && !strings.Contains(string(b), "Permission is hereby granted") {
			t.Errorf("licence %s missing or not the MIT licence: %v", l, err)
		}
	}
}

// TestVersionsMatchTheBrowserTests: the browser tests load the same package versions the
// relay embeds (their package.json), so what they prove holds for what is served.
func TestVersionsMatchTheBrowserTests(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "cmd", "woorelay", "testdata", "browser", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pj struct{ Dependencies map[string]string }
	if err := json.Unmarshal(b, &pj); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"@segment/analytics-next": SegmentVersion, "@rudderstack/analytics-js": RudderStackVersion} {
		if pj.Dependencies[name] != v {
			t.Errorf("the browser tests pin %s %q, the relay embeds %q", name, pj.Dependencies[name], v)
		}
	}
	update, err := os.ReadFile(filepath.Join("update", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{SegmentVersion, RudderStackVersion} {
		if !strings.Contains(string(update), `version: "`+v+`"`) {
			t.Errorf("the update command does not pin version %s", v)
		}
	}
}
