package presets

// The engine against the hand-written ceiling (package presets/ceiling): the ceiling must produce
// the same mapping.Result as the engine for every event, so that the performance comparison
// (BenchmarkEngineVsCeiling) compares equal work.

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/mapping/corpus"
	"github.com/woorelay/woorelay/presets/ceiling"
)

// ceilingSettings are the settings the ceiling hard-codes.
var ceilingSettings = ceiling.Settings()

// loadDefault loads the default preset with the settings the ceiling hard-codes.
func loadDefault(tb testing.TB) *mapping.Program {
	tb.Helper()
	prog, err := Load("default", ceilingSettings)
	if err != nil {
		tb.Fatalf("load default preset: %v", err)
	}
	return prog
}

var (
	corpusOnce   sync.Once
	corpusEvents [][]byte
)

// benchCorpus is the shared corpus: 10,000 events of seed 1.
func benchCorpus() [][]byte {
	corpusOnce.Do(func() { corpusEvents = corpus.Generate(1, 10000) })
	return corpusEvents
}

// normalized returns r with empty slices as nil: RunInto leaves empty slices with capacity
// where Run leaves nil.
func normalized(r mapping.Result) mapping.Result {
	if len(r.Warnings) == 0 {
		r.Warnings = nil
	}
	if len(r.Requests) == 0 {
		r.Requests = nil
		return r
	}
	reqs := make([]mapping.Request, len(r.Requests))
	for i, q := range r.Requests {
		if len(q.Params) == 0 {
			q.Params = nil
		}
		if len(q.Headers) == 0 {
			q.Headers = nil
		}
		reqs[i] = q
	}
	r.Requests = reqs
	return r
}

// diffResults describes how got (the ceiling's) differs from want (the engine's), or "" when
// they are equal.
func diffResults(want, got mapping.Result) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	var b strings.Builder
	field := func(name string, w, g any) {
		if !reflect.DeepEqual(w, g) {
			fmt.Fprintf(&b, "  %s:\n    engine:  %#v\n    ceiling: %#v\n", name, w, g)
		}
	}
	field("Outcome", want.Outcome.String(), got.Outcome.String())
	field("Mapping", want.Mapping, got.Mapping)
	field("Code", want.Code, got.Code)
	field("Error", want.Error, got.Error)
	field("Reason", want.Reason, got.Reason)
	field("Warnings", want.Warnings, got.Warnings)
	if len(want.Requests) != len(got.Requests) {
		fmt.Fprintf(&b, "  engine sends %d requests, ceiling %d\n", len(want.Requests), len(got.Requests))
		return b.String()
	}
	for i := range want.Requests {
		w, g := want.Requests[i], got.Requests[i]
		field(fmt.Sprintf("Requests[%d].Method", i), w.Method, g.Method)
		field(fmt.Sprintf("Requests[%d].Endpoint", i), w.Endpoint, g.Endpoint)
		field(fmt.Sprintf("Requests[%d].URL", i), w.URL, g.URL)
		for _, list := range []struct {
			name string
			w, g []mapping.Param
		}{{"Params", w.Params, g.Params}, {"Headers", w.Headers, g.Headers}} {
			if reflect.DeepEqual(list.w, list.g) {
				continue
			}
			fmt.Fprintf(&b, "  Requests[%d].%s (nil: engine %v, ceiling %v):\n", i, list.name, list.w == nil, list.g == nil)
			for j := 0; j < max(len(list.w), len(list.g)); j++ {
				var pw, pg string
				if j < len(list.w) {
					pw = list.w[j].Name + "=" + strconv.Quote(list.w[j].Value)
				}
				if j < len(list.g) {
					pg = list.g[j].Name + "=" + strconv.Quote(list.g[j].Value)
				}
				mark := " "
				if pw != pg {
					mark = "≠"
				}
				fmt.Fprintf(&b, "   %s %2d engine: %-40s ceiling: %s\n", mark, j, pw, pg)
			}
		}
	}
	return b.String()
}

