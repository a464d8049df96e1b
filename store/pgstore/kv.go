package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/gatehouse/gatehouse/store"
)

// --- single-use values: the node's clock (see DESIGN.md §5) ---

func (s *Store) PutOnce(ctx context.Context, kind, id string, value []byte, expires time.Time) error {
	if kind == "" || id == "" {
		return fmt.Errorf("pgstore: put once: kind and id are required")
	}
	now := time.Now()
	if !now.Before(expires) {
		return nil // expired already: nothing to keep
	}
	if value == nil {
		value = []byte{} // a marker (replay caches): the column is NOT NULL
	}
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer done()
	var one int
	err = s.poolFor(kind).QueryRow(ctx, `INSERT INTO once (kind, id, value, expires_at) VALUES ($1, $2, $3, $4)
		ON CONFLICT (kind, id) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at
		WHERE once.expires_at <= $5 RETURNING 1`, kind, id, value, ts(expires), ts(now)).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("pgstore: put once %s: %w", kind, store.ErrAlreadyExists)
	}
	return wrap("put once "+kind, err)
}

func (s *Store) scanBytes(ctx context.Context, pool *pgxpool.Pool, op, query string, args ...any) ([]byte, error) {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	var b []byte
	if err := pool.QueryRow(ctx, query, args...).Scan(&b); err != nil {
		return nil, wrap(op, err)
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

func (s *Store) TakeOnce(ctx context.Context, kind, id string) ([]byte, error) {
	return s.scanBytes(ctx, s.poolFor(kind), "take once "+kind, "DELETE FROM once WHERE kind = $1 AND id = $2 AND expires_at > $3 RETURNING value", kind, id, ts(time.Now()))
}

func (s *Store) GetOnce(ctx context.Context, kind, id string) ([]byte, error) {
	return s.scanBytes(ctx, s.pool, "get once "+kind, "SELECT value FROM once WHERE kind = $1 AND id = $2 AND expires_at > $3", kind, id, ts(time.Now()))
}

func (s *Store) UpdateOnce(ctx context.Context, kind, id string, fn func([]byte) ([]byte, error)) error {
	err := s.txOn(ctx, s.poolFor(kind), func(tx pgx.Tx) error {
		var v []byte
		var exp time.Time
		if err := tx.QueryRow(ctx, "SELECT value, expires_at FROM once WHERE kind = $1 AND id = $2 FOR UPDATE", kind, id).Scan(&v, &exp); err != nil {
			return err
		}
		if !time.Now().Before(exp) {
			return pgx.ErrNoRows
		}
		if v == nil {
			v = []byte{}
		}
		next, err := fn(v)
		if err != nil {
			return fnError{err}
		}
		if next == nil {
			next = []byte{}
		}
		_, err = tx.Exec(ctx, "UPDATE once SET value = $3 WHERE kind = $1 AND id = $2", kind, id, next)
		return err
	})
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	return wrap("update once "+kind, err)
}

// --- blobs ---

// blobRange is the predicate of key and the keys under it ("": all).
func blobRange(key string) (string, []any) {
	if key == "" {
		return "TRUE", nil
	}
	return "(key = $1 OR (key >= $2 AND key < $3))", []any{key, key + "/", key + "0"}
}

func (s *Store) PutBlob(ctx context.Context, key string, value []byte) error {
	if !store.ValidBlobKey(key) {
		return fmt.Errorf("pgstore: put blob: invalid key %q", key)
	}
	ancestors := []string{}
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			ancestors = append(ancestors, key[:i])
		}
	}
	first, _, _ := strings.Cut(key, "/")
	if value == nil {
		value = []byte{}
	}
	err := s.tx(ctx, func(tx pgx.Tx) error {
		// One writer per top segment: a key and a key under it must not
		// both be written.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(2, hashtext($1))", first); err != nil {
			return err
		}
		var clash string
		err := tx.QueryRow(ctx, "SELECT key FROM blobs WHERE (key >= $1 AND key < $2) OR key = ANY($3) LIMIT 1", key+"/", key+"0", ancestors).Scan(&clash)
		switch {
		case err == nil:
			return fmt.Errorf("%q and %q: a key is a blob or a prefix of blobs, never both", key, clash)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO blobs (key, value, modified) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, modified = EXCLUDED.modified`, key, value, ts(time.Now()))
		return err
	})
	return wrap("put blob "+key, err)
}

func (s *Store) GetBlob(ctx context.Context, key string) (store.Blob, error) {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return store.Blob{}, err
	}
	defer done()
	var b store.Blob
	if err := s.pool.QueryRow(ctx, "SELECT value, modified FROM blobs WHERE key = $1", key).Scan(&b.Value, &b.Modified); err != nil {
		return store.Blob{}, wrap("get blob "+key, err)
	}
	if b.Value == nil {
		b.Value = []byte{}
	}
	return b, nil
}

func (s *Store) DeleteBlobs(ctx context.Context, key string) error {
	where, args := blobRange(key)
	_, err := s.exec(ctx, "delete blobs "+key, "DELETE FROM blobs WHERE "+where, args...)
	return err
}

func (s *Store) ListBlobs(ctx context.Context, key string) ([]store.BlobInfo, error) {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	where, args := blobRange(key)
	rows, err := s.pool.Query(ctx, "SELECT key, octet_length(value), modified FROM blobs WHERE "+where+" ORDER BY key", args...)
	if err != nil {
		return nil, wrap("list blobs", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.BlobInfo, error) {
		var bi store.BlobInfo
		err := r.Scan(&bi.Key, &bi.Size, &bi.Modified)
		return bi, err
	})
	return out, wrap("list blobs", err)
}

// --- locks: the database's clock at both ends ---

func (s *Store) AcquireLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if name == "" || owner == "" || ttl <= 0 {
		return false, errors.New("pgstore: acquire lock: name, owner and a positive ttl are required")
	}
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return false, err
	}
	defer done()
	var one int
	err = s.pool.QueryRow(ctx, `INSERT INTO locks (name, owner, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
		WHERE locks.owner = EXCLUDED.owner OR locks.expires_at <= clock_timestamp() RETURNING 1`, name, owner, ttl.Microseconds()).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, wrap("acquire lock "+name, err)
	}
	return true, nil
}

func (s *Store) ReleaseLock(ctx context.Context, name, owner string) error {
	_, err := s.exec(ctx, "release lock "+name, "DELETE FROM locks WHERE name = $1 AND owner = $2", name, owner)
	return err
}

// --- secrets ---

func (s *Store) Secret(ctx context.Context, name string, value []byte) ([]byte, error) {
	if name == "" || len(value) == 0 {
		return nil, errors.New("pgstore: secret: a name and a value are required")
	}
	if _, err := s.exec(ctx, "secret "+name, "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, value); err != nil {
		return nil, err
	}
	// A second statement: its snapshot sees the value that won.
	return s.scanBytes(ctx, s.pool, "secret "+name, "SELECT value FROM secrets WHERE name = $1", name)
}
