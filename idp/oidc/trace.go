package oidc

import (
	"net/http"

	"github.com/gatehouse/gatehouse/idp/connection"
)

// Trace reads the IdP's redirect back for the login tracer: its error,
// if it sent one, and which parameters came (never the code's value).
// The ID token's claims are the identity, once it verifies.
func (c *conn) Trace(r *http.Request, _ bool) ([]connection.TraceItem, string) {
	q := r.URL.Query()
	var items []connection.TraceItem
	add := func(label, value string) {
		if value != "" {
			items = append(items, connection.TraceItem{Label: label, Value: clip(value)})
		}
	}
	add("Issuer configured", c.cfg.Issuer)
	add("Issuer in the answer (iss)", q.Get("iss"))
	add("Error", q.Get("error"))
	add("Error description", q.Get("error_description"))
	if q.Get("code") != "" {
		add("Authorization code", "received (exchanged at the token endpoint)")
	}
	return items, ""
}
