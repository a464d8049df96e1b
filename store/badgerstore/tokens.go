package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// API tokens:
//
//	tok/<id>                          APIToken
//	tokorg/<oid>/<created><id>        -> tok/<id>  (oid "" : the platform's)
//	tokuser/<uid>/<id>                -> tok/<id>  (only with a CreatedBy)
//
// In tokorg the id is last and left as is, so that key order is
// ListAPITokens order: CreatedAt, then ID.

func tokKey(id string) []byte { return escKey("tok", id) }

func tokOrgKey(oid string, created time.Time, id string) []byte {
	return append(appendTime(prefix("tokorg", oid), created), id...)
}

func tokUserKey(uid, id string) []byte { return escKey("tokuser", uid, id) }

func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if t.ID == "" {
			return errors.New("id is required")
		}
		pk := tokKey(t.ID)
		if err := mustNotExist(txn, pk, "id"); err != nil {
			return err
		}
		// A token outlives neither its org nor its maker: both must exist,
		// and are touched so that deleting either concurrently conflicts
		// with this instead of missing the token in its cascade.
		if t.OrgID != "" {
			if err := holdOwner(txn, orgKey(t.OrgID), "org "+t.OrgID); err != nil {
				return err
			}
		}
		if t.CreatedBy != "" {
			if err := holdOwner(txn, userKey(t.CreatedBy), "creator "+t.CreatedBy); err != nil {
				return err
			}
			if err := txn.Set(tokUserKey(t.CreatedBy, t.ID), pk); err != nil {
				return err
			}
		}
		if err := txn.Set(tokOrgKey(t.OrgID, t.CreatedAt, t.ID), pk); err != nil {
			return err
		}
		return setJSON(txn, pk, t)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create api token %s: %w", t.ID, err)
	}
	return nil
}

// GetAPIToken finds no token of an org being deleted: it stops working
// with the org.
func (s *Store) GetAPIToken(ctx context.Context, id string) (store.APIToken, error) {
	return getLive(ctx, s, "get api token "+id, tokKey(id), func(t store.APIToken) string { return t.OrgID })
}

// getLive reads the record at key unless its org (org of it) is being
// deleted.
func getLive[T any](ctx context.Context, s *Store, op string, key []byte, org func(T) string) (T, error) {
	var v T
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		if v, err = getJSON[T](txn, key); err != nil {
			return err
		}
		return mustNotBeDeleting(txn, org(v))
	})
	if err != nil {
		var zero T
		return zero, fmt.Errorf("badgerstore: %s: %w", op, err)
	}
	return v, nil
}

// ListAPITokens returns the org's tokens ("": the platform's), oldest
// first, then by ID.
func (s *Store) ListAPITokens(ctx context.Context, orgID string) ([]store.APIToken, error) {
	ts := []store.APIToken{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if gone, err := orgDeleting(txn, orgID); err != nil || gone {
			return err
		}
		return scan(txn, prefix("tokorg", orgID), true, func(item *badger.Item) error {
			t, err := getIndexedItem[store.APIToken](txn, item)
			ts = append(ts, t)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list api tokens of %q: %w", orgID, err)
	}
	return ts, nil
}

// UpdateAPIToken refuses to change a token's ID, OrgID or CreatedBy: they
// are what it is allowed to do and whose rights it borrows, fixed when it
// is made. CreatedAt may change; its index follows.
func (s *Store) UpdateAPIToken(ctx context.Context, id string, fn func(store.APIToken) (store.APIToken, error)) (store.APIToken, error) {
	return modify(ctx, s, "update api token "+id, tokKey(id), fn, func(txn *badger.Txn, old, next store.APIToken) error {
		if err := store.CheckAPITokenUpdate(old, next); err != nil {
			return err
		}
		if err := mustNotBeDeleting(txn, old.OrgID); err != nil {
			return err
		}
		return moveIndex(txn, tokOrgKey(old.OrgID, old.CreatedAt, id), tokOrgKey(next.OrgID, next.CreatedAt, id), tokKey(id), "")
	})
}

func (s *Store) DeleteAPIToken(ctx context.Context, id string) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		t, err := getJSON[store.APIToken](txn, tokKey(id))
		if err != nil {
			return err
		}
		if err := mustNotBeDeleting(txn, t.OrgID); err != nil {
			return err
		}
		return deleteAPIToken(txn, t)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete api token %s: %w", id, err)
	}
	return nil
}

func deleteAPIToken(txn *badger.Txn, t store.APIToken) error {
	keys := [][]byte{tokKey(t.ID), tokOrgKey(t.OrgID, t.CreatedAt, t.ID)}
	if t.CreatedBy != "" {
		keys = append(keys, tokUserKey(t.CreatedBy, t.ID))
	}
	return deleteKeys(txn, keys...)
}

// deleteIndexed deletes, with del, every record an index prefix points
// at (read first: Badger sorts a transaction's pending writes again for
// every iterator opened after them).
func deleteIndexed[T any](txn *badger.Txn, pfx []byte, del func(*badger.Txn, T) error) error {
	var gone []T
	if err := scan(txn, pfx, false, func(item *badger.Item) error {
		v, err := getIndexedItem[T](txn, item)
		gone = append(gone, v)
		return err
	}); err != nil {
		return err
	}
	for _, v := range gone {
		if err := del(txn, v); err != nil {
			return err
		}
	}
	return nil
}
