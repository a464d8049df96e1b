// Command go-api is an example API that accepts Gatehouse's access tokens
// (RFC 9068: typ at+jwt) and answers with the caller and its org. It
// checks the signature against the issuer's JWKS, iss, aud (its own
// audience), exp and typ; an ID token or a proxy assertion, signed with
// the same keys, is refused.
//
//	AUDIENCE=https://api.acme.example go run ./examples/apps/go-api
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// AccessTokenType is the typ header of an access token (RFC 9068).
const AccessTokenType = "at+jwt"

// Caller is what the API learns from a token.
type Caller struct {
	Subject  string   `json:"sub"`
	ClientID string   `json:"client_id"`
	OrgID    string   `json:"org_id"`
	OrgSlug  string   `json:"org_slug"`
	Scope    string   `json:"scope"`
	Roles    []string `json:"roles,omitempty"`
}

// NewVerifier checks access tokens of issuer meant for audience.
// gatehouseAddr, if set, is where *.localhost names are dialed.
func NewVerifier(issuer, audience, gatehouseAddr string) *oidc.IDTokenVerifier {
	client := &http.Client{Timeout: 10 * time.Second}
	if gatehouseAddr != "" {
		client.Transport = &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(addr); strings.HasSuffix(h, "localhost") {
				addr = gatehouseAddr
			}
			return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
		}}
	}
	ctx := oidc.ClientContext(context.Background(), client)
	keys := oidc.NewRemoteKeySet(ctx, issuer+"/.well-known/jwks.json")
	// go-oidc's verifier checks signature, iss, aud and exp; typ is checked
	// before it (Verify).
	return oidc.NewVerifier(issuer, keys, &oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{oidc.ES256, oidc.RS256, oidc.EdDSA}})
}

// Verify returns the caller of a valid access token.
func Verify(ctx context.Context, v *oidc.IDTokenVerifier, raw string) (*Caller, error) {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return nil, errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	var h struct {
		Typ string `json:"typ"`
	}
	if err != nil || json.Unmarshal(b, &h) != nil || !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), AccessTokenType) {
		return nil, errors.New("not an access token (typ " + h.Typ + ")")
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	var c Caller
	if err := tok.Claims(&c); err != nil {
		return nil, err
	}
	if c.OrgID == "" {
		return nil, errors.New("token without org_id")
	}
	return &c, nil
}

// Handler answers GET /whoami for a bearer access token.
func Handler(v *oidc.IDTokenVerifier, logger *log.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		c, err := Verify(r.Context(), v, raw)
		if !ok || err != nil {
			logger.Printf("401: %v", err)
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "invalid or missing access token", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c)
	})
	return mux
}

func main() {
	or := func(k, def string) string {
		if v := os.Getenv(k); v != "" {
			return v
		}
		return def
	}
	issuer, audience, listen := or("ISSUER", "http://auth.localhost:8080"), or("AUDIENCE", "https://api.acme.example"), or("LISTEN", "127.0.0.1:5557")
	logger := log.New(os.Stderr, "go-api: ", log.LstdFlags)
	srv := &http.Server{Addr: listen, Handler: Handler(NewVerifier(issuer, audience, os.Getenv("GATEHOUSE_ADDR")), logger), ReadHeaderTimeout: 10 * time.Second}
	logger.Printf("listening on http://%s/whoami (issuer %s, audience %s)", listen, issuer, audience)
	logger.Fatal(srv.ListenAndServe())
}
