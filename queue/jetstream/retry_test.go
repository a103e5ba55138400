package jetstream

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
)

// TestInProgressIsRetriedQuietly: JetStream's answer that a write with the same id is still
// being stored (err_code 10158, seen when a stream leader comes back) is asked again without a
// warning until the write succeeds; a real failure is warned about.
func TestInProgressIsRetriedQuietly(t *testing.T) {
	var logs bytes.Buffer
	q := &Queue{log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	inProgress := fmt.Errorf("queue/jetstream: count filtered: %w", &jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"})
	tries := 0
	err := q.retry(nil, func() error {
		if tries++; tries < 4 {
			return inProgress
		}
		return nil
	})
	if err != nil || tries != 4 {
		t.Fatalf("retry = %v after %d tries, want success on the 4th", err, tries)
	}
	if logs.Len() != 0 {
		t.Errorf("an in-progress answer was logged at info or above:\n%s", logs.String())
	}
	tries = 0
	if err := q.retry(nil, func() error {
		if tries++; tries < 2 {
			return errors.New("nats: timeout")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("a failed write was not warned about: %q", logs.String())
	}
}
