// Package storetest is the conformance suite every store.Store backend must
// pass. A backend's tests call RunTests with a constructor for empty stores.
package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// RunTests runs the suite. newStore must return a new, empty store and
// register its cleanup with t.Cleanup; some subtests close the store
// themselves, so the cleanup must tolerate store.ErrClosed from Close.
func RunTests(t *testing.T, newStore func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"OrgCRUD", testOrgCRUD},
		{"OrgErrors", testOrgErrors},
		{"OrgSlugChange", testOrgSlugChange},
		{"UserCRUD", testUserCRUD},
		{"UserEmail", testUserEmail},
		{"UserEmailUniqueUnderConcurrency", testUserEmailConcurrent},
		{"Memberships", testMemberships},
		{"ListMembers", testListMembers},
		{"ListMembersSearch", testListMembersSearch},
		{"ListMembersFollowsWrites", testListMembersFollowsWrites},
		{"ListMembersConcurrentWrites", testListMembersConcurrentWrites},
		{"RecordFlags", testRecordFlags},
		{"APITokens", testAPITokens},
		{"APITokenCascades", testAPITokenCascades},
		{"ConcurrentUpdateAPIToken", testConcurrentUpdateAPIToken},
		{"Invitations", testInvitations},
		{"InvitationTake", testInvitationTake},
		{"InvitationCascades", testInvitationCascades},
		{"RefreshFamilies", testRefreshFamilies},
		{"OIDCClients", testOIDCClients},
		{"Sessions", testSessions},
		{"DeleteExpiredSessions", testDeleteExpiredSessions},
		{"SigningKeys", testSigningKeys},
		{"Audit", testAudit},
		{"AuditFillsIDAndTime", testAuditFills},
		{"AuditDefaultLimit", testAuditDefaultLimit},
		{"AuditChain", testAuditChain},
		{"AuditCursor", testAuditCursor},
		{"AuditFilters", testAuditFilters},
		{"DeleteCascades", testDeleteCascades},
		{"DeleteOrgMany", testDeleteOrgMany},
		{"DeleteOrgRaces", testDeleteOrgRaces},
		{"Once", testOnce},
		{"OddLookupKeys", testOddLookupKeys},
		{"AuditOddText", testAuditOddText},
		{"OnceExpiry", testOnceExpiry},
		{"OnceConcurrentTake", testOnceConcurrentTake},
		{"OnceGetUpdate", testOnceGetUpdate},
		{"Secret", testSecret},
		{"SecretConcurrent", testSecretConcurrent},
		{"UpdateSemantics", testUpdateSemantics},
		{"ConcurrentUpdateOrg", testConcurrentUpdateOrg},
		{"ConcurrentUpdateSession", testConcurrentUpdateSession},
		{"IDsAreOpaque", testOpaqueIDs},
		{"ResultsAreCopies", testResultsAreCopies},
		{"Blobs", testBlobs},
		{"BlobKeys", testBlobKeys},
		{"Locks", testLocks},
		{"LockConcurrent", testLockConcurrent},
		{"Ping", testPing},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, newStore(t))
		})
	}
}

// base is a fixed timestamp with microsecond precision, which every backend
// (including SQL ones) can round-trip exactly.
var base = time.Date(2025, 3, 4, 5, 6, 7, 891011000, time.UTC)

// now is the wall clock at microsecond precision, for expiry tests.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

var errBoom = errors.New("storetest: boom")

func newOrg(id string) store.Org {
	return store.Org{
		ID:           id,
		Slug:         "slug-" + id,
		Name:         "Org " + id,
		EmailDomains: []string{id + ".example.com"},
		LoginDomain:  "login." + id + ".example.com",
		Connection:   store.Connection{Type: "password"},
		Attributes:   map[string]string{"tier": "gold"},
		CreatedAt:    base,
		UpdatedAt:    base,
	}
}

func newUser(id string) store.User {
	return store.User{ID: id, Email: id + "@example.com", Name: "User " + id, CreatedAt: base, UpdatedAt: base}
}

func newMembership(userID, orgID string) store.Membership {
	return store.Membership{
		UserID:       userID,
		OrgID:        orgID,
		Roles:        []string{"member"},
		Groups:       []string{"eng"},
		PasswordHash: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA",
		CreatedAt:    base,
		UpdatedAt:    base,
	}
}

func newSession(id, userID string, expires time.Time) store.Session {
	return store.Session{
		ID:         id,
		UserID:     userID,
		OrgID:      "o1",
		Connection: "password",
		ClientAddr: "192.0.2.1",
		UserAgent:  "test",
		CreatedAt:  base,
		ExpiresAt:  expires,
		LastSeenAt: base,
	}
}

func newSigningKey(id string) store.SigningKey {
	return store.SigningKey{
		ID:         id,
		Algorithm:  "ES256",
		PrivateKey: []byte{0x30, 0x00, 0xff, byte(len(id))},
		CreatedAt:  base,
		ActiveAt:   base.Add(time.Hour),
	}
}

func testOrgCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	o1, o2 := newOrg("o1"), newOrg("o2")
	o2.ParentID = "o1"
	o2.Connection.Type = "oidc"
	o2.Attributes = nil
	mustOK(t, s.CreateOrg(ctx, o1))
	mustOK(t, s.CreateOrg(ctx, o2))

	got, err := s.GetOrg(ctx, "o1")
	mustOK(t, err)
	mustEqual(t, o1, got)
	got, err = s.GetOrgBySlug(ctx, "slug-o2")
	mustOK(t, err)
	mustEqual(t, o2, got)

	list, err := s.ListOrgs(ctx)
	mustOK(t, err)
	mustEqual(t, []store.Org{o1, o2}, sortedBy(list, func(o store.Org) string { return o.ID }))

	want := o1
	want.Name = "Renamed"
	want.Attributes = map[string]string{"tier": "silver", "x": "y"}
	want.UpdatedAt = base.Add(time.Minute)
	updated, err := s.UpdateOrg(ctx, "o1", func(o store.Org) (store.Org, error) {
		mustEqual(t, o1, o)
		o.Name = want.Name
		o.Attributes = want.Attributes
		o.UpdatedAt = want.UpdatedAt
		return o, nil
	})
	mustOK(t, err)
	mustEqual(t, want, updated)
	got, err = s.GetOrg(ctx, "o1")
	mustOK(t, err)
	mustEqual(t, want, got)

	// An org with sub-orgs is not deleted: o2 is moved out first.
	mustIs(t, s.DeleteOrg(ctx, "o1"), store.ErrHasChildren)
	_, err = s.GetOrg(ctx, "o1")
	mustOK(t, err)
	o2, err = s.UpdateOrg(ctx, "o2", func(o store.Org) (store.Org, error) { o.ParentID = ""; return o, nil })
	mustOK(t, err)

	mustOK(t, s.DeleteOrg(ctx, "o1"))
	_, err = s.GetOrg(ctx, "o1")
	mustIs(t, err, store.ErrNotFound)
	_, err = s.GetOrgBySlug(ctx, "slug-o1")
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.DeleteOrg(ctx, "o1"), store.ErrNotFound)
	list, err = s.ListOrgs(ctx)
	mustOK(t, err)
	mustEqual(t, []store.Org{o2}, list)

	// The deleted org's slug is free again.
	o3 := newOrg("o3")
	o3.Slug = "slug-o1"
	mustOK(t, s.CreateOrg(ctx, o3))
	got, err = s.GetOrgBySlug(ctx, "slug-o1")
	mustOK(t, err)
	mustEqual(t, o3, got)
}

func testOrgErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))

	dupID := newOrg("o1")
	dupID.Slug = "other"
	mustIs(t, s.CreateOrg(ctx, dupID), store.ErrAlreadyExists)
	_, err := s.GetOrgBySlug(ctx, "other")
	mustIs(t, err, store.ErrNotFound)

	dupSlug := newOrg("o2")
	dupSlug.Slug = "slug-o1"
	mustIs(t, s.CreateOrg(ctx, dupSlug), store.ErrAlreadyExists)
	_, err = s.GetOrg(ctx, "o2")
	mustIs(t, err, store.ErrNotFound)

	got, err := s.GetOrgBySlug(ctx, "slug-o1")
	mustOK(t, err)
	mustEqual(t, newOrg("o1"), got)

	if err := s.CreateOrg(ctx, store.Org{Slug: "no-id"}); err == nil {
		t.Error("CreateOrg with empty ID succeeded")
	}
	_, err = s.GetOrg(ctx, "missing")
	mustIs(t, err, store.ErrNotFound)
	_, err = s.GetOrgBySlug(ctx, "missing")
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.DeleteOrg(ctx, "missing"), store.ErrNotFound)
	list, err := s.ListOrgs(ctx)
	mustOK(t, err)
	if len(list) != 1 {
		t.Errorf("ListOrgs returned %d orgs, want 1", len(list))
	}
}

