package emulator

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestFaultSteps(t *testing.T) {
	type req struct {
		query  string // appended to project=p.com&event=e
		status int
		fault  string
	}
	cases := []struct {
		name   string
		faults Faults
		reqs   []req
		stored int // actions stored in the end
	}{
		{"sequence then normal", Faults{Sequence: []Step{500, 503}},
			[]req{{"cookie=a", 500, "sequence:500"}, {"cookie=b", 503, "sequence:503"}, {"cookie=a", 200, ""}}, 1},
		{"always until cleared", Faults{Always: 500},
			[]req{{"cookie=a", 500, "always:500"}, {"cookie=a", 500, "always:500"}}, 0},
		{"sequence before always", Faults{Sequence: []Step{403}, Always: 502},
			[]req{{"cookie=a", 403, "sequence:403"}, {"cookie=a", 502, "always:502"}}, 0},
		{"2xx steps answer normally", Faults{Sequence: []Step{202, 204}},
			[]req{{"cookie=a", 202, "sequence:202"}, {"cookie=a", 204, "sequence:204"}}, 2},
		{"visitor script then 200", Faults{Visitors: map[string][]Step{"v7": {500, 500, 200}, "v9": {403}}},
			[]req{{"cv_id=v7", 500, "visitor:500"}, {"cv_id=v9", 403, "visitor:403"}, {"cv_id=v7", 500, "visitor:500"},
				{"cv_id=v9", 200, ""}, {"cv_id=v7", 200, "visitor:200"}, {"cv_id=v7", 200, ""}}, 3},
		{"visitor script before the sequence", Faults{Sequence: []Step{503}, Visitors: map[string][]Step{"v1": {429}}},
			[]req{{"cookie=v1", 429, "visitor:429"}, {"cookie=v1", 503, "sequence:503"}, {"cookie=v1", 200, ""}}, 1},
		{"script found by cookie when the id has none", Faults{Visitors: map[string][]Step{"c1": {500}}},
			[]req{{"cv_id=u1&cookie=c1", 500, "visitor:500"}, {"cv_id=u1&cookie=c1", 200, ""}}, 1},
		{"cv_id script before the cookie's", Faults{Visitors: map[string][]Step{"c1": {502}, "u1": {500}}},
			[]req{{"cv_id=u1&cookie=c1", 500, "visitor:500"}, {"cv_id=u1&cookie=c1", 502, "visitor:502"}, {"cookie=c1", 200, ""}}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(Options{})
			if err := e.SetFaults(c.faults); err != nil {
				t.Fatal(err)
			}
			for i, r := range c.reqs {
				w := send(t, e, "GET", "/track/ce?project=p.com&event=e&"+r.query, "", "")
				rec := last(t, e)
				if w.Code != r.status || rec.Status != r.status || rec.Fault != r.fault {
					t.Errorf("request %d (%s): status %d/%d fault %q, want %d %q", i, r.query, w.Code, rec.Status, rec.Fault, r.status, r.fault)
				}
				if r.status >= 300 && rec.Outcome != OutcomeFault {
					t.Errorf("request %d: outcome %q", i, rec.Outcome)
				}
			}
			stored := 0
			for _, v := range e.Visitors() {
				stored += len(v.Actions)
			}
			if stored != c.stored {
				t.Errorf("%d actions stored, want %d", stored, c.stored)
			}
		})
	}
}

func TestFaultRetryAfter(t *testing.T) {
	e := New(Options{})
	e.SetFaults(Faults{Sequence: []Step{429, 503, 500}, RetryAfter: "7"})
	for _, want := range []struct {
		status int
		header string
	}{{429, "7"}, {503, "7"}, {500, ""}} {
		w := send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", "")
		if w.Code != want.status || w.Header().Get("Retry-After") != want.header {
			t.Errorf("status %d Retry-After %q, want %d %q", w.Code, w.Header().Get("Retry-After"), want.status, want.header)
		}
	}
	if st := e.Stats(); st.Faults != 3 || st.ByStatus[429] != 1 || st.ByOutcome[OutcomeFault] != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestFaultThenFixed(t *testing.T) {
	e := New(Options{})
	e.SetFaults(Faults{Always: 403})
	for i := 0; i < 3; i++ {
		if w := send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", ""); w.Code != 403 {
			t.Fatalf("status %d, want 403", w.Code)
		}
	}
	e.ClearFaults()
	if w := send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", ""); w.Code != 200 {
		t.Fatalf("after the fix: status %d", w.Code)
	}
	if !reflect.DeepEqual(e.Faults(), Faults{}) {
		t.Errorf("faults left: %+v", e.Faults())
	}
}

