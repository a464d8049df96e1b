package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store"
)

// holdOrg takes a key-share lock on an org a new record belongs to, so
// that the insert is ordered against DeleteOrg (ErrNotFound if none).
func holdOrg(ctx context.Context, tx pgx.Tx, orgID string) error {
	if orgID == "" {
		return nil
	}
	var one int
	return tx.QueryRow(ctx, "SELECT 1 FROM orgs WHERE id = $1 FOR KEY SHARE", orgID).Scan(&one)
}

// insert writes a new record that belongs to an org.
func (s *Store) insert(ctx context.Context, op, orgID, query string, args ...any) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := holdOrg(ctx, tx, orgID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, query, args...)
		return err
	})
	return wrap(op, err)
}

// remove deletes one row (ErrNotFound if none).
func (s *Store) remove(ctx context.Context, op, query string, args ...any) error {
	tag, err := s.exec(ctx, op, query, args...)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("pgstore: %s: %w", op, store.ErrNotFound)
	}
	return err
}

// --- API tokens ---

func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	if t.ID == "" {
		return errors.New("pgstore: create api token: id is required")
	}
	doc, err := docOf(t)
	if err != nil {
		return err
	}
	return s.insert(ctx, "create api token "+t.ID, t.OrgID, "INSERT INTO api_tokens (id, org_id, created_by, created_at, doc) VALUES ($1, $2, $3, $4, $5)",
		t.ID, nullable(t.OrgID), nullable(t.CreatedBy), ts(t.CreatedAt), doc)
}

func (s *Store) GetAPIToken(ctx context.Context, id string) (store.APIToken, error) {
	return one[store.APIToken](ctx, s, "get api token", "SELECT doc FROM api_tokens WHERE id = $1", id)
}

func (s *Store) ListAPITokens(ctx context.Context, orgID string) ([]store.APIToken, error) {
	return list[store.APIToken](ctx, s, "list api tokens", "SELECT doc FROM api_tokens WHERE org_id IS NOT DISTINCT FROM $1 ORDER BY created_at, id", nullable(orgID))
}

func (s *Store) UpdateAPIToken(ctx context.Context, id string, fn func(store.APIToken) (store.APIToken, error)) (store.APIToken, error) {
	return update(ctx, s, "update api token", "SELECT doc FROM api_tokens WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(_ pgx.Tx, old, next store.APIToken) error { return store.CheckAPITokenUpdate(old, next) },
		func(tx pgx.Tx, next store.APIToken) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE api_tokens SET created_at = $2, doc = $3 WHERE id = $1", id, ts(next.CreatedAt), doc)
			return err
		})
}

func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	return s.remove(ctx, "delete api token "+id, "DELETE FROM api_tokens WHERE id = $1", id)
}

// --- invitations ---

func (s *Store) CreateInvitation(ctx context.Context, inv store.Invitation) error {
	if inv.ID == "" || inv.OrgID == "" || inv.Hash == "" || inv.Email == "" {
		return errors.New("pgstore: create invitation: id, org, hash and email are required")
	}
	doc, err := docOf(inv)
	if err != nil {
		return err
	}
	return s.insert(ctx, "create invitation "+inv.ID, inv.OrgID,
		"INSERT INTO invitations (id, org_id, email, hash, created_by, created_at, expires_at, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
		inv.ID, inv.OrgID, inv.Email, inv.Hash, nullable(inv.CreatedBy), ts(inv.CreatedAt), ts(inv.ExpiresAt), doc)
}

func (s *Store) GetInvitation(ctx context.Context, id string) (store.Invitation, error) {
	return one[store.Invitation](ctx, s, "get invitation", "SELECT doc FROM invitations WHERE id = $1", id)
}

func (s *Store) GetInvitationByHash(ctx context.Context, hash string) (store.Invitation, error) {
	return one[store.Invitation](ctx, s, "get invitation", "SELECT doc FROM invitations WHERE hash = $1", hash)
}

func (s *Store) ListInvitations(ctx context.Context, orgID string) ([]store.Invitation, error) {
	return list[store.Invitation](ctx, s, "list invitations", "SELECT doc FROM invitations WHERE org_id = $1 ORDER BY created_at, id", orgID)
}

func (s *Store) UpdateInvitation(ctx context.Context, id string, fn func(store.Invitation) (store.Invitation, error)) (store.Invitation, error) {
	return update(ctx, s, "update invitation", "SELECT doc FROM invitations WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(_ pgx.Tx, old, next store.Invitation) error { return store.CheckInvitationUpdate(old, next) },
		func(tx pgx.Tx, next store.Invitation) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE invitations SET hash = $2, created_at = $3, expires_at = $4, doc = $5 WHERE id = $1",
				id, next.Hash, ts(next.CreatedAt), ts(next.ExpiresAt), doc)
			return err
		})
}

