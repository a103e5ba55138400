package importer

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
)

// Sink takes batches of events; Send returns once they are stored (for a relay: acknowledged,
// so synced to its queue). It is called from several goroutines at once.
type Sink interface {
	Send(ctx context.Context, events [][]byte) error
}

// Options of one import.
type Options struct {
	// Objects are the objects to read (List of each location); Run sorts them.
	Objects []Object
	// Since and Until bound the event time: Since ≤ time < Until. Zero: unbounded. Events whose
	// time cannot be read are sent only when neither is set.
	Since, Until time.Time
	// Checkpoint records what the sink acknowledged and is skipped on a re-run; nil: none.
	Checkpoint *Checkpoint
	// Sink receives the batches.
	Sink Sink
	// BatchEvents and BatchBytes bound one batch (defaults 500 and 450,000: under the relay's
	// 500 KB request limit).
	BatchEvents, BatchBytes int
	// MaxEventBytes is the largest event sent (default 32,768, the relay's limit); larger
	// ones are counted in Stats.TooLarge and passed over.
	MaxEventBytes int
	// Concurrency is how many batches may be in flight at once (default 4).
	Concurrency int
	// Rate caps the events sent per second (0: no cap).
	Rate float64
	// Progress, when set, is called after each acknowledged batch and at the end.
	Progress func(Stats)
}

// Stats count what an import did.
type Stats struct {
	Objects        int           // objects listed
	ObjectsPruned  int           // passed over: every event received before the window
	ObjectsDone    int           // finished by this run or an earlier one
	ObjectsResumed int           // of which finished by an earlier run (the checkpoint says)
	Bytes          int64         // stored size of the objects to read
	BytesRead      int64         // of which read so far (and those finished before)
	Events         int64         // events read
	Sent           int64         // events acknowledged by the sink
	OutsideWindow  int64         // events outside the window
	NoTime         int64         // events without a readable time while a window was set
	TooLarge       int64         // events over MaxEventBytes
	Bad            int64         // lines that are not events
	LinesResumed   int64         // lines passed over as acknowledged by an earlier run
	Elapsed        time.Duration // since Run started
	FirstBad       string        // where the first bad line is and why
	FirstTooLarge  string        // where the first event over the limit is
	Done           bool          // set in the last call of Progress
	started        time.Time
	windowSet      bool
}

// Rate returns the events acknowledged per second so far.
func (s Stats) Rate() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Sent) / s.Elapsed.Seconds()
}

// ETA estimates the time left from the share of bytes read so far (0 when unknown).
func (s Stats) ETA() time.Duration {
	if s.BytesRead <= 0 || s.Bytes <= s.BytesRead {
		return 0
	}
	return time.Duration(float64(s.Elapsed) * float64(s.Bytes-s.BytesRead) / float64(s.BytesRead))
}

// receiveSkew is how far past its receipt an event's own time is believed: an object whose
// events were all received more than this before Since holds none in the window.
const receiveSkew = 24 * time.Hour

type batch struct {
	seq    int
	events [][]byte
	bytes  int
	marks  map[string]objectState
}

type ack struct {
	b   *batch
	err error
}