func testOrgSlugChange(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	mustOK(t, s.CreateOrg(ctx, newOrg("o2")))

	_, err := s.UpdateOrg(ctx, "o1", func(o store.Org) (store.Org, error) {
		o.Slug = "fresh"
		return o, nil
	})
	mustOK(t, err)
	_, err = s.GetOrgBySlug(ctx, "slug-o1")
	mustIs(t, err, store.ErrNotFound)
	got, err := s.GetOrgBySlug(ctx, "fresh")
	mustOK(t, err)
	if got.ID != "o1" {
		t.Errorf("GetOrgBySlug(fresh).ID = %q, want o1", got.ID)
	}

	// Taking another org's slug fails and changes nothing.
	_, err = s.UpdateOrg(ctx, "o1", func(o store.Org) (store.Org, error) {
		o.Slug = "slug-o2"
		o.Name = "should not stick"
		return o, nil
	})
	mustIs(t, err, store.ErrAlreadyExists)
	got, err = s.GetOrg(ctx, "o1")
	mustOK(t, err)
	if got.Slug != "fresh" || got.Name != "Org o1" {
		t.Errorf("after failed slug change: slug %q name %q", got.Slug, got.Name)
	}
	got, err = s.GetOrgBySlug(ctx, "slug-o2")
	mustOK(t, err)
	mustEqual(t, newOrg("o2"), got)

	// The old slug can be reused by another org.
	o3 := newOrg("o3")
	o3.Slug = "slug-o1"
	mustOK(t, s.CreateOrg(ctx, o3))
}

func testUserCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	u1 := newUser("u1")
	u1.Disabled = true
	mustOK(t, s.CreateUser(ctx, u1))
	got, err := s.GetUser(ctx, "u1")
	mustOK(t, err)
	mustEqual(t, u1, got)

	mustIs(t, s.CreateUser(ctx, store.User{ID: "u1", Email: "other@example.com"}), store.ErrAlreadyExists)
	_, err = s.GetUserByEmail(ctx, "other@example.com")
	mustIs(t, err, store.ErrNotFound)
	if err := s.CreateUser(ctx, store.User{Email: "no-id@example.com"}); err == nil {
		t.Error("CreateUser with empty ID succeeded")
	}

	want := u1
	want.Name = "Renamed"
	want.Disabled = false
	updated, err := s.UpdateUser(ctx, "u1", func(u store.User) (store.User, error) {
		mustEqual(t, u1, u)
		u.Name, u.Disabled = want.Name, want.Disabled
		return u, nil
	})
	mustOK(t, err)
	mustEqual(t, want, updated)
	got, err = s.GetUser(ctx, "u1")
	mustOK(t, err)
	mustEqual(t, want, got)

	mustOK(t, s.DeleteUser(ctx, "u1"))
	_, err = s.GetUser(ctx, "u1")
	mustIs(t, err, store.ErrNotFound)
	_, err = s.GetUserByEmail(ctx, u1.Email)
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.DeleteUser(ctx, "u1"), store.ErrNotFound)
	_, err = s.GetUser(ctx, "missing")
	mustIs(t, err, store.ErrNotFound)

	// The email is free again.
	u2 := newUser("u2")
	u2.Email = u1.Email
	mustOK(t, s.CreateUser(ctx, u2))
}

func testUserEmail(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := store.User{ID: "alice", Email: "Alice@Example.COM", CreatedAt: base, UpdatedAt: base}
	mustOK(t, s.CreateUser(ctx, alice))
	for _, e := range []string{"Alice@Example.COM", "alice@example.com", "ALICE@EXAMPLE.COM"} {
		got, err := s.GetUserByEmail(ctx, e)
		mustOK(t, err)
		mustEqual(t, alice, got) // stored as given, matched case-insensitively
	}
	_, err := s.GetUserByEmail(ctx, "alice@example.org")
	mustIs(t, err, store.ErrNotFound)

	mustIs(t, s.CreateUser(ctx, store.User{ID: "alice2", Email: "aLiCe@example.com"}), store.ErrAlreadyExists)
	_, err = s.GetUser(ctx, "alice2")
	mustIs(t, err, store.ErrNotFound)

	// Changing the email moves the index.
	_, err = s.UpdateUser(ctx, "alice", func(u store.User) (store.User, error) {
		u.Email = "alice@new.example"
		return u, nil
	})
	mustOK(t, err)
	_, err = s.GetUserByEmail(ctx, "alice@example.com")
	mustIs(t, err, store.ErrNotFound)
	got, err := s.GetUserByEmail(ctx, "ALICE@new.example")
	mustOK(t, err)
	if got.ID != "alice" || got.Email != "alice@new.example" {
		t.Errorf("GetUserByEmail after change = %+v", got)
	}

	// The old email is free; the new one is taken.
	mustOK(t, s.CreateUser(ctx, store.User{ID: "bob", Email: "alice@example.com"}))
	_, err = s.UpdateUser(ctx, "bob", func(u store.User) (store.User, error) {
		u.Email = "Alice@New.Example"
		return u, nil
	})
	mustIs(t, err, store.ErrAlreadyExists)
	got, err = s.GetUser(ctx, "bob")
	mustOK(t, err)
	if got.Email != "alice@example.com" {
		t.Errorf("bob's email after failed change = %q", got.Email)
	}
	got, err = s.GetUserByEmail(ctx, "alice@new.example")
	mustOK(t, err)
	if got.ID != "alice" {
		t.Errorf("alice@new.example belongs to %q after failed change, want alice", got.ID)
	}

	// Changing only the case of one's own email is fine.
	_, err = s.UpdateUser(ctx, "bob", func(u store.User) (store.User, error) {
		u.Email = "ALICE@example.com"
		return u, nil
	})
	mustOK(t, err)
	got, err = s.GetUserByEmail(ctx, "alice@EXAMPLE.com")
	mustOK(t, err)
	if got.ID != "bob" || got.Email != "ALICE@example.com" {
		t.Errorf("after case change: %+v", got)
	}
}

func testUserEmailConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 10
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.CreateUser(ctx, store.User{ID: fmt.Sprintf("u%d", i), Email: "same@example.com"})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrAlreadyExists):
			t.Errorf("CreateUser: %v, want nil or ErrAlreadyExists", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d concurrent creates with one email succeeded, want 1", ok)
	}
	winner, err := s.GetUserByEmail(ctx, "same@example.com")
	mustOK(t, err)
	for i := range n {
		id := fmt.Sprintf("u%d", i)
		_, err := s.GetUser(ctx, id)
		if id == winner.ID {
			mustOK(t, err)
		} else {
			mustIs(t, err, store.ErrNotFound)
		}
	}
}

