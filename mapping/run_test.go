package mapping_test

import (
	"bytes"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// TestWhen checks that mappings are tried in order, the first true when applies, and skip: and
// reject: mappings end the event.
func TestWhen(t *testing.T) {
	p := compile(t, `identity: {when_none: send}
mappings:
  - name: special
    when: type == "track" && event == "Special"
    endpoint: ce
    fields: {event: {value: special}}
  - name: track
    when: type == "track"
    endpoint: ce
    fields: {event: {path: event}}
  - name: groups
    when: type == "group"
    skip: "group {{ groupId }} ignored"
  - name: aliases
    when: type == "alias"
    reject: {code: no_alias, message: "cannot alias {{ previousId }} to {{ userId }} ({{ upper(type) }})"}
  - name: big
    when: properties.n != nil && properties.n > 10
    endpoint: ce
    fields: {event: {value: big}}
  - name: plain-skip
    when: type == "screen"
    skip: screens are not sent
`)
	tests := []struct {
		name    string
		event   string
		outcome mapping.Outcome
		mapping string
		detail  string // event param when sent; code: message when rejected; reason when skipped
	}{
		{"first match wins", `{"type":"track","event":"Special"}`, mapping.Send, "special", "special"},
		{"second mapping", `{"type":"track","event":"Other"}`, mapping.Send, "track", "Other"},
		{"skip with template reason", `{"type":"group","groupId":"g1"}`, mapping.Skipped, "groups", "group g1 ignored"},
		{"skip with missing placeholder", `{"type":"group"}`, mapping.Skipped, "groups", "group  ignored"},
		{"plain skip reason", `{"type":"screen"}`, mapping.Skipped, "plain-skip", "screens are not sent"},
		{"reject with template message", `{"type":"alias","previousId":"a1","userId":"u1"}`, mapping.Rejected, "aliases",
			"no_alias: cannot alias a1 to u1 (ALIAS)"},
		{"missing path in when is nil", `{"type":"page","properties":{}}`, mapping.Skipped, "",
			`no mapping of preset "t" applies to this event (type "page")`},
		{"numeric when", `{"type":"page","properties":{"n":11}}`, mapping.Send, "big", "big"},
		{"no type", `{"event":"x"}`, mapping.Skipped, "", `no mapping of preset "t" applies to this event (type null)`},
		{"when runtime error does not match", `{"type":"page","properties":{"n":"eleven"}}`, mapping.Skipped, "",
			`no mapping of preset "t" applies to this event (type "page")`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := run(p, tc.event)
			if res.Outcome != tc.outcome || res.Mapping != tc.mapping {
				t.Fatalf("got %s by %q (code %q, error %q, reason %q), want %s by %q",
					res.Outcome, res.Mapping, res.Code, res.Error, res.Reason, tc.outcome, tc.mapping)
			}
			switch tc.outcome {
			case mapping.Send:
				checkParam(t, res, "event", tc.detail)
			case mapping.Skipped:
				if res.Reason != tc.detail {
					t.Errorf("reason %q, want %q", res.Reason, tc.detail)
				}
			case mapping.Rejected:
				if got := res.Code + ": " + res.Error; !strings.HasPrefix(got, tc.detail) {
					t.Errorf("rejection %q, want %q", got, tc.detail)
				}
			}
		})
	}
}

