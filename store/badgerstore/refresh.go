package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// Refresh token families:
//
//	rtf/<id>                          RefreshFamily
//	rtfsess/<sid>/<id>                -> rtf/<id>  (only with a SessionID)
//	rtfuser/<uid>/<id>                -> rtf/<id>
//	rtforg/<oid>/<id>                 -> rtf/<id>
//	rtfexp/<expiry><id>               -> rtf/<id>

func rtfKey(id string) []byte { return escKey("rtf", id) }

func rtfIndexes(f store.RefreshFamily) [][]byte {
	keys := [][]byte{escKey("rtfuser", f.UserID, f.ID), escKey("rtforg", f.OrgID, f.ID),
		append(appendTime([]byte("rtfexp/"), f.ExpiresAt), f.ID...)}
	if f.SessionID != "" {
		keys = append(keys, escKey("rtfsess", f.SessionID, f.ID))
	}
	return keys
}

func (s *Store) CreateRefreshFamily(ctx context.Context, f store.RefreshFamily) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if f.ID == "" || f.ClientID == "" || f.UserID == "" || f.OrgID == "" {
			return errors.New("id, client, user and org are required")
		}
		pk := rtfKey(f.ID)
		if err := mustNotExist(txn, pk, "id"); err != nil {
			return err
		}
		// It outlives neither its person nor its org.
		if err := holdOwner(txn, userKey(f.UserID), "user "+f.UserID); err != nil {
			return err
		}
		if err := holdOwner(txn, orgKey(f.OrgID), "org "+f.OrgID); err != nil {
			return err
		}
		if err := mustNotBeDeleting(txn, f.OrgID); err != nil {
			return err
		}
		for _, k := range rtfIndexes(f) {
			if err := txn.Set(k, pk); err != nil {
				return err
			}
		}
		return setJSON(txn, pk, f)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create refresh family %s: %w", f.ID, err)
	}
	return nil
}

func (s *Store) GetRefreshFamily(ctx context.Context, id string) (store.RefreshFamily, error) {
	return getLive(ctx, s, "get refresh family "+id, rtfKey(id), func(f store.RefreshFamily) string { return f.OrgID })
}

func (s *Store) UpdateRefreshFamily(ctx context.Context, id string, fn func(store.RefreshFamily) (store.RefreshFamily, error)) (store.RefreshFamily, error) {
	return modify(ctx, s, "update refresh family "+id, rtfKey(id), fn, func(txn *badger.Txn, old, next store.RefreshFamily) error {
		if err := store.CheckRefreshFamilyUpdate(old, next); err != nil {
			return err
		}
		return mustNotBeDeleting(txn, old.OrgID)
	})
}

func (s *Store) ListRefreshFamiliesBySession(ctx context.Context, sessionID string) ([]store.RefreshFamily, error) {
	out, err := listIndexed[store.RefreshFamily](ctx, s, prefix("rtfsess", sessionID))
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list refresh families of a session: %w", err)
	}
	return out, nil
}

func deleteRefreshFamily(txn *badger.Txn, f store.RefreshFamily) error {
	return deleteKeys(txn, append(rtfIndexes(f), rtfKey(f.ID))...)
}

// DeleteExpiredRefreshFamilies walks the expiry index in batches.
func (s *Store) DeleteExpiredRefreshFamilies(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		n := 0
		err := s.update(ctx, func(txn *badger.Txn) error {
			n = 0
			var dead []store.RefreshFamily
			var stale [][]byte
			err := scan(txn, []byte("rtfexp/"), true, func(item *badger.Item) error {
				exp, ok := decodeTime(item.Key()[len("rtfexp/"):])
				if !ok {
					return fmt.Errorf("malformed index key %q", item.Key())
				}
				if !exp.Before(before) || len(dead)+len(stale) == expireBatch {
					return errStopScan
				}
				pk, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				f, err := getJSON[store.RefreshFamily](txn, pk)
				if errors.Is(err, store.ErrNotFound) {
					stale = append(stale, item.KeyCopy(nil))
					return nil
				}
				dead = append(dead, f)
				return err
			})
			if err != nil {
				return err
			}
			for _, f := range dead {
				if err := deleteRefreshFamily(txn, f); err != nil {
					return err
				}
			}
			n = len(dead) + len(stale)
			return deleteKeys(txn, stale...)
		})
		if err != nil {
			return total, fmt.Errorf("badgerstore: delete expired refresh families: %w", err)
		}
		total += n
		if n < expireBatch {
			return total, nil
		}
	}
}