// Run reads the objects and sends the events in the window to o.Sink, in order of the
// objects and of their lines, recording acknowledged progress in o.Checkpoint. It returns the
// stats and the first error; on an error or a cancelled ctx the checkpoint holds every batch
// acknowledged before, in order.
func Run(ctx context.Context, o Options) (Stats, error) {
	if o.BatchEvents <= 0 {
		o.BatchEvents = 500
	}
	if o.BatchBytes <= 0 {
		o.BatchBytes = 450_000
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = 32 << 10
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Checkpoint == nil {
		o.Checkpoint = &Checkpoint{state: map[string]objectState{}, readOnly: true}
	}
	sortObjects(o.Objects)
	r := &runner{o: o, stats: Stats{started: time.Now(), windowSet: !o.Since.IsZero() || !o.Until.IsZero()}}
	for _, ob := range o.Objects {
		r.stats.Objects++
		r.stats.Bytes += ob.Size
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan *batch, o.Concurrency)
	acks := make(chan ack, o.Concurrency)
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				var err error
				if len(b.events) > 0 {
					err = o.Sink.Send(ctx, b.events)
				}
				acks <- ack{b, err}
			}
		}()
	}
	commitDone := make(chan error, 1)
	go func() { commitDone <- r.commit(acks, cancel) }()
	prodErr := r.produce(ctx, work)
	close(work)
	wg.Wait()
	close(acks)
	commitErr := <-commitDone
	st := r.snapshot()
	st.Done = true
	if o.Progress != nil {
		o.Progress(st)
	}
	switch {
	case commitErr != nil:
		return st, commitErr
	case prodErr != nil && context.Cause(ctx) != nil && !errors.Is(context.Cause(ctx), context.Canceled):
		return st, context.Cause(ctx)
	}
	return st, prodErr
}

type runner struct {
	o     Options
	mu    sync.Mutex
	stats Stats
	seq   int
}

func (r *runner) snapshot() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats
	s.Elapsed = time.Since(s.started)
	return s
}

func (r *runner) update(fn func(s *Stats)) {
	r.mu.Lock()
	fn(&r.stats)
	r.mu.Unlock()
}

// commit records acknowledged batches in the checkpoint in the order they were made; the first
// failure cancels the run.
func (r *runner) commit(acks <-chan ack, cancel context.CancelCauseFunc) error {
	pending := map[int]*batch{}
	next := 0
	var first error
	for a := range acks {
		if a.err != nil {
			if first == nil {
				first = a.err
				cancel(a.err)
			}
			continue
		}
		pending[a.b.seq] = a.b
		for first == nil {
			b, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			states := make([]objectState, 0, len(b.marks))
			done := 0
			for _, s := range b.marks {
				states = append(states, s)
				if s.Done {
					done++
				}
			}
			if err := r.o.Checkpoint.advance(states); err != nil {
				first = err
				cancel(err)
				break
			}
			r.update(func(s *Stats) { s.Sent += int64(len(b.events)); s.ObjectsDone += done })
			if r.o.Progress != nil {
				r.o.Progress(r.snapshot())
			}
		}
	}
	return first
}

// produce reads the objects and hands out batches.
func (r *runner) produce(ctx context.Context, work chan<- *batch) error {
	b := r.newBatch()
	var dispatched int64
	flush := func() error {
		if r.o.Rate > 0 && len(b.events) > 0 {
			dispatched += int64(len(b.events))
			wait := time.Until(r.stats.started.Add(time.Duration(float64(dispatched) / r.o.Rate * float64(time.Second))))
			if wait > 0 {
				select {
				case <-ctx.Done():
					return context.Cause(ctx)
				case <-time.After(wait):
				}
			}
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case work <- b:
		}
		b = r.newBatch()
		return nil
	}
	for _, ob := range r.o.Objects {
		id := ob.ID()
		st := r.o.Checkpoint.get(id)
		if st.Size != 0 && st.Size != ob.Size {
			return fmt.Errorf("%s changed since the checkpoint %s recorded it (%d bytes then, %d now); import it with another --checkpoint, or remove the checkpoint to start over (events already sent would be sent again)", id, r.o.Checkpoint.path, st.Size, ob.Size)
		}
		if st.Done {
			r.update(func(s *Stats) { s.ObjectsDone++; s.ObjectsResumed++; s.BytesRead += ob.Size })
			continue
		}
		if !r.o.Since.IsZero() && !ob.To.IsZero() && ob.To.Add(receiveSkew).Before(r.o.Since) {
			r.update(func(s *Stats) { s.ObjectsPruned++; s.ObjectsDone++; s.BytesRead += ob.Size })
			b.marks[id] = objectState{ID: id, Size: ob.Size, Done: true}
			continue
		}
		if err := r.readObject(ctx, ob, st, &b, flush); err != nil {
			return err
		}
	}
	if len(b.events) > 0 || len(b.marks) > 0 {
		return flush()
	}
	return nil
}

