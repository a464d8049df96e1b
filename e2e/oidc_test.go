package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const oidcClients = `clients:
  - id: portal
    name: Customer portal
    type: web
    secret: ${PORTAL_SECRET}
    redirect_uris: [http://127.0.0.1:9/callback]
  - id: acme-only
    type: web
    secret: ${PORTAL_SECRET}
    org: acme
    redirect_uris: [http://127.0.0.1:9/acme]
  - id: acme-bot
    type: machine
    secret: ${PORTAL_SECRET}
    org: acme
    audience: https://api.acme.example
    scopes: [reports.read]
`

const portalSecret = "portal-secret-0123456789-abcdefghijklmnop"

// rp is a relying party made of real libraries (go-oidc, x/oauth2), with
// the browser's dialer so it reaches *.localhost.
type rp struct {
	t        *testing.T
	ctx      context.Context
	provider *oidc.Provider
	conf     oauth2.Config
}

func newRP(t *testing.T, g *gatehouse, clientID, redirect string) *rp {
	t.Helper()
	ctx := oidc.ClientContext(context.Background(), &http.Client{Transport: &http.Transport{DialContext: g.dial}})
	p, err := oidc.NewProvider(ctx, g.url("auth.localhost", ""))
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	return &rp{t: t, ctx: ctx, provider: p, conf: oauth2.Config{ClientID: clientID, ClientSecret: portalSecret, RedirectURL: redirect,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}}
}

// signIn walks the browser from the app's authorization URL to the
// redirect back to the app, and returns that redirect's query.
func (c *rp) signIn(b *browser, opts ...oauth2.AuthCodeOption) url.Values {
	c.t.Helper()
	p := b.get(c.conf.AuthCodeURL("st-1", opts...))
	for i := 0; i < 12 && p.status >= 300 && p.status < 400; i++ {
		loc := resolve(p.url, p.header.Get("Location"))
		if strings.HasPrefix(loc, c.conf.RedirectURL) {
			u, _ := url.Parse(loc)
			return u.Query()
		}
		p = b.get(loc)
	}
	c.t.Fatalf("no redirect back to the app: %d %s\n%s", p.status, p.url, p.body)
	return nil
}

