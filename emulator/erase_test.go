package emulator

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
)

// TestErase: a visitor's request records and profile are removed; another visitor's stay.
func TestErase(t *testing.T) {
	e := New(Options{})
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	for _, q := range []string{
		"project=p.com&event=pv&cv_id=gone&cv_email=g%40x.com",
		"project=p.com&event=pv&cookie=C1&cv_email=g%40x.com",
		"project=p.com&event=pv&cv_id=stays",
	} {
		resp, err := http.Get(srv.URL + "/track/ce?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := len(e.Visitors()); n != 2 {
		t.Fatalf("%d profiles before the erasure, want 2", n)
	}
	got := e.Erase(func(id Identity) bool { return id.ID == "gone" || slices.Contains(id.Emails, "g@x.com") })
	if got != (Erased{Requests: 2, Visitors: 1}) {
		t.Fatalf("Erase = %+v, want 2 requests and 1 visitor", got)
	}
	rs, vs := e.Requests(), e.Visitors()
	if len(rs) != 1 || rs[0].Params.Get("cv_id") != "stays" || len(vs) != 1 || vs[0].ID != "stays" {
		t.Fatalf("after the erasure: %d requests, visitors %+v", len(rs), vs)
	}
	if _, ok := e.Visitor("gone"); ok {
		t.Error("the erased visitor is still found by its id")
	}
}
