package emulator

import (
	"bytes"
	"mime/multipart"
	"reflect"
	"strings"
	"testing"
	"time"
)

// track sends GET /track/<endpoint>?project=p.com&<query> and fails on a non-200.
func track(t *testing.T, e *Emulator, endpoint, query string) Record {
	t.Helper()
	w := send(t, e, "GET", "/track/"+endpoint+"?project=p.com&"+query, "", "")
	if w.Code != 200 {
		t.Fatalf("%s?%s: status %d", endpoint, query, w.Code)
	}
	return last(t, e)
}

func names(v Visitor) []string {
	var out []string
	for _, a := range v.Actions {
		out = append(out, a.Name)
	}
	return out
}

func TestProfileMerging(t *testing.T) {
	type req struct{ endpoint, query string }
	type want struct {
		key     string
		id      string
		emails  []string
		cookies []string
		actions []string
	}
	cases := []struct {
		name string
		reqs []req
		want []want // every profile, in creation order
	}{
		{
			name: "cookie profile linked to an id",
			reqs: []req{{"ce", "cookie=c1&event=a"}, {"ce", "cookie=c1&event=b"}, {"ce", "cv_id=u1&cookie=c1&event=c"}},
			want: []want{{key: "u1", id: "u1", cookies: []string{"c1"}, actions: []string{"a", "b", "c"}}},
		},
		{
			name: "identify links a cookie to an email",
			reqs: []req{{"ce", "cookie=c1&event=a"}, {"identify", "cookie=c1&cv_email=j@x.com&cv_name=Jo"}},
			want: []want{{key: "j@x.com", emails: []string{"j@x.com"}, cookies: []string{"c1"}, actions: []string{"a"}}},
		},
		{
			name: "email and cookie profiles merge",
			reqs: []req{{"ce", "cv_email=j@x.com&event=a"}, {"ce", "cookie=c1&event=b"}, {"ce", "cv_email=j@x.com&cookie=c1&event=c"}},
			want: []want{{key: "j@x.com", emails: []string{"j@x.com"}, cookies: []string{"c1"}, actions: []string{"a", "b", "c"}}},
		},
		{
			name: "id joins the email profile",
			reqs: []req{{"ce", "cv_email=j@x.com&event=a"}, {"ce", "cv_id=u1&cv_email=j@x.com&event=b"}, {"ce", "cv_id=u1&event=c"}},
			want: []want{{key: "u1", id: "u1", emails: []string{"j@x.com"}, actions: []string{"a", "b", "c"}}},
		},
		{
			name: "different ids never merge: the cookie moves to the latest",
			reqs: []req{{"ce", "cv_id=u1&cookie=c1&event=a"}, {"ce", "cv_id=u2&cookie=c1&event=b"}, {"ce", "cookie=c1&event=c"}},
			want: []want{
				{key: "u1", id: "u1", actions: []string{"a"}},
				{key: "u2", id: "u2", cookies: []string{"c1"}, actions: []string{"b", "c"}},
			},
		},
		{
			name: "different emails without ids never merge",
			reqs: []req{{"ce", "cv_email=a@x.com&cookie=c1&event=a"}, {"ce", "cv_email=b@x.com&cookie=c1&event=b"}},
			want: []want{
				{key: "a@x.com", emails: []string{"a@x.com"}, actions: []string{"a"}},
				{key: "b@x.com", emails: []string{"b@x.com"}, cookies: []string{"c1"}, actions: []string{"b"}},
			},
		},
		{
			name: "an id holds several emails",
			reqs: []req{{"ce", "cv_id=u1&cv_email=a@x.com&event=a"}, {"ce", "cv_id=u1&cv_email=b@x.com&event=b"}},
			want: []want{{key: "u1", id: "u1", emails: []string{"a@x.com", "b@x.com"}, actions: []string{"a", "b"}}},
		},
		{
			name: "cookie trimmed to 24 characters",
			reqs: []req{{"ce", "cookie=0123456789abcdef0123456789abcdef&event=a"}, {"ce", "cookie=0123456789abcdef01234567&event=b"}},
			want: []want{{key: "0123456789abcdef01234567", cookies: []string{"0123456789abcdef01234567"}, actions: []string{"a", "b"}}},
		},
		{
			name: "ping and identify add no action",
			reqs: []req{{"ping", "cookie=c1"}, {"identify", "cookie=c1&cv_plan=pro"}},
			want: []want{{key: "c1", cookies: []string{"c1"}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := New(Options{})
			for _, r := range c.reqs {
				track(t, e, r.endpoint, r.query)
			}
			vs := e.Visitors()
			if len(vs) != len(c.want) {
				t.Fatalf("%d profiles, want %d: %+v", len(vs), len(c.want), vs)
			}
			for i, w := range c.want {
				v := vs[i]
				if v.Key != w.key || v.ID != w.id || !reflect.DeepEqual(v.Emails, w.emails) ||
					!reflect.DeepEqual(v.Cookies, w.cookies) || !reflect.DeepEqual(names(v), w.actions) {
					t.Errorf("profile %d: key %q id %q emails %v cookies %v actions %v\nwant %+v", i, v.Key, v.ID, v.Emails, v.Cookies, names(v), w)
				}
			}
		})
	}
}

func TestProfileContents(t *testing.T) {
	e := New(Options{})
	track(t, e, "ce", "cookie=c1&cv_name=Jo&cv_plan=free&cs_campaign=spring&event=late&timestamp=1700000002000&ce_amount=9.5&ce_currency=EUR&ip=203.0.113.5&browser=Firefox&os=Linux&referer=https%3A%2F%2Fa.example&timeout=60000")
	track(t, e, "ce", "cookie=c1&event=early&timestamp=1700000001000")
	track(t, e, "identify", "cookie=c1&cv_plan=pro&event=ignored")
	v, ok := e.Visitor("c1")
	if !ok {
		t.Fatal("no visitor c1")
	}
	if !reflect.DeepEqual(names(v), []string{"early", "late"}) {
		t.Errorf("timeline not ordered by timestamp: %v", names(v))
	}
	if !reflect.DeepEqual(v.Properties, map[string]string{"name": "Jo", "plan": "pro"}) {
		t.Errorf("properties %v", v.Properties)
	}
	if v.VisitProperties["campaign"] != "spring" || v.Requests != 3 {
		t.Errorf("visit properties %v requests %d", v.VisitProperties, v.Requests)
	}
	a := v.Actions[1]
	if !a.Time.Equal(time.UnixMilli(1700000002000)) || !reflect.DeepEqual(a.Properties, Params{{"amount", "9.5"}, {"currency", "EUR"}}) ||
		a.IP != "203.0.113.5" || a.Browser != "Firefox" || a.OS != "Linux" || a.Referer != "https://a.example" || a.Timeout != 60000 {
		t.Errorf("action %+v", a)
	}
	if v.Actions[0].Timeout != 30000 || v.Actions[0].IP != "192.0.2.1" {
		t.Errorf("defaults: timeout %d ip %q (want 30000 and the connection's address)", v.Actions[0].Timeout, v.Actions[0].IP)
	}
	if w := last(t, e).Warnings; len(w) != 1 || !strings.Contains(w[0], "/track/identify tracks no event") {
		t.Errorf("identify warnings %q", w)
	}
	if _, ok := e.Visitor("nobody"); ok {
		t.Error("found a visitor that does not exist")
	}
}

func TestUserAgent(t *testing.T) {
	e := New(Options{})
	send(t, e, "GET", "/track/ce?project=p&cookie=c1&event=a&user-agent=null", "", "", "User-Agent", "UA/1")
	send(t, e, "GET", "/track/ce?project=p&cookie=c1&event=b&user-agent=Param/2", "", "")
	v, _ := e.Visitor("c1")
	if v.Actions[0].UserAgent != "UA/1" || v.Actions[1].UserAgent != "Param/2" {
		t.Errorf("user agents %q %q", v.Actions[0].UserAgent, v.Actions[1].UserAgent)
	}
	if last(t, e).Headers["User-Agent"] == "UA/1" {
		t.Error("headers leaked between requests")
	}
}

func TestTimestamps(t *testing.T) {
	now := time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		ts      string
		want    time.Time
		warning string
	}{
		{"1795169730250", time.UnixMilli(1795169730250), ""},
		{"1795169730250.0", time.UnixMilli(1795169730250), ""},
		{"bad", now, "not milliseconds"},
		{"1795169730", time.UnixMilli(1795169730), "looks like seconds"},
		{"1895169730250", now, "in the future"},
	}
	for _, c := range cases {
		t.Run(c.ts, func(t *testing.T) {
			e := New(Options{Now: func() time.Time { return now }})
			r := track(t, e, "ce", "cookie=c&event=e&timestamp="+c.ts)
			v, _ := e.Visitor("c")
			if !v.Actions[0].Time.Equal(c.want) {
				t.Errorf("time %v, want %v", v.Actions[0].Time, c.want)
			}
			if c.warning == "" && len(r.Warnings) > 0 || c.warning != "" && (len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], c.warning)) {
				t.Errorf("warnings %q, want %q", r.Warnings, c.warning)
			}
		})
	}
}

