package admin

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Need is the right an endpoint needs.
type Need int

const (
	// NeedNone: anyone (the OpenAPI document).
	NeedNone Need = iota
	// NeedSelf: any signed-in person or token, about themselves.
	NeedSelf
	// NeedRead: an admin or auditor of the org (or of an org above it).
	NeedRead
	// NeedWrite: an admin of the org (or of an org above it).
	NeedWrite
	// NeedPlatform: a platform admin.
	NeedPlatform
)

func (n Need) String() string {
	return [...]string{"none", "self", "read", "write", "platform"}[n]
}

// Principal is who calls: a signed-in person (through their session) or
// an API token.
type Principal struct {
	// UserID is the person (for a token: the one who made it, if any).
	UserID string
	Email  string
	// SessionID is set for a session, TokenID for a token.
	SessionID string
	TokenID   string
	// Platform: a platform admin (every org).
	Platform bool
	// OrgID is the org the rights hold in (the session's org, the
	// token's org); Role is "admin", "auditor" or "" (a member).
	OrgID string
	Role  string
}

func (p *Principal) String() string {
	switch {
	case p == nil:
		return "anonymous"
	case p.TokenID != "":
		return "token:" + p.TokenID
	}
	return "user:" + p.UserID
}

// actor is the principal as audit events name it.
func (p *Principal) actor() string { return p.String() }

// tokenPrefix starts every API token, so that secret scanners find them.
const tokenPrefix = "ghat_"

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// newToken makes a token: its ID ("tok_" + 16 characters), the secret to
// show once ("ghat_<id part>_<52 characters>") and the hash to store.
func newToken() (id, secret, hash string) {
	idb := make([]byte, 10)
	sb := make([]byte, 32)
	_, _ = rand.Read(idb)
	_, _ = rand.Read(sb)
	idPart := strings.ToLower(b32.EncodeToString(idb))
	sec := strings.ToLower(b32.EncodeToString(sb))
	return "tok_" + idPart, tokenPrefix + idPart + "_" + sec, hashSecret(sec)
}

// hashSecret is a token secret's stored form. The secret has 256 random
// bits, so a fast hash is enough: there is nothing to guess.
func hashSecret(sec string) string {
	h := sha256.Sum256([]byte(sec))
	return hex.EncodeToString(h[:])
}

// parseToken splits a presented token into its ID and secret.
func parseToken(s string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(s, tokenPrefix)
	if !ok {
		return "", "", false
	}
	idPart, sec, ok := strings.Cut(rest, "_")
	if !ok || len(idPart) != 16 || len(sec) != 52 || !isB32(idPart) || !isB32(sec) {
		return "", "", false
	}
	return "tok_" + idPart, sec, true
}

func isB32(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

func unauthorized(detail string) *Problem {
	return &Problem{Status: http.StatusUnauthorized, Code: "unauthenticated", Detail: detail}
}

// authenticate finds the principal: a bearer token if one is sent (a
// malformed, unknown, expired or revoked one is refused, never taken for
// no credentials), else the session cookie. viaCookie reports a session.
func (a *API) authenticate(r *http.Request) (p *Principal, viaCookie bool, err error) {
	if len(r.Header.Values("Authorization")) > 1 {
		return nil, false, unauthorized("Send one Authorization header.")
	}
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, cred, _ := strings.Cut(auth, " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return nil, false, unauthorized("Only Bearer API tokens are accepted in Authorization.")
		}
		p, err := a.tokenPrincipal(r.Context(), strings.TrimSpace(cred))
		return p, false, err
	}
	if a.o.Sessions == nil {
		return nil, false, unauthorized("Send an API token as Authorization: Bearer.")
	}
	sid, err := a.o.Sessions.SessionID(r)
	if err != nil {
		return nil, false, unauthorized("Sign in, or send an API token as Authorization: Bearer.")
	}
	e, err := a.o.Sessions.Lookup(r.Context(), sid)
	if errors.Is(err, session.ErrUnavailable) {
		return nil, true, fmt.Errorf("admin: session: %w", err)
	}
	if err != nil {
		return nil, true, unauthorized("Your session has ended. Sign in again.")
	}
	id := e.Identity()
	p = &Principal{UserID: id.UserID, Email: id.Email, SessionID: sid, OrgID: id.OrgID, Role: roleOf(id.Roles)}
	u, err := a.o.Store.GetUser(r.Context(), id.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, true, unauthorized("Your session has ended. Sign in again.")
	}
	if err != nil {
		return nil, true, fmt.Errorf("admin: session's person: %w", err)
	}
	if u.PlatformAdmin {
		// Platform rights come with a session only in an org the config
		// file declares (the operator's): a customer's admins can make
		// memberships in their own orgs, never the operator's.
		org, err := a.o.Store.GetOrg(r.Context(), id.OrgID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, true, fmt.Errorf("admin: session's org: %w", err)
		}
		p.Platform = err == nil && org.Declared
	}
	return p, true, nil
}

