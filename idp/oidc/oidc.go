// Package oidc is the OpenID Connect connection: an org's own IdP (Okta,
// Entra ID, Google Workspace, Ping, any OpenID Provider) signs its people
// in with the authorization code flow, PKCE (S256) always, a nonce, and an
// ID token verified by coreos/go-oidc with no check loosened.
package oidc

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	gooidc "github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/idp/connection"
)

// Type is the connection type name in configs and sessions.
const Type = "oidc"

// Config is an org's OIDC connection, stored as JSON with the org.
type Config struct {
	// Issuer is the IdP's issuer URL; its discovery document is at
	// {Issuer}/.well-known/openid-configuration. HTTPS, except on loopback.
	Issuer       string `json:"issuer" yaml:"issuer"`
	ClientID     string `json:"client_id" yaml:"client_id"`
	ClientSecret string `json:"client_secret,omitempty" yaml:"client_secret"`
	// ClientSecretFile is read at every (re)open instead of ClientSecret.
	ClientSecretFile string `json:"client_secret_file,omitempty" yaml:"client_secret_file"`
	// Scopes requested (default openid, email, profile; openid is always
	// sent).
	Scopes []string `json:"scopes,omitempty" yaml:"scopes"`
	// UserInfo also reads the userinfo endpoint. It is read anyway when
	// the ID token carries no email.
	UserInfo bool `json:"userinfo,omitempty" yaml:"userinfo"`
	// AllowUnverifiedEmail accepts an email the IdP does not mark
	// verified (email_verified false or missing; Entra ID never sends it).
	AllowUnverifiedEmail bool `json:"allow_unverified_email,omitempty" yaml:"allow_unverified_email"`
	// AllowedTenants are the Entra ID tenant IDs a multi-tenant issuer
	// (.../common/v2.0 or .../organizations/v2.0) accepts. Required with
	// such an issuer, refused with any other.
	AllowedTenants []string `json:"allowed_tenants,omitempty" yaml:"allowed_tenants"`
	// ACRValues are sent as acr_values when the org requires a second
	// factor, asking the IdP for one (such as Okta's
	// urn:okta:loa:2fa:any, or a value the IdP's admin defined).
	ACRValues []string `json:"acr_values,omitempty" yaml:"acr_values"`
	// MFAValues are the IdP's amr or acr values that mean a second factor,
	// beyond the standard amr ones (mfa, otp, hwk, sms, ...).
	MFAValues []string `json:"mfa_values,omitempty" yaml:"mfa_values"`
}

// Entra ID's multi-tenant endpoints publish a templated issuer.
const (
	entraHost     = "login.microsoftonline.com"
	tenantPattern = "{tenantid}"
)

func (c Config) multiTenant() bool {
	u, err := url.Parse(c.Issuer)
	if err != nil || !strings.EqualFold(u.Hostname(), entraHost) {
		return false
	}
	seg := strings.Split(strings.Trim(u.Path, "/"), "/")
	return len(seg) > 0 && (seg[0] == "common" || seg[0] == "organizations")
}

// Problems is everything wrong with c: Validate's finding, and each scope
// that is no scope (a problem of one key is a *connection.FieldError).
func (c Config) Problems() []error {
	var ps []error
	if err := c.Validate(); err != nil {
		ps = append(ps, err)
	}
	for k, sc := range c.Scopes {
		if sc == "" || strings.ContainsAny(sc, " \t\"") {
			ps = append(ps, &connection.FieldError{Key: fmt.Sprintf("scopes[%d]", k), Err: fmt.Errorf("invalid scope %q", sc)})
		}
	}
	for key, vs := range map[string][]string{"acr_values": c.ACRValues, "mfa_values": c.MFAValues} {
		for k, v := range vs {
			if v == "" || len(v) > 256 || strings.ContainsAny(v, " \t\r\n\"") {
				ps = append(ps, &connection.FieldError{Key: fmt.Sprintf("%s[%d]", key, k), Err: fmt.Errorf("invalid value %q: one value, without spaces", v)})
			}
		}
	}
	return ps
}

// Schema is the OIDC connection's settings schema (the oidc: block of an
// org's connection), for config to decode and check.
type Schema struct{}

// Required is what the block needs, for the message when it is missing.
func (Schema) Required() string { return "issuer, client_id, client_secret" }