func (s *Store) DeleteInvitation(ctx context.Context, id string) error {
	return s.remove(ctx, "delete invitation "+id, "DELETE FROM invitations WHERE id = $1", id)
}

func (s *Store) TakeInvitation(ctx context.Context, hash string, now time.Time) (store.Invitation, error) {
	return one[store.Invitation](ctx, s, "take invitation", "DELETE FROM invitations WHERE hash = $1 AND expires_at > $2 RETURNING doc", hash, ts(now))
}

// --- OIDC clients ---

func (s *Store) CreateOIDCClient(ctx context.Context, c store.OIDCClient) error {
	if c.ID == "" {
		return errors.New("pgstore: create oidc client: id is required")
	}
	doc, err := docOf(c)
	if err != nil {
		return err
	}
	return s.insert(ctx, "create oidc client "+c.ID, c.OrgID, "INSERT INTO oidc_clients (id, org_id, doc) VALUES ($1, $2, $3)", c.ID, nullable(c.OrgID), doc)
}

func (s *Store) GetOIDCClient(ctx context.Context, id string) (store.OIDCClient, error) {
	return one[store.OIDCClient](ctx, s, "get oidc client", "SELECT doc FROM oidc_clients WHERE id = $1", id)
}

func (s *Store) ListOIDCClients(ctx context.Context) ([]store.OIDCClient, error) {
	return list[store.OIDCClient](ctx, s, "list oidc clients", "SELECT doc FROM oidc_clients ORDER BY id")
}

func (s *Store) UpdateOIDCClient(ctx context.Context, id string, fn func(store.OIDCClient) (store.OIDCClient, error)) (store.OIDCClient, error) {
	return update(ctx, s, "update oidc client", "SELECT doc FROM oidc_clients WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(_ pgx.Tx, old, next store.OIDCClient) error { return store.CheckOIDCClientUpdate(old, next) },
		func(tx pgx.Tx, next store.OIDCClient) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE oidc_clients SET doc = $2 WHERE id = $1", id, doc)
			return err
		})
}

func (s *Store) DeleteOIDCClient(ctx context.Context, id string) error {
	return s.remove(ctx, "delete oidc client "+id, "DELETE FROM oidc_clients WHERE id = $1", id)
}

// --- refresh families ---

func (s *Store) CreateRefreshFamily(ctx context.Context, f store.RefreshFamily) error {
	if f.ID == "" || f.ClientID == "" || f.UserID == "" || f.OrgID == "" {
		return errors.New("pgstore: create refresh family: id, client, user and org are required")
	}
	doc, err := docOf(f)
	if err != nil {
		return err
	}
	return s.insert(ctx, "create refresh family", f.OrgID,
		"INSERT INTO refresh_families (id, user_id, org_id, session_id, expires_at, doc) VALUES ($1, $2, $3, $4, $5, $6)",
		f.ID, f.UserID, f.OrgID, nullable(f.SessionID), ts(f.ExpiresAt), doc)
}

func (s *Store) GetRefreshFamily(ctx context.Context, id string) (store.RefreshFamily, error) {
	return one[store.RefreshFamily](ctx, s, "get refresh family", "SELECT doc FROM refresh_families WHERE id = $1", id)
}

func (s *Store) UpdateRefreshFamily(ctx context.Context, id string, fn func(store.RefreshFamily) (store.RefreshFamily, error)) (store.RefreshFamily, error) {
	return update(ctx, s, "update refresh family", "SELECT doc FROM refresh_families WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(_ pgx.Tx, old, next store.RefreshFamily) error { return store.CheckRefreshFamilyUpdate(old, next) },
		func(tx pgx.Tx, next store.RefreshFamily) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE refresh_families SET doc = $2 WHERE id = $1", id, doc)
			return err
		})
}

func (s *Store) ListRefreshFamiliesBySession(ctx context.Context, sessionID string) ([]store.RefreshFamily, error) {
	return list[store.RefreshFamily](ctx, s, "list refresh families", "SELECT doc FROM refresh_families WHERE session_id = $1 ORDER BY id", sessionID)
}

func (s *Store) DeleteExpiredRefreshFamilies(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.exec(ctx, "delete expired refresh families", "DELETE FROM refresh_families WHERE expires_at < $1", ts(before))
	return int(tag.RowsAffected()), err
}
