package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

func newInvitation(id, orgID, email, createdBy string, created time.Time) store.Invitation {
	return store.Invitation{
		ID: id, OrgID: orgID, Email: email, Name: "Name " + id, Roles: []string{"member"},
		Hash: "hash-" + id, CreatedBy: createdBy, CreatedAt: created, SentAt: created,
		ExpiresAt: created.Add(7 * 24 * time.Hour),
	}
}

func testInvitations(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o2", "o10"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	mustOK(t, s.CreateUser(ctx, newUser("u1")))
	a := newInvitation("a", "o1", "a@example.com", "u1", base.Add(2*time.Minute))
	b := newInvitation("b", "o1", "b@example.com", "", base)
	c := newInvitation("c", "o10", "a@example.com", "u1", base)
	for _, inv := range []store.Invitation{a, b, c} {
		mustOK(t, s.CreateInvitation(ctx, inv))
	}
	list := func(org string) []store.Invitation {
		t.Helper()
		l, err := s.ListInvitations(ctx, org)
		mustOK(t, err)
		return l
	}
	mustEqual(t, []store.Invitation{b, a}, list("o1"))
	mustEqual(t, []store.Invitation{c}, list("o10"))
	mustEqual(t, []store.Invitation{}, list("o2"))
	mustEqual(t, []store.Invitation{}, list("o"))
	got, err := s.GetInvitation(ctx, "a")
	mustOK(t, err)
	mustEqual(t, a, got)
	got, err = s.GetInvitationByHash(ctx, "hash-a")
	mustOK(t, err)
	mustEqual(t, a, got)

	// Refused, changing nothing: a taken ID, hash, or pending address in
	// the org; a missing org or maker; missing fields.
	refused := map[string]store.Invitation{
		"id":      newInvitation("a", "o2", "x@example.com", "", base),
		"address": newInvitation("x", "o1", "a@example.com", "", base),
		"org":     newInvitation("y", "missing", "y@example.com", "", base),
		"maker":   newInvitation("z", "o2", "z@example.com", "missing", base),
		"no id":   newInvitation("", "o2", "z@example.com", "", base),
	}
	hash := newInvitation("h", "o2", "h@example.com", "", base)
	hash.Hash = a.Hash
	refused["hash"] = hash
	noHash := newInvitation("n", "o2", "n@example.com", "", base)
	noHash.Hash = ""
	refused["no hash"] = noHash
	for name, inv := range refused {
		if err := s.CreateInvitation(ctx, inv); err == nil {
			t.Errorf("CreateInvitation with a bad %s succeeded", name)
		}
	}
	mustIs(t, s.CreateInvitation(ctx, refused["address"]), store.ErrAlreadyExists)
	mustEqual(t, []store.Invitation{b, a}, list("o1"))
	mustEqual(t, []store.Invitation{}, list("o2"))

	// A resend: a new hash and expiry; the old hash finds nothing.
	want := a
	want.Hash, want.SentAt, want.ExpiresAt = "hash-a2", base.Add(time.Hour), base.Add(48*time.Hour)
	got, err = s.UpdateInvitation(ctx, "a", func(inv store.Invitation) (store.Invitation, error) {
		inv.Hash, inv.SentAt, inv.ExpiresAt = want.Hash, want.SentAt, want.ExpiresAt
		return inv, nil
	})
	mustOK(t, err)
	mustEqual(t, want, got)
	_, err = s.GetInvitationByHash(ctx, "hash-a")
	mustIs(t, err, store.ErrNotFound)
	got, err = s.GetInvitationByHash(ctx, "hash-a2")
	mustOK(t, err)
	mustEqual(t, want, got)
	for name, change := range map[string]func(*store.Invitation){
		"id":         func(inv *store.Invitation) { inv.ID = "a9" },
		"org":        func(inv *store.Invitation) { inv.OrgID = "o2" },
		"email":      func(inv *store.Invitation) { inv.Email = "q@example.com" },
		"maker":      func(inv *store.Invitation) { inv.CreatedBy = "" },
		"taken hash": func(inv *store.Invitation) { inv.Hash = "hash-b" },
		"no hash":    func(inv *store.Invitation) { inv.Hash = "" },
	} {
		_, err := s.UpdateInvitation(ctx, "a", func(inv store.Invitation) (store.Invitation, error) {
			change(&inv)
			inv.Name = "should not stick"
			return inv, nil
		})
		if err == nil {
			t.Errorf("UpdateInvitation changing its %s succeeded", name)
		}
		got, err := s.GetInvitation(ctx, "a")
		mustOK(t, err)
		mustEqual(t, want, got)
	}
	_, err = s.UpdateInvitation(ctx, "missing", func(inv store.Invitation) (store.Invitation, error) { return inv, nil })
	mustIs(t, err, store.ErrNotFound)

	mustOK(t, s.DeleteInvitation(ctx, "a"))
	mustIs(t, s.DeleteInvitation(ctx, "a"), store.ErrNotFound)
	_, err = s.GetInvitation(ctx, "a")
	mustIs(t, err, store.ErrNotFound)
	_, err = s.GetInvitationByHash(ctx, "hash-a2")
	mustIs(t, err, store.ErrNotFound)
	mustEqual(t, []store.Invitation{b}, list("o1"))
	// The address and the hash are free again.
	a.Hash = "hash-a2"
	mustOK(t, s.CreateInvitation(ctx, a))
	mustEqual(t, []store.Invitation{b, a}, list("o1"))
}

