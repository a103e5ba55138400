package presets

import (
	"bytes"
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/woorelay/woorelay/mapping"
)

// rsNow is the frozen clock of the rudderstack tests: after every timestamp they use.
var rsNow = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// rsVectorFile holds RudderStack's own Woopra test vectors (its processor and router suites),
// kept unchanged.
const rsVectorFile = "../testdata/conformance/rudderstack-upstream.json"

// rsErrorCodes is the stable code the preset reports with each RudderStack error message.
var rsErrorCodes = map[string]string{
	"Project Name field can not be empty": "bad_setting",
	"Event type is required":              "missing_required",
	"Event Name can not be empty":         "missing_required",
	"Message type group is not supported": "unsupported_type",
	"Message type alias is not supported": "unsupported_type",
}

// rsVector is one upstream test vector.
type rsVector struct {
	Name              string          `json:"name"`
	Feature           string          `json:"feature"`
	InputMessage      json.RawMessage `json:"input_message"`
	DestinationConfig struct {
		ProjectName string `json:"projectName"`
	} `json:"destination_config"`
	Expected json.RawMessage `json:"expected"`
}

// rsExpected is the part of a vector's expectation the preset is compared on.
type rsExpected struct {
	Kind       string         `json:"kind"`
	Endpoint   string         `json:"endpoint"`
	Method     string         `json:"method"`
	Params     map[string]any `json:"params"`
	StatusCode json.Number    `json:"statusCode"`
	Error      string         `json:"error"`
}

// queryValue renders an expected params value the way rudder-server puts it in the query:
// strings as they are, numbers as their JSON text, booleans as true/false, objects (and
// arrays) as compact JSON.
func queryValue(t *testing.T, v any) string {
	t.Helper()
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	case map[string]any, []any:
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatalf("encode %v: %v", x, err)
		}
		return string(b)
	}
	t.Fatalf("unexpected params value %#v", v)
	return ""
}

// loadRudderstack compiles the rudderstack preset with the given project setting.
func loadRudderstack(t *testing.T, project string) *mapping.Program {
	t.Helper()
	p, err := Load("rudderstack", map[string]string{"project": project})
	if err != nil {
		t.Fatalf("load rudderstack: %v", err)
	}
	return p
}

// paramMap turns a request's parameters into a map, failing on a parameter sent twice.
func paramMap(t *testing.T, params []mapping.Param) map[string]string {
	t.Helper()
	out := make(map[string]string, len(params))
	for _, p := range params {
		if _, dup := out[p.Name]; dup {
			t.Errorf("parameter %q is sent twice", p.Name)
		}
		out[p.Name] = p.Value
	}
	return out
}

