package maptest

import "testing"

// Run runs the test files as sub-tests of t, one per case, so `go test` reports each case by
// name. Golden files are rewritten when opts.Update is set (test packages wire it to their own
// -update flag).
func Run(t *testing.T, opts Options, files ...string) {
	t.Helper()
	if len(files) == 0 {
		t.Fatal("maptest.Run: no test files given")
	}
	for _, f := range files {
		results, err := RunFile(f, opts)
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if len(results) == 0 {
			t.Errorf("%s has no test cases", f)
		}
		for _, r := range results {
			t.Run(r.Name, func(t *testing.T) {
				for _, fail := range r.Failures {
					t.Errorf("%s:%d: %s", r.File, r.Line, fail)
				}
			})
		}
	}
}