func TestUpdateEndpoint(t *testing.T) {
	e := New(Options{})
	track(t, e, "ce", "cookie=c1&event=pv&idptnc=abc123&ce_url=%2Fa")
	track(t, e, "update", "cookie=c1&idptnc=abc123&duration=5000&ce_url=%2Fb&ce_scroll=0.5")
	before, _ := e.Visitor("c1")
	r := track(t, e, "update", "cookie=c1&idptnc=nope&duration=1")
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "no action with idptnc") {
		t.Errorf("warnings %q", r.Warnings)
	}
	v, _ := e.Visitor("c1")
	a := v.Actions[0]
	if len(v.Actions) != 1 || a.Duration != "5000" || !reflect.DeepEqual(a.Properties, Params{{"url", "/b"}, {"scroll", "0.5"}}) {
		t.Errorf("updated action %+v", a)
	}
	if !reflect.DeepEqual(before.Actions, v.Actions) {
		t.Error("an update of an unknown idptnc changed the timeline")
	}
}

func TestPushBeacon(t *testing.T) {
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	mw.WriteField("payload", strings.Join([]string{
		`{"endpoint":"ce","params":{"project":"b.com","cookie":"c1","event":"pv","idptnc":"x1","ce_url":"/"}}`,
		`{"endpoint":"update","params":{"project":"b.com","cookie":"c1","idptnc":"x1","duration":1200}}`,
		`not json`,
		`{"endpoint":"ping","params":{}}`,
		`{"endpoint":"identify","params":{"cookie":"c1","cv_email":"j@x.com"}}`,
	}, "\n"))
	mw.Close()
	e := New(Options{})
	w := send(t, e, "POST", "/track/push/?project=b.com", mw.FormDataContentType(), b.String())
	if w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	r := last(t, e)
	if len(r.Items) != 3 || r.Items[0].Visitor != "c1" || r.Visitor != "c1" || r.Project != "b.com" || r.Outcome != OutcomeOK {
		t.Errorf("record %+v", r)
	}
	if len(r.Warnings) != 2 {
		t.Errorf("warnings %q, want the bad line and the ping item", r.Warnings)
	}
	v, ok := e.Visitor("j@x.com")
	if !ok || len(v.Actions) != 1 || v.Actions[0].Duration != "1200" || v.Project != "b.com" {
		t.Errorf("visitor %+v", v)
	}
}

