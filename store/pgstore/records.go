package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store"
)

// update is the compare-and-swap every Update* is: the record locked,
// fn on it (its error returned unchanged), check on old and new, then
// write with its columns.
func update[T any](ctx context.Context, s *Store, op, sel string, key []any, fn func(T) (T, error), check func(tx pgx.Tx, old, next T) error, write func(tx pgx.Tx, next T) error) (T, error) {
	var out T
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var b []byte
		if err := tx.QueryRow(ctx, sel, key...).Scan(&b); err != nil {
			return err
		}
		// Two decodes of one read: fn gets a copy of its own to change.
		var old, cp T
		if err := json.Unmarshal(b, &old); err != nil {
			return err
		}
		if err := json.Unmarshal(b, &cp); err != nil {
			return err
		}
		next, err := fn(cp)
		if err != nil {
			return fnError{err}
		}
		if check != nil {
			if err := check(tx, old, next); err != nil {
				return err
			}
		}
		if err := write(tx, next); err != nil {
			return err
		}
		out = next
		return nil
	})
	if err != nil {
		var fe fnError
		if errors.As(err, &fe) {
			return out, fe.err
		}
		return out, wrap(op, err)
	}
	return out, nil
}

// lockUser serializes writes about one user (there may be no row yet).
func lockUser(ctx context.Context, tx pgx.Tx, userID string) error {
	_, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(1, hashtext($1))", userID)
	return err
}

// --- orgs ---

func (s *Store) CreateOrg(ctx context.Context, o store.Org) error {
	if o.ID == "" || o.Slug == "" {
		return fmt.Errorf("pgstore: create org: id and slug are required")
	}
	doc, err := docOf(o)
	if err != nil {
		return err
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if o.ParentID != "" {
			// Ordered against DeleteOrg's check for children.
			if _, err := tx.Exec(ctx, "SELECT 1 FROM orgs WHERE id = $1 FOR KEY SHARE", o.ParentID); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "INSERT INTO orgs (id, slug, parent_id, doc) VALUES ($1, $2, $3, $4)", o.ID, o.Slug, nullable(o.ParentID), doc)
		return err
	})
	return wrap("create org "+o.ID, err)
}

func (s *Store) GetOrg(ctx context.Context, id string) (store.Org, error) {
	return one[store.Org](ctx, s, "get org "+id, "SELECT doc FROM orgs WHERE id = $1", id)
}

func (s *Store) GetOrgBySlug(ctx context.Context, slug string) (store.Org, error) {
	return one[store.Org](ctx, s, "get org by slug "+slug, "SELECT doc FROM orgs WHERE slug = $1", slug)
}

func (s *Store) ListOrgs(ctx context.Context) ([]store.Org, error) {
	return list[store.Org](ctx, s, "list orgs", "SELECT doc FROM orgs ORDER BY id")
}

func (s *Store) UpdateOrg(ctx context.Context, id string, fn func(store.Org) (store.Org, error)) (store.Org, error) {
	return update(ctx, s, "update org "+id, "SELECT doc FROM orgs WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(_ pgx.Tx, old, next store.Org) error {
			if next.ID != old.ID {
				return fmt.Errorf("id changed to %q", next.ID)
			}
			if next.Slug == "" {
				return errors.New("slug is required")
			}
			return nil
		},
		func(tx pgx.Tx, next store.Org) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE orgs SET slug = $2, parent_id = $3, doc = $4 WHERE id = $1", id, next.Slug, nullable(next.ParentID), doc)
			return err
		})
}

func (s *Store) DeleteOrg(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, "SELECT 1 FROM orgs WHERE id = $1 FOR UPDATE", id).Scan(&one); err != nil {
			return err
		}
		var kids bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM orgs WHERE parent_id = $1)", id).Scan(&kids); err != nil {
			return err
		}
		if kids {
			return store.ErrHasChildren
		}
		if _, err := tx.Exec(ctx, `DELETE FROM sessions s USING memberships m
			WHERE m.org_id = $1 AND s.user_id = m.user_id AND s.org_id = $1`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM orgs WHERE id = $1", id)
		return err
	})
	return wrap("delete org "+id, err)
}

// --- users ---

// userCols are a user's indexed columns (lowercased as Go does).
func userCols(u store.User) (email, name string) {
	return strings.ToLower(u.Email), strings.ToLower(u.Name)
}

func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	if u.ID == "" || u.Email == "" {
		return fmt.Errorf("pgstore: create user: id and email are required")
	}
	doc, err := docOf(u)
	if err != nil {
		return err
	}
	email, name := userCols(u)
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, u.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO users (id, email_lower, name_lower, doc) VALUES ($1, $2, $3, $4)", u.ID, email, name, doc); err != nil {
			return err
		}
		// Memberships made before the user are listed without it.
		_, err := tx.Exec(ctx, "UPDATE memberships SET member_email = $2, member_name = $3 WHERE user_id = $1", u.ID, email, name)
		return err
	})
	return wrap("create user "+u.ID, err)
}

func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	return one[store.User](ctx, s, "get user "+id, "SELECT doc FROM users WHERE id = $1", id)
}