// NewSettings is a Config to decode the block into.
func (Schema) NewSettings() any { return &Config{} }

// Problems is everything wrong with decoded settings.
func (Schema) Problems(settings any) []error { return settings.(*Config).Problems() }

// Validate reports the first thing wrong with c.
func (c Config) Validate() error {
	u, err := url.Parse(c.Issuer)
	switch {
	case c.Issuer == "":
		return errors.New("issuer is required")
	case err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("issuer %q is not a URL without query or fragment", c.Issuer)
	case u.Scheme != "https" && !(u.Scheme == "http" && connection.Loopback(u.Hostname())):
		return fmt.Errorf("issuer %q must use https (plain http only on loopback, for tests)", c.Issuer)
	case c.ClientID == "":
		return errors.New("client_id is required")
	case c.ClientSecret == "" && c.ClientSecretFile == "":
		return errors.New("client_secret or client_secret_file is required")
	case c.ClientSecret != "" && c.ClientSecretFile != "":
		return errors.New("set client_secret or client_secret_file, not both")
	case c.multiTenant() && len(c.AllowedTenants) == 0:
		return errors.New("a multi-tenant Entra ID issuer (common or organizations) needs allowed_tenants: the tenant IDs to accept")
	case !c.multiTenant() && len(c.AllowedTenants) > 0:
		return errors.New("allowed_tenants applies only to the multi-tenant Entra ID issuers (.../common/v2.0, .../organizations/v2.0)")
	}
	return nil
}

// conn is one org's open connection.
type conn struct {
	cfg      Config
	provider *gooidc.Provider
	verifier *gooidc.IDTokenVerifier
	oauth    oauth2.Config
	client   *http.Client
	now      func() time.Time
	// issuerTemplate is the discovered issuer of a multi-tenant IdP, with
	// {tenantid} in it.
	issuerTemplate string
}

var _ connection.Redirect = (*conn)(nil)

// discoveryTimeout bounds Open's fetch of the discovery document.
const discoveryTimeout = 10 * time.Second

// Open fetches the IdP's discovery document and prepares the verifier.
func Open(ctx context.Context, raw json.RawMessage, deps connection.Deps) (any, error) {
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("oidc: org %s: config: %w", deps.OrgSlug, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("oidc: org %s: %w", deps.OrgSlug, err)
	}
	secret := cfg.ClientSecret
	if cfg.ClientSecretFile != "" {
		b, err := os.ReadFile(cfg.ClientSecretFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: org %s: client secret: %w", deps.OrgSlug, err)
		}
		secret = strings.TrimSpace(string(b))
	}
	client := deps.HTTPClient
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	ctx, cancel := context.WithTimeout(gooidc.ClientContext(ctx, client), discoveryTimeout)
	defer cancel()
	c := &conn{cfg: cfg, client: client, now: now}
	if cfg.multiTenant() {
		// The discovery document's issuer is a template; each token's
		// issuer is checked against it with the token's own tid below.
		ctx = gooidc.InsecureIssuerURLContext(ctx, strings.TrimSuffix(cfg.Issuer, "/"))
	}
	p, err := gooidc.NewProvider(ctx, cfg.Issuer)
	if err != nil {
		return nil, connection.Errorf(connection.KindUnreachable, "oidc: org %s: discovery at %s: %w", deps.OrgSlug, cfg.Issuer, err)
	}
	var meta struct {
		Issuer string `json:"issuer"`
	}
	if err := p.Claims(&meta); err != nil {
		return nil, connection.Errorf(connection.KindUnreachable, "oidc: org %s: discovery document: %w", deps.OrgSlug, err)
	}
	vcfg := &gooidc.Config{ClientID: cfg.ClientID, Now: now}
	if cfg.multiTenant() {
		if !strings.Contains(meta.Issuer, tenantPattern) {
			return nil, fmt.Errorf("oidc: org %s: multi-tenant issuer %s publishes issuer %q without %s", deps.OrgSlug, cfg.Issuer, meta.Issuer, tenantPattern)
		}
		c.issuerTemplate = meta.Issuer
		// Checked in Finish against the template and allowed_tenants.
		vcfg.SkipIssuerCheck = true
	}
	c.provider = p
	c.verifier = p.Verifier(vcfg)
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = []string{gooidc.ScopeOpenID, "email", "profile"}
	}
	if !slices.Contains(scopes, gooidc.ScopeOpenID) {
		scopes = append([]string{gooidc.ScopeOpenID}, scopes...)
	}
	c.oauth = oauth2.Config{ClientID: cfg.ClientID, ClientSecret: secret, Endpoint: p.Endpoint(), Scopes: scopes}
	return c, nil
}

