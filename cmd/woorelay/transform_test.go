package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

const testNow = "2026-11-22T00:00:00Z"

// transformLines runs `woorelay transform` and decodes its JSON lines.
func transformLines(t *testing.T, args ...string) ([]map[string]any, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append([]string{"transform", "--now", testNow}, args...), strings.NewReader(""), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, errb.String())
	}
	var lines []map[string]any
	for _, ln := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(ln), &m); err != nil {
			t.Fatalf("output line is not JSON: %q: %v", ln, err)
		}
		lines = append(lines, m)
	}
	return lines, out.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("..", "..", "testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/woorelay -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("output differs from %s (go test ./cmd/woorelay -update rewrites it)\n got: %s\nwant: %s", path, got, want)
	}
}

func onlyRequest(t *testing.T, line map[string]any) map[string]any {
	t.Helper()
	if line["outcome"] != "send" {
		t.Fatalf("outcome %v, want send: %v", line["outcome"], line)
	}
	reqs := line["requests"].([]any)
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	return reqs[0].(map[string]any)
}

// Datafly Signal's documented purchase example gives exactly its documented request.
func TestDataflyPurchaseExample(t *testing.T) {
	lines, raw := transformLines(t, "--preset", "default", "--set", "project=mywebsite.com", "--set", "app=datafly-signal", "../../testdata/datafly_purchase.json")
	if len(lines) != 1 {
		t.Fatalf("%d lines, want 1", len(lines))
	}
	req := onlyRequest(t, lines[0])
	if req["method"] != "GET" || req["endpoint"] != "/track/ce" || !strings.HasPrefix(req["url"].(string), "https://www.woopra.com/track/ce?") {
		t.Errorf("request line = %v %v %v, want GET https://www.woopra.com/track/ce", req["method"], req["endpoint"], req["url"])
	}
	want := map[string]string{ // Datafly's documented query, plus timestamp
		"project": "mywebsite.com", "response": "json", "timeout": "1800000", "ce_app": "datafly-signal",
		"event": "purchase", "cookie": "AH47DHS5SF182DIQZJD", "ip": "203.0.113.50",
		"cv_email": "jane.doe@example.com", "cv_name": "Jane Doe", "ce_order_id": "ORD-001",
		"ce_amount": "149.95", "ce_currency": "USD", "ce_coupon": "WELCOME10", "timestamp": "1795169730250",
	}
	params := req["params"].(map[string]any)
	if len(params) != len(want) {
		t.Errorf("%d params, want %d: %v", len(params), len(want), params)
	}
	for k, v := range want {
		if params[k] != v {
			t.Errorf("param %s = %v, want %q", k, params[k], v)
		}
	}
	ua := "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15"
	if h := req["headers"].(map[string]any); h["User-Agent"] != ua || len(h) != 1 {
		t.Errorf("headers = %v, want only the documented User-Agent", h)
	}
	golden(t, "datafly_purchase.transform.jsonl", raw)
}

// An identify event becomes one /track/identify request with cv_ traits and no event.
func TestIdentify(t *testing.T) {
	lines, raw := transformLines(t, "--set", "project=mywebsite.com", "../../testdata/identify.json")
	req := onlyRequest(t, lines[0])
	if req["endpoint"] != "/track/identify" || !strings.HasPrefix(req["url"].(string), "https://www.woopra.com/track/identify?") {
		t.Errorf("endpoint %v url %v, want /track/identify", req["endpoint"], req["url"])
	}
	params := req["params"].(map[string]any)
	if _, ok := params["event"]; ok {
		t.Errorf("identify carries event=%v", params["event"])
	}
	for k, v := range map[string]string{"cv_id": "user-123", "cv_email": "jane.doe@example.com", "cv_name": "Jane Doe", "cv_company": "Acme Ltd", "cv_plan": "pro", "cv_logins": "42", "cookie": "5f0c9f8e-2a51-4d7e-9a37-0b1f2a3c4d5e"} {
		if params[k] != v {
			t.Errorf("param %s = %v, want %q", k, params[k], v)
		}
	}
	for k := range params {
		if strings.HasPrefix(k, "ce_") {
			t.Errorf("identify carries event property %s", k)
		}
	}
	golden(t, "identify.transform.jsonl", raw)
}

