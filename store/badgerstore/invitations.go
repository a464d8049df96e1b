package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// Invitations:
//
//	inv/<id>                          Invitation
//	invorg/<oid>/<created><id>        -> inv/<id>
//	invhash/<hash>                    -> inv/<id>
//	invoe/<oid>/<email>               -> inv/<id>  (one per org and address)
//	invuser/<uid>/<id>                -> inv/<id>  (only with a CreatedBy)

func invKey(id string) []byte { return escKey("inv", id) }

func invOrgKey(oid string, created time.Time, id string) []byte {
	return append(appendTime(prefix("invorg", oid), created), id...)
}

func invHashKey(hash string) []byte        { return escKey("invhash", hash) }
func invEmailKey(oid, email string) []byte { return escKey("invoe", oid, email) }
func invUserKey(uid, id string) []byte     { return escKey("invuser", uid, id) }

func (s *Store) CreateInvitation(ctx context.Context, inv store.Invitation) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if inv.ID == "" || inv.OrgID == "" || inv.Hash == "" || inv.Email == "" {
			return errors.New("id, org, hash and email are required")
		}
		pk := invKey(inv.ID)
		if err := mustNotExist(txn, pk, "id"); err != nil {
			return err
		}
		if err := mustNotExist(txn, invHashKey(inv.Hash), "hash"); err != nil {
			return err
		}
		if err := mustNotExist(txn, invEmailKey(inv.OrgID, inv.Email), "pending invitation for "+inv.Email); err != nil {
			return err
		}
		// Like a token, an invitation outlives neither its org nor its
		// maker.
		if err := holdOwner(txn, orgKey(inv.OrgID), "org "+inv.OrgID); err != nil {
			return err
		}
		if inv.CreatedBy != "" {
			if err := holdOwner(txn, userKey(inv.CreatedBy), "creator "+inv.CreatedBy); err != nil {
				return err
			}
		}
		for _, k := range invIndexes(inv) {
			if err := txn.Set(k, pk); err != nil {
				return err
			}
		}
		return setJSON(txn, pk, inv)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create invitation %s: %w", inv.ID, err)
	}
	return nil
}

func invIndexes(inv store.Invitation) [][]byte {
	keys := [][]byte{invOrgKey(inv.OrgID, inv.CreatedAt, inv.ID), invHashKey(inv.Hash), invEmailKey(inv.OrgID, inv.Email)}
	if inv.CreatedBy != "" {
		keys = append(keys, invUserKey(inv.CreatedBy, inv.ID))
	}
	return keys
}

func (s *Store) GetInvitation(ctx context.Context, id string) (store.Invitation, error) {
	return getLive(ctx, s, "get invitation "+id, invKey(id), func(inv store.Invitation) string { return inv.OrgID })
}

func (s *Store) GetInvitationByHash(ctx context.Context, hash string) (store.Invitation, error) {
	var inv store.Invitation
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		if inv, err = invByHash(txn, hash); err != nil {
			return err
		}
		return mustNotBeDeleting(txn, inv.OrgID)
	})
	if err != nil {
		return store.Invitation{}, fmt.Errorf("badgerstore: get invitation by hash: %w", err)
	}
	return inv, nil
}

func invByHash(txn *badger.Txn, hash string) (store.Invitation, error) {
	item, err := txn.Get(invHashKey(hash))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return store.Invitation{}, store.ErrNotFound
	}
	if err != nil {
		return store.Invitation{}, err
	}
	return getIndexedItem[store.Invitation](txn, item)
}

func (s *Store) ListInvitations(ctx context.Context, orgID string) ([]store.Invitation, error) {
	out := []store.Invitation{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if gone, err := orgDeleting(txn, orgID); err != nil || gone {
			return err
		}
		return scan(txn, prefix("invorg", orgID), true, func(item *badger.Item) error {
			inv, err := getIndexedItem[store.Invitation](txn, item)
			out = append(out, inv)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list invitations of %q: %w", orgID, err)
	}
	return out, nil
}

func (s *Store) UpdateInvitation(ctx context.Context, id string, fn func(store.Invitation) (store.Invitation, error)) (store.Invitation, error) {
	return modify(ctx, s, "update invitation "+id, invKey(id), fn, func(txn *badger.Txn, old, next store.Invitation) error {
		if err := store.CheckInvitationUpdate(old, next); err != nil {
			return err
		}
		if err := mustNotBeDeleting(txn, old.OrgID); err != nil {
			return err
		}
		pk := invKey(id)
		if err := moveIndex(txn, invHashKey(old.Hash), invHashKey(next.Hash), pk, "hash"); err != nil {
			return err
		}
		return moveIndex(txn, invOrgKey(old.OrgID, old.CreatedAt, id), invOrgKey(next.OrgID, next.CreatedAt, id), pk, "")
	})
}

func (s *Store) DeleteInvitation(ctx context.Context, id string) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		inv, err := getJSON[store.Invitation](txn, invKey(id))
		if err != nil {
			return err
		}
		if err := mustNotBeDeleting(txn, inv.OrgID); err != nil {
			return err
		}
		return deleteInvitation(txn, inv)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete invitation %s: %w", id, err)
	}
	return nil
}

func (s *Store) TakeInvitation(ctx context.Context, hash string, now time.Time) (store.Invitation, error) {
	var inv store.Invitation
	err := s.update(ctx, func(txn *badger.Txn) error {
		var err error
		if inv, err = invByHash(txn, hash); err != nil {
			return err
		}
		if err := mustNotBeDeleting(txn, inv.OrgID); err != nil {
			return err
		}
		if !now.Before(inv.ExpiresAt) {
			return store.ErrNotFound
		}
		return deleteInvitation(txn, inv)
	})
	if err != nil {
		return store.Invitation{}, fmt.Errorf("badgerstore: take invitation: %w", err)
	}
	return inv, nil
}

func deleteInvitation(txn *badger.Txn, inv store.Invitation) error {
	return deleteKeys(txn, append(invIndexes(inv), invKey(inv.ID))...)
}
