package relay_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/woorelay/woorelay/emulator"
	"github.com/woorelay/woorelay/relay"
)

// A program embeds the relay the way `woorelay serve` does: New, Start, Stop. This one
// delivers to a Woopra emulator and keeps its queue in a temporary directory.
func Example() {
	em := emulator.New(emulator.Options{})
	woopra, stopWoopra, err := em.Start("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer stopWoopra(context.Background())
	dir, err := os.MkdirTemp("", "woorelay-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	cfg := relay.Defaults()
	cfg.Listen, cfg.AdminListen, cfg.DataDir, cfg.WoopraURL = "127.0.0.1:0", "127.0.0.1:0", dir, woopra
	r, err := relay.New(cfg) // no Sources: development mode, any write key
	if err != nil {
		panic(err)
	}
	if err := r.Start(); err != nil {
		panic(err)
	}

	req, _ := http.NewRequest("POST", r.URL()+"/v1/track", strings.NewReader(`{"type":"track","event":"Signed Up","userId":"u1"}`))
	req.SetBasicAuth("any-write-key", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println("ingest answered", resp.StatusCode)

	for deadline := time.Now().Add(10 * time.Second); r.Queue().Counters().Delivered == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	rec := em.Requests()[0]
	fmt.Println("woopra received", rec.Path, "event="+rec.Params.Get("event"), "cv_id="+rec.Params.Get("cv_id"))

	if err := r.Stop(5 * time.Second); err != nil {
		panic(err)
	}
	c := r.Queue().Counters()
	fmt.Printf("received %d, delivered %d, reconciles %v\n", c.Received, c.Delivered, c.Reconciles())
	// Output:
	// ingest answered 200
	// woopra received /track/ce event=signup cv_id=u1
	// received 1, delivered 1, reconciles true
}