// testInvitationTake: an invitation is taken once, only before it
// expires, and an expired one stays for a resend.
func testInvitationTake(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	inv := newInvitation("a", "o1", "a@example.com", "", base)
	mustOK(t, s.CreateInvitation(ctx, inv))

	_, err := s.TakeInvitation(ctx, inv.Hash, inv.ExpiresAt)
	mustIs(t, err, store.ErrNotFound)
	_, err = s.TakeInvitation(ctx, inv.Hash, inv.ExpiresAt.Add(time.Hour))
	mustIs(t, err, store.ErrNotFound)
	if _, err := s.GetInvitation(ctx, "a"); err != nil {
		t.Fatalf("an expired invitation was deleted by a take: %v", err)
	}
	_, err = s.TakeInvitation(ctx, "hash-other", base)
	mustIs(t, err, store.ErrNotFound)

	const n = 10
	var (
		wg   sync.WaitGroup
		errs = make([]error, n)
		got  = make([]store.Invitation, n)
	)
	for i := range n {
		wg.Go(func() { got[i], errs[i] = s.TakeInvitation(ctx, inv.Hash, inv.ExpiresAt.Add(-time.Nanosecond)) })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
			mustEqual(t, inv, got[i])
		case !errors.Is(err, store.ErrNotFound):
			t.Errorf("take %d: %v", i, err)
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent takes succeeded, want 1", won)
	}
	_, err = s.GetInvitation(ctx, "a")
	mustIs(t, err, store.ErrNotFound)
	l, err := s.ListInvitations(ctx, "o1")
	mustOK(t, err)
	mustEqual(t, []store.Invitation{}, l)
	mustOK(t, s.CreateInvitation(ctx, inv)) // its address is free again
}

// testInvitationCascades: deleting an org takes its invitations, deleting
// a user the invitations they made; nothing else.
func testInvitationCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o2"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	for _, u := range []string{"u1", "u2"} {
		mustOK(t, s.CreateUser(ctx, newUser(u)))
	}
	ids := map[string][2]string{"o1-u1": {"o1", "u1"}, "o1-u2": {"o1", "u2"}, "o1-none": {"o1", ""}, "o2-u1": {"o2", "u1"}, "o2-u2": {"o2", "u2"}}
	for id, oc := range ids {
		mustOK(t, s.CreateInvitation(ctx, newInvitation(id, oc[0], id+"@example.com", oc[1], base)))
	}
	alive := func(want ...string) {
		t.Helper()
		for id := range ids {
			_, err := s.GetInvitation(ctx, id)
			isAlive := false
			for _, w := range want {
				isAlive = isAlive || w == id
			}
			if isAlive != (err == nil) || (err != nil && !errors.Is(err, store.ErrNotFound)) {
				t.Errorf("invitation %s: %v, want alive %v", id, err, isAlive)
			}
			if _, err := s.GetInvitationByHash(ctx, "hash-"+id); isAlive != (err == nil) {
				t.Errorf("invitation %s by hash: %v, want alive %v", id, err, isAlive)
			}
		}
	}
	mustOK(t, s.DeleteUser(ctx, "u1"))
	alive("o1-u2", "o1-none", "o2-u2")
	mustOK(t, s.DeleteOrg(ctx, "o1"))
	alive("o2-u2")
	l, err := s.ListInvitations(ctx, "o1")
	mustOK(t, err)
	mustEqual(t, []store.Invitation{}, l)
	// The deleted org's addresses and hashes are free again.
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	mustOK(t, s.CreateInvitation(ctx, newInvitation("o1-u2", "o1", "o1-u2@example.com", "u2", base)))
	if _, err := s.GetInvitation(ctx, "o1-u2"); err != nil {
		t.Fatal(fmt.Errorf("recreated: %w", err))
	}
}
