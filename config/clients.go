package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"

	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/idp/connection"
)

// Client is an app that gets tokens from Gatehouse's OpenID Provider.
type Client struct {
	// ID is the client_id.
	ID   string `yaml:"id" json:"-"`
	Name string `yaml:"name" json:"name,omitempty"`
	// Type: web (a server-side app with a secret), spa (a browser app),
	// native (a desktop or mobile app), machine (a service:
	// client_credentials only).
	Type string `yaml:"type" json:"type,omitempty"`
	// Secret of a web or machine client that authenticates with one
	// (client_secret_basic, client_secret_post), given through ${ENV}: at
	// least 32 characters.
	Secret string `yaml:"secret" json:"-"`
	// AuthMethod of a web or machine client: client_secret_basic
	// (default), client_secret_post or private_key_jwt (a JWT signed with
	// one of the client's keys: JWKSURL or JWKS).
	AuthMethod string `yaml:"auth_method" json:"auth_method,omitempty"`
	// JWKSURL or JWKS (a JWK Set, inline) are a private_key_jwt client's
	// public keys.
	JWKSURL string `yaml:"jwks_url" json:"jwks_url,omitempty"`
	JWKS    string `yaml:"jwks" json:"jwks,omitempty"`
	// RedirectURIs match exactly; a native app's loopback ones on any port
	// (RFC 8252).
	RedirectURIs           []string `yaml:"redirect_uris" json:"redirect_uris,omitempty"`
	PostLogoutRedirectURIs []string `yaml:"post_logout_redirect_uris" json:"post_logout_redirect_uris,omitempty"`
	// Org makes the client a per-organization app: only that org's
	// people (and its sub-orgs', with IncludeSubOrgs) get tokens, and
	// they sign in on its login domain. A machine client's tokens carry
	// its org, so it must have one.
	Org            string `yaml:"org" json:"-"`
	IncludeSubOrgs bool   `yaml:"include_sub_orgs" json:"include_sub_orgs,omitempty"`
	// Audience is the access token's aud when the client asks for no
	// resource (default: the provider's userinfo endpoint).
	Audience string `yaml:"audience" json:"audience,omitempty"`
	// Resources the client may ask access tokens for (RFC 8707).
	Resources []string `yaml:"resources" json:"resources,omitempty"`
	// Scopes the client may ask for beyond openid, profile, email.
	Scopes              []string      `yaml:"scopes" json:"scopes,omitempty"`
	AccessTokenLifetime time.Duration `yaml:"access_token_lifetime" json:"access_token_lifetime,omitempty"` // default 5m, at most 1h
	IDTokenLifetime     time.Duration `yaml:"id_token_lifetime" json:"id_token_lifetime,omitempty"`         // default 10m, at most 24h
	// ThirdParty: an app not the SaaS team's own. A person consents to it
	// (once per scope set, remembered) before it gets tokens.
	ThirdParty bool `yaml:"third_party" json:"third_party,omitempty"`
	// Claims are extra token claims and where each comes from (see
	// ClaimSourceProblem): `plan: org.attributes.plan`.
	Claims map[string]string `yaml:"claims" json:"claims,omitempty"`
	// Policy is a .rego file or directory of package gatehouse.token,
	// asked before any token of this client is issued.
	Policy string `yaml:"policy" json:"-"`
	// BackchannelLogoutURI receives a logout token when a session the
	// client holds tokens of ends (OIDC Back-Channel Logout 1.0).
	BackchannelLogoutURI string `yaml:"backchannel_logout_uri" json:"backchannel_logout_uri,omitempty"`
	// OfflineAccess lets the app ask for the offline_access scope: its
	// refresh tokens then outlive the sign-in's session, for
	// RefreshTokenLifetime. Without it, they end with the session.
	OfflineAccess        bool          `yaml:"offline_access" json:"offline_access,omitempty"`
	RefreshTokenLifetime time.Duration `yaml:"refresh_token_lifetime" json:"refresh_token_lifetime,omitempty"` // default 720h, at most 2160h
}

// Client types.
const (
	ClientWeb     = "web"
	ClientSPA     = "spa"
	ClientNative  = "native"
	ClientMachine = "machine"
)