// TestRudderstackUpstreamVectors runs RudderStack's 5 processor and 3 router test vectors
// through the preset: endpoint, method and every parameter must match, and error vectors must
// be rejected with RudderStack's exact message.
func TestRudderstackUpstreamVectors(t *testing.T) {
	data, err := os.ReadFile(rsVectorFile)
	if err != nil {
		t.Fatal(err)
	}
	var vectors []rsVector
	if err := json.Unmarshal(data, &vectors); err != nil {
		t.Fatal(err)
	}
	if len(vectors) != 8 {
		t.Fatalf("%s has %d vectors, want 8", rsVectorFile, len(vectors))
	}
	passed := 0
	for _, v := range vectors {
		ok := t.Run(v.Name, func(t *testing.T) {
			var want rsExpected
			dec := json.NewDecoder(bytes.NewReader(v.Expected))
			dec.UseNumber()
			if err := dec.Decode(&want); err != nil {
				t.Fatal(err)
			}
			res := loadRudderstack(t, v.DestinationConfig.ProjectName).Run(v.InputMessage, rsNow)
			switch want.Kind {
			case "request":
				if res.Outcome != mapping.Send || len(res.Requests) != 1 {
					t.Fatalf("outcome %s with %d requests (%s: %s), want one request", res.Outcome, len(res.Requests), res.Code, res.Error)
				}
				req := res.Requests[0]
				if endpoint, _, _ := strings.Cut(req.URL, "?"); endpoint != want.Endpoint {
					t.Errorf("endpoint %s, want %s", endpoint, want.Endpoint)
				}
				if req.Method != want.Method {
					t.Errorf("method %s, want %s", req.Method, want.Method)
				}
				if len(req.Headers) != 0 {
					t.Errorf("headers %v, want none", req.Headers)
				}
				got := paramMap(t, req.Params)
				for k, wv := range want.Params {
					w := queryValue(t, wv)
					if g, ok := got[k]; !ok {
						t.Errorf("param %s missing, want %q", k, w)
					} else if g != w {
						t.Errorf("param %s = %q, want %q", k, g, w)
					}
				}
				for k, g := range got {
					if _, ok := want.Params[k]; !ok {
						t.Errorf("unexpected param %s = %q", k, g)
					}
				}
			case "error":
				if want.StatusCode.String() != "400" {
					t.Fatalf("vector status %s, want 400", want.StatusCode)
				}
				if res.Outcome != mapping.Rejected {
					t.Fatalf("outcome %s, want rejected with %q", res.Outcome, want.Error)
				}
				if res.Error != want.Error {
					t.Errorf("error %q, want %q", res.Error, want.Error)
				}
				if code := rsErrorCodes[want.Error]; res.Code != code {
					t.Errorf("code %q, want %q", res.Code, code)
				}
			default:
				t.Fatalf("unknown expected kind %q", want.Kind)
			}
		})
		if ok {
			passed++
		}
	}
	t.Logf("%d/%d upstream vectors pass", passed, len(vectors))
}

// rsChromeUA is the Chrome agent of RudderStack's first vector.
const rsChromeUA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/86.0.4240.111 Safari/537.36"

// rsCase is one edge case of the reference: an event (with the type and a timestamp filled in
// when omitted) and what must come of it.
type rsCase struct {
	name    string
	project string // setting; default int.com
	event   string
	// For sent events.
	endpoint string            // default /track/ce, or /track/identify for identify
	params   map[string]string // must be sent with these values
	only     bool              // no parameter beyond params
	absent   []string          // must not be sent
	// For rejected events.
	code, err string
}

func (c rsCase) run(t *testing.T) {
	t.Helper()
	project := c.project
	if project == "" {
		project = "int.com"
	}
	res := loadRudderstack(t, project).Run([]byte(c.event), rsNow)
	if c.code != "" {
		if res.Outcome != mapping.Rejected || res.Code != c.code || res.Error != c.err {
			t.Fatalf("got %s %q %q, want rejected %q %q", res.Outcome, res.Code, res.Error, c.code, c.err)
		}
		return
	}
	if res.Outcome != mapping.Send || len(res.Requests) != 1 {
		t.Fatalf("outcome %s (%s: %s), want one request", res.Outcome, res.Code, res.Error)
	}
	req := res.Requests[0]
	if c.endpoint != "" && req.Endpoint != c.endpoint {
		t.Errorf("endpoint %s, want %s", req.Endpoint, c.endpoint)
	}
	got := paramMap(t, req.Params)
	for k, w := range c.params {
		if g, ok := got[k]; !ok {
			t.Errorf("param %s missing, want %q", k, w)
		} else if g != w {
			t.Errorf("param %s = %q, want %q", k, g, w)
		}
	}
	if c.only {
		var extra []string
		for k := range got {
			if _, ok := c.params[k]; !ok {
				extra = append(extra, k+"="+got[k])
			}
		}
		sort.Strings(extra)
		if len(extra) > 0 {
			t.Errorf("unexpected params %v", extra)
		}
	}
	for _, k := range c.absent {
		if g, ok := got[k]; ok {
			t.Errorf("param %s = %q is sent, want it absent", k, g)
		}
	}
}

func runRSCases(t *testing.T, cases []rsCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, c.run)
	}
}

