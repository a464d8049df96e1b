// Package provider is Gatehouse's OpenID Provider: apps registered as
// clients get ID tokens and RFC 9068 access tokens that carry the org,
// from the same sign-in and sessions the proxy uses.
//
// It is built on zitadel/oidc's op package (an OpenID-certified
// provider library) through its Server interface: the library parses and
// validates requests, redirect URIs and client authentication; this
// package keeps authorization requests and codes in the store, hands
// sign-in to the idp pages (continue.go), and makes the tokens itself
// (server.go, tokens.go), so that access tokens carry typ at+jwt and an
// audience of their own.
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/idp/signing"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Paths of the provider's endpoints under the issuer.
const (
	Prefix         = "/.gatehouse/oidc/"
	AuthorizePath  = Prefix + "authorize"
	TokenPath      = Prefix + "token"
	UserinfoPath   = Prefix + "userinfo"
	RevokePath     = Prefix + "revoke"
	IntrospectPath = Prefix + "introspect"
	EndSessionPath = Prefix + "end_session"
	continuePath   = Prefix + "continue"
	callbackPath   = AuthorizePath + "/callback"
)

// Options wire a Provider.
type Options struct {
	// Issuer is the workspace's public URL.
	Issuer   *url.URL
	Store    store.Store
	Keys     *signing.Manager
	Sessions *session.Manager
	Orgs     *idp.Directory
	// SignIn is where a browser signs in (to org orgSlug, or any), then
	// comes back to rd; fresh asks for a new sign-in even with a session.
	SignIn  func(orgSlug, rd, state, loginHint string, fresh bool) string
	Clients []config.Client
	// Tokens decides every token before it is issued (nil: no policy).
	Tokens TokenDecider
	// ReloadInterval is how often the apps are read again from the store
	// (default 10s); the admin API's changes on this node apply at once.
	ReloadInterval time.Duration
	// Key is the deployment's 32-byte secret for client secrets' hashes,
	// session handles and the library's code encryption.
	Key    []byte
	Logger *slog.Logger
	Now    func() time.Time
}

// Provider serves the OpenID Provider's endpoints.
type Provider struct {
	o      Options
	issuer string
	// appsChanged wakes Run's reload early: another node changed an app.
	appsChanged chan struct{}
	// declared are the config file's apps; clients is every app, the
	// admin API's too (Reload), swapped whole.
	declared  map[string]*client
	clients   atomic.Pointer[map[string]*client]
	secretKey []byte
	requests  requests
	server    *server
	handler   http.Handler
	lib       *op.Provider
	// Back-channel logout's sender (backchannel.go).
	httpClient *http.Client
	bclWake    chan struct{}
	node       string
	// cop refuses cross-origin form posts (the consent page).
	cop *http.CrossOriginProtection
}

// New builds the provider.
func New(o Options) (*Provider, error) {
	if len(o.Key) != 32 {
		return nil, errors.New("provider: key must be 32 bytes")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReloadInterval <= 0 {
		o.ReloadInterval = 10 * time.Second
	}
	p := &Provider{appsChanged: make(chan struct{}, 1), o: o, issuer: strings.TrimSuffix(o.Issuer.String(), "/"), declared: map[string]*client{},
		secretKey: o.Key, requests: requests{o.Store}, bclWake: make(chan struct{}, 1), node: nodeName(), cop: http.NewCrossOriginProtection(),
		httpClient: &http.Client{Timeout: bclTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return errNoRedirects }}}
	for _, c := range o.Clients {
		cl, err := p.newClient(c)
		if err != nil {
			return nil, err
		}
		if c.Confidential() && c.AuthMethod != "private_key_jwt" {
			cl.secretMAC = macSecret(p.secretKey, c.Secret)
			cl.cfg.Secret = "" // not kept in the clear
		}
		p.declared[c.ID] = cl
	}
	p.publish(maps.Clone(p.declared))
	var cryptoKey [32]byte
	copy(cryptoKey[:], o.Key)
	lib, err := op.NewProvider(&op.Config{
		CryptoKey: cryptoKey, CryptoKeyId: "gatehouse", CodeMethodS256: true, AuthMethodPost: true, AuthMethodPrivateKeyJWT: true,
		DefaultLogoutRedirectURI: p.issuer + idp.LogoutPath,
		SupportedScopes:          []string{"openid", "profile", "email"},
		SupportedClaims:          claimsSupported,
	}, storage{p}, op.StaticIssuer(p.issuer), p.insecure()...)
	if err != nil {
		return nil, fmt.Errorf("provider: %w", err)
	}
	p.lib = lib
	p.server = &server{LegacyServer: op.NewLegacyServer(lib, op.Endpoints{
		Authorization: op.NewEndpoint(strings.TrimPrefix(AuthorizePath, "/")),
		Token:         op.NewEndpoint(strings.TrimPrefix(TokenPath, "/")),
		Userinfo:      op.NewEndpoint(strings.TrimPrefix(UserinfoPath, "/")),
		Revocation:    op.NewEndpoint(strings.TrimPrefix(RevokePath, "/")),
		Introspection: op.NewEndpoint(strings.TrimPrefix(IntrospectPath, "/")),
		EndSession:    op.NewEndpoint(strings.TrimPrefix(EndSessionPath, "/")),
	}), p: p}
	p.handler = op.RegisterLegacyServer(p.server, p.callback,
		op.WithServerCORSOptions(nil)) // CORS: set per endpoint in ServeHTTP
	return p, nil
}

