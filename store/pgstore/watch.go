package pgstore

import (
	"context"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

var _ store.Watcher = (*Store)(nil)

// Watch listens on the channel the triggers of migration 002 notify,
// on a connection of its own, until ctx ends; after each (re)connection
// it reports a resync, since notifications sent meanwhile are lost.
func (s *Store) Watch(ctx context.Context, fn func(store.Change)) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listen(ctx, fn)
		if ctx.Err() != nil {
			return
		}
		_ = err // the node's periodic rereads cover the gap
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (s *Store) listen(ctx context.Context, fn func(store.Change)) error {
	done, err := s.enterLong(ctx)
	if err != nil {
		return err
	}
	c, err := s.pool.Acquire(ctx)
	done()
	if err != nil {
		return err
	}
	// The connection leaves the pool: it only listens.
	conn := c.Hijack()
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN gatehouse"); err != nil {
		return err
	}
	s.listening.Store(true)
	defer s.listening.Store(false)
	fn(store.Change{Kind: "resync"})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		kind, id, ok := strings.Cut(n.Payload, ":")
		if !ok {
			continue
		}
		fn(store.Change{Kind: kind, ID: id})
	}
}