// ts is the upstream vectors' timestamp and its epoch-ms rendering.
const (
	ts   = `"timestamp":"2020-09-29T14:50:29.907+05:30"`
	tsMs = "1601371229907"
)

func TestRudderstackIdentity(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "userId wins over every trait id", event: `{"type":"track","event":"E",` + ts + `,"userId":"u1","anonymousId":"a1","traits":{"userId":"t1","id":"t2"},"context":{"traits":{"userId":"c1","id":"c2"}}}`,
			params: map[string]string{"cv_id": "u1", "cookie": "a1"}},
		{name: "an empty userId falls through; traits.userId beats traits.id", event: `{"type":"track","event":"E",` + ts + `,"userId":"","traits":{"userId":"t1","id":"t2"}}`,
			params: map[string]string{"cv_id": "t1"}},
		{name: "traits.id beats context.traits.userId", event: `{"type":"track","event":"E",` + ts + `,"userId":null,"traits":{"id":"t2"},"context":{"traits":{"userId":"c1"}}}`,
			params: map[string]string{"cv_id": "t2"}},
		{name: "context.traits.userId beats context.traits.id", event: `{"type":"track","event":"E",` + ts + `,"context":{"traits":{"userId":"c1","id":"c2"}}}`,
			params: map[string]string{"cv_id": "c1"}},
		{name: "context.traits.id is the last resort", event: `{"type":"track","event":"E",` + ts + `,"context":{"traits":{"id":"c2"}}}`,
			params: map[string]string{"cv_id": "c2"}},
		{name: "a numeric userId stays a number", event: `{"type":"identify",` + ts + `,"userId":12345}`,
			endpoint: "/track/identify", params: map[string]string{"cv_id": "12345"}},
		{name: "a userId of 0 is kept", event: `{"type":"identify",` + ts + `,"userId":0,"traits":{"userId":"t1"}}`,
			params: map[string]string{"cv_id": "0"}},
		{name: "anonymousId is never cv_id", event: `{"type":"track","event":"E",` + ts + `,"anonymousId":"a1"}`,
			params: map[string]string{"cookie": "a1"}, absent: []string{"cv_id"}},
		{name: "traits.email beats context.traits.email", event: `{"type":"identify",` + ts + `,"traits":{"email":"root@x.com"},"context":{"traits":{"email":"ctx@x.com"}}}`,
			params: map[string]string{"cv_email": "root@x.com"}},
		{name: "an empty traits.email falls through to context.traits.email", event: `{"type":"identify",` + ts + `,"traits":{"email":""},"context":{"traits":{"email":"ctx@x.com"}}}`,
			params: map[string]string{"cv_email": "ctx@x.com"}},
		{name: "properties.email is not an email source", event: `{"type":"track","event":"E",` + ts + `,"properties":{"email":"p@x.com"}}`,
			params: map[string]string{"ce_email": "p@x.com"}, absent: []string{"cv_email"}},
		{name: "the woopraId externalId is the cookie", event: `{"type":"track","event":"E",` + ts + `,"anonymousId":"a1","context":{"externalId":[{"type":"other","id":"o1"},{"type":"woopraId","id":"w1"}]}}`,
			params: map[string]string{"cookie": "w1"}},
		{name: "externalId type is case-sensitive", event: `{"type":"track","event":"E",` + ts + `,"anonymousId":"a1","context":{"externalId":[{"type":"WoopraId","id":"w1"}]}}`,
			params: map[string]string{"cookie": "a1"}},
		{name: "only the first woopraId entry counts; an empty id falls back to anonymousId", event: `{"type":"track","event":"E",` + ts + `,"anonymousId":"a1","context":{"externalId":[{"type":"woopraId","id":""},{"type":"woopraId","id":"w2"}]}}`,
			params: map[string]string{"cookie": "a1"}},
		{name: "an empty anonymousId is sent as an empty cookie", event: `{"type":"track","event":"E",` + ts + `,"anonymousId":""}`,
			params: map[string]string{"cookie": ""}},
		{name: "with no identifier at all the event is still sent", event: `{"type":"track","event":"E",` + ts + `}`,
			params: map[string]string{"event": "E", "timestamp": tsMs, "Project": "int.com"}, only: true},
		{name: "cv_id, cv_email and cookie are all sent", event: `{"type":"identify",` + ts + `,"userId":"u1","anonymousId":"a1","traits":{"email":"e@x.com"}}`,
			params: map[string]string{"cv_id": "u1", "cv_email": "e@x.com", "cookie": "a1"}},
	})
}

