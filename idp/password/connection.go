package password

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/store"
)

// Type is the connection type name in configs and sessions.
const Type = "password"

// pool checks members' passwords kept on their memberships in the store.
type pool struct{ st store.Store }

var _ connection.Password = pool{}

// Open returns the org's password pool. It has no settings.
func Open(_ context.Context, _ json.RawMessage, deps connection.Deps) (any, error) {
	return pool{st: deps.Store}, nil
}

// CheckPassword verifies a member's password. Every failure costs one
// hash verification, so timing does not tell which accounts exist; the
// error's message says why, for the log only.
func (p pool) CheckPassword(ctx context.Context, orgID, email, pw string) (connection.Identity, error) {
	u, hash, reason, err := p.member(ctx, orgID, email)
	if err != nil {
		return connection.Identity{}, connection.Errorf(connection.KindInternal, "password: %w", err)
	}
	ok, err := Verify(ctx, hash, pw)
	if err != nil {
		return connection.Identity{}, connection.Errorf(connection.KindInternal, "password: %w", err)
	}
	if reason == "" && !ok {
		reason = "wrong password"
	}
	if reason != "" {
		return connection.Identity{}, connection.Errorf(connection.KindBadCredentials, "%s", reason)
	}
	return connection.Identity{UserID: u.ID, Email: u.Email, Name: u.Name, EmailVerified: true}, nil
}

// member returns the user and their hash, or why there is none; err is
// a store failure (not the person's fault).
func (p pool) member(ctx context.Context, orgID, email string) (store.User, string, string, error) {
	if strings.Count(email, "@") != 1 || len(email) > 254 {
		return store.User{}, "", "malformed email", nil
	}
	u, err := p.st.GetUserByEmail(ctx, email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return u, "", "unknown user", nil
	case err != nil:
		return u, "", "", err
	case u.Disabled:
		return u, "", "user disabled", nil
	}
	m, err := p.st.GetMembership(ctx, u.ID, orgID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return u, "", "not a member of this org", nil
	case err != nil:
		return u, "", "", err
	case m.Disabled:
		return u, "", "membership disabled", nil
	case m.PasswordHash == "":
		return u, "", "member has no password", nil
	}
	return u, m.PasswordHash, "", nil
}