func (r *runner) newBatch() *batch {
	b := &batch{seq: r.seq, marks: map[string]objectState{}}
	r.seq++
	return b
}

// countingReader counts the bytes read through it into the runner's stats.
type countingReader struct {
	r  io.Reader
	rr *runner
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.rr.update(func(s *Stats) { s.BytesRead += int64(n) })
	return n, err
}

// readObject reads one object's lines past those already acknowledged into batches.
func (r *runner) readObject(ctx context.Context, ob Object, st objectState, bp **batch, flush func() error) error {
	id := ob.ID()
	rc, err := ob.open(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(countingReader{rc, r}, 256<<10)
	var in io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
		defer zr.Close()
		in = zr
	}
	lines := bufio.NewReaderSize(in, 1<<20)
	var line []byte
	var evs []decoded
	var derr error
	done := st.Lines
	for n := int64(0); ; n++ {
		line, err = readLine(lines, line[:0])
		if err == io.EOF && len(line) == 0 {
			break
		}
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: line %d: %w", id, n+1, err)
		}
		if n < st.Lines {
			r.update(func(s *Stats) { s.LinesResumed++ })
			continue
		}
		evs, derr = decodeLine(line, id+":"+strconv.FormatInt(n+1, 10), evs[:0])
		if derr != nil {
			r.update(func(s *Stats) {
				s.Bad++
				if s.FirstBad == "" {
					s.FirstBad = fmt.Sprintf("%s line %d: %v", id, n+1, derr)
				}
			})
			evs = evs[:0]
		}
		for _, d := range evs {
			if err := r.add(bp, d, id, n, ob.Size, flush); err != nil {
				return err
			}
		}
		done = n + 1
		(*bp).marks[id] = objectState{ID: id, Size: ob.Size, Lines: done}
	}
	(*bp).marks[id] = objectState{ID: id, Size: ob.Size, Lines: done, Done: true}
	return nil
}

// add puts one event in the batch when it is in the window, flushing a full batch first.
func (r *runner) add(bp **batch, d decoded, id string, line, size int64, flush func() error) error {
	ok := true
	r.update(func(s *Stats) {
		s.Events++
		switch {
		case d.at.IsZero() && s.windowSet:
			s.NoTime++
			ok = false
		case !r.o.Since.IsZero() && d.at.Before(r.o.Since), !r.o.Until.IsZero() && !d.at.Before(r.o.Until):
			s.OutsideWindow++
			ok = false
		case len(d.event) > r.o.MaxEventBytes:
			s.TooLarge++
			if s.FirstTooLarge == "" {
				s.FirstTooLarge = fmt.Sprintf("%s line %d (%d bytes)", id, line+1, len(d.event))
			}
			ok = false
		}
	})
	if !ok {
		return nil
	}
	b := *bp
	if len(b.events) >= r.o.BatchEvents || (len(b.events) > 0 && b.bytes+len(d.event)+1 > r.o.BatchBytes) {
		if err := flush(); err != nil {
			return err
		}
		b = *bp
		// The line being read is not done: the new batch starts with the object's last mark.
		b.marks[id] = objectState{ID: id, Size: size, Lines: line}
	}
	b.events = append(b.events, bytes.Clone(d.event))
	b.bytes += len(d.event) + 1
	return nil
}

// maxLine is the longest line read (a RudderStack record holds a whole gateway batch).
const maxLine = 64 << 20

// readLine reads one line (without its newline) of any length into buf.
func readLine(r *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		part, err := r.ReadSlice('\n')
		buf = append(buf, part...)
		if err == bufio.ErrBufferFull {
			if len(buf) > maxLine {
				return buf, fmt.Errorf("a line longer than %d MB: not an event archive", maxLine>>20)
			}
			continue
		}
		if n := len(buf); n > 0 && buf[n-1] == '\n' {
			buf = buf[:n-1]
		}
		return buf, err
	}
}