func testMemberships(t *testing.T, s store.Store) {
	ctx := t.Context()
	m11, m12, m21 := newMembership("u1", "o1"), newMembership("u1", "o2"), newMembership("u2", "o1")
	m21.PasswordHash = ""
	// u10 and o10 share a prefix with u1 and o1 and must not leak into them.
	m1010 := newMembership("u10", "o10")
	for _, o := range []string{"o1", "o2", "o10"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	for _, m := range []store.Membership{m11, m12, m21, m1010} {
		mustOK(t, s.CreateMembership(ctx, m))
	}
	mustIs(t, s.CreateMembership(ctx, newMembership("u1", "o1")), store.ErrAlreadyExists)
	if err := s.CreateMembership(ctx, store.Membership{UserID: "u1"}); err == nil {
		t.Error("CreateMembership with empty org ID succeeded")
	}
	// The org must exist.
	mustIs(t, s.CreateMembership(ctx, newMembership("u1", "nothing")), store.ErrNotFound)
	_, err := s.GetMembership(ctx, "u1", "nothing")
	mustIs(t, err, store.ErrNotFound)

	got, err := s.GetMembership(ctx, "u1", "o2")
	mustOK(t, err)
	mustEqual(t, m12, got)
	_, err = s.GetMembership(ctx, "u2", "o2")
	mustIs(t, err, store.ErrNotFound)

	byUser := func(userID string) []store.Membership {
		t.Helper()
		ms, err := s.ListMembershipsByUser(ctx, userID)
		mustOK(t, err)
		return sortedBy(ms, func(m store.Membership) string { return m.OrgID })
	}
	byOrg := func(orgID string) []store.Membership {
		t.Helper()
		ms, err := s.ListMembershipsByOrg(ctx, orgID)
		mustOK(t, err)
		return sortedBy(ms, func(m store.Membership) string { return m.UserID })
	}
	mustEqual(t, []store.Membership{m11, m12}, byUser("u1"))
	mustEqual(t, []store.Membership{m21}, byUser("u2"))
	mustEqual(t, []store.Membership{m11, m21}, byOrg("o1"))
	mustEqual(t, []store.Membership{m12}, byOrg("o2"))
	mustEqual(t, []store.Membership{m1010}, byOrg("o10"))
	if ms := byUser("nobody"); len(ms) != 0 {
		t.Errorf("ListMembershipsByUser(nobody) = %+v", ms)
	}
	if ms := byOrg("nothing"); len(ms) != 0 {
		t.Errorf("ListMembershipsByOrg(nothing) = %+v", ms)
	}

	want := m11
	want.Roles = []string{"admin", "member"}
	want.Groups = nil
	want.UpdatedAt = base.Add(time.Hour)
	updated, err := s.UpdateMembership(ctx, "u1", "o1", func(m store.Membership) (store.Membership, error) {
		mustEqual(t, m11, m)
		m.Roles, m.Groups, m.UpdatedAt = want.Roles, want.Groups, want.UpdatedAt
		return m, nil
	})
	mustOK(t, err)
	mustEqual(t, want, updated)
	got, err = s.GetMembership(ctx, "u1", "o1")
	mustOK(t, err)
	mustEqual(t, want, got)
	mustEqual(t, []store.Membership{want, m21}, byOrg("o1"))
	mustEqual(t, []store.Membership{want, m12}, byUser("u1"))

	mustOK(t, s.DeleteMembership(ctx, "u1", "o1"))
	_, err = s.GetMembership(ctx, "u1", "o1")
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.DeleteMembership(ctx, "u1", "o1"), store.ErrNotFound)
	mustEqual(t, []store.Membership{m12}, byUser("u1"))
	mustEqual(t, []store.Membership{m21}, byOrg("o1"))
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	exp := base.Add(12 * time.Hour)
	s1, s2, s3 := newSession("s1", "u1", exp), newSession("s2", "u1", exp), newSession("s3", "u2", exp)
	s10 := newSession("s10", "u10", exp)
	for _, se := range []store.Session{s1, s2, s3, s10} {
		mustOK(t, s.CreateSession(ctx, se))
	}
	mustIs(t, s.CreateSession(ctx, newSession("s1", "u9", exp)), store.ErrAlreadyExists)
	if err := s.CreateSession(ctx, store.Session{UserID: "u1", ExpiresAt: exp}); err == nil {
		t.Error("CreateSession with empty ID succeeded")
	}

	got, err := s.GetSession(ctx, "s1")
	mustOK(t, err)
	mustEqual(t, s1, got)
	_, err = s.GetSession(ctx, "missing")
	mustIs(t, err, store.ErrNotFound)

	byUser := func(userID string) []store.Session {
		t.Helper()
		ss, err := s.ListSessionsByUser(ctx, userID)
		mustOK(t, err)
		return sortedBy(ss, func(se store.Session) string { return se.ID })
	}
	mustEqual(t, []store.Session{s1, s2}, byUser("u1"))
	mustEqual(t, []store.Session{s3}, byUser("u2"))
	if ss := byUser("nobody"); len(ss) != 0 {
		t.Errorf("ListSessionsByUser(nobody) = %+v", ss)
	}

	// Touch, then revoke.
	seen := base.Add(time.Minute)
	want := s1
	want.LastSeenAt = seen
	updated, err := s.UpdateSession(ctx, "s1", func(se store.Session) (store.Session, error) {
		mustEqual(t, s1, se)
		se.LastSeenAt = seen
		return se, nil
	})
	mustOK(t, err)
	mustEqual(t, want, updated)
	if !updated.Active(seen.Add(time.Second), time.Hour) {
		t.Error("touched session is not active")
	}
	want.RevokedAt = base.Add(2 * time.Minute)
	_, err = s.UpdateSession(ctx, "s1", func(se store.Session) (store.Session, error) {
		se.RevokedAt = want.RevokedAt
		return se, nil
	})
	mustOK(t, err)
	got, err = s.GetSession(ctx, "s1")
	mustOK(t, err)
	mustEqual(t, want, got)
	if got.Active(seen.Add(time.Second), time.Hour) {
		t.Error("revoked session is still active")
	}
	mustEqual(t, []store.Session{want, s2}, byUser("u1"))
}

func testDeleteExpiredSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	cut := now()
	create := func(id string, exp time.Time) {
		t.Helper()
		mustOK(t, s.CreateSession(ctx, newSession(id, "u1", exp)))
	}
	setExpiry := func(id string, exp time.Time) {
		t.Helper()
		_, err := s.UpdateSession(ctx, id, func(se store.Session) (store.Session, error) {
			se.ExpiresAt = exp
			return se, nil
		})
		mustOK(t, err)
	}
	create("old", cut.Add(-48*time.Hour))
	create("recent", cut.Add(-time.Microsecond))
	create("exact", cut) // expires at, not before, the cut: kept
	create("live", cut.Add(time.Hour))
	create("shortened", cut.Add(time.Hour))
	setExpiry("shortened", cut.Add(-time.Hour))
	create("extended", cut.Add(-time.Hour))
	setExpiry("extended", cut.Add(time.Hour))
	mustOK(t, s.CreateSession(ctx, newSession("other-user", "u2", cut.Add(-time.Hour))))

	n, err := s.DeleteExpiredSessions(ctx, cut)
	mustOK(t, err)
	if n != 4 {
		t.Errorf("DeleteExpiredSessions = %d, want 4", n)
	}
	for _, id := range []string{"old", "recent", "shortened", "other-user"} {
		_, err := s.GetSession(ctx, id)
		mustIs(t, err, store.ErrNotFound)
	}
	for _, id := range []string{"exact", "live", "extended"} {
		_, err := s.GetSession(ctx, id)
		mustOK(t, err)
	}
	ss, err := s.ListSessionsByUser(ctx, "u1")
	mustOK(t, err)
	var ids []string
	for _, se := range ss {
		ids = append(ids, se.ID)
	}
	slices.Sort(ids)
	mustEqual(t, []string{"exact", "extended", "live"}, ids)
	ss, err = s.ListSessionsByUser(ctx, "u2")
	mustOK(t, err)
	if len(ss) != 0 {
		t.Errorf("u2 still has %d sessions", len(ss))
	}

	n, err = s.DeleteExpiredSessions(ctx, cut)
	mustOK(t, err)
	if n != 0 {
		t.Errorf("second DeleteExpiredSessions = %d, want 0", n)
	}
	n, err = s.DeleteExpiredSessions(ctx, cut.Add(2*time.Hour))
	mustOK(t, err)
	if n != 3 {
		t.Errorf("DeleteExpiredSessions(later) = %d, want 3", n)
	}
}

func testSigningKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	k1, k2 := newSigningKey("k1"), newSigningKey("k2")
	k2.Algorithm = "EdDSA"
	mustOK(t, s.CreateSigningKey(ctx, k1))
	mustOK(t, s.CreateSigningKey(ctx, k2))
	mustIs(t, s.CreateSigningKey(ctx, newSigningKey("k1")), store.ErrAlreadyExists)
	if err := s.CreateSigningKey(ctx, store.SigningKey{Algorithm: "ES256"}); err == nil {
		t.Error("CreateSigningKey with empty ID succeeded")
	}

	list := func() []store.SigningKey {
		t.Helper()
		ks, err := s.ListSigningKeys(ctx)
		mustOK(t, err)
		return sortedBy(ks, func(k store.SigningKey) string { return k.ID })
	}
	mustEqual(t, []store.SigningKey{k1, k2}, list())

	want := k1
	want.RetiredAt = base.Add(24 * time.Hour)
	want.DeleteAt = base.Add(48 * time.Hour)
	updated, err := s.UpdateSigningKey(ctx, "k1", func(k store.SigningKey) (store.SigningKey, error) {
		mustEqual(t, k1, k)
		k.RetiredAt, k.DeleteAt = want.RetiredAt, want.DeleteAt
		return k, nil
	})
	mustOK(t, err)
	mustEqual(t, want, updated)
	mustEqual(t, []store.SigningKey{want, k2}, list())

	mustOK(t, s.DeleteSigningKey(ctx, "k1"))
	mustIs(t, s.DeleteSigningKey(ctx, "k1"), store.ErrNotFound)
	mustEqual(t, []store.SigningKey{k2}, list())
}

func testAudit(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Appended out of time order; orgs o1 and o10 share a prefix.
	minutes := []int{2, 5, 0, 4, 1, 3}
	var events []store.AuditEvent
	for i, org := range []string{"o1", "o2", "", "o1", "o10", "o1"} {
		e := store.AuditEvent{
			ID:      fmt.Sprintf("e%d", i),
			Time:    base.Add(time.Duration(minutes[i]) * time.Minute),
			OrgID:   org,
			Actor:   "user:u1",
			Action:  "login",
			Target:  "org:" + org,
			Outcome: "success",
			Details: map[string]string{"i": strconv.Itoa(i)},
		}
		if i == 3 {
			e.Details = nil
		}
		events = append(events, e)
	}
	appended := []int{3, 0, 5, 1, 4, 2}
	for _, i := range appended {
		mustOK(t, s.AppendAudit(ctx, events[i]))
	}
	// Every org's events come by time; one org's in its chain's order, last
	// appended first, so that BeforeSeq can page them (testAuditCursor).
	lastAppendedFirst := func(keep func(store.AuditEvent) bool) []store.AuditEvent {
		var out []store.AuditEvent
		for _, i := range slices.Backward(appended) {
			if keep(events[i]) {
				out = append(out, events[i])
			}
		}
		return out
	}
	newestFirst := func(keep func(store.AuditEvent) bool) []store.AuditEvent {
		var out []store.AuditEvent
		for _, e := range events {
			if keep(e) {
				out = append(out, e)
			}
		}
		slices.SortFunc(out, func(a, b store.AuditEvent) int { return b.Time.Compare(a.Time) })
		return out
	}
	all := func(store.AuditEvent) bool { return true }
	list := func(q store.AuditQuery) []store.AuditEvent {
		t.Helper()
		es, err := s.ListAudit(ctx, q)
		mustOK(t, err)
		for i := range es {
			// The chain fields are the store's (testAuditChain checks them).
			es[i].Seq, es[i].Prev, es[i].Hash = 0, "", ""
		}
		return es
	}

	mustEqual(t, newestFirst(all), list(store.AuditQuery{}))
	mustEqual(t, lastAppendedFirst(func(e store.AuditEvent) bool { return e.OrgID == "o1" }), list(store.AuditQuery{OrgID: "o1"}))
	mustEqual(t, lastAppendedFirst(func(e store.AuditEvent) bool { return e.OrgID == "o10" }), list(store.AuditQuery{OrgID: "o10"}))
	if es := list(store.AuditQuery{OrgID: "nothing"}); len(es) != 0 {
		t.Errorf("ListAudit(nothing) = %+v", es)
	}

	since := base.Add(2*time.Minute + 30*time.Second)
	mustEqual(t, newestFirst(func(e store.AuditEvent) bool { return !e.Time.Before(since) }), list(store.AuditQuery{Since: since}))
	mustEqual(t, newestFirst(all)[:2], list(store.AuditQuery{Limit: 2}))

	o1Since := lastAppendedFirst(func(e store.AuditEvent) bool { return e.OrgID == "o1" && !e.Time.Before(base.Add(time.Minute)) })
	if len(o1Since) < 2 {
		t.Fatalf("fixture: %d o1 events since +1m, want >= 2", len(o1Since))
	}
	mustEqual(t, o1Since[:1], list(store.AuditQuery{OrgID: "o1", Since: base.Add(time.Minute), Limit: 1}))
	mustEqual(t, o1Since, list(store.AuditQuery{OrgID: "o1", Since: base.Add(time.Minute), Limit: 50}))
}

