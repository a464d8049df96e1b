package badgerstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// auditBatch bounds the events one audit transaction appends.
const auditBatch = 128

type auditReq struct {
	e    store.AuditEvent
	err  error
	done chan struct{}
}

// AppendAudit queues e for the audit writer and waits until it is
// committed (synced, like every write): concurrent appends share one
// transaction and one sync, and never conflict on a chain head. Once
// queued, the event's fate is reported even if ctx ends meanwhile.
func (s *Store) AppendAudit(ctx context.Context, e store.AuditEvent) error {
	if e.ID == "" {
		e.ID = rand.Text()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	r := &auditReq{e: e, done: make(chan struct{})}
	select {
	case s.auditQ <- r:
	case <-s.auditDone:
		return fmt.Errorf("badgerstore: append audit %s: %w", e.ID, store.ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("badgerstore: append audit %s: %w", e.ID, ctx.Err())
	}
	select {
	case <-r.done:
	case <-s.auditDone:
		// The writer stopped; it answered r unless r came in after its
		// last look at the queue.
		select {
		case <-r.done:
		default:
			return fmt.Errorf("badgerstore: append audit %s: %w", e.ID, store.ErrClosed)
		}
	}
	if r.err != nil {
		return fmt.Errorf("badgerstore: append audit %s: %w", e.ID, r.err)
	}
	return nil
}

// auditWriter commits queued appends until Close.
func (s *Store) auditWriter() {
	defer close(s.auditDone)
	for {
		var first *auditReq
		select {
		case first = <-s.auditQ:
		case <-s.stopAudit:
			for {
				select {
				case r := <-s.auditQ:
					r.err = store.ErrClosed
					close(r.done)
				default:
					return
				}
			}
		}
		batch := []*auditReq{first}
	drain:
		for len(batch) < auditBatch {
			select {
			case r := <-s.auditQ:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitAudit(batch)
	}
}

// commitAudit appends the batch in one transaction, in queue order; if
// that fails, each event alone, so one bad event fails only itself.
func (s *Store) commitAudit(batch []*auditReq) {
	err := s.appendAudit(batch)
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			r.err = s.appendAudit([]*auditReq{r})
			close(r.done)
		}
		return
	}
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}

func (s *Store) appendAudit(batch []*auditReq) error {
	// Audit must not be lost to a caller that hangs up: no caller's ctx.
	return s.update(context.Background(), func(txn *badger.Txn) error {
		heads := map[string]store.AuditChainHead{}
		for _, r := range batch {
			e := r.e // this attempt's copy: a retried transaction chains afresh
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
}
