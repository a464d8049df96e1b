package badgerstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// Blobs live under "blob/" + their key as is: keys are slash-separated
// paths, and a prefix scan of "blob/" + key + "/" finds a "directory".
func blobKey(key string) []byte { return []byte("blob/" + key) }

func lockKey(name string) []byte { return escKey("lock", name) }

// blobRecord is a blob's stored form: the modification time first (12
// bytes, see appendTime), then the value.
func encodeBlob(value []byte, mod time.Time) []byte {
	return append(appendTime(make([]byte, 0, timeLen+len(value)), mod), value...)
}

func decodeBlob(b []byte) (store.Blob, error) {
	mod, ok := decodeTime(b)
	if !ok {
		return store.Blob{}, errors.New("corrupt blob record")
	}
	return store.Blob{Value: bytes.Clone(b[timeLen:]), Modified: mod}, nil
}

func (s *Store) PutBlob(ctx context.Context, key string, value []byte) error {
	if !store.ValidBlobKey(key) {
		return fmt.Errorf("badgerstore: put blob: invalid key %q", key)
	}
	err := s.update(ctx, func(txn *badger.Txn) error {
		// A key is a file or a directory, never both.
		if err := scan(txn, append(blobKey(key), '/'), false, func(*badger.Item) error {
			return fmt.Errorf("%q is a prefix of other keys", key)
		}); err != nil {
			return err
		}
		for i := strings.IndexByte(key, '/'); i > 0; i = nextSlash(key, i) {
			if _, err := txn.Get(blobKey(key[:i])); err == nil {
				return fmt.Errorf("%q is a blob, not a prefix", key[:i])
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
		}
		return txn.Set(blobKey(key), encodeBlob(value, time.Now()))
	})
	if err != nil {
		return fmt.Errorf("badgerstore: put blob %s: %w", key, err)
	}
	return nil
}

func (s *Store) GetBlob(ctx context.Context, key string) (store.Blob, error) {
	var out store.Blob
	err := s.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(blobKey(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			out, err = decodeBlob(v)
			return err
		})
	})
	if err != nil {
		return store.Blob{}, fmt.Errorf("badgerstore: get blob %s: %w", key, err)
	}
	return out, nil
}

func (s *Store) DeleteBlobs(ctx context.Context, key string) error {
	if !store.ValidBlobKey(key) {
		return fmt.Errorf("badgerstore: delete blobs: invalid key %q", key)
	}
	err := s.update(ctx, func(txn *badger.Txn) error {
		var keys [][]byte
		if err := scan(txn, append(blobKey(key), '/'), false, func(it *badger.Item) error {
			keys = append(keys, it.KeyCopy(nil))
			return nil
		}); err != nil {
			return err
		}
		keys = append(keys, blobKey(key))
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete blobs %s: %w", key, err)
	}
	return nil
}

func (s *Store) ListBlobs(ctx context.Context, key string) ([]store.BlobInfo, error) {
	var out []store.BlobInfo
	add := func(it *badger.Item) error {
		return it.Value(func(v []byte) error {
			b, err := decodeBlob(v)
			if err != nil {
				return err
			}
			out = append(out, store.BlobInfo{Key: strings.TrimPrefix(string(it.Key()), "blob/"), Size: int64(len(b.Value)), Modified: b.Modified})
			return nil
		})
	}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if key == "" {
			return scan(txn, []byte("blob/"), true, add)
		}
		if item, err := txn.Get(blobKey(key)); err == nil {
			if err := add(item); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return scan(txn, append(blobKey(key), '/'), true, add)
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list blobs %s: %w", key, err)
	}
	return out, nil
}

type lockRecord struct {
	Owner   string    `json:"owner"`
	Expires time.Time `json:"expires"`
}

func (s *Store) AcquireLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if name == "" || owner == "" || ttl <= 0 {
		return false, errors.New("badgerstore: acquire lock: name, owner and a positive ttl are required")
	}
	got := false
	err := s.update(ctx, func(txn *badger.Txn) error {
		got = false
		now := time.Now()
		item, err := txn.Get(lockKey(name))
		switch {
		case err == nil:
			var cur lockRecord
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &cur) }); err != nil {
				return err
			}
			if cur.Owner != owner && now.Before(cur.Expires) {
				return nil // held by someone else
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		b, _ := json.Marshal(lockRecord{Owner: owner, Expires: now.Add(ttl)})
		e := badger.NewEntry(lockKey(name), b)
		e.ExpiresAt = uint64(now.Add(ttl).Unix()) + 1
		if err := txn.SetEntry(e); err != nil {
			return err
		}
		got = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("badgerstore: acquire lock %s: %w", name, err)
	}
	return got, nil
}

func (s *Store) ReleaseLock(ctx context.Context, name, owner string) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(lockKey(name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var cur lockRecord
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &cur) }); err != nil {
			return err
		}
		if cur.Owner != owner {
			return nil // expired and taken by another since: not ours to free
		}
		return txn.Delete(lockKey(name))
	})
	if err != nil {
		return fmt.Errorf("badgerstore: release lock %s: %w", name, err)
	}
	return nil
}

// nextSlash is the index of the next '/' in key after i, or -1.
func nextSlash(key string, i int) int {
	j := strings.IndexByte(key[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}