// Client token lifetimes.
const (
	DefaultAccessTokenLifetime = 5 * time.Minute
	MaxAccessTokenLifetime     = time.Hour
	DefaultIDTokenLifetime     = 10 * time.Minute
	MaxIDTokenLifetime         = 24 * time.Hour
	DefaultRefreshLifetime     = 30 * 24 * time.Hour
	MaxRefreshLifetime         = 90 * 24 * time.Hour
	minClientSecret            = 32
)

var (
	clientIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	scopeRE    = regexp.MustCompile(`^[\x21\x23-\x5B\x5D-\x7E]{1,128}$`) // RFC 6749 scope-token
)

// Confidential reports whether the client authenticates with a secret.
func (c *Client) Confidential() bool { return c.Type == ClientWeb || c.Type == ClientMachine }

func (c *Config) clientDefaults() {
	for i := range c.Clients {
		c.Clients[i].SetDefaults()
	}
}

// SetDefaults fills in what the client leaves out.
func (cl *Client) SetDefaults() {
	if cl.Confidential() && cl.AuthMethod == "" {
		cl.AuthMethod = "client_secret_basic"
	}
	if cl.AccessTokenLifetime == 0 {
		cl.AccessTokenLifetime = DefaultAccessTokenLifetime
	}
	if cl.IDTokenLifetime == 0 {
		cl.IDTokenLifetime = DefaultIDTokenLifetime
	}
	if cl.RefreshTokenLifetime == 0 {
		cl.RefreshTokenLifetime = DefaultRefreshLifetime
	}
}

func (c *Config) validateClients(d *decoder, slugs map[string]int) {
	ids := map[string]int{}
	for i := range c.Clients {
		cl := &c.Clients[i]
		p := fmt.Sprintf("clients[%d]", i)
		switch j, dup := ids[cl.ID]; {
		case cl.ID == "":
			d.add(p+".id", "required")
		case !clientIDRE.MatchString(cl.ID):
			d.add(p+".id", "invalid client id %q: use up to 128 letters, digits, \".\", \"-\" and \"_\"", cl.ID)
		case dup:
			d.add(p+".id", "duplicate client id %q (also clients[%d])", cl.ID, j)
		default:
			ids[cl.ID] = i
		}
		if cl.Org != "" {
			if _, ok := slugs[cl.Org]; !ok {
				d.add(p+".org", "no org has slug %q", cl.Org)
			}
		}
		for _, pr := range cl.Problems(cl.Org != "") {
			d.add(p+"."+pr.Path, "%s", pr.Msg)
		}
		if cl.Policy != "" {
			if msg := policyPathProblem(cl.Policy); msg != "" {
				d.add(p+".policy", "%s", msg)
			}
		}
	}
}

