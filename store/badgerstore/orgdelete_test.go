package badgerstore

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// countKeys counts the keys under pfx.
func countKeys(t testing.TB, s *Store, pfx []byte) int {
	t.Helper()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		o := badger.DefaultIteratorOptions
		o.Prefix, o.PrefetchValues = pfx, false
		it := txn.NewIterator(o)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDeleteOrgHuge is the regression: an org of 100,000 members, whose
// memberships' keys alone exceed what one Badger transaction can hold
// (deleting it in one transaction, as DeleteOrg once did, failed with
// ErrTxnTooBig), is deleted.
func TestDeleteOrgHuge(t *testing.T) {
	const n = 100_000
	ctx := t.Context()
	dir := t.TempDir()
	start := time.Now()
	s := openTest(t, dir, WithoutSync())
	fillMembers(t, s, "big", n)
	if err := s.CreateOrg(ctx, store.Org{ID: "small", Slug: "small"}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := s.CreateMembership(ctx, store.Membership{UserID: benchUser(i).ID, OrgID: "small"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer closeTolerant(t, s)
	t.Logf("%d members loaded in %v", n, time.Since(start).Round(time.Millisecond))

	// One transaction cannot even delete the memberships' three keys each.
	var keys [][]byte
	if err := s.db.View(func(txn *badger.Txn) error {
		return scan(txn, prefix("mem/o", "big"), false, func(item *badger.Item) error {
			uid := string(item.Key()[len(prefix("mem/o", "big")):]) // benchUser IDs need no escaping
			keys = append(keys, item.KeyCopy(nil), memKey(uid, "big"))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return deleteKeys(txn, keys...) }); !errors.Is(err, badger.ErrTxnTooBig) {
		t.Fatalf("deleting %d members' keys in one transaction: %v, want ErrTxnTooBig (the test no longer proves anything)", n, err)
	}

	start = time.Now()
	if err := s.DeleteOrg(ctx, "big"); err != nil {
		t.Fatalf("DeleteOrg: %v", err)
	}
	t.Logf("DeleteOrg of %d members took %v", n, time.Since(start).Round(time.Millisecond))

	for _, pfx := range [][]byte{prefix("mem/o", "big"), memberPrefix("big"), prefix("tokorg", "big"), []byte("orgdel/")} {
		if c := countKeys(t, s, pfx); c != 0 {
			t.Errorf("%d keys left under %q", c, pfx)
		}
	}
	if c := countKeys(t, s, []byte("user/")); c != n {
		t.Errorf("%d users left, want all %d", c, n)
	}
	ms, err := s.ListMembershipsByOrg(ctx, "small")
	if err != nil || len(ms) != 10 {
		t.Errorf("small's memberships: %d, %v", len(ms), err)
	}
	checkConsistency(t, s)
}

var errCrash = errors.New("crash")

// TestDeleteOrgCrash stops a deletion after its first batch, as a crash
// would: the org is gone and what is left of it invisible and untouchable;
// the next Open finishes the deletion and removes its mark.
func TestDeleteOrgCrash(t *testing.T) {
	ctx := t.Context()
	smallDeleteBatches(t, 100)
	dir := t.TempDir()
	s := openTest(t, dir)
	const n = 450
	for _, o := range []string{"doomed", "kept"} {
		if err := s.CreateOrg(ctx, store.Org{ID: o, Slug: "slug-" + o}); err != nil {
			t.Fatal(err)
		}
	}
	exp := time.Now().Add(time.Hour)
	for i := range n {
		u := benchUser(i)
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		orgs := []string{"doomed"}
		if i%3 == 0 {
			orgs = append(orgs, "kept")
		}
		for _, o := range orgs {
			if err := s.CreateMembership(ctx, store.Membership{UserID: u.ID, OrgID: o}); err != nil {
				t.Fatal(err)
			}
			if err := s.CreateSession(ctx, store.Session{ID: o + "-" + u.ID, UserID: u.ID, OrgID: o, ExpiresAt: exp}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := range 3 {
		if err := s.CreateAPIToken(ctx, store.APIToken{ID: fmt.Sprintf("tok%d", i), OrgID: "doomed", Role: store.RoleAdmin, CreatedBy: benchUser(i).ID}); err != nil {
			t.Fatal(err)
		}
	}

	batches := 0
	afterDeleteBatch = func(string) error {
		if batches++; batches == 1 {
			return errCrash
		}
		return nil
	}
	defer func() { afterDeleteBatch = nil }()
	if err := s.DeleteOrg(ctx, "doomed"); !errors.Is(err, errCrash) {
		t.Fatalf("DeleteOrg: %v, want the crash", err)
	}
	if c := countKeys(t, s, prefix("mem/o", "doomed")); c != n-100 {
		t.Fatalf("%d memberships left after the first batch, want %d", c, n-100)
	}
	if c := countKeys(t, s, []byte("orgdel/")); c != 1 {
		t.Fatalf("%d deletion marks", c)
	}

	// Meanwhile: the org is gone, its leftovers are invisible.
	u := benchUser(n - 1).ID
	mustNotFound := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: %v, want ErrNotFound", what, err)
		}
	}
	_, err := s.GetOrg(ctx, "doomed")
	mustNotFound("GetOrg", err)
	_, err = s.GetOrgBySlug(ctx, "slug-doomed")
	mustNotFound("GetOrgBySlug", err)
	_, err = s.GetMembership(ctx, u, "doomed")
	mustNotFound("GetMembership", err)
	_, err = s.UpdateMembership(ctx, u, "doomed", func(m store.Membership) (store.Membership, error) { return m, nil })
	mustNotFound("UpdateMembership", err)
	mustNotFound("DeleteMembership", s.DeleteMembership(ctx, u, "doomed"))
	_, err = s.GetAPIToken(ctx, "tok1")
	mustNotFound("GetAPIToken", err)
	_, err = s.UpdateAPIToken(ctx, "tok1", func(t store.APIToken) (store.APIToken, error) { return t, nil })
	mustNotFound("UpdateAPIToken", err)
	mustNotFound("DeleteAPIToken", s.DeleteAPIToken(ctx, "tok1"))
	mustNotFound("CreateMembership", s.CreateMembership(ctx, store.Membership{UserID: "new", OrgID: "doomed"}))
	mustNotFound("CreateAPIToken", s.CreateAPIToken(ctx, store.APIToken{ID: "tok9", OrgID: "doomed", Role: store.RoleAdmin}))
	mustNotFound("CreateSession", s.CreateSession(ctx, store.Session{ID: "late", UserID: u, OrgID: "doomed", ExpiresAt: exp}))
	if ms, err := s.ListMembershipsByUser(ctx, benchUser(n-3).ID); err != nil || len(ms) != 1 || ms[0].OrgID != "kept" {
		t.Errorf("ListMembershipsByUser during the deletion: %+v, %v", ms, err)
	}
	if ms, err := s.ListMembershipsByOrg(ctx, "doomed"); err != nil || len(ms) != 0 {
		t.Errorf("ListMembershipsByOrg during the deletion: %d, %v", len(ms), err)
	}
	if ms, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "doomed"}); err != nil || len(ms) != 0 {
		t.Errorf("ListMembers during the deletion: %d, %v", len(ms), err)
	}
	if ts, err := s.ListAPITokens(ctx, "doomed"); err != nil || len(ts) != 0 {
		t.Errorf("ListAPITokens during the deletion: %d, %v", len(ts), err)
	}
	// The slug is free; the ID is not until the leftovers are gone.
	if err := s.CreateOrg(ctx, store.Org{ID: "reborn", Slug: "slug-doomed"}); err != nil {
		t.Errorf("CreateOrg with the deleted org's slug: %v", err)
	}
	if err := s.CreateOrg(ctx, store.Org{ID: "doomed", Slug: "other"}); !errors.Is(err, store.ErrAlreadyExists) {
		t.Errorf("CreateOrg with the ID of an org being deleted: %v, want ErrAlreadyExists", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The next start finishes it.
	var logs bytes.Buffer
	s, err = Open(dir, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer closeTolerant(t, s)
	if batches < 4 {
		t.Errorf("Open finished the deletion in %d batches, want several", batches-1)
	}
	for _, pfx := range [][]byte{prefix("mem/o", "doomed"), memberPrefix("doomed"), prefix("tokorg", "doomed"), []byte("orgdel/")} {
		if c := countKeys(t, s, pfx); c != 0 {
			t.Errorf("%d keys left under %q after Open", c, pfx)
		}
	}
	for i := range n {
		if _, err := s.GetSession(ctx, "doomed-"+benchUser(i).ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("session in the deleted org: %v", err)
		}
	}
	if c := countKeys(t, s, []byte("sess/kept-")); c != (n+2)/3 {
		t.Errorf("%d sessions in kept, want %d", c, (n+2)/3)
	}
	if !strings.Contains(logs.String(), "finished the deletion of an org") || !strings.Contains(logs.String(), "memberships="+fmt.Sprint(n-100)) {
		t.Errorf("Open's log:\n%s", logs.String())
	}
	checkConsistency(t, s)
	if err := s.CreateOrg(ctx, store.Org{ID: "doomed", Slug: "again"}); err != nil {
		t.Errorf("CreateOrg with the ID once the deletion finished: %v", err)
	}
}

// TestDeleteOrgAgainFinishes: DeleteOrg of an org whose deletion stopped
// half way finishes it, and answers ErrNotFound (the org is gone).
func TestDeleteOrgAgainFinishes(t *testing.T) {
	ctx := t.Context()
	smallDeleteBatches(t, 10)
	s := openTest(t, "", WithInMemory())
	defer closeTolerant(t, s)
	if err := s.CreateOrg(ctx, store.Org{ID: "o", Slug: "o"}); err != nil {
		t.Fatal(err)
	}
	for i := range 35 {
		if err := s.CreateMembership(ctx, store.Membership{UserID: fmt.Sprint(i), OrgID: "o"}); err != nil {
			t.Fatal(err)
		}
	}
	afterDeleteBatch = func(string) error { return errCrash }
	if err := s.DeleteOrg(ctx, "o"); !errors.Is(err, errCrash) {
		t.Fatalf("DeleteOrg: %v, want the crash", err)
	}
	afterDeleteBatch = nil
	if err := s.DeleteOrg(ctx, "o"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteOrg again: %v, want ErrNotFound", err)
	}
	for _, pfx := range [][]byte{prefix("mem/o", "o"), memberPrefix("o"), []byte("mem/u/"), []byte("orgdel/")} {
		if c := countKeys(t, s, pfx); c != 0 {
			t.Errorf("%d keys left under %q", c, pfx)
		}
	}
	checkConsistency(t, s)
}
