package blueprint

import (
	"strings"
	"testing"
)

// TestWoopraBlueprint checks the facts the rest of the project relies on.
func TestWoopraBlueprint(t *testing.T) {
	bp, err := Woopra()
	if err != nil {
		t.Fatal(err)
	}
	endpoints := map[string]struct{ path, event string }{
		"ce":       {"/track/ce", "required"},
		"identify": {"/track/identify", "forbidden"},
	}
	for name, want := range endpoints {
		ep := bp.Endpoints[name]
		if ep == nil || ep.Method != "GET" || ep.Path != want.path || ep.Event != want.event {
			t.Errorf("endpoint %s = %+v, want GET %s event %s", name, ep, want.path, want.event)
		}
	}
	if got := strings.Join(bp.Identity.Order, " > "); got != "cv_id > cv_email > cookie" || bp.Identity.WhenNone != "reject" {
		t.Errorf("identity %s when_none %s", got, bp.Identity.WhenNone)
	}
	if got := strings.Join(bp.Contract.CustomPrefixes, ","); got != "ce_,cv_,cs_" {
		t.Errorf("custom prefixes %s", got)
	}
	if bp.Contract.TimestampParam != "timestamp" || bp.Contract.MaxFutureMs <= 0 || bp.Contract.OnFuture != "reject" {
		t.Errorf("contract %+v", bp.Contract)
	}
	required := map[string]bool{}
	for _, s := range bp.Settings {
		required[s.Name] = s.Required
	}
	if !required["project"] {
		t.Error("project must be a required setting")
	}
	for _, name := range []string{"timeout", "response", "base_url"} {
		if _, ok := required[name]; !ok {
			t.Errorf("setting %s is not declared", name)
		}
	}
	for name := range bp.Params {
		for _, pre := range bp.Contract.CustomPrefixes {
			if strings.HasPrefix(name, pre) {
				t.Errorf("built-in parameter %s carries a custom prefix", name)
			}
		}
	}
	if again, _ := Woopra(); again != bp {
		t.Error("Woopra() parses more than once")
	}
}

// TestByName checks that only the Woopra blueprint is built in.
func TestByName(t *testing.T) {
	if bp, err := ByName("woopra"); bp == nil || err != nil {
		t.Errorf("woopra: %v %v", bp, err)
	}
	if bp, err := ByName("mixpanel"); bp != nil || err != nil {
		t.Errorf("mixpanel: %v %v", bp, err)
	}
}
