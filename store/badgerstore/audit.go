package badgerstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// AppendAudit appends e to its org's chain through the store's audit
// writer (store.AuditWriter): concurrent appends share one transaction and
// one sync, and never conflict on a chain head.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	return s.audit.Append(ctx, e)
}

func (s *Store) appendAudit(batch []store.AuditEvent) error {
	// Audit must not be lost to a caller that hangs up: no caller's ctx.
	err := s.update(context.Background(), func(txn *badger.Txn) error {
		heads := map[string]store.AuditChainHead{}
		for _, e := range batch {
			// e is this attempt's copy: a retried transaction chains afresh
			head, ok := heads[e.OrgID]
			if !ok {
				var err error
				head, err = getJSON[store.AuditChainHead](txn, auditHeadKey(e.OrgID))
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				head.OrgID = e.OrgID
			}
			store.ChainAudit(&e, head)
			pk := auditKey(e.Time, e.ID)
			if err := mustNotExist(txn, pk, "id"); err != nil {
				return err
			}
			if err := txn.Set(auditChainKey(e.OrgID, e.Seq), pk); err != nil {
				return err
			}
			head.Seq, head.Hash = e.Seq, e.Hash
			heads[e.OrgID] = head
			if e.OrgID != "" {
				if err := txn.Set(auditOrgKey(e.OrgID, e.Time, e.ID), pk); err != nil {
					return err
				}
			}
			if err := setJSON(txn, pk, e); err != nil {
				return err
			}
		}
		for org, head := range heads {
			if err := setJSON(txn, auditHeadKey(org), head); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) == 1 {
		return fmt.Errorf("badgerstore: append audit %s: %w", batch[0].ID, err)
	}
	if err != nil {
		return fmt.Errorf("badgerstore: append %d audit events: %w", len(batch), err)
	}
	return nil
}