func TestRudderstackProject(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "the setting without integrations", event: `{"type":"track","event":"E",` + ts + `}`,
			params: map[string]string{"Project": "int.com"}, absent: []string{"project", "host"}},
		{name: "integrations.woopra.projectName overrides the setting", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"woopra":{"projectName":"abc.com"}}}`,
			params: map[string]string{"Project": "abc.com"}},
		{name: "a string integrations value is ignored", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"woopra":"other.com"}}`,
			params: map[string]string{"Project": "int.com"}},
		{name: "WOOPRA: true hides woopra.projectName", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"WOOPRA":true,"woopra":{"projectName":"abc.com"}}}`,
			params: map[string]string{"Project": "int.com"}},
		{name: "WOOPRA: {} hides woopra.projectName", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"WOOPRA":{},"woopra":{"projectName":"abc.com"}}}`,
			params: map[string]string{"Project": "int.com"}},
		{name: "WOOPRA: false is skipped", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"WOOPRA":false,"woopra":{"projectName":"abc.com"}}}`,
			params: map[string]string{"Project": "abc.com"}},
		{name: "WOOPRA beats Woopra beats woopra", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"woopra":{"projectName":"c.com"},"Woopra":{"projectName":"b.com"},"WOOPRA":{"projectName":"a.com"}}}`,
			params: map[string]string{"Project": "a.com"}},
		{name: "Woopra beats woopra", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"woopra":{"projectName":"c.com"},"Woopra":{"projectName":"b.com"}}}`,
			params: map[string]string{"Project": "b.com"}},
		{name: "an empty projectName falls back to the setting", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"Woopra":{"projectName":""}}}`,
			params: map[string]string{"Project": "int.com"}},
		{name: "other spellings are not recognised", event: `{"type":"track","event":"E",` + ts + `,"integrations":{"WooPra":{"projectName":"abc.com"}}}`,
			params: map[string]string{"Project": "int.com"}},
	})
	t.Run("an empty project setting rejects every event", func(t *testing.T) {
		p, err := Load("rudderstack", map[string]string{"project": ""})
		if err != nil {
			t.Fatal(err)
		}
		res := p.Run([]byte(`{"type":"track","event":"E",`+ts+`,"integrations":{"woopra":{"projectName":"abc.com"}}}`), rsNow)
		if res.Outcome != mapping.Rejected || res.Error != "Project Name field can not be empty" || res.Code != "bad_setting" {
			t.Errorf("got %s %q %q", res.Outcome, res.Code, res.Error)
		}
	})
}

