package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// auditFixture appends n events to o1 (one a second, in time order) and
// a few to o10, o2 and the platform in between (at a quarter, a half and
// three quarters of a second past one of o1's). It
// returns o1's events as stored (Seq i+1 for the i-th), and all events.
func auditFixture(t *testing.T, s store.Store, n int) (o1, all []store.AuditEvent) {
	t.Helper()
	ctx := t.Context()
	actors := []string{"user:u1", "user:u10", "user:u2", "user:u2", "system"}
	event := func(org string, i int, at time.Time) store.AuditEvent {
		action := "logout"
		if i%3 == 0 {
			action = "login"
		}
		return store.AuditEvent{
			ID: fmt.Sprintf("%s-e%03d", org, i), Time: at, OrgID: org,
			Actor: actors[i%len(actors)], Action: action, Target: fmt.Sprintf("user:u%d", i%4),
			Outcome: "success", Details: map[string]string{"i": fmt.Sprint(i)},
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for k, org := range []string{"o10", "o2", ""} {
		wg.Go(func() {
			for i := range n / 10 {
				e := event(org, i, base.Add(time.Duration(i*10)*time.Second+time.Duration(k+1)*250*time.Millisecond))
				if err := s.AppendAudit(ctx, e); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all = append(all, e)
				mu.Unlock()
			}
		})
	}
	for i := range n {
		e := event("o1", i, base.Add(time.Duration(i)*time.Second))
		mustOK(t, s.AppendAudit(ctx, e))
		e.Seq = uint64(i + 1)
		o1 = append(o1, e)
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	all = append(all, o1...)
	slices.SortFunc(all, func(a, b store.AuditEvent) int { return b.Time.Compare(a.Time) })
	slices.Reverse(o1) // newest first
	return o1, all
}

func auditIDs(es []store.AuditEvent) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func keepAudit(es []store.AuditEvent, keep func(store.AuditEvent) bool) []store.AuditEvent {
	var out []store.AuditEvent
	for _, e := range es {
		if keep(e) {
			out = append(out, e)
		}
	}
	return out
}

// pageAudit reads every page of q for its org, each after the last Seq
// of the one before.
func pageAudit(t *testing.T, s store.Store, q store.AuditQuery) []store.AuditEvent {
	t.Helper()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var all []store.AuditEvent
	for range 10_000 {
		page, err := s.ListAudit(t.Context(), q)
		mustOK(t, err)
		if len(page) > limit {
			t.Fatalf("ListAudit(%+v) returned %d events, limit %d", q, len(page), limit)
		}
		all = append(all, page...)
		if len(page) < limit {
			return all
		}
		q.BeforeSeq = page[len(page)-1].Seq
	}
	t.Fatalf("ListAudit(%+v) does not end", q)
	return nil
}

// testAuditCursor: BeforeSeq pages through one org's chain, newest first,
// with no gaps or duplicates, alone and with every filter.
func testAuditCursor(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 250
	o1, _ := auditFixture(t, s, n)

	// Pages of 100, 100 and 50.
	var got []store.AuditEvent
	q := store.AuditQuery{OrgID: "o1", Limit: 100}
	for i, size := range []int{100, 100, 50, 0} {
		page, err := s.ListAudit(ctx, q)
		mustOK(t, err)
		if len(page) != size {
			t.Fatalf("page %d has %d events, want %d", i, len(page), size)
		}
		got = append(got, page...)
		if size > 0 {
			q.BeforeSeq = page[len(page)-1].Seq
		}
	}
	for i, e := range got {
		if want := uint64(n - i); e.Seq != want || e.OrgID != "o1" {
			t.Fatalf("event %d: %s of %q, seq %d; want seq %d of o1", i, e.ID, e.OrgID, e.Seq, want)
		}
	}
	mustEqual(t, auditIDs(o1), auditIDs(got))
	stored := got[n-1-7] // o1's 8th event, as stored
	stored.Prev, stored.Hash = "", ""
	mustEqual(t, o1[n-1-7], stored)

	// The default limit, and a cursor at the ends or past the head.
	page, err := s.ListAudit(ctx, store.AuditQuery{OrgID: "o1"})
	mustOK(t, err)
	mustEqual(t, auditIDs(o1[:100]), auditIDs(page))
	for before, want := range map[uint64][]store.AuditEvent{
		1: nil, 2: o1[n-1:], 3: o1[n-2:], n: o1[1:11], n + 1: o1[:10], 1 << 40: o1[:10],
	} {
		page, err := s.ListAudit(ctx, store.AuditQuery{OrgID: "o1", BeforeSeq: before, Limit: 10})
		mustOK(t, err)
		mustEqual(t, auditIDs(want), auditIDs(page))
	}
	page, err = s.ListAudit(ctx, store.AuditQuery{OrgID: "nothing", BeforeSeq: 5})
	mustOK(t, err)
	if len(page) != 0 {
		t.Errorf("ListAudit(nothing) = %v", auditIDs(page))
	}

	// Filters apply before the limit, and the cursor pages through them.
	until, since := o1[n-1-200].Time, o1[n-1-50].Time // events 200 and 50
	for _, f := range []struct {
		q    store.AuditQuery
		keep func(store.AuditEvent) bool
	}{
		{store.AuditQuery{Action: "login"}, func(e store.AuditEvent) bool { return e.Action == "login" }},
		{store.AuditQuery{Actor: "user:u1"}, func(e store.AuditEvent) bool { return e.Actor == "user:u1" }},
		{store.AuditQuery{Target: "user:u3"}, func(e store.AuditEvent) bool { return e.Target == "user:u3" }},
		{store.AuditQuery{Action: "login", Actor: "user:u2", Target: "user:u0"}, func(e store.AuditEvent) bool {
			return e.Action == "login" && e.Actor == "user:u2" && e.Target == "user:u0"
		}},
		{store.AuditQuery{Action: "log"}, func(e store.AuditEvent) bool { return false }}, // exact, not a prefix
		{store.AuditQuery{Until: until}, func(e store.AuditEvent) bool { return e.Time.Before(until) }},
		{store.AuditQuery{Since: since}, func(e store.AuditEvent) bool { return !e.Time.Before(since) }},
		{store.AuditQuery{Since: since, Until: until, Action: "logout"}, func(e store.AuditEvent) bool {
			return !e.Time.Before(since) && e.Time.Before(until) && e.Action == "logout"
		}},
	} {
		want := keepAudit(o1, f.keep)
		for _, limit := range []int{0, 7} {
			q := f.q
			q.OrgID, q.Limit = "o1", limit
			if got := pageAudit(t, s, q); !equal(auditIDs(want), auditIDs(got)) {
				t.Errorf("ListAudit(%+v) paged:\n got %v\nwant %v", q, auditIDs(got), auditIDs(want))
			}
		}
	}
	// Until is exclusive, Since inclusive.
	page, err = s.ListAudit(ctx, store.AuditQuery{OrgID: "o1", Until: until, Limit: 1})
	mustOK(t, err)
	mustEqual(t, []string{"o1-e199"}, auditIDs(page))
	page, err = s.ListAudit(ctx, store.AuditQuery{OrgID: "o1", Since: since, BeforeSeq: 52})
	mustOK(t, err)
	mustEqual(t, []string{"o1-e050"}, auditIDs(page))
}

// testAuditFilters: without an OrgID, the filters and Until apply to
// every org's events, by time; BeforeSeq is ignored.
func testAuditFilters(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, all := auditFixture(t, s, 100)
	list := func(q store.AuditQuery) []string {
		t.Helper()
		es, err := s.ListAudit(ctx, q)
		mustOK(t, err)
		return auditIDs(es)
	}
	until := base.Add(50*time.Second + 500*time.Millisecond) // o2's event 5
	since := base.Add(20 * time.Second)                      // o1's event 20
	for _, f := range []struct {
		q    store.AuditQuery
		keep func(store.AuditEvent) bool
	}{
		{store.AuditQuery{}, func(store.AuditEvent) bool { return true }},
		{store.AuditQuery{BeforeSeq: 5}, func(store.AuditEvent) bool { return true }},
		{store.AuditQuery{Action: "login"}, func(e store.AuditEvent) bool { return e.Action == "login" }},
		{store.AuditQuery{Actor: "user:u1"}, func(e store.AuditEvent) bool { return e.Actor == "user:u1" }},
		{store.AuditQuery{Target: "user:u2", Actor: "system"}, func(e store.AuditEvent) bool {
			return e.Target == "user:u2" && e.Actor == "system"
		}},
		{store.AuditQuery{Until: until}, func(e store.AuditEvent) bool { return e.Time.Before(until) }},
		{store.AuditQuery{Since: since, Until: until, Action: "logout"}, func(e store.AuditEvent) bool {
			return !e.Time.Before(since) && e.Time.Before(until) && e.Action == "logout"
		}},
	} {
		want := auditIDs(keepAudit(all, f.keep))
		q := f.q
		q.Limit = 1000
		mustEqual(t, want, list(q))
		q.Limit = 5
		mustEqual(t, want[:min(5, len(want))], list(q))
	}
	// Until is exclusive: o2's event at until is left out.
	mustEqual(t, []string{"o10-e005"}, list(store.AuditQuery{Until: until, Limit: 1}))
	mustEqual(t, []string{"o2-e005"}, list(store.AuditQuery{Until: until.Add(time.Microsecond), Limit: 1}))
}