// Every outcome of a mixed NDJSON file, in input order, as a golden file.
func TestMixedOutcomes(t *testing.T) {
	lines, raw := transformLines(t, "--set", "project=example.com", "../../testdata/mixed.ndjson")
	want := []struct{ outcome, code string }{
		{"send", ""}, {"send", ""}, {"send", ""}, {"skipped", ""},
		{"rejected", "no_identity"}, {"rejected", "timestamp_in_future"}, {"rejected", "bad_value"}, {"rejected", "invalid_json"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), raw)
	}
	for i, w := range want {
		if lines[i]["index"] != float64(i) || lines[i]["outcome"] != w.outcome || (w.code != "" && lines[i]["code"] != w.code) {
			t.Errorf("line %d = %v, want index %d outcome %s code %q", i, lines[i], i, w.outcome, w.code)
		}
	}
	golden(t, "mixed.transform.jsonl", raw)
}

// The input forms transform accepts all give the same events.
func TestInputForms(t *testing.T) {
	ev := `{"type":"track","event":"E","anonymousId":"a","timestamp":"2026-11-20T00:00:00Z"}`
	for name, input := range map[string]string{
		"object":      ev,
		"array":       "[" + ev + "," + ev + "]",
		"batch":       `{"batch":[` + ev + "," + ev + `],"sentAt":"2026-11-20T00:00:00Z"}`,
		"ndjson":      ev + "\n\n" + ev + "\n",
		"pretty json": "{\n  \"type\": \"track\",\n  \"event\": \"E\",\n  \"anonymousId\": \"a\"\n}\n",
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run([]string{"transform", "--set", "project=p.com", "--now", testNow, "-"}, strings.NewReader(input), &out, &errb); code != 0 {
				t.Fatalf("exit %d: %s", code, errb.String())
			}
			n := strings.Count(out.String(), "\n")
			want := strings.Count(input, `"type"`)
			if n != want || strings.Count(out.String(), `"outcome":"send"`) != want {
				t.Errorf("got %d lines, want %d sends:\n%s", n, want, out.String())
			}
		})
	}
}

// Configuration errors exit 2 and print file:line:col, a code and a hint.
func TestConfigErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"unknown setting":  {[]string{"--set", "project=p.com", "--set", "projet=x"}, `--set: unknown_setting: unknown setting "projet" (hint: did you mean "project"?)`},
		"missing project":  {nil, `--set: bad_setting: setting "project" is required`},
		"bad preset file":  {[]string{"--preset", "../../testdata/bad_unknown_key.yaml", "--set", "project=p.com"}, "../../testdata/bad_unknown_key.yaml:"},
		"unknown preset":   {[]string{"--preset", "nosuch"}, `nosuch: unknown_preset: there is no built-in preset "nosuch"`},
		"bad --set syntax": {[]string{"--set", "project"}, `want KEY=VALUE`},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"transform"}, tc.args...), strings.NewReader("{}"), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, errb.String(), tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("a configuration error printed output: %q", out.String())
			}
		})
	}
}

// TestTransformRunawayExpression: `woorelay transform` runs with the evaluation limits: an
// expression that would build a 2^40-byte string rejects its event with expression_error and
// the next event is mapped as usual.
func TestTransformRunawayExpression(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "poison.yaml"), []byte(poisonMapping), 0o644)
	events := filepath.Join(dir, "events.ndjson")
	os.WriteFile(events, []byte(`{"type":"track","event":"Poison","userId":"u1"}
{"type":"track","event":"Fine","userId":"u1"}
`), 0o644)
	lines, raw := transformLines(t, "--set", "project=example.com", "--mappings", dir, events)
	if len(lines) != 2 || lines[0]["outcome"] != "rejected" || lines[0]["code"] != "expression_error" || !strings.Contains(raw, "expression limit") {
		t.Fatalf("output, want the first event rejected with expression_error:\n%s", raw)
	}
	onlyRequest(t, lines[1])
}