// flow is what Begin keeps for Finish: never sent to the browser.
type flow struct {
	Verifier string `json:"v"`
	Nonce    string `json:"n"`
}

func (c *conn) Begin(_ context.Context, req connection.BeginRequest) (string, []byte, error) {
	f := flow{Verifier: oauth2.GenerateVerifier(), Nonce: rand.Text()}
	oc := c.oauth
	oc.RedirectURL = req.CallbackURL
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(f.Verifier), gooidc.Nonce(f.Nonce)}
	if req.LoginHint != "" {
		opts = append(opts, oauth2.SetAuthURLParam("login_hint", req.LoginHint))
	}
	if req.Fresh {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0"))
	}
	if req.RequireMFA && len(c.cfg.ACRValues) > 0 {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", strings.Join(c.cfg.ACRValues, " ")))
	}
	b, err := json.Marshal(f)
	if err != nil {
		return "", nil, err
	}
	return oc.AuthCodeURL(req.State, opts...), b, nil
}

// maxErrorText bounds what an IdP's error description may put in a log.
const maxErrorText = 200

func (c *conn) Finish(ctx context.Context, r *http.Request, req connection.BeginRequest, raw []byte) (connection.Identity, error) {
	var f flow
	if err := json.Unmarshal(raw, &f); err != nil || f.Verifier == "" || f.Nonce == "" {
		return connection.Identity{}, connection.Errorf(connection.KindInternal, "oidc: corrupt flow record")
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		kind := connection.KindUnreachable
		if e == "access_denied" || e == "login_required" || e == "consent_required" || e == "interaction_required" {
			kind = connection.KindCanceled
		}
		return connection.Identity{}, connection.Errorf(kind, "oidc: the IdP returned error %q: %s", clip(e), clip(q.Get("error_description")))
	}
	// RFC 9207: an IdP that names itself must be this one (mix-up defense).
	if iss := q.Get("iss"); iss != "" && iss != c.cfg.Issuer && iss != strings.TrimSuffix(c.cfg.Issuer, "/") && c.issuerTemplate == "" {
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: response from issuer %q, want %q", clip(iss), c.cfg.Issuer)
	}
	code := q.Get("code")
	if code == "" || len(code) > 4096 {
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: callback without a usable code")
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, c.client)
	oc := c.oauth
	oc.RedirectURL = req.CallbackURL
	tok, err := oc.Exchange(ctx, code, oauth2.VerifierOption(f.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: code exchange refused: %w", err)
		}
		return connection.Identity{}, connection.Errorf(connection.KindUnreachable, "oidc: code exchange: %w", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: token response without an id_token")
	}
	idt, err := c.verifier.Verify(ctx, rawID)
	if err != nil {
		var exp *gooidc.TokenExpiredError
		if errors.As(err, &exp) {
			return connection.Identity{}, connection.Errorf(connection.KindExpired, "oidc: id token expired at %s (check the clocks of the IdP and of Gatehouse): %w", exp.Expiry.UTC().Format(time.RFC3339), err)
		}
		if strings.Contains(err.Error(), "before the nbf") {
			// go-oidc has no error type for it; it is a clock difference.
			return connection.Identity{}, connection.Errorf(connection.KindExpired, "oidc: id token not valid yet (check the clocks of the IdP and of Gatehouse): %w", err)
		}
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: id token rejected: %w", err)
	}
	if idt.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1 {
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: id token nonce does not match this sign-in (missing or replayed)")
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: at_hash: %w", err)
		}
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "oidc: id token claims: %w", err)
	}
	if c.issuerTemplate != "" {
		if err := c.checkTenant(idt.Issuer, claims); err != nil {
			return connection.Identity{}, err
		}
	}
	if c.cfg.UserInfo || str(claims["email"]) == "" {
		if err := c.mergeUserInfo(ctx, tok, idt.Subject, claims); err != nil {
			return connection.Identity{}, err
		}
	}
	return c.identity(idt, claims)
}

