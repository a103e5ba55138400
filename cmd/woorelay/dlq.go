package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

const dlqUsage = `usage: woorelay dlq [--server URL] [--admin-token TOKEN] COMMAND
  list                      dead letters, oldest first: id, when, source, status, attempts, reason
  show ID                   one dead letter with its event and the requests that failed
  replay ID...              move dead letters back to the delivery queue
  replay --all              ... all of them
A replayed event is mapped again with its source's current preset and mappings when it is
delivered: fix Woopra, a setting or a mapping (and restart serve), then replay.
--server defaults to $WOORELAY_SERVER or http://127.0.0.1:8080; --admin-token to
$WOORELAY_ADMIN_TOKEN.
`

// cmdDlq is `woorelay dlq`: a client of a running server's admin API.
func cmdDlq(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dlq", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dlqUsage) }
	server := fs.String("server", "http://127.0.0.1:8080", "base URL of the running woorelay serve")
	token := fs.String("admin-token", "", "admin API token")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := applyEnv(fs); err != nil { // WOORELAY_SERVER, WOORELAY_ADMIN_TOKEN
		fmt.Fprintf(stderr, "woorelay dlq: %v\n", err)
		return 2
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fs.Usage()
		return 2
	}
	cl := adminClient{base: strings.TrimRight(*server, "/"), token: *token, http: &http.Client{Timeout: 30 * time.Second}}
	var err error
	switch rest[0] {
	case "list":
		err = cl.list(stdout)
	case "show":
		if len(rest) != 2 {
			fmt.Fprint(stderr, dlqUsage)
			return 2
		}
		err = cl.show(rest[1], stdout)
	case "replay":
		rfs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
		rfs.SetOutput(stderr)
		all := rfs.Bool("all", false, "replay every dead letter")
		if err := rfs.Parse(rest[1:]); err != nil {
			return 2
		}
		req := replayRequest{All: *all}
		for _, a := range rfs.Args() {
			id, perr := strconv.ParseUint(a, 10, 64)
			if perr != nil {
				fmt.Fprintf(stderr, "woorelay dlq replay: %q is not a dead-letter id; `woorelay dlq list` shows them\n", a)
				return 2
			}
			req.IDs = append(req.IDs, id)
		}
		if req.All == (len(req.IDs) > 0) {
			fmt.Fprint(stderr, "woorelay dlq replay: give dead-letter ids or --all\n")
			return 2
		}
		err = cl.replay(req, stdout)
	default:
		fmt.Fprintf(stderr, "woorelay dlq: unknown command %q\n%s", rest[0], dlqUsage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "woorelay dlq: %v\n", err)
		return 1
	}
	return 0
}

// adminClient calls the admin API of a running server.
type adminClient struct {
	base  string
	token string
	http  *http.Client
}

func (a adminClient) do(method, path string, body any, into any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%v (is `woorelay serve` running there? set --server)", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct{ Code, Message string }
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Code, e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(data, into)
}

func (a adminClient) list(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tSOURCE\tSTATUS\tATTEMPTS\tREASON")
	var after uint64
	for {
		var page deadLetterPage
		if err := a.do("GET", fmt.Sprintf("/admin/dlq?after=%d&limit=1000", after), nil, &page); err != nil {
			return err
		}
		for _, d := range page.DeadLetters {
			status := "-"
			if d.Status != 0 {
				status = strconv.Itoa(d.Status)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\n", d.ID, d.At.UTC().Format(time.RFC3339), d.Source, status, d.Attempts, d.Reason)
		}
		if page.Next == 0 {
			break
		}
		after = page.Next
	}
	return tw.Flush()
}

func (a adminClient) show(id string, w io.Writer) error {
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return fmt.Errorf("%q is not a dead-letter id; `woorelay dlq list` shows them", id)
	}
	var d json.RawMessage
	if err := a.do("GET", "/admin/dlq/"+id, nil, &d); err != nil {
		return err
	}
	var out bytes.Buffer
	json.Indent(&out, d, "", "  ")
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

func (a adminClient) replay(req replayRequest, w io.Writer) error {
	var res struct{ Replayed, Asked int }
	if err := a.do("POST", "/admin/dlq/replay", req, &res); err != nil {
		return err
	}
	fmt.Fprintf(w, "replayed %d of %d dead letters\n", res.Replayed, res.Asked)
	return nil
}
