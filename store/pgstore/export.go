package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store"
)

var _ store.Backend = (*Store)(nil)

// exportQueries read each kind's records with their identity.
var exportQueries = map[string]string{
	"org":            "SELECT id, NULL, doc::text FROM orgs ORDER BY id",
	"user":           "SELECT id, NULL, doc::text FROM users ORDER BY id",
	"membership":     "SELECT user_id, org_id, doc::text FROM memberships ORDER BY user_id, org_id",
	"session":        "SELECT id, NULL, doc::text FROM sessions ORDER BY id",
	"signing_key":    "SELECT id, NULL, doc::text FROM signing_keys ORDER BY id",
	"api_token":      "SELECT id, NULL, doc::text FROM api_tokens ORDER BY id",
	"invitation":     "SELECT id, NULL, doc::text FROM invitations ORDER BY id",
	"oidc_client":    "SELECT id, NULL, doc::text FROM oidc_clients ORDER BY id",
	"refresh_family": "SELECT id, NULL, doc::text FROM refresh_families ORDER BY id",
	"audit":          "SELECT org_id, lpad(seq::text, 20, '0'), doc::text FROM audit_events ORDER BY org_id, seq",
}

// Export lists every record in store.RecordKinds order, from one
// snapshot (a REPEATABLE READ transaction).
func (s *Store) Export(ctx context.Context, fn func(store.Record) error) error {
	done, err := s.enterLong(ctx)
	if err != nil {
		return err
	}
	defer done()
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		for _, kind := range store.RecordKinds {
			var recs []store.Record
			var err error
			switch kind {
			case "once":
				recs, err = collect(ctx, tx, "SELECT kind, id, value, expires_at, NULL::timestamptz FROM once WHERE expires_at > $1 ORDER BY kind, id", time.Now())
			case "blob":
				recs, err = collect(ctx, tx, "SELECT key, NULL, value, NULL::timestamptz, modified FROM blobs ORDER BY key")
			case "secret":
				recs, err = collect(ctx, tx, "SELECT name, NULL, value, NULL::timestamptz, NULL::timestamptz FROM secrets ORDER BY name")
			default:
				recs, err = collect(ctx, tx, "SELECT k1, k2, convert_to(d, 'UTF8'), NULL::timestamptz, NULL::timestamptz FROM ("+exportQueries[kind]+") AS q(k1, k2, d)")
			}
			if err != nil {
				return fmt.Errorf("pgstore: export %s: %w", kind, err)
			}
			for _, r := range recs {
				r.Kind = kind
				if err := fn(r); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func collect(ctx context.Context, tx pgx.Tx, query string, args ...any) ([]store.Record, error) {
	rows, err := tx.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Record, error) {
		var rec store.Record
		var exp, mod *time.Time
		var k2 *string
		if err := r.Scan(&rec.Key, &k2, &rec.Value, &exp, &mod); err != nil {
			return rec, err
		}
		if k2 != nil {
			// Two-part keys are joined by NUL here: PostgreSQL text has none.
			rec.Key += "\x00" + *k2
		}
		if exp != nil {
			rec.Expires = *exp
		}
		if mod != nil {
			rec.Modified = *mod
		}
		if rec.Value == nil {
			rec.Value = []byte{}
		}
		return rec, nil
	})
}

// Import adds one exported record (into a store being filled by a copy).
func (s *Store) Import(ctx context.Context, r store.Record) error {
	return store.ImportRecord(ctx, s, r, func(r store.Record) error {
		if r.Kind == "blob" {
			_, err := s.exec(ctx, "import blob", "INSERT INTO blobs (key, value, modified) VALUES ($1, $2, $3)", r.Key, r.Value, ts(r.Modified))
			return err
		}
		var e store.AuditEvent
		if err := json.Unmarshal(r.Value, &e); err != nil {
			return err
		}
		// As it is, chain fields included; the head follows the newest.
		err := s.tx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO audit_events (org_id, seq, id, time, actor, action, target, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
				e.OrgID, int64(e.Seq), e.ID, e.Time, textCol(e.Actor), textCol(e.Action), textCol(e.Target), r.Value); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, $2, $3)
				ON CONFLICT (org_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash WHERE audit_heads.seq < EXCLUDED.seq`, e.OrgID, int64(e.Seq), e.Hash)
			return err
		})
		return wrap("import audit event", err)
	})
}