func TestRudderstackTypes(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "TRACK is a track", event: `{"type":"TRACK","event":"E",` + ts + `}`,
			endpoint: "/track/ce", params: map[string]string{"event": "E"}},
		{name: "Identify is an identify", event: `{"type":"Identify",` + ts + `,"userId":"u1"}`,
			endpoint: "/track/identify", params: map[string]string{"cv_id": "u1"}, absent: []string{"event"}},
		{name: "Page is a page", event: `{"type":"Page",` + ts + `}`,
			endpoint: "/track/ce", params: map[string]string{"event": "Viewed a Page"}},
		{name: "Alias is not supported", event: `{"type":"Alias",` + ts + `,"userId":"u1"}`,
			code: "unsupported_type", err: "Message type alias is not supported"},
		{name: "group is not supported", event: `{"type":"group",` + ts + `}`,
			code: "unsupported_type", err: "Message type group is not supported"},
		{name: "screen is not supported", event: `{"type":"Screen","name":"Home",` + ts + `}`,
			code: "unsupported_type", err: "Message type screen is not supported"},
		{name: "a missing type", event: `{"event":"E",` + ts + `}`,
			code: "missing_required", err: "Event type is required"},
		{name: "an empty type", event: `{"type":"","event":"E",` + ts + `}`,
			code: "missing_required", err: "Event type is required"},
		{name: "a null type", event: `{"type":null}`,
			code: "missing_required", err: "Event type is required"},
		{name: "a type that is not a string", event: `{"type":5,"event":"E",` + ts + `}`,
			code: "bad_value", err: "Event type must be a string"},
		{name: "unsupported types are rejected before the event check", event: `{"type":"group"}`,
			code: "unsupported_type", err: "Message type group is not supported"},
		{name: "track with an empty event", event: `{"type":"track","event":"",` + ts + `}`,
			code: "missing_required", err: "Event Name can not be empty"},
		{name: "track with event 0", event: `{"type":"track","event":0,` + ts + `}`,
			code: "missing_required", err: "Event Name can not be empty"},
		{name: "track with a null event", event: `{"type":"Track","event":null,` + ts + `}`,
			code: "missing_required", err: "Event Name can not be empty"},
		{name: "a numeric event name stays a number", event: `{"type":"track","event":42,` + ts + `}`,
			params: map[string]string{"event": "42"}},
	})
}

func TestRudderstackPageNames(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "neither name nor category", event: `{"type":"page",` + ts + `}`,
			params: map[string]string{"event": "Viewed a Page"}},
		{name: "category only", event: `{"type":"page","category":"Docs",` + ts + `}`,
			params: map[string]string{"event": "Viewed Docs Page"}},
		{name: "name only", event: `{"type":"page","name":"Home",` + ts + `}`,
			params: map[string]string{"event": "Viewed Home Page"}},
		{name: "category and name", event: `{"type":"page","category":"Docs","name":"Setup",` + ts + `}`,
			params: map[string]string{"event": "Viewed Docs Setup Page"}},
		{name: "an empty name counts as missing", event: `{"type":"page","category":"Docs","name":"",` + ts + `}`,
			params: map[string]string{"event": "Viewed Docs Page"}},
		{name: "an empty category counts as missing", event: `{"type":"page","category":"","name":"Home",` + ts + `}`,
			params: map[string]string{"event": "Viewed Home Page"}},
		{name: "the name is neither trimmed nor lower-cased", event: `{"type":"page","name":" My HOME ",` + ts + `}`,
			params: map[string]string{"event": "Viewed  My HOME  Page"}},
		{name: "properties.name and category do not name the page; they are ce_", event: `{"type":"page","properties":{"name":"P","category":"C"},` + ts + `}`,
			params: map[string]string{"event": "Viewed a Page", "ce_name": "P", "ce_category": "C"}},
	})
}

