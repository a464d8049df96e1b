package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"time"
)

// AuditBatch bounds the events one audit transaction appends.
const AuditBatch = 128

// AuditWriter group-commits audit appends for a backend: concurrent
// appends are queued to one goroutine that hands whatever is queued to
// commit in one go (one transaction, one sync), and each org's chain head
// is read and written once per batch. If a batch fails, each event is
// committed alone, so one bad event fails only itself.
type AuditWriter struct {
	name   string // the backend, for errors
	commit func([]AuditEvent) error
	q      chan *auditReq
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type auditReq struct {
	e    AuditEvent
	err  error
	done chan struct{}
}

// NewAuditWriter starts a writer that commits batches with commit (in
// queue order; a retried transaction must chain afresh from its events).
// Close stops it.
func NewAuditWriter(name string, commit func([]AuditEvent) error) *AuditWriter {
	w := &AuditWriter{name: name, commit: commit, q: make(chan *auditReq, AuditBatch), stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

// Append fills e's ID and time if unset, queues it and waits until it is
// committed. Once queued, its fate is reported even if ctx ends.
func (w *AuditWriter) Append(ctx context.Context, e AuditEvent) error {
	if e.ID == "" {
		e.ID = rand.Text()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	r := &auditReq{e: e, done: make(chan struct{})}
	select {
	case w.q <- r:
	case <-w.done:
		return fmt.Errorf("%s: append audit %s: %w", w.name, e.ID, ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("%s: append audit %s: %w", w.name, e.ID, ctx.Err())
	}
	select {
	case <-r.done:
	case <-w.done:
		// The writer stopped; it answered r unless r came in after its
		// last look at the queue.
		select {
		case <-r.done:
		default:
			return fmt.Errorf("%s: append audit %s: %w", w.name, e.ID, ErrClosed)
		}
	}
	return r.err
}

// Close stops the writer after its batch in progress; appends queued
// after that fail with ErrClosed. It may be called more than once.
func (w *AuditWriter) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

func (w *AuditWriter) run() {
	defer close(w.done)
	for {
		var first *auditReq
		select {
		case first = <-w.q:
		case <-w.stop:
			for {
				select {
				case r := <-w.q:
					r.err = ErrClosed
					close(r.done)
				default:
					return
				}
			}
		}
		batch := []*auditReq{first}
	drain:
		for len(batch) < AuditBatch {
			select {
			case r := <-w.q:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		w.commitBatch(batch)
	}
}

func (w *AuditWriter) commitBatch(batch []*auditReq) {
	events := make([]AuditEvent, len(batch))
	for i, r := range batch {
		events[i] = r.e
	}
	err := w.commit(events)
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			r.err = w.commit([]AuditEvent{r.e})
			close(r.done)
		}
		return
	}
	for _, r := range batch {
		r.err = err
		close(r.done)
	}
}