// Problems checks a client's settings (but its id, org and policy file,
// which depend on where it is declared): each problem with its key path
// under the client, such as "redirect_uris[0]". hasOrg says whether it is
// a per-org app.
func (cl *Client) Problems(hasOrg bool) []Problem {
	var out []Problem
	add := func(path, format string, args ...any) {
		out = append(out, Problem{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if msg := TextProblem(cl.Name, 200); msg != "" {
		add("name", "%s", msg)
	}
	switch cl.Type {
	case ClientWeb, ClientSPA, ClientNative, ClientMachine:
	case "":
		add("type", "required: web, spa, native or machine")
		return out
	default:
		add("type", "unknown client type %q (use web, spa, native or machine)", cl.Type)
		return out
	}
	if cl.Confidential() {
		switch cl.AuthMethod {
		case "client_secret_basic", "client_secret_post":
			if len(cl.Secret) < minClientSecret {
				add("secret", "required for a %s client: at least %d characters, given through ${ENV} (for example: openssl rand -base64 32)", cl.Type, minClientSecret)
			}
			if cl.JWKSURL != "" || cl.JWKS != "" {
				add("jwks", "keys are for auth_method private_key_jwt")
			}
		case "private_key_jwt":
			if cl.Secret != "" {
				add("secret", "a private_key_jwt client proves itself with its keys, not a secret")
			}
			switch {
			case (cl.JWKSURL == "") == (cl.JWKS == ""):
				add("jwks_url", "exactly one of jwks_url and jwks is required for private_key_jwt")
			case cl.JWKSURL != "":
				if msg := RedirectURIProblem(ClientWeb, cl.JWKSURL); msg != "" {
					add("jwks_url", "invalid URL %q: %s", cl.JWKSURL, msg)
				}
			default:
				if msg := JWKSProblem(cl.JWKS); msg != "" {
					add("jwks", "%s", msg)
				}
			}
		default:
			add("auth_method", "unknown method %q (use client_secret_basic, client_secret_post or private_key_jwt)", cl.AuthMethod)
		}
	} else {
		if cl.Secret != "" {
			add("secret", "a %s client is public: it cannot keep a secret, so it has none (it proves itself with PKCE)", cl.Type)
		}
		if cl.AuthMethod != "" {
			add("auth_method", "a %s client is public and authenticates with PKCE only", cl.Type)
		}
	}
	if cl.Type == ClientMachine {
		if len(cl.RedirectURIs) > 0 || len(cl.PostLogoutRedirectURIs) > 0 {
			add("redirect_uris", "a machine client has no users to send anywhere (client_credentials only)")
		}
		if !hasOrg {
			add("org", "required for a machine client: its tokens carry this org")
		}
	} else if len(cl.RedirectURIs) == 0 {
		add("redirect_uris", "required: where the app receives the sign-in's answer")
	}
	for j, u := range cl.RedirectURIs {
		if msg := RedirectURIProblem(cl.Type, u); msg != "" {
			add(fmt.Sprintf("redirect_uris[%d]", j), "invalid redirect URI %q: %s", u, msg)
		}
	}
	for j, u := range cl.PostLogoutRedirectURIs {
		if msg := RedirectURIProblem(cl.Type, u); msg != "" {
			add(fmt.Sprintf("post_logout_redirect_uris[%d]", j), "invalid URI %q: %s", u, msg)
		}
	}
	if !hasOrg && cl.IncludeSubOrgs {
		add("include_sub_orgs", "only for a client with an org")
	}
	if cl.Audience != "" {
		if msg := resourceProblem(cl.Audience); msg != "" {
			add("audience", "invalid audience %q: %s", cl.Audience, msg)
		} else if cl.Audience == cl.ID {
			add("audience", "must not be the client id: an access token for the client itself would pass as an ID token's audience")
		}
	}
	for j, r := range cl.Resources {
		if msg := resourceProblem(r); msg != "" {
			add(fmt.Sprintf("resources[%d]", j), "invalid resource %q: %s", r, msg)
		}
	}
	for j, s := range cl.Scopes {
		if !scopeRE.MatchString(s) {
			add(fmt.Sprintf("scopes[%d]", j), "invalid scope %q: printable ASCII without spaces, quotes or backslashes", s)
		}
	}
	if cl.AccessTokenLifetime < 30*time.Second || cl.AccessTokenLifetime > MaxAccessTokenLifetime {
		add("access_token_lifetime", "must be from 30s to %s", MaxAccessTokenLifetime)
	}
	if cl.IDTokenLifetime < 30*time.Second || cl.IDTokenLifetime > MaxIDTokenLifetime {
		add("id_token_lifetime", "must be from 30s to %s", MaxIDTokenLifetime)
	}
	if cl.RefreshTokenLifetime < time.Minute || cl.RefreshTokenLifetime > MaxRefreshLifetime {
		add("refresh_token_lifetime", "must be from 1m to %s", MaxRefreshLifetime)
	}
	if u := cl.BackchannelLogoutURI; u != "" {
		if msg := RedirectURIProblem(ClientWeb, u); msg != "" {
			add("backchannel_logout_uri", "invalid URI %q: %s", u, msg)
		} else if cl.Type == ClientMachine {
			add("backchannel_logout_uri", "a machine client has no sessions to hear the end of")
		}
	}
	out = append(out, ClaimMapProblems("claims", cl.Claims)...)
	if cl.OfflineAccess && cl.Type == ClientMachine {
		add("offline_access", "a machine client has no sign-in to outlive")
	}
	return out
}

// RedirectURIProblem says what is wrong with a redirect URI of a client
// of type typ ("" if nothing): absolute, no fragment; https, or http to
// this machine; a native app may also use a private-use scheme
// (com.example.app:/callback, RFC 8252 §7.1).
func RedirectURIProblem(typ, raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme == "":
		return "must be absolute"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	case u.User != nil:
		return "must not carry a user name or password"
	case strings.Contains(raw, "*"):
		return "must not have wildcards: redirect URIs match exactly"
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return "has no host"
		}
		return ""
	case "http":
		if !connection.Loopback(u.Hostname()) && !strings.HasSuffix(u.Hostname(), ".localhost") {
			return "http:// only to this machine (127.0.0.1, [::1], localhost); use https://"
		}
		return ""
	}
	if typ != ClientNative {
		return "must be https:// (http:// only to this machine)"
	}
	// A private-use scheme is a reversed domain name the app owns.
	if !strings.Contains(u.Scheme, ".") || slices.Contains([]string{"javascript", "data", "file", "vbscript"}, u.Scheme) {
		return "a native app's own scheme is a reversed domain name it owns, such as com.example.app"
	}
	return ""
}

// resourceProblem: an absolute URI without a fragment (RFC 8707 §2).
func resourceProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Scheme == "" || (u.Host == "" && u.Opaque == ""):
		return "must be an absolute URI, such as https://api.example.com"
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return "must not have a fragment"
	}
	return ""
}

