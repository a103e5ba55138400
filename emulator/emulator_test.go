package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// send serves one request through the handler and returns the recorder.
func send(t *testing.T, e *Emulator, method, target, contentType, body string, headers ...string) *httptest.ResponseRecorder {
	t.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	var req *http.Request
	if rd != nil {
		req = httptest.NewRequest(method, target, rd)
	} else {
		req = httptest.NewRequest(method, target, nil)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	return w
}

// last returns the most recent record.
func last(t *testing.T, e *Emulator) Record {
	t.Helper()
	rs := e.Requests()
	if len(rs) == 0 {
		t.Fatal("no record")
	}
	return rs[len(rs)-1]
}

func TestEndpointsMethodsAndSlashes(t *testing.T) {
	e := New(Options{})
	for _, endpoint := range []string{"ce", "identify", "ping", "update", "push"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			for _, slash := range []string{"", "/"} {
				path := "/track/" + endpoint + slash
				t.Run(method+" "+path, func(t *testing.T) {
					w := send(t, e, method, path+"?project=p.com&cookie=c1&event=x&response=json", "", "")
					if w.Code != 200 || w.Body.String() != JSONReply {
						t.Fatalf("status %d body %q, want 200 %q", w.Code, w.Body.String(), JSONReply)
					}
					r := last(t, e)
					if r.Endpoint != endpoint || r.Method != method || r.Path != path || r.Status != 200 || r.Outcome != OutcomeOK {
						t.Errorf("record %+v", r)
					}
				})
			}
		}
	}
}

func TestRouting(t *testing.T) {
	e := New(Options{})
	cases := []struct {
		method, target string
		status         int
		endpoint       string
		project        string
	}{
		{"GET", "/track/tp/third.example/ce/?cookie=c&event=e", 200, "ce", "third.example"},
		{"GET", "/track/tp/third.example/ce?project=p.com&cookie=c&event=e", 200, "ce", "p.com"},
		{"GET", "/track/foo?project=p", 404, "", ""},
		{"GET", "/track/", 404, "", ""},
		{"GET", "/track/ce/extra", 404, "", ""},
		{"GET", "/track/tp//ce", 404, "", ""},
		{"GET", "/nope", 404, "", ""},
		{"PUT", "/track/ce?project=p&cookie=c&event=e", 405, "ce", "p"},
		{"DELETE", "/track/identify/", 405, "identify", ""},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			before := len(e.Requests())
			w := send(t, e, c.method, c.target, "", "")
			if w.Code != c.status {
				t.Fatalf("status %d, want %d", w.Code, c.status)
			}
			rs := e.Requests()
			if c.endpoint == "" {
				if len(rs) != before {
					t.Fatalf("a non-tracking path was recorded: %+v", rs[len(rs)-1])
				}
				return
			}
			r := rs[len(rs)-1]
			if r.Endpoint != c.endpoint || r.Status != c.status {
				t.Errorf("record endpoint %q status %d", r.Endpoint, r.Status)
			}
			if c.status == 200 && r.Project != c.project {
				t.Errorf("project %q, want %q", r.Project, c.project)
			}
			if c.status == 405 && (r.Outcome != OutcomeBadRequest || w.Header().Get("Allow") != "GET, POST") {
				t.Errorf("405: outcome %q Allow %q", r.Outcome, w.Header().Get("Allow"))
			}
		})
	}
	if w := send(t, e, "GET", "/", "", ""); w.Code != 200 || !strings.Contains(w.Body.String(), "/emulator/requests") {
		t.Errorf("index: %d %q", w.Code, w.Body.String())
	}
}

