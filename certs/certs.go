// Package certs provides the TLS configuration Gatehouse serves with.
// Today: static certificate files, reloaded when they change on disk (so a
// renewal by an external tool needs no restart). Automatic certificates
// (ACME) arrive with vanity domains.
package certs

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// StaticConfig serves the certificate in certFile/keyFile, with HTTP/2.
func StaticConfig(certFile, keyFile string) (*tls.Config, error) {
	return staticConfig(certFile, keyFile, 10*time.Second)
}

func staticConfig(certFile, keyFile string, recheck time.Duration) (*tls.Config, error) {
	r := &reloader{certFile: certFile, keyFile: keyFile, recheck: recheck}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: r.get,
	}, nil
}

type reloader struct {
	certFile, keyFile string
	recheck           time.Duration
	mu                sync.Mutex
	cert              *tls.Certificate
	mod               time.Time
	checked           time.Time
}

func (r *reloader) load() error {
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("certs: load %s: %w", r.certFile, err)
	}
	fi, err := os.Stat(r.certFile)
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	r.cert, r.mod = &c, fi.ModTime()
	return nil
}

// get checks the files at most every recheck; a broken replacement keeps
// the last good certificate in use.
func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) > r.recheck {
		r.checked = time.Now()
		if fi, err := os.Stat(r.certFile); err == nil && fi.ModTime().After(r.mod) {
			old := r.cert
			if err := r.load(); err != nil {
				r.cert = old
			}
		}
	}
	return r.cert, nil
}
