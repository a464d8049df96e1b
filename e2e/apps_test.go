package e2e

import (
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Apps registered through the admin API at runtime, against the running
// binary: a web app a platform admin registers gets a person's tokens
// (code + PKCE, ID token verified through discovery) at once; a machine
// app of an org gets tokens of that org; a change of its scopes applies
// at once; a rotated secret keeps the old one working only as long as
// asked; a removed app's refresh token, secret and access token stop
// working; the config file's apps are read-only.
func TestAppsThroughAdminAPI(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	t.Setenv("PORTAL_SECRET", portalSecret)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) +
		strings.ReplaceAll(oidcClients, "{{BCL}}", up.URL+"/bcl")
	g, platform := start(t, cfg).bootstrap(t)
	auth := []string{"Authorization", "Bearer " + platform}
	api := func(path string) string { return g.url("auth.localhost", "/api/v1"+path) }
	ops := g.browser(t)

	// A shared web app, registered now, gets alice's tokens of acme.
	st, _, web := ops.api("POST", api("/clients"), map[string]any{"name": "Billing", "type": "web",
		"redirect_uris": []string{"http://127.0.0.1:9/billing"}, "claims": map[string]string{"company": "org.name"}}, auth...)
	if st != 201 || web["client_secret"] == nil {
		t.Fatalf("register web app: %d %v", st, web)
	}
	webID := web["id"].(string)
	billing := newRP(t, g, webID, "http://127.0.0.1:9/billing")
	billing.conf.ClientSecret = web["client_secret"].(string)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	v := oauth2.GenerateVerifier()
	tok, err := billing.conf.Exchange(billing.ctx, billing.signIn(alice, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("code exchange: %v", err)
	}
	idt, err := billing.provider.Verifier(&oidc.Config{ClientID: webID}).Verify(billing.ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	var claims struct {
		OrgSlug string `json:"org_slug"`
		Company string `json:"company"`
	}
	if err := idt.Claims(&claims); err != nil || claims.OrgSlug != "acme" || claims.Company == "" {
		t.Fatalf("claims %+v %v", claims, err)
	}

	// A machine app of globex: tokens of globex, and a scope added later
	// works at once.
	st, _, bot := ops.api("POST", api("/clients"), map[string]any{"name": "Sync", "type": "machine", "org": "globex", "audience": "https://api.globex.example"}, auth...)
	if st != 201 {
		t.Fatalf("register machine app: %d %v", st, bot)
	}
	botID, first := bot["id"].(string), bot["client_secret"].(string)
	cc := func(secret string, scopes ...string) (*oauth2.Token, error) {
		c := clientcredentials.Config{ClientID: botID, ClientSecret: secret, TokenURL: billing.provider.Endpoint().TokenURL, Scopes: scopes}
		return c.Token(billing.ctx)
	}
	mt, err := cc(first)
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	if c := jwtPart(t, mt.AccessToken, 1); c["org_slug"] != "globex" || c["sub"] != botID || c["aud"] != "https://api.globex.example" {
		t.Fatalf("machine token %v", c)
	}
	_, err = cc(first, "sync.write")
	mustOAuthError(t, err, "invalid_scope")
	if st, _, p := ops.api("PATCH", api("/clients/"+botID), map[string]any{"scopes": []string{"sync.write"}}, append(auth, "If-Match", "*")...); st != 200 {
		t.Fatalf("add a scope: %d %v", st, p)
	}
	if _, err := cc(first, "sync.write"); err != nil {
		t.Fatalf("the new scope: %v", err)
	}

	// Rotation: with keep_old_for both work; rotated again at once, only
	// the newest does.
	st, _, rot := ops.api("POST", api("/clients/"+botID+"/secret"), map[string]any{"keep_old_for": "1h"}, auth...)
	if st != 200 {
		t.Fatalf("rotate: %d %v", st, rot)
	}
	second := rot["client_secret"].(string)
	for _, s := range []string{first, second} {
		if _, err := cc(s); err != nil {
			t.Fatalf("during the overlap: %v", err)
		}
	}
	st, _, rot = ops.api("POST", api("/clients/"+botID+"/secret"), nil, auth...)
	if st != 200 {
		t.Fatalf("rotate at once: %d %v", st, rot)
	}
	for _, s := range []string{first, second} {
		_, err := cc(s)
		mustOAuthError(t, err, "invalid_client")
	}
	if _, err := cc(rot["client_secret"].(string)); err != nil {
		t.Fatalf("the newest secret: %v", err)
	}

	// Removed: the web app's refresh token, secret and access token stop.
	if st, _, p := ops.api("DELETE", api("/clients/"+webID), nil, auth...); st != 204 {
		t.Fatalf("remove: %d %v", st, p)
	}
	_, err = billing.refresh(tok.RefreshToken)
	mustOAuthError(t, err, "invalid_client")
	if _, err := billing.provider.UserInfo(billing.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Error("userinfo answers a removed app's access token")
	}

	// The file's apps are listed, read-only.
	st, _, list := ops.api("GET", api("/clients"), nil, auth...)
	if st != 200 || len(list["items"].([]any)) != 4 { // portal, acme-only, acme-bot, Sync
		t.Fatalf("list: %d %v", st, list)
	}
	if st, _, p := ops.api("DELETE", api("/clients/portal"), nil, auth...); st != 409 || !strings.Contains(p["detail"].(string), g.cfgPath) {
		t.Fatalf("remove a declared app: %d %v", st, p)
	}
	// An org's admin has no say over apps.
	if st, _, _ := alice.api("GET", g.url("login.acme.localhost", "/api/v1/clients"), nil); st != 403 {
		t.Fatalf("alice lists apps: %d", st)
	}
}
