// Package importer moves history into Woopra: it reads the archives an earlier pipeline wrote
// (Segment's S3 destination, RudderStack's event archive, or plain NDJSON, gzipped or not),
// from a local folder or file or from object storage (S3-compatible or GCS, through
// gocloud.dev/blob), keeps the events whose time falls in a window, and hands them in batches
// to a Sink, normally a relay's /v1/import (HTTPSink), so that they are queued, mapped by a
// source's preset, delivered, retried and dead-lettered as live events are.
//
// Once only: a Checkpoint (an append-only journal of its own, since the relay's dedup window
// is 24 hours and history is older) records, after the relay acknowledged each batch, how many
// lines of which object are done; a re-run skips them, and a run killed half-way resumes at the
// last acknowledged batch. The batches that were in flight when it was killed are sent again
// with the same messageIds (an event without one gets an id derived from its object and line),
// so the relay's dedup drops them.
//
// Throttling: HTTPSink waits while the relay's queue (read from its /metrics) holds more than
// it delivers in MaxDelay, so that a live event queued behind the import waits about that long
// at most; Options.Rate caps the events per second.
package importer
