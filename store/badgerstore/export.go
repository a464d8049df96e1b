package badgerstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

var _ store.Backend = (*Store)(nil)

// unescape reverses escape.
func unescape(s string) string {
	return strings.NewReplacer("%2F", "/", "%25", "%").Replace(s)
}

// recordKey is a JSON record's identity in its kind (store.Record.Key).
func recordKey(kind string, v []byte) (string, error) {
	var k struct {
		ID     string `json:"id"`
		UserID string `json:"user_id"`
		OrgID  string `json:"org_id"`
		Seq    uint64 `json:"seq"`
	}
	if err := json.Unmarshal(v, &k); err != nil {
		return "", err
	}
	switch kind {
	case "membership":
		return k.UserID + "\x00" + k.OrgID, nil
	case "audit":
		return fmt.Sprintf("%s\x00%020d", k.OrgID, k.Seq), nil
	}
	return k.ID, nil
}

// Export lists every record in store.RecordKinds order, from one
// consistent view.
func (s *Store) Export(ctx context.Context, fn func(store.Record) error) error {
	prefixes := map[string]string{"org": "org/", "user": "user/", "membership": "mem/u/", "session": "sess/", "signing_key": "key/",
		"api_token": "tok/", "invitation": "inv/", "oidc_client": "app/", "refresh_family": "rtf/", "audit": "audit/all/",
		"once": "once/", "blob": "blob/", "secret": "secret/"}
	return s.view(ctx, func(txn *badger.Txn) error {
		if err := scan(txn, []byte("orgdel/"), false, func(*badger.Item) error {
			return errors.New("an org deletion is unfinished: start Gatehouse on this store once, then copy")
		}); err != nil {
			return err
		}
		now := time.Now()
		for _, kind := range store.RecordKinds {
			pfx := prefixes[kind]
			err := scan(txn, []byte(pfx), true, func(item *badger.Item) error {
				if err := ctx.Err(); err != nil {
					return err
				}
				name := strings.TrimPrefix(string(item.Key()), pfx)
				r := store.Record{Kind: kind}
				switch kind {
				case "once":
					exp, v, err := decodeOnce(item)
					if err != nil {
						return err
					}
					if !now.Before(exp) {
						return nil // expired: nothing to copy
					}
					okind, oid, _ := strings.Cut(name, "/")
					r.Key, r.Value, r.Expires = unescape(okind)+"\x00"+unescape(oid), v, exp
				case "blob":
					v, err := item.ValueCopy(nil)
					if err != nil {
						return err
					}
					b, err := decodeBlob(v)
					if err != nil {
						return err
					}
					r.Key, r.Value, r.Modified = name, b.Value, b.Modified
				case "secret":
					v, err := item.ValueCopy(nil)
					if err != nil {
						return err
					}
					r.Key, r.Value = unescape(name), v
				default:
					v, err := item.ValueCopy(nil)
					if err != nil {
						return err
					}
					if r.Key, err = recordKey(kind, v); err != nil {
						return fmt.Errorf("%s at %q: %w", kind, item.Key(), err)
					}
					r.Value = v
				}
				return fn(r)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// Import adds one exported record (into a store being filled by a copy).
func (s *Store) Import(ctx context.Context, r store.Record) error {
	return store.ImportRecord(ctx, s, r, func(r store.Record) error {
		if r.Kind == "blob" {
			return s.update(ctx, func(txn *badger.Txn) error { return txn.Set(blobKey(r.Key), encodeBlob(r.Value, r.Modified)) })
		}
		var e store.AuditEvent
		if err := json.Unmarshal(r.Value, &e); err != nil {
			return err
		}
		return s.importAudit(ctx, e)
	})
}

// importAudit writes a chained event as it is, with its indexes, and
// moves its org's head to it if it is the newest.
func (s *Store) importAudit(ctx context.Context, e store.AuditEvent) error {
	return s.update(ctx, func(txn *badger.Txn) error {
		pk := auditKey(e.Time, e.ID)
		if err := mustNotExist(txn, pk, "id"); err != nil {
			return err
		}
		if err := txn.Set(auditChainKey(e.OrgID, e.Seq), pk); err != nil {
			return err
		}
		if e.OrgID != "" {
			if err := txn.Set(auditOrgKey(e.OrgID, e.Time, e.ID), pk); err != nil {
				return err
			}
		}
		if err := setJSON(txn, pk, e); err != nil {
			return err
		}
		head, err := getJSON[store.AuditChainHead](txn, auditHeadKey(e.OrgID))
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if e.Seq > head.Seq {
			return setJSON(txn, auditHeadKey(e.OrgID), store.AuditChainHead{OrgID: e.OrgID, Seq: e.Seq, Hash: e.Hash})
		}
		return nil
	})
}
