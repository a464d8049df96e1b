package signing

import (
	"encoding/json"
	"net/http"
)

// WellKnown serves the workspace's keys at /.well-known/jwks.json and an
// OpenID discovery document naming them for issuer, so that any JWT
// library verifies Gatehouse's assertions. provider, if set, adds the
// OpenID Provider's part: one document for both.
func (keys *Manager) WellKnown(issuer string, provider func() map[string]any) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		// Public documents: browser apps (SPAs) read them from their origins.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		_, _ = w.Write(keys.JWKS())
	})
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		doc := map[string]any{
			"issuer":                                issuer,
			"jwks_uri":                              issuer + "/.well-known/jwks.json",
			"id_token_signing_alg_values_supported": keys.Algorithms(),
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"code"},
			"claims_supported":                      []string{"iss", "aud", "sub", "email", "name", "org_id", "org_slug", "roles", "groups", "iat", "nbf", "exp", "jti"},
		}
		if provider != nil {
			for k, v := range provider() {
				doc[k] = v
			}
		}
		_ = json.NewEncoder(w).Encode(doc)
	})
	return mux
}
