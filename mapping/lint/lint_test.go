package lint

import (
	"strings"
	"testing"

	"github.com/woorelay/woorelay/blueprint"
	"github.com/woorelay/woorelay/mapping"
)

const preset = `kind: preset
name: t
blueprint: woopra
identity: {when_none: send}
mappings:
  - name: m
    endpoint: ce
    fields:
      event: {path: event}
      cv_email: {first: [context.trait.email, context.traits.mail]}
      ce_plan: {path: properties.plan}
      ce_ext: {path: 'context.externalIds.#(type=="woopra").id'}
    spread:
      - {from: properties, prefix: ce_}
`

// TestRun checks each sample-based finding and the absence of tests.
func TestRun(t *testing.T) {
	bp, _ := blueprint.Woopra()
	p, err := mapping.Compile(mapping.Source{File: "p.yaml", Data: []byte(preset)}, mapping.Options{Blueprint: bp, AllowUnsetRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	samples := [][]byte{
		[]byte(`{"event":"E","context":{"traits":{"email":"a@b"},"externalIds":[{"id":"x","type":"woopra"}]},"properties":{"plan":"pro"}}`),
		[]byte(`{"event":"F","properties":{"other":1}}`),
	}
	got := Run(Input{Program: p, Samples: samples})
	var lines []string
	for _, d := range got {
		lines = append(lines, d.Error())
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		`p.yaml:10:26: misspelt_path: path "context.trait.email" never occurs in the 2 sample events (hint: did you mean "context.traits.email"?)`,
		`p.yaml:10:47: misspelt_path: path "context.traits.mail" never occurs in the 2 sample events (hint: did you mean "context.traits.email"?)`,
		`p.yaml:14:9: spread_conflict: spread key "plan" becomes ce_plan, which an explicit field also sends (1 of 2 samples; explicit wins)`,
		`p.yaml: no_tests:`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("findings lack %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "externalIds") {
		t.Errorf("a path the samples have was reported:\n%s", all)
	}
	if len(got) != 4 {
		t.Errorf("%d findings, want 4:\n%s", len(got), all)
	}
}

// TestRunPathKeys checks that a keys: path spread's nested key is reported under the parameter
// it nests into.
func TestRunPathKeys(t *testing.T) {
	bp, _ := blueprint.Woopra()
	src := strings.Replace(preset, "- {from: properties, prefix: ce_}", "- {from: properties, prefix: ce_, keys: path}", 1)
	p, err := mapping.Compile(mapping.Source{File: "p.yaml", Data: []byte(src)}, mapping.Options{Blueprint: bp, AllowUnsetRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	got := Run(Input{Program: p, Samples: [][]byte{[]byte(`{"event":"E","properties":{"plan.tier":"pro","other":1}}`)}})
	want := `p.yaml:14:9: spread_conflict: spread key "plan.tier" nests into ce_plan, which an explicit field also sends (1 of 1 samples; explicit wins)`
	found := false
	for _, d := range got {
		found = found || d.Error() == want+" (hint: exclude the key from the spread, or remove the explicit field if the spread already sends it)"
	}
	if !found {
		t.Errorf("findings lack %q:\n%v", want, got)
	}
}

func TestClosest(t *testing.T) {
	cands := []string{"context", "context.traits", "context.traits.email", "properties.revenue"}
	for in, want := range map[string]string{
		"context.trait":       "context.traits",
		"properties.revenu":   "properties.revenue",
		"context.traits.emal": "context.traits.email",
		"nothing.like.it":     "",
		"context.traits":      "", // an exact match is not a suggestion
	} {
		if got := closest(in, cands); got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}
