package emulator

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// decodeLines parses a JSON-lines body into records.
func decodeLines(t *testing.T, body string) []Record {
	t.Helper()
	var out []Record
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

func TestControlRequests(t *testing.T) {
	e := New(Options{})
	send(t, e, "GET", "/track/ce?project=p.com&cookie=c1&event=a&ce_x=1", "", "", "User-Agent", "UA/1")
	send(t, e, "POST", "/track/identify/", "application/json", `{"project":"q.com","cv_id":"u1","cv_name":"Jo"}`)
	e.SetFaults(Faults{Sequence: []Step{500}})
	send(t, e, "GET", "/track/ce?project=p.com&cookie=c1&event=b", "", "")

	w := send(t, e, "GET", "/emulator/requests", "", "")
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d type %q", w.Code, w.Header().Get("Content-Type"))
	}
	rs := decodeLines(t, w.Body.String())
	if len(rs) != 3 {
		t.Fatalf("%d lines", len(rs))
	}
	first := rs[0]
	if first.Seq != 1 || first.Method != "GET" || first.Path != "/track/ce" || first.Status != 200 ||
		first.Headers["User-Agent"] != "UA/1" || first.Project != "p.com" || first.Visitor != "c1" ||
		!reflect.DeepEqual(first.Params, Params{{"project", "p.com"}, {"cookie", "c1"}, {"event", "a"}, {"ce_x", "1"}}) {
		t.Errorf("first line %+v", first)
	}
	if !strings.Contains(w.Body.String(), `"params":{"project":"p.com","cookie":"c1","event":"a","ce_x":"1"}`) {
		t.Errorf("params are not an ordered object: %s", w.Body.String())
	}
	if rs[1].Headers["Content-Type"] != "application/json" || rs[1].Params.Get("cv_name") != "Jo" || rs[2].Fault != "sequence:500" {
		t.Errorf("lines %+v", rs[1:])
	}
	filters := map[string][]uint64{
		"visitor=c1":          {1, 3},
		"project=q.com":       {2},
		"endpoint=identify":   {2},
		"status=500":          {3},
		"outcome=fault":       {3},
		"since=1":             {2, 3},
		"visitor=c1&since=1":  {3},
		"visitor=nobody":      nil,
		"status=200&endpoint": {1, 2},
	}
	for q, want := range filters {
		var got []uint64
		for _, r := range decodeLines(t, send(t, e, "GET", "/emulator/requests?"+q, "", "").Body.String()) {
			got = append(got, r.Seq)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("?%s: seqs %v, want %v", q, got, want)
		}
	}
	for _, q := range []string{"since=x", "status=x"} {
		if w := send(t, e, "GET", "/emulator/requests?"+q, "", ""); w.Code != 400 {
			t.Errorf("?%s: status %d", q, w.Code)
		}
	}
	if w := send(t, e, "DELETE", "/emulator/requests", "", ""); w.Code != 200 || len(e.Requests()) != 0 {
		t.Errorf("delete: %d, %d left", w.Code, len(e.Requests()))
	}
}

func TestControlVisitors(t *testing.T) {
	e := New(Options{})
	send(t, e, "GET", "/track/ce?project=p.com&cookie=c1&event=a", "", "")
	send(t, e, "GET", "/track/identify?project=p.com&cookie=c1&cv_email=j%40x.com&cv_name=Jo", "", "")
	send(t, e, "GET", "/track/ce?project=q.com&cookie=c2&event=b", "", "")

	var all []Visitor
	w := send(t, e, "GET", "/emulator/visitors", "", "")
	if err := json.Unmarshal(w.Body.Bytes(), &all); err != nil || len(all) != 2 {
		t.Fatalf("visitors: %v %s", err, w.Body)
	}
	if all[0].Key != "j@x.com" || all[0].Properties["name"] != "Jo" || len(all[0].Actions) != 1 || all[0].Actions[0].Name != "a" {
		t.Errorf("first visitor %+v", all[0])
	}
	var some []Visitor
	json.Unmarshal(send(t, e, "GET", "/emulator/visitors?project=q.com", "", "").Body.Bytes(), &some)
	if len(some) != 1 || some[0].Key != "c2" {
		t.Errorf("?project=q.com: %+v", some)
	}
	for _, id := range []string{"c1", "j@x.com", "j%40x.com"} {
		var v Visitor
		w := send(t, e, "GET", "/emulator/visitors/"+id, "", "")
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil || w.Code != 200 || v.Key != "j@x.com" {
			t.Errorf("/visitors/%s: %d %s", id, w.Code, w.Body)
		}
	}
	if w := send(t, e, "GET", "/emulator/visitors/c2?project=p.com", "", ""); w.Code != 404 {
		t.Errorf("c2 in p.com: %d", w.Code)
	}
	var empty []Visitor
	e.Reset()
	if err := json.Unmarshal(send(t, e, "GET", "/emulator/visitors", "", "").Body.Bytes(), &empty); err != nil || empty == nil || len(empty) != 0 {
		t.Errorf("after reset: %v %v", empty, err)
	}
}

