// Package certs provides the TLS configuration Gatehouse serves with.
// Today: static certificate files, reloaded when they change on disk (so a
// renewal by an external tool needs no restart). Automatic certificates
// (ACME) arrive with vanity domains.
package certs

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/request"
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
	stamp             string // the files' modification times and sizes at the last load
	checked           time.Time
}

// stampOf identifies the files' current versions. Taken before they are
// read, so a rewrite during the read is seen at the next check; compared
// for equality, so a replacement with an older time or within one
// timestamp step (but another size) is seen too.
func (r *reloader) stampOf() (string, error) {
	var b strings.Builder
	for _, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("certs: %w", err)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

func (r *reloader) load() error {
	stamp, err := r.stampOf()
	if err != nil {
		return err
	}
	c, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("certs: load %s: %w", r.certFile, err)
	}
	r.cert, r.stamp = &c, stamp
	return nil
}

// get checks the files at most every recheck; a broken replacement keeps
// the last good certificate in use.
func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) >= r.recheck {
		r.checked = time.Now()
		if stamp, err := r.stampOf(); err == nil && stamp != r.stamp {
			_ = r.load() // on failure r.cert is unchanged: the last good one serves
		}
	}
	return r.cert, nil
}

// RedirectToHTTPS answers the plain-HTTP listener with static or local-CA
// TLS: a permanent redirect to HTTPS for hosts served (serves), 404 for others.
func RedirectToHTTPS(httpsPort int, serves func(host string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only names Gatehouse serves: a redirect for any Host would make
		// this listener an open redirector to https://<anything>.
		host := request.Host(r)
		if !serves(host) {
			http.Error(w, "Nothing is served at this address.", http.StatusNotFound)
			return
		}
		if httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