func TestFaultLatency(t *testing.T) {
	e := New(Options{})
	const delay = 30 * time.Millisecond
	e.SetFaults(Faults{Latency: Duration(delay)})
	start := time.Now()
	w := send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", "")
	if elapsed := time.Since(start); elapsed < delay || w.Code != 200 {
		t.Errorf("answered %d after %v, want 200 after at least %v", w.Code, elapsed, delay)
	}
	if r := last(t, e); time.Duration(r.Delay) != delay || r.Fault != "" {
		t.Errorf("record delay %v fault %q", time.Duration(r.Delay), r.Fault)
	}

	// A client that gives up during the latency is recorded as abandoned.
	e.SetFaults(Faults{Latency: Duration(time.Hour)})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("GET", "/track/ce?project=p&cookie=c&event=e", nil).WithContext(ctx)
	e.ServeHTTP(httptest.NewRecorder(), req)
	if r := last(t, e); r.Outcome != OutcomeAbandoned || r.Status != 0 {
		t.Errorf("record %+v", r)
	}
}

func TestFaultHangReleased(t *testing.T) {
	e := New(Options{})
	srv := httptest.NewServer(e)
	defer srv.Close()
	e.SetFaults(Faults{Always: StepHang})
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 2)
	for i := 0; i < 2; i++ {
		go func() {
			resp, err := http.Get(srv.URL + fmt.Sprintf("/track/ce?project=p&cookie=c%d&event=e&response=json", i))
			if err != nil {
				done <- result{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			done <- result{status: resp.StatusCode, body: string(b)}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.WaitHanging(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Hanging != 2 || st.ByOutcome[OutcomeHanging] != 2 {
		t.Errorf("stats while hanging %+v", st)
	}
	for _, r := range e.Requests() {
		if r.Outcome != OutcomeHanging || r.Status != 0 || r.Fault != "always:hang" {
			t.Errorf("hanging record %+v", r)
		}
	}
	select {
	case r := <-done:
		t.Fatalf("answered while hanging: %+v", r)
	default:
	}
	if n := e.Release(); n != 2 {
		t.Errorf("released %d, want 2", n)
	}
	for i := 0; i < 2; i++ {
		r := <-done
		if r.err != nil || r.status != 200 || r.body != JSONReply {
			t.Errorf("after release: %+v", r)
		}
	}
	for _, r := range e.Requests() {
		if r.Outcome != OutcomeOK || r.Status != 200 || r.Fault != "always:hang" {
			t.Errorf("released record %+v", r)
		}
	}
	// Release cleared the hang: the next request is answered at once.
	resp, err := http.Get(srv.URL + "/track/ce?project=p&cookie=c9&event=e")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after release: %v %v", resp, err)
	}
	resp.Body.Close()
	if len(e.Visitors()) != 3 {
		t.Errorf("%d visitors, want 3", len(e.Visitors()))
	}
}

func TestFaultHangAbandoned(t *testing.T) {
	e := New(Options{})
	e.Script("v1", StepHang)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		req := httptest.NewRequest("GET", "/track/ce?project=p&cv_id=v1&event=e", nil).WithContext(ctx)
		e.ServeHTTP(httptest.NewRecorder(), req)
		close(served)
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	if err := e.WaitHanging(wctx, 1); err != nil {
		t.Fatal(err)
	}
	cancel() // the client gives up
	<-served
	r := last(t, e)
	if r.Outcome != OutcomeAbandoned || r.Status != 0 || r.Fault != "visitor:hang" {
		t.Errorf("record %+v", r)
	}
	if st := e.Stats(); st.Hanging != 0 || st.ByStatus[0] != 1 || len(e.Visitors()) != 0 {
		t.Errorf("stats %+v visitors %d", st, len(e.Visitors()))
	}
	// The script is used up: the retry is answered.
	if w := send(t, e, "GET", "/track/ce?project=p&cv_id=v1&event=e", "", ""); w.Code != 200 {
		t.Errorf("retry: %d", w.Code)
	}
}

func TestFaultReset(t *testing.T) {
	e := New(Options{})
	srv := httptest.NewServer(e)
	defer srv.Close()
	e.SetFaults(Faults{Sequence: []Step{StepReset}})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Get(srv.URL + "/track/ce?project=p&cookie=c&event=e")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d, want a dropped connection", resp.StatusCode)
	}
	if r := last(t, e); r.Outcome != OutcomeReset || r.Status != 0 || r.Fault != "sequence:reset" {
		t.Errorf("record %+v", r)
	}
	resp, err = client.Get(srv.URL + "/track/ce?project=p&cookie=c&event=e")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("after the reset: %v %v", resp, err)
	}
	resp.Body.Close()
}

func TestFaultValidation(t *testing.T) {
	e := New(Options{})
	for _, f := range []Faults{
		{Sequence: []Step{42}},
		{Always: 600},
		{Visitors: map[string][]Step{"v": {-5}}},
		{Latency: Duration(-time.Second)},
	} {
		if err := e.SetFaults(f); err == nil {
			t.Errorf("SetFaults(%+v) accepted", f)
		}
	}
	if err := e.Script("v", 0); err == nil {
		t.Error("Script with step 0 accepted")
	}
	if !reflect.DeepEqual(e.Faults(), Faults{}) {
		t.Errorf("an invalid fault was kept: %+v", e.Faults())
	}
	e.Script("v", 500, 200)
	e.Script("w", 403)
	e.Script("w")
	if got := e.Faults().Visitors; !reflect.DeepEqual(got, map[string][]Step{"v": {500, 200}}) {
		t.Errorf("scripts %v", got)
	}
}

func TestStepAndDurationJSON(t *testing.T) {
	cases := []struct {
		in   string
		want Step
		ok   bool
	}{
		{`500`, 500, true}, {`"503"`, 503, true}, {`"hang"`, StepHang, true}, {`"RESET"`, StepReset, true},
		{`42`, 0, false}, {`"soon"`, 0, false}, {`true`, 0, false},
	}
	for _, c := range cases {
		var s Step
		err := json.Unmarshal([]byte(c.in), &s)
		if (err == nil) != c.ok || s != c.want {
			t.Errorf("%s: %v %v, want %v ok=%v", c.in, s, err, c.want, c.ok)
		}
	}
	b, _ := json.Marshal([]Step{500, StepHang, StepReset})
	if string(b) != `[500,"hang","reset"]` {
		t.Errorf("marshal %s", b)
	}
	for in, want := range map[string]time.Duration{`"250ms"`: 250 * time.Millisecond, `1500`: 1500 * time.Millisecond, `"2s"`: 2 * time.Second} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("%s: %v %v", in, time.Duration(d), err)
		}
	}
	var d Duration
	if json.Unmarshal([]byte(`"soon"`), &d) == nil || json.Unmarshal([]byte(`{}`), &d) == nil {
		t.Error("bad durations accepted")
	}
	if b, _ := json.Marshal(Duration(time.Second)); string(b) != `"1s"` {
		t.Errorf("marshal %s", b)
	}
}