// TestCeilingMatchesEngine runs the engine and the hand-written ceiling on every corpus event
// and fails on the first event where their results differ. With now in mid-2024 about half of
// the events are rejected as in the future, which covers that path too.
func TestCeilingMatchesEngine(t *testing.T) {
	prog := loadDefault(t)
	c := ceiling.New()
	events := benchCorpus()
	tests := []struct {
		name    string
		now     time.Time
		minSend int // events that must be sent, so the comparison is not vacuous
	}{
		{"now 2025", time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), 9900},
		{"now mid-2024", time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), 4000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outcomes := map[string]int{}
			// The reuse paths map every event into one Result per side, from a buffer that is
			// overwritten before the comparison, so a result sharing the event's memory or a
			// slice left over from an earlier event shows up as a difference.
			var engineRes, ceilRes mapping.Result
			buf := make([]byte, 0, 4096)
			for i, ev := range events {
				want := prog.Run(ev, tt.now)
				got := c.Run(ev, tt.now)
				if d := diffResults(want, got); d != "" {
					t.Fatalf("event %d: ceiling differs from engine:\n%s\nevent: %s", i, d, ev)
				}
				buf = append(buf[:0], ev...)
				prog.RunInto(&engineRes, buf, tt.now)
				c.RunInto(&ceilRes, buf, tt.now)
				clear(buf)
				if d := diffResults(normalized(want), normalized(engineRes)); d != "" {
					t.Fatalf("event %d: the engine's RunInto differs from its Run:\n%s\nevent: %s", i, d, ev)
				}
				if d := diffResults(normalized(want), normalized(ceilRes)); d != "" {
					t.Fatalf("event %d: the ceiling's RunInto differs from the engine's Run:\n%s\nevent: %s", i, d, ev)
				}
				outcomes[want.Outcome.String()+" "+want.Code]++
			}
			if outcomes["send "] < tt.minSend {
				t.Errorf("only %d of %d events were sent, want at least %d: %v", outcomes["send "], len(events), tt.minSend, outcomes)
			}
			t.Logf("outcomes: %v", outcomes)
		})
	}
}

