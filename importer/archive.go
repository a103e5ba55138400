package importer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/mapping/corpus"
)

// ArchiveSpec describes a synthetic archive in one of the layouts, made of corpus events
// (mapping/corpus) spread evenly over a time span: what the tests and the bench's import
// stage import.
type ArchiveSpec struct {
	Layout    Layout
	Events    int           // how many events
	Start     time.Time     // time of the first event
	Span      time.Duration // the events are spread evenly over [Start, Start+Span)
	PerObject int           // events in one object (default 1,000)
	Seed      int64         // corpus seed (default 1)
	Marker    string        // property (track, page) or trait (identify) holding the event's number (default "import_n")
	ID        string        // prefix of the messageIds, unique to the archive (default "imp")
}

// ArchivedEvent is one event of a synthetic archive: its number (the marker's value), its
// time, and the event as a Segment archive stores it (with a timestamp).
type ArchivedEvent struct {
	N     int
	At    time.Time
	Event []byte
}

// WriteArchive makes the archive of spec and hands each object to put with its key (under
// segment-logs/ for Segment, <source-id>/gw/ for RudderStack, events-NNNNN.ndjson.gz for
// NDJSON). It returns the events in order.
func WriteArchive(spec ArchiveSpec, put func(key string, data []byte) error) ([]ArchivedEvent, error) {
	if spec.PerObject <= 0 {
		spec.PerObject = 1000
	}
	if spec.Seed == 0 {
		spec.Seed = 1
	}
	if spec.Marker == "" {
		spec.Marker = "import_n"
	}
	if spec.ID == "" {
		spec.ID = "imp"
	}
	evs := corpus.Generate(spec.Seed, spec.Events)
	out := make([]ArchivedEvent, 0, spec.Events)
	step := spec.Span / time.Duration(max(1, spec.Events))
	for i, raw := range evs {
		at := spec.Start.Add(time.Duration(i) * step).UTC().Truncate(time.Millisecond)
		ts := strconv.Quote(at.Format(timeLayout))
		ev := setTop(raw, "timestamp", ts)
		ev = setTop(ev, "originalTimestamp", ts)
		ev = setTop(ev, "sentAt", strconv.Quote(at.Add(500*time.Millisecond).Format(timeLayout)))
		ev = setTop(ev, "receivedAt", strconv.Quote(at.Add(time.Second).Format(timeLayout)))
		ev = setTop(ev, "messageId", strconv.Quote(fmt.Sprintf("%s-%d", spec.ID, i)))
		bag := "properties"
		if gjson.GetBytes(ev, "type").Str == "identify" {
			bag = "traits"
		}
		mark := strconv.Quote(spec.Marker) + ":" + strconv.Itoa(i)
		if b := gjson.GetBytes(ev, bag); b.IsObject() && b.Index > 0 {
			if len(gjson.Parse(b.Raw).Map()) > 0 {
				mark += ","
			}
			ev = slices.Concat(ev[:b.Index+1], []byte(mark), ev[b.Index+1:])
		} else {
			ev = setTop(ev, bag, "{"+mark+"}")
		}
		out = append(out, ArchivedEvent{N: i, At: at, Event: ev})
	}
	for first := 0; first < len(out); first += spec.PerObject {
		part := out[first:min(len(out), first+spec.PerObject)]
		key, data, err := archiveObject(spec, first, part)
		if err != nil {
			return nil, err
		}
		if err := put(key, data); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// setTop sets a top-level member of a compact JSON object to the JSON value v.
func setTop(ev []byte, key, v string) []byte {
	if r := gjson.GetBytes(ev, key); r.Exists() && r.Index > 0 {
		return slices.Concat(ev[:r.Index], []byte(v), ev[r.Index+len(r.Raw):])
	}
	body := ev[:len(ev)-1]
	sep := ","
	if len(body) == 1 {
		sep = ""
	}
	return slices.Concat(body, []byte(sep+strconv.Quote(key)+":"+v+"}"))
}

// dropTop removes a top-level member of a compact JSON object.
func dropTop(ev []byte, key string) []byte {
	r := gjson.GetBytes(ev, key)
	if !r.Exists() || r.Index == 0 {
		return ev
	}
	from, to := r.Index-len(strconv.Quote(key))-1, r.Index+len(r.Raw)
	switch {
	case to < len(ev) && ev[to] == ',':
		to++
	case from > 0 && ev[from-1] == ',':
		from--
	}
	return slices.Concat(ev[:from], ev[to:])
}

// PutFile returns a put function for WriteArchive that writes each object to a file under dir.
func PutFile(dir string) func(key string, data []byte) error {
	return func(key string, data []byte) error {
		p := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		return os.WriteFile(p, data, 0o644)
	}
}

// archiveObject lays out one object of events.
func archiveObject(spec ArchiveSpec, first int, part []ArchivedEvent) (string, []byte, error) {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	firstAt, lastAt := part[0].At, part[len(part)-1].At
	var key string
	switch spec.Layout {
	case Segment:
		day := firstAt.Truncate(24 * time.Hour)
		key = fmt.Sprintf("segment-logs/src%d/%d/%d.%08d.gz", spec.Seed, day.UnixMilli(), firstAt.UnixMilli(), first)
		for _, e := range part {
			zw.Write(append(e.Event, '\n'))
		}
	case RudderStack:
		key = fmt.Sprintf("src%d/gw/%s/%d/instance-0/%d_%d_ws1_%08d.json.gz", spec.Seed, firstAt.Format("2006-01-02"), firstAt.Hour(), firstAt.Unix(), lastAt.Add(time.Second).Unix(), first)
		// Gateway jobs of up to 3 events, as RudderStack's gateway stores a request: events
		// without timestamp (the processor computes it), sent and received together.
		for i := 0; i < len(part); i += 3 {
			group := part[i:min(len(part), i+3)]
			recv := group[len(group)-1].At.Add(time.Second)
			var batch []json.RawMessage
			for _, e := range group {
				ev := dropTop(dropTop(e.Event, "timestamp"), "receivedAt")
				// sentAt − originalTimestamp is the time the SDK held the event; the
				// processor's timestamp = receivedAt − that = the event's time.
				batch = append(batch, setTop(ev, "sentAt", strconv.Quote(recv.Format(timeLayout))))
			}
			rec := map[string]any{
				"userId":    "",
				"payload":   map[string]any{"batch": batch, "receivedAt": recv.Format(time.RFC3339Nano), "requestIP": "203.0.113.7"},
				"createdAt": recv.Format(time.RFC3339Nano),
				"messageId": "",
			}
			b, _ := json.Marshal(rec)
			zw.Write(append(b, '\n'))
		}
	default:
		key = fmt.Sprintf("events-%08d.ndjson.gz", first)
		for _, e := range part {
			zw.Write(append(e.Event, '\n'))
		}
	}
	if err := zw.Close(); err != nil {
		return "", nil, err
	}
	return key, buf.Bytes(), nil
}