func TestRudderstackTraits(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "without root traits, context.traits are copied (cv_anonymousId appears)", event: `{"type":"track","event":"E",` + ts + `,"anonymousId":"a1","context":{"traits":{"anonymousId":"a1","customProp":"v"}}}`,
			params: map[string]string{"cv_anonymousId": "a1", "cv_customProp": "v", "cookie": "a1"}},
		{name: "root traits {} hides context.traits for the copy, not for the mapped params", event: `{"type":"identify",` + ts + `,"traits":{},"context":{"traits":{"anonymousId":"a1","customProp":"v","email":"e@x.com"}}}`,
			params: map[string]string{"cv_email": "e@x.com"}, absent: []string{"cv_anonymousId", "cv_customProp"}},
		{name: "the exclusion list is applied, case-sensitively", event: `{"type":"identify",` + ts + `,"traits":{"email":"e@x.com","title":"Dr","birthday":"1990-01-01","dateOfBirth":"x","dob":"x","DOB":"x","dateofbirth":"x","age":0,"id":"i1","userId":"u1","firstName":"F","firstname":"f","first_name":"f","lastName":"L","lastname":"l","last_name":"l","middleName":"M","middlename":"m","middle_name":"m","state":"S","country":"C","name":"N","city":"Lost","website":"w.com","zipcode":"Z","Name":"Kept","phone":"123"}}`,
			params: map[string]string{"cv_email": "e@x.com", "cv_title": "Dr", "cv_birthday": "1990-01-01", "cv_age": "0", "cv_id": "u1", "cv_firstname": "F", "cv_lastname": "L", "cv_middlename": "M", "cv_state": "S", "cv_country": "C", "cv_name": "N", "cv_website": "w.com", "cv_zipcode": "Z", "cv_Name": "Kept", "cv_phone": "123", "timestamp": tsMs, "Project": "int.com"},
			only:   true},
		{name: "lower-case middlename and top-level city are lost", event: `{"type":"identify",` + ts + `,"traits":{"middlename":"m","city":"Paris"}}`,
			absent: []string{"cv_middlename", "cv_city"}},
		{name: "city comes from address.city; address is copied as JSON", event: `{"type":"identify",` + ts + `,"traits":{"address":{"city":"Paris","street":"Rue"}}}`,
			params: map[string]string{"cv_city": "Paris", "cv_address": `{"city":"Paris","street":"Rue"}`}},
		{name: "context.dateofbirth (sic) is a birthday source, context.traits.dateofbirth is not", event: `{"type":"identify",` + ts + `,"context":{"dateofbirth":"2000-02-02","traits":{"dateofbirth":"1999-01-01"}}}`,
			params: map[string]string{"cv_birthday": "2000-02-02"}, absent: []string{"cv_dateofbirth"}},
		{name: "birthday precedence: traits.dateOfBirth before traits.dob", event: `{"type":"identify",` + ts + `,"traits":{"dob":"b","dateOfBirth":"a"}}`,
			params: map[string]string{"cv_birthday": "a"}},
		{name: "zipcode: traits.zip beats context.traits.zipcode; zip is also copied", event: `{"type":"identify",` + ts + `,"traits":{"zip":"111"},"context":{"traits":{"zipcode":"222"}}}`,
			params: map[string]string{"cv_zipcode": "111", "cv_zip": "111"}},
		{name: "zipcode: context.traits.address.postalCode is the last path", event: `{"type":"identify",` + ts + `,"context":{"traits":{"address":{"postalCode":"333"}}}}`,
			params: map[string]string{"cv_zipcode": "333"}},
		{name: "zipcode: traits.address.zipcode comes before traits.address.zip", event: `{"type":"identify",` + ts + `,"traits":{"address":{"zip":"z","zipcode":"zc"}}}`,
			params: map[string]string{"cv_zipcode": "zc"}},
		{name: "zipcode: context.traits.address.zip comes before context.traits.address.zipcode", event: `{"type":"identify",` + ts + `,"context":{"traits":{"address":{"zipcode":"zc","zip":"z"}}}}`,
			params: map[string]string{"cv_zipcode": "z"}},
		{name: "website falls back to properties.website", event: `{"type":"track","event":"E",` + ts + `,"properties":{"website":"p.com"}}`,
			params: map[string]string{"cv_website": "p.com", "ce_website": "p.com"}},
		{name: "value types are kept: numbers, booleans, arrays, empty strings; nulls are dropped", event: `{"type":"identify",` + ts + `,"traits":{"n":1.50,"big":1234567,"b":true,"arr":[1,"x"],"empty":"","nul":null}}`,
			params: map[string]string{"cv_n": "1.50", "cv_big": "1234567", "cv_b": "true", "cv_arr": `[1,"x"]`, "cv_empty": ""}, absent: []string{"cv_nul"}},
		{name: "a trait named Project is prefixed", event: `{"type":"identify",` + ts + `,"traits":{"Project":"x"}}`,
			params: map[string]string{"cv_Project": "x", "Project": "int.com"}},
	})
}

