package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// testDeleteOrgMany: an org with thousands of members goes whole, however
// the backend splits the work: every membership (with its place in the
// member lists), its members' sessions there and its API tokens, and
// nothing else. Its ID and slug are free again, for an org that inherits
// nothing.
func testDeleteOrgMany(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 2000
	mustOK(t, s.CreateOrg(ctx, newOrg("big")))
	mustOK(t, s.CreateOrg(ctx, newOrg("other")))
	uid := func(i int) string { return fmt.Sprintf("m%05d", i) }
	exp := now().Add(time.Hour)
	parallel(t, n, func(i int) error {
		id := uid(i)
		// One in fifty members has no user (a membership made first).
		if i%50 != 49 {
			u := newUser(id)
			u.Name = fmt.Sprintf("Member %d", i)
			if err := s.CreateUser(ctx, u); err != nil {
				return err
			}
		}
		if err := s.CreateMembership(ctx, newMembership(id, "big")); err != nil {
			return err
		}
		if i%7 == 0 {
			se := newSession("sb-"+id, id, exp)
			se.OrgID = "big"
			if err := s.CreateSession(ctx, se); err != nil {
				return err
			}
		}
		if i%10 == 0 {
			if err := s.CreateMembership(ctx, newMembership(id, "other")); err != nil {
				return err
			}
			se := newSession("so-"+id, id, exp)
			se.OrgID = "other"
			return s.CreateSession(ctx, se)
		}
		return nil
	})
	bigTokens := []store.APIToken{newAPIToken("tb1", "big", uid(0), base), newAPIToken("tb2", "big", "", base.Add(time.Second))}
	otherTokens := []store.APIToken{newAPIToken("to1", "other", uid(0), base), newAPIToken("tp", "", uid(10), base)}
	for _, tok := range append(slices.Clone(bigTokens), otherTokens...) {
		mustOK(t, s.CreateAPIToken(ctx, tok))
	}
	mustOK(t, s.AppendAudit(ctx, store.AuditEvent{OrgID: "big", Actor: "a", Action: "b"}))

	mustOK(t, s.DeleteOrg(ctx, "big"))

	_, err := s.GetOrg(ctx, "big")
	mustIs(t, err, store.ErrNotFound)
	_, err = s.GetOrgBySlug(ctx, "slug-big")
	mustIs(t, err, store.ErrNotFound)
	orgs, err := s.ListOrgs(ctx)
	mustOK(t, err)
	if len(orgs) != 1 || orgs[0].ID != "other" {
		t.Errorf("ListOrgs after deleting big: %+v", orgs)
	}
	mustIs(t, s.DeleteOrg(ctx, "big"), store.ErrNotFound)
	gone := func() {
		t.Helper()
		ms, err := s.ListMembershipsByOrg(ctx, "big")
		mustOK(t, err)
		if len(ms) != 0 {
			t.Errorf("big still has %d memberships", len(ms))
		}
		members, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "big"})
		mustOK(t, err)
		if len(members) != 0 {
			t.Errorf("big still lists %d members", len(members))
		}
		for _, q := range []string{"member", "m0"} {
			members, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "big", Search: q})
			mustOK(t, err)
			if len(members) != 0 {
				t.Errorf("big still finds %d members for %q", len(members), q)
			}
		}
		ts, err := s.ListAPITokens(ctx, "big")
		mustOK(t, err)
		if len(ts) != 0 {
			t.Errorf("big still has tokens %+v", ts)
		}
	}
	gone()
	for i := range n {
		id := uid(i)
		_, err := s.GetMembership(ctx, id, "big")
		mustIs(t, err, store.ErrNotFound)
		ms, err := s.ListMembershipsByUser(ctx, id)
		mustOK(t, err)
		var orgs []string
		for _, m := range ms {
			orgs = append(orgs, m.OrgID)
		}
		if want := []string{"other"}; (i%10 == 0) != slices.Equal(orgs, want) || (i%10 != 0 && len(orgs) != 0) {
			t.Fatalf("%s's memberships after big went: %v", id, orgs)
		}
		if _, err := s.GetUser(ctx, id); (err == nil) != (i%50 != 49) {
			t.Fatalf("user %s after big went: %v", id, err)
		}
		ss, err := s.ListSessionsByUser(ctx, id)
		mustOK(t, err)
		for _, se := range ss {
			if se.OrgID == "big" {
				t.Fatalf("session %s in big outlived it", se.ID)
			}
		}
		if i%10 == 0 && len(ss) != 1 {
			t.Fatalf("%s's session in other: %+v", id, ss)
		}
	}
	for _, tok := range bigTokens {
		_, err := s.GetAPIToken(ctx, tok.ID)
		mustIs(t, err, store.ErrNotFound)
	}
	for _, tok := range otherTokens {
		_, err := s.GetAPIToken(ctx, tok.ID)
		mustOK(t, err)
	}
	members := pageMembers(t, s, store.MemberQuery{OrgID: "other", Limit: 77})
	if len(members) != n/10 {
		t.Errorf("other lists %d members, want %d", len(members), n/10)
	}
	es, err := s.ListAudit(ctx, store.AuditQuery{OrgID: "big"})
	mustOK(t, err)
	if len(es) != 1 {
		t.Errorf("big's audit trail: %d events, want it kept", len(es))
	}

	// Nothing more can hang off the deleted org.
	mustIs(t, s.CreateMembership(ctx, newMembership(uid(1), "big")), store.ErrNotFound)
	mustIs(t, s.CreateAPIToken(ctx, newAPIToken("tb3", "big", "", base)), store.ErrNotFound)

	// The slug, and the ID, make a new org that inherits nothing.
	mustOK(t, s.CreateOrg(ctx, newOrg("big")))
	gone()
	_, err = s.GetMembership(ctx, uid(3), "big")
	mustIs(t, err, store.ErrNotFound)
	mustOK(t, s.CreateMembership(ctx, newMembership(uid(3), "big")))
	ms, err := s.ListMembershipsByOrg(ctx, "big")
	mustOK(t, err)
	if len(ms) != 1 || ms[0].UserID != uid(3) {
		t.Errorf("the new big's memberships: %+v", ms)
	}
}