// insecure allows an http:// issuer for development on this machine.
func (p *Provider) insecure() []op.Option {
	if p.o.Issuer.Scheme == "http" {
		return []op.Option{op.WithAllowInsecure()}
	}
	return nil
}

// HasClients reports whether any app is registered.
func (p *Provider) HasClients() bool { return len(*p.clients.Load()) > 0 }

var claimsSupported = []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "azp", "at_hash", "c_hash",
	"email", "email_verified", "name", "org_id", "org_slug", "roles", "groups", "sid"}

// Metadata is the provider's part of the discovery document (served with
// the assertion keys' one, so there is one document for both).
func (p *Provider) Metadata() map[string]any {
	return map[string]any{
		"authorization_endpoint":                           p.issuer + AuthorizePath,
		"token_endpoint":                                   p.issuer + TokenPath,
		"userinfo_endpoint":                                p.issuer + UserinfoPath,
		"revocation_endpoint":                              p.issuer + RevokePath,
		"backchannel_logout_supported":                     true,
		"backchannel_logout_session_supported":             true,
		"end_session_endpoint":                             p.issuer + EndSessionPath,
		"introspection_endpoint":                           p.issuer + IntrospectPath,
		"revocation_endpoint_auth_methods_supported":       []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported":    []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"scopes_supported":                                 []string{"openid", "profile", "email", "offline_access"},
		"response_types_supported":                         []string{"code"},
		"prompt_values_supported":                          []string{"none", "login", "consent", "select_account"},
		"response_modes_supported":                         []string{"query", "form_post"},
		"grant_types_supported":                            []string{"authorization_code", "refresh_token", "client_credentials"},
		"code_challenge_methods_supported":                 []string{"S256"},
		"token_endpoint_auth_methods_supported":            []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		"token_endpoint_auth_signing_alg_values_supported": []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"},
		"claims_supported":                                 claimsSupported,
		"request_parameter_supported":                      false,
		"request_uri_parameter_supported":                  false,
	}
}

// ServeHTTP serves the endpoints on the issuer's host only: a token is
// the issuer's, never an org's login domain's.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if request.Host(r) != strings.ToLower(p.o.Issuer.Hostname()) {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	switch r.URL.Path {
	case continuePath:
		p.continueSignIn(w, r)
		return
	case consentPath:
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			h.Set("Allow", "GET, POST")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p.cop.Handler(http.HandlerFunc(p.consentPage)).ServeHTTP(w, r)
		return
	case TokenPath, RevokePath, IntrospectPath:
		if r.Method != http.MethodPost && r.Method != http.MethodOptions {
			// Never a GET: its query (a code, a secret) lands in logs.
			h.Set("Allow", http.MethodPost)
			writeOAuthError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST")
			return
		}
		p.cors(w, r)
		if _, _, basic := r.BasicAuth(); basic {
			w = challenger{w}
		}
	case UserinfoPath:
		p.cors(w, r)
	}
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	ctx := op.ContextWithIssuer(r.Context(), p.issuer)
	p.handler.ServeHTTP(w, r.WithContext(ctx))
}

// challenger adds the Basic challenge RFC 6749 §5.2 asks of a 401 to a
// client that authenticated with the Authorization header.
type challenger struct{ http.ResponseWriter }

func (c challenger) WriteHeader(status int) {
	if status == http.StatusUnauthorized {
		c.Header().Set("WWW-Authenticate", `Basic realm="gatehouse"`)
	}
	c.ResponseWriter.WriteHeader(status)
}

func (c challenger) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// cors lets browser apps (SPAs) call the token and userinfo endpoints
// from their own origins: the origins of registered redirect URIs, never
// with credentials (the endpoints read none).
func (p *Provider) cors(w http.ResponseWriter, r *http.Request) {
	origin := r.Header.Get("Origin")
	if origin == "" || !p.knownOrigin(origin) {
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if r.Method == http.MethodOptions {
		h.Set("Access-Control-Allow-Methods", "GET, POST")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
		h.Set("Access-Control-Max-Age", "600")
	}
}

func (p *Provider) knownOrigin(origin string) bool {
	for _, c := range *p.clients.Load() {
		if c.cfg.Type != config.ClientSPA && c.cfg.Type != config.ClientNative {
			continue
		}
		for _, ru := range c.cfg.RedirectURIs {
			if u, err := url.Parse(ru); err == nil && u.Scheme+"://"+u.Host == origin {
				return true
			}
		}
	}
	return false
}

// acceptsOrg reports whether a client takes people of org orgID: any org
// for a shared client; its org (and its sub-orgs, if it says so) for a
// per-org one.
func (p *Provider) acceptsOrg(c *client, orgID string) bool {
	if !c.perOrg {
		return true
	}
	if c.orgID == "" {
		return false // its org is gone
	}
	if orgID == c.orgID {
		return true
	}
	o, ok := p.o.Orgs.ByID(orgID)
	if !ok || !c.cfg.IncludeSubOrgs {
		return false
	}
	var chain []string
	_, _ = p.o.Orgs.Nearest(o, 16, func(x *store.Org) bool {
		chain = append(chain, x.ID)
		return false
	})
	return slices.Contains(chain, c.orgID)
}

// Context helpers for a background task's store reads.
func detached(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}
