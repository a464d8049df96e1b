package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

func newFamily(id, client, user, org, session string, exp time.Time) store.RefreshFamily {
	return store.RefreshFamily{ID: id, ClientID: client, UserID: user, OrgID: org, SessionID: session, Scopes: []string{"openid"},
		AuthTime: base, CreatedAt: base, ExpiresAt: exp, Generation: 1}
}

func testRefreshFamilies(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o2"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	for _, u := range []string{"u1", "u2"} {
		mustOK(t, s.CreateUser(ctx, newUser(u)))
	}
	exp := base.Add(time.Hour)
	a := newFamily("a", "c1", "u1", "o1", "s1", exp)
	b := newFamily("b", "c2", "u1", "o1", "s1", exp)
	c := newFamily("c", "c1", "u2", "o2", "", exp)
	for _, f := range []store.RefreshFamily{a, b, c} {
		mustOK(t, s.CreateRefreshFamily(ctx, f))
	}
	get := func(id string) store.RefreshFamily {
		t.Helper()
		f, err := s.GetRefreshFamily(ctx, id)
		mustOK(t, err)
		return f
	}
	mustEqual(t, a, get("a"))
	bySession := func(sid string) []store.RefreshFamily {
		t.Helper()
		l, err := s.ListRefreshFamiliesBySession(ctx, sid)
		mustOK(t, err)
		return l
	}
	mustEqual(t, []store.RefreshFamily{a, b}, bySession("s1"))
	mustEqual(t, []store.RefreshFamily{}, bySession("s2"))
	mustEqual(t, []store.RefreshFamily{}, bySession(""))

	for name, f := range map[string]store.RefreshFamily{
		"taken id":     newFamily("a", "c1", "u1", "o1", "", exp),
		"no user":      newFamily("x", "c1", "missing", "o1", "", exp),
		"no org":       newFamily("y", "c1", "u1", "missing", "", exp),
		"empty client": newFamily("z", "", "u1", "o1", "", exp),
	} {
		if err := s.CreateRefreshFamily(ctx, f); err == nil {
			t.Errorf("CreateRefreshFamily with %s succeeded", name)
		}
	}
	mustIs(t, s.CreateRefreshFamily(ctx, newFamily("a", "c1", "u1", "o1", "", exp)), store.ErrAlreadyExists)

	// Rotation: one generation at a time, the fixed fields fixed.
	want := a
	want.Generation, want.UsedAt = 2, base.Add(time.Minute)
	got, err := s.UpdateRefreshFamily(ctx, "a", func(f store.RefreshFamily) (store.RefreshFamily, error) {
		f.Generation, f.UsedAt = 2, base.Add(time.Minute)
		return f, nil
	})
	mustOK(t, err)
	mustEqual(t, want, got)
	for name, change := range map[string]func(*store.RefreshFamily){
		"client":  func(f *store.RefreshFamily) { f.ClientID = "c2" },
		"user":    func(f *store.RefreshFamily) { f.UserID = "u2" },
		"org":     func(f *store.RefreshFamily) { f.OrgID = "o2" },
		"session": func(f *store.RefreshFamily) { f.SessionID = "" },
		"expiry":  func(f *store.RefreshFamily) { f.ExpiresAt = f.ExpiresAt.Add(time.Hour) },
	} {
		if _, err := s.UpdateRefreshFamily(ctx, "a", func(f store.RefreshFamily) (store.RefreshFamily, error) {
			change(&f)
			f.Generation = 99
			return f, nil
		}); err == nil {
			t.Errorf("UpdateRefreshFamily changing its %s succeeded", name)
		}
	}
	mustEqual(t, want, get("a"))
	if _, err := s.UpdateRefreshFamily(ctx, "a", func(f store.RefreshFamily) (store.RefreshFamily, error) { return f, errBoom }); !errors.Is(err, errBoom) {
		t.Errorf("fn's error: %v", err)
	}
	_, err = s.UpdateRefreshFamily(ctx, "missing", func(f store.RefreshFamily) (store.RefreshFamily, error) { return f, nil })
	mustIs(t, err, store.ErrNotFound)

	// Expiry sweep: only those expired before the instant.
	mustOK(t, s.CreateRefreshFamily(ctx, newFamily("old", "c1", "u2", "o2", "s9", base.Add(-time.Hour))))
	n, err := s.DeleteExpiredRefreshFamilies(ctx, base)
	mustOK(t, err)
	if n != 1 {
		t.Errorf("swept %d, want 1", n)
	}
	_, err = s.GetRefreshFamily(ctx, "old")
	mustIs(t, err, store.ErrNotFound)
	mustEqual(t, []store.RefreshFamily{}, bySession("s9"))
	mustEqual(t, c, get("c"))

	// Cascades: a user takes theirs (and the blobs about them), an org
	// its own.
	mustOK(t, s.PutBlob(ctx, store.UserBlobKey("u1", "consent", "c1"), []byte("x")))
	mustOK(t, s.PutBlob(ctx, store.UserBlobKey("u2", "consent", "c1"), []byte("y")))
	mustOK(t, s.PutBlob(ctx, store.UserBlobKey("u10", "consent", "c1"), []byte("z")))
	mustOK(t, s.DeleteUser(ctx, "u1"))
	_, err = s.GetBlob(ctx, store.UserBlobKey("u1", "consent", "c1"))
	mustIs(t, err, store.ErrNotFound)
	for _, u := range []string{"u2", "u10"} {
		if _, err := s.GetBlob(ctx, store.UserBlobKey(u, "consent", "c1")); err != nil {
			t.Errorf("%s's blob went with u1: %v", u, err)
		}
	}
	for _, id := range []string{"a", "b"} {
		_, err := s.GetRefreshFamily(ctx, id)
		mustIs(t, err, store.ErrNotFound)
	}
	mustEqual(t, []store.RefreshFamily{}, bySession("s1"))
	mustEqual(t, c, get("c"))
	mustOK(t, s.DeleteOrg(ctx, "o2"))
	_, err = s.GetRefreshFamily(ctx, "c")
	mustIs(t, err, store.ErrNotFound)
}
