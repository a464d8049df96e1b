package certs

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

func newStorage(t *testing.T) (*Storage, *Storage) {
	st := badgertest.Open(t)
	// Two nodes on one store.
	return NewStorage(st), NewStorage(st)
}

// The certmagic.Storage contract, as certmagic's FileStorage behaves.
func TestStorageContract(t *testing.T) {
	s, _ := newStorage(t)
	ctx := context.Background()
	if _, err := s.Load(ctx, "certificates/x/a.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load missing: %v, want fs.ErrNotExist", err)
	}
	for _, k := range []string{"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.key",
		"certificates/ca/b.example/b.example.crt", "acme/ca/users/ops/ops.json"} {
		if err := s.Store(ctx, k, []byte("v:"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := s.Load(ctx, "acme/ca/users/ops/ops.json"); err != nil || string(b) != "v:acme/ca/users/ops/ops.json" {
		t.Fatalf("Load: %q %v", b, err)
	}
	if !s.Exists(ctx, "certificates/ca") || !s.Exists(ctx, "certificates/ca/a.example/a.example.crt") || s.Exists(ctx, "certificates/c") {
		t.Fatal("Exists")
	}
	list := func(p string, rec bool) []string {
		out, err := s.List(ctx, p, rec)
		if err != nil {
			t.Fatalf("List(%q, %v): %v", p, rec, err)
		}
		slices.Sort(out)
		return out
	}
	if got := list("certificates/ca", false); !slices.Equal(got, []string{"certificates/ca/a.example", "certificates/ca/b.example"}) {
		t.Fatalf("List non-recursive = %v", got)
	}
	if got := list("certificates", true); !slices.Equal(got, []string{"certificates/ca", "certificates/ca/a.example",
		"certificates/ca/a.example/a.example.crt", "certificates/ca/a.example/a.example.key", "certificates/ca/b.example",
		"certificates/ca/b.example/b.example.crt"}) {
		t.Fatalf("List recursive = %v", got)
	}
	if _, err := s.List(ctx, "nothing", true); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("List missing: %v", err)
	}
	ki, err := s.Stat(ctx, "certificates/ca/a.example/a.example.crt")
	if err != nil || !ki.IsTerminal || ki.Size == 0 || ki.Modified.IsZero() {
		t.Fatalf("Stat key: %+v %v", ki, err)
	}
	if ki, err := s.Stat(ctx, "certificates/ca"); err != nil || ki.IsTerminal {
		t.Fatalf("Stat directory: %+v %v", ki, err)
	}
	if _, err := s.Stat(ctx, "nothing"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Stat missing: %v", err)
	}
	if err := s.Delete(ctx, "certificates/ca/a.example"); err != nil {
		t.Fatal(err)
	}
	if s.Exists(ctx, "certificates/ca/a.example/a.example.key") || !s.Exists(ctx, "certificates/ca/b.example/b.example.crt") {
		t.Fatal("Delete of a directory")
	}
	if err := s.Delete(ctx, "already/gone"); err != nil {
		t.Fatalf("Delete missing: %v", err)
	}
}

// One node's lock holds for every node; it outlives its TTL while the
// holder refreshes it, and frees on Unlock.
func TestStorageLocks(t *testing.T) {
	a, b := newStorage(t)
	// Refreshed every ttl/3: a refresh would have to stall for 2/3 s to
	// let the lock lapse.
	a.ttl, b.ttl = time.Second, time.Second
	ctx := context.Background()
	if err := a.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := b.TryLock(ctx, "issue_cert_a.example"); ok {
		t.Fatal("second node took a held lock")
	}
	time.Sleep(5 * a.ttl / 2) // refreshed meanwhile
	if ok, _ := b.TryLock(ctx, "issue_cert_a.example"); ok {
		t.Fatal("a refreshed lock expired")
	}
	got := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		got <- b.Lock(wctx, "issue_cert_a.example")
	}()
	time.Sleep(100 * time.Millisecond)
	if err := a.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiting node: %v", err)
	}
	if err := b.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "never-locked"); err == nil {
		t.Fatal("unlock of a lock not held")
	}
	wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_ = a.Lock(ctx, "x")
	if err := b.Lock(wctx, "x"); err == nil {
		t.Fatal("Lock ignored its context")
	}
	if err := a.Unlock(ctx, "x"); err != nil {
		t.Fatal(err)
	}

	// Within one process a held lock is not free even if its record
	// expired (store unreachable past the TTL): a second holder would
	// have its lock released by the first one's Unlock.
	if err := a.Lock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	owner := a.held["y"].owner
	a.mu.Unlock()
	if err := a.st.ReleaseLock(ctx, "certmagic/y", owner); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.TryLock(ctx, "y"); ok || err != nil {
		t.Fatalf("took a lock this process holds: %v %v", ok, err)
	}
	if err := a.Unlock(ctx, "y"); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.TryLock(ctx, "y"); !ok || err != nil {
		t.Fatalf("after Unlock: %v %v", ok, err)
	}
	_ = a.Unlock(ctx, "y")
}
