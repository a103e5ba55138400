package mapping

import (
	"reflect"
	"testing"
)

// TestLodashPath checks the path syntax of keys: path against what lodash's toPath gives.
func TestLodashPath(t *testing.T) {
	tests := []struct {
		in   string
		deep bool
		want []string
	}{
		{"cv_dot.key", true, []string{"cv_dot", "key"}},
		{"cv_br[0]", true, []string{"cv_br", "0"}},
		{"a.b[1].c", true, []string{"a", "b", "1", "c"}},
		{"a..b", true, []string{"a", "", "b"}},
		{"a.", true, []string{"a", ""}},
		{".a", true, []string{"", "a"}},
		{"a[]", true, []string{"a", ""}},
		{"a[].b", true, []string{"a", "", "b"}},
		{`a["x.y"]`, true, []string{"a", "x.y"}},
		{`a['x']`, true, []string{"a", "x"}},
		{`a["x\"y"]`, true, []string{"a", `x"y`}},
		{`a["x\\y"]`, true, []string{"a", `x\y`}},
		{`a["x"y"]`, true, []string{"a", `"x"y"`}}, // no closing quote before ]: the text is a key
		{"a[-1]", true, []string{"a", "-1"}},
		{"a[1.5]", true, []string{"a", "1.5"}},
		{"a[b]", true, []string{"a", "b"}},
		{"a]b", false, []string{"a", "b"}},
		{"a[b", false, []string{"a", "b"}},
		{"plain", false, []string{"plain"}},
	}
	for _, tc := range tests {
		if got := isDeepKey(tc.in); got != tc.deep {
			t.Errorf("isDeepKey(%q) = %v, want %v", tc.in, got, tc.deep)
		}
		if got := lodashPath(nil, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("lodashPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestKeyIndex checks which segments are array indexes.
func TestKeyIndex(t *testing.T) {
	for seg, want := range map[string]int{"0": 0, "7": 7, "1000": 1000, "1001": -1, "01": -1, "-1": -1, "1.5": -1, "": -1, "x": -1, "99999": -1} {
		got, ok := keyIndex(seg)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("keyIndex(%q) = %d, want %d", seg, got, want)
		}
	}
}