func testAuditFills(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := time.Now()
	mustOK(t, s.AppendAudit(ctx, store.AuditEvent{OrgID: "o1", Actor: "system", Action: "a"}))
	mustOK(t, s.AppendAudit(ctx, store.AuditEvent{OrgID: "o1", Actor: "system", Action: "b"}))
	after := time.Now()
	es, err := s.ListAudit(ctx, store.AuditQuery{OrgID: "o1"})
	mustOK(t, err)
	if len(es) != 2 {
		t.Fatalf("ListAudit returned %d events, want 2", len(es))
	}
	for _, e := range es {
		if e.ID == "" {
			t.Errorf("event %q has no ID", e.Action)
		}
		// Allow a backend to truncate to microseconds.
		if e.Time.Before(before.Add(-time.Microsecond)) || e.Time.After(after) {
			t.Errorf("event %q time %v not within [%v, %v]", e.Action, e.Time, before, after)
		}
	}
	if es[0].ID == es[1].ID {
		t.Errorf("generated IDs collide: %q", es[0].ID)
	}
	if es[0].Time.Before(es[1].Time) {
		t.Errorf("not newest first: %v before %v", es[0].Time, es[1].Time)
	}
}

func testAuditDefaultLimit(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 105
	for i := range n {
		mustOK(t, s.AppendAudit(ctx, store.AuditEvent{
			ID: fmt.Sprintf("e%03d", i), Time: base.Add(time.Duration(i) * time.Second), Actor: "a", Action: "x",
		}))
	}
	check := func(q store.AuditQuery, want int) {
		t.Helper()
		es, err := s.ListAudit(ctx, q)
		mustOK(t, err)
		if len(es) != want {
			t.Fatalf("ListAudit(%+v) returned %d events, want %d", q, len(es), want)
		}
		for i, e := range es {
			if wantID := fmt.Sprintf("e%03d", n-1-i); e.ID != wantID {
				t.Fatalf("ListAudit(%+v)[%d].ID = %q, want %q", q, i, e.ID, wantID)
			}
		}
	}
	check(store.AuditQuery{}, 100)
	check(store.AuditQuery{Limit: 1000}, n)
	check(store.AuditQuery{Limit: 7}, 7)
}

func testOnce(t *testing.T, s store.Store) {
	ctx := t.Context()
	exp := time.Now().Add(time.Hour)
	mustOK(t, s.PutOnce(ctx, "ticket", "t1", []byte("v1"), exp))
	mustIs(t, s.PutOnce(ctx, "ticket", "t1", []byte("v2"), exp), store.ErrAlreadyExists)
	// Kinds are separate namespaces.
	mustOK(t, s.PutOnce(ctx, "saml", "t1", []byte("saml"), exp))

	v, err := s.TakeOnce(ctx, "ticket", "t1")
	mustOK(t, err)
	if string(v) != "v1" {
		t.Errorf("TakeOnce = %q, want v1 (the first put)", v)
	}
	_, err = s.TakeOnce(ctx, "ticket", "t1")
	mustIs(t, err, store.ErrNotFound)
	v, err = s.TakeOnce(ctx, "saml", "t1")
	mustOK(t, err)
	if string(v) != "saml" {
		t.Errorf("TakeOnce(saml) = %q", v)
	}
	_, err = s.TakeOnce(ctx, "ticket", "never")
	mustIs(t, err, store.ErrNotFound)

	// Binary values round-trip exactly.
	bin := []byte{0, 1, 2, 0xff, '/', 0}
	mustOK(t, s.PutOnce(ctx, "bin", "b", bin, exp))
	v, err = s.TakeOnce(ctx, "bin", "b")
	mustOK(t, err)
	if !bytes.Equal(v, bin) {
		t.Errorf("TakeOnce(bin) = %x, want %x", v, bin)
	}

	// A nil or empty value is a marker (replay caches keep only the id):
	// kept, refused a second time, read back empty.
	for i, val := range [][]byte{nil, {}} {
		id := fmt.Sprintf("marker-%d", i)
		mustOK(t, s.PutOnce(ctx, "replay", id, val, exp))
		mustIs(t, s.PutOnce(ctx, "replay", id, val, exp), store.ErrAlreadyExists)
		mustOK(t, s.UpdateOnce(ctx, "replay", id, func([]byte) ([]byte, error) { return nil, nil }))
		v, err := s.GetOnce(ctx, "replay", id)
		mustOK(t, err)
		if len(v) != 0 {
			t.Errorf("GetOnce(marker) = %x, want empty", v)
		}
		if v, err = s.TakeOnce(ctx, "replay", id); err != nil || len(v) != 0 {
			t.Errorf("TakeOnce(marker) = %x, %v", v, err)
		}
	}
}

// testOnceExpiry (and testLocks) use expiries of tens of milliseconds: a
// backend must honour the exact instant it was given (Badger rounds its own
// TTL up to a second, and compares the stored instant), not whole seconds.
func testOnceExpiry(t *testing.T, s store.Store) {
	ctx := t.Context()
	// A backend may refuse an expiry in the past, but must never return it.
	_ = s.PutOnce(ctx, "ticket", "past", []byte("x"), time.Now().Add(-time.Second))
	_, err := s.TakeOnce(ctx, "ticket", "past")
	mustIs(t, err, store.ErrNotFound)

	mustOK(t, s.PutOnce(ctx, "ticket", "short", []byte("x"), time.Now().Add(50*time.Millisecond)))
	mustOK(t, s.PutOnce(ctx, "ticket", "long", []byte("y"), time.Now().Add(time.Hour)))
	time.Sleep(120 * time.Millisecond)
	_, err = s.TakeOnce(ctx, "ticket", "short")
	mustIs(t, err, store.ErrNotFound)
	v, err := s.TakeOnce(ctx, "ticket", "long")
	mustOK(t, err)
	if string(v) != "y" {
		t.Errorf("TakeOnce(long) = %q", v)
	}

	// An expired id is free for a new value.
	mustOK(t, s.PutOnce(ctx, "ticket", "short", []byte("again"), time.Now().Add(time.Hour)))
	v, err = s.TakeOnce(ctx, "ticket", "short")
	mustOK(t, err)
	if string(v) != "again" {
		t.Errorf("TakeOnce(short) after re-put = %q", v)
	}
}

// testOnceGetUpdate: a single-use value read and changed in place keeps
// its expiry and is still taken once.
func testOnceGetUpdate(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.PutOnce(ctx, "req", "r", []byte("v1"), time.Now().Add(150*time.Millisecond)))
	for range 2 {
		v, err := s.GetOnce(ctx, "req", "r")
		mustOK(t, err)
		if string(v) != "v1" {
			t.Fatalf("GetOnce = %q", v)
		}
	}
	mustOK(t, s.UpdateOnce(ctx, "req", "r", func(old []byte) ([]byte, error) {
		if string(old) != "v1" {
			t.Errorf("UpdateOnce saw %q", old)
		}
		return []byte("v2"), nil
	}))
	if err := s.UpdateOnce(ctx, "req", "r", func([]byte) ([]byte, error) { return nil, errBoom }); !errors.Is(err, errBoom) {
		t.Errorf("UpdateOnce with a failing fn: %v", err)
	}
	v, err := s.GetOnce(ctx, "req", "r")
	mustOK(t, err)
	if string(v) != "v2" {
		t.Fatalf("after update: %q", v)
	}
	mustIs(t, s.UpdateOnce(ctx, "req", "missing", func(b []byte) ([]byte, error) { return b, nil }), store.ErrNotFound)
	_, err = s.GetOnce(ctx, "req", "missing")
	mustIs(t, err, store.ErrNotFound)
	// The expiry stays the first one's.
	time.Sleep(200 * time.Millisecond)
	_, err = s.GetOnce(ctx, "req", "r")
	mustIs(t, err, store.ErrNotFound)
	mustIs(t, s.UpdateOnce(ctx, "req", "r", func(b []byte) ([]byte, error) { return b, nil }), store.ErrNotFound)
	_, err = s.TakeOnce(ctx, "req", "r")
	mustIs(t, err, store.ErrNotFound)

	mustOK(t, s.PutOnce(ctx, "req", "t", []byte("a"), time.Now().Add(time.Hour)))
	mustOK(t, s.UpdateOnce(ctx, "req", "t", func([]byte) ([]byte, error) { return []byte("b"), nil }))
	v, err = s.TakeOnce(ctx, "req", "t")
	mustOK(t, err)
	if string(v) != "b" {
		t.Fatalf("taken after update: %q", v)
	}
	_, err = s.GetOnce(ctx, "req", "t")
	mustIs(t, err, store.ErrNotFound)
}

