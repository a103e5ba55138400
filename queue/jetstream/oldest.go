package jetstream

import (
	"context"
	"fmt"
	"time"
)

// OldestReceived returns when the oldest message still in the items stream was stored (an
// item leaves the stream when it is delivered, filtered or dead-lettered; a replayed dead
// letter counts from its replay). It is one stream info request, and it implements
// queue.OldestReporter.
func (q *Queue) OldestReceived() (time.Time, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := q.items.Info(ctx)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("queue/jetstream: items stream info: %w", err)
	}
	if info.State.Msgs == 0 {
		return time.Time{}, false, nil
	}
	return info.State.FirstTime, true, nil
}
