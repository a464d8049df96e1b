package admin

import (
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// SessionView is a session as the API shows it (never its cookie).
type SessionView struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	OrgID      string    `json:"org_id"`
	Connection string    `json:"connection"`
	MFA        bool      `json:"mfa"`
	ClientAddr string    `json:"client_addr,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	// Current: the session this request came with.
	Current bool `json:"current"`
}

type sessionList struct {
	Items []SessionView `json:"items"`
}

// liveSessions lists the user's sessions that still authenticate,
// in orgID ("": every org), newest first.
func (a *API) liveSessions(c *call, uid, orgID string) ([]store.Session, error) {
	ss, err := a.o.Store.ListSessionsByUser(c.ctx(), uid)
	if err != nil {
		return nil, fmt.Errorf("admin: list sessions: %w", err)
	}
	now := a.o.Now()
	ss = slices.DeleteFunc(ss, func(s store.Session) bool {
		return (orgID != "" && s.OrgID != orgID) || !s.RevokedAt.IsZero() || !now.Before(s.ExpiresAt)
	})
	slices.SortFunc(ss, func(x, y store.Session) int { return y.CreatedAt.Compare(x.CreatedAt) })
	return ss, nil
}

func (c *call) sessionViews(ss []store.Session) sessionList {
	out := sessionList{Items: make([]SessionView, 0, len(ss))}
	for _, s := range ss {
		out.Items = append(out.Items, SessionView{ID: s.ID, UserID: s.UserID, OrgID: s.OrgID, Connection: s.Connection, MFA: s.MFA,
			ClientAddr: s.ClientAddr, UserAgent: s.UserAgent, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, LastSeenAt: s.LastSeenAt,
			Current: c.p != nil && c.p.SessionID == s.ID})
	}
	return out
}

func (a *API) listUserSessions(c *call) error {
	if _, _, err := c.member(); err != nil {
		return err
	}
	ss, err := a.liveSessions(c, c.r.PathValue("user"), c.org.ID)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, c.sessionViews(ss))
}

// revokeSessions ends the user's sessions in orgID now, answering how
// many there were.
func (a *API) revokeSessions(c *call, uid, orgID string) (int, error) {
	ss, err := a.liveSessions(c, uid, orgID)
	if err != nil {
		return 0, err
	}
	for _, s := range ss {
		if err := a.o.Sessions.Revoke(c.ctx(), s.ID); err != nil {
			return 0, fmt.Errorf("admin: revoke session: %w", err)
		}
	}
	return len(ss), nil
}

func (a *API) revokeUserSessions(c *call) error {
	u, _, err := c.member()
	if err != nil {
		return err
	}
	n, err := a.revokeSessions(c, u.ID, c.org.ID)
	if err != nil {
		return err
	}
	c.record(c.org.ID, "session.revoke", u.ID, "success", map[string]string{"sessions": fmt.Sprint(n), "reason": "revoked by an admin"})
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// revokeOrgSession ends one session of the org.
func (a *API) revokeOrgSession(c *call) error {
	sid := c.r.PathValue("session")
	s, err := a.o.Store.GetSession(c.ctx(), sid)
	if err := storeErr(err, "session"); err != nil {
		return err
	}
	if s.OrgID != c.org.ID {
		return notFound("session")
	}
	if err := a.o.Sessions.Revoke(c.ctx(), sid); err != nil {
		return fmt.Errorf("admin: revoke session: %w", err)
	}
	c.record(c.org.ID, "session.revoke", s.UserID, "success", map[string]string{"session": sid, "reason": "revoked by an admin"})
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// MeView is the caller.
type MeView struct {
	Kind     string `json:"kind"` // "session" or "token"
	UserID   string `json:"user_id,omitempty"`
	Email    string `json:"email,omitempty"`
	OrgID    string `json:"org_id,omitempty"`
	Role     string `json:"role"`
	Platform bool   `json:"platform_admin"`
	TokenID  string `json:"token_id,omitempty"`
	// TokenName and ExpiresAt describe the calling token.
	TokenName string    `json:"token_name,omitempty"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
}

func (a *API) me(c *call) error {
	v := MeView{Kind: "session", UserID: c.p.UserID, Email: c.p.Email, OrgID: c.p.OrgID, Role: c.p.Role, Platform: c.p.Platform}
	if c.p.TokenID != "" {
		v.Kind, v.TokenID = "token", c.p.TokenID
		if t, err := a.o.Store.GetAPIToken(c.ctx(), c.p.TokenID); err == nil {
			v.TokenName, v.ExpiresAt = t.Name, t.ExpiresAt
		}
	}
	if v.Role == "" {
		v.Role = "member"
	}
	return c.reply(http.StatusOK, v)
}

// selfSessions refuses a token: it has no sessions of its own.
func (c *call) selfSessions() error {
	if c.p.TokenID != "" || c.p.UserID == "" {
		return forbidden("An API token has no sessions; sign in to manage yours.")
	}
	return nil
}

func (a *API) mySessions(c *call) error {
	if err := c.selfSessions(); err != nil {
		return err
	}
	// Only this org's: another org's sessions of the same person are not
	// this org's to see (its admins may have made the account here).
	ss, err := a.liveSessions(c, c.p.UserID, c.p.OrgID)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, c.sessionViews(ss))
}

func (a *API) revokeMySession(c *call) error {
	if err := c.selfSessions(); err != nil {
		return err
	}
	sid := c.r.PathValue("session")
	s, err := a.o.Store.GetSession(c.ctx(), sid)
	if err := storeErr(err, "session"); err != nil {
		return err
	}
	if s.UserID != c.p.UserID || s.OrgID != c.p.OrgID {
		return notFound("session")
	}
	if err := a.o.Sessions.Revoke(c.ctx(), sid); err != nil {
		return fmt.Errorf("admin: revoke session: %w", err)
	}
	c.record(s.OrgID, "session.revoke", s.UserID, "success", map[string]string{"session": sid, "reason": "revoked by its owner"})
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
