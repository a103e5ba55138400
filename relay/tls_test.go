package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	analytics "gopkg.in/segmentio/analytics-go.v3"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 with the serial number serial to
// cert and key, and returns it.
func selfSigned(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "woorelay test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// touchLater moves the files' modification time forward, so a change is seen even where the
// file system's clock is coarse.
func touchLater(t *testing.T, files ...string) {
	t.Helper()
	later := time.Now().Add(time.Minute)
	for _, f := range files {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSIngest: with --tls-cert and --tls-key the ingest listener speaks HTTPS; the Segment
// Go SDK, trusting the self-signed certificate, delivers through it. Replacing the files
// switches the served certificate without a restart; files that do not load keep the old one.
func TestTLSIngest(t *testing.T) {
	em, url := woopra(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := selfSigned(t, certFile, keyFile, 1)
	cfg := testConfig(t, url)
	cfg.TLSCert, cfg.TLSKey = certFile, keyFile
	r := started(t, cfg)
	if !strings.HasPrefix(r.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %s, want https://", r.URL())
	}

	roots := x509.NewCertPool()
	roots.AddCert(first)
	transport := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	cb := &sdkResults{}
	client, err := analytics.NewWithConfig("any-key", analytics.Config{Endpoint: r.URL(), Transport: transport, Interval: time.Hour, BatchSize: 1, Callback: cb})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.Enqueue(analytics.Track{MessageId: "m-tls", UserId: "u-tls", Event: "Played", Properties: analytics.NewProperties().Set("mid", "m-tls")}); err != nil {
		t.Fatal(err)
	}
	client.Close() // flushes
	cb.mu.Lock()
	if cb.ok != 1 || cb.failed != 0 {
		t.Fatalf("the SDK reported %d sent, %d failed (%v)", cb.ok, cb.failed, cb.err)
	}
	cb.mu.Unlock()
	delivered(t, em, "m-tls", "event")

	if _, err := http.Get(r.URL() + "/readyz"); err == nil {
		t.Error("a client that does not trust the certificate was answered")
	}
	served := func() int64 {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(r.URL(), "https://"), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := served(); s != 1 {
		t.Fatalf("serving certificate %d, want 1", s)
	}

	// A renewal: new files, picked up by a later handshake.
	second := selfSigned(t, certFile, keyFile, 2)
	touchLater(t, certFile, keyFile)
	for deadline := time.Now().Add(30 * time.Second); served() != 2; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not served within 30 s")
		}
	}
	roots2 := x509.NewCertPool()
	roots2.AddCert(second)
	c2 := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots2}}}
	resp, err := c2.Get(r.URL() + "/readyz")
	if err != nil {
		t.Fatalf("a client trusting the renewed certificate: %v", err)
	}
	resp.Body.Close()

	// A broken write: the certificate stays the last good one.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	touchLater(t, certFile)
	time.Sleep(2 * certCheckEvery)
	for range 3 {
		if s := served(); s != 2 {
			t.Fatalf("after a broken write the served certificate is %d, want 2 kept", s)
		}
	}
}

// sdkResults counts what the SDK reports.
type sdkResults struct {
	mu         sync.Mutex
	ok, failed int
	err        error
}

func (s *sdkResults) Success(analytics.Message) { s.mu.Lock(); s.ok++; s.mu.Unlock() }
func (s *sdkResults) Failure(_ analytics.Message, err error) {
	s.mu.Lock()
	s.failed++
	s.err = err
	s.mu.Unlock()
}

// TestTLSChecks: a certificate without its key, or files that do not load, are findings.
func TestTLSChecks(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("nope"), 0o644)
	for _, tc := range []struct {
		cert, key, want string
	}{
		{bad, "", "--tls-cert: give both --tls-cert and --tls-key"},
		{bad, bad, "--tls-cert: " + bad + " and " + bad + " do not load as a certificate and its key"},
		{filepath.Join(dir, "missing.pem"), bad, "--tls-cert: the TLS certificate: stat"},
	} {
		cfg := testConfig(t, "http://127.0.0.1:1")
		cfg.TLSCert, cfg.TLSKey = tc.cert, tc.key
		_, err := New(cfg)
		if !IsConfigError(err) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("cert %q key %q: %v, want a configuration error saying %q", tc.cert, tc.key, err, tc.want)
		}
	}
}
