package server

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/woorelay/woorelay/mapping"
)

// QueueConfig is the queue: section of the sources file: the relay's queue on a NATS
// JetStream cluster shared by several relays instead of the embedded disk queue. The format:
//
//	queue:
//	  urls: [nats://10.0.0.1:4222, nats://10.0.0.2:4222, nats://10.0.0.3:4222]  # or serve --queue
//	  credentials_file: woorelay.creds   # optional: NATS user credentials (relative to this file)
//	  stream: WOORELAY                   # optional: the items stream's name; others are named after it
//	  replicas: 3                        # optional, default 1 (1 to 5; 3 in production)
//	  partitions: 16                     # optional, default 16; fixed once the stream exists
//	  dedup_window: 1h                   # optional, default 1h: how long a messageId is remembered
//
// Changing it needs a restart of serve; a reload keeps the queue the relay started with.
type QueueConfig struct {
	URLs        []string
	CredsFile   string
	Stream      string
	Replicas    int
	Partitions  int
	DedupWindow time.Duration
	Where       string // "file:line:col" of the section
}

var queueKeys = []string{"urls", "credentials_file", "stream", "replicas", "partitions", "dedup_window"}

// queue reads the queue: section.
func (l *loader) queue(n *yaml.Node) *QueueConfig {
	qc := &QueueConfig{Where: fmt.Sprintf("%s:%d:%d", l.file, n.Line, n.Column)}
	if n.Kind != yaml.MappingNode {
		l.errAt(n, mapping.CodeWrongType, "write queue: as a mapping with urls: [nats://host:4222]", "queue must be a mapping")
		return nil
	}
	l.members(n, queueKeys, func(k, v *yaml.Node) {
		switch k.Value {
		case "urls":
			list := l.strList(v, "urls")
			for i, s := range list {
				e := v
				if v.Kind == yaml.SequenceNode && i < len(v.Content) {
					e = v.Content[i]
				}
				if u, err := url.Parse(s); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
					l.errAt(e, mapping.CodeBadValue, "write a NATS server as nats://host:4222 (or tls://host:4222)", "queue url %q is not a nats:// URL", s)
				}
			}
			qc.URLs = list
		case "credentials_file":
			if s := l.str(v); s != "" {
				qc.CredsFile = l.resolve(s)
			}
		case "stream":
			qc.Stream = l.str(v)
			if qc.Stream != "" && strings.ContainsAny(qc.Stream, ". *>\t/\\") {
				l.errAt(v, mapping.CodeBadValue, "use letters, digits, - and _ only", "stream name %q has a character NATS does not allow in stream names", qc.Stream)
			}
		case "replicas":
			qc.Replicas = l.intIn(v, "replicas", 1, 5, "JetStream keeps 1 to 5 copies; use 3 on a 3-node cluster")
		case "partitions":
			qc.Partitions = l.intIn(v, "partitions", 1, 1024, "use a few per relay you plan to run, e.g. 16")
		case "dedup_window":
			d, err := time.ParseDuration(l.str(v))
			if err != nil || d < time.Second {
				l.errAt(v, mapping.CodeBadValue, "write a duration such as 10m or 1h (at least 1s)", "dedup_window %q is not a duration of at least 1s", v.Value)
			}
			qc.DedupWindow = d
		}
	})
	return qc
}

// intIn reads an integer in [lo, hi].
func (l *loader) intIn(v *yaml.Node, what string, lo, hi int, hint string) int {
	n, err := strconv.Atoi(l.str(v))
	if err != nil || n < lo || n > hi {
		l.errAt(v, mapping.CodeBadValue, hint, "%s %q is not a whole number from %d to %d", what, v.Value, lo, hi)
		return 0
	}
	return n
}
