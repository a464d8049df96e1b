package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migrations are versioned SQL files (NNN_name.sql) embedded in the
// binary, applied in order at start, each in its own transaction with
// its version recorded in gatehouse_schema. Nodes starting together
// migrate once: the whole run holds a session advisory lock.

//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one versioned file.
type migration struct {
	version int
	name    string
	sql     string
}

// migrationLock is the advisory lock key of the migration run (a
// constant any Gatehouse node uses).
const migrationLock = 0x6761746568 // "gateh"

// ErrSchemaTooNew: the database was migrated by a newer Gatehouse.
var ErrSchemaTooNew = errors.New("pgstore: the database schema is newer than this Gatehouse knows")

func loadMigrations(fsys fs.FS) ([]migration, error) {
	entries, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		base := path.Base(e)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("pgstore: migration %s: name it NNN_what.sql", base)
		}
		b, err := fs.ReadFile(fsys, e)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("pgstore: migrations must be numbered 1, 2, 3…: %s is number %d", m.name, i+1)
		}
	}
	return out, nil
}

// Migrate brings the database to the newest schema this binary knows;
// ErrSchemaTooNew if it is newer already.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := loadMigrations(migrationFS)
	if err != nil {
		return err
	}
	return migrate(ctx, pool, ms)
}

func migrate(ctx context.Context, pool *pgxpool.Pool, ms []migration) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrationLock)); err != nil {
		return fmt.Errorf("pgstore: migrate: lock: %w", err)
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrationLock))
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS gatehouse_schema (
		version integer PRIMARY KEY,
		name text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	var cur int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM gatehouse_schema").Scan(&cur); err != nil {
		return fmt.Errorf("pgstore: migrate: %w", err)
	}
	if cur > len(ms) {
		return fmt.Errorf("%w (database at version %d, this binary knows %d): upgrade Gatehouse", ErrSchemaTooNew, cur, len(ms))
	}
	for _, m := range ms[cur:] {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO gatehouse_schema (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("pgstore: migration %s: %w", m.name, err)
		}
	}
	return nil
}
