// Package request answers what Gatehouse asks of every incoming request:
// its host, whether it arrived over HTTPS, and its cookies read the way
// browsers send them. It is a leaf: it imports nothing of Gatehouse's.
package request

import (
	"context"
	"net"
	"net/http"
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
