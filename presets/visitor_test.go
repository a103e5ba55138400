package presets

import (
	"testing"

	"github.com/woorelay/woorelay/mapping"
)

// TestVisitorKey checks that the ordering key follows the identity order cv_id > cv_email > cookie.
func TestVisitorKey(t *testing.T) {
	prog := loadDefault(t)
	cases := []struct {
		name  string
		event string
		want  string
	}{
		{"user id wins", `{"type":"track","event":"A","userId":"u1","anonymousId":"a1","context":{"traits":{"email":"e@x.io"}},"timestamp":"2024-01-01T00:00:00Z"}`, "cv_id=u1"},
		{"email beats cookie", `{"type":"track","event":"A","anonymousId":"a1","context":{"traits":{"email":"e@x.io"}},"timestamp":"2024-01-01T00:00:00Z"}`, "cv_email=e@x.io"},
		{"cookie alone", `{"type":"track","event":"A","anonymousId":"a1","timestamp":"2024-01-01T00:00:00Z"}`, "cookie=a1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := prog.RunString(c.event, benchNow)
			if res.Outcome != mapping.Send {
				t.Fatalf("outcome %v (%s), want send", res.Outcome, res.Error)
			}
			if got := prog.Visitor(res.Requests[0]); got != c.want {
				t.Errorf("Visitor = %q, want %q", got, c.want)
			}
		})
	}
	if got := prog.Visitor(mapping.Request{}); got != "" {
		t.Errorf("Visitor of a request without ids = %q, want empty", got)
	}
}
