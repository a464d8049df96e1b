package storetest

import (
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

func newAPIToken(id, orgID, createdBy string, created time.Time) store.APIToken {
	role := store.RoleAdmin
	if orgID == "" {
		role = store.RolePlatformAdmin
	}
	return store.APIToken{
		ID:        id,
		OrgID:     orgID,
		Role:      role,
		Name:      "token " + id,
		Hash:      "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		CreatedBy: createdBy,
		CreatedAt: created,
		ExpiresAt: created.Add(90 * 24 * time.Hour),
	}
}

func testAPITokens(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o10", "o2"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	for _, u := range []string{"u1", "u2"} {
		mustOK(t, s.CreateUser(ctx, newUser(u)))
	}
	// In o1 the creation times are out of ID order, and b and a0 were made
	// at the same instant.
	a := newAPIToken("a", "o1", "u1", base.Add(3*time.Minute))
	b := newAPIToken("b", "o1", "u2", base.Add(time.Minute))
	a0 := newAPIToken("a0", "o1", "", base.Add(time.Minute))
	z := newAPIToken("z", "o1", "u1", base)
	z.LastUsedAt, z.RevokedAt = base.Add(time.Hour), base.Add(2*time.Hour)
	c := newAPIToken("c", "o10", "u1", base)
	p1 := newAPIToken("p1", "", "u1", base.Add(time.Second))
	p2 := newAPIToken("p2", "", "", base)
	for _, tok := range []store.APIToken{a, b, a0, z, c, p1, p2} {
		mustOK(t, s.CreateAPIToken(ctx, tok))
	}

	get := func(id string) store.APIToken {
		t.Helper()
		tok, err := s.GetAPIToken(ctx, id)
		mustOK(t, err)
		return tok
	}
	list := func(org string) []store.APIToken {
		t.Helper()
		ts, err := s.ListAPITokens(ctx, org)
		mustOK(t, err)
		return ts
	}
	mustEqual(t, z, get("z"))
	mustEqual(t, p2, get("p2"))
	mustEqual(t, []store.APIToken{z, a0, b, a}, list("o1"))
	mustEqual(t, []store.APIToken{c}, list("o10"))
	mustEqual(t, []store.APIToken{p2, p1}, list(""))
	for _, org := range []string{"o2", "nothing", "o"} {
		if ts := list(org); len(ts) != 0 {
			t.Errorf("ListAPITokens(%q) = %+v", org, ts)
		}
	}

	// Errors: a taken ID (in any org) changes nothing.
	dup := newAPIToken("a", "o2", "u2", base)
	mustIs(t, s.CreateAPIToken(ctx, dup), store.ErrAlreadyExists)
	mustEqual(t, a, get("a"))
	if ts := list("o2"); len(ts) != 0 {
		t.Errorf("a duplicate was listed: %+v", ts)
	}
	if err := s.CreateAPIToken(ctx, newAPIToken("", "o1", "", base)); err == nil {
		t.Error("CreateAPIToken with an empty ID succeeded")
	}
	// A token outlives neither its org nor its maker, so one cannot be
	// made for either if missing.
	for _, tok := range []store.APIToken{newAPIToken("x1", "missing", "", base), newAPIToken("x2", "o1", "missing", base)} {
		if err := s.CreateAPIToken(ctx, tok); err == nil {
			t.Errorf("CreateAPIToken for org %q by %q succeeded", tok.OrgID, tok.CreatedBy)
		}
		_, err := s.GetAPIToken(ctx, tok.ID)
		mustIs(t, err, store.ErrNotFound)
	}
	_, err := s.GetAPIToken(ctx, "missing")
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.DeleteAPIToken(ctx, "missing"), store.ErrNotFound)

	// Update: used, then revoked; a new creation time reorders the list.
	want := a
	want.LastUsedAt = base.Add(time.Hour)
	updated, err := s.UpdateAPIToken(ctx, "a", func(tok store.APIToken) (store.APIToken, error) {
		mustEqual(t, a, tok)
		tok.LastUsedAt = want.LastUsedAt
		return tok, nil
	})
	mustOK(t, err)
	mustEqual(t, want, updated)
	mustEqual(t, want, get("a"))
	want.RevokedAt, want.CreatedAt = base.Add(2*time.Hour), base.Add(-time.Minute)
	_, err = s.UpdateAPIToken(ctx, "a", func(tok store.APIToken) (store.APIToken, error) {
		tok.RevokedAt, tok.CreatedAt = want.RevokedAt, want.CreatedAt
		return tok, nil
	})
	mustOK(t, err)
	mustEqual(t, want, get("a"))
	mustEqual(t, []store.APIToken{want, z, a0, b}, list("o1"))

	// Its org, its maker and its ID are fixed.
	for name, change := range map[string]func(*store.APIToken){
		"org":        func(tok *store.APIToken) { tok.OrgID = "o2" },
		"no org":     func(tok *store.APIToken) { tok.OrgID = "" },
		"creator":    func(tok *store.APIToken) { tok.CreatedBy = "u2" },
		"no creator": func(tok *store.APIToken) { tok.CreatedBy = "" },
		"id":         func(tok *store.APIToken) { tok.ID = "a2" },
	} {
		_, err := s.UpdateAPIToken(ctx, "a", func(tok store.APIToken) (store.APIToken, error) {
			change(&tok)
			tok.Name = "should not stick"
			return tok, nil
		})
		if err == nil {
			t.Errorf("UpdateAPIToken changing its %s succeeded", name)
		}
		mustEqual(t, want, get("a"))
	}
	mustEqual(t, []store.APIToken{want, z, a0, b}, list("o1"))
	if ts := list("o2"); len(ts) != 0 {
		t.Errorf("o2 after refused updates: %+v", ts)
	}

	mustOK(t, s.DeleteAPIToken(ctx, "a"))
	_, err = s.GetAPIToken(ctx, "a")
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.DeleteAPIToken(ctx, "a"), store.ErrNotFound)
	mustEqual(t, []store.APIToken{z, a0, b}, list("o1"))
	mustOK(t, s.DeleteAPIToken(ctx, "p2"))
	mustEqual(t, []store.APIToken{p1}, list(""))

	// The ID is free again.
	a.OrgID = "o2"
	mustOK(t, s.CreateAPIToken(ctx, a))
	mustEqual(t, []store.APIToken{a}, list("o2"))
}

