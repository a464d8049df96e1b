package provider

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/idp/signing"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// server is the library's LegacyServer with the parts Gatehouse owns:
// which authorize parameters it takes, and every token it makes.
type server struct {
	*op.LegacyServer
	p *Provider
}

// VerifyAuthRequest refuses what Gatehouse does not offer before the
// library reads the request: request objects by reference (the library
// would ignore request_uri silently).
func (s *server) VerifyAuthRequest(ctx context.Context, r *op.Request[oidc.AuthRequest]) (*op.ClientRequest[oidc.AuthRequest], error) {
	if r.Form.Has("request_uri") {
		return nil, &oidc.Error{ErrorType: "request_uri_not_supported", Description: "request_uri is not supported: send the request's parameters"}
	}
	return s.LegacyServer.VerifyAuthRequest(ctx, r)
}

// Authorize passes resource (RFC 8707) and organization on to
// CreateAuthRequest, whose errors the library sends to the app.
func (s *server) Authorize(ctx context.Context, r *op.ClientRequest[oidc.AuthRequest]) (*op.Redirect, error) {
	ex := extras{organization: r.Form.Get("organization"), foreignHint: r.Data.IDTokenHint != "" && !isIDToken(r.Data.IDTokenHint)}
	switch rs := r.Form["resource"]; len(rs) {
	case 0:
	case 1:
		ex.resource = rs[0]
	default:
		// One audience per token: several resources would need several.
		ex.resource = "\x00several"
	}
	return s.LegacyServer.Authorize(context.WithValue(ctx, ctxKey{}, ex), r)
}

// CodeExchange redeems a code: the code (and its request) is spent first,
// so a failed attempt burns it; then PKCE, the client and the redirect
// URI must match, and the person must still be who they were.
func (s *server) CodeExchange(ctx context.Context, r *op.ClientRequest[oidc.AccessTokenRequest]) (*op.Response, error) {
	a, err := s.p.requests.takeByCode(ctx, r.Data.Code)
	if errors.Is(err, store.ErrUnavailable) {
		return nil, oidc.ErrServerError().WithParent(err).WithDescription("the store is not answering; try again")
	}
	if err != nil {
		s.p.codeAgain(ctx, r.Data.Code)
		return nil, oidc.ErrInvalidGrant().WithDescription("invalid, used or expired code")
	}
	if err := op.AuthorizeCodeChallenge(r.Data.CodeVerifier, a.GetCodeChallenge()); err != nil {
		return nil, oidc.ErrInvalidGrant().WithDescription("code_verifier does not match the code_challenge")
	}
	if r.Client.GetID() != a.ClientID {
		return nil, oidc.ErrInvalidGrant().WithDescription("the code was issued to another client")
	}
	if r.Data.RedirectURI != a.RedirectURI {
		return nil, oidc.ErrInvalidGrant().WithDescription("redirect_uri does not match the authorization request's")
	}
	cl, ok := r.Client.(*client)
	if !ok {
		return nil, oidc.ErrInvalidClient()
	}
	sess, err := s.p.liveSession(ctx, a.SessionID)
	if err != nil {
		return nil, err
	}
	who, err := s.p.person(ctx, a.Subject, a.OrgID)
	if err != nil {
		return nil, err
	}
	if err := s.p.decideToken(ctx, tokenAsk{cl: cl, who: &who, org: who.org, grant: "authorization_code", scopes: a.Scopes, resource: a.Resource,
		authTime: a.AuthTime, amr: a.AMR}, oidc.ErrInvalidGrant()); err != nil {
		return nil, err
	}
	at, exp, jti, err := s.p.accessToken(cl, who, a.Scopes, a.Resource, a.SessionID, a.AuthTime)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	idt, err := op.CreateIDToken(ctx, s.p.issuer, a, cl.IDTokenLifetime(), at, r.Data.Code, storage{s.p}, cl)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	fid, err := s.p.newFamily(ctx, cl, a, sess.ExpiresAt)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	s.p.codeSpent(ctx, r.Data.Code, spentCode{Family: fid, JTI: jti, Exp: exp.Unix()})
	s.p.audit(ctx, who.org.ID, who.user.ID, "oidc.token", map[string]string{"client": cl.cfg.ID, "grant": "authorization_code", "jti": jti, "family": fid})
	return tokenResponse(&oidc.AccessTokenResponse{AccessToken: at, TokenType: oidc.BearerToken, ExpiresIn: uint64(time.Until(exp).Round(time.Second) / time.Second),
		IDToken: idt, RefreshToken: s.p.refreshToken(fid, 1), Scope: a.Scopes}), nil
}

