package relay

import (
	"fmt"
	"strings"

	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/queue/jetstream"
	"github.com/woorelay/woorelay/server"
)

// queueConfig is the JetStream queue to open: the sources file's queue: section, with the
// servers of --queue when given; nil means the disk queue.
func (c Config) queueConfig() *server.QueueConfig {
	var qc server.QueueConfig
	if c.Sources != nil && c.Sources.Queue != nil {
		qc = *c.Sources.Queue
	}
	if c.QueueURL != "" {
		qc.URLs = strings.Split(c.QueueURL, ",")
	}
	if len(qc.URLs) == 0 {
		return nil
	}
	return &qc
}

// openJetStream opens the queue on the NATS JetStream cluster qc names.
func (r *Relay) openJetStream(qc *server.QueueConfig) (queue.Queue, error) {
	q, err := jetstream.Open(jetstream.Options{
		URL: strings.Join(qc.URLs, ","), CredsFile: qc.CredsFile, Stream: qc.Stream, Replicas: qc.Replicas,
		Partitions: qc.Partitions, DedupWindow: qc.DedupWindow, Logger: r.log,
	})
	if err != nil {
		return nil, fmt.Errorf("open the queue on NATS JetStream: %w", err)
	}
	r.log.Info("queue on NATS JetStream", "queue", q.String())
	return q, nil
}