// TestIdentity checks the identity policy: cv_id > cv_email > cookie.
func TestIdentity(t *testing.T) {
	fields := `    fields:
      event: {value: e}
      cv_id: {path: userId, present: non_empty}
      cv_email: {path: traits.email, present: non_empty}
      cookie: {path: anonymousId, present: non_empty}
      ce_k: {value: v}
`
	all := `{"userId":"u1","traits":{"email":"a@b.c"},"anonymousId":"anon"}`
	tests := []struct {
		name     string
		identity string
		event    string
		want     []string // params; nil when rejected
	}{
		{"all sent by default", "", all, []string{"event=e", "cv_id=u1", "cv_email=a@b.c", "cookie=anon", "ce_k=v"}},
		{"cookie alone", "", `{"anonymousId":"anon"}`, []string{"event=e", "cookie=anon", "ce_k=v"}},
		{"none rejected", "", `{"userId":"","anonymousId":null}`, nil},
		{"none rejected explicitly", "identity: {when_none: reject}\n", `{}`, nil},
		{"none sent", "identity: {when_none: send}\n", `{}`, []string{"event=e", "ce_k=v"}},
		{"highest: id wins", "identity: {send: highest}\n", all, []string{"event=e", "cv_id=u1", "ce_k=v"}},
		{"highest: email wins", "identity: {send: highest}\n", `{"traits":{"email":"a@b.c"},"anonymousId":"anon"}`,
			[]string{"event=e", "cv_email=a@b.c", "ce_k=v"}},
		{"highest: cookie wins", "identity: {send: highest}\n", `{"anonymousId":"anon"}`, []string{"event=e", "cookie=anon", "ce_k=v"}},
		{"highest: none rejected", "identity: {send: highest}\n", `{}`, nil},
		{"custom order", "identity: {order: [cookie, cv_email], send: highest}\n", all,
			[]string{"event=e", "cv_id=u1", "cookie=anon", "ce_k=v"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := compile(t, tc.identity+"mappings:\n  - name: m\n    endpoint: ce\n"+fields)
			res := run(p, tc.event)
			if tc.want == nil {
				if res.Outcome != mapping.Rejected || res.Code != "no_identity" || res.Mapping != "m" {
					t.Fatalf("got %s %q by %q, want rejected no_identity by m", res.Outcome, res.Code, res.Mapping)
				}
				for _, id := range []string{"cv_id", "cv_email", "cookie"} {
					if !strings.Contains(res.Error, id) {
						t.Errorf("error %q does not list %s", res.Error, id)
					}
				}
				return
			}
			if got := params(t, res); !equalStrings(got, tc.want) {
				t.Errorf("params\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestFutureTimestamp checks the output contract on timestamps with a frozen now.
func TestFutureTimestamp(t *testing.T) {
	nowMs := now.UnixMilli()
	body := fieldsPreset("timestamp: {path: ts, as: epoch_ms}\n")
	tests := []struct {
		name    string
		ts      string // JSON
		code    string // rejection code, or "" when sent
		wantTS  string
		onFutur string // blueprint on_future; "" for the shipped reject
		warning bool
	}{
		{"past", `"2024-06-01T11:00:00Z"`, "", strconv.FormatInt(nowMs-3600000, 10), "", false},
		{"now", strconv.FormatInt(nowMs, 10), "", strconv.FormatInt(nowMs, 10), "", false},
		{"at the skew limit", strconv.FormatInt(nowMs+300000, 10), "", strconv.FormatInt(nowMs+300000, 10), "", false},
		{"1ms beyond the limit", strconv.FormatInt(nowMs+300001, 10), "timestamp_in_future", "", "", false},
		{"a day ahead", `"2024-06-02T12:00:00Z"`, "timestamp_in_future", "", "", false},
		{"a day ahead in seconds", strconv.FormatInt(now.Unix()+86400, 10), "timestamp_in_future", "", "", false},
		{"clamped", `"2024-06-02T12:00:00Z"`, "", strconv.FormatInt(nowMs, 10), "clamp", true},
		{"dropped", `"2024-06-02T12:00:00Z"`, "", absent, "drop", true},
		{"clamp leaves past alone", `"2024-06-01T11:00:00Z"`, "", strconv.FormatInt(nowMs-3600000, 10), "clamp", false},
		{"bad timestamp", `"soon"`, "bad_value", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bp := woopra(t)
			if tc.onFutur != "" {
				bp = blueprintWith(t, "on_future: reject", "on_future: "+tc.onFutur)
			}
			p, err := mapping.Compile(mapping.Source{File: "inline.yaml", Data: []byte(header + body)},
				mapping.Options{Blueprint: bp, Settings: map[string]string{"project": "p"}})
			if err != nil {
				t.Fatal(err)
			}
			res := run(p, `{"ts":`+tc.ts+`}`)
			if tc.code != "" {
				if res.Outcome != mapping.Rejected || res.Code != tc.code || res.Mapping != "m" {
					t.Fatalf("got %s %q (%s), want rejected %q", res.Outcome, res.Code, res.Error, tc.code)
				}
				return
			}
			checkParam(t, res, "timestamp", tc.wantTS)
			if got := len(res.Warnings) > 0; got != tc.warning {
				t.Errorf("warnings %q, want some: %v", res.Warnings, tc.warning)
			}
		})
	}

	t.Run("timestamp not epoch ms", func(t *testing.T) {
		p := compile(t, fieldsPreset("timestamp: {path: ts}\n"))
		res := run(p, `{"ts":"2024-06-01T11:00:00Z"}`)
		if res.Outcome != mapping.Rejected || res.Code != "bad_value" || !strings.Contains(res.Error, "epoch milliseconds") {
			t.Fatalf("got %s %q (%s), want rejected bad_value", res.Outcome, res.Code, res.Error)
		}
	})
}

// blueprintWith parses the shipped blueprint file with one text replacement.
func blueprintWith(t *testing.T, old, new string) *mapping.Blueprint {
	t.Helper()
	data, err := os.ReadFile("../blueprint/woopra.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("blueprint has no %q", old)
	}
	bp, err := mapping.ParseBlueprint("woopra.yaml", bytes.Replace(data, []byte(old), []byte(new), 1))
	if err != nil {
		t.Fatal(err)
	}
	return bp
}

func TestInvalidJSON(t *testing.T) {
	p := compile(t, fieldsPreset("ce_x: {value: x}\n"))
	for _, ev := range []string{"", "not json", `{"a":`, `{"a":1}}`, `[{"type":"track"}]`, `"track"`, `42`, `null`, `true`, "{'a':1}"} {
		t.Run(ev, func(t *testing.T) {
			res := run(p, ev)
			if res.Outcome != mapping.Rejected || res.Code != "invalid_json" || res.Mapping != "" || res.Error == "" {
				t.Fatalf("got %s %q (%s) mapping %q, want rejected invalid_json", res.Outcome, res.Code, res.Error, res.Mapping)
			}
		})
	}
	t.Run("whitespace around an object is fine", func(t *testing.T) {
		checkParam(t, run(p, " \n{ } \n"), "ce_x", "x")
	})
}

// TestRequestURL checks URL encoding, parameter order, endpoints and headers of the built request.
func TestRequestURL(t *testing.T) {
	body := `mappings:
  - name: track
    when: type == "track"
    endpoint: ce
    fields:
      project: {setting: project}
      event: {path: event}
      cv_email: {path: traits.email}
      ce_text: {path: properties.text}
    headers:
      User-Agent: {path: context.userAgent}
      Accept-Language: {path: context.locale, present: non_empty}
  - name: identify
    when: type == "identify"
    endpoint: identify
    fields:
      project: {setting: project}
      cv_email: {path: traits.email}
      cv_name: {path: traits.name}
`
	tests := []struct {
		name, base, event string
		wantURL           string
		wantHeaders       []string
	}{
		{"track encoding", "", `{"type":"track","event":"Order Completed","traits":{"email":"ann+x@example.com"},"properties":{"text":"naïve 日本 &=?/#%~-._"},"context":{"userAgent":"Mozilla/5.0 (X11)","locale":""}}`,
			"https://www.woopra.com/track/ce?project=my+site.com&event=Order+Completed&cv_email=ann%2Bx%40example.com&ce_text=na%C3%AFve+%E6%97%A5%E6%9C%AC+%26%3D%3F%2F%23%25~-._",
			[]string{"User-Agent=Mozilla/5.0 (X11)"}},
		{"identify has no event", "", `{"type":"identify","event":"ignored","traits":{"email":"a@b.c","name":"Ann Lee"}}`,
			"https://www.woopra.com/track/identify?project=my+site.com&cv_email=a%40b.c&cv_name=Ann+Lee", nil},
		{"base url trailing slash", "http://127.0.0.1:8080/", `{"type":"identify","traits":{"email":"a@b.c"}}`,
			"http://127.0.0.1:8080/track/identify?project=my+site.com&cv_email=a%40b.c", nil},
		{"base url path", "http://emu/woopra", `{"type":"track","event":"x","traits":{"email":"a@b.c"}}`,
			"http://emu/woopra/track/ce?project=my+site.com&event=x&cv_email=a%40b.c", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			settings := map[string]string{"project": "my site.com"}
			if tc.base != "" {
				settings["base_url"] = tc.base
			}
			res := run(compileWith(t, body, settings), tc.event)
			if res.Outcome != mapping.Send || len(res.Requests) != 1 {
				t.Fatalf("got %s %q %q", res.Outcome, res.Code, res.Error)
			}
			req := res.Requests[0]
			if req.URL != tc.wantURL {
				t.Errorf("URL\n got %s\nwant %s", req.URL, tc.wantURL)
			}
			if req.Method != "GET" {
				t.Errorf("method %q", req.Method)
			}
			wantEndpoint := "/track/" + map[bool]string{true: "identify", false: "ce"}[res.Mapping == "identify"]
			if req.Endpoint != wantEndpoint {
				t.Errorf("endpoint %q, want %q", req.Endpoint, wantEndpoint)
			}
			// The query decodes back to exactly the params, in order.
			u, err := url.Parse(req.URL)
			if err != nil {
				t.Fatal(err)
			}
			var pairs []string
			for _, kv := range strings.Split(u.RawQuery, "&") {
				k, v, _ := strings.Cut(kv, "=")
				dk, err1 := url.QueryUnescape(k)
				dv, err2 := url.QueryUnescape(v)
				if err1 != nil || err2 != nil {
					t.Fatalf("bad escape in %q", kv)
				}
				if url.QueryEscape(dv) != v {
					t.Errorf("%q is not encoded like url.QueryEscape (%q)", v, url.QueryEscape(dv))
				}
				pairs = append(pairs, dk+"="+dv)
			}
			if got := params(t, res); !equalStrings(pairs, got) {
				t.Errorf("decoded query %q, params %q", pairs, got)
			}
			var headers []string
			for _, h := range req.Headers {
				headers = append(headers, h.Name+"="+h.Value)
			}
			if !equalStrings(headers, tc.wantHeaders) {
				t.Errorf("headers %q, want %q", headers, tc.wantHeaders)
			}
		})
	}
}

// TestEventRequiredAtRunTime checks that /track/ce is never called without an event name.
func TestEventRequiredAtRunTime(t *testing.T) {
	p := compile(t, "identity: {when_none: send}\nmappings:\n  - name: m\n    endpoint: ce\n    fields:\n      event: {path: event, present: non_empty}\n")
	for _, ev := range []string{`{}`, `{"event":""}`, `{"event":null}`} {
		res := run(p, ev)
		if res.Outcome != mapping.Rejected || res.Code != "contract" || res.Mapping != "m" {
			t.Errorf("%s: got %s %q (%s), want rejected contract", ev, res.Outcome, res.Code, res.Error)
		}
	}
	checkParam(t, run(p, `{"event":"x"}`), "event", "x")
}

// TestCommonInheritance checks that mapping fields replace common ones in place, omit: removes
// them and inherit: false ignores common entirely.
func TestCommonInheritance(t *testing.T) {
	p := compile(t, `identity: {when_none: send}
common:
  fields:
    project: {setting: project}
    event: {path: event}
    ce_a: {value: common-a}
    ce_b: {value: common-b}
  headers:
    User-Agent: {value: ua}
mappings:
  - name: own
    when: type == "own"
    endpoint: ce
    fields:
      ce_a: {value: own-a}
      ce_b: {omit: true}
      ce_c: {value: own-c}
  - name: alone
    when: type == "alone"
    inherit: false
    endpoint: ce
    fields:
      event: {value: alone}
`)
	tests := []struct {
		event   string
		want    []string
		headers int
	}{
		{`{"type":"own","event":"E"}`, []string{"project=example.com", "event=E", "ce_a=own-a", "ce_c=own-c"}, 1},
		{`{"type":"alone","event":"E"}`, []string{"event=alone"}, 0},
	}
	for _, tc := range tests {
		res := run(p, tc.event)
		if got := params(t, res); !equalStrings(got, tc.want) {
			t.Errorf("%s: params %q, want %q", tc.event, got, tc.want)
		}
		if len(res.Requests[0].Headers) != tc.headers {
			t.Errorf("%s: headers %v", tc.event, res.Requests[0].Headers)
		}
	}
}

// TestExplain checks the trace of a run records the decisions made.
func TestExplain(t *testing.T) {
	p := compile(t, `identity: {when_none: send}
tables:
  names: {rows: {Order Completed: purchase}}
mappings:
  - name: skip-pages
    when: type == "page"
    skip: pages
  - name: m
    endpoint: ce
    fields:
      event: {path: event, lookup: names}
      cv_id: {first: [userId, traits.userId], present: non_empty}
      ce_n: {path: properties.n, as: int, on_error: drop}
    spread:
      - {from: properties, prefix: ce_, exclude: [secret]}
`)
	res, tr := p.Explain([]byte(`{"type":"track","event":"Order Completed","userId":"","traits":{"userId":"u7"},"properties":{"n":"x","secret":1,"k":"v"}}`), now)
	if res.Outcome != mapping.Send || tr.Mapping != "m" {
		t.Fatalf("got %s by %q", res.Outcome, tr.Mapping)
	}
	if len(tr.When) != 2 || tr.When[0].Matched || !tr.When[1].Matched {
		t.Errorf("when steps %+v", tr.When)
	}
	byName := map[string]*mapping.FieldTrace{}
	for _, f := range tr.Fields {
		byName[f.Name] = f
	}
	if f := byName["event"]; f == nil || f.Value != "purchase" || !strings.Contains(strings.Join(f.Steps, ";"), "table names") {
		t.Errorf("event trace %+v", f)
	}
	if f := byName["cv_id"]; f == nil || f.Value != "u7" || len(f.Steps) != 2 || !strings.Contains(f.Steps[0], "empty string") || !strings.Contains(f.Steps[1], "wins") {
		t.Errorf("cv_id trace %+v", f)
	}
	if f := byName["ce_n"]; f == nil || !f.Absent || !strings.Contains(strings.Join(f.Steps, ";"), "on_error: drop") {
		t.Errorf("ce_n trace %+v", f)
	}
	if len(tr.Spreads) != 1 || !equalStrings(tr.Spreads[0].Excluded, []string{"secret"}) || !equalStrings(tr.Spreads[0].Collided, []string{"n (explicit wins)"}) ||
		!equalStrings(tr.Spreads[0].Copied, []string{"k"}) {
		t.Errorf("spread trace %+v", tr.Spreads)
	}
	if tr.Result != res.Requests[0].URL || !strings.Contains(tr.String(), "result") {
		t.Errorf("trace result %q", tr.Result)
	}
	// Explain and Run agree.
	plain := p.Run([]byte(`{"type":"track","event":"Order Completed","userId":"","traits":{"userId":"u7"},"properties":{"n":"x","secret":1,"k":"v"}}`), now)
	if plain.Requests[0].URL != res.Requests[0].URL {
		t.Errorf("Run %s, Explain %s", plain.Requests[0].URL, res.Requests[0].URL)
	}
}

// TestWhenNotBoolean checks that a when returning a non-boolean rejects the event loudly
// instead of silently not matching.
func TestWhenNotBoolean(t *testing.T) {
	p := compile(t, `identity: {when_none: send}
mappings:
  - name: odd
    when: type + "x"
    endpoint: ce
    fields:
      event: {value: e}
`)
	res := run(p, `{"type":"track"}`)
	if res.Outcome != mapping.Rejected || res.Code != mapping.RejectExpression || !strings.Contains(res.Error, `when of mapping "odd" did not return true or false`) {
		t.Errorf("got %s %q %q, want rejected expression_error", res.Outcome, res.Code, res.Error)
	}
}