func TestProjectsAreSeparate(t *testing.T) {
	e := New(Options{})
	send(t, e, "GET", "/track/ce?project=a.com&cookie=c1&event=x", "", "")
	send(t, e, "GET", "/track/ce?project=b.com&cookie=c1&event=y", "", "")
	vs := e.Visitors()
	if len(vs) != 2 || vs[0].Project != "a.com" || vs[1].Project != "b.com" {
		t.Fatalf("profiles %+v", vs)
	}
	if e.Stats().Visitors != 2 {
		t.Errorf("stats visitors %d", e.Stats().Visitors)
	}
}

func TestMaxActions(t *testing.T) {
	e := New(Options{MaxActions: 2})
	for _, ev := range []string{"a", "b", "c"} {
		track(t, e, "ce", "cookie=c1&event="+ev)
	}
	v, _ := e.Visitor("c1")
	if !reflect.DeepEqual(names(v), []string{"b", "c"}) || v.DroppedActions != 1 {
		t.Errorf("actions %v dropped %d", names(v), v.DroppedActions)
	}
}

func TestTimelineOrder(t *testing.T) {
	e := New(Options{})
	for _, q := range []string{"event=a&timestamp=1700000003000", "event=b&timestamp=1700000001000",
		"event=c&timestamp=1700000001000", "event=d&timestamp=1700000002000"} {
		track(t, e, "ce", "cookie=c1&"+q)
	}
	track(t, e, "ce", "cookie=c2&event=z&timestamp=1700000000000")
	track(t, e, "ce", "cv_id=u&cookie=c1&event=y&timestamp=1700000001000")
	track(t, e, "ce", "cv_id=u&cookie=c2&event=x&timestamp=1700000004000")
	v, _ := e.Visitor("u")
	if got, want := names(v), []string{"z", "b", "c", "y", "d", "a", "x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("timeline %v, want %v (by timestamp, then arrival, across merges)", got, want)
	}
	if len(e.Visitors()) != 1 {
		t.Errorf("%d profiles, want the two cookies merged under u", len(e.Visitors()))
	}
}