// MaxMappedClaims bounds the claims one client or org maps: tokens stay
// small (each mapped string is at most MaxMappedClaimBytes, longer ones
// are left out when the token is made).
const (
	MaxMappedClaims     = 16
	MaxMappedClaimBytes = 256
)

var claimNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:/-]{0,99}$`)

// reservedClaims are set by Gatehouse (or by the standards) and never
// mapped.
var reservedClaims = []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "azp", "nonce", "auth_time", "at_hash", "c_hash",
	"acr", "amr", "sid", "typ", "cnf", "act", "scope", "client_id", "org_id", "org_slug", "roles", "groups", "email",
	"email_verified", "name", "events", "updated_at", "preferred_username"}

// ClaimSourceProblem says what is wrong with a mapped claim's source (""
// if nothing): user.id, user.email, user.name, user.roles, user.groups,
// user.attributes.<key>, org.id, org.slug, org.name, org.attributes.<key>.
func ClaimSourceProblem(src string) string {
	switch src {
	case "user.id", "user.email", "user.name", "user.roles", "user.groups", "org.id", "org.slug", "org.name":
		return ""
	}
	for _, pfx := range []string{"user.attributes.", "org.attributes."} {
		if k, ok := strings.CutPrefix(src, pfx); ok && k != "" && len(k) <= 100 && !strings.ContainsAny(k, " \t\r\n") {
			return ""
		}
	}
	return "unknown source: use user.id, user.email, user.name, user.roles, user.groups, user.attributes.<key>, org.id, org.slug, org.name or org.attributes.<key>"
}

// ClaimMapProblems checks a claim mapping (a client's or an org's): each
// problem with its key path under at.
func ClaimMapProblems(at string, m map[string]string) []Problem {
	var out []Problem
	if len(m) > MaxMappedClaims {
		out = append(out, Problem{Path: at, Msg: fmt.Sprintf("at most %d mapped claims (tokens stay small)", MaxMappedClaims)})
	}
	for name, src := range m {
		p := at + "." + name
		switch {
		case !claimNameRE.MatchString(name):
			out = append(out, Problem{Path: p, Msg: fmt.Sprintf("invalid claim name %q: a letter, then letters, digits, _ . : / -", name)})
		case slices.Contains(reservedClaims, strings.ToLower(name)):
			out = append(out, Problem{Path: p, Msg: fmt.Sprintf("%q is set by Gatehouse or the standards: pick another name", name)})
		}
		if msg := ClaimSourceProblem(src); msg != "" {
			out = append(out, Problem{Path: p, Msg: fmt.Sprintf("%q: %s", src, msg)})
		}
	}
	slices.SortFunc(out, func(a, b Problem) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// JWKSProblem says what is wrong with an inline JWK Set of a client's
// public keys ("" if nothing): each key public, asymmetric, for signing.
func JWKSProblem(raw string) string {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(raw), &set); err != nil {
		return "not a JWK Set (JSON with a keys array): " + err.Error()
	}
	if len(set.Keys) == 0 {
		return "the JWK Set has no keys"
	}
	for i, k := range set.Keys {
		switch {
		case !k.Valid():
			return fmt.Sprintf("key %d is not a valid JWK", i)
		case !k.IsPublic():
			return fmt.Sprintf("key %d is a private key: give the public half only", i)
		case k.Use != "" && k.Use != "sig":
			return fmt.Sprintf("key %d is for %q, not signatures", i, k.Use)
		}
		switch k.Key.(type) {
		case *ecdsa.PublicKey, *rsa.PublicKey, ed25519.PublicKey:
		default:
			return fmt.Sprintf("key %d is not an EC, RSA or Ed25519 public key", i)
		}
	}
	return ""
}
