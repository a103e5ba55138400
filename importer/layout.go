package importer

import (
	"regexp"
	"strconv"
	"time"
)

// Layout names how an archive lays out its objects.
type Layout string

const (
	// Segment is Segment's S3 destination: segment-logs/<source-id>/<received-day>/<file>.gz,
	// where received-day is the UTC day's start in Unix milliseconds and each file is
	// gzipped NDJSON of the events as Segment stored them.
	Segment Layout = "segment"
	// RudderStack is RudderStack's event archive (rudder-server's archiver, which Event
	// Replay reads): <source-id>/<archive-from>/<YYYY-MM-DD>/<hour>/<instance>/
	// <first>_<last>_<workspace>_<uuid>.json.gz, first and last being the Unix seconds of
	// the first and last job received; each line is {"userId", "payload", "createdAt",
	// "messageId"} with the gateway's payload, an event or {"batch": [...], "receivedAt"}.
	RudderStack Layout = "rudderstack"
	// NDJSON is any other object: newline-delimited events, gzipped or not (RudderStack's
	// records are recognised line by line there too).
	NDJSON Layout = "ndjson"
)

var (
	segmentKey = regexp.MustCompile(`(?:^|/)segment-logs/[^/]+/(\d{10,13})/[^/]+$`)
	rudderKey  = regexp.MustCompile(`(?:^|/)\d{4}-\d{2}-\d{2}/\d{1,2}/[^/]+/(\d{9,11})_(\d{9,11})_[^/]*\.json\.gz$`)
)

// Classify tells an object's layout from its key and, when the layout says so, when the
// events it holds were received: [from, to). Zero times mean unknown.
func Classify(key string) (l Layout, from, to time.Time) {
	if m := segmentKey.FindStringSubmatch(key); m != nil {
		ms, _ := strconv.ParseInt(m[1], 10, 64)
		if len(m[1]) <= 10 {
			ms *= 1000
		}
		day := time.UnixMilli(ms).UTC()
		return Segment, day, day.Add(24 * time.Hour)
	}
	if m := rudderKey.FindStringSubmatch(key); m != nil {
		first, _ := strconv.ParseInt(m[1], 10, 64)
		last, _ := strconv.ParseInt(m[2], 10, 64)
		return RudderStack, time.Unix(first, 0).UTC(), time.Unix(last+1, 0).UTC()
	}
	return NDJSON, time.Time{}, time.Time{}
}