// TestScriptedVisitorsConcurrently runs 50 visitors × 40 events over HTTP, each visitor
// sending in order and retrying until a 2xx, with scripted failures for v7 and v9, and checks
// what each visitor's records and timeline say.
func TestScriptedVisitorsConcurrently(t *testing.T) {
	const visitors, events = 50, 40
	e := New(Options{})
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	e.Script("v7", 500, 500, 200)
	e.Script("v9", 403)
	var wg sync.WaitGroup
	errs := make(chan error, visitors)
	for v := 0; v < visitors; v++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < events; i++ {
				for attempt := 0; ; attempt++ {
					resp, err := srv.Client().Get(fmt.Sprintf("%s/track/ce?project=p.com&cv_id=v%d&event=e%d&timestamp=%d", srv.URL, v, i, 1700000000000+i))
					if err != nil {
						errs <- err
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode/100 == 2 {
						break
					}
					if attempt > 5 {
						errs <- fmt.Errorf("v%d e%d: still %d", v, i, resp.StatusCode)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	st := e.Stats()
	if st.Requests != visitors*events+3 || st.ByStatus[500] != 2 || st.ByStatus[403] != 1 || st.ByStatus[200] != visitors*events {
		t.Errorf("stats %+v", st)
	}
	for v := 0; v < visitors; v++ {
		id := fmt.Sprintf("v%d", v)
		var statuses []int
		var sent []string
		for _, r := range e.RequestsOf(id) {
			statuses = append(statuses, r.Status)
			if r.Status == 200 {
				sent = append(sent, r.Params.Get("event"))
			}
		}
		wantStatuses := make([]int, events)
		for i := range wantStatuses {
			wantStatuses[i] = 200
		}
		switch id {
		case "v7":
			wantStatuses = append([]int{500, 500}, wantStatuses...)
		case "v9":
			wantStatuses = append([]int{403}, wantStatuses...)
		}
		if !reflect.DeepEqual(statuses, wantStatuses) {
			t.Errorf("%s statuses %v", id, statuses)
		}
		profile, ok := e.Visitor(id)
		if !ok || len(profile.Actions) != events {
			t.Fatalf("%s: %d actions", id, len(profile.Actions))
		}
		for i, a := range profile.Actions {
			if want := fmt.Sprintf("e%d", i); a.Name != want || sent[i] != want {
				t.Errorf("%s action %d is %q (sent %q), want %q", id, i, a.Name, sent[i], want)
				break
			}
		}
	}
}