// testDeleteOrgRaces: memberships and API tokens created while their org
// is deleted either fail with ErrNotFound or go with it: none outlives
// the org, and once DeleteOrg has returned every such write fails.
func testDeleteOrgRaces(t *testing.T, s store.Store) {
	ctx := t.Context()
	const members, writers, perWriter = 300, 4, 60
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	parallel(t, members, func(i int) error {
		id := fmt.Sprintf("u%03d", i)
		if err := s.CreateUser(ctx, newUser(id)); err != nil {
			return err
		}
		return s.CreateMembership(ctx, newMembership(id, "o1"))
	})
	var (
		wg      sync.WaitGroup
		deleted = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("late-%d-%d", w, i)
				done := false
				select {
				case <-deleted:
					done = true
				default:
				}
				if err := s.CreateUser(ctx, newUser(id)); err != nil {
					t.Error(err)
					return
				}
				err := s.CreateMembership(ctx, newMembership(id, "o1"))
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("CreateMembership(%s, o1): %v", id, err)
				}
				if done && err == nil {
					t.Errorf("CreateMembership(%s, o1) succeeded after DeleteOrg returned", id)
				}
				err = s.CreateAPIToken(ctx, newAPIToken("t-"+id, "o1", "", base))
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					t.Errorf("CreateAPIToken(o1): %v", err)
				}
				if done && err == nil {
					t.Errorf("CreateAPIToken(t-%s, o1) succeeded after DeleteOrg returned", id)
				}
			}
		})
	}
	time.Sleep(time.Millisecond)
	mustOK(t, s.DeleteOrg(ctx, "o1"))
	close(deleted)
	wg.Wait()

	ms, err := s.ListMembershipsByOrg(ctx, "o1")
	mustOK(t, err)
	if len(ms) != 0 {
		t.Errorf("%d memberships outlived their org", len(ms))
	}
	for w := range writers {
		for i := range perWriter {
			id := fmt.Sprintf("late-%d-%d", w, i)
			ms, err := s.ListMembershipsByUser(ctx, id)
			mustOK(t, err)
			if len(ms) != 0 {
				t.Errorf("%s's membership outlived its org: %+v", id, ms)
			}
			_, err = s.GetAPIToken(ctx, "t-"+id)
			mustIs(t, err, store.ErrNotFound)
		}
	}
}
