package jetstream

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/woorelay/woorelay/queue"
)

// Privacy on JetStream (queue.Privacy). The suppression list is a KV bucket,
// <stream>_SUPPRESSIONS, shared by every relay on the cluster: one key per selector (its stored
// form in unpadded base64url, as KV keys allow few characters). An erasure reads the items and
// dead-letter streams, counts each removed event filtered once (by an id of its own, as
// delivery counts an outcome) and deletes its message with the server's erase option, which
// overwrites it in the servers' files. A dead letter removed is also taken off the
// dead-lettered counter, so that the replays it derives stay what they were.

var _ queue.Privacy = (*Queue)(nil)

// suppressionBucket returns the suppression list's bucket, creating it on first use.
func (q *Queue) suppressionBucket(ctx context.Context) (jetstream.KeyValue, error) {
	q.supMu.Lock()
	defer q.supMu.Unlock()
	if q.sup != nil {
		return q.sup, nil
	}
	kv, err := q.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: q.o.Stream + "_SUPPRESSIONS", Storage: q.storage(), Replicas: q.o.Replicas,
		Description: "woorelay: persons whose events are not stored nor delivered",
	})
	if err != nil {
		return nil, fmt.Errorf("queue/jetstream: create the suppression bucket: %w", err)
	}
	q.sup = kv
	return kv, nil
}

func supKey(k string) string { return base64.RawURLEncoding.EncodeToString([]byte(k)) }

// AddSuppressions stores the keys in the suppression bucket.
func (q *Queue) AddSuppressions(keys []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := q.suppressionBucket(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if _, err := kv.Put(ctx, supKey(k), []byte(k)); err != nil {
			return fmt.Errorf("queue/jetstream: store suppression %q: %w", k, err)
		}
	}
	return nil
}

// RemoveSuppressions purges the keys from the bucket and says how many were stored.
func (q *Queue) RemoveSuppressions(keys []string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := q.suppressionBucket(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, k := range keys {
		if _, err := kv.Get(ctx, supKey(k)); errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		} else if err != nil {
			return n, fmt.Errorf("queue/jetstream: read suppression %q: %w", k, err)
		}
		if err := kv.Purge(ctx, supKey(k)); err != nil {
			return n, fmt.Errorf("queue/jetstream: remove suppression %q: %w", k, err)
		}
		n++
	}
	return n, nil
}

// Suppressions lists the stored keys, sorted.
func (q *Queue) Suppressions() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := q.suppressionBucket(ctx)
	if err != nil {
		return nil, err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("queue/jetstream: list suppressions: %w", err)
	}
	var out []string
	for k := range lister.Keys() {
		if b, err := base64.RawURLEncoding.DecodeString(k); err == nil {
			out = append(out, string(b))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Erase removes the items and dead letters match selects, each counted filtered, and has the
// servers overwrite their messages.
func (q *Queue) Erase(match func(queue.Entry) bool) (queue.Erased, error) {
	var res queue.Erased
	q.closeMu.RLock()
	closed := q.closed
	q.closeMu.RUnlock()
	if closed {
		return res, queue.ErrClosed
	}
	q.replayMu.Lock()
	defer q.replayMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for after := uint64(0); ; {
		m, err := q.items.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(q.o.Stream+".q.*"))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return res, fmt.Errorf("queue/jetstream: read the items after %d: %w", after, err)
		}
		after = m.Sequence
		e, err := decodeEntry(m.Data, "item")
		if err != nil || !match(e) {
			continue
		}
		if err := q.eraseItem(ctx, m.Sequence, m.Subject); err != nil {
			return res, err
		}
		res.Items++
	}
	n, err := q.removeLetters(ctx, "erase", func(dl queue.DeadLetter) bool { return match(dl.Entry) })
	res.DeadLetters = n
	q.stale()
	return res, err
}

// eraseItem counts item sseq filtered, deletes it with erase, forgets it here, and drops its
// retry state.
func (q *Queue) eraseItem(ctx context.Context, sseq uint64, subject string) error {
	if err := q.count(cFiltered, 1, finID(sseq)); err != nil {
		return err
	}
	if err := q.removeMsg(ctx, q.o.Stream, sseq, true); err != nil {
		return fmt.Errorf("queue/jetstream: erase item %d: %w", sseq, err)
	}
	q.mu.Lock()
	if seq, ok := q.bySSeq[sseq]; ok {
		if r := q.recs[seq]; r != nil {
			q.removeLocked(r)
		}
	}
	q.mu.Unlock()
	if p, err := strconv.Atoi(subject[strings.LastIndexByte(subject, '.')+1:]); err == nil {
		if err := q.states.Purge(ctx, strconv.Itoa(p)+"."+strconv.FormatUint(sseq, 10)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			q.log.Warn("removing an erased item's retry state failed; it expires within 7 days", "item", sseq, "err", err)
		}
	}
	return nil
}

// ExpireDeadLetters removes the dead letters that went dead before cutoff, counted filtered.
func (q *Queue) ExpireDeadLetters(cutoff time.Time) (int, error) {
	q.replayMu.Lock()
	defer q.replayMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := q.removeLetters(ctx, "expire", func(dl queue.DeadLetter) bool { return dl.At.Before(cutoff) })
	q.stale()
	return n, err
}

// removeLetters removes the dead letters sel selects: each counted filtered and taken off the
// dead-lettered counter once (ids named after why), then deleted with erase.
func (q *Queue) removeLetters(ctx context.Context, why string, sel func(queue.DeadLetter) bool) (int, error) {
	n := 0
	for after := uint64(0); ; {
		dls, err := q.DeadLetters(after, 100)
		if err != nil {
			return n, err
		}
		if len(dls) == 0 {
			return n, nil
		}
		for _, dl := range dls {
			after = dl.ID
			if !sel(dl) {
				continue
			}
			id := strconv.FormatUint(dl.ID, 10)
			if err := q.count(cFiltered, 1, why+"-f-"+id); err != nil {
				return n, err
			}
			if err := q.count(cDead, -1, why+"-d-"+id); err != nil {
				return n, err
			}
			if err := q.removeMsg(ctx, q.o.Stream+"_DLQ", dl.ID, true); err != nil {
				return n, fmt.Errorf("queue/jetstream: remove dead letter %d: %w", dl.ID, err)
			}
			n++
		}
	}
}
