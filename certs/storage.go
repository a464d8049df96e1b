package certs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/gatehouse/gatehouse/internal/loop"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// Storage keeps certmagic's certificates, keys and ACME accounts in
// Gatehouse's store, so that every node serves the same certificates,
// a restart issues nothing again, and one node's lock holds for all.
type Storage struct {
	st store.Store
	// node names this process in lock owners.
	node string
	// ttl is how long a lock outlives a holder that stopped refreshing it
	// (a crashed node).
	ttl time.Duration

	mu   sync.Mutex
	held map[string]heldLock
}

type heldLock struct {
	owner string
	stop  context.CancelFunc
	done  chan struct{}
}

var (
	_ certmagic.Storage   = (*Storage)(nil)
	_ certmagic.TryLocker = (*Storage)(nil)
)

// lockTTL: a lock is refreshed every third of it while held.
const lockTTL = 30 * time.Second

// NewStorage returns certmagic storage on st.
func NewStorage(st store.Store) *Storage {
	return &Storage{st: st, node: token.RandomID()[:12], ttl: lockTTL, held: map[string]heldLock{}}
}

func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	return s.st.PutBlob(ctx, key, value)
}

func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := s.st.GetBlob(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, err
	}
	return b.Value, nil
}

func (s *Storage) Delete(ctx context.Context, key string) error {
	return s.st.DeleteBlobs(ctx, key)
}

func (s *Storage) Exists(ctx context.Context, key string) bool {
	infos, err := s.st.ListBlobs(ctx, key)
	return err == nil && len(infos) > 0
}

// List returns the keys under path: its direct children (blobs and
// "directories") or, recursive, every key and directory below it.
func (s *Storage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	path = strings.TrimSuffix(path, "/")
	infos, err := s.st.ListBlobs(ctx, path)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, i := range infos {
		rel, ok := strings.CutPrefix(i.Key, path+"/")
		if path == "" {
			rel, ok = i.Key, true
		}
		if !ok || rel == "" {
			continue
		}
		segs := strings.Split(rel, "/")
		if !recursive {
			segs = segs[:1]
		}
		for n := 1; n <= len(segs); n++ {
			add(join(path, strings.Join(segs[:n], "/")))
		}
	}
	if len(out) == 0 {
		return nil, fs.ErrNotExist
	}
	return out, nil
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "/" + b
}

func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	b, err := s.st.GetBlob(ctx, key)
	if err == nil {
		return certmagic.KeyInfo{Key: key, Modified: b.Modified, Size: int64(len(b.Value)), IsTerminal: true}, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return certmagic.KeyInfo{}, err
	}
	if s.Exists(ctx, key) {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

// Lock blocks until the named lock is this caller's (or ctx ends). While
// held it is refreshed, so it expires only if this node stops.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("certs: waiting for lock %s: %w", name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// TryLock takes the named lock if it is free. A lock this process holds
// (or is taking) is not free, even if its record expired while the store
// was unreachable: otherwise the first holder's Unlock would release the
// second's. The store round trip runs outside s.mu.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	s.mu.Lock()
	if _, held := s.held[name]; held {
		s.mu.Unlock()
		return false, nil
	}
	s.held[name] = heldLock{} // taking it
	s.mu.Unlock()
	taken := false
	defer func() {
		if !taken { // failed, refused, or panicked: not held
			s.mu.Lock()
			delete(s.held, name)
			s.mu.Unlock()
		}
	}()
	owner := s.node + "/" + token.RandomID()[:12]
	ok, err := s.st.AcquireLock(ctx, "certmagic/"+name, owner, s.ttl)
	if err != nil || !ok {
		return false, err
	}
	rctx, stop := context.WithCancel(context.Background())
	h := heldLock{owner: owner, stop: stop, done: make(chan struct{})}
	go s.refresh(rctx, name, owner, h.done)
	s.mu.Lock()
	s.held[name] = h
	s.mu.Unlock()
	taken = true
	return true, nil
}

// refresh extends a held lock until Unlock stops it.
func (s *Storage) refresh(ctx context.Context, name, owner string, done chan struct{}) {
	defer close(done)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	loop.Every(ctx, s.ttl/3, func(ctx context.Context) {
		ok, err := s.st.AcquireLock(ctx, "certmagic/"+name, owner, s.ttl)
		if err == nil && !ok || errors.Is(err, store.ErrClosed) {
			stop() // lost (expired while the store was unreachable), or shutting down
		}
	})
}

// Unlock releases a lock this process holds.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h, ok := s.held[name]
	ok = ok && h.stop != nil // not one still being taken
	if ok {
		delete(s.held, name)
	}
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("certs: unlock %s: not held", name)
	}
	h.stop()
	<-h.done
	return s.st.ReleaseLock(ctx, "certmagic/"+name, h.owner)
}