func TestRudderstackProperties(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "page excludes search, title, referrer and url from the ce_ copy", event: `{"type":"page",` + ts + `,"properties":{"search":"?q=1","title":"PT","referrer":"pr.com","url":"http://p","custom":"c"}}`,
			params: map[string]string{"ce_search": "?q=1", "ce_title": "PT", "ce_referrer": "pr.com", "ce_url": "http://p", "ce_custom": "c", "event": "Viewed a Page", "timestamp": tsMs, "Project": "int.com"},
			only:   true},
		{name: "page: context.page title and url win, properties referrer and search win", event: `{"type":"page",` + ts + `,"properties":{"search":"ps","title":"pt","referrer":"pr","url":"pu"},"context":{"page":{"search":"cs","title":"ct","referrer":"cr","url":"cu"}}}`,
			params: map[string]string{"ce_search": "ps", "ce_title": "ct", "ce_referrer": "pr", "ce_url": "cu"}},
		{name: "page-only params, with the intial typo", event: `{"type":"page",` + ts + `,"context":{"page":{"path":"/p","initial_referring_domain":"ird","initial_referrer":"ir","referring_domain":"rd"}}}`,
			params: map[string]string{"ce_pagepath": "/p", "ce_page_initial_referring_domain": "ird", "ce_page_intial_referrer": "ir", "ce_page_referring_domain": "rd"},
			absent: []string{"ce_page_initial_referrer"}},
		{name: "page: empty excluded properties are not copied either", event: `{"type":"page",` + ts + `,"properties":{"search":"","title":"","referrer":"","url":"","other":""}}`,
			params: map[string]string{"ce_other": ""}, absent: []string{"ce_search", "ce_title", "ce_referrer", "ce_url"}},
		{name: "page: context.page.path beats a property named pagepath", event: `{"type":"page",` + ts + `,"properties":{"pagepath":"prop"},"context":{"page":{"path":"/ctx"}}}`,
			params: map[string]string{"ce_pagepath": "/ctx"}},
		{name: "page: a property named pagepath is kept without context.page.path", event: `{"type":"page",` + ts + `,"properties":{"pagepath":"prop"}}`,
			params: map[string]string{"ce_pagepath": "prop"}},
		{name: "track copies every property, title included, and ignores context.page", event: `{"type":"track","event":"E",` + ts + `,"properties":{"title":"T","url":"u","revenue":20.37566},"context":{"page":{"path":"/p","referrer":"r"}}}`,
			params: map[string]string{"ce_title": "T", "ce_url": "u", "ce_revenue": "20.37566"},
			absent: []string{"ce_pagepath", "ce_referrer"}},
		{name: "identify copies properties too", event: `{"type":"identify",` + ts + `,"properties":{"plan":"pro"}}`,
			params: map[string]string{"ce_plan": "pro"}},
		{name: "nested properties stay JSON", event: `{"type":"track","event":"E",` + ts + `,"properties":{"product":{"id":1,"tags":["a"]}}}`,
			params: map[string]string{"ce_product": `{"id":1,"tags":["a"]}`}},
	})
}