func testOnceConcurrentTake(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.PutOnce(ctx, "ticket", "t", []byte("prize"), time.Now().Add(time.Hour)))
	const n = 10
	vals := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { vals[i], errs[i] = s.TakeOnce(ctx, "ticket", "t") })
	}
	wg.Wait()
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
			if string(vals[i]) != "prize" {
				t.Errorf("winner got %q", vals[i])
			}
		case !errors.Is(err, store.ErrNotFound):
			t.Errorf("TakeOnce: %v, want nil or ErrNotFound", err)
		}
	}
	if won != 1 {
		t.Errorf("%d concurrent takes succeeded, want exactly 1", won)
	}
}

func testSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	v, err := s.Secret(ctx, "cookie", []byte("first"))
	mustOK(t, err)
	if string(v) != "first" {
		t.Errorf("Secret = %q, want first", v)
	}
	v[0] = 'X' // must not reach the store
	v, err = s.Secret(ctx, "cookie", []byte("second"))
	mustOK(t, err)
	if string(v) != "first" {
		t.Errorf("Secret with a new value = %q, want first", v)
	}
	v, err = s.Secret(ctx, "other", []byte("third"))
	mustOK(t, err)
	if string(v) != "third" {
		t.Errorf("Secret(other) = %q, want third", v)
	}
}

func testSecretConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 10
	vals := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := s.Secret(ctx, "shared", []byte(fmt.Sprintf("value-%d", i)))
			if err != nil {
				t.Errorf("Secret: %v", err)
			}
			vals[i] = v
		})
	}
	wg.Wait()
	if !strings.HasPrefix(string(vals[0]), "value-") {
		t.Fatalf("Secret = %q", vals[0])
	}
	for i, v := range vals {
		if !bytes.Equal(v, vals[0]) {
			t.Errorf("caller %d got %q, caller 0 got %q", i, v, vals[0])
		}
	}
}

// updater abstracts one record type for the shared Update* contract tests.
// Its record lives at id; for memberships id is the user ID in org "o".
type updater struct {
	name   string
	create func(s store.Store, t *testing.T, id string) error
	get    func(s store.Store, t *testing.T, id string) (any, error)
	// update changes a field and, if newID is set, the record's key;
	// fn then returns fnErr.
	update func(s store.Store, t *testing.T, id, newID string, fnErr error) error
}

var updaters = []updater{
	{
		name:   "Org",
		create: func(s store.Store, t *testing.T, id string) error { return s.CreateOrg(t.Context(), newOrg(id)) },
		get:    func(s store.Store, t *testing.T, id string) (any, error) { return s.GetOrg(t.Context(), id) },
		update: func(s store.Store, t *testing.T, id, newID string, fnErr error) error {
			_, err := s.UpdateOrg(t.Context(), id, func(o store.Org) (store.Org, error) {
				o.Name = "changed"
				if newID != "" {
					o.ID = newID
				}
				return o, fnErr
			})
			return err
		},
	},
	{
		name:   "User",
		create: func(s store.Store, t *testing.T, id string) error { return s.CreateUser(t.Context(), newUser(id)) },
		get:    func(s store.Store, t *testing.T, id string) (any, error) { return s.GetUser(t.Context(), id) },
		update: func(s store.Store, t *testing.T, id, newID string, fnErr error) error {
			_, err := s.UpdateUser(t.Context(), id, func(u store.User) (store.User, error) {
				u.Name = "changed"
				if newID != "" {
					u.ID = newID
				}
				return u, fnErr
			})
			return err
		},
	},
	{
		name: "Membership",
		create: func(s store.Store, t *testing.T, id string) error {
			if err := s.CreateOrg(t.Context(), newOrg("o")); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
				return err
			}
			return s.CreateMembership(t.Context(), newMembership(id, "o"))
		},
		get: func(s store.Store, t *testing.T, id string) (any, error) {
			return s.GetMembership(t.Context(), id, "o")
		},
		update: func(s store.Store, t *testing.T, id, newID string, fnErr error) error {
			_, err := s.UpdateMembership(t.Context(), id, "o", func(m store.Membership) (store.Membership, error) {
				m.Roles = []string{"changed"}
				if newID != "" {
					m.UserID = newID
				}
				return m, fnErr
			})
			return err
		},
	},
	{
		name: "Membership org",
		create: func(s store.Store, t *testing.T, id string) error {
			if err := s.CreateOrg(t.Context(), newOrg(id)); err != nil && !errors.Is(err, store.ErrAlreadyExists) {
				return err
			}
			return s.CreateMembership(t.Context(), newMembership("u", id))
		},
		get: func(s store.Store, t *testing.T, id string) (any, error) {
			return s.GetMembership(t.Context(), "u", id)
		},
		update: func(s store.Store, t *testing.T, id, newID string, fnErr error) error {
			_, err := s.UpdateMembership(t.Context(), "u", id, func(m store.Membership) (store.Membership, error) {
				m.Roles = []string{"changed"}
				if newID != "" {
					m.OrgID = newID
				}
				return m, fnErr
			})
			return err
		},
	},
	{
		name: "Session",
		create: func(s store.Store, t *testing.T, id string) error {
			return s.CreateSession(t.Context(), newSession(id, "u", base.Add(time.Hour)))
		},
		get: func(s store.Store, t *testing.T, id string) (any, error) { return s.GetSession(t.Context(), id) },
		update: func(s store.Store, t *testing.T, id, newID string, fnErr error) error {
			_, err := s.UpdateSession(t.Context(), id, func(se store.Session) (store.Session, error) {
				se.UserAgent = "changed"
				if newID != "" {
					se.ID = newID
				}
				return se, fnErr
			})
			return err
		},
	},
	{
		name: "APIToken",
		create: func(s store.Store, t *testing.T, id string) error {
			return s.CreateAPIToken(t.Context(), newAPIToken(id, "", "", base))
		},
		get: func(s store.Store, t *testing.T, id string) (any, error) { return s.GetAPIToken(t.Context(), id) },
		update: func(s store.Store, t *testing.T, id, newID string, fnErr error) error {
			_, err := s.UpdateAPIToken(t.Context(), id, func(tok store.APIToken) (store.APIToken, error) {
				tok.LastUsedAt = base.Add(time.Minute)
				if newID != "" {
					tok.ID = newID
				}
				return tok, fnErr
			})
			return err
		},
	},
	{
		name: "SigningKey",
		create: func(s store.Store, t *testing.T, id string) error {
			return s.CreateSigningKey(t.Context(), newSigningKey(id))
		},
		get: func(s store.Store, t *testing.T, id string) (any, error) {
			ks, err := s.ListSigningKeys(t.Context())
			for _, k := range ks {
				if k.ID == id {
					return k, err
				}
			}
			if err == nil {
				err = store.ErrNotFound
			}
			return store.SigningKey{}, err
		},
		update: func(s store.Store, t *testing.T, id, newID string, fnErr error) error {
			_, err := s.UpdateSigningKey(t.Context(), id, func(k store.SigningKey) (store.SigningKey, error) {
				k.Algorithm = "changed"
				if newID != "" {
					k.ID = newID
				}
				return k, fnErr
			})
			return err
		},
	},
}

func testUpdateSemantics(t *testing.T, s store.Store) {
	for _, u := range updaters {
		t.Run(u.name, func(t *testing.T) {
			mustOK(t, u.create(s, t, "x"))
			orig, err := u.get(s, t, "x")
			mustOK(t, err)
			unchanged := func(what string) {
				t.Helper()
				got, err := u.get(s, t, "x")
				mustOK(t, err)
				if !equal(orig, got) {
					t.Errorf("%s changed the record:\n got %+v\nwant %+v", what, got, orig)
				}
			}

			// Missing record: ErrNotFound, and fn's error never surfaces.
			err = u.update(s, t, "missing", "", errBoom)
			mustIs(t, err, store.ErrNotFound)
			if errors.Is(err, errBoom) {
				t.Error("fn was called for a missing record")
			}
			_, err = u.get(s, t, "missing")
			mustIs(t, err, store.ErrNotFound)

			// fn's error aborts and is returned.
			mustIs(t, u.update(s, t, "x", "", errBoom), errBoom)
			unchanged("an aborted update")

			// The key cannot change.
			if err := u.update(s, t, "x", "y", nil); err == nil {
				t.Error("update changing the record's key succeeded")
			}
			unchanged("an update changing the key")
			_, err = u.get(s, t, "y")
			mustIs(t, err, store.ErrNotFound)

			// A plain update works.
			mustOK(t, u.update(s, t, "x", "", nil))
			got, err := u.get(s, t, "x")
			mustOK(t, err)
			if equal(orig, got) {
				t.Error("update did not change the record")
			}
		})
	}
}