func (s *Store) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	return one[store.User](ctx, s, "get user by email", "SELECT doc FROM users WHERE email_lower = $1", strings.ToLower(email))
}

func (s *Store) UpdateUser(ctx context.Context, id string, fn func(store.User) (store.User, error)) (store.User, error) {
	return update(ctx, s, "update user "+id, "SELECT doc FROM users WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(tx pgx.Tx, old, next store.User) error {
			if next.ID != old.ID {
				return fmt.Errorf("id changed to %q", next.ID)
			}
			if next.Email == "" {
				return errors.New("email is required")
			}
			return nil
		},
		func(tx pgx.Tx, next store.User) error {
			if err := lockUser(ctx, tx, id); err != nil {
				return err
			}
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			email, name := userCols(next)
			if _, err := tx.Exec(ctx, "UPDATE users SET email_lower = $2, name_lower = $3, doc = $4 WHERE id = $1", id, email, name, doc); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE memberships SET member_email = $2, member_name = $3 WHERE user_id = $1 AND (member_email <> $2 OR member_name <> $3)", id, email, name)
			return err
		})
}

func (s *Store) DeleteUser(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, id); err != nil {
			return err
		}
		var one int
		if err := tx.QueryRow(ctx, "SELECT 1 FROM users WHERE id = $1 FOR UPDATE", id).Scan(&one); err != nil {
			return err
		}
		prefix := store.UserBlobKey(id)
		for _, q := range []string{
			"DELETE FROM sessions WHERE user_id = $1",
			"DELETE FROM memberships WHERE user_id = $1",
			"DELETE FROM refresh_families WHERE user_id = $1",
			"DELETE FROM api_tokens WHERE created_by = $1",
			"DELETE FROM invitations WHERE created_by = $1",
			"DELETE FROM users WHERE id = $1",
		} {
			if _, err := tx.Exec(ctx, q, id); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, "DELETE FROM blobs WHERE key = $1 OR (key >= $2 AND key < $3)", prefix, prefix+"/", prefix+"0")
		return err
	})
	return wrap("delete user "+id, err)
}

// --- memberships ---

func (s *Store) CreateMembership(ctx context.Context, m store.Membership) error {
	if m.UserID == "" || m.OrgID == "" {
		return fmt.Errorf("pgstore: create membership: user and org are required")
	}
	doc, err := docOf(m)
	if err != nil {
		return err
	}
	err = s.tx(ctx, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, m.UserID); err != nil {
			return err
		}
		var one int
		if err := tx.QueryRow(ctx, "SELECT 1 FROM orgs WHERE id = $1 FOR KEY SHARE", m.OrgID).Scan(&one); err != nil {
			return err
		}
		var email, name string
		err := tx.QueryRow(ctx, "SELECT email_lower, name_lower FROM users WHERE id = $1", m.UserID).Scan(&email, &name)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO memberships (user_id, org_id, member_email, member_name, doc) VALUES ($1, $2, $3, $4, $5)",
			m.UserID, m.OrgID, email, name, doc)
		return err
	})
	return wrap("create membership "+m.UserID+" "+m.OrgID, err)
}

func (s *Store) GetMembership(ctx context.Context, userID, orgID string) (store.Membership, error) {
	return one[store.Membership](ctx, s, "get membership", "SELECT doc FROM memberships WHERE user_id = $1 AND org_id = $2", userID, orgID)
}

func (s *Store) ListMembershipsByUser(ctx context.Context, userID string) ([]store.Membership, error) {
	return list[store.Membership](ctx, s, "list memberships", "SELECT doc FROM memberships WHERE user_id = $1 ORDER BY org_id", userID)
}

func (s *Store) ListMembershipsByOrg(ctx context.Context, orgID string) ([]store.Membership, error) {
	return list[store.Membership](ctx, s, "list memberships", "SELECT doc FROM memberships WHERE org_id = $1 ORDER BY user_id", orgID)
}

func (s *Store) UpdateMembership(ctx context.Context, userID, orgID string, fn func(store.Membership) (store.Membership, error)) (store.Membership, error) {
	return update(ctx, s, "update membership", "SELECT doc FROM memberships WHERE user_id = $1 AND org_id = $2 FOR UPDATE", []any{userID, orgID}, fn,
		func(_ pgx.Tx, old, next store.Membership) error {
			if next.UserID != old.UserID {
				return fmt.Errorf("user changed to %q", next.UserID)
			}
			if next.OrgID != old.OrgID {
				return fmt.Errorf("org changed to %q", next.OrgID)
			}
			return nil
		},
		func(tx pgx.Tx, next store.Membership) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE memberships SET doc = $3 WHERE user_id = $1 AND org_id = $2", userID, orgID, doc)
			return err
		})
}

func (s *Store) DeleteMembership(ctx context.Context, userID, orgID string) error {
	err := s.tx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "DELETE FROM memberships WHERE user_id = $1 AND org_id = $2", userID, orgID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return pgx.ErrNoRows
		}
		_, err = tx.Exec(ctx, "DELETE FROM sessions WHERE user_id = $1 AND org_id = $2", userID, orgID)
		return err
	})
	return wrap("delete membership", err)
}

