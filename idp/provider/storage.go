package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// storage is the provider library's view of Gatehouse: clients, keys and
// authorization requests. Tokens are made by the server overrides
// (server.go), so the library's token hooks refuse.
type storage struct{ p *Provider }

var errNotHere = errors.New("provider: not used (tokens are made in server.go)")

// ctxKey carries the authorize request's extra parameters (resource,
// organization) from Authorize to CreateAuthRequest.
type ctxKey struct{}

type extras struct {
	resource, organization string
	// foreignHint: the id_token_hint is another kind of token.
	foreignHint bool
}

func (s storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, hintSubject string) (op.AuthRequest, error) {
	cl, ok := s.p.client(req.ClientID)
	if !ok {
		return nil, oidc.ErrInvalidClient()
	}
	// PKCE with S256 for every client (RFC 9700 §2.1.1): plain reveals
	// the verifier to whoever saw the request.
	switch {
	case req.CodeChallenge == "":
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge is required (PKCE with S256)")
	case req.CodeChallengeMethod != oidc.CodeChallengeMethodS256:
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge_method must be S256")
	case len(req.CodeChallenge) != 43:
		return nil, oidc.ErrInvalidRequest().WithDescription("code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
	}
	if !slices.Contains(req.Scopes, oidc.ScopeOpenID) {
		return nil, oidc.ErrInvalidScope().WithDescription("the openid scope is required")
	}
	ex, _ := ctx.Value(ctxKey{}).(extras)
	if ex.foreignHint {
		return nil, oidc.ErrInvalidRequest().WithDescription("id_token_hint is not an ID token")
	}
	if ex.resource != "" && !cl.allowsResource(ex.resource) {
		return nil, oidc.ErrInvalidTarget().WithDescription("resource %q is not one this client may ask for", ex.resource)
	}
	orgSlug := cl.cfg.Org
	if ex.organization != "" {
		o, ok := s.p.o.Orgs.BySlug(ex.organization)
		if !ok {
			o, ok = s.p.o.Orgs.ByID(ex.organization)
		}
		if !ok || (orgSlug != "" && !s.p.acceptsOrg(cl, o.ID)) {
			return nil, oidc.ErrInvalidRequest().WithDescription("unknown organization %q", ex.organization)
		}
		orgSlug = o.Slug
	}
	a := &authRequest{ID: token.RandomID(), ClientID: cl.cfg.ID, RedirectURI: req.RedirectURI, Scopes: req.Scopes, State: req.State,
		Nonce: req.Nonce, ResponseMode: string(req.ResponseMode), Challenge: req.CodeChallenge, Prompt: req.Prompt, MaxAge: req.MaxAge,
		LoginHint: req.LoginHint, HintSubject: hintSubject, Resource: ex.resource, OrgSlug: orgSlug, CreatedAt: s.p.o.Now().UTC()}
	if len(a.LoginHint) > 254 {
		a.LoginHint = ""
	}
	if err := s.p.requests.put(ctx, a); err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return a, nil
}

func (s storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	a, err := s.p.requests.get(ctx, id)
	if err != nil {
		return nil, oidc.ErrInvalidRequest().WithDescription("unknown or expired authorization request").WithParent(err)
	}
	return a, nil
}

func (s storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	a, err := s.p.requests.takeByCode(ctx, code)
	if err != nil {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid, used or expired code").WithParent(err)
	}
	return a, nil
}

func (s storage) SaveAuthCode(ctx context.Context, id, code string) error {
	if err := s.p.requests.saveCode(ctx, id, code); err != nil {
		return oidc.ErrInvalidRequest().WithDescription("this authorization request was answered already").WithParent(err)
	}
	return nil
}

// DeleteAuthRequest: taking the code took the request.
func (s storage) DeleteAuthRequest(context.Context, string) error { return nil }

func (s storage) CreateAccessToken(context.Context, op.TokenRequest) (string, time.Time, error) {
	return "", time.Time{}, oidc.ErrServerError().WithParent(errNotHere)
}

func (s storage) CreateAccessAndRefreshTokens(context.Context, op.TokenRequest, string) (string, string, time.Time, error) {
	return "", "", time.Time{}, oidc.ErrServerError().WithParent(errNotHere)
}

func (s storage) TokenRequestByRefreshToken(context.Context, string) (op.RefreshTokenRequest, error) {
	return nil, oidc.ErrInvalidGrant()
}

func (s storage) TerminateSession(context.Context, string, string) error { return nil }

func (s storage) RevokeToken(context.Context, string, string, string) *oidc.Error {
	return oidc.ErrRequestNotSupported()
}

func (s storage) GetRefreshTokenInfo(context.Context, string, string) (string, string, error) {
	return "", "", op.ErrInvalidRefreshToken
}

// signingKey is the workspace's current key for the library's ID tokens.
type signingKey struct {
	id  string
	alg jose.SignatureAlgorithm
	key any
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return k.alg }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.id }

func (s storage) SigningKey(context.Context) (op.SigningKey, error) {
	id, alg, key, err := s.p.o.Keys.Current()
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return signingKey{id, alg, key}, nil
}

func (s storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	var out []jose.SignatureAlgorithm
	for _, a := range s.p.o.Keys.Algorithms() {
		out = append(out, jose.SignatureAlgorithm(a))
	}
	return out, nil
}

// publicKey is a published key for the library's verifiers.
type publicKey struct{ k jose.JSONWebKey }