// ClientCredentialsExchange gives a machine client a token for its own
// org: sub is the client (RFC 9068 §2.2), org_id the client's org.
func (s *server) ClientCredentialsExchange(ctx context.Context, r *op.ClientRequest[oidc.ClientCredentialsRequest]) (*op.Response, error) {
	cl, ok := r.Client.(*client)
	if !ok || !cl.perOrg {
		return nil, oidc.ErrUnauthorizedClient()
	}
	o, ok := s.p.o.Orgs.ByID(cl.orgID)
	if !ok || cl.orgID == "" {
		return nil, oidc.ErrInvalidClient().WithDescription("the client's organization no longer exists")
	}
	var scopes []string
	for _, sc := range r.Data.Scope {
		if !cl.IsScopeAllowed(sc) {
			return nil, oidc.ErrInvalidScope().WithDescription("scope %q is not one this client may ask for", sc)
		}
		scopes = append(scopes, sc)
	}
	resource := ""
	switch rs := r.Form["resource"]; len(rs) {
	case 0:
	case 1:
		if !cl.allowsResource(rs[0]) {
			return nil, oidc.ErrInvalidTarget().WithDescription("resource %q is not one this client may ask for", rs[0])
		}
		resource = rs[0]
	default:
		return nil, oidc.ErrInvalidTarget().WithDescription("one resource per token")
	}
	if err := s.p.decideToken(ctx, tokenAsk{cl: cl, org: o, grant: "client_credentials", scopes: scopes, resource: resource}, oidc.ErrInvalidGrant()); err != nil {
		return nil, err
	}
	at, exp, jti, err := s.p.machineToken(cl, o, scopes, resource)
	if err != nil {
		return nil, oidc.ErrServerError().WithParent(err)
	}
	s.p.audit(ctx, o.ID, "client:"+cl.cfg.ID, "oidc.token", map[string]string{"client": cl.cfg.ID, "grant": "client_credentials", "jti": jti})
	return tokenResponse(&oidc.AccessTokenResponse{AccessToken: at, TokenType: oidc.BearerToken,
		ExpiresIn: uint64(time.Until(exp).Round(time.Second) / time.Second), Scope: scopes}), nil
}

// EndSession refuses an id_token_hint that is not an ID token (an
// access token or a proxy assertion signed with the same keys).
func (s *server) EndSession(ctx context.Context, r *op.Request[oidc.EndSessionRequest]) (*op.Redirect, error) {
	if r.Data.IdTokenHint != "" && !isIDToken(r.Data.IdTokenHint) {
		return nil, oidc.ErrInvalidRequest().WithDescription("id_token_hint is not an ID token")
	}
	return s.LegacyServer.EndSession(ctx, r)
}