func TestRudderstackIPAndContext(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "cv_ip from context.ip", event: `{"type":"track","event":"E",` + ts + `,"context":{"ip":"1.2.3.4"}}`,
			params: map[string]string{"cv_ip": "1.2.3.4"}, absent: []string{"ip"}},
		{name: "a trait named ip overwrites cv_ip", event: `{"type":"identify",` + ts + `,"context":{"ip":"1.2.3.4"},"traits":{"ip":"9.9.9.9"}}`,
			params: map[string]string{"cv_ip": "9.9.9.9"}},
		{name: "a context trait named ip overwrites cv_ip", event: `{"type":"track","event":"E",` + ts + `,"context":{"ip":"1.2.3.4","traits":{"ip":"8.8.8.8"}}}`,
			params: map[string]string{"cv_ip": "8.8.8.8"}},
		{name: "a null trait ip removes cv_ip", event: `{"type":"identify",` + ts + `,"context":{"ip":"1.2.3.4"},"traits":{"ip":null}}`,
			absent: []string{"cv_ip"}},
		{name: "device, app and os are unprefixed", event: `{"type":"track","event":"E",` + ts + `,"context":{"device":{"type":"ios"},"app":{"name":"App"},"os":{"name":"iOS"}}}`,
			params: map[string]string{"device": "ios", "app": "App", "os": "iOS"}},
		{name: "browser is name and version with no separator", event: `{"type":"track","event":"E",` + ts + `,"context":{"userAgent":"` + rsChromeUA + `"}}`,
			params: map[string]string{"browser": "Chrome86.0.4240.111"}},
		{name: "Mobile Safari", event: `{"type":"track","event":"E",` + ts + `,"context":{"userAgent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"}}`,
			params: map[string]string{"browser": "Mobile Safari17.0"}},
		{name: "Chrome WebView", event: `{"type":"track","event":"E",` + ts + `,"context":{"userAgent":"Mozilla/5.0 (Linux; Android 13; Pixel 7 Build/TQ3A.230901.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/119.0.0.0 Mobile Safari/537.36"}}`,
			params: map[string]string{"browser": "Chrome WebView119.0.0.0"}},
		{name: "no browser for curl", event: `{"type":"track","event":"E",` + ts + `,"context":{"userAgent":"curl/8.4.0"}}`,
			absent: []string{"browser"}},
		{name: "no browser for a non-string user agent", event: `{"type":"track","event":"E",` + ts + `,"context":{"userAgent":42}}`,
			absent: []string{"browser"}},
		{name: "no timeout, response or headers-derived params", event: `{"type":"track","event":"E",` + ts + `,"anonymousId":"a1","context":{"locale":"en-US"}}`,
			params: map[string]string{"event": "E", "timestamp": tsMs, "cookie": "a1", "Project": "int.com"}, only: true},
	})
}

func TestRudderstackTimestamps(t *testing.T) {
	runRSCases(t, []rsCase{
		{name: "timestamp wins over originalTimestamp", event: `{"type":"track","event":"E",` + ts + `,"originalTimestamp":"2020-09-28T19:53:31.900Z"}`,
			params: map[string]string{"timestamp": tsMs}},
		{name: "originalTimestamp when timestamp is missing", event: `{"type":"track","event":"E","originalTimestamp":"2020-09-28T19:53:31.900Z"}`,
			params: map[string]string{"timestamp": "1601322811900"}},
		{name: "an empty timestamp falls through", event: `{"type":"track","event":"E","timestamp":"","originalTimestamp":"2020-09-28T19:53:31.900Z"}`,
			params: map[string]string{"timestamp": "1601322811900"}},
		{name: "epoch milliseconds are kept", event: `{"type":"track","event":"E","timestamp":1601371229907}`,
			params: map[string]string{"timestamp": tsMs}},
		{name: "a zone-less timestamp is read as UTC", event: `{"type":"track","event":"E","timestamp":"2020-09-29T09:20:29.907"}`,
			params: map[string]string{"timestamp": tsMs}},
		{name: "no timestamp at all is rejected", event: `{"type":"track","event":"E"}`,
			code: "missing_required", err: `required field "timestamp" has no value (first of timestamp, originalTimestamp)`},
		{name: "an invalid timestamp is rejected without trying originalTimestamp", event: `{"type":"track","event":"E","timestamp":"not-a-date","originalTimestamp":"2020-09-28T19:53:31.900Z"}`,
			code: "bad_value", err: `field "timestamp": timestamp "not-a-date" is neither ISO-8601 nor an epoch number`},
		{name: "the type checks come before the timestamp", event: `{"type":"alias"}`,
			code: "unsupported_type", err: "Message type alias is not supported"},
	})
}