// checkTenant: a multi-tenant token's issuer must be the template with
// the token's own tid, and tid one of the allowed tenants.
func (c *conn) checkTenant(iss string, claims map[string]any) error {
	tid := str(claims["tid"])
	if tid == "" || !slices.Contains(c.cfg.AllowedTenants, tid) {
		return connection.Errorf(connection.KindDenied, "oidc: tenant %q is not in allowed_tenants", clip(tid))
	}
	if want := strings.Replace(c.issuerTemplate, tenantPattern, tid, 1); iss != want {
		return connection.Errorf(connection.KindInvalid, "oidc: id token issuer %q, want %q for tenant %s", clip(iss), want, tid)
	}
	return nil
}

// mergeUserInfo adds the userinfo endpoint's claims the ID token lacks.
// Its sub must be the ID token's (OpenID Connect Core 5.3.2).
func (c *conn) mergeUserInfo(ctx context.Context, tok *oauth2.Token, sub string, claims map[string]any) error {
	if c.provider.UserInfoEndpoint() == "" {
		if c.cfg.UserInfo {
			return connection.Errorf(connection.KindInternal, "oidc: userinfo is on but the IdP publishes no userinfo_endpoint")
		}
		return nil
	}
	ui, err := c.provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
	if err != nil {
		return connection.Errorf(connection.KindUnreachable, "oidc: userinfo: %w", err)
	}
	if ui.Subject != sub {
		return connection.Errorf(connection.KindInvalid, "oidc: userinfo is for subject %q, the id token for %q", clip(ui.Subject), clip(sub))
	}
	var extra map[string]any
	if err := ui.Claims(&extra); err != nil {
		return connection.Errorf(connection.KindInvalid, "oidc: userinfo claims: %w", err)
	}
	for k, v := range extra {
		if _, ok := claims[k]; !ok {
			claims[k] = v
		}
	}
	return nil
}

// mfaMethods are amr values (RFC 8176) that mean a second factor.
var mfaMethods = []string{"mfa", "otp", "hwk", "sms", "tel", "fpt", "face", "iris", "retina", "vbm", "sc"}

func (c *conn) identity(idt *gooidc.IDToken, claims map[string]any) (connection.Identity, error) {
	id := connection.Identity{
		Issuer:  idt.Issuer,
		Subject: idt.Subject,
		Email:   strings.TrimSpace(str(claims["email"])),
		Name:    str(claims["name"]),
		Groups:  strs(claims["groups"]),
		Claims:  make(map[string][]string, len(claims)),
	}
	if id.Subject == "" {
		return id, connection.Errorf(connection.KindInvalid, "oidc: id token without sub")
	}
	if id.Name == "" {
		id.Name = strings.TrimSpace(str(claims["given_name"]) + " " + str(claims["family_name"]))
	}
	switch v := claims["email_verified"].(type) {
	case bool:
		id.EmailVerified = v
	case string: // some IdPs send "true"
		id.EmailVerified = v == "true"
	}
	if c.cfg.AllowUnverifiedEmail {
		id.EmailVerified = true
	}
	for _, m := range strs(claims["amr"]) {
		if slices.Contains(mfaMethods, m) || slices.Contains(c.cfg.MFAValues, m) {
			id.MFA = true
		}
	}
	if acr := str(claims["acr"]); acr != "" && slices.Contains(c.cfg.MFAValues, acr) {
		id.MFA = true
	}
	for k, v := range claims {
		if s := strs(v); len(s) > 0 {
			id.Claims[k] = s
		}
	}
	return id, nil
}

// str reads a string claim ("" for anything else).
func str(v any) string {
	s, _ := v.(string)
	return s
}

// strs reads a claim as strings: one string, or a list of them.
// Numbers and booleans are formatted; nested objects are skipped.
func strs(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case bool, float64:
		return []string{fmt.Sprint(t)}
	case []any:
		out := make([]string, 0, len(t))
		for _, x := range t {
			switch y := x.(type) {
			case string:
				out = append(out, y)
			case bool, float64:
				out = append(out, fmt.Sprint(y))
			}
		}
		return out
	}
	return nil
}

func clip(s string) string {
	if len(s) > maxErrorText {
		return s[:maxErrorText] + "…"
	}
	return s
}
