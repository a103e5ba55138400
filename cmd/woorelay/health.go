package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/woorelay/woorelay/relay"
)

// cmdHealth is `woorelay health`: GET /readyz of the serve on this machine; exit 0 on 200.
func cmdHealth(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("health", healthUsage)
	listen := fs.String("listen", relay.Defaults().Listen, "serve's --listen: the probe asks 127.0.0.1 on its port when it names no host or all of them")
	tlsCert := fs.String("tls-cert", "", "serve's --tls-cert: when set the probe speaks HTTPS (without checking the certificate: it asks its own machine)")
	url := fs.String("url", "", "the URL to ask instead (overrides --listen)")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if err := applyEnv(fs); err != nil { // WOORELAY_LISTEN, WOORELAY_TLS_CERT as serve reads them
		fmt.Fprintf(stderr, "woorelay health: %v\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "woorelay health: unexpected argument %q\n\n%s", fs.Arg(0), healthUsage)
		return 2
	}
	target := *url
	if target == "" {
		var err error
		if target, err = readyzURL(*listen, *tlsCert != ""); err != nil {
			fmt.Fprintf(stderr, "woorelay health: --listen %q: %v\n", *listen, err)
			return 2
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay health: %v\n", err)
		return 2
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // its own machine
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "woorelay health: %s: %v\n", target, err)
		return 1
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "woorelay health: %s answered %s: %s\n", target, resp.Status, body)
		return 1
	}
	fmt.Fprintf(stdout, "ready (%s)\n", target)
	return 0
}

// readyzURL turns serve's --listen address into the URL of its /readyz on this machine.
func readyzURL(listen string, tls bool) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/readyz", nil
}