func TestParamMerging(t *testing.T) {
	multi := func(fields ...string) (string, string) {
		var b bytes.Buffer
		mw := multipart.NewWriter(&b)
		for i := 0; i+1 < len(fields); i += 2 {
			mw.WriteField(fields[i], fields[i+1])
		}
		mw.Close()
		return mw.FormDataContentType(), b.String()
	}
	mct, mbody := multi("project", "m.com", "cookie", "mc", "ce_x", "1")
	cases := []struct {
		name, method, query, ct, body string
		want                          Params
		warnings                      int
	}{
		{name: "query", method: "GET", query: "project=p&cookie=c&event=e&ce_a=1",
			want: Params{{"project", "p"}, {"cookie", "c"}, {"event", "e"}, {"ce_a", "1"}}},
		{name: "query decoding", method: "GET", query: "project=p&cookie=a%2Bb&ce_t=hello+world&ce_e=%C3%A9",
			want: Params{{"project", "p"}, {"cookie", "a+b"}, {"ce_t", "hello world"}, {"ce_e", "é"}}},
		{name: "empty pairs and trailing &", method: "GET", query: "user-agent=null&&project=p&&cookie=c&",
			want: Params{{"user-agent", "null"}, {"project", "p"}, {"cookie", "c"}}},
		{name: "key without =", method: "GET", query: "project=p&flag&cookie=c",
			want: Params{{"project", "p"}, {"flag", ""}, {"cookie", "c"}}},
		{name: "bad escape kept raw", method: "GET", query: "project=p&ce_bad=%zz&cookie=c",
			want: Params{{"project", "p"}, {"ce_bad", "%zz"}, {"cookie", "c"}}, warnings: 1},
		{name: "duplicate in query: first wins", method: "GET", query: "project=p&event=a&event=b&cookie=c",
			want: Params{{"project", "p"}, {"event", "a"}, {"cookie", "c"}}, warnings: 1},
		{name: "form body", method: "POST", ct: "application/x-www-form-urlencoded", body: "project=f.com&cookie=c&ce_q=a+b",
			want: Params{{"project", "f.com"}, {"cookie", "c"}, {"ce_q", "a b"}}},
		{name: "query wins over form", method: "POST", query: "project=q.com&event=fromquery", ct: "application/x-www-form-urlencoded",
			body: "event=frombody&cookie=c",
			want: Params{{"project", "q.com"}, {"event", "fromquery"}, {"cookie", "c"}}, warnings: 1},
		{name: "json body with typed values", method: "POST", ct: "application/json; charset=utf-8",
			body: `{"host":"j.com","cookie":"c","timeout":300000,"ce_ok":true,"ce_none":null,"ce_price":42.50,"ce_obj":{"a": [1, 2]},"event":"buy"}`,
			want: Params{{"host", "j.com"}, {"cookie", "c"}, {"timeout", "300000"}, {"ce_ok", "true"}, {"ce_price", "42.50"}, {"ce_obj", `{"a":[1,2]}`}, {"event", "buy"}}},
		{name: "query wins over json", method: "POST", query: "project=q.com&cookie=qc", ct: "application/json",
			body: `{"project":"j.com","cookie":"jc","event":"e"}`,
			want: Params{{"project", "q.com"}, {"cookie", "qc"}, {"event", "e"}}, warnings: 2},
		{name: "json sniffed without content type", method: "POST", ct: "text/plain", body: `{"project":"s.com","cookie":"c"}`,
			want: Params{{"project", "s.com"}, {"cookie", "c"}}},
		{name: "form sniffed without content type", method: "POST", body: "project=s.com&cookie=c",
			want: Params{{"project", "s.com"}, {"cookie", "c"}}},
		{name: "invalid json keeps the query", method: "POST", query: "project=p&cookie=c", ct: "application/json", body: `{"event":`,
			want: Params{{"project", "p"}, {"cookie", "c"}}, warnings: 1},
		{name: "multipart fields", method: "POST", ct: mct, body: mbody,
			want: Params{{"project", "m.com"}, {"cookie", "mc"}, {"ce_x", "1"}}},
		{name: "GET body ignored", method: "GET", query: "project=p&cookie=c", ct: "application/x-www-form-urlencoded", body: "event=x",
			want: Params{{"project", "p"}, {"cookie", "c"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(Options{})
			w := send(t, e, c.method, "/track/ping?"+c.query, c.ct, c.body)
			if w.Code != 200 {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			r := last(t, e)
			if !reflect.DeepEqual(r.Params, c.want) {
				t.Errorf("params\n got %v\nwant %v", r.Params, c.want)
			}
			if len(r.Warnings) != c.warnings {
				t.Errorf("warnings %q, want %d", r.Warnings, c.warnings)
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	e := New(Options{})
	body := "project=p&cookie=c&ce_big=" + strings.Repeat("x", maxBody)
	w := send(t, e, "POST", "/track/ce", "application/x-www-form-urlencoded", body)
	if w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", w.Code)
	}
	if r := last(t, e); r.Outcome != OutcomeBadRequest || r.Status != 413 {
		t.Errorf("record %+v", r)
	}
}

func TestParamsJSONKeepsOrder(t *testing.T) {
	ps := Params{{"z", "1"}, {"a", `q"<>`}, {"m", "é"}}
	b, err := json.Marshal(ps)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"z":"1","a":"q\"\u003c\u003e","m":"é"}` {
		t.Errorf("marshal: %s", b)
	}
	var back Params
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, ps) {
		t.Errorf("round trip %v", back)
	}
	if back.Get("a") != `q"<>` || back.Get("nope") != "" || back.Map()["z"] != "1" {
		t.Error("Get/Map")
	}
}

func TestProjectResolution(t *testing.T) {
	cases := []struct {
		name, query string
		want        string
		outcome     Outcome
	}{
		{"project", "project=a.com&host=b.com&website=c.com&alias=d.com", "a.com", OutcomeOK},
		{"host", "alias=d.com&website=c.com&host=b.com", "b.com", OutcomeOK},
		{"website", "alias=d.com&website=c.com", "c.com", OutcomeOK},
		{"alias", "alias=d.com", "d.com", OutcomeOK},
		{"empty project falls through", "project=&host=b.com", "b.com", OutcomeOK},
		{"capital Project", "Project=r.com", "r.com", OutcomeOK},
		{"exact before case-insensitive", "Project=r.com&host=b.com", "b.com", OutcomeOK},
		{"none", "ce_x=1", "", OutcomeNoProject},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(Options{})
			w := send(t, e, "GET", "/track/ce?"+c.query+"&cookie=c&event=e&response=json", "", "")
			r := last(t, e)
			if r.Project != c.want || r.Outcome != c.outcome || w.Code != 200 {
				t.Errorf("project %q outcome %q status %d, want %q %q 200", r.Project, r.Outcome, w.Code, c.want, c.outcome)
			}
			if c.outcome == OutcomeNoProject && !strings.Contains(w.Body.String(), "not registered!") {
				t.Errorf("no project body %q", w.Body)
			}
		})
	}
}

func TestRegisteredProjects(t *testing.T) {
	e := New(Options{Projects: []string{"Known.com"}})
	w := send(t, e, "GET", "/track/ce?project=known.com&cookie=c&event=e&response=json", "", "")
	if w.Code != 200 || w.Body.String() != JSONReply {
		t.Fatalf("registered (case-insensitive): %d %q", w.Code, w.Body)
	}
	w = send(t, e, "GET", "/track/ce?project=other.com&cookie=c2&event=e&response=json", "", "")
	if w.Code != 200 || w.Body.String() != "/*\nHost other.com not registered!\n*/" {
		t.Fatalf("unregistered: %d %q", w.Code, w.Body)
	}
	if r := last(t, e); r.Outcome != OutcomeUnregistered {
		t.Errorf("outcome %q", r.Outcome)
	}
	if vs := e.Visitors(); len(vs) != 1 || vs[0].Project != "known.com" {
		t.Errorf("an unregistered project was stored: %+v", vs)
	}
}

func TestReplies(t *testing.T) {
	cases := []struct {
		name, query  string
		strict       bool
		status       int
		body, ctype  string
		outcome      Outcome
		storesAction bool
	}{
		{"json", "project=p&cookie=c&event=e&response=json", false, 200, JSONReply, "text/javascript; charset=utf-8", OutcomeOK, true},
		{"JSON upper case", "project=p&cookie=c&event=e&response=JSON", false, 200, JSONReply, "text/javascript; charset=utf-8", OutcomeOK, true},
		{"xml", "project=p&cookie=c&event=e&response=xml", false, 200, XMLReply, "text/xml; charset=utf-8", OutcomeOK, true},
		{"script by default", "project=p&cookie=c&event=e", false, 200, ScriptReply, "text/javascript; charset=utf-8", OutcomeOK, true},
		{"legacy ce_name", "host=p&cookie=c&ce_name=signup&response=json", false, 200, JSONReply, "text/javascript; charset=utf-8", OutcomeOK, true},
		{"no event", "project=p&cookie=c&response=json", false, 200, JSONReply, "text/javascript; charset=utf-8", OutcomeNoEvent, false},
		{"no identity", "project=p&event=e&response=json", false, 200, JSONReply, "text/javascript; charset=utf-8", OutcomeNoIdentity, false},
		{"strict no event", "project=p&cookie=c&response=json", true, 400, "", "application/json", OutcomeNoEvent, false},
		{"strict no identity", "project=p&event=e", true, 400, "", "application/json", OutcomeNoIdentity, false},
		{"strict no project", "cookie=c&event=e", true, 400, "", "application/json", OutcomeNoProject, false},
		{"strict ok", "project=p&cookie=c&event=e&response=json", true, 200, JSONReply, "text/javascript; charset=utf-8", OutcomeOK, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(Options{Strict: c.strict})
			w := send(t, e, "GET", "/track/ce?"+c.query, "", "")
			if w.Code != c.status || w.Header().Get("Content-Type") != c.ctype {
				t.Fatalf("status %d type %q, want %d %q", w.Code, w.Header().Get("Content-Type"), c.status, c.ctype)
			}
			if c.body != "" && w.Body.String() != c.body {
				t.Errorf("body %q, want %q", w.Body, c.body)
			}
			if c.status == 400 && !strings.Contains(w.Body.String(), `"success":0`) {
				t.Errorf("strict body %q", w.Body)
			}
			if c.status == 200 && w.Header().Get("Cache-Control") == "" {
				t.Error("no Cache-Control")
			}
			r := last(t, e)
			if r.Outcome != c.outcome || r.Status != c.status {
				t.Errorf("record outcome %q status %d", r.Outcome, r.Status)
			}
			actions := 0
			for _, v := range e.Visitors() {
				actions += len(v.Actions)
			}
			if (actions == 1) != c.storesAction {
				t.Errorf("%d actions stored", actions)
			}
		})
	}
}

