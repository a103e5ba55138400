package mapping_test

import (
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/tidwall/gjson"

	"github.com/woorelay/woorelay/mapping"
)

// concurrencyPreset exercises every part of a run that keeps per-run state: the path walk,
// expressions (materialized values, the VM, the bound value), templates, tables, spreads,
// identity and the contract.
const concurrencyPreset = `tables:
  names: {match: case_insensitive, otherwise: keep, rows: {Order Completed: purchase, page: pv}}
common:
  fields:
    project: {setting: project}
    cookie: {first: [integrations.Woopra.cookie, anonymousId], present: non_empty}
    cv_id: {first: [userId, traits.userId, context.traits.userId], present: non_empty}
    cv_email: {first: [traits.email, context.traits.email], present: non_empty, transform: lower(trim(value))}
    timestamp: {first: [timestamp, originalTimestamp], as: epoch_ms}
  headers:
    User-Agent: {path: context.userAgent, present: non_empty}
  spread:
    - {first: [traits, context.traits], prefix: cv_, exclude: [userId, email, "*password*"], nested: flatten}
mappings:
  - name: track
    when: type == "track"
    endpoint: ce
    fields:
      event: {path: event, lookup: names, required: true}
      ce_total: {expr: properties.price * properties.quantity}
      ce_label: {template: "{{ event }} x{{ properties.quantity }} ({{ upper(type) }})"}
      ce_n: {path: properties.n, as: int, on_error: drop}
    spread:
      - {from: properties, prefix: ce_, exclude: [price], nested: json}
  - name: page
    when: type == "page"
    endpoint: ce
    fields:
      event: {value: page, lookup: names}
      ce_url: {first: [properties.url, context.page.url], present: non_empty}
  - name: identify
    when: type == "identify"
    endpoint: identify
  - name: group
    when: type == "group"
    skip: "group {{ groupId }}"
  - name: alias
    when: type == "alias"
    reject: {code: alias, message: "alias {{ userId }}"}
`

func concurrencyEvents() []string {
	events := []string{
		`{"type":"track","event":"Order Completed","userId":"u1","properties":{"price":9.5,"quantity":2,"sku":"A 1","n":"3"},"timestamp":"2024-06-01T11:00:00.123Z","context":{"userAgent":"ua/1"}}`,
		`{"type":"track","event":"order completed","anonymousId":"anon","properties":{"price":3,"quantity":4,"n":"x","nested":{ "a" : [1, 2] }},"originalTimestamp":1717239600}`,
		`{"type":"track","event":"Other","traits":{"email":" Ann@Example.COM ","plan":{"tier":"pro"},"password":"p"},"properties":{"price":1,"quantity":1}}`,
		`{"type":"track","userId":"u2","properties":{}}`,
		`{"type":"track","event":"x","userId":"u3","timestamp":"2024-06-09T00:00:00Z"}`,
		`{"type":"track","event":"x","userId":"u3","timestamp":"not a time"}`,
		`{"type":"track","event":"x"}`,
		`{"type":"page","userId":"u4","properties":{"url":"https://example.com/a b"},"context":{"traits":{"name":"Ann"}}}`,
		`{"type":"identify","userId":"u5","traits":{"email":"a@b.c","address":{"city":"Paris","geo":{"lat":1.50}}}}`,
		`{"type":"group","groupId":"g1","userId":"u6"}`,
		`{"type":"alias","userId":"u7"}`,
		`{"type":"screen","userId":"u8"}`,
		`not json`,
		`[1,2,3]`,
	}
	for i := 0; i < 20; i++ {
		events = append(events, fmt.Sprintf(`{"type":"track","event":"e%d","userId":"u%d","properties":{"price":%d,"quantity":%d.5,"i":%d}}`, i, i, i, i, i))
	}
	return events
}

