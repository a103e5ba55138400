package relay

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckEvery is how often, at most, a handshake looks whether the certificate files
// changed.
const certCheckEvery = time.Second

// certHolder is the ingest listener's TLS certificate, read from a certificate file and a key
// file and read again when either changes, so a renewed certificate (certbot, cert-manager)
// is served without a restart. The check is a stat of both files, at most once a second, made
// by the handshake that needs the certificate (tls.Config.GetCertificate): it follows symbolic
// links, so it sees the swapped links of mounted Kubernetes secrets that a file watch on the
// old file misses, and it needs no goroutine and no dependency. A change that does not load (the
// key written before its certificate, say) keeps the previous certificate until the files
// change again.
type certHolder struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   certStamp // the files as they were at the last load attempt
	checked time.Time
}

// certStamp is what tells that the files changed: their modification times and sizes.
type certStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

// newCertHolder loads the pair once; the error says what to give instead.
func newCertHolder(certFile, keyFile string, log *slog.Logger) (*certHolder, error) {
	h := &certHolder{certFile: certFile, keyFile: keyFile, log: log}
	st, err := h.stat()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s and %s do not load as a certificate and its key: %v; give PEM files, the certificate (with its chain) and its private key", certFile, keyFile, err)
	}
	h.cert, h.stamp, h.checked = &cert, st, time.Now()
	return h, nil
}

func (h *certHolder) stat() (certStamp, error) {
	c, err := os.Stat(h.certFile)
	if err != nil {
		return certStamp{}, fmt.Errorf("the TLS certificate: %v", err)
	}
	k, err := os.Stat(h.keyFile)
	if err != nil {
		return certStamp{}, fmt.Errorf("the TLS key: %v", err)
	}
	return certStamp{certMod: c.ModTime(), keyMod: k.ModTime(), certSize: c.Size(), keySize: k.Size()}, nil
}

// GetCertificate is the tls.Config hook: the current certificate, reloaded first when the
// files changed since the last look (at most once a second).
func (h *certHolder) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if now := time.Now(); now.Sub(h.checked) >= certCheckEvery {
		h.checked = now
		h.refresh()
	}
	return h.cert, nil
}

// refresh loads the files again when they changed; h.mu is held.
func (h *certHolder) refresh() {
	st, err := h.stat()
	if err != nil {
		if h.stamp != (certStamp{}) {
			h.log.Warn("TLS: cannot read the certificate files; serving the previous certificate", "err", err)
			h.stamp = certStamp{}
		}
		return
	}
	if st == h.stamp {
		return
	}
	h.stamp = st
	cert, err := tls.LoadX509KeyPair(h.certFile, h.keyFile)
	if err != nil {
		h.log.Warn("TLS: the changed certificate files do not load; serving the previous certificate until they change again", "cert", h.certFile, "key", h.keyFile, "err", err)
		return
	}
	h.cert = &cert
	h.log.Info("TLS: certificate reloaded", "cert", h.certFile)
}

// tlsConfig is the ingest listener's TLS configuration: TLS 1.2 or later, HTTP/2 and
// HTTP/1.1, the certificate from h.
func (h *certHolder) tlsConfig() *tls.Config {
	return &tls.Config{GetCertificate: h.GetCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
}