// roleOf is the highest admin role among a membership's roles.
func roleOf(roles []string) string {
	switch {
	case slices.Contains(roles, store.RoleAdmin):
		return store.RoleAdmin
	case slices.Contains(roles, store.RoleAuditor):
		return store.RoleAuditor
	}
	return ""
}

// tokenPrincipal checks a presented API token. A token lives only as long
// as the person who made it keeps the rights it grants: a maker who is
// disabled, deleted, removed from the org or demoted takes it down too.
func (a *API) tokenPrincipal(ctx context.Context, presented string) (*Principal, error) {
	id, sec, ok := parseToken(presented)
	if !ok {
		return nil, unauthorized("The API token is malformed.")
	}
	t, err := a.o.Store.GetAPIToken(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, unauthorized("The API token is not known.")
	}
	if err != nil {
		return nil, fmt.Errorf("admin: read token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(hashSecret(sec)), []byte(t.Hash)) != 1 {
		return nil, unauthorized("The API token is not known.")
	}
	now := a.o.Now()
	switch {
	case !t.RevokedAt.IsZero():
		return nil, unauthorized("The API token was revoked.")
	case !now.Before(t.ExpiresAt):
		return nil, unauthorized("The API token has expired.")
	}
	p := &Principal{TokenID: t.ID, UserID: t.CreatedBy, OrgID: t.OrgID, Role: t.Role, Platform: t.Role == store.RolePlatformAdmin}
	// A token made with another token is good only while that one is.
	for parentID, depth := t.ParentTokenID, 0; parentID != ""; depth++ {
		parent, err := a.o.Store.GetAPIToken(ctx, parentID)
		switch {
		case errors.Is(err, store.ErrNotFound) || depth >= maxDepth:
			return nil, unauthorized("The API token that made this one is gone.")
		case err != nil:
			return nil, fmt.Errorf("admin: read token: %w", err)
		case !parent.RevokedAt.IsZero() || !now.Before(parent.ExpiresAt):
			return nil, unauthorized("The API token that made this one was revoked or has expired.")
		}
		parentID = parent.ParentTokenID
	}
	if t.CreatedBy != "" {
		if err := a.makerHolds(ctx, t); err != nil {
			return nil, err
		}
	}
	a.touch(ctx, t, now)
	return p, nil
}

// makerHolds checks that a token's maker still has what it grants.
func (a *API) makerHolds(ctx context.Context, t store.APIToken) error {
	gone := unauthorized("The API token's maker no longer has the rights it grants.")
	u, err := a.o.Store.GetUser(ctx, t.CreatedBy)
	if errors.Is(err, store.ErrNotFound) {
		return gone
	}
	if err != nil {
		return fmt.Errorf("admin: read token maker: %w", err)
	}
	if u.Disabled {
		return gone
	}
	if u.PlatformAdmin {
		return nil
	}
	if t.Role == store.RolePlatformAdmin {
		return gone
	}
	// The maker's rights in the token's org or an org above it.
	chain, err := a.ancestry(ctx, t.OrgID)
	if err != nil {
		return err
	}
	for _, oid := range chain {
		m, err := a.o.Store.GetMembership(ctx, u.ID, oid)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("admin: read token maker: %w", err)
		}
		if !m.Disabled && rank(roleOf(m.Roles)) >= rank(t.Role) {
			return nil
		}
	}
	return gone
}

