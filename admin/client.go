package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Client calls the admin API of a running relay.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// NewClient returns a client of the relay at base (http://127.0.0.1:8080) sending token as
// a bearer token when it is not empty; httpClient nil means one with a 30-second limit.
func NewClient(base, token string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, http: httpClient}
}

// do sends one call and decodes a 200 answer into into; another answer becomes an error with
// the API's code and message.
func (a *Client) do(ctx context.Context, method, path string, body any, into any) error {
	return a.doAccepting(ctx, method, path, body, into)
}

// Call sends one call to path with body as JSON (nil: none) and decodes a 200 answer into
// into; another answer becomes an error with the API's code and message. It serves the admin
// routes this client has no method for.
func (a *Client) Call(ctx context.Context, method, path string, body, into any) error {
	return a.do(ctx, method, path, body, into)
}

// doAccepting is do that also decodes the answers with the statuses also.
func (a *Client) doAccepting(ctx context.Context, method, path string, body any, into any, also ...int) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return err
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return fmt.Errorf("%v (is `woorelay serve` running there? set --server)", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode != http.StatusOK && !slices.Contains(also, resp.StatusCode) {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Message != "" {
			return fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Code, e.Message)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return json.Unmarshal(data, into)
}

// Counters reads GET /admin/counters.
func (a *Client) Counters(ctx context.Context) (Counters, error) {
	var c Counters
	err := a.do(ctx, http.MethodGet, "/admin/counters", nil, &c)
	return c, err
}

// DeadLetters reads one page of GET /admin/dlq: up to limit letters with ID > after.
func (a *Client) DeadLetters(ctx context.Context, after uint64, limit int) (DeadLetterPage, error) {
	var p DeadLetterPage
	err := a.do(ctx, http.MethodGet, "/admin/dlq?after="+strconv.FormatUint(after, 10)+"&limit="+strconv.Itoa(limit), nil, &p)
	return p, err
}

// DeadLetter reads GET /admin/dlq/ID: one letter with its event and requests.
func (a *Client) DeadLetter(ctx context.Context, id uint64) (DeadLetter, error) {
	var d DeadLetter
	err := a.do(ctx, http.MethodGet, "/admin/dlq/"+strconv.FormatUint(id, 10), nil, &d)
	return d, err
}

// Replay calls POST /admin/dlq/replay.
func (a *Client) Replay(ctx context.Context, req ReplayRequest) (ReplayResult, error) {
	var r ReplayResult
	err := a.do(ctx, http.MethodPost, "/admin/dlq/replay", req, &r)
	return r, err
}
