// Package request answers what Gatehouse asks of every incoming request:
// its host, whether it arrived over HTTPS, and its cookies read the way
// browsers send them. It is a leaf: it imports nothing of Gatehouse's.
package request

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

type secureKey struct{}

// WithSecure marks a request as having arrived over HTTPS at a trusted
// TLS-terminating proxy in front of Gatehouse.
func WithSecure(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), secureKey{}, true))
}

// IsSecure reports whether the browser reached us over HTTPS: directly,
// or through a trusted proxy (see WithSecure). Secure requests get
// Secure, "__Host-" cookies.
func IsSecure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	v, _ := r.Context().Value(secureKey{}).(bool)
	return v
}

// Host is the request host without port, lowercased: what a cookie is
// bound to.
func Host(r *http.Request) string {
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// Authority returns the request's Host as Gatehouse serves it: the
// lowercased name without a trailing dot, and the port if one was given.
// ok is false for a Host that is not a DNS name, an IPv4 address or a
// bracketed IPv6 address with an optional numeric port: Go's server lets
// "app.example.com:,evil.com" through, which frameworks trusting
// X-Forwarded-Host (or Host, with preserve_host) read as another host.
func Authority(r *http.Request) (host, port string, ok bool) {
	h := r.Host
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h, port = h[:i], h[i+1:]
		if !validPort(port) {
			return "", "", false
		}
	}
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return "", "", false
		}
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() {
			return "", "", false
		}
		return strings.ToLower(h), port, true
	}
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if h == "" || len(h) > 253 {
		return "", "", false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", "", false
		}
	}
	return h, port, true
}

func validPort(p string) bool {
	if p == "" || len(p) > 5 {
		return false
	}
	n := 0
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n > 0 && n <= 65535
}

// HostPort is host and port joined as a Host header ("app.example.com",
// "app.example.com:8443", "[::1]:8080").
func HostPort(host, port string) string {
	if port == "" {
		return host
	}
	return host + ":" + port
}
