package badgerstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// OIDC clients (apps registered through the admin API):
//
//	app/<id>             OIDCClient
//	apporg/<oid>/<id>    -> app/<id>  (only for a per-org app)

func appKey(id string) []byte         { return escKey("app", id) }
func appOrgKey(oid, id string) []byte { return escKey("apporg", oid, id) }

func (s *Store) CreateOIDCClient(ctx context.Context, c store.OIDCClient) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if c.ID == "" {
			return errors.New("id is required")
		}
		pk := appKey(c.ID)
		if err := mustNotExist(txn, pk, "id"); err != nil {
			return err
		}
		if c.OrgID != "" {
			// Touched, so that deleting the org concurrently conflicts
			// with this instead of missing the app in its cascade.
			if err := holdOwner(txn, orgKey(c.OrgID), "org "+c.OrgID); err != nil {
				return err
			}
			if err := txn.Set(appOrgKey(c.OrgID, c.ID), pk); err != nil {
				return err
			}
		}
		return setJSON(txn, pk, c)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create oidc client %s: %w", c.ID, err)
	}
	return nil
}

// GetOIDCClient finds no app of an org being deleted: it stops working
// with the org.
func (s *Store) GetOIDCClient(ctx context.Context, id string) (store.OIDCClient, error) {
	return getLive(ctx, s, "get oidc client "+id, appKey(id), func(c store.OIDCClient) string { return c.OrgID })
}

func (s *Store) ListOIDCClients(ctx context.Context) ([]store.OIDCClient, error) {
	out := []store.OIDCClient{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scan(txn, prefix("app"), true, func(item *badger.Item) error {
			c, err := decodeJSON[store.OIDCClient](item)
			if err != nil {
				return err
			}
			if gone, err := orgDeleting(txn, c.OrgID); err != nil || gone {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list oidc clients: %w", err)
	}
	return out, nil
}

func (s *Store) UpdateOIDCClient(ctx context.Context, id string, fn func(store.OIDCClient) (store.OIDCClient, error)) (store.OIDCClient, error) {
	return modify(ctx, s, "update oidc client "+id, appKey(id), fn, func(txn *badger.Txn, old, next store.OIDCClient) error {
		if err := store.CheckOIDCClientUpdate(old, next); err != nil {
			return err
		}
		return mustNotBeDeleting(txn, old.OrgID)
	})
}

func (s *Store) DeleteOIDCClient(ctx context.Context, id string) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		c, err := getJSON[store.OIDCClient](txn, appKey(id))
		if err != nil {
			return err
		}
		if err := mustNotBeDeleting(txn, c.OrgID); err != nil {
			return err
		}
		return deleteOIDCClient(txn, c)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete oidc client %s: %w", id, err)
	}
	return nil
}

func deleteOIDCClient(txn *badger.Txn, c store.OIDCClient) error {
	keys := [][]byte{appKey(c.ID)}
	if c.OrgID != "" {
		keys = append(keys, appOrgKey(c.OrgID, c.ID))
	}
	return deleteKeys(txn, keys...)
}