func TestControlFaults(t *testing.T) {
	e := New(Options{})
	body := `{"sequence":[500,"hang"],"always":"403","latency":"1ms","retry_after":"3","visitors":{"v7":[500,500,200],"v9":[403]}}`
	w := send(t, e, "POST", "/emulator/faults", "application/json", body)
	if w.Code != 200 {
		t.Fatalf("POST faults: %d %s", w.Code, w.Body)
	}
	want := Faults{Sequence: []Step{500, StepHang}, Always: 403, Latency: Duration(time.Millisecond), RetryAfter: "3",
		Visitors: map[string][]Step{"v7": {500, 500, 200}, "v9": {403}}}
	if !reflect.DeepEqual(e.Faults(), want) {
		t.Errorf("faults %+v", e.Faults())
	}
	var got Faults
	if err := json.Unmarshal(send(t, e, "GET", "/emulator/faults", "", "").Body.Bytes(), &got); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("GET faults %+v %v", got, err)
	}
	if w := send(t, e, "POST", "/emulator/scripts", "application/json", `{"v1":["reset"],"v9":[]}`); w.Code != 200 {
		t.Errorf("POST scripts: %d %s", w.Code, w.Body)
	}
	if v := e.Faults().Visitors; !reflect.DeepEqual(v, map[string][]Step{"v7": {500, 500, 200}, "v1": {StepReset}}) {
		t.Errorf("scripts %v", v)
	}
	if w := send(t, e, "DELETE", "/emulator/faults", "", ""); w.Code != 200 || !reflect.DeepEqual(e.Faults(), Faults{}) {
		t.Errorf("DELETE faults: %d %+v", w.Code, e.Faults())
	}
	if w := send(t, e, "PUT", "/emulator/faults", "application/json", `{"always":500}`); w.Code != 200 || e.Faults().Always != 500 {
		t.Errorf("PUT faults: %d %+v", w.Code, e.Faults())
	}
	if w := send(t, e, "POST", "/emulator/faults", "", ""); w.Code != 200 || !reflect.DeepEqual(e.Faults(), Faults{}) {
		t.Errorf("empty POST clears: %d %+v", w.Code, e.Faults())
	}
	for _, bad := range []string{`{"sequence":[42]}`, `{"sequense":[500]}`, `{"latency":"soon"}`, `{`, `[500]`} {
		if w := send(t, e, "POST", "/emulator/faults", "application/json", bad); w.Code != 400 || !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("%s: %d %s", bad, w.Code, w.Body)
		}
	}
	if w := send(t, e, "POST", "/emulator/scripts", "application/json", `{"v":[0]}`); w.Code != 400 {
		t.Errorf("bad script: %d", w.Code)
	}
}