func testConcurrentUpdateOrg(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	const workers, rounds = 20, 10
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				_, err := s.UpdateOrg(ctx, "o1", func(o store.Org) (store.Org, error) {
					n, _ := strconv.Atoi(o.Attributes["counter"])
					o.Attributes = maps.Clone(o.Attributes) // fn must be pure
					o.Attributes["counter"] = strconv.Itoa(n + 1)
					return o, nil
				})
				if err != nil {
					t.Errorf("UpdateOrg: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	o, err := s.GetOrg(ctx, "o1")
	mustOK(t, err)
	if got, want := o.Attributes["counter"], strconv.Itoa(workers*rounds); got != want {
		t.Errorf("counter = %s after %d increments; updates were lost", got, workers*rounds)
	}
	if o.Attributes["tier"] != "gold" {
		t.Errorf("unrelated attribute lost: %v", o.Attributes)
	}
}

func testConcurrentUpdateSession(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateSession(ctx, newSession("s1", "u1", base.Add(time.Hour))))
	const workers, rounds = 8, 5
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				_, err := s.UpdateSession(ctx, "s1", func(se store.Session) (store.Session, error) {
					// Each write moves the expiry, exercising the index too.
					se.ExpiresAt = se.ExpiresAt.Add(time.Second)
					se.UserAgent = fmt.Sprintf("w%d-r%d", w, r)
					return se, nil
				})
				if err != nil {
					t.Errorf("UpdateSession: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	se, err := s.GetSession(ctx, "s1")
	mustOK(t, err)
	if want := base.Add(time.Hour + workers*rounds*time.Second); !se.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v; updates were lost", se.ExpiresAt, want)
	}
	// Exactly one expiry entry must remain: the session is deleted once.
	n, err := s.DeleteExpiredSessions(ctx, base.Add(2*time.Hour))
	mustOK(t, err)
	if n != 1 {
		t.Errorf("DeleteExpiredSessions = %d, want 1", n)
	}
}

// testOpaqueIDs checks that separators in IDs cannot confuse the store.
func testOpaqueIDs(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"b/c", "c", "b"} {
		o := newOrg(o)
		o.Slug = strings.ReplaceAll(o.Slug, "/", "-")
		mustOK(t, s.CreateOrg(ctx, o))
	}
	mustOK(t, s.CreateMembership(ctx, newMembership("a", "b/c")))
	mustOK(t, s.CreateMembership(ctx, newMembership("a/b", "c")))
	mustOK(t, s.CreateMembership(ctx, newMembership("a%2Fb", "c")))
	for _, tc := range []struct{ user, org string }{{"a", "b/c"}, {"a/b", "c"}, {"a%2Fb", "c"}} {
		m, err := s.GetMembership(ctx, tc.user, tc.org)
		mustOK(t, err)
		if m.UserID != tc.user || m.OrgID != tc.org {
			t.Errorf("GetMembership(%q, %q) = %q/%q", tc.user, tc.org, m.UserID, m.OrgID)
		}
	}
	ms, err := s.ListMembershipsByUser(ctx, "a")
	mustOK(t, err)
	if len(ms) != 1 || ms[0].OrgID != "b/c" {
		t.Errorf("ListMembershipsByUser(a) = %+v, want only org b/c", ms)
	}
	ms, err = s.ListMembershipsByOrg(ctx, "c")
	mustOK(t, err)
	if len(ms) != 2 {
		t.Errorf("ListMembershipsByOrg(c) returned %d, want 2", len(ms))
	}
	ms, err = s.ListMembershipsByOrg(ctx, "b")
	mustOK(t, err)
	if len(ms) != 0 {
		t.Errorf("ListMembershipsByOrg(b) = %+v, want none", ms)
	}

	mustOK(t, s.CreateSession(ctx, newSession("x", "u/1", base)))
	mustOK(t, s.CreateSession(ctx, newSession("1/x", "u", base)))
	ss, err := s.ListSessionsByUser(ctx, "u")
	mustOK(t, err)
	if len(ss) != 1 || ss[0].ID != "1/x" {
		t.Errorf("ListSessionsByUser(u) = %+v, want only 1/x", ss)
	}

	mustOK(t, s.AppendAudit(ctx, store.AuditEvent{OrgID: "o/x", Actor: "a", Action: "b"}))
	es, err := s.ListAudit(ctx, store.AuditQuery{OrgID: "o"})
	mustOK(t, err)
	if len(es) != 0 {
		t.Errorf("ListAudit(o) = %+v, want none", es)
	}

	mustOK(t, s.PutOnce(ctx, "a/b", "c", []byte("1"), time.Now().Add(time.Hour)))
	mustOK(t, s.PutOnce(ctx, "a", "b/c", []byte("2"), time.Now().Add(time.Hour)))
	v, err := s.TakeOnce(ctx, "a", "b/c")
	mustOK(t, err)
	if string(v) != "2" {
		t.Errorf("TakeOnce(a, b/c) = %q, want 2", v)
	}
}

func testResultsAreCopies(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	o, err := s.GetOrg(ctx, "o1")
	mustOK(t, err)
	o.Attributes["tier"] = "mutated"
	o.EmailDomains[0] = "mutated"
	o, err = s.GetOrg(ctx, "o1")
	mustOK(t, err)
	mustEqual(t, newOrg("o1"), o)

	mustOK(t, s.CreateSigningKey(ctx, newSigningKey("k1")))
	ks, err := s.ListSigningKeys(ctx)
	mustOK(t, err)
	ks[0].PrivateKey[0] = 0xAA
	ks, err = s.ListSigningKeys(ctx)
	mustOK(t, err)
	mustEqual(t, []store.SigningKey{newSigningKey("k1")}, ks)
}

func testPing(t *testing.T, s store.Store) {
	mustOK(t, s.Ping(t.Context()))
}

func testClosed(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	mustOK(t, s.Close())
	id := func(o store.Org) (store.Org, error) { return o, nil }
	calls := map[string]func() error{
		"CreateOrg":      func() error { return s.CreateOrg(ctx, newOrg("o2")) },
		"GetOrg":         func() error { _, err := s.GetOrg(ctx, "o1"); return err },
		"GetOrgBySlug":   func() error { _, err := s.GetOrgBySlug(ctx, "slug-o1"); return err },
		"ListOrgs":       func() error { _, err := s.ListOrgs(ctx); return err },
		"UpdateOrg":      func() error { _, err := s.UpdateOrg(ctx, "o1", id); return err },
		"DeleteOrg":      func() error { return s.DeleteOrg(ctx, "o1") },
		"CreateUser":     func() error { return s.CreateUser(ctx, newUser("u1")) },
		"GetUser":        func() error { _, err := s.GetUser(ctx, "u1"); return err },
		"GetUserByEmail": func() error { _, err := s.GetUserByEmail(ctx, "u1@example.com"); return err },
		"UpdateUser": func() error {
			_, err := s.UpdateUser(ctx, "u1", func(u store.User) (store.User, error) { return u, nil })
			return err
		},
		"DeleteUser":       func() error { return s.DeleteUser(ctx, "u1") },
		"CreateMembership": func() error { return s.CreateMembership(ctx, newMembership("u1", "o1")) },
		"GetMembership":    func() error { _, err := s.GetMembership(ctx, "u1", "o1"); return err },
		"ListMembershipsByUser": func() error {
			_, err := s.ListMembershipsByUser(ctx, "u1")
			return err
		},
		"ListMembershipsByOrg": func() error { _, err := s.ListMembershipsByOrg(ctx, "o1"); return err },
		"ListMembers": func() error {
			_, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", Search: "x", AfterEmail: "a", AfterID: "b"})
			return err
		},
		"UpdateMembership": func() error {
			_, err := s.UpdateMembership(ctx, "u1", "o1", func(m store.Membership) (store.Membership, error) { return m, nil })
			return err
		},
		"DeleteMembership": func() error { return s.DeleteMembership(ctx, "u1", "o1") },
		"CreateSession":    func() error { return s.CreateSession(ctx, newSession("s1", "u1", base)) },
		"GetSession":       func() error { _, err := s.GetSession(ctx, "s1"); return err },
		"UpdateSession": func() error {
			_, err := s.UpdateSession(ctx, "s1", func(se store.Session) (store.Session, error) { return se, nil })
			return err
		},
		"ListSessionsByUser":    func() error { _, err := s.ListSessionsByUser(ctx, "u1"); return err },
		"DeleteExpiredSessions": func() error { _, err := s.DeleteExpiredSessions(ctx, time.Now()); return err },
		"CreateSigningKey":      func() error { return s.CreateSigningKey(ctx, newSigningKey("k1")) },
		"ListSigningKeys":       func() error { _, err := s.ListSigningKeys(ctx); return err },
		"UpdateSigningKey": func() error {
			_, err := s.UpdateSigningKey(ctx, "k1", func(k store.SigningKey) (store.SigningKey, error) { return k, nil })
			return err
		},
		"DeleteSigningKey": func() error { return s.DeleteSigningKey(ctx, "k1") },
		"CreateAPIToken":   func() error { return s.CreateAPIToken(ctx, newAPIToken("t1", "", "", base)) },
		"GetAPIToken":      func() error { _, err := s.GetAPIToken(ctx, "t1"); return err },
		"ListAPITokens":    func() error { _, err := s.ListAPITokens(ctx, ""); return err },
		"UpdateAPIToken": func() error {
			_, err := s.UpdateAPIToken(ctx, "t1", func(t store.APIToken) (store.APIToken, error) { return t, nil })
			return err
		},
		"DeleteAPIToken": func() error { return s.DeleteAPIToken(ctx, "t1") },
		"AuditHeads":     func() error { _, err := s.AuditHeads(ctx); return err },
		"WalkAudit": func() error {
			return s.WalkAudit(ctx, "", 0, func(store.AuditEvent) error { return nil })
		},
		"AppendAudit": func() error { return s.AppendAudit(ctx, store.AuditEvent{Actor: "a", Action: "b"}) },
		"ListAudit":   func() error { _, err := s.ListAudit(ctx, store.AuditQuery{}); return err },
		"ListAudit org": func() error {
			_, err := s.ListAudit(ctx, store.AuditQuery{OrgID: "o1", BeforeSeq: 9})
			return err
		},
		"PutOnce":     func() error { return s.PutOnce(ctx, "k", "i", []byte("v"), time.Now().Add(time.Hour)) },
		"TakeOnce":    func() error { _, err := s.TakeOnce(ctx, "k", "i"); return err },
		"Secret":      func() error { _, err := s.Secret(ctx, "n", []byte("v")); return err },
		"Ping":        func() error { return s.Ping(ctx) },
		"PutBlob":     func() error { return s.PutBlob(ctx, "a/b", []byte("v")) },
		"GetBlob":     func() error { _, err := s.GetBlob(ctx, "a/b"); return err },
		"DeleteBlobs": func() error { return s.DeleteBlobs(ctx, "a") },
		"ListBlobs":   func() error { _, err := s.ListBlobs(ctx, "a"); return err },
		"AcquireLock": func() error { _, err := s.AcquireLock(ctx, "l", "o", time.Minute); return err },
		"ReleaseLock": func() error { return s.ReleaseLock(ctx, "l", "o") },
		"Close":       s.Close,
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		if err := calls[name](); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

func testBlobs(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.GetBlob(ctx, "certs/a.crt"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("missing blob: %v", err)
	}
	before := time.Now().Add(-time.Second)
	mustOK(t, s.PutBlob(ctx, "certs/acme/a.example/a.crt", []byte("cert-a")))
	mustOK(t, s.PutBlob(ctx, "certs/acme/a.example/a.key", []byte("key-a")))
	mustOK(t, s.PutBlob(ctx, "certs/acme/b.example/b.crt", []byte("cert-b")))
	mustOK(t, s.PutBlob(ctx, "certsx/other", []byte("x")))
	b, err := s.GetBlob(ctx, "certs/acme/a.example/a.crt")
	mustOK(t, err)
	if string(b.Value) != "cert-a" || b.Modified.Before(before) {
		t.Fatalf("blob = %q at %v", b.Value, b.Modified)
	}
	mustOK(t, s.PutBlob(ctx, "certs/acme/a.example/a.crt", []byte("cert-a2")))
	if b, _ := s.GetBlob(ctx, "certs/acme/a.example/a.crt"); string(b.Value) != "cert-a2" {
		t.Fatalf("overwrite: %q", b.Value)
	}
	keys := func(prefix string) []string {
		infos, err := s.ListBlobs(ctx, prefix)
		mustOK(t, err)
		var out []string
		for _, i := range infos {
			out = append(out, i.Key)
			if i.Size <= 0 || i.Modified.IsZero() {
				t.Errorf("info %+v", i)
			}
		}
		return out
	}
	if got := keys("certs"); !slices.Equal(got, []string{"certs/acme/a.example/a.crt", "certs/acme/a.example/a.key", "certs/acme/b.example/b.crt"}) {
		t.Fatalf("list certs = %v (a sibling prefix must not match)", got)
	}
	if got := keys("certs/acme/a.example/a.crt"); !slices.Equal(got, []string{"certs/acme/a.example/a.crt"}) {
		t.Fatalf("list one key = %v", got)
	}
	if got := keys(""); len(got) != 4 {
		t.Fatalf("list all = %v", got)
	}
	mustOK(t, s.DeleteBlobs(ctx, "certs/acme/a.example"))
	if got := keys("certs"); !slices.Equal(got, []string{"certs/acme/b.example/b.crt"}) {
		t.Fatalf("after deleting a directory: %v", got)
	}
	mustOK(t, s.DeleteBlobs(ctx, "certs/acme/b.example/b.crt"))
	mustOK(t, s.DeleteBlobs(ctx, "nothing/here"))
	if got := keys("certs"); len(got) != 0 {
		t.Fatalf("after deleting a key: %v", got)
	}
}

func testBlobKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, k := range []string{"", "/a", "a/", "a//b", "a/../b", "./a", "a/\x00"} {
		if err := s.PutBlob(ctx, k, []byte("v")); err == nil {
			t.Errorf("PutBlob(%q) accepted", k)
		}
	}
	// A key is a value or a prefix of others, never both.
	mustOK(t, s.PutBlob(ctx, "a/b", []byte("v")))
	if err := s.PutBlob(ctx, "a", []byte("v")); err == nil {
		t.Error("a key that is a prefix of another accepted")
	}
	if err := s.PutBlob(ctx, "a/b/c", []byte("v")); err == nil {
		t.Error("a key under a value accepted")
	}
}

func testLocks(t *testing.T, s store.Store) {
	ctx := t.Context()
	ok, err := s.AcquireLock(ctx, "issue/a.example", "node-1", time.Minute)
	mustOK(t, err)
	if !ok {
		t.Fatal("free lock not acquired")
	}
	if ok, _ := s.AcquireLock(ctx, "issue/a.example", "node-2", time.Minute); ok {
		t.Fatal("held lock acquired by another owner")
	}
	if ok, _ := s.AcquireLock(ctx, "issue/a.example", "node-1", time.Minute); !ok {
		t.Fatal("owner could not extend its lock")
	}
	if ok, _ := s.AcquireLock(ctx, "issue/b.example", "node-2", time.Minute); !ok {
		t.Fatal("another lock name blocked")
	}
	mustOK(t, s.ReleaseLock(ctx, "issue/a.example", "node-2")) // not the holder: no effect
	if ok, _ := s.AcquireLock(ctx, "issue/a.example", "node-2", time.Minute); ok {
		t.Fatal("released by someone who did not hold it")
	}
	mustOK(t, s.ReleaseLock(ctx, "issue/a.example", "node-1"))
	if ok, _ := s.AcquireLock(ctx, "issue/a.example", "node-2", 50*time.Millisecond); !ok {
		t.Fatal("released lock not acquired")
	}
	time.Sleep(80 * time.Millisecond)
	if ok, _ := s.AcquireLock(ctx, "issue/a.example", "node-3", time.Minute); !ok {
		t.Fatal("expired lock not taken over")
	}
	if _, err := s.AcquireLock(ctx, "", "o", time.Minute); err == nil {
		t.Error("empty lock name accepted")
	}
}

func testLockConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	var wg sync.WaitGroup
	var got atomic.Int32
	for i := range 16 {
		wg.Go(func() {
			ok, err := s.AcquireLock(ctx, "issue/x", fmt.Sprintf("node-%d", i), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				got.Add(1)
			}
		})
	}
	wg.Wait()
	if got.Load() != 1 {
		t.Fatalf("%d owners acquired one lock", got.Load())
	}
}

// --- Assertions ---

func mustOK(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

func mustIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func mustEqual(t *testing.T, want, got any) {
	t.Helper()
	if !equal(want, got) {
		t.Fatalf("mismatch:\n got %+v\nwant %+v", got, want)
	}
}

// equal compares records the way a round trip through any backend can
// preserve them: times by instant, empty and nil slices and maps alike.
func equal(a, b any) bool {
	return reflect.DeepEqual(normalized(a), normalized(b))
}

func normalized(v any) any {
	if v == nil {
		return nil
	}
	c := reflect.New(reflect.TypeOf(v)).Elem()
	c.Set(deepCopy(reflect.ValueOf(v)))
	normalize(c)
	return c.Interface()
}

// deepCopy copies a top-level slice so that normalize cannot touch the
// caller's elements. (Nested slices hold no times, so normalize only ever
// replaces them, in the copy, rather than writing through them.)
func deepCopy(v reflect.Value) reflect.Value {
	if v.Kind() != reflect.Slice || v.IsNil() {
		return v
	}
	c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
	reflect.Copy(c, v)
	return c
}

var timeType = reflect.TypeFor[time.Time]()

func normalize(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == timeType {
			v.Set(reflect.ValueOf(v.Interface().(time.Time).UTC()))
			return
		}
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				normalize(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			v.SetZero()
			return
		}
		for i := range v.Len() {
			normalize(v.Index(i))
		}
	case reflect.Map:
		if v.Len() == 0 {
			v.SetZero()
		}
	}
}

func sortedBy[T any](xs []T, key func(T) string) []T {
	xs = slices.Clone(xs)
	slices.SortFunc(xs, func(a, b T) int { return strings.Compare(key(a), key(b)) })
	return xs
}

// testAuditChain: each org's events (and the platform's) form a chain,
// numbered from 1 in the order the store accepted them, each linked to
// the one before, even when appends race; VerifyAudit accepts it.
func testAuditChain(t *testing.T, s store.Store) {
	ctx := t.Context()
	orgs := []string{"o1", "o2", ""}
	const perOrg = 30
	var wg sync.WaitGroup
	for _, org := range orgs {
		for w := range 3 {
			wg.Go(func() {
				for i := range perOrg / 3 {
					e := store.AuditEvent{OrgID: org, Actor: "user:u" + strconv.Itoa(w), Action: "a" + strconv.Itoa(i),
						Details: map[string]string{"k": "v", "n": strconv.Itoa(i)}}
					if err := s.AppendAudit(ctx, e); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
	wg.Wait()
	heads, err := s.AuditHeads(ctx)
	mustOK(t, err)
	if len(heads) != len(orgs) {
		t.Fatalf("AuditHeads = %+v, want one per org", heads)
	}
	for _, h := range heads {
		if h.Seq != perOrg || h.Hash == "" {
			t.Errorf("head of %q: %+v, want %d events", h.OrgID, h, perOrg)
		}
		n, err := store.VerifyAudit(ctx, s, h)
		if err != nil || n != perOrg {
			t.Errorf("VerifyAudit(%q) = %d, %v", h.OrgID, n, err)
		}
		var seqs []uint64
		mustOK(t, s.WalkAudit(ctx, h.OrgID, 0, func(e store.AuditEvent) error {
			if e.OrgID != h.OrgID {
				t.Errorf("WalkAudit(%q) gave an event of %q", h.OrgID, e.OrgID)
			}
			seqs = append(seqs, e.Seq)
			return nil
		}))
		for i, sq := range seqs {
			if sq != uint64(i+1) {
				t.Fatalf("WalkAudit(%q) sequence %v, want 1..%d", h.OrgID, seqs, perOrg)
			}
		}
		// From a point in the chain (a delivery cursor): only what follows.
		for _, after := range []uint64{1, perOrg - 1, perOrg, perOrg + 5} {
			var got []uint64
			mustOK(t, s.WalkAudit(ctx, h.OrgID, after, func(e store.AuditEvent) error {
				got = append(got, e.Seq)
				return nil
			}))
			want := uint64(0)
			if after < perOrg {
				want = perOrg - after
			}
			if uint64(len(got)) != want || (len(got) > 0 && got[0] != after+1) {
				t.Errorf("WalkAudit(%q, after %d) = %v, want %d events from %d", h.OrgID, after, got, want, after+1)
			}
		}
	}
	// A head that says more was written than the chain holds: the end of
	// the chain was removed.
	h := heads[0]
	h.Seq++
	if _, err := store.VerifyAudit(ctx, s, h); err == nil {
		t.Error("VerifyAudit accepted a chain shorter than its head")
	}
}

// testDeleteCascades: deleting a user, a membership or an org takes what
// hangs off it (memberships, sessions) before it returns, and
// nothing else.
func testDeleteCascades(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o2"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	for _, u := range []string{"u1", "u2"} {
		mustOK(t, s.CreateUser(ctx, newUser(u)))
	}
	for _, m := range [][2]string{{"u1", "o1"}, {"u1", "o2"}, {"u2", "o1"}, {"u2", "o2"}} {
		mustOK(t, s.CreateMembership(ctx, newMembership(m[0], m[1])))
	}
	sessions := map[string][2]string{"s11": {"u1", "o1"}, "s12": {"u1", "o2"}, "s21": {"u2", "o1"}, "s22": {"u2", "o2"}}
	for id, um := range sessions {
		mustOK(t, s.CreateSession(ctx, store.Session{ID: id, UserID: um[0], OrgID: um[1], CreatedAt: base, ExpiresAt: base.Add(time.Hour), LastSeenAt: base}))
	}
	alive := func(want ...string) {
		t.Helper()
		for id := range sessions {
			_, err := s.GetSession(ctx, id)
			if slices.Contains(want, id) != (err == nil) {
				t.Errorf("session %s: %v, want alive %v", id, err, slices.Contains(want, id))
			}
		}
	}

	// A membership: its sessions in that org go, the rest stay.
	mustOK(t, s.DeleteMembership(ctx, "u2", "o2"))
	alive("s11", "s12", "s21")

	// A user: its memberships and sessions.
	mustOK(t, s.DeleteUser(ctx, "u1"))
	alive("s21")
	for _, o := range []string{"o1", "o2"} {
		_, err := s.GetMembership(ctx, "u1", o)
		mustIs(t, err, store.ErrNotFound)
	}
	ss, err := s.ListSessionsByUser(ctx, "u1")
	mustOK(t, err)
	if len(ss) != 0 {
		t.Errorf("sessions of a deleted user: %+v", ss)
	}
	ms, err := s.ListMembershipsByOrg(ctx, "o1")
	mustOK(t, err)
	if len(ms) != 1 || ms[0].UserID != "u2" {
		t.Errorf("o1's members after u1 left: %+v", ms)
	}

	// An org: its memberships and sessions; its members' other orgs stay.
	mustOK(t, s.DeleteOrg(ctx, "o1"))
	alive()
	ms, err = s.ListMembershipsByUser(ctx, "u2")
	mustOK(t, err)
	if len(ms) != 0 {
		t.Errorf("u2's memberships after o1 went: %+v", ms)
	}
	if _, err := s.GetUser(ctx, "u2"); err != nil {
		t.Errorf("deleting an org deleted its member: %v", err)
	}
	if _, err := s.GetOrg(ctx, "o2"); err != nil {
		t.Errorf("deleting one org deleted another: %v", err)
	}
}

// testOddLookupKeys: the keys of lookups often come straight from a
// request (a ticket in a query string, an email typed in a form, an ID
// in a path). Bytes a SQL database will not take as text (NUL, invalid
// UTF-8), or an empty key, find nothing: ErrNotFound, as for any other
// unknown key, never a failure that reads as the store being down.
func testOddLookupKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, k := range []string{"a\x00b", "\xff\xfe", "", "é\x00"} {
		lookups := map[string]func() error{
			"GetOrg":              func() error { _, err := s.GetOrg(ctx, k); return err },
			"GetOrgBySlug":        func() error { _, err := s.GetOrgBySlug(ctx, k); return err },
			"GetUser":             func() error { _, err := s.GetUser(ctx, k); return err },
			"GetUserByEmail":      func() error { _, err := s.GetUserByEmail(ctx, k); return err },
			"GetMembership":       func() error { _, err := s.GetMembership(ctx, k, k); return err },
			"GetSession":          func() error { _, err := s.GetSession(ctx, k); return err },
			"GetAPIToken":         func() error { _, err := s.GetAPIToken(ctx, k); return err },
			"GetInvitation":       func() error { _, err := s.GetInvitation(ctx, k); return err },
			"GetInvitationByHash": func() error { _, err := s.GetInvitationByHash(ctx, k); return err },
			"GetOIDCClient":       func() error { _, err := s.GetOIDCClient(ctx, k); return err },
			"GetRefreshFamily":    func() error { _, err := s.GetRefreshFamily(ctx, k); return err },
			"GetOnce":             func() error { _, err := s.GetOnce(ctx, "ticket", k); return err },
			"TakeOnce":            func() error { _, err := s.TakeOnce(ctx, "ticket", k); return err },
			"GetBlob":             func() error { _, err := s.GetBlob(ctx, k); return err },
		}
		for name, lookup := range lookups {
			if err := lookup(); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("%s(%q) = %v, want ErrNotFound", name, k, err)
			}
		}
	}
}

// testAuditOddText: an audit event records what a request sent, odd bytes
// included (an email typed with a NUL in it): it is kept, read back
// exactly, and its chain verifies.
func testAuditOddText(t *testing.T, s store.Store) {
	ctx := t.Context()
	odd := "a\x00b@acme.example"
	mustOK(t, s.AppendAudit(ctx, store.AuditEvent{OrgID: "o1", Actor: "anonymous", Action: "login", Target: odd, Outcome: "failure",
		Details: map[string]string{"email": odd}}))
	evs, err := s.ListAudit(ctx, store.AuditQuery{OrgID: "o1"})
	mustOK(t, err)
	if len(evs) != 1 || evs[0].Target != odd || evs[0].Details["email"] != odd {
		t.Fatalf("read back: %+v", evs)
	}
	heads, err := s.AuditHeads(ctx)
	mustOK(t, err)
	for _, h := range heads {
		if _, err := store.VerifyAudit(ctx, s, h); err != nil {
			t.Errorf("chain of %s: %v", h.OrgID, err)
		}
	}
}