func TestConcurrentRuns(t *testing.T) {
	p := compile(t, concurrencyPreset)
	events := concurrencyEvents()
	want := make([]mapping.Result, len(events))
	outcomes := map[mapping.Outcome]int{}
	for i, ev := range events {
		want[i] = p.Run([]byte(ev), now)
		outcomes[want[i].Outcome]++
	}
	// The corpus must exercise every outcome, or the test proves little.
	if outcomes[mapping.Send] < 10 || outcomes[mapping.Rejected] < 4 || outcomes[mapping.Skipped] < 2 {
		t.Fatalf("outcomes %v: the corpus does not exercise every path", outcomes)
	}
	// Spot-check a few sequential results so the comparison below is against correct values.
	checkParam(t, want[0], "ce_total", "19")
	checkParam(t, want[0], "event", "purchase")
	checkParam(t, want[0], "ce_label", "Order Completed x2 (TRACK)")
	checkParam(t, want[1], "ce_n", absent)
	checkParam(t, want[2], "cv_email", "ann@example.com")
	checkParam(t, want[2], "cv_plan_tier", "pro")

	const goroutines = 8
	const rounds = 50
	var wg sync.WaitGroup
	errs := make(chan string, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			// The reuse path maps into one Result per goroutine, from a buffer overwritten as
			// soon as RunInto returns; the previous sent event's URL must survive the next call.
			var reused mapping.Result
			var buf []byte
			prevURL, prevWant := "", ""
			for r := 0; r < rounds; r++ {
				for k := range events {
					// Each goroutine walks the events in a different order.
					i := (k*(g+1) + r) % len(events)
					var got mapping.Result
					switch (g + r) % 4 {
					case 0:
						got, _ = p.Explain([]byte(events[i]), now)
					case 1:
						buf = append(buf[:0], events[i]...)
						p.RunInto(&reused, buf, now)
						clear(buf)
						if prevURL != prevWant {
							errs <- fmt.Sprintf("goroutine %d round %d: an earlier URL changed to %q, want %q", g, r, prevURL, prevWant)
							return
						}
						got = withNils(reused)
						if got.Outcome == mapping.Send {
							prevURL, prevWant = got.Requests[0].URL, want[i].Requests[0].URL
						}
					default:
						got = p.RunString(events[i], now)
					}
					if !reflect.DeepEqual(got, want[i]) {
						errs <- fmt.Sprintf("goroutine %d round %d event %d:\n got %+v\nwant %+v", g, r, i, got, want[i])
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// withNils copies r with the empty slices RunInto leaves (with their capacity) as Run leaves
// them: nil.
func withNils(r mapping.Result) mapping.Result {
	if len(r.Warnings) == 0 {
		r.Warnings = nil
	}
	if len(r.Requests) == 0 {
		r.Requests = nil
		return r
	}
	reqs := make([]mapping.Request, len(r.Requests))
	for i, q := range r.Requests {
		q.Params = append([]mapping.Param{}, q.Params...)
		if len(q.Headers) == 0 {
			q.Headers = nil
		} else {
			q.Headers = append([]mapping.Param(nil), q.Headers...)
		}
		reqs[i] = q
	}
	r.Requests = reqs
	return r
}

// TestRunIntoMatchesRun maps events of every outcome into one reused Result and checks each
// result against Run's, including after a sent event's slices were reused for a longer one.
func TestRunIntoMatchesRun(t *testing.T) {
	p := compile(t, concurrencyPreset)
	events := concurrencyEvents()
	var res mapping.Result
	for pass := 0; pass < 2; pass++ {
		for i, ev := range events {
			want := p.Run([]byte(ev), now)
			p.RunInto(&res, []byte(ev), now)
			if got := withNils(res); !reflect.DeepEqual(got, want) {
				t.Errorf("pass %d event %d:\n got %+v\nwant %+v", pass, i, got, want)
			}
		}
	}
}

// TestRunStoredIntoMatchesRunInto: skipping the validity scan changes nothing for well-formed
// events, whatever their outcome.
func TestRunStoredIntoMatchesRunInto(t *testing.T) {
	p := compile(t, concurrencyPreset)
	var res, stored mapping.Result
	n := 0
	for i, ev := range concurrencyEvents() {
		if !gjson.Valid(ev) {
			continue
		}
		n++
		p.RunInto(&res, []byte(ev), now)
		p.RunStoredInto(&stored, []byte(ev), now)
		if !reflect.DeepEqual(withNils(stored), withNils(res)) {
			t.Errorf("event %d:\n stored %+v\nchecked %+v", i, stored, res)
		}
	}
	if n == 0 {
		t.Fatal("no well-formed event to compare")
	}
}