func TestControlReleaseResetStats(t *testing.T) {
	e := New(Options{})
	send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", "")
	e.SetFaults(Faults{Sequence: []Step{502}})
	send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", "")
	var st Stats
	w := send(t, e, "GET", "/emulator/stats", "", "")
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Requests != 2 || st.ByStatus[200] != 1 || st.ByStatus[502] != 1 || st.Faults != 1 || st.Records != 2 || st.Visitors != 1 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(w.Body.String(), `"502": 1`) {
		t.Errorf("by_status keys: %s", w.Body)
	}
	var rel map[string]int
	json.Unmarshal(send(t, e, "POST", "/emulator/release", "", "").Body.Bytes(), &rel)
	if rel["released"] != 0 {
		t.Errorf("release %v", rel)
	}
	e.SetFaults(Faults{Always: 500})
	if w := send(t, e, "POST", "/emulator/reset", "", ""); w.Code != 200 {
		t.Fatalf("reset: %d", w.Code)
	}
	if st := e.Stats(); st.Requests != 0 || len(st.ByStatus) != 0 || st.Records != 0 || st.Visitors != 0 || !reflect.DeepEqual(e.Faults(), Faults{}) {
		t.Errorf("after reset: %+v %+v", st, e.Faults())
	}
	if r := track(t, e, "ce", "cookie=c&event=e"); r.Seq != 1 {
		t.Errorf("seq after reset %d", r.Seq)
	}
}

func TestControlErrors(t *testing.T) {
	e := New(Options{})
	cases := []struct {
		method, path string
		status       int
	}{
		{"GET", "/emulator", 200},
		{"GET", "/emulator/", 200},
		{"POST", "/emulator/requests", 405},
		{"GET", "/emulator/release", 405},
		{"GET", "/emulator/reset", 405},
		{"POST", "/emulator/stats", 405},
		{"PATCH", "/emulator/faults", 405},
		{"GET", "/emulator/scripts", 405},
		{"POST", "/emulator/visitors", 405},
		{"GET", "/emulator/nothing", 404},
		{"GET", "/emulator/stats/x", 404},
	}
	for _, c := range cases {
		w := send(t, e, c.method, c.path, "", "")
		if w.Code != c.status {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, w.Code, c.status)
		}
		if c.status == 405 && w.Header().Get("Allow") == "" {
			t.Errorf("%s %s: no Allow header", c.method, c.path)
		}
	}
	if e.Stats().Requests != 0 {
		t.Error("control requests were counted as tracking requests")
	}
}

func TestStartAndStop(t *testing.T) {
	e := New(Options{})
	url, stop, err := e.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Errorf("url %q", url)
	}
	e.SetFaults(Faults{Sequence: []Step{StepHang}})
	answered := make(chan int, 1)
	go func() {
		resp, err := http.Get(url + "/track/ce?project=p&cookie=c&event=e")
		if err != nil {
			answered <- -1
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.WaitHanging(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Stop releases the hung request and waits for it.
	if err := stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if code := <-answered; code != 200 {
		t.Errorf("hung request answered %d, want 200", code)
	}
	if _, err := http.Get(url + "/emulator/stats"); err == nil {
		t.Error("still serving after stop")
	}
	if len(e.Requests()) != 1 {
		t.Error("records lost after stop")
	}
	if _, _, err := New(Options{}).Start("256.0.0.1:1"); err == nil {
		t.Error("Start on a bad address succeeded")
	}
}

// TestConcurrentEverything hammers tracking and control paths together, for the race detector.
func TestConcurrentEverything(t *testing.T) {
	e := New(Options{MaxRecords: 100})
	srv := httptest.NewServer(e)
	defer srv.Close()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				q := fmt.Sprintf("project=p&cookie=c%d&cv_id=u%d&event=e%d&idptnc=i%d", g, i%3, i, i)
				ep := []string{"ce", "identify", "update", "ping"}[i%4]
				resp, err := srv.Client().Get(srv.URL + "/track/" + ep + "?" + q)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	for g := 0; g < 2; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				for _, p := range []string{"/emulator/requests", "/emulator/visitors", "/emulator/stats", "/emulator/visitors/u1"} {
					resp, err := srv.Client().Get(srv.URL + p)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				e.Script(fmt.Sprintf("u%d", i%3), 503)
				e.Release()
			}
		}()
	}
	wg.Wait()
	st := e.Stats()
	if st.Requests != 400 || st.Records != 100 || st.DroppedRecords != 300 {
		t.Errorf("stats %+v", st)
	}
	if st.ByStatus[200]+st.ByStatus[503] != 400 {
		t.Errorf("statuses %v", st.ByStatus)
	}
}
