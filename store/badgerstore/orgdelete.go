package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// Deleting an org. An org can have any number of members, more than one
// Badger transaction can hold (badger.ErrTxnTooBig), so DeleteOrg works in
// two steps:
//
//  1. One transaction checks the org (ErrNotFound, ErrHasChildren),
//     deletes its record and slug, and marks it:
//
//     orgdel/<oid>                      Org (as it was)
//
//  2. Batches, each its own transaction of at most deleteBatch
//     memberships (with their indexes, member index entries and the
//     sessions of their users in the org), API tokens or invitations, remove what
//     hung off it; a last transaction removes the mark.
//
// The mark makes the leftovers invisible in between: reads of a marked
// org's memberships, tokens and invitations find nothing, writes of them (and new
// sessions in the org) fail with store.ErrNotFound, and CreateOrg
// refuses its ID. If the process dies between batches, Open finishes
// every marked deletion before it serves; DeleteOrg called again for the
// org finishes it too (and answers ErrNotFound: the org is gone).
//
// Nothing can be added to a marked org while the batches run:
// CreateMembership, CreateAPIToken and CreateInvitation read the org's record, CreateSession
// the mark, so one racing with step 1 conflicts with it and retries, then
// finds the org gone. Every batch reads what it deletes, so it conflicts
// with a concurrent write of the same records (DeleteUser, UpdateUser)
// in the same way.

// deleteBatch bounds how many memberships (or API tokens, or stale index
// entries) one transaction of an org's deletion removes: each membership
// is three keys and its user's sessions in the org, far below Badger's
// limit. A variable for tests.
var deleteBatch = 1000

// afterDeleteBatch, if set (tests only), runs after each committed batch
// of an org's deletion; an error stops the deletion there, as a crash
// would.
var afterDeleteBatch func(orgID string) error

func orgDelKey(id string) []byte { return escKey("orgdel", id) }