// testAPITokenCascades: deleting an org takes its tokens, deleting a user
// the tokens it made; nothing else.
func testAPITokenCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o2", "o10"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	for _, u := range []string{"u1", "u2", "u10"} {
		mustOK(t, s.CreateUser(ctx, newUser(u)))
	}
	tokens := map[string][2]string{ // id -> org, creator
		"o1-u1": {"o1", "u1"}, "o1-u2": {"o1", "u2"}, "o1-none": {"o1", ""},
		"o2-u1": {"o2", "u1"}, "o2-u2": {"o2", "u2"},
		"o10-u10": {"o10", "u10"},
		"p-u1":    {"", "u1"}, "p-u2": {"", "u2"}, "p-none": {"", ""},
	}
	i := 0
	for id, oc := range tokens {
		i++
		mustOK(t, s.CreateAPIToken(ctx, newAPIToken(id, oc[0], oc[1], base.Add(time.Duration(i)*time.Second))))
	}
	alive := func(want ...string) {
		t.Helper()
		listed := map[string]bool{}
		for _, org := range []string{"o1", "o2", "o10", ""} {
			ts, err := s.ListAPITokens(ctx, org)
			mustOK(t, err)
			for _, tok := range ts {
				listed[tok.ID] = true
			}
		}
		for id := range tokens {
			_, err := s.GetAPIToken(ctx, id)
			isAlive := slices.Contains(want, id)
			if isAlive != (err == nil) || (err != nil && !errors.Is(err, store.ErrNotFound)) {
				t.Errorf("token %s: %v, want alive %v", id, err, isAlive)
			}
			if listed[id] != isAlive {
				t.Errorf("token %s listed %v, want %v", id, listed[id], isAlive)
			}
		}
	}
	alive("o1-u1", "o1-u2", "o1-none", "o2-u1", "o2-u2", "o10-u10", "p-u1", "p-u2", "p-none")

	// A user: every token it made, in any org or the platform.
	mustOK(t, s.DeleteUser(ctx, "u1"))
	alive("o1-u2", "o1-none", "o2-u2", "o10-u10", "p-u2", "p-none")

	// An org: every token in it, whoever made it.
	mustOK(t, s.DeleteOrg(ctx, "o1"))
	alive("o2-u2", "o10-u10", "p-u2", "p-none")

	// Removing a membership takes no token.
	mustOK(t, s.CreateMembership(ctx, newMembership("u2", "o2")))
	mustOK(t, s.DeleteMembership(ctx, "u2", "o2"))
	alive("o2-u2", "o10-u10", "p-u2", "p-none")

	mustOK(t, s.DeleteUser(ctx, "u2"))
	alive("o10-u10", "p-none")
}

// testConcurrentUpdateAPIToken: concurrent updates of one token are
// serialized, none lost.
func testConcurrentUpdateAPIToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateAPIToken(ctx, newAPIToken("t", "", "", base)))
	const workers, rounds = 10, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				_, err := s.UpdateAPIToken(ctx, "t", func(tok store.APIToken) (store.APIToken, error) {
					n, _ := strconv.Atoi(tok.Name)
					tok.Name = strconv.Itoa(n + 1)
					tok.LastUsedAt = base.Add(time.Duration(n+1) * time.Second)
					return tok, nil
				})
				if err != nil {
					t.Errorf("UpdateAPIToken: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	tok, err := s.GetAPIToken(ctx, "t")
	mustOK(t, err)
	if tok.Name != strconv.Itoa(workers*rounds) {
		t.Errorf("Name = %s after %d increments; updates were lost", tok.Name, workers*rounds)
	}
}
