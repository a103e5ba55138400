package privacy

import (
	"strings"
	"testing"
)

func TestTruncateIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.50":                         "203.0.113.0",
		"::ffff:198.51.100.7":                  "198.51.100.0",
		"2001:db8:85a3:8d3:1319:8a2e:370:7348": "2001:db8:85a3::",
		"not an address":                       "not an address",
	} {
		if got := TruncateIP(in); got != want {
			t.Errorf("TruncateIP(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSelectorsMatch(t *testing.T) {
	ev := []byte(`{"userId":"u1","anonymousId":"a1","context":{"traits":{"email":" Jane@Example.com "},"Woopra":{"cookie":"C9"}}}`)
	for _, s := range []string{"user_id:u1", "anonymous_id:a1", "email:jane@example.com", "cookie:C9", "email_sha256:" + HashEmail("JANE@example.com")} {
		sel, err := ParseSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		if !NewSet(sel).MatchEvent(ev) {
			t.Errorf("%s does not match %s", s, ev)
		}
	}
	for _, s := range []string{"user_id:u2", "anonymous_id:u1", "email:john@example.com", "cookie:C1"} {
		sel, _ := ParseSelector(s)
		if NewSet(sel).MatchEvent(ev) {
			t.Errorf("%s matches %s", s, ev)
		}
	}
	sel, _ := ParseSelector("email:jane@example.com")
	if strings.Contains(sel.String(), "jane") {
		t.Errorf("an e-mail selector keeps the address in clear: %s", sel)
	}
	if _, err := ParseSelector("phone:1"); err == nil {
		t.Error("an unknown kind was accepted")
	}
	if (&Set{}).MatchEvent(ev) {
		t.Error("the empty set matches")
	}
	// A numeric userId is the edge's text of it.
	if !NewSet(Selector{UserID, "42"}).MatchEvent([]byte(`{"userId":42}`)) {
		t.Error("a numeric userId is not matched by its text")
	}
}

func TestMinimiser(t *testing.T) {
	m := &Minimiser{IP: IPTruncate, Drop: []string{"context.traits.phone"}, Hash: []string{"traits.email"}, Salt: "s"}
	out, err := m.Apply([]byte(`{"userId":"u1","context":{"ip":"203.0.113.50","traits":{"phone":"+44 7700 900123","name":"J"}},"traits":{"email":"a@b.c"},"n":1.50}`))
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	for _, want := range []string{`"ip":"203.0.113.0"`, `"name":"J"`, `"n":1.50`, `"email":"` + hashOf("s", "a@b.c") + `"`} {
		if !strings.Contains(s, want) {
			t.Errorf("minimised event %s lacks %s", s, want)
		}
	}
	for _, gone := range []string{"phone", "7700", "203.0.113.50", "a@b.c"} {
		if strings.Contains(s, gone) {
			t.Errorf("minimised event %s still has %s", s, gone)
		}
	}
	d := &Minimiser{IP: IPDrop}
	out, _ = d.Apply([]byte(`{"context":{"ip":"203.0.113.50"},"request_ip":"1.2.3.4"}`))
	if strings.Contains(string(out), "ip") {
		t.Errorf("ip: drop left %s", out)
	}
	if err := (&Minimiser{IP: "mask"}).Check(); err == nil {
		t.Error("ip: mask was accepted")
	}
	if (&Minimiser{IP: IPKeep}).Active() {
		t.Error("ip: keep alone is active")
	}
}

func hashOf(salt, v string) string {
	return (&Minimiser{Salt: salt}).hash(v)
}

// TestMatchEventKnown: the identifiers the caller knows are taken as they are, the others read.
func TestMatchEventKnown(t *testing.T) {
	set := NewSet(Selector{UserID, "u1"}, Selector{AnonymousID, "a1"})
	ev := []byte(`{"userId":"u2","anonymousId":"a1"}`)
	if !set.MatchEventKnown(ev, Known{UserID: "u2", HaveUser: true}) {
		t.Error("the anonymousId was not read when only the userId was known")
	}
	if set.MatchEventKnown([]byte(`{"userId":"u9"}`), Known{UserID: "u9", HaveUser: true, AnonymousID: "a2", HaveAnonymous: true}) {
		t.Error("matched ids that are not in the set")
	}
	if !set.MatchEventKnown([]byte(`{}`), Known{UserID: "u1", HaveUser: true}) {
		t.Error("the known userId was not used")
	}
}
