package jetstream

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// OldestReceived returns when the first item still in the items stream was received (an item
// leaves the stream when it is delivered, filtered or dead-lettered; a replayed dead letter
// joins its end). It costs a stream info request and one message read, and it implements
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
	m, err := q.items.GetMsg(ctx, info.State.FirstSeq)
	if err != nil { // removed since the info was read: its store time is close enough
		return info.State.FirstTime, true, nil
	}
	e, err := decodeEntry(m.Data, "item "+strconv.FormatUint(m.Sequence, 10))
	if err != nil || e.Received.IsZero() {
		return m.Time, true, nil
	}
	return e.Received, true, nil
}
