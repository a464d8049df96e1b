package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store"
)

// AppendAudit appends e to its org's chain through the node's audit
// writer (store.AuditWriter): concurrent appends share one transaction
// and one log flush. Each org's head row is locked for the transaction,
// so appends to one org from every node serialize on it and the chain
// never forks.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	return s.audit.Append(ctx, e)
}

func (s *Store) appendAudit(batch []store.AuditEvent) error {
	// Audit must not be lost to a caller that hangs up: no caller's ctx.
	ctx := context.Background()
	// Heads are locked in one order (by org), so that two nodes' batches
	// over the same orgs never deadlock.
	var orgs []string
	for _, e := range batch {
		if !slices.Contains(orgs, e.OrgID) {
			orgs = append(orgs, e.OrgID)
		}
	}
	slices.Sort(orgs)
	err := s.tx(ctx, func(tx pgx.Tx) error {
		heads := make(map[string]store.AuditChainHead, len(orgs))
		for _, org := range orgs {
			head := store.AuditChainHead{OrgID: org}
			if err := tx.QueryRow(ctx, `INSERT INTO audit_heads (org_id, seq, hash) VALUES ($1, 0, '')
				ON CONFLICT (org_id) DO UPDATE SET seq = audit_heads.seq RETURNING seq, hash`, org).Scan(&head.Seq, &head.Hash); err != nil {
				return err
			}
			heads[org] = head
		}
		for _, ev := range batch {
			// ev is this attempt's copy: a retried transaction chains afresh
			head := heads[ev.OrgID]
			store.ChainAudit(&ev, head)
			doc, err := docOf(ev)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "INSERT INTO audit_events (org_id, seq, id, time, actor, action, target, doc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
				ev.OrgID, int64(ev.Seq), ev.ID, ev.Time, textCol(ev.Actor), textCol(ev.Action), textCol(ev.Target), doc); err != nil {
				return err
			}
			head.Seq, head.Hash = ev.Seq, ev.Hash
			heads[ev.OrgID] = head
		}
		for _, org := range orgs {
			h := heads[org]
			if _, err := tx.Exec(ctx, "UPDATE audit_heads SET seq = $2, hash = $3 WHERE org_id = $1", org, int64(h.Seq), h.Hash); err != nil {
				return err
			}
		}
		return nil
	})
	if len(batch) == 1 {
		return wrap("append audit "+batch[0].ID, err)
	}
	return wrap(fmt.Sprintf("append %d audit events", len(batch)), err)
}

// ListAudit: with OrgID, the org's chain newest first from BeforeSeq,
// stopping at the first event older than Since; without, every org's by
// time.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	order := "time DESC, id"
	if q.OrgID != "" {
		org := arg(q.OrgID)
		where = append(where, "org_id = "+org)
		if q.BeforeSeq > 0 && q.BeforeSeq <= math.MaxInt64 {
			where = append(where, "seq < "+arg(int64(q.BeforeSeq)))
		}
		if !q.Since.IsZero() {
			before := "TRUE"
			if q.BeforeSeq > 0 && q.BeforeSeq <= math.MaxInt64 {
				before = "seq < " + arg(int64(q.BeforeSeq))
			}
			where = append(where, fmt.Sprintf("seq > COALESCE((SELECT seq FROM audit_events WHERE org_id = %s AND %s AND time < %s ORDER BY seq DESC LIMIT 1), 0)",
				org, before, arg(store.AuditTime(q.Since))))
		}
		order = "seq DESC"
	} else if !q.Since.IsZero() {
		where = append(where, "time >= "+arg(store.AuditTime(q.Since)))
	}
	if !q.Until.IsZero() {
		where = append(where, "time < "+arg(store.AuditTime(q.Until)))
	}
	for col, v := range map[string]string{"action": q.Action, "actor": q.Actor, "target": q.Target} {
		if v != "" {
			where = append(where, col+" = "+arg(v))
		}
	}
	query := "SELECT doc FROM audit_events"
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY " + order + " LIMIT " + arg(limit)
	return list[store.AuditEvent](ctx, s, "list audit", query, args...)
}

func (s *Store) AuditHeads(ctx context.Context) ([]store.AuditChainHead, error) {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := s.pool.Query(ctx, "SELECT org_id, seq, hash FROM audit_heads WHERE seq > 0 ORDER BY org_id")
	if err != nil {
		return nil, wrap("audit heads", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AuditChainHead, error) {
		var h store.AuditChainHead
		var seq int64
		err := r.Scan(&h.OrgID, &seq, &h.Hash)
		h.Seq = uint64(seq)
		return h, err
	})
	return out, wrap("audit heads", err)
}

// WalkAudit reads batches whole before calling fn, so fn may use the store.
func (s *Store) WalkAudit(ctx context.Context, orgID string, after uint64, fn func(store.AuditEvent) error) error {
	if after > math.MaxInt64 {
		return nil
	}
	cur := int64(after)
	for {
		batch, err := list[json.RawMessage](ctx, s, "walk audit", "SELECT doc FROM audit_events WHERE org_id = $1 AND seq > $2 ORDER BY seq LIMIT 500", orgID, cur)
		if err != nil {
			return err
		}
		for _, raw := range batch {
			var e store.AuditEvent
			if err := json.Unmarshal(raw, &e); err != nil {
				return fmt.Errorf("pgstore: walk audit: decode: %w", err)
			}
			if err := fn(e); err != nil {
				return err
			}
			cur = int64(e.Seq)
		}
		if len(batch) < 500 {
			return nil
		}
	}
}
