package admin

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// TokenView is an API token as listed (never its secret).
type TokenView struct {
	ID         string    `json:"id"`
	OrgID      string    `json:"org_id,omitempty"`
	Role       string    `json:"role"`
	Name       string    `json:"name"`
	CreatedBy  string    `json:"created_by,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

func tokenView(t store.APIToken) TokenView {
	return TokenView{ID: t.ID, OrgID: t.OrgID, Role: t.Role, Name: t.Name, CreatedBy: t.CreatedBy, CreatedAt: t.CreatedAt,
		ExpiresAt: t.ExpiresAt, LastUsedAt: t.LastUsedAt, RevokedAt: t.RevokedAt}
}

// NewTokenView is a token just made, with its secret (shown this once).
type NewTokenView struct {
	TokenView
	Secret string `json:"secret"`
}

type tokenList struct {
	Items []TokenView `json:"items"`
}

type tokenCreate struct {
	Name string `json:"name"`
	Role string `json:"role"`
	// ExpiresIn is a Go duration ("720h"); default 90 days, at most a year.
	ExpiresIn string `json:"expires_in"`
}

// Token lifetimes.
const (
	DefaultTokenLifetime = 90 * 24 * time.Hour
	MaxTokenLifetime     = 366 * 24 * time.Hour
)

// MintToken stores a new token and returns it with its secret. It is the
// one way tokens are made: by the API, `gatehouse admin bootstrap` and dev
// mode.
func MintToken(ctx context.Context, st store.Store, orgID, role, name, createdBy string, now time.Time, lifetime time.Duration) (NewTokenView, error) {
	return mint(ctx, st, store.APIToken{OrgID: orgID, Role: role, Name: name, CreatedBy: createdBy,
		CreatedAt: now.UTC(), ExpiresAt: now.Add(lifetime).UTC()})
}

// mint stores t with a fresh ID and secret.
func mint(ctx context.Context, st store.Store, t store.APIToken) (NewTokenView, error) {
	id, secret, hash := newToken()
	t.ID, t.Hash = id, hash
	if err := st.CreateAPIToken(ctx, t); err != nil {
		return NewTokenView{}, fmt.Errorf("admin: create token: %w", err)
	}
	return NewTokenView{TokenView: tokenView(t), Secret: secret}, nil
}

func (c *call) tokenInput(platform bool) (tokenCreate, time.Duration, error) {
	var in tokenCreate
	if err := c.decode(&in); err != nil {
		return in, 0, err
	}
	var errs fields
	if in.Name == "" || len(in.Name) > 100 {
		errs.add("/name", "required, at most 100 characters: say what the token is for")
	}
	switch {
	case platform && in.Role != store.RolePlatformAdmin:
		errs.add("/role", "must be %s", store.RolePlatformAdmin)
	case !platform && in.Role != store.RoleAdmin && in.Role != store.RoleAuditor:
		errs.add("/role", "must be %s or %s", store.RoleAdmin, store.RoleAuditor)
	}
	life := DefaultTokenLifetime
	if in.ExpiresIn != "" {
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d < time.Minute || d > MaxTokenLifetime {
			errs.add("/expires_in", "must be a duration from 1m to %s, such as 720h", MaxTokenLifetime)
		}
		life = d
	}
	return in, life, errs.err()
}

// newToken makes a token for the caller: its life hangs on the caller's
// maker and, when the caller is a token, on that token too (revoked or
// expired, it takes the new one with it; the new one never outlives it).
func (c *call) newToken(orgID, role, name string, life time.Duration) (NewTokenView, error) {
	maker, err := c.tokenMaker()
	if err != nil {
		return NewTokenView{}, err
	}
	now := c.a.o.Now().UTC()
	t := store.APIToken{OrgID: orgID, Role: role, Name: name, CreatedBy: maker, CreatedAt: now, ExpiresAt: now.Add(life)}
	if c.p.TokenID != "" {
		parent, err := c.a.o.Store.GetAPIToken(c.ctx(), c.p.TokenID)
		if err != nil {
			return NewTokenView{}, fmt.Errorf("admin: read token: %w", err)
		}
		t.ParentTokenID = parent.ID
		if t.ExpiresAt.After(parent.ExpiresAt) {
			t.ExpiresAt = parent.ExpiresAt
		}
	}
	return mint(c.ctx(), c.a.o.Store, t)
}

// tokenMaker is who a new token's life hangs on: the signed-in person, or
// for a token made with a platform token, that token's own maker (nobody
// for a bootstrap token): a token never outlives the rights behind the
// one that made it.
func (c *call) tokenMaker() (string, error) {
	if c.p.TokenID != "" && !c.p.Platform {
		return "", forbidden("An org's API token cannot make tokens; sign in, or use a platform token.")
	}
	return c.p.UserID, nil
}

func (a *API) createOrgToken(c *call) error {
	in, life, err := c.tokenInput(false)
	if err != nil {
		return err
	}
	if _, err := c.tokenMaker(); err != nil {
		return err
	}
	if !c.p.Platform && rank(in.Role) > rank(c.p.Role) {
		return forbidden("You cannot make a token with a role above your own.")
	}
	t, err := c.newToken(c.org.ID, in.Role, in.Name, life)
	if err != nil {
		return err
	}
	c.record(c.org.ID, "token.create", t.ID, "success", map[string]string{"role": t.Role, "name": t.Name, "expires_at": t.ExpiresAt.Format(time.RFC3339)})
	c.w.Header().Set("Location", Prefix+"/orgs/"+c.org.ID+"/tokens/"+t.ID)
	return c.reply(http.StatusCreated, t)
}

func (a *API) listTokens(c *call, orgID string) error {
	ts, err := a.o.Store.ListAPITokens(c.ctx(), orgID)
	if err != nil {
		return fmt.Errorf("admin: list tokens: %w", err)
	}
	out := tokenList{Items: make([]TokenView, 0, len(ts))}
	for _, t := range ts {
		out.Items = append(out.Items, tokenView(t))
	}
	return c.reply(http.StatusOK, out)
}

func (a *API) listOrgTokens(c *call) error { return a.listTokens(c, c.org.ID) }

// revokeToken revokes the path's token of orgID (kept, marked revoked,
// so that the listing shows it until it would have expired).
func (a *API) revokeToken(c *call, orgID string) error {
	id := c.r.PathValue("token")
	t, err := a.o.Store.UpdateAPIToken(c.ctx(), id, func(t store.APIToken) (store.APIToken, error) {
		if t.OrgID != orgID {
			return t, notFound("token")
		}
		if t.RevokedAt.IsZero() {
			t.RevokedAt = a.o.Now().UTC()
		}
		return t, nil
	})
	if err := storeErr(err, "token"); err != nil {
		return err
	}
	c.record(orgID, "token.revoke", t.ID, "success", map[string]string{"role": t.Role, "name": t.Name})
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) revokeOrgToken(c *call) error { return a.revokeToken(c, c.org.ID) }

func (a *API) getOrgToken(c *call) error {
	t, err := a.o.Store.GetAPIToken(c.ctx(), c.r.PathValue("token"))
	if err := storeErr(err, "token"); err != nil {
		return err
	}
	if t.OrgID != c.org.ID {
		return notFound("token")
	}
	return c.reply(http.StatusOK, tokenView(t))
}

func (a *API) createPlatformToken(c *call) error {
	in, life, err := c.tokenInput(true)
	if err != nil {
		return err
	}
	t, err := c.newToken("", in.Role, in.Name, life)
	if err != nil {
		return err
	}
	c.record("", "token.create", t.ID, "success", map[string]string{"role": t.Role, "name": t.Name, "expires_at": t.ExpiresAt.Format(time.RFC3339)})
	c.w.Header().Set("Location", Prefix+"/tokens/"+t.ID)
	return c.reply(http.StatusCreated, t)
}

func (a *API) listPlatformTokens(c *call) error  { return a.listTokens(c, "") }
func (a *API) revokePlatformToken(c *call) error { return a.revokeToken(c, "") }
