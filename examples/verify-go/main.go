// Command verify-go is an example upstream behind Gatehouse. It trusts no
// identity header: every request must carry X-Gatehouse-Jwt-Assertion,
// which it verifies with go-oidc against the issuer's published JWKS
// (signature, iss, aud, exp, nbf) before answering with who is asking.
//
//	ISSUER=http://auth.localhost:8080 AUDIENCE=app.localhost LISTEN=127.0.0.1:9000 go run ./examples/verify-go
//
// Flags -issuer, -audience and -listen override the environment.
package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// AssertionHeader carries the signed identity Gatehouse forwards.
const AssertionHeader = "X-Gatehouse-Jwt-Assertion"

// Claims are Gatehouse's assertion claims beyond the registered ones
// (iss, aud, exp, nbf, iat), which the verifier checks itself.
type Claims struct {
	Subject string   `json:"sub"`
	Email   string   `json:"email"`
	Name    string   `json:"name,omitempty"`
	OrgID   string   `json:"org_id"`
	OrgSlug string   `json:"org_slug"`
	Roles   []string `json:"roles"`
	Groups  []string `json:"groups"`
	JTI     string   `json:"jti"`
}

// Config is what the example needs to know.
type Config struct {
	Issuer   string // Gatehouse public_url, e.g. http://auth.localhost:8080
	Audience string // the route's audience: by default its host, e.g. app.localhost
	Listen   string // where this upstream listens, e.g. 127.0.0.1:9000
}

// LoadConfig reads ISSUER, AUDIENCE and LISTEN from getenv, then lets the
// flags in args override them. The defaults match `gatehouse serve --dev`.
func LoadConfig(args []string, getenv func(string) string) (Config, error) {
	def := func(key, fallback string) string {
		if v := getenv(key); v != "" {
			return v
		}
		return fallback
	}
	var c Config
	fs := flag.NewFlagSet("verify-go", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Issuer, "issuer", def("ISSUER", "http://auth.localhost:8080"), "Gatehouse issuer (public_url)")
	fs.StringVar(&c.Audience, "audience", def("AUDIENCE", "app.localhost"), "expected aud claim")
	fs.StringVar(&c.Listen, "listen", def("LISTEN", "127.0.0.1:9000"), "listen address")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	c.Issuer = strings.TrimSuffix(c.Issuer, "/")
	if c.Issuer == "" || c.Audience == "" || c.Listen == "" {
		return Config{}, errors.New("issuer, audience and listen must not be empty")
	}
	return c, nil
}

// NewVerifier checks assertions against {issuer}/.well-known/jwks.json.
// The key set is cached and fetched again when a token names a key ID it
// has not seen, so Gatehouse's key rotation needs nothing from the app.
// client fetches the JWKS (nil: a client with a 10s timeout).
func NewVerifier(issuer, audience string, client *http.Client) *oidc.IDTokenVerifier {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	ctx := oidc.ClientContext(context.Background(), client)
	keySet := oidc.NewRemoteKeySet(ctx, issuer+"/.well-known/jwks.json")
	return oidc.NewVerifier(issuer, keySet, &oidc.Config{
		ClientID:             audience,
		SupportedSigningAlgs: []string{oidc.ES256, oidc.RS256, oidc.EdDSA},
	})
}

// AssertionType is the assertion's "typ" header: the issuer's ID tokens
// ("JWT") and access tokens ("at+jwt") are signed with the same keys,
// and neither is an assertion.
const AssertionType = "gatehouse-assertion+jwt"

// Verify returns the claims of a valid assertion.
func Verify(ctx context.Context, v *oidc.IDTokenVerifier, raw string) (*Claims, error) {
	if raw == "" {
		return nil, errors.New("no " + AssertionHeader + " header")
	}
	if err := checkType(raw); err != nil {
		return nil, err
	}
	tok, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, err
	}
	var c Claims
	if err := tok.Claims(&c); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	if c.Subject == "" {
		return nil, errors.New("assertion has no sub")
	}
	return &c, nil
}

// Handler answers every request with the verified identity as JSON, or
// 401 when the assertion is missing or does not verify. /healthz is open
// (it is a public path in the example route, so no assertion comes with it).
func Handler(v *oidc.IDTokenVerifier, logger *log.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = io.WriteString(w, "ok\n")
			return
		}
		c, err := Verify(r.Context(), v, r.Header.Get(AssertionHeader))
		if err != nil {
			// The reason goes to the log, not to the client.
			if logger != nil {
				logger.Printf("401 %s %s: %v", r.Method, r.URL.Path, err)
			}
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, "invalid or missing identity assertion\n")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"sub": c.Subject, "email": c.Email, "name": c.Name,
			"org_id": c.OrgID, "org": c.OrgSlug, "roles": c.Roles, "groups": c.Groups,
		})
	})
}

func main() {
	cfg, err := LoadConfig(os.Args[1:], os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "verify-go:", err)
		fmt.Fprintln(os.Stderr, "usage: verify-go [-issuer URL] [-audience AUD] [-listen ADDR] (or ISSUER, AUDIENCE, LISTEN)")
		os.Exit(2)
	}
	logger := log.New(os.Stderr, "verify-go: ", log.LstdFlags)
	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           Handler(NewVerifier(cfg.Issuer, cfg.Audience, nil), logger),
		ReadHeaderTimeout: 10 * time.Second,
	}
	logger.Printf("listening on %s; issuer %s, audience %s", cfg.Listen, cfg.Issuer, cfg.Audience)
	logger.Fatal(srv.ListenAndServe())
}

// checkType refuses a token whose typ header is not AssertionType (the
// signature is checked after, so this only refuses earlier).
func checkType(raw string) error {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return errors.New("malformed jwt")
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return errors.New("malformed jwt header")
	}
	var h struct {
		Typ string `json:"typ"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return errors.New("malformed jwt header")
	}
	if !strings.EqualFold(strings.TrimPrefix(strings.ToLower(h.Typ), "application/"), AssertionType) {
		return fmt.Errorf("not a Gatehouse assertion (typ %q)", h.Typ)
	}
	return nil
}