func (s *Store) ListMembers(ctx context.Context, q store.MemberQuery) ([]store.Member, error) {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	search := strings.ToLower(q.Search)
	rows, err := s.pool.Query(ctx, `SELECT m.doc, u.doc FROM memberships m LEFT JOIN users u ON u.id = m.user_id
		WHERE m.org_id = $1 AND (m.member_email, m.user_id) > ($2::k, $3::k)
		  AND ($4 = '' OR strpos(m.member_email, $4) > 0 OR strpos(m.member_name, $4) > 0)
		ORDER BY m.member_email, m.user_id LIMIT $5`, q.OrgID, strings.ToLower(q.AfterEmail), q.AfterID, search, limit)
	if err != nil {
		return nil, wrap("list members", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Member, error) {
		var md, ud []byte
		var m store.Member
		if err := r.Scan(&md, &ud); err != nil {
			return m, err
		}
		if err := json.Unmarshal(md, &m.Membership); err != nil {
			return m, err
		}
		if ud == nil {
			m.User = store.User{ID: m.Membership.UserID}
			return m, nil
		}
		return m, json.Unmarshal(ud, &m.User)
	})
	return out, wrap("list members", err)
}

// --- sessions ---

func sessionCols(ss store.Session) (expires time.Time, revoked any) {
	if !ss.RevokedAt.IsZero() {
		revoked = ts(ss.RevokedAt)
	}
	return ts(ss.ExpiresAt), revoked
}

func (s *Store) CreateSession(ctx context.Context, ss store.Session) error {
	if ss.ID == "" || ss.UserID == "" {
		return fmt.Errorf("pgstore: create session: id and user are required")
	}
	doc, err := docOf(ss)
	if err != nil {
		return err
	}
	exp, rev := sessionCols(ss)
	_, err = s.exec(ctx, "create session", "INSERT INTO sessions (id, user_id, org_id, expires_at, revoked_at, doc) VALUES ($1, $2, $3, $4, $5, $6)",
		ss.ID, ss.UserID, ss.OrgID, exp, rev, doc)
	return err
}

func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	return one[store.Session](ctx, s, "get session", "SELECT doc FROM sessions WHERE id = $1", id)
}

func (s *Store) UpdateSession(ctx context.Context, id string, fn func(store.Session) (store.Session, error)) (store.Session, error) {
	return update(ctx, s, "update session", "SELECT doc FROM sessions WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(_ pgx.Tx, old, next store.Session) error {
			if next.ID != old.ID {
				return fmt.Errorf("id changed to %q", next.ID)
			}
			if next.UserID == "" {
				return errors.New("user is required")
			}
			return nil
		},
		func(tx pgx.Tx, next store.Session) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			exp, rev := sessionCols(next)
			_, err = tx.Exec(ctx, "UPDATE sessions SET user_id = $2, org_id = $3, expires_at = $4, revoked_at = $5, doc = $6 WHERE id = $1",
				id, next.UserID, next.OrgID, exp, rev, doc)
			return err
		})
}

func (s *Store) ListSessionsByUser(ctx context.Context, userID string) ([]store.Session, error) {
	return list[store.Session](ctx, s, "list sessions", "SELECT doc FROM sessions WHERE user_id = $1 ORDER BY id", userID)
}

func (s *Store) DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		tag, err := s.exec(ctx, "delete expired sessions",
			"DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at < $1 LIMIT 5000)", ts(before))
		if err != nil {
			return total, err
		}
		total += int(tag.RowsAffected())
		if tag.RowsAffected() < 5000 {
			return total, nil
		}
	}
}

// --- signing keys ---

func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	if k.ID == "" {
		return fmt.Errorf("pgstore: create signing key: id is required")
	}
	doc, err := docOf(k)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, "create signing key", "INSERT INTO signing_keys (id, doc) VALUES ($1, $2)", k.ID, doc)
	return err
}

func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	return list[store.SigningKey](ctx, s, "list signing keys", "SELECT doc FROM signing_keys ORDER BY id")
}

func (s *Store) UpdateSigningKey(ctx context.Context, id string, fn func(store.SigningKey) (store.SigningKey, error)) (store.SigningKey, error) {
	return update(ctx, s, "update signing key", "SELECT doc FROM signing_keys WHERE id = $1 FOR UPDATE", []any{id}, fn,
		func(_ pgx.Tx, old, next store.SigningKey) error {
			if next.ID != old.ID {
				return fmt.Errorf("id changed to %q", next.ID)
			}
			return nil
		},
		func(tx pgx.Tx, next store.SigningKey) error {
			doc, err := docOf(next)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, "UPDATE signing_keys SET doc = $2 WHERE id = $1", id, doc)
			return err
		})
}

func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	tag, err := s.exec(ctx, "delete signing key", "DELETE FROM signing_keys WHERE id = $1", id)
	if err == nil && tag.RowsAffected() == 0 {
		return fmt.Errorf("pgstore: delete signing key %s: %w", id, store.ErrNotFound)
	}
	return err
}
