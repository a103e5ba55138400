package relay

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/woorelay/woorelay/destination"
	"github.com/woorelay/woorelay/mapping"
	"github.com/woorelay/woorelay/queue"
	"github.com/woorelay/woorelay/server"
)

// sourceMap is the compiled sources delivery maps with, by name, swapped whole by a reload.
type sourceMap struct {
	byName atomic.Pointer[map[string]*server.Source]
}

func newSourceMap(sources []*server.Source) *sourceMap {
	m := &sourceMap{}
	m.set(sources)
	return m
}

// set replaces the sources.
func (m *sourceMap) set(sources []*server.Source) {
	byName := make(map[string]*server.Source, len(sources))
	for _, s := range sources {
		byName[s.Name] = s
	}
	m.byName.Store(&byName)
}

func (m *sourceMap) count() int { return len(*m.byName.Load()) }

// program is the running program of a source, nil when there is no such source.
func (m *sourceMap) program(name string) *mapping.Program {
	if s := (*m.byName.Load())[name]; s != nil {
		return s.Program
	}
	return nil
}

// mapAtDelivery maps stored events with their source's current program, as the dispatcher
// loads them: a fixed preset or mapping applies to the whole backlog and to replayed dead
// letters. A tap, when not nil, sees every outcome. A source with woopra_auth_env gets its
// credentials added to each request here, after the tap saw them: they live in memory only,
// never in the queue, a dead letter or the debugger.
func (m *sourceMap) mapAtDelivery(tap Tap) destination.MapFunc {
	scratch := sync.Pool{New: func() any { return new(mapping.Result) }}
	return func(e queue.Entry) (reqs []queue.Request, filtered string, err error) {
		src := (*m.byName.Load())[e.Source]
		if tap != nil {
			defer func() {
				tap.Mapped(e, reqs, filtered, err)
				reqs = withAuth(reqs, src)
			}()
		} else {
			defer func() { reqs = withAuth(reqs, src) }()
		}
		if e.Source == "" && strings.HasPrefix(e.Reason, queue.ReasonCorruptRecord) {
			return nil, "", fmt.Errorf("a corrupt queue record, not an event, cannot be delivered (%s)", e.Reason)
		}
		if src == nil {
			return nil, "", fmt.Errorf("source %q is not configured any more; add it back to the sources file and replay", e.Source)
		}
		res := scratch.Get().(*mapping.Result)
		src.Map(res, &e)
		scratch.Put(res)
		switch e.Outcome {
		case queue.Deliver:
			return e.Requests, "", nil
		case queue.Filtered:
			return nil, e.Reason, nil
		}
		return nil, "", errors.New(e.Reason)
	}
}

// authHeader is the header woopra_auth_env's credentials travel in.
const authHeader = "Authorization"

// withAuth adds src's HTTP Basic credentials (woopra_auth_env) to each request, on copies:
// the requests the tap saw stay as they were.
func withAuth(reqs []queue.Request, src *server.Source) []queue.Request {
	if src == nil || src.WoopraAuth == "" || len(reqs) == 0 {
		return reqs
	}
	h := queue.Header{Name: authHeader, Value: "Basic " + base64.StdEncoding.EncodeToString([]byte(src.WoopraAuth))}
	out := make([]queue.Request, len(reqs))
	for i, r := range reqs {
		r.Headers = append(append(make([]queue.Header, 0, len(r.Headers)+1), r.Headers...), h)
		out[i] = r
	}
	return out
}

// withoutAuth is r without the credentials withAuth added, for the tap.
func withoutAuth(r queue.Request) queue.Request {
	for i, h := range r.Headers {
		if h.Name == authHeader {
			r.Headers = append(append(make([]queue.Header, 0, len(r.Headers)-1), r.Headers[:i]...), r.Headers[i+1:]...)
			return r
		}
	}
	return r
}
