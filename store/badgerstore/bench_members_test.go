package badgerstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// benchMembers is the size of the org BenchmarkListMembers pages.
const benchMembers = 100_000

// benchUser is the i-th member: one in a hundred has "Zebra" in its name
// (the search the benchmark runs); emails do not sort in ID order.
func benchUser(i int) store.User {
	name := fmt.Sprintf("Person %d", i)
	if i%100 == 42 {
		name += " Zebra"
	}
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return store.User{
		ID:    fmt.Sprintf("u%06d", i),
		Email: fmt.Sprintf("%s.%d@Example%d.com", strings.Repeat("x", i%7), (i*7919)%benchMembers, i%13),
		Name:  name, CreatedAt: at, UpdatedAt: at,
	}
}

// fillMembers creates n users and their memberships in a new org through
// the public API, from many goroutines.
func fillMembers(tb testing.TB, s *Store, org string, n int) {
	tb.Helper()
	ctx := context.Background()
	if err := s.CreateOrg(ctx, store.Org{ID: org, Slug: org}); err != nil {
		tb.Fatal(err)
	}
	var (
		wg     sync.WaitGroup
		once   sync.Once
		failed error
	)
	next := make(chan int, 1024)
	for range 128 {
		wg.Go(func() {
			for i := range next {
				u := benchUser(i)
				err := s.CreateUser(ctx, u)
				if err == nil {
					err = s.CreateMembership(ctx, store.Membership{UserID: u.ID, OrgID: org, Roles: []string{"member"}, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt})
				}
				if err != nil {
					once.Do(func() { failed = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if failed != nil {
		tb.Fatal(failed)
	}
}

// BenchmarkListMembers pages an org of 100,000 members on disk. Setup
// loads them through the public API with fsync off (the unexported
// WithoutSync: with fsync, 200,000 separate commits take a minute),
// then reopens the store as a deployment would run it.
func BenchmarkListMembers(b *testing.B) {
	dir := b.TempDir()
	start := time.Now()
	s := openTest(b, dir, WithoutSync())
	fillMembers(b, s, "big", benchMembers)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	s = openTest(b, dir)
	defer s.Close()
	b.Logf("%d members loaded in %v", benchMembers, time.Since(start).Round(time.Millisecond))

	// The cursor of the page at 90% of the order.
	users := make([]store.User, benchMembers)
	for i := range users {
		users[i] = benchUser(i)
	}
	slices.SortFunc(users, func(a, b store.User) int {
		return cmp.Or(strings.Compare(strings.ToLower(a.Email), strings.ToLower(b.Email)), strings.Compare(a.ID, b.ID))
	})
	deep := users[benchMembers*9/10-1]

	for _, bc := range []struct {
		name string
		q    store.MemberQuery
		want int
	}{
		{"first-page", store.MemberQuery{}, 100},
		{"deep-page", store.MemberQuery{AfterEmail: strings.ToLower(deep.Email), AfterID: deep.ID}, 100},
		{"search-1pct", store.MemberQuery{Search: "ZEBRA"}, 100},
		{"search-1pct-deep", store.MemberQuery{Search: "zebra", AfterEmail: strings.ToLower(deep.Email), AfterID: deep.ID}, 100},
		// The worst case: a search matching no one reads the whole index.
		{"search-none", store.MemberQuery{Search: "nobody"}, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			q := bc.q
			q.OrgID = "big"
			var took []time.Duration
			b.ReportAllocs()
			for b.Loop() {
				t0 := time.Now()
				page, err := s.ListMembers(ctx, q)
				took = append(took, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if len(page) != bc.want {
					b.Fatalf("page of %d members, want %d", len(page), bc.want)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
		})
	}
}

// BenchmarkAppendAudit is the audit trail's part of a sign-in: one event
// appended to its org's chain (head read, event, chain and index keys, in
// one synced transaction), on disk as deployed; in parallel, what many
// sign-ins at once pay for it.
func BenchmarkAppendAudit(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	ev := store.AuditEvent{OrgID: "org_acme", Actor: "usr_x", Action: "login", Outcome: "success", Details: map[string]string{"connection": "password", "client": "192.0.2.1"}}
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := s.AppendAudit(ctx, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel-one-org", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.AppendAudit(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	// Many sign-ins at once (16 callers per core): their appends share
	// transactions and syncs.
	b.Run("parallel-16-per-core", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := s.AppendAudit(ctx, ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