// isIDToken: a JWT whose typ header is an ID token's ("JWT"); the library
// checks its signature and issuer, not its kind.
func isIDToken(raw string) bool {
	head, _, ok := strings.Cut(raw, ".")
	if !ok {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	var h struct {
		Typ string `json:"typ"`
	}
	return json.Unmarshal(b, &h) == nil && strings.EqualFold(h.Typ, "JWT")
}

// JWTProfile: no JWT bearer grant (RFC 7523).
func (s *server) JWTProfile(context.Context, *op.Request[oidc.JWTProfileGrantRequest]) (*op.Response, error) {
	return nil, oidc.ErrUnsupportedGrantType()
}

// UserInfo answers for an access token of this provider only: typ
// at+jwt, this issuer, unexpired, its person still a member.
func (s *server) UserInfo(ctx context.Context, r *op.Request[oidc.UserInfoRequest]) (*op.Response, error) {
	c, err := s.p.verifyAccessToken(r.Data.AccessToken)
	if err == nil && s.p.accessRevoked(ctx, c.JWTID) {
		err = errors.New("revoked")
	}
	cl, registered := s.p.client(c.ClientID)
	if err == nil && !registered {
		err = errors.New("its app is no longer registered")
	}
	if err != nil {
		return nil, op.NewStatusError(oidc.ErrAccessDenied().WithDescription("the access token is not valid here"), http.StatusUnauthorized)
	}
	if c.ClientID == c.Subject { // a machine token: no person
		return nil, op.NewStatusError(oidc.ErrAccessDenied().WithDescription("a client's own token has no user"), http.StatusForbidden)
	}
	who, err := s.p.person(ctx, c.Subject, c.OrgID)
	if err != nil {
		return nil, op.NewStatusError(oidc.ErrAccessDenied().WithDescription("the person is no longer a member"), http.StatusUnauthorized)
	}
	info := new(oidc.UserInfo)
	who.fill(info)
	for k, v := range s.p.mappedClaims(cl, &who, who.org) {
		info.AppendClaims(k, v)
	}
	return op.NewResponse(info), nil
}

func tokenResponse(v *oidc.AccessTokenResponse) *op.Response {
	resp := op.NewResponse(v)
	resp.Header.Set("Cache-Control", "no-store")
	resp.Header.Set("Pragma", "no-cache")
	return resp
}

// accessClaims are an RFC 9068 access token's.
type accessClaims struct {
	Issuer    string   `json:"iss"`
	Subject   string   `json:"sub"`
	Audience  string   `json:"aud"`
	Expiry    int64    `json:"exp"`
	IssuedAt  int64    `json:"iat"`
	JWTID     string   `json:"jti"`
	ClientID  string   `json:"client_id"`
	Scope     string   `json:"scope,omitempty"`
	AuthTime  int64    `json:"auth_time,omitempty"`
	SessionID string   `json:"sid,omitempty"`
	OrgID     string   `json:"org_id"`
	OrgSlug   string   `json:"org_slug"`
	Email     string   `json:"email,omitempty"`
	Roles     []string `json:"roles,omitempty"`
	Groups    []string `json:"groups,omitempty"`
	// Extra are mapped claims (claims.go); they never replace the above.
	Extra map[string]any `json:"-"`
}

// MarshalJSON adds the mapped claims to the registered ones.
func (c accessClaims) MarshalJSON() ([]byte, error) {
	type plain accessClaims
	b, err := json.Marshal(plain(c))
	if err != nil || len(c.Extra) == 0 {
		return b, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	for k, v := range c.Extra {
		if _, taken := m[k]; !taken {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// accessToken makes a person's access token for cl.
func (p *Provider) accessToken(cl *client, who person, scopes []string, resource, sessionID string, authTime time.Time) (string, time.Time, string, error) {
	now := p.o.Now()
	exp := now.Add(cl.cfg.AccessTokenLifetime)
	c := accessClaims{Issuer: p.issuer, Subject: who.user.ID, Audience: cl.audience(resource, p.issuer+UserinfoPath), Expiry: exp.Unix(),
		IssuedAt: now.Unix(), JWTID: token.RandomID()[:22], ClientID: cl.cfg.ID, Scope: strings.Join(scopes, " "), AuthTime: authTime.Unix(),
		OrgID: who.org.ID, OrgSlug: who.org.Slug, Email: who.user.Email, Roles: nonNil(who.mem.Roles), Groups: who.mem.Groups,
		Extra: p.mappedClaims(cl, &who, who.org)}
	if sessionID != "" {
		c.SessionID = p.sid(sessionID)
	}
	at, err := p.o.Keys.SignTyped(signing.TypeAccessToken, c)
	return at, exp, c.JWTID, err
}

// machineToken makes a machine client's access token for its org.
func (p *Provider) machineToken(cl *client, o *store.Org, scopes []string, resource string) (string, time.Time, string, error) {
	now := p.o.Now()
	exp := now.Add(cl.cfg.AccessTokenLifetime)
	c := accessClaims{Issuer: p.issuer, Subject: cl.cfg.ID, Audience: cl.audience(resource, p.issuer+UserinfoPath), Expiry: exp.Unix(),
		IssuedAt: now.Unix(), JWTID: token.RandomID()[:22], ClientID: cl.cfg.ID, Scope: strings.Join(scopes, " "), OrgID: o.ID, OrgSlug: o.Slug,
		Extra: p.mappedClaims(cl, nil, o)}
	at, err := p.o.Keys.SignTyped(signing.TypeAccessToken, c)
	return at, exp, c.JWTID, err
}

// verifyAccessToken checks an access token this provider made.
func (p *Provider) verifyAccessToken(tok string) (accessClaims, error) {
	var c accessClaims
	payload, err := p.o.Keys.Verify(tok, signing.TypeAccessToken)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, err
	}
	switch {
	case c.Issuer != p.issuer:
		return c, errors.New("provider: another issuer's token")
	case p.o.Now().Unix() >= c.Expiry:
		return c, errors.New("provider: expired token")
	case c.Subject == "" || c.ClientID == "":
		return c, errors.New("provider: token without subject or client")
	}
	return c, nil
}

// sid is a session's handle in tokens: derived from its ID, which stays
// secret (the ID names the session to the store).
func (p *Provider) sid(sessionID string) string {
	m := hmac.New(sha256.New, p.secretKey)
	m.Write([]byte("sid\x00" + sessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// liveSession refuses tokens for a session that ended meanwhile.
func (p *Provider) liveSession(ctx context.Context, id string) (store.Session, error) {
	s, err := p.o.Store.GetSession(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return s, oidc.ErrInvalidGrant().WithDescription("the sign-in's session has ended")
	case err != nil:
		return s, oidc.ErrServerError().WithParent(err)
	case !s.RevokedAt.IsZero() || !p.o.Now().Before(s.ExpiresAt):
		return s, oidc.ErrInvalidGrant().WithDescription("the sign-in's session has ended")
	}
	return s, nil
}

// codeSpent remembers what a code gave, for codeAgain.
func (p *Provider) codeSpent(ctx context.Context, code string, sc spentCode) {
	b, _ := json.Marshal(sc)
	if err := p.o.Store.PutOnce(ctx, kindSpentCode, codeKey(code), b, p.o.Now().Add(spentCodeTTL)); err != nil {
		p.o.Logger.Warn("provider: could not remember a redeemed code", "err", err)
	}
}

// codeAgain: a code redeemed before and presented again was stolen
// (RFC 6749 §4.1.2): what it gave is revoked.
func (p *Provider) codeAgain(ctx context.Context, code string) {
	b, err := p.o.Store.TakeOnce(ctx, kindSpentCode, codeKey(code))
	if err != nil {
		return
	}
	var sc spentCode
	if json.Unmarshal(b, &sc) != nil {
		return
	}
	p.o.Logger.Warn("provider: a redeemed code was presented again; revoking its tokens", "family", sc.Family)
	p.revokeFamily(ctx, sc.Family)
	if err := p.revokeAccess(ctx, sc.JTI, time.Unix(sc.Exp, 0)); err != nil {
		p.o.Logger.Error("provider: revoking an access token failed", "err", err)
	}
	if f, err := p.o.Store.GetRefreshFamily(ctx, sc.Family); err == nil {
		p.audit(ctx, f.OrgID, f.UserID, "oidc.code_reuse", map[string]string{"client": f.ClientID, "family": f.ID})
	}
}

func (p *Provider) audit(ctx context.Context, orgID, actor, action string, details map[string]string) {
	ctx, cancel := detached(ctx)
	defer cancel()
	if err := p.o.Store.AppendAudit(ctx, store.AuditEvent{Time: p.o.Now(), OrgID: orgID, Actor: actor, Action: action, Outcome: "success", Details: details}); err != nil {
		p.o.Logger.Error("provider: audit write failed", "action", action, "err", err)
	}
}

// writeOAuthError answers an RFC 6749 §5.2 error.
func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
}
