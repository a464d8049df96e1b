package provider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// Refresh tokens are "ghrt_<family>.<generation>.<tag>": the tag is a
// MAC of the family and generation with the provider's key, so a token
// is checked without a stored secret, and an old generation presented
// again is known to be a genuine, stolen token (reuse), not a guess.
const refreshPrefix = "ghrt_"

// Single-use kinds for tokens answered already.
const (
	// kindSpentCode remembers a redeemed code for a while: presented
	// again, its tokens are revoked (RFC 6749 §4.1.2).
	kindSpentCode = "oidc-code-spent"
	// kindRevokedAT lists revoked access tokens until they expire.
	kindRevokedAT  = "oidc-at-revoked"
	spentCodeTTL   = 10 * time.Minute
	offlineAccess  = "offline_access"
	maxRefreshSize = 256
)

func (p *Provider) refreshTag(family string, gen uint64) string {
	m := hmac.New(sha256.New, p.secretKey)
	m.Write([]byte("refresh\x00" + family + "\x00" + strconv.FormatUint(gen, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (p *Provider) refreshToken(family string, gen uint64) string {
	return refreshPrefix + family + "." + strconv.FormatUint(gen, 10) + "." + p.refreshTag(family, gen)
}

// parseRefresh returns a genuine refresh token's family and generation.
func (p *Provider) parseRefresh(tok string) (string, uint64, bool) {
	if len(tok) > maxRefreshSize {
		return "", 0, false
	}
	rest, ok := strings.CutPrefix(tok, refreshPrefix)
	if !ok {
		return "", 0, false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || !token.ValidToken(parts[0], 22, 22) {
		return "", 0, false
	}
	gen, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil || strconv.FormatUint(gen, 10) != parts[1] {
		return "", 0, false
	}
	if !hmac.Equal([]byte(parts[2]), []byte(p.refreshTag(parts[0], gen))) {
		return "", 0, false
	}
	return parts[0], gen, true
}

// newFamily starts the refresh tokens of a sign-in, bound to its session
// unless the client may have offline access and asked for it.
func (p *Provider) newFamily(ctx context.Context, cl *client, a *authRequest, sessionExpiry time.Time) (string, error) {
	now := p.o.Now().UTC()
	f := store.RefreshFamily{ID: token.RandomID()[:22], ClientID: cl.cfg.ID, UserID: a.Subject, OrgID: a.OrgID, SessionID: a.SessionID,
		Scopes: a.Scopes, Resource: a.Resource, AuthTime: a.AuthTime, AMR: a.AMR, Generation: 1, CreatedAt: now, ExpiresAt: sessionExpiry.UTC()}
	if cl.cfg.OfflineAccess && slices.Contains(a.Scopes, offlineAccess) {
		f.SessionID, f.ExpiresAt = "", now.Add(cl.cfg.RefreshTokenLifetime)
	}
	if err := p.o.Store.CreateRefreshFamily(ctx, f); err != nil {
		return "", err
	}
	return f.ID, nil
}

// refreshRequest is a refresh's ID token request.
type refreshRequest struct{ f store.RefreshFamily }

func (r refreshRequest) GetAMR() []string       { return r.f.AMR }
func (r refreshRequest) GetAudience() []string  { return []string{r.f.ClientID} }
func (r refreshRequest) GetAuthTime() time.Time { return r.f.AuthTime }
func (r refreshRequest) GetClientID() string    { return r.f.ClientID }
func (r refreshRequest) GetScopes() []string    { return r.f.Scopes }
func (r refreshRequest) GetSubject() string     { return r.f.UserID }

// RefreshToken rotates a family: the current generation gets new tokens
// (with the person's roles as they are now) and becomes the past; a past
// generation presented again revokes the family, and the session's other
// families of the client, since one of its tokens was stolen.
func (s *server) RefreshToken(ctx context.Context, r *op.ClientRequest[oidc.RefreshTokenRequest]) (*op.Response, error) {
	p := s.p
	cl, ok := p.client(r.Client.GetID())
	if !ok || !slices.Contains(cl.GrantTypes(), oidc.GrantTypeRefreshToken) {
		return nil, oidc.ErrUnauthorizedClient()
	}
	fid, gen, ok := p.parseRefresh(r.Data.RefreshToken)
	if !ok {
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh token")
	}
	f, err := p.o.Store.GetRefreshFamily(ctx, fid)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid refresh token")
	case err != nil:
		return nil, oidc.ErrServerError().WithParent(err)
	case f.ClientID != cl.cfg.ID:
		return nil, oidc.ErrInvalidGrant().WithDescription("the refresh token was issued to another client")
	case !f.RevokedAt.IsZero() || !p.o.Now().Before(f.ExpiresAt):
		return nil, oidc.ErrInvalidGrant().WithDescription("the refresh token was revoked or has expired")
	case gen != f.Generation:
		p.reused(ctx, f, "a refresh token used before was presented again")
		return nil, oidc.ErrInvalidGrant().WithDescription("the refresh token was used already; its family is revoked")
	}
	scopes := f.Scopes
	if len(r.Data.Scopes) > 0 {
		for _, sc := range r.Data.Scopes {
			if !slices.Contains(f.Scopes, sc) {
				return nil, oidc.ErrInvalidScope().WithDescription("scope %q was not granted", sc)
			}
		}
		scopes = r.Data.Scopes
	}
	if f.SessionID != "" {
		if _, err := p.liveSession(ctx, f.SessionID); err != nil {
			return nil, err
		}
	}
	if !p.acceptsOrg(cl, f.OrgID) {
		return nil, oidc.ErrInvalidGrant().WithDescription("the organization is no longer one this client serves")
	}
	who, err := p.person(ctx, f.UserID, f.OrgID)
	if err != nil {
		return nil, err
	}
	if err := p.decideToken(ctx, tokenAsk{cl: cl, who: &who, org: who.org, grant: "refresh_token", scopes: scopes, resource: f.Resource,
		authTime: f.AuthTime, amr: f.AMR}, oidc.ErrInvalidGrant()); err != nil {
		return nil, err
	}
	var raced bool
	f, err = p.o.Store.UpdateRefreshFamily(ctx, fid, func(cur store.RefreshFamily) (store.RefreshFamily, error) {
		if cur.Generation != gen || !cur.RevokedAt.IsZero() {
			raced = true
			return cur, errors.New("rotated meanwhile")
		}
		cur.Generation++
		cur.UsedAt = p.o.Now().UTC()
		return cur, nil
	})
	if raced {
		p.reused(ctx, f, "a refresh token was used twice at once")
		return nil, oidc.ErrInvalidGrant().WithDescription("the refresh token was used already; its family is revoked")
	}
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	at, exp, jti, err := p.accessToken(cl, who, scopes, f.Resource, f.SessionID, f.AuthTime)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	idt, err := op.CreateIDToken(ctx, p.issuer, refreshRequest{f}, cl.IDTokenLifetime(), at, "", storage{p}, cl)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	p.audit(ctx, f.OrgID, f.UserID, "oidc.token", map[string]string{"client": cl.cfg.ID, "grant": "refresh_token", "jti": jti, "family": f.ID})
	return tokenResponse(&oidc.AccessTokenResponse{AccessToken: at, TokenType: oidc.BearerToken, RefreshToken: p.refreshToken(f.ID, f.Generation),
		ExpiresIn: uint64(time.Until(exp).Round(time.Second) / time.Second), IDToken: idt, Scope: scopes}), nil
}

// reused revokes a family whose token was stolen, and the session's
// other families of the same client.
func (p *Provider) reused(ctx context.Context, f store.RefreshFamily, why string) {
	p.o.Logger.Warn("provider: refresh token reuse; revoking", "client", f.ClientID, "user", f.UserID, "family", f.ID, "reason", why)
	ids := []string{f.ID}
	if f.SessionID != "" {
		if fs, err := p.o.Store.ListRefreshFamiliesBySession(ctx, f.SessionID); err == nil {
			for _, o := range fs {
				if o.ClientID == f.ClientID && o.ID != f.ID {
					ids = append(ids, o.ID)
				}
			}
		}
	}
	for _, id := range ids {
		p.revokeFamily(ctx, id)
	}
	p.audit(ctx, f.OrgID, f.UserID, "oidc.refresh_reuse", map[string]string{"client": f.ClientID, "family": f.ID, "revoked": strings.Join(ids, ","), "reason": why})
}

func (p *Provider) revokeFamily(ctx context.Context, id string) {
	ctx, cancel := detached(ctx)
	defer cancel()
	_, err := p.o.Store.UpdateRefreshFamily(ctx, id, func(f store.RefreshFamily) (store.RefreshFamily, error) {
		if f.RevokedAt.IsZero() {
			f.RevokedAt = p.o.Now().UTC()
		}
		return f, nil
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		p.o.Logger.Error("provider: revoking a refresh token family failed", "family", id, "err", err)
	}
}

// revokeAccess lists an access token as revoked until it expires.
func (p *Provider) revokeAccess(ctx context.Context, jti string, exp time.Time) error {
	err := p.o.Store.PutOnce(ctx, kindRevokedAT, jti, nil, exp.Add(time.Minute))
	if errors.Is(err, store.ErrAlreadyExists) {
		return nil
	}
	return err
}

func (p *Provider) accessRevoked(ctx context.Context, jti string) bool {
	_, err := p.o.Store.GetOnce(ctx, kindRevokedAT, jti)
	return !errors.Is(err, store.ErrNotFound) // a store failure counts as revoked: fail closed
}

// spentCode is what a redeemed code gave: revoked if it comes again.
type spentCode struct {
	Family string `json:"family"`
	JTI    string `json:"jti"`
	Exp    int64  `json:"exp"`
}

// Revocation (RFC 7009): a refresh token revokes its family, an access
// token is listed as revoked until it expires; a token of another client
// is refused; an unknown one is answered as revoked.
func (s *server) Revocation(ctx context.Context, r *op.ClientRequest[oidc.RevocationRequest]) (*op.Response, error) {
	p := s.p
	caller := r.Client.GetID()
	if fid, _, ok := p.parseRefresh(r.Data.Token); ok {
		f, err := p.o.Store.GetRefreshFamily(ctx, fid)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return op.NewResponse(nil), nil
		case err != nil:
			return nil, op.RevocationError(oidc.ErrServerError().WithParent(err))
		case f.ClientID != caller:
			return nil, op.RevocationError(oidc.ErrUnauthorizedClient().WithDescription("the token was issued to another client"))
		}
		p.revokeFamily(ctx, fid)
		p.audit(ctx, f.OrgID, f.UserID, "oidc.revoke", map[string]string{"client": caller, "family": fid})
		return op.NewResponse(nil), nil
	}
	if c, err := p.verifyAccessToken(r.Data.Token); err == nil {
		if c.ClientID != caller {
			return nil, op.RevocationError(oidc.ErrUnauthorizedClient().WithDescription("the token was issued to another client"))
		}
		if err := p.revokeAccess(ctx, c.JWTID, time.Unix(c.Expiry, 0)); err != nil {
			return nil, op.RevocationError(oidc.ErrServerError().WithParent(err))
		}
		p.audit(ctx, c.OrgID, c.Subject, "oidc.revoke", map[string]string{"client": caller, "jti": c.JWTID})
	}
	return op.NewResponse(nil), nil
}

// Introspect (RFC 7662) answers confidential clients about tokens meant
// for them: issued to them, or with an audience that is theirs.
func (s *server) Introspect(ctx context.Context, r *op.Request[op.IntrospectionRequest]) (*op.Response, error) {
	p := s.p
	cc := r.Data.ClientCredentials
	if cc == nil {
		return nil, op.NewStatusError(oidc.ErrInvalidClient(), 401)
	}
	var caller *client
	if cc.ClientAssertion != "" {
		cl, err := p.verifyClientAssertion(ctx, cc.ClientAssertion, cc.ClientID)
		if err != nil {
			return nil, op.NewStatusError(err, 401)
		}
		caller = cl
	} else if cl, ok := p.client(cc.ClientID); ok && cl.checkSecret(p.secretKey, cc.ClientSecret, p.o.Now()) {
		caller = cl
	} else {
		return nil, op.NewStatusError(oidc.ErrInvalidClient(), 401)
	}
	inactive := op.NewResponse(&oidc.IntrospectionResponse{})
	tok := ""
	if r.Data.IntrospectionRequest != nil {
		tok = r.Data.IntrospectionRequest.Token
	}
	if fid, gen, ok := p.parseRefresh(tok); ok {
		f, err := p.o.Store.GetRefreshFamily(ctx, fid)
		if err != nil || f.ClientID != caller.cfg.ID || gen != f.Generation || !f.RevokedAt.IsZero() || !p.o.Now().Before(f.ExpiresAt) {
			return inactive, nil
		}
		return op.NewResponse(&oidc.IntrospectionResponse{Active: true, ClientID: f.ClientID, Subject: f.UserID, Scope: f.Scopes,
			TokenType: "refresh_token", Expiration: oidc.FromTime(f.ExpiresAt), Issuer: p.issuer}), nil
	}
	c, err := p.verifyAccessToken(tok)
	if err != nil || p.accessRevoked(ctx, c.JWTID) || !(c.ClientID == caller.cfg.ID || caller.ownsAudience(c.Audience)) {
		return inactive, nil
	}
	if _, ok := p.client(c.ClientID); !ok {
		return inactive, nil // its app was removed
	}
	resp := &oidc.IntrospectionResponse{Active: true, ClientID: c.ClientID, Subject: c.Subject, Audience: []string{c.Audience},
		Scope: strings.Fields(c.Scope), TokenType: oidc.BearerToken, Expiration: oidc.FromTime(time.Unix(c.Expiry, 0)),
		IssuedAt: oidc.FromTime(time.Unix(c.IssuedAt, 0)), Issuer: c.Issuer, JWTID: c.JWTID, Username: c.Email}
	if c.Subject != c.ClientID { // a person's token: still a member?
		if _, err := p.person(ctx, c.Subject, c.OrgID); err != nil {
			return inactive, nil
		}
	}
	resp.Claims = map[string]any{"org_id": c.OrgID, "org_slug": c.OrgSlug}
	if len(c.Roles) > 0 {
		resp.Claims["roles"] = c.Roles
	}
	return op.NewResponse(resp), nil
}

// ownsAudience: aud is the client's own audience or one of its resources.
func (c *client) ownsAudience(aud string) bool {
	return aud != "" && (aud == c.cfg.Audience || c.allowsResource(aud))
}