// touch records a token's last use, at most once a minute per token.
func (a *API) touch(ctx context.Context, t store.APIToken, now time.Time) {
	a.usedMu.Lock()
	last, ok := a.used[t.ID]
	if !ok {
		last = t.LastUsedAt
	}
	if now.Sub(last) < time.Minute {
		a.usedMu.Unlock()
		return
	}
	a.used[t.ID] = now
	a.usedMu.Unlock()
	if _, err := a.o.Store.UpdateAPIToken(context.WithoutCancel(ctx), t.ID, func(t store.APIToken) (store.APIToken, error) {
		t.LastUsedAt = now
		return t, nil
	}); err != nil && !errors.Is(err, store.ErrNotFound) {
		a.o.Logger.Warn("admin: token last use not recorded", "token", t.ID, "err", err)
	}
}

func rank(role string) int {
	switch role {
	case store.RolePlatformAdmin:
		return 3
	case store.RoleAdmin:
		return 2
	case store.RoleAuditor:
		return 1
	}
	return 0
}

// maxDepth bounds an org's ancestry (a cycle in stored data must not loop).
const maxDepth = 32

// ancestry is the org's ID and its ancestors' IDs, nearest first.
func (a *API) ancestry(ctx context.Context, orgID string) ([]string, error) {
	var out []string
	for id := orgID; id != "" && len(out) < maxDepth; {
		out = append(out, id)
		o, err := a.o.Store.GetOrg(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("admin: read org %s: %w", id, err)
		}
		id = o.ParentID
	}
	return out, nil
}

// inScope reports whether p's rights cover org: a platform admin every
// org; anyone else their org and the orgs below it.
func (a *API) inScope(ctx context.Context, p *Principal, org *store.Org) (bool, error) {
	if p.Platform {
		return true, nil
	}
	if p.OrgID == "" {
		return false, nil
	}
	chain, err := a.ancestry(ctx, org.ID)
	if err != nil {
		return false, err
	}
	return slices.Contains(chain, p.OrgID), nil
}

// authorize is the one authorization function: may p do what need names
// on org (nil: on no org in particular)? Out of p's scope, an org does not
// exist (404); in it, a missing right is 403.
func (a *API) authorize(ctx context.Context, p *Principal, need Need, org *store.Org) error {
	switch need {
	case NeedNone, NeedSelf:
		return nil
	case NeedPlatform:
		if p.Platform {
			return nil
		}
		if org != nil {
			// Don't say the org exists to someone outside it.
			if ok, err := a.inScope(ctx, p, org); err != nil || !ok {
				if err != nil {
					return err
				}
				return notFound("org")
			}
		}
		return forbidden("Only a platform admin may do this.")
	}
	if org == nil {
		// Across orgs (listing, creating a sub-org): the handler narrows
		// to the caller's scope.
		switch {
		case p.Platform, need == NeedRead && rank(p.Role) >= rank(store.RoleAuditor), need == NeedWrite && rank(p.Role) >= rank(store.RoleAdmin):
			return nil
		case need == NeedWrite && p.Role == store.RoleAuditor:
			return forbidden("Auditors have read-only access.")
		}
		return forbidden("Only an org's admins and auditors may do this.")
	}
	ok, err := a.inScope(ctx, p, org)
	if err != nil {
		return err
	}
	if !ok {
		return notFound("org")
	}
	if p.Platform {
		return nil
	}
	switch {
	case need == NeedRead && rank(p.Role) >= rank(store.RoleAuditor):
		return nil
	case need == NeedWrite && rank(p.Role) >= rank(store.RoleAdmin):
		return nil
	case need == NeedWrite && p.Role == store.RoleAuditor:
		return forbidden("Auditors have read-only access.")
	}
	return forbidden("Only the org's admins may do this.")
}
