package presets

import (
	"testing"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/mapping"
)

// FuzzPresets runs every built-in preset on arbitrary input: no input may panic, anything that
// is not a JSON object is rejected as invalid_json, and every outcome is complete (a send has a
// request with a URL, a rejection a code and a message, a skip a reason).
func FuzzPresets(f *testing.F) {
	for _, ev := range benchCorpus()[:40] {
		f.Add(ev)
	}
	for _, s := range []string{``, `{}`, `[]`, `null`, `{"type":"track"}`, `{"type":"track","event":"E","anonymousId":"a","properties":{"a":{"b":{"c":{"d":1}}}}}`,
		`{"type":"identify","traits":{"email":" "},"userId":12345678901234567890}`, `{"type":"page","name":{"x":1},"category":[1]}`,
		`{"type":"TRACK","event":"E","context":{"externalId":[{"type":"woopraId","id":""}]},"integrations":{"WOOPRA":true,"woopra":{"projectName":"p"}}}`,
		`{"type":"track","event":"E","anonymousId":"a","timestamp":"9999-12-31T23:59:59Z"}`, `{"type":"track","event":"E","anonymousId":"a","timestamp":-1e300}`} {
		f.Add([]byte(s))
	}
	var progs []*mapping.Program
	for _, name := range Names() {
		p, err := Load(name, map[string]string{"project": "example.com"})
		if err != nil {
			f.Fatal(err)
		}
		progs = append(progs, p)
	}
	f.Fuzz(func(t *testing.T, event []byte) {
		isObject := gjson.ValidBytes(event) && gjson.ParseBytes(event).IsObject()
		for _, p := range progs {
			res := p.Run(event, benchNow)
			switch res.Outcome {
			case mapping.Send:
				if len(res.Requests) == 0 || res.Requests[0].URL == "" {
					t.Fatalf("%s: send without a request for %q", p.Name, event)
				}
			case mapping.Rejected:
				if res.Code == "" || res.Error == "" {
					t.Fatalf("%s: rejection without code or message for %q: %+v", p.Name, event, res)
				}
			case mapping.Skipped:
				if res.Reason == "" {
					t.Fatalf("%s: skip without a reason for %q", p.Name, event)
				}
			}
			if !isObject && (res.Outcome != mapping.Rejected || res.Code != mapping.RejectInvalidJSON) {
				t.Fatalf("%s: %q is not a JSON object but gave %s %s", p.Name, event, res.Outcome, res.Code)
			}
		}
	})
}
