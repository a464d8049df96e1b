package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

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
    post_logout_redirect_uris: [http://127.0.0.1:9/bye]
    backchannel_logout_uri: {{BCL}}
    claims: { account: user.id, company: org.name }
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

// signInFrom follows the browser from u (a step of a sign-in) to the
// redirect back to the app, and returns that redirect's query.
func (c *rp) signInFrom(b *browser, u string) url.Values {
	c.t.Helper()
	p := b.get(u)
	for i := 0; i < 12 && p.status >= 300 && p.status < 400; i++ {
		loc := resolve(p.url, p.header.Get("Location"))
		if strings.HasPrefix(loc, c.conf.RedirectURL) {
			q, _ := url.Parse(loc)
			return q.Query()
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
	// The portal's back-channel logout endpoint: down at first (503),
	// then up; it keeps the logout tokens it gets.
	var (
		bclMu    sync.Mutex
		bclCalls int
		bclToks  []string
	)
	bcl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bclMu.Lock()
		defer bclMu.Unlock()
		bclCalls++
		if bclCalls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_ = r.ParseForm()
		bclToks = append(bclToks, r.PostForm.Get("logout_token"))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(bcl.Close)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) +
		strings.ReplaceAll(oidcClients, "{{BCL}}", bcl.URL+"/backchannel")
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
	if c := jwtPart(t, tok.AccessToken, 1); c["org_id"] != claims.OrgID || c["client_id"] != "portal" || c["aud"] != g.url("auth.localhost", "/.gatehouse/oidc/userinfo") ||
		c["company"] != "Acme Corp" || c["account"] != idt.Subject {
		t.Fatalf("access token claims %v", c)
	}
	if c := jwtPart(t, rawID, 1); c["company"] != "Acme Corp" || c["account"] != idt.Subject {
		t.Fatalf("mapped claims in the ID token: %v", c)
	}
	ui, err := portal.provider.UserInfo(portal.ctx, oauth2.StaticTokenSource(tok))
	if err != nil || ui.Email != "alice@acme.example" {
		t.Fatalf("userinfo: %v %+v", err, ui)
	}

	// Refresh tokens rotate; a used one presented again revokes the family.
	t.Run("refresh rotation and reuse", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		t1, err := portal.conf.Exchange(portal.ctx, portal.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
		if err != nil || t1.RefreshToken == "" {
			t.Fatalf("no refresh token: %v", err)
		}
		t2, err := portal.refresh(t1.RefreshToken)
		if err != nil || t2.RefreshToken == t1.RefreshToken || t2.AccessToken == t1.AccessToken {
			t.Fatalf("refresh: %v", err)
		}
		if c := jwtPart(t, t2.Extra("id_token").(string), 1); c["org_slug"] != "acme" || c["sub"] != jwtPart(t, t1.Extra("id_token").(string), 1)["sub"] {
			t.Fatalf("refreshed ID token %v", c)
		}
		_, err = portal.refresh(t1.RefreshToken)
		mustOAuthError(t, err, "invalid_grant")
		_, err = portal.refresh(t2.RefreshToken) // the family is revoked
		mustOAuthError(t, err, "invalid_grant")
		// Another client's refresh token, a forged one.
		other := newRP(t, g, "acme-only", "http://127.0.0.1:9/acme")
		v = oauth2.GenerateVerifier()
		t3, _ := portal.conf.Exchange(portal.ctx, portal.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
		_, err = other.refresh(t3.RefreshToken)
		mustOAuthError(t, err, "invalid_grant")
		_, err = portal.refresh(t3.RefreshToken[:len(t3.RefreshToken)-2] + "AA")
		mustOAuthError(t, err, "invalid_grant")
		// Scope escalation on refresh.
		_, err = portal.refreshScopes(t3.RefreshToken, "openid reports.admin")
		mustOAuthError(t, err, "invalid_scope")
	})
	t.Run("revocation and introspection", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		t1, err := portal.conf.Exchange(portal.ctx, portal.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatal(err)
		}
		if in := portal.introspect(t, "portal", portalSecret, t1.AccessToken); in["active"] != true || in["org_slug"] != "acme" || in["client_id"] != "portal" {
			t.Fatalf("introspection: %v", in)
		}
		if in := portal.introspect(t, "acme-bot", portalSecret, t1.AccessToken); in["active"] != false {
			t.Fatalf("another client introspects: %v", in)
		}
		if in := portal.introspect(t, "portal", portalSecret, t1.RefreshToken); in["active"] != true || in["token_type"] != "refresh_token" {
			t.Fatalf("refresh token introspection: %v", in)
		}
		portal.revoke(t, t1.AccessToken)
		if in := portal.introspect(t, "portal", portalSecret, t1.AccessToken); in["active"] != false {
			t.Fatalf("revoked access token: %v", in)
		}
		if _, err := portal.provider.UserInfo(portal.ctx, oauth2.StaticTokenSource(t1)); err == nil {
			t.Fatal("userinfo with a revoked access token")
		}
		portal.revoke(t, t1.RefreshToken)
		_, err = portal.refresh(t1.RefreshToken)
		mustOAuthError(t, err, "invalid_grant")
	})

	// Attacks, each answered as the specs say, with no token.
	t.Run("code used twice", func(t *testing.T) {
		_, err := portal.conf.Exchange(portal.ctx, code, oauth2.VerifierOption(verifier))
		mustOAuthError(t, err, "invalid_grant")
		// ... and what it gave first is revoked.
		if _, err := portal.provider.UserInfo(portal.ctx, oauth2.StaticTokenSource(tok)); err == nil {
			t.Error("the first access token still works")
		}
		_, err = portal.refresh(tok.RefreshToken)
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
	t.Run("unknown organization, foreign resource, request_uri, no openid", func(t *testing.T) {
		for name, tc := range map[string]struct {
			opts []oauth2.AuthCodeOption
			want string
		}{
			"organization":              {[]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("organization", "no-such-org")}, "invalid_request"},
			"resource":                  {[]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("resource", "https://api.evil.example")}, "invalid_target"},
			"another client's audience": {[]oauth2.AuthCodeOption{oauth2.SetAuthURLParam("resource", "https://api.acme.example")}, "invalid_target"},
		} {
			q := portal.signIn(alice, append(tc.opts, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))...)
			if q.Get("error") != tc.want || q.Get("code") != "" {
				t.Errorf("%s: %v", name, q)
			}
		}
		noOpenID := portal.conf
		noOpenID.Scopes = []string{"email"}
		p := alice.get(noOpenID.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if loc := p.header.Get("Location"); !strings.Contains(loc, "error=invalid_scope") {
			t.Errorf("without openid: %d %s", p.status, loc)
		}
		if p := alice.get(portal.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("request_uri", "https://evil.example/req"))); p.status != http.StatusBadRequest {
			t.Errorf("request_uri: %d %s", p.status, p.header.Get("Location"))
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

	t.Run("a token of another kind as id_token_hint", func(t *testing.T) {
		assertion := up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion")
		for name, hint := range map[string]string{"proxy assertion": assertion, "access token": tok.AccessToken} {
			q := portal.signIn(alice, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("id_token_hint", hint))
			if q.Get("error") != "invalid_request" || q.Get("code") != "" {
				t.Errorf("%s as id_token_hint: %v", name, q)
			}
		}
	})
	t.Run("prompt=select_account shows the org chooser first", func(t *testing.T) {
		p := alice.follow(alice.get(portal.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "select_account"))))
		if !strings.Contains(p.url, "/.gatehouse/orgs") || p.status != 200 || !strings.Contains(p.body, "Acme Corp") {
			t.Fatalf("chooser: %d %s\n%s", p.status, p.url, p.body)
		}
		rd, _ := url.Parse(p.url)
		back := rd.Query().Get("rd")
		if q := portal.signInFrom(alice, back); q.Get("code") == "" {
			t.Fatalf("after the chooser: %v", q)
		}
	})
	t.Run("signed in through an app first, the proxy does not ask again", func(t *testing.T) {
		bob := g.browser(t)
		p := bob.follow(bob.get(portal.conf.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))))
		form := hidden(p.body)
		form.Set("email", "bob@acme.example")
		p = bob.follow(bob.post(resolve(p.url, field(t, actionRE, p.body)), form))
		form = hidden(p.body)
		form.Set("email", "bob@acme.example")
		form.Set("password", "bob-example-password")
		loc := bob.post(resolve(p.url, field(t, actionRE, p.body)), form)
		if q := portal.signInFrom(bob, resolve(loc.url, loc.header.Get("Location"))); q.Get("code") == "" {
			t.Fatalf("bob's sign-in through the portal: %v", q)
		}
		r := bob.follow(bob.get(g.url("app.localhost", "/after-oidc")))
		if strings.Contains(r.body, `name="password"`) {
			t.Fatalf("the proxy asked bob again: %s", r.url)
		}
		form = hidden(r.body)
		if r.status == 200 && strings.Contains(r.body, "Work email") {
			// The shared sign-in asks who he is (no password), once.
			form.Set("email", "bob@acme.example")
			r = bob.follow(bob.post(resolve(r.url, field(t, actionRE, r.body)), form))
		}
		if got := up.last("/after-oidc"); got == nil || got.Header.Get("X-Gatehouse-Email") != "bob@acme.example" {
			t.Fatalf("the app did not get bob: %d %s", r.status, r.url)
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

	// RP-initiated logout: a post-logout URI not the client's is refused;
	// the registered one gets the browser back after the person confirms,
	// and the one session ends for the apps and the proxy alike.
	var meta struct {
		EndSession string `json:"end_session_endpoint"`
	}
	_ = portal.provider.Claims(&meta)
	v = oauth2.GenerateVerifier()
	last, err := portal.conf.Exchange(portal.ctx, portal.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	hint := last.Extra("id_token").(string)
	endURL := func(post string) string {
		return meta.EndSession + "?" + url.Values{"id_token_hint": {hint}, "post_logout_redirect_uri": {post}, "state": {"bye-1"}}.Encode()
	}
	if p := alice.get(endURL("https://evil.example/bye")); p.status < 400 || strings.Contains(p.header.Get("Location"), "evil.example") {
		t.Fatalf("foreign post-logout URI: %d %s", p.status, p.header.Get("Location"))
	}
	if p := alice.get(meta.EndSession + "?" + url.Values{"id_token_hint": {last.AccessToken}}.Encode()); p.status != http.StatusBadRequest {
		t.Fatalf("an access token as id_token_hint at logout: %d %s", p.status, p.header.Get("Location"))
	}
	p := alice.follow(alice.get(endURL("http://127.0.0.1:9/bye")))
	if p.status != 200 || !strings.Contains(p.body, `name="return"`) {
		t.Fatalf("logout confirmation: %d %s\n%s", p.status, p.url, p.body)
	}
	out := alice.post(resolve(p.url, "/.gatehouse/logout"), hidden(p.body))
	if out.status != http.StatusSeeOther || out.header.Get("Location") != "http://127.0.0.1:9/bye?state=bye-1" {
		t.Fatalf("after logout: %d %q\n%s", out.status, out.header.Get("Location"), out.body)
	}
	_, err = portal.refresh(last.RefreshToken)
	mustOAuthError(t, err, "invalid_grant")
	eventuallyWithin(t, 5*time.Second, "the proxy session ends too", func() error {
		r := alice.get(g.url("app.localhost", "/after-logout"))
		return holds(r.status == http.StatusFound, "app after logout: %d", r.status)
	})
	// The portal hears of it by back channel, after its outage: one
	// logout token, for the session its ID token named.
	var lt string
	eventuallyWithin(t, 10*time.Second, "the back-channel logout token", func() error {
		bclMu.Lock()
		defer bclMu.Unlock()
		if len(bclToks) > 0 {
			lt = bclToks[0]
		}
		return holds(len(bclToks) == 1 && bclCalls == 2, "calls %d, tokens %d", bclCalls, len(bclToks))
	})
	if _, err := ks.VerifySignature(portal.ctx, lt); err != nil {
		t.Fatalf("logout token signature: %v", err)
	}
	h, c := jwtPart(t, lt, 0), jwtPart(t, lt, 1)
	events, _ := c["events"].(map[string]any)
	if h["typ"] != "logout+jwt" || c["aud"] != "portal" || c["sid"] != jwtPart(t, hint, 1)["sid"] || c["sub"] != jwtPart(t, hint, 1)["sub"] ||
		c["nonce"] != nil || events["http://schemas.openid.net/event/backchannel-logout"] == nil {
		t.Fatalf("logout token %v %v", h, c)
	}
}

func (c *rp) refresh(rt string) (*oauth2.Token, error) {
	return c.conf.TokenSource(c.ctx, &oauth2.Token{RefreshToken: rt}).Token()
}

// refreshScopes refreshes asking for scope.
func (c *rp) refreshScopes(rt, scope string) (*oauth2.Token, error) {
	return c.post(c.provider.Endpoint().TokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {scope}})
}

// post sends a form to the provider with the client's credentials.
func (c *rp) post(u string, form url.Values) (*oauth2.Token, error) {
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.conf.ClientID, c.conf.ClientSecret)
	resp, err := oauth2.NewClient(c.ctx, nil).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if out.Error != "" {
		return nil, &oauth2.RetrieveError{ErrorCode: out.Error}
	}
	return &oauth2.Token{AccessToken: out.AccessToken}, nil
}

func (c *rp) revoke(t *testing.T, tok string) {
	t.Helper()
	var claims struct {
		Revoke string `json:"revocation_endpoint"`
	}
	_ = c.provider.Claims(&claims)
	if _, err := c.post(claims.Revoke, url.Values{"token": {tok}}); err != nil {
		t.Fatalf("revoke: %v", err)
	}
}

func (c *rp) introspect(t *testing.T, id, secret, tok string) map[string]any {
	t.Helper()
	var claims struct {
		Introspect string `json:"introspection_endpoint"`
	}
	_ = c.provider.Claims(&claims)
	req, _ := http.NewRequest("POST", claims.Introspect, strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := oauth2.NewClient(c.ctx, nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		t.Fatalf("introspect: %d", resp.StatusCode)
	}
	return out
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

// The token policy decides before any token: the client's layer here
// gives the ops console's tokens to admins only (access_denied at
// sign-in for anyone else), and the machine client's only with a scope
// (invalid_grant at the token endpoint); the refusal says why.
func TestTokenPolicy(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "ops.rego")
	must(t, os.WriteFile(pol, []byte(`package gatehouse.token

default allow := false

allow if "admin" in input.user.roles

allow if {
	input.grant_type == "client_credentials"
	"reports.read" in input.scopes
}

reasons contains "the ops console is for admins" if not "admin" in input.user.roles
`), 0o600))
	up := newUpstream(t)
	clients := `clients:
  - id: ops
    type: web
    secret: ${PORTAL_SECRET}
    redirect_uris: [http://127.0.0.1:9/ops]
    policy: ` + pol + `
  - id: ops-bot
    type: machine
    secret: ${PORTAL_SECRET}
    org: acme
    scopes: [reports.read, reports.write]
    policy: ` + pol + "\n"
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) + clients
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456", "PORTAL_SECRET="+portalSecret)
	ops := newRP(t, g, "ops", "http://127.0.0.1:9/ops")

	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	v := oauth2.GenerateVerifier()
	if _, err := ops.conf.Exchange(ops.ctx, ops.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v)); err != nil {
		t.Fatalf("alice (admin): %v", err)
	}
	bob := g.browser(t)
	bob.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	q := ops.signIn(bob, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	if q.Get("error") != "access_denied" || q.Get("code") != "" || !strings.Contains(q.Get("error_description"), "for admins") {
		t.Fatalf("bob (member): %v", q)
	}
	cc := clientcredentials.Config{ClientID: "ops-bot", ClientSecret: portalSecret, TokenURL: ops.provider.Endpoint().TokenURL, Scopes: []string{"reports.read"}}
	if _, err := cc.Token(ops.ctx); err != nil {
		t.Fatalf("bot with reports.read: %v", err)
	}
	cc.Scopes = []string{"reports.write"}
	_, err := cc.Token(ops.ctx)
	mustOAuthError(t, err, "invalid_grant")
	if !g.logged(`"msg":"provider: token refused by policy"`) {
		t.Error("the refusals were not logged")
	}
}

// Deprovisioning reaches tokens too: a person an org admin suspends
// loses, within revocation_check, the use of every token the provider
// gave them (refresh, userinfo, introspection), and the app is told by
// back channel.
func TestDeprovisionedPersonLosesTokens(t *testing.T) {
	var (
		mu   sync.Mutex
		sids []string
	)
	bcl := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		parts := strings.Split(r.PostForm.Get("logout_token"), ".")
		if len(parts) == 3 {
			b, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var c struct {
				SID string `json:"sid"`
			}
			_ = json.Unmarshal(b, &c)
			mu.Lock()
			sids = append(sids, c.SID)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(bcl.Close)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) +
		strings.ReplaceAll(oidcClients, "{{BCL}}", bcl.URL+"/bcl")
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456", "PORTAL_SECRET="+portalSecret)
	portal := newRP(t, g, "portal", "http://127.0.0.1:9/callback")

	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	acmeAPI := func(path string) string { return g.url("login.acme.localhost", "/api/v1/orgs/acme"+path) }
	st, _, dave := alice.api("POST", acmeAPI("/users"), map[string]any{"email": "dave@acme.example", "password": "dave-long-password"}, same...)
	if st != 201 {
		t.Fatalf("create dave: %d %v", st, dave)
	}
	daveB := g.browser(t)
	daveB.login(g.url("app.localhost", "/"), "dave@acme.example", "dave-long-password")
	v := oauth2.GenerateVerifier()
	tok, err := portal.conf.Exchange(portal.ctx, portal.signIn(daveB, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	sid, _ := jwtPart(t, tok.Extra("id_token").(string), 1)["sid"].(string)

	st, hdr, _ := alice.api("GET", acmeAPI("/users/"+dave["id"].(string)), nil)
	if st != 200 {
		t.Fatalf("get dave: %d", st)
	}
	if st, _, p := alice.api("PATCH", acmeAPI("/users/"+dave["id"].(string)), map[string]any{"disabled": true}, append(same, "If-Match", hdr.Get("ETag"))...); st != 200 {
		t.Fatalf("suspend dave: %d %v", st, p)
	}
	suspended := time.Now()
	eventuallyWithin(t, 3*time.Second, "dave's tokens stop working", func() error {
		if _, err := portal.refresh(tok.RefreshToken); err == nil {
			return holds(false, "refresh still works")
		}
		if _, err := portal.provider.UserInfo(portal.ctx, oauth2.StaticTokenSource(tok)); err == nil {
			return holds(false, "userinfo still answers")
		}
		in := portal.introspect(t, "portal", portalSecret, tok.AccessToken)
		return holds(in["active"] == false, "introspection: %v", in)
	})
	if d := time.Since(suspended); d > 3*time.Second {
		t.Fatalf("dave's tokens lasted %s", d)
	}
	eventuallyWithin(t, 5*time.Second, "the portal is told by back channel", func() error {
		mu.Lock()
		defer mu.Unlock()
		return holds(len(sids) == 1 && sids[0] == sid, "logout tokens for %v, want [%s]", sids, sid)
	})
}

// A per-org app of an org that signs in through its own OIDC IdP: its
// people (and, with include_sub_orgs, its sub-org's) get tokens of their
// org; a person of another federated org, signed in through theirs, gets
// access_denied and no token.
func TestPerOrgClientWithFederatedOrgs(t *testing.T) {
	f := startFederation(t, `clients:
  - id: initech-portal
    type: web
    secret: ${PORTAL_SECRET}
    org: initech
    include_sub_orgs: true
    redirect_uris: [http://127.0.0.1:9/initech]
`)
	g := f.g
	rp := newRP(t, g, "initech-portal", "http://127.0.0.1:9/initech")
	signIn := func(email, user, pw string) *browser {
		b := g.browser(t)
		p := b.toIdP(g.url("app.localhost", "/"), email)
		if p = b.follow(b.atIdP(p, user, pw)); p.status != 200 {
			t.Fatalf("%s signs in: %d %s", email, p.status, p.url)
		}
		return b
	}
	for _, tc := range []struct{ email, user, pw, org string }{
		{"ann@initech.example", "ann", "ann-pw", "initech"},
		{"eva@eu.initech.example", "eva", "eva-pw", "initech-eu"},
	} {
		b := signIn(tc.email, tc.user, tc.pw)
		v := oauth2.GenerateVerifier()
		tok, err := rp.conf.Exchange(rp.ctx, rp.signIn(b, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
		if err != nil {
			t.Fatalf("%s: %v", tc.email, err)
		}
		if c := jwtPart(t, tok.Extra("id_token").(string), 1); c["org_slug"] != tc.org || c["email"] != tc.email {
			t.Fatalf("%s's ID token %v", tc.email, c)
		}
	}
	bea := signIn("bea@umbrella.example", "bea", "bea-pw")
	if q := rp.signIn(bea, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("umbrella's bea at initech's app: %v", q)
	}
}

// A third-party app gets tokens only with the person's consent, asked
// once and remembered; prompt=consent asks again; a refusal is
// access_denied; an app that wants no interaction gets consent_required.
func TestThirdPartyConsent(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) + `clients:
  - id: partner
    name: Partner Analytics
    type: web
    secret: ${PORTAL_SECRET}
    third_party: true
    redirect_uris: [http://127.0.0.1:9/partner]
`
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456", "PORTAL_SECRET="+portalSecret)
	partner := newRP(t, g, "partner", "http://127.0.0.1:9/partner")
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")

	// toConsent walks to the consent page and returns it.
	toConsent := func(b *browser, opts ...oauth2.AuthCodeOption) page {
		t.Helper()
		p := b.follow(b.get(partner.conf.AuthCodeURL("s", append(opts, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))...)))
		if p.status != 200 || !strings.Contains(p.body, "Partner Analytics") || !strings.Contains(p.body, "your email address") {
			t.Fatalf("consent page: %d %s\n%s", p.status, p.url, p.body)
		}
		return p
	}
	answer := func(b *browser, p page, decision string) url.Values {
		t.Helper()
		form := hidden(p.body)
		form.Set("decision", decision)
		r := b.post(resolve(p.url, field(t, actionRE, p.body)), form)
		loc := resolve(r.url, r.header.Get("Location"))
		if strings.HasPrefix(loc, partner.conf.RedirectURL) {
			u, _ := url.Parse(loc)
			return u.Query()
		}
		return partner.signInFrom(b, loc)
	}
	if q := answer(alice, toConsent(alice), "deny"); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("declined: %v", q)
	}
	if q := answer(alice, toConsent(alice), "allow"); q.Get("code") == "" {
		t.Fatalf("allowed: %v", q)
	}
	// Remembered: straight through.
	if q := partner.signIn(alice, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())); q.Get("code") == "" {
		t.Fatalf("second sign-in asked again: %v", q)
	}
	// prompt=consent asks again.
	if q := answer(alice, toConsent(alice, oauth2.SetAuthURLParam("prompt", "consent")), "allow"); q.Get("code") == "" {
		t.Fatalf("prompt=consent: %v", q)
	}
	// Bob, signed in, has not consented. A consent form from another site
	// is refused; prompt=none gets consent_required.
	bob := g.browser(t)
	bob.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	p := toConsent(bob)
	form := hidden(p.body)
	form.Set("decision", "allow")
	req, _ := http.NewRequest("POST", resolve(p.url, field(t, actionRE, p.body)), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if r := bob.do(req); r.status != http.StatusForbidden {
		t.Fatalf("cross-site consent: %d", r.status)
	}
	if q := partner.signIn(bob, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")); q.Get("error") != "consent_required" {
		t.Fatalf("prompt=none without consent: %v", q)
	}
}

// A per-org app of an org that signs in through SAML: its person gets
// tokens of it; another SAML org's person gets access_denied.
func TestPerOrgClientWithSAMLOrgs(t *testing.T) {
	f := startSAML(t, `clients:
  - id: hooli-portal
    type: web
    secret: ${PORTAL_SECRET}
    org: hooli
    redirect_uris: [http://127.0.0.1:9/hooli]
`)
	g := f.g
	rp := newRP(t, g, "hooli-portal", "http://127.0.0.1:9/hooli")
	signIn := func(email, user, pw, idpOrigin string) *browser {
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/"), email, user, pw)
		if p := b.follow(b.postResponse(action, vals, idpOrigin)); p.status != 200 {
			t.Fatalf("%s signs in: %d %s", email, p.status, p.url)
		}
		return b
	}
	gavin := signIn("gavin@hooli.example", "gavin", "gavin-pw", f.idp1.URL)
	v := oauth2.GenerateVerifier()
	tok, err := rp.conf.Exchange(rp.ctx, rp.signIn(gavin, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if c := jwtPart(t, tok.Extra("id_token").(string), 1); c["org_slug"] != "hooli" || c["email"] != "gavin@hooli.example" {
		t.Fatalf("gavin's ID token %v", c)
	}
	jared := signIn("jared@piedpiper.example", "jared", "jared-pw", f.idp2.URL)
	if q := rp.signIn(jared, oauth2.S256ChallengeOption(oauth2.GenerateVerifier())); q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("pied piper's jared at hooli's app: %v", q)
	}
}
