package pgstore

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// fill puts one of every kind of record in st, with a few audit chains.
func fill(t *testing.T, st store.Store) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "acme", Name: "Acme", CreatedAt: now}))
	must(st.CreateOrg(ctx, store.Org{ID: "o2", Slug: "acme-labs", ParentID: "o1", Name: "Labs"}))
	must(st.CreateUser(ctx, store.User{ID: "u1", Email: "Ann@Acme.example", Name: "Ann Ötzi", CreatedAt: now}))
	must(st.CreateUser(ctx, store.User{ID: "u2", Email: "bob@acme.example"}))
	must(st.CreateMembership(ctx, store.Membership{UserID: "u1", OrgID: "o1", Roles: []string{"admin"}}))
	must(st.CreateMembership(ctx, store.Membership{UserID: "u2", OrgID: "o2"}))
	must(st.CreateSession(ctx, store.Session{ID: "s1", UserID: "u1", OrgID: "o1", ExpiresAt: now.Add(time.Hour), AMR: []string{"pwd"}}))
	must(st.CreateSigningKey(ctx, store.SigningKey{ID: "k1"}))
	must(st.CreateAPIToken(ctx, store.APIToken{ID: "t1", OrgID: "o1", CreatedBy: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	must(st.CreateAPIToken(ctx, store.APIToken{ID: "t2", CreatedAt: now}))
	must(st.CreateInvitation(ctx, store.Invitation{ID: "i1", OrgID: "o1", Email: "cat@acme.example", Hash: "h1", CreatedBy: "u1", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	must(st.CreateOIDCClient(ctx, store.OIDCClient{ID: "app1", OrgID: "o1", Settings: []byte(`{"name":"App","type":"web"}`)}))
	must(st.CreateRefreshFamily(ctx, store.RefreshFamily{ID: "r1", ClientID: "app1", UserID: "u1", OrgID: "o1", SessionID: "s1", ExpiresAt: now.Add(time.Hour)}))
	for i := range 5 {
		for _, org := range []string{"", "o1", "o2"} {
			must(st.AppendAudit(ctx, store.AuditEvent{OrgID: org, Actor: "user:u1", Action: "test", Target: org, Details: map[string]string{"i": strings.Repeat("x", i)}}))
		}
	}
	must(st.PutOnce(ctx, "ticket", "a/b", []byte{0, 1, 2}, now.Add(time.Hour)))
	must(st.PutBlob(ctx, "certificates/acme/x.crt", []byte("cert")))
	if _, err := st.Secret(ctx, "csrf-key", []byte("0123456789abcdef0123456789abcdef")); err != nil {
		t.Fatal(err)
	}
}

// A deployment moves from Badger to PostgreSQL and back: every record,
// index and audit chain arrives (Copy checks it all), and a store that is
// not empty is never copied into.
func TestCopyBetweenBackends(t *testing.T) {
	ctx := context.Background()
	var bs store.Backend = badgertest.Open(t)
	fill(t, bs)
	pg, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	n, err := store.Copy(ctx, bs, pg)
	if err != nil {
		t.Fatal(err)
	}
	if n < 25 {
		t.Fatalf("copied %d records", n)
	}
	var back store.Backend = badgertest.Open(t)
	if m, err := store.Copy(ctx, pg, back); err != nil || m != n {
		t.Fatalf("back to Badger: %d of %d, %v", m, n, err)
	}
	if err := store.CompareStores(ctx, bs, back); err != nil {
		t.Fatal(err)
	}
	// The copy works: sessions, people by email, the chain goes on.
	if u, err := pg.GetUserByEmail(ctx, "ann@acme.example"); err != nil || u.ID != "u1" {
		t.Fatalf("ann on PostgreSQL: %+v %v", u, err)
	}
	if err := pg.AppendAudit(ctx, store.AuditEvent{OrgID: "o1", Action: "after"}); err != nil {
		t.Fatal(err)
	}
	heads, _ := pg.AuditHeads(ctx)
	for _, h := range heads {
		if _, err := store.VerifyAudit(ctx, pg, h); err != nil {
			t.Fatalf("chain %q after the copy: %v", h.OrgID, err)
		}
	}
	// A copy into a store with records is refused, and changes nothing.
	if _, err := store.Copy(ctx, bs, pg); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a copy into a full store: %v", err)
	}
	// A difference is found.
	if err := store.CompareStores(ctx, bs, pg); err == nil {
		t.Fatal("a store with one more event compares equal")
	}
}