// jwtPart decodes part i (0 header, 1 claims) of a compact JWT.
func jwtPart(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The OpenID Provider end to end with real relying-party libraries: a
// person signed in through the proxy gets tokens for an app without
// signing in again (code + PKCE), the ID token verifies through
// discovery and carries the org; userinfo answers for the access token
// (typ at+jwt) and for nothing else; protocol attacks get the errors the
// specs prescribe and no token; a per-org app refuses another org's
// person; a machine client gets a token of its own org.
func TestOpenIDProvider(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) + oidcClients
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456", "PORTAL_SECRET="+portalSecret)
	portal := newRP(t, g, "portal", "http://127.0.0.1:9/callback")
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "userinfo_endpoint"} {
		var claims map[string]any
		_ = portal.provider.Claims(&claims)
		if claims[k] == nil || claims["jwks_uri"] != g.url("auth.localhost", "/.well-known/jwks.json") {
			t.Fatalf("discovery lacks %s: %v", k, claims)
		}
	}

	// Alice signs in to the app behind the proxy; the portal then gets
	// her tokens without another password.
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	verifier := oauth2.GenerateVerifier()
	q := portal.signIn(alice, oauth2.S256ChallengeOption(verifier), oidc.Nonce("n-1"))
	code := q.Get("code")
	if code == "" || q.Get("state") != "st-1" {
		t.Fatalf("answer to the app: %v", q)
	}
	tok, err := portal.conf.Exchange(portal.ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := portal.provider.Verifier(&oidc.Config{ClientID: "portal"}).Verify(portal.ctx, rawID)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		Email   string   `json:"email"`
		OrgID   string   `json:"org_id"`
		OrgSlug string   `json:"org_slug"`
		Roles   []string `json:"roles"`
		Nonce   string   `json:"nonce"`
		SID     string   `json:"sid"`
	}
	if err := idt.Claims(&claims); err != nil || claims.Email != "alice@acme.example" || claims.OrgSlug != "acme" || !strings.HasPrefix(claims.OrgID, "org_") ||
		len(claims.Roles) != 1 || claims.Roles[0] != "admin" || claims.Nonce != "n-1" || claims.SID == "" {
		t.Fatalf("ID token claims %+v (%v)", claims, err)
	}
	if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
		t.Errorf("at_hash: %v", err)
	}
	// The access token is an RFC 9068 JWT, verifiable with the same keys.
	if h := jwtPart(t, tok.AccessToken, 0); h["typ"] != "at+jwt" {
		t.Fatalf("access token header %v", h)
	}
	ks := oidc.NewRemoteKeySet(portal.ctx, g.url("auth.localhost", "/.well-known/jwks.json"))
	if _, err := ks.VerifySignature(portal.ctx, tok.AccessToken); err != nil {
		t.Fatalf("access token signature: %v", err)
	}
	if c := jwtPart(t, tok.AccessToken, 1); c["org_id"] != claims.OrgID || c["client_id"] != "portal" || c["aud"] != g.url("auth.localhost", "/.gatehouse/oidc/userinfo") {
		t.Fatalf("access token claims %v", c)
	}
	ui, err := portal.provider.UserInfo(portal.ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Email != "alice@acme.example" {
		t.Fatalf("userinfo: %v %+v", err, ui)
	}

	// Attacks, each answered as the specs say, with no token.
	t.Run("code used twice", func(t *testing.T) {
		_, err := portal.conf.Exchange(portal.ctx, code, oauth2.VerifierOption(verifier))
		mustOAuthError(t, err, "invalid_grant")
	})
	t.Run("wrong verifier burns the code", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		c := portal.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code")
		_, err := portal.conf.Exchange(portal.ctx, c, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		mustOAuthError(t, err, "invalid_grant")
		_, err = portal.conf.Exchange(portal.ctx, c, oauth2.VerifierOption(v))
		mustOAuthError(t, err, "invalid_grant")
	})
	t.Run("no verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		c := portal.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code")
		_, err := portal.conf.Exchange(portal.ctx, c)
		mustOAuthError(t, err, "invalid_grant")
	})
	t.Run("code of another client", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		c := portal.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code")
		other := newRP(t, g, "acme-only", "http://127.0.0.1:9/callback")
		_, err := other.conf.Exchange(other.ctx, c, oauth2.VerifierOption(v))
		mustOAuthError(t, err, "invalid_grant")
	})
	t.Run("PKCE missing or plain", func(t *testing.T) {
		if q := portal.signIn(alice); q.Get("error") != "invalid_request" || q.Get("code") != "" {
			t.Errorf("without PKCE: %v", q)
		}
		if q := portal.signIn(alice, oauth2.SetAuthURLParam("code_challenge", strings.Repeat("a", 43)), oauth2.SetAuthURLParam("code_challenge_method", "plain")); q.Get("error") != "invalid_request" {
			t.Errorf("plain: %v", q)
		}
	})
	t.Run("unregistered redirect URI", func(t *testing.T) {
		evil := portal.conf
		evil.RedirectURL = "https://evil.example/callback"
		p := alice.get(evil.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if p.status != http.StatusBadRequest || strings.Contains(p.header.Get("Location"), "evil.example") {
			t.Errorf("unregistered redirect: %d %s", p.status, p.header.Get("Location"))
		}
	})
	t.Run("prompt=none signed out", func(t *testing.T) {
		if q := portal.signIn(g.browser(t), oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")); q.Get("error") != "login_required" || q.Get("code") != "" {
			t.Errorf("prompt=none: %v", q)
		}
	})
	t.Run("only access tokens at userinfo", func(t *testing.T) {
		for name, bearer := range map[string]string{"ID token": rawID, "proxy assertion": up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), "garbage": "x.y.z"} {
			req, _ := http.NewRequest("GET", g.url("auth.localhost", "/.gatehouse/oidc/userinfo"), nil)
			req.Header.Set("Authorization", "Bearer "+bearer)
			resp, err := alice.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s at userinfo: %d", name, resp.StatusCode)
			}
		}
	})

	// Carol (globex) gets portal tokens for globex; the acme-only app
	// refuses her with access_denied.
	carol := g.browser(t)
	carol.login(g.url("globex-app.localhost", "/"), "carol@globex.example", "carol-pw-456")
	v := oauth2.GenerateVerifier()
	ctok, err := portal.conf.Exchange(portal.ctx, portal.signIn(carol, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if c := jwtPart(t, ctok.Extra("id_token").(string), 1); c["org_slug"] != "globex" {
		t.Fatalf("carol's portal token: %v", c)
	}
	acmeOnly := newRP(t, g, "acme-only", "http://127.0.0.1:9/acme")
	if q := acmeOnly.signIn(carol, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("acme-only for carol: %v", q)
	}
	// Alice gets acme-only tokens.
	v = oauth2.GenerateVerifier()
	if _, err := acmeOnly.conf.Exchange(acmeOnly.ctx, acmeOnly.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v)); err != nil {
		t.Fatalf("acme-only for alice: %v", err)
	}

	// The machine client: a token of its own org, audience its API.
	cc := clientcredentials.Config{ClientID: "acme-bot", ClientSecret: portalSecret, TokenURL: portal.provider.Endpoint().TokenURL, Scopes: []string{"reports.read"}}
	mt, err := cc.Token(portal.ctx)
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	if c := jwtPart(t, mt.AccessToken, 1); c["org_slug"] != "acme" || c["sub"] != "acme-bot" || c["aud"] != "https://api.acme.example" || c["scope"] != "reports.read" {
		t.Fatalf("machine token %v", c)
	}
	cc.ClientSecret = "wrong-secret-wrong-secret-wrong-secret"
	_, err = cc.Token(portal.ctx)
	mustOAuthError(t, err, "invalid_client")
	cc.ClientSecret, cc.Scopes = portalSecret, []string{"admin"}
	_, err = cc.Token(portal.ctx)
	mustOAuthError(t, err, "invalid_scope")
	// The token endpoint takes no GET.
	resp, err := alice.client.Get(portal.provider.Endpoint().TokenURL + "?grant_type=client_credentials&client_id=acme-bot&client_secret=" + portalSecret)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || strings.Contains(string(body), "access_token") {
		t.Fatalf("GET token: %d %s", resp.StatusCode, body)
	}
}

func mustOAuthError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if !errors.As(err, &re) || re.ErrorCode != code {
		t.Fatalf("error %v, want %s", err, code)
	}
}