// TestCeilingMatchesEngineEdgeCases compares the two on events the corpus does not contain:
// other call types, rejections, odd values and duplicate keys.
func TestCeilingMatchesEngineEdgeCases(t *testing.T) {
	prog := loadDefault(t)
	c := ceiling.New()
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		event   string
		outcome mapping.Outcome
		code    string
	}{
		{"screen", `{"type":"screen","name":"Home","anonymousId":"a","properties":{"name":"x","app":"y","email":"e","k":1},"context":{"traits":{"email":"E@x.io"}}}`, mapping.Send, ""},
		{"group", `{"type":"group","groupId":"g","anonymousId":"a"}`, mapping.Skipped, ""},
		{"alias", `{"type":"alias","previousId":"p","userId":"u"}`, mapping.Skipped, ""},
		{"unknown type", `{"type":"Track","anonymousId":"a"}`, mapping.Skipped, ""},
		{"numeric type", `{"type":5,"anonymousId":"a"}`, mapping.Skipped, ""},
		{"object type", `{"type":{"a": 1},"anonymousId":"a"}`, mapping.Skipped, ""},
		{"no type", `{"anonymousId":"a"}`, mapping.Skipped, ""},
		{"invalid JSON", `{"type":"track",`, mapping.Rejected, mapping.RejectInvalidJSON},
		{"array", `[{"type":"track"}]`, mapping.Rejected, mapping.RejectInvalidJSON},
		{"null", `null`, mapping.Rejected, mapping.RejectInvalidJSON},
		{"empty object", `{}`, mapping.Skipped, ""},
		{"track without event", `{"type":"track","anonymousId":"a"}`, mapping.Rejected, mapping.RejectMissing},
		{"track with empty event", `{"type":"track","event":"","anonymousId":"a"}`, mapping.Rejected, mapping.RejectMissing},
		{"track with null event", `{"type":"track","event":null,"anonymousId":"a"}`, mapping.Rejected, mapping.RejectMissing},
		{"numeric event", `{"type":"track","event":42,"anonymousId":"a"}`, mapping.Send, ""},
		{"object event", `{"type":"track","event":{"a": [1, 2]},"anonymousId":"a"}`, mapping.Send, ""},
		{"no identity", `{"type":"track","event":"x"}`, mapping.Rejected, mapping.RejectNoIdentity},
		{"empty identities", `{"type":"track","event":"x","anonymousId":"","userId":null,"traits":{"email":""}}`, mapping.Rejected, mapping.RejectNoIdentity},
		{"whitespace email only", `{"type":"identify","traits":{"email":"   "}}`, mapping.Rejected, mapping.RejectNoIdentity},
		{"whitespace email absent after trim", `{"type":"identify","anonymousId":"a","traits":{"email":" \t "}}`, mapping.Send, ""},
		{"trimmed-away email does not fall through", `{"type":"track","event":"x","anonymousId":"a","traits":{"email":" "},"context":{"traits":{"email":"c@x"}}}`, mapping.Send, ""},
		{"numeric email", `{"type":"identify","anonymousId":"a","traits":{"email":5}}`, mapping.Rejected, mapping.RejectExpression},
		{"big numeric email", `{"type":"identify","anonymousId":"a","traits":{"email":9007199254740993}}`, mapping.Rejected, mapping.RejectExpression},
		{"float email", `{"type":"identify","anonymousId":"a","traits":{"email":1.5}}`, mapping.Rejected, mapping.RejectExpression},
		{"bool email", `{"type":"identify","anonymousId":"a","traits":{"email":true}}`, mapping.Rejected, mapping.RejectExpression},
		{"object email", `{"type":"identify","anonymousId":"a","traits":{"email":{"a":1}}}`, mapping.Rejected, mapping.RejectExpression},
		{"array email", `{"type":"identify","anonymousId":"a","traits":{"email":["x"]}}`, mapping.Rejected, mapping.RejectExpression},
		{"non-ASCII email", `{"type":"identify","traits":{"email":" ÉMILE@Exämple.COM "}}`, mapping.Send, ""},
		{"escaped email", `{"type":"identify","traits":{"email":"J\u00c9@X.io"}}`, mapping.Send, ""},
		{"email from properties", `{"type":"identify","userId":"u","properties":{"email":"P@x.io"}}`, mapping.Send, ""},
		{"email from track properties", `{"type":"track","event":"x","properties":{"email":"P@x.io","revenue":null}}`, mapping.Send, ""},
		{"empty timestamp", `{"type":"track","event":"x","anonymousId":"a","timestamp":""}`, mapping.Rejected, mapping.RejectBadValue},
		{"object timestamp", `{"type":"track","event":"x","anonymousId":"a","timestamp":{}}`, mapping.Rejected, mapping.RejectBadValue},
		{"bad timestamp", `{"type":"track","event":"x","anonymousId":"a","timestamp":"yesterday"}`, mapping.Rejected, mapping.RejectBadValue},
		{"null timestamp falls back", `{"type":"track","event":"x","anonymousId":"a","timestamp":null,"originalTimestamp":"2024-01-02","receivedAt":"2024-01-03T00:00:00Z"}`, mapping.Send, ""},
		{"receivedAt", `{"type":"page","anonymousId":"a","receivedAt":"2024-01-03T00:00:00+0530"}`, mapping.Send, ""},
		{"epoch seconds", `{"type":"track","event":"x","anonymousId":"a","timestamp":1704067200.25}`, mapping.Send, ""},
		{"future timestamp", `{"type":"track","event":"x","anonymousId":"a","timestamp":"2026-01-01T00:00:00Z"}`, mapping.Rejected, mapping.RejectFuture},
		{"future timestamp without identity", `{"type":"track","event":"x","timestamp":"2026-01-01T00:00:00Z"}`, mapping.Rejected, mapping.RejectNoIdentity},
		{"bad email before bad timestamp", `{"type":"track","event":"x","anonymousId":"a","traits":{"email":1},"timestamp":""}`, mapping.Rejected, mapping.RejectExpression},
		{"cookie from context.Woopra", `{"type":"track","event":"x","anonymousId":"a","context":{"Woopra":{"cookie":"c1"}}}`, mapping.Send, ""},
		{"cookie from woopra_cookie", `{"type":"track","event":"x","anonymousId":"a","context":{"externalIds":[{"id":"c2","type":"woopra_cookie"}]}}`, mapping.Send, ""},
		{"cookie from externalId", `{"type":"track","event":"x","anonymousId":"a","context":{"externalId":[{"id":"c3","type":"woopraId"}]}}`, mapping.Send, ""},
		{"cookie from vendor_ids", `{"type":"track","event":"x","anonymousId":"a","vendor_ids":{"woopra_cookie":"c4"}}`, mapping.Send, ""},
		{"empty Woopra cookie", `{"type":"track","event":"x","anonymousId":"a","integrations":{"Woopra":{"cookie":""}}}`, mapping.Send, ""},
		{"numeric cookie", `{"type":"track","event":"x","integrations":{"Woopra":{"cookie":12345}}}`, mapping.Send, ""},
		{"externalIds not an array", `{"type":"track","event":"x","anonymousId":"a","context":{"externalIds":{"type":"woopra","id":"z"}}}`, mapping.Send, ""},
		{"numeric userId", `{"type":"track","event":"x","userId":12345}`, mapping.Send, ""},
		{"userId from traits", `{"type":"track","event":"x","traits":{"userId":"t1"},"context":{"traits":{"userId":"t2","name":"N"}}}`, mapping.Send, ""},
		{"userId from context.traits", `{"type":"track","event":"x","traits":{},"context":{"traits":{"userId":"t2","name":"N"}}}`, mapping.Send, ""},
		{"traits not an object", `{"type":"identify","traits":"x","context":{"traits":{"userId":"t2","email":"a@b"}}}`, mapping.Send, ""},
		{"ip and headers", `{"type":"track","event":"x","anonymousId":"a","context":{"ip":"","userAgent":"UA 1/2","locale":""}}`, mapping.Send, ""},
		{"object ip", `{"type":"track","event":"x","anonymousId":"a","context":{"ip":{"v4":"1.2.3.4"},"locale":"de"}}`, mapping.Send, ""},
		{"page fields", `{"type":"page","anonymousId":"a","name":"","category":"C","properties":{"name":"N","url":"","title":null,"referrer":"r","search":"?q=1","password":"p","category":"pc"},"context":{"page":{"url":"U","title":"T","referrer":"R"}}}`, mapping.Send, ""},
		{"page without properties", `{"type":"page","anonymousId":"a","context":{"page":{"url":"U","title":"T","referrer":"R"}}}`, mapping.Send, ""},
		{"page properties not an object", `{"type":"page","anonymousId":"a","properties":[1],"context":{"page":{"url":"U"}}}`, mapping.Send, ""},
		{"explicit and excluded keys", `{"type":"track","event":"Order Completed","anonymousId":"a","properties":{"app":"a","amount":1,"revenue":"9.99","email":"x","my_password":"p","order":{"revenue":2,"password":"p","app":"z"}}}`, mapping.Send, ""},
		{"revenue object", `{"type":"track","event":"x","anonymousId":"a","properties":{"revenue":{"v": 1}}}`, mapping.Send, ""},
		{"flatten depth", `{"type":"track","event":"x","anonymousId":"a","properties":{"a":{"b":{"c":{"d":{"e":1}},"n":null},"e":{}},"arr":[ 1, {"x" : 2} ]}}`, mapping.Send, ""},
		{"flatten collision", `{"type":"track","event":"x","anonymousId":"a","properties":{"a_b":1,"a":{"b":2,"c":3},"a_c":4}}`, mapping.Send, ""},
		{"empty and escaped keys", `{"type":"track","event":"x","anonymousId":"a","properties":{"":1,"a\"b":2,"sp ace":"v w","é":"ü","q\u0041":true}}`, mapping.Send, ""},
		{"whitespace JSON", "{ \"type\" : \"track\" ,\n \"event\" : \"Signed Up\", \"anonymousId\":\"a\", \"properties\" : { \"o\" : { \"a\" : { \"b\" : { \"c\" : [ 1 , 2 ] } } } , \"l\" : [ 1 , \"two\" ] } }", mapping.Send, ""},
		{"traits spread", `{"type":"identify","userId":"u","traits":{"id":"u","userId":"u","anonymousId":"a","email":"A@B.C","name":"N","company":{"name":"Co","id":7,"address":{"geo":{"lat":1}}},"password":"p","n":null,"e":""}}`, mapping.Send, ""},
		{"duplicate root keys", `{"type":"track","event":"a","event":"b","userId":"u1","userId":"u2","anonymousId":"x"}`, mapping.Send, ""},
		{"duplicate integrations", `{"type":"track","event":"a","integrations":{"Woopra":{"cookie":"c1"},"Woopra":{"cookie":"c2"}}}`, mapping.Send, ""},
		{"duplicate traits objects", `{"type":"identify","anonymousId":"a","traits":{"email":"first@x","name":"F"},"traits":{"name":"S","plan":"pro"}}`, mapping.Send, ""},
		{"duplicate traits then string", `{"type":"identify","anonymousId":"a","traits":{"email":"first@x"},"traits":"s","context":{"traits":{"plan":"p"}}}`, mapping.Send, ""},
		{"duplicate context", `{"type":"track","event":"x","anonymousId":"a","context":{"ip":"1","traits":{"email":"a@x"}},"context":{"userAgent":"U","traits":{"name":"N"}}}`, mapping.Send, ""},
		{"duplicate properties", `{"type":"track","event":"x","anonymousId":"a","properties":{"revenue":1,"k":1},"properties":{"k":2}}`, mapping.Send, ""},
		{"repeated keys do not exhaust a level", `{"type":"identify","anonymousId":"a","traits":{"email":"a@x","email":"b@x","email":"c@x","name":"N"}}`, mapping.Send, ""},
		{"repeated keys do not exhaust the root", `{"type":"track","type":"track","type":"track","type":"track","type":"track","type":"track","type":"track","type":"track","type":"track","type":"track","type":"track","type":"track","event":"e","anonymousId":"a","userId":"u"}`, mapping.Send, ""},
		{"duplicate context after a string", `{"type":"track","event":"x","anonymousId":"a","context":"c","context":{"ip":"1","traits":{"email":"a@x"}}}`, mapping.Send, ""},
		{"duplicate type", `{"type":"alias","type":"track","event":"x","anonymousId":"a"}`, mapping.Skipped, ""},
		{"duplicate page keys", `{"type":"page","anonymousId":"a","context":{"page":{"url":"U1","url":"U2","title":"T"},"page":{"referrer":"R"}}}`, mapping.Send, ""},
		{"duplicate Woopra cookies", `{"type":"track","event":"x","integrations":{"Woopra":"w","Woopra":{"cookie":"c1"}},"context":{"Woopra":{"cookie":"c2","cookie":"c3"}}}`, mapping.Send, ""},
		{"duplicate traits, first empty", `{"type":"track","event":"x","anonymousId":"a","traits":{},"traits":{"email":"e@x","plan":"p"},"context":{"traits":{"name":"N","plan":"c"}}}`, mapping.Send, ""},
		{"duplicate spread keys", `{"type":"track","event":"x","anonymousId":"a","properties":{"k":1,"k":2,"o":{"a":1},"o":{"a":2,"b":3},"o_b":4}}`, mapping.Send, ""},
		{"duplicate traits spread keys", `{"type":"identify","userId":"u","traits":{"plan":"a","plan":"b","plan":null,"co":{"n":"x"},"co_n":"y","email":"E@x","email":"F@x"}}`, mapping.Send, ""},
		{"empty traits fall through", `{"type":"track","event":"x","anonymousId":"a","traits":{ },"context":{"traits":{"plan":"p","email":"C@x"}}}`, mapping.Send, ""},
		{"both traits empty", `{"type":"identify","anonymousId":"a","traits":{},"context":{"traits":{}}}`, mapping.Send, ""},
		{"empty trait values", `{"type":"identify","anonymousId":"a","traits":{"plan":"p","e":"","o":{},"a":[],"ws":[ ],"n":null,"zero":0,"f":false,"d":{"x":{"y":{},"z":[],"w":"","v":1}},"s":" "}}`, mapping.Send, ""},
		{"only empty trait values", `{"type":"identify","anonymousId":"a","traits":{"e":"","o":{"p":{}}}}`, mapping.Send, ""},
		{"empty property values", `{"type":"track","event":"x","anonymousId":"a","properties":{"e":"","a":[],"o":{},"d":{"x":{"y":{},"z":[]}}}}`, mapping.Send, ""},
		{"object trait name", `{"type":"identify","anonymousId":"a","traits":{"name":{"first":"A"},"company":{"name":"C"}},"context":{"traits":{"name":"N"}}}`, mapping.Send, ""},
		{"object page name", `{"type":"page","anonymousId":"a","properties":{"name":{"a":1},"category":{"b":2},"url":{"c":3},"title":"T","app":"x","path":"/p"}}`, mapping.Send, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := prog.Run([]byte(tt.event), now)
			got := c.Run([]byte(tt.event), now)
			if d := diffResults(want, got); d != "" {
				t.Fatalf("ceiling differs from engine:\n%s\nevent: %s", d, tt.event)
			}
			if want.Outcome != tt.outcome || want.Code != tt.code {
				t.Errorf("engine: %s %q (%s%s), want %s %q", want.Outcome, want.Code, want.Error, want.Reason, tt.outcome, tt.code)
			}
		})
	}
}