// orgDeleting reports whether the org is marked for deletion: its record
// is gone, what hung off it is being removed.
func orgDeleting(txn *badger.Txn, oid string) (bool, error) {
	if oid == "" {
		return false, nil
	}
	_, err := txn.Get(orgDelKey(oid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	return err == nil, err
}

// mustNotBeDeleting is store.ErrNotFound if the org is marked for deletion.
func mustNotBeDeleting(txn *badger.Txn, oid string) error {
	gone, err := orgDeleting(txn, oid)
	if err != nil {
		return err
	}
	if gone {
		return fmt.Errorf("org %s is deleted: %w", oid, store.ErrNotFound)
	}
	return nil
}

func (s *Store) DeleteOrg(ctx context.Context, id string) error {
	// unfinished: the org was gone already, but marked: an earlier
	// deletion stopped between batches, and this one finishes it.
	var o store.Org
	unfinished := false
	err := s.update(ctx, func(txn *badger.Txn) error {
		unfinished = false
		var err error
		o, err = getJSON[store.Org](txn, orgKey(id))
		if errors.Is(err, store.ErrNotFound) {
			var derr error
			if unfinished, derr = orgDeleting(txn, id); derr != nil {
				return derr
			}
		}
		if err != nil {
			return err
		}
		children := false
		if err := scan(txn, []byte("org/"), true, func(item *badger.Item) error {
			c, err := decodeJSON[store.Org](item)
			if err != nil {
				return err
			}
			if c.ParentID == id {
				children = true
				return errStopScan
			}
			return nil
		}); err != nil {
			return err
		}
		if children {
			return store.ErrHasChildren
		}
		if err := setJSON(txn, orgDelKey(id), o); err != nil {
			return err
		}
		return deleteKeys(txn, orgKey(id), orgSlugKey(o.Slug))
	})
	if err != nil && !unfinished {
		return fmt.Errorf("badgerstore: delete org %s: %w", id, err)
	}
	// The org is gone for everyone now: what hung off it goes too, even if
	// the caller stops waiting (what is left at a crash or Close, the next
	// Open removes).
	start := time.Now()
	st, perr := s.purgeOrg(context.WithoutCancel(ctx), id)
	if perr != nil {
		return fmt.Errorf("badgerstore: delete org %s: the org is deleted, but not yet all it had (the next Open finishes): %w", id, perr)
	}
	if err != nil {
		return fmt.Errorf("badgerstore: delete org %s: %w", id, err)
	}
	if st.batches > 1 {
		s.log.Info("badgerstore: deleted an org", "org", id, "slug", o.Slug,
			"memberships", st.memberships, "sessions", st.sessions, "api_tokens", st.tokens, "invitations", st.invitations, "oidc_clients", st.apps,
			"transactions", st.batches+1, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// finishOrgDeletions completes the deletions a crash or a failure left
// marked (Open runs it before serving). A failure is logged and the mark
// kept: meanwhile the leftovers stay invisible, and the next Open, or
// DeleteOrg of the org, tries again.
func (s *Store) finishOrgDeletions() {
	ctx := context.Background()
	var orgs []store.Org
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scan(txn, []byte("orgdel/"), true, func(item *badger.Item) error {
			o, err := decodeJSON[store.Org](item)
			if err != nil {
				return err
			}
			orgs = append(orgs, o)
			return nil
		})
	})
	if err != nil {
		s.log.Error("badgerstore: cannot list unfinished org deletions", "err", err)
		return
	}
	for _, o := range orgs {
		s.log.Info("badgerstore: finishing the deletion of an org", "org", o.ID, "slug", o.Slug)
		start := time.Now()
		st, err := s.purgeOrg(ctx, o.ID)
		if err != nil {
			s.log.Error("badgerstore: cannot finish the deletion of an org (the next start tries again)", "org", o.ID, "err", err)
			continue
		}
		s.log.Info("badgerstore: finished the deletion of an org", "org", o.ID, "slug", o.Slug,
			"memberships", st.memberships, "sessions", st.sessions, "api_tokens", st.tokens, "invitations", st.invitations, "oidc_clients", st.apps,
			"took", time.Since(start).Round(time.Millisecond))
	}
}

type purgeStats struct {
	memberships, sessions, tokens, invitations, refresh, apps, stale, batches int
}

// purgeOrg removes everything of the org marked for deletion, in
// batches, then its mark. It is idempotent: each batch reads what is
// still there, so a run cut short at any point is resumed by the next.
func (s *Store) purgeOrg(ctx context.Context, id string) (purgeStats, error) {
	var st purgeStats
	// The memberships, with their indexes and their users' sessions here.
	err := s.purgeBatches(ctx, id, prefix("mem/o", id), &st, func(txn *badger.Txn, keys, pks [][]byte) error {
		// Read everything first: Badger sorts a transaction's pending
		// writes again for every iterator opened after them.
		type gone struct {
			uid      string
			user     *store.User
			sessions []store.Session
		}
		var dead []gone
		var stale [][]byte
		for i, pk := range pks {
			m, err := getJSON[store.Membership](txn, pk)
			if errors.Is(err, store.ErrNotFound) {
				stale = append(stale, keys[i]) // an index entry without its record
				continue
			}
			if err != nil {
				return err
			}
			u, err := getUser(txn, m.UserID)
			if err != nil {
				return err
			}
			ss, err := orgSessions(txn, m.UserID, id)
			if err != nil {
				return err
			}
			dead = append(dead, gone{m.UserID, u, ss})
		}
		for _, g := range dead {
			if err := deleteKeys(txn, memKey(g.uid, id), memOrgKey(id, g.uid)); err != nil {
				return err
			}
			if err := deleteMemberEntry(txn, id, g.uid, g.user); err != nil {
				return err
			}
			if err := deleteSessionRecords(txn, g.sessions); err != nil {
				return err
			}
			st.memberships++
			st.sessions += len(g.sessions)
		}
		st.stale += len(stale)
		return deleteKeys(txn, stale...)
	})
	if err != nil {
		return st, fmt.Errorf("memberships: %w", err)
	}
	// Member index entries left without a membership (none, unless the
	// index was stale).
	err = s.purgeBatches(ctx, id, memberPrefix(id), &st, func(txn *badger.Txn, keys, _ [][]byte) error {
		st.stale += len(keys)
		return deleteKeys(txn, keys...)
	})
	if err != nil {
		return st, fmt.Errorf("member index: %w", err)
	}
	// The API tokens and the invitations.
	if err := purgeIndexed(ctx, s, id, prefix("tokorg", id), &st, &st.tokens, deleteAPIToken); err != nil {
		return st, fmt.Errorf("api tokens: %w", err)
	}
	if err := purgeIndexed(ctx, s, id, prefix("invorg", id), &st, &st.invitations, deleteInvitation); err != nil {
		return st, fmt.Errorf("invitations: %w", err)
	}
	if err := purgeIndexed(ctx, s, id, prefix("rtforg", id), &st, &st.refresh, deleteRefreshFamily); err != nil {
		return st, fmt.Errorf("refresh token families: %w", err)
	}
	if err := purgeIndexed(ctx, s, id, prefix("apporg", id), &st, &st.apps, deleteOIDCClient); err != nil {
		return st, fmt.Errorf("oidc clients: %w", err)
	}
	// Nothing can have been added meanwhile (see the top of this file).
	if err := s.update(ctx, func(txn *badger.Txn) error {
		return txn.Delete(orgDelKey(id))
	}); err != nil {
		return st, fmt.Errorf("remove the deletion mark: %w", err)
	}
	return st, nil
}

// purgeBatches calls batch with the keys under pfx and their values, at
// most deleteBatch of them per transaction, until none is left. batch
// must delete the keys it is given.
func (s *Store) purgeBatches(ctx context.Context, orgID string, pfx []byte, st *purgeStats, batch func(txn *badger.Txn, keys, vals [][]byte) error) error {
	next := pfx
	for {
		n := 0
		var last []byte
		err := s.update(ctx, func(txn *badger.Txn) error {
			n, last = 0, nil
			var keys, vals [][]byte
			err := func() error {
				o := badger.DefaultIteratorOptions
				o.Prefix = pfx
				o.PrefetchValues = false
				it := txn.NewIterator(o)
				defer it.Close()
				for it.Seek(next); it.Valid() && len(keys) < deleteBatch; it.Next() {
					v, err := it.Item().ValueCopy(nil)
					if err != nil {
						return err
					}
					keys, vals = append(keys, it.Item().KeyCopy(nil)), append(vals, v)
				}
				return nil
			}()
			if err != nil || len(keys) == 0 {
				return err
			}
			n, last = len(keys), keys[len(keys)-1]
			return batch(txn, keys, vals)
		})
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		st.batches++
		if afterDeleteBatch != nil {
			if err := afterDeleteBatch(orgID); err != nil {
				return err
			}
		}
		if n < deleteBatch {
			return nil
		}
		// Past the keys just deleted, without walking their tombstones.
		next = append(bytes.Clone(last), 0)
	}
}

// orgSessions reads the user's sessions in the org.
func orgSessions(txn *badger.Txn, userID, orgID string) ([]store.Session, error) {
	var out []store.Session
	err := scan(txn, prefix("sessuser", userID), false, func(item *badger.Item) error {
		se, err := getIndexedItem[store.Session](txn, item)
		if err != nil {
			return err
		}
		if se.OrgID == orgID {
			out = append(out, se)
		}
		return nil
	})
	return out, err
}

// deleteSessionRecords deletes the sessions with their indexes.
func deleteSessionRecords(txn *badger.Txn, ss []store.Session) error {
	for _, se := range ss {
		if err := deleteKeys(txn, sessKey(se.ID), sessUserKey(se.UserID, se.ID), sessExpKey(se.ExpiresAt, se.ID)); err != nil {
			return err
		}
	}
	return nil
}

// purgeIndexed deletes, in batches, the records an org index prefix
// points at (counting them in n) and drops entries left dangling.
func purgeIndexed[T any](ctx context.Context, s *Store, id string, pfx []byte, st *purgeStats, n *int, del func(*badger.Txn, T) error) error {
	return s.purgeBatches(ctx, id, pfx, st, func(txn *badger.Txn, keys, pks [][]byte) error {
		var dead []T
		var stale [][]byte
		for i, pk := range pks {
			v, err := getJSON[T](txn, pk)
			if errors.Is(err, store.ErrNotFound) {
				stale = append(stale, keys[i])
				continue
			}
			if err != nil {
				return err
			}
			dead = append(dead, v)
		}
		for _, v := range dead {
			if err := del(txn, v); err != nil {
				return err
			}
			*n++
		}
		st.stale += len(stale)
		return deleteKeys(txn, stale...)
	})
}