func (k publicKey) ID() string                             { return k.k.KeyID }
func (k publicKey) Algorithm() jose.SignatureAlgorithm     { return jose.SignatureAlgorithm(k.k.Algorithm) }
func (k publicKey) Use() string                            { return k.k.Use }
func (k publicKey) Key() any                               { return k.k.Key }
func (s storage) KeySet(context.Context) ([]op.Key, error) { return s.p.keySet(), nil }

func (p *Provider) keySet() []op.Key {
	var out []op.Key
	for _, k := range p.o.Keys.PublicKeys() {
		out = append(out, publicKey{k})
	}
	return out
}

// GetClientByClientID: a plain error is an unknown client to the library.
func (s storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	if c, ok := s.p.client(id); ok {
		return c, nil
	}
	return nil, fmt.Errorf("provider: unknown client %q", truncate(id, 64))
}

func (s storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	if c, ok := s.p.client(id); ok && c.checkSecret(s.p.secretKey, secret, s.p.o.Now()) {
		return nil
	}
	return fmt.Errorf("provider: client %q: wrong or missing secret", truncate(id, 64))
}

// ClientCredentials authenticates a machine client for its grant.
func (s storage) ClientCredentials(_ context.Context, id, secret string) (op.Client, error) {
	c, ok := s.p.client(id)
	if !ok || !c.checkSecret(s.p.secretKey, secret, s.p.o.Now()) {
		return nil, oidc.ErrInvalidClient().WithDescription("unknown client or wrong secret")
	}
	if !slices.Contains(c.GrantTypes(), oidc.GrantTypeClientCredentials) {
		return nil, oidc.ErrUnauthorizedClient().WithDescription("this client may not use client_credentials")
	}
	return c, nil
}

func (s storage) ClientCredentialsTokenRequest(context.Context, string, []string) (op.TokenRequest, error) {
	return nil, oidc.ErrServerError().WithParent(errNotHere)
}

func (s storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills an ID token's claims from the request's
// person and org.
func (s storage) SetUserinfoFromRequest(ctx context.Context, info *oidc.UserInfo, req op.IDTokenRequest, _ []string) error {
	var userID, orgID, sessionID string
	switch r := req.(type) {
	case *authRequest:
		userID, orgID, sessionID = r.Subject, r.OrgID, r.SessionID
	case refreshRequest:
		userID, orgID, sessionID = r.f.UserID, r.f.OrgID, r.f.SessionID
	default:
		return oidc.ErrServerError().WithParent(fmt.Errorf("provider: ID token for a %T", req))
	}
	who, err := s.p.person(ctx, userID, orgID)
	if err != nil {
		return err
	}
	who.fill(info)
	if cl, ok := s.p.client(req.GetClientID()); ok {
		for k, v := range s.p.mappedClaims(cl, &who, who.org) {
			info.AppendClaims(k, v)
		}
	}
	if sessionID != "" {
		info.AppendClaims("sid", s.p.sid(sessionID))
	}
	return nil
}

func (s storage) SetUserinfoFromToken(context.Context, *oidc.UserInfo, string, string, string) error {
	return oidc.ErrServerError().WithParent(errNotHere)
}

func (s storage) SetIntrospectionFromToken(context.Context, *oidc.IntrospectionResponse, string, string, string) error {
	return oidc.ErrServerError().WithParent(errNotHere)
}

func (s storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("provider: no client keys (private_key_jwt is not offered)")
}

// ValidateJWTProfileScopes refuses the JWT bearer grant (RFC 7523): no
// client may mint itself tokens with an assertion.
func (s storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, oidc.ErrUnauthorizedClient()
}

func (s storage) Health(ctx context.Context) error { return s.p.o.Store.Ping(ctx) }

// person is who a token is about, read fresh from the store.
type person struct {
	user store.User
	mem  store.Membership
	org  *store.Org
}

// person reads the user and their membership of org; a disabled or
// removed one is refused (invalid_grant at the token endpoint).
func (p *Provider) person(ctx context.Context, userID, orgID string) (person, error) {
	u, err := p.o.Store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return person{}, oidc.ErrInvalidGrant().WithDescription("the person no longer exists")
	} else if err != nil {
		return person{}, oidc.ErrServerError().WithParent(err)
	}
	if u.Disabled {
		return person{}, oidc.ErrInvalidGrant().WithDescription("the person's account is disabled")
	}
	m, err := p.o.Store.GetMembership(ctx, userID, orgID)
	if errors.Is(err, store.ErrNotFound) {
		return person{}, oidc.ErrInvalidGrant().WithDescription("the person is no longer a member of the organization")
	} else if err != nil {
		return person{}, oidc.ErrServerError().WithParent(err)
	}
	if m.Disabled {
		return person{}, oidc.ErrInvalidGrant().WithDescription("the person is suspended in the organization")
	}
	o, ok := p.o.Orgs.ByID(orgID)
	if !ok {
		return person{}, oidc.ErrInvalidGrant().WithDescription("the organization no longer exists")
	}
	return person{user: u, mem: m, org: o}, nil
}

func (w person) fill(info *oidc.UserInfo) {
	info.Subject = w.user.ID
	info.Email = w.user.Email
	info.EmailVerified = true
	info.Name = w.user.Name
	info.AppendClaims("org_id", w.org.ID)
	info.AppendClaims("org_slug", w.org.Slug)
	info.AppendClaims("roles", nonNil(w.mem.Roles))
	if len(w.mem.Groups) > 0 {
		info.AppendClaims("groups", w.mem.Groups)
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return strings.ToValidUTF8(s, "?")
}