func TestRecordHeaders(t *testing.T) {
	e := New(Options{})
	send(t, e, "POST", "/track/ce?project=p&cookie=c&event=e", "application/json", `{"ce_a":"1"}`,
		"User-Agent", "UA/1", "Accept-Language", "fr", "X-Other", "x")
	r := last(t, e)
	want := map[string]string{"User-Agent": "UA/1", "Content-Type": "application/json", "Accept-Language": "fr"}
	if !reflect.DeepEqual(r.Headers, want) {
		t.Errorf("headers %v, want %v", r.Headers, want)
	}
	e = New(Options{RecordAllHeaders: true})
	send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", "", "X-Other", "x")
	if last(t, e).Headers["X-Other"] != "x" {
		t.Errorf("RecordAllHeaders: %v", last(t, e).Headers)
	}
}

func TestRecordBounds(t *testing.T) {
	e := New(Options{MaxRecords: 3})
	for i := 0; i < 5; i++ {
		send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e"+string(rune('0'+i)), "", "")
	}
	rs := e.Requests()
	if len(rs) != 3 || rs[0].Params.Get("event") != "e2" || rs[2].Params.Get("event") != "e4" {
		t.Fatalf("kept %d records: %+v", len(rs), rs)
	}
	st := e.Stats()
	if st.Records != 3 || st.DroppedRecords != 2 || st.Requests != 5 || st.ByStatus[200] != 5 {
		t.Errorf("stats %+v", st)
	}

	e = New(Options{MaxRecords: -1, NoProfiles: true})
	send(t, e, "GET", "/track/ce?project=p&cookie=c&event=e", "", "")
	if len(e.Requests()) != 0 || len(e.Visitors()) != 0 {
		t.Error("records or profiles kept")
	}
	if st := e.Stats(); st.Requests != 1 || st.ByStatus[200] != 1 || st.ByOutcome[OutcomeOK] != 1 {
		t.Errorf("counters %+v", st)
	}
}

func TestManyParams(t *testing.T) {
	var q strings.Builder
	q.WriteString("project=p&cookie=c&event=e")
	for i := 0; i < 40; i++ {
		fmt.Fprintf(&q, "&ce_k%d=%d", i, i)
	}
	q.WriteString("&ce_k3=dup&ce_k39=dup")
	e := New(Options{})
	send(t, e, "GET", "/track/ce?"+q.String(), "", "")
	r := last(t, e)
	if len(r.Params) != 43 || r.Params.Get("ce_k3") != "3" || r.Params.Get("ce_k39") != "39" || len(r.Warnings) != 2 {
		t.Errorf("%d params, ce_k3=%q ce_k39=%q, warnings %q", len(r.Params), r.Params.Get("ce_k3"), r.Params.Get("ce_k39"), r.Warnings)
	}
	v, _ := e.Visitor("c")
	if len(v.Actions[0].Properties) != 40 || v.Actions[0].Properties[39] != (Param{"k39", "39"}) {
		t.Errorf("properties %v", v.Actions[0].Properties)
	}
}
