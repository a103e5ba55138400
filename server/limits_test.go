package server

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// padEvent returns a track event of exactly n bytes.
func padEvent(t testing.TB, n int) string {
	t.Helper()
	const pre, post = `{"type":"track","event":"Pad","anonymousId":"a-1","properties":{"pad":"`, `"}}`
	if n < len(pre)+len(post) {
		t.Fatalf("cannot pad an event to %d bytes", n)
	}
	return pre + strings.Repeat("x", n-len(pre)-len(post)) + post
}

// padBatch returns a batch body of exactly n bytes (small events, then trailing spaces), or
// of the events alone when n is 0.
func padBatch(t testing.TB, events, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(`{"batch":[`)
	for i := 0; i < events; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"type":"track","event":"E","anonymousId":"a"}`)
	}
	b.WriteString(`]}`)
	if n == 0 {
		return b.String()
	}
	if b.Len() > n {
		t.Fatalf("%d events take %d bytes, more than %d", events, b.Len(), n)
	}
	return b.String() + strings.Repeat(" ", n-b.Len())
}

func nest(depth int) string {
	// depth counts the event object: depth 1 is {}.
	return `{"type":"track","event":"E","anonymousId":"a","properties":` + strings.Repeat(`{"a":`, depth-1) + `1` + strings.Repeat(`}`, depth-1) + `}`
}

// TestLimits sends a body at each limit (accepted) and one byte over it (refused), and the
// other malformed bodies; each refusal names what to fix.
func TestLimits(t *testing.T) {
	ev, req1 := DefaultMaxEventBytes, DefaultMaxRequestBytes
	bigEl := `{"batch":[` + padEvent(t, 100) + `,` + padEvent(t, ev+1) + `]}`
	atEl := `{"batch":[` + padEvent(t, 100) + `,` + padEvent(t, ev) + `]}`
	var bomb bytes.Buffer
	bomb.WriteString(`{"batch":[{"type":"track","event":"E","anonymousId":"a"}]}`)
	bomb.Write(bytes.Repeat([]byte(" "), 20<<20)) // 20 MB of spaces: ~20 KB compressed

	cases := []struct {
		name    string
		path    string
		body    string
		gzip    bool
		chunked bool // no Content-Length: the limit is enforced while reading
		status  int
		code    string
		msg     string // part of the message
	}{
		{"event at the limit", "/v1/track", padEvent(t, ev), false, false, 200, "", ""},
		{"event over the limit", "/v1/track", padEvent(t, ev+1), false, false, 413, "event_too_large", "32768 bytes"},
		{"event over the limit, streamed", "/v1/track", padEvent(t, ev+1), false, true, 413, "event_too_large", ""},
		{"event over the limit once decompressed", "/v1/track", padEvent(t, ev+1), true, false, 413, "decompressed_too_large", ""},
		{"batch at the limit", "/v1/batch", padBatch(t, 10, req1), false, false, 200, "", ""},
		{"batch over the limit", "/v1/batch", padBatch(t, 10, req1+1), false, false, 413, "request_too_large", "512000 bytes"},
		{"batch over the limit, streamed", "/v1/batch", padBatch(t, 10, req1+1), false, true, 413, "request_too_large", ""},
		{"batch at the limit, gzip", "/v1/batch", padBatch(t, 10, req1), true, false, 200, "", ""},
		{"batch over the limit once decompressed", "/v1/batch", padBatch(t, 10, req1+1), true, false, 413, "decompressed_too_large", ""},
		{"gzip bomb", "/v1/batch", bomb.String(), true, true, 413, "decompressed_too_large", ""},
		{"batch element at the limit", "/v1/batch", atEl, false, false, 200, "", ""},
		{"batch element over the limit", "/v1/batch", bigEl, false, false, 413, "event_too_large", "batch[1] is 32769 bytes"},
		{"2,500 events", "/v1/batch", padBatch(t, 2500, 0), false, false, 200, "", ""},
		{"2,501 events", "/v1/batch", padBatch(t, 2501, 0), false, false, 413, "too_many_events", "more than 2500 events"},
		{"nesting at the limit", "/v1/track", nest(64), false, false, 200, "", ""},
		{"nesting over the limit", "/v1/track", nest(65), false, false, 400, "too_deep", "deeper than 64"},
		{"nesting over the limit in a batch", "/v1/batch", `{"batch":[` + nest(65) + `]}`, false, false, 400, "too_deep", "batch[0]: JSON nested deeper than 64"},
		{"nesting at the limit in a batch", "/v1/batch", `{"batch":[` + nest(64) + `]}`, false, false, 200, "", ""},
		{"invalid UTF-8", "/v1/track", `{"event":"caf` + "\xe9" + `","anonymousId":"a"}`, false, false, 400, "invalid_utf8", "byte 13"},
		{"invalid UTF-8 in a name", "/v1/batch", `{"batch":[{"` + "\xff" + `":1,"anonymousId":"a"}]}`, false, false, 400, "invalid_utf8", "byte 12"},
		{"overlong UTF-8", "/v1/track", `{"event":"` + "\xc0\xaf" + `","anonymousId":"a"}`, false, false, 400, "invalid_utf8", "byte 10"},
		{"invalid JSON", "/v1/track", `{"event":"E",,"anonymousId":"a"}`, false, false, 400, "invalid_json", "at byte 13: unexpected ','"},
		{"truncated JSON", "/v1/batch", `{"batch":[{"type":"track"`, false, false, 400, "invalid_json", "at byte 25: unexpected end of input"},
		{"trailing garbage", "/v1/track", `{"event":"E","anonymousId":"a"} x`, false, false, 400, "invalid_json", "at byte 32"},
		{"control character in a string", "/v1/track", "{\"event\":\"a\nb\",\"anonymousId\":\"a\"}", false, false, 400, "invalid_json", "at byte 11"},
		{"bad escape", "/v1/track", `{"event":"\x41","anonymousId":"a"}`, false, false, 400, "invalid_json", "at byte 11"},
		{"empty body", "/v1/track", ``, false, false, 400, "invalid_json", "end of input"},
		{"event is an array", "/v1/track", `[1,2]`, false, false, 400, "not_an_object", "JSON array"},
		{"batch element is a string", "/v1/batch", `{"batch":[{"type":"track","anonymousId":"a"},"x"]}`, false, false, 400, "not_an_object", "batch[1]"},
		{"batch is not an array", "/v1/batch", `{"batch":{"type":"track"}}`, false, false, 400, "invalid_batch", ""},
		{"no batch", "/v1/batch", `{"type":"track","anonymousId":"a"}`, false, false, 400, "missing_batch", ""},
		{"empty batch", "/v1/batch", `{"batch":[]}`, false, false, 400, "empty_batch", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, st := newTest(t, nil)
			body := []byte(tc.body)
			if tc.gzip {
				body = gz(t, body)
			}
			var r *http.Request
			if tc.chunked {
				r = httptest.NewRequest("POST", tc.path, struct{ *bytes.Reader }{bytes.NewReader(body)})
				r.ContentLength = -1
			} else {
				r = httptest.NewRequest("POST", tc.path, bytes.NewReader(body))
			}
			r.Header.Set("Authorization", basic(keyWeb))
			if tc.gzip {
				r.Header.Set("Content-Encoding", "gzip")
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, r)
			if rec.Code != tc.status {
				t.Fatalf("got %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			if tc.status == 200 {
				if len(st.all()) == 0 {
					t.Error("nothing stored")
				}
				return
			}
			code, msg := errBody(t, rec)
			if code != tc.code || !strings.Contains(msg, tc.msg) {
				t.Errorf("got %s %q, want %s containing %q", code, msg, tc.code, tc.msg)
			}
			if len(st.all()) != 0 {
				t.Error("a refused request stored events")
			}
		})
	}
}

// TestCustomLimits checks Options.Limits replace the defaults.
func TestCustomLimits(t *testing.T) {
	s, _ := newTest(t, func(o *Options) {
		o.Limits = Limits{MaxEventBytes: 200, MaxRequestBytes: 1000, MaxBatchEvents: 2, MaxDepth: 4}
	})
	cases := []struct {
		path, body string
		code       string
	}{
		{"/v1/track", padEvent(t, 201), "event_too_large"},
		{"/v1/batch", padBatch(t, 1, 1001), "request_too_large"},
		{"/v1/batch", padBatch(t, 3, 0), "too_many_events"},
		{"/v1/track", nest(5), "too_deep"},
	}
	for _, tc := range cases {
		rec := do(t, s, req{path: tc.path, body: tc.body, headers: map[string]string{"Authorization": basic(keyWeb)}})
		if code, _ := errBody(t, rec); code != tc.code {
			t.Errorf("%s: got %d %s, want %s", tc.body[:20], rec.Code, code, tc.code)
		}
	}
	if rec := do(t, s, req{path: "/v1/track", body: nest(4), headers: map[string]string{"Authorization": basic(keyWeb)}}); rec.Code != 200 {
		t.Errorf("depth 4 under MaxDepth 4: %d %s", rec.Code, rec.Body)
	}
}
