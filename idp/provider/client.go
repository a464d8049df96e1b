package provider

import (
	"crypto/hmac"
	"crypto/sha256"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/token"
)

// client is a registered app, as the provider library sees it.
type client struct {
	cfg config.Client
	// secretMAC is the keyed hash of the secret: fast to check on every
	// token request (the secret is long and random, so no slow hash is
	// needed), compared in constant time, never kept in the clear.
	secretMAC []byte
	// secretSHA (and oldSecretSHA, until oldSecretUntil) are an admin
	// API app's: token.ClientSecretHash of the secret Gatehouse made.
	secretSHA, oldSecretSHA []byte
	oldSecretUntil          time.Time
	// keys are a private_key_jwt client's (nil for any other).
	keys *clientKeys
	// perOrg: the app takes one org's people (orgID; "" once that org is
	// gone, and then nobody).
	perOrg   bool
	orgID    string
	loginURL func(id string) string
}

// macSecret is the keyed hash a client secret is kept as.
func macSecret(key []byte, secret string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("gatehouse client secret\x00"))
	m.Write([]byte(secret))
	return m.Sum(nil)
}

func (c *client) checkSecret(key []byte, secret string, now time.Time) bool {
	switch {
	case !c.cfg.Confidential() || secret == "":
		return false
	case c.secretMAC != nil:
		return hmac.Equal(macSecret(key, secret), c.secretMAC)
	}
	sum := token.ClientSecretHash(secret)
	return c.secretSHA != nil && hmac.Equal(sum, c.secretSHA) ||
		c.oldSecretSHA != nil && now.Before(c.oldSecretUntil) && hmac.Equal(sum, c.oldSecretSHA)
}

func (c *client) GetID() string                    { return c.cfg.ID }
func (c *client) RedirectURIs() []string           { return c.cfg.RedirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.cfg.PostLogoutRedirectURIs }

func (c *client) ApplicationType() op.ApplicationType {
	switch c.cfg.Type {
	case config.ClientSPA:
		return op.ApplicationTypeUserAgent
	case config.ClientNative:
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	switch {
	case !c.cfg.Confidential():
		return oidc.AuthMethodNone
	case c.cfg.AuthMethod == "client_secret_post":
		return oidc.AuthMethodPost
	case c.cfg.AuthMethod == "private_key_jwt":
		return oidc.AuthMethodPrivateKeyJWT
	}
	return oidc.AuthMethodBasic
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	if c.cfg.Type == config.ClientMachine {
		return nil
	}
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}

func (c *client) GrantTypes() []oidc.GrantType {
	if c.cfg.Type == config.ClientMachine {
		return []oidc.GrantType{oidc.GrantTypeClientCredentials}
	}
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
}

func (c *client) LoginURL(id string) string { return c.loginURL(id) }

// AccessTokenType is Bearer for the library: access tokens are made by
// this package (RFC 9068 JWTs, typ at+jwt), never by the library.
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration      { return c.cfg.IDTokenLifetime }

// DevMode lets the library take http:// redirect URIs of public clients
// after their exact match: the config admits http only to this machine
// (config.RedirectURIProblem), where a SPA in development lives.
func (c *client) DevMode() bool            { return true }
func (c *client) ClockSkew() time.Duration { return 0 }

func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// IsScopeAllowed: the standard scopes (the library keeps those by
// itself) and the client's own.
func (c *client) IsScopeAllowed(scope string) bool { return slices.Contains(c.cfg.Scopes, scope) }

// IDTokenUserinfoClaimsAssertion: the ID token carries the profile
// claims too, so that an app needs no userinfo call.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }

// audience is the access token's aud for resource ("": the default).
func (c *client) audience(resource, userinfo string) string {
	if resource != "" {
		return resource
	}
	if c.cfg.Audience != "" {
		return c.cfg.Audience
	}
	return userinfo
}

// allowsResource: one of the client's resources, compared as URIs are
// (scheme and host without case).
func (c *client) allowsResource(r string) bool {
	u, err := url.Parse(r)
	if err != nil {
		return false
	}
	for _, have := range c.cfg.Resources {
		h, err := url.Parse(have)
		if err == nil && strings.EqualFold(h.Scheme, u.Scheme) && strings.EqualFold(h.Host, u.Host) && h.Path == u.Path && h.RawQuery == u.RawQuery && h.Opaque == u.Opaque {
			return true
		}
	}
	return false
}
