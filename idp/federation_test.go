package idp

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

func provisionFixture(t *testing.T, orgs ...store.Org) (*Handler, store.Store) {
	t.Helper()
	st := badgertest.Open(t)
	ctx := context.Background()
	for _, o := range orgs {
		if err := st.CreateOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := NewDirectory(ctx, st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return &Handler{o: Options{Store: st, Orgs: dir, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return time.Unix(1_800_000_000, 0) }}}, st
}

func oidcOrg(id, slug string, domains []string, p store.Provisioning) store.Org {
	return store.Org{ID: id, Slug: slug, Name: slug, EmailDomains: domains, Connection: store.Connection{Type: "oidc", Provisioning: p}}
}

func ident(email, sub string, groups ...string) connection.Identity {
	return connection.Identity{Issuer: "https://idp.example", Subject: sub, Email: email, EmailVerified: true, Name: "Ann", Groups: groups,
		Claims: map[string][]string{"email": {email}, "dept": {"R&D"}, "upn": {"ann@corp.local"}}}
}

func TestProvision(t *testing.T) {
	mapped := store.Provisioning{GroupRoles: map[string][]string{"admins": {"admin"}, "eng": {"engineer", "member"}}}
	tests := []struct {
		name   string
		p      store.Provisioning
		domain []string
		prior  func(t *testing.T, st store.Store) // state before the sign-in
		id     connection.Identity
		kind   connection.Kind // 0 with ok
		ok     bool
		roles  []string
	}{
		{name: "JIT with default role", id: ident("ann@acme.example", "s1"), ok: true, roles: []string{"member"}},
		{name: "groups map to roles", p: mapped, id: ident("ann@acme.example", "s1", "admins", "eng", "unmapped"), ok: true, roles: []string{"admin", "engineer", "member"}},
		{name: "email domain compared without case", id: ident("Ann@ACME.example", "s1"), ok: true, roles: []string{"member"}},
		{name: "other org's domain", id: ident("ann@globex.example", "s1"), kind: connection.KindWrongDomain},
		{name: "any domain when allowed", p: store.Provisioning{AnyEmailDomain: true}, id: ident("ann@gmail.example", "s1"), ok: true, roles: []string{"member"}},
		{name: "subdomain is not the domain", id: ident("ann@evil.acme.example", "s1"), kind: connection.KindWrongDomain},
		{name: "no email", id: ident("", "s1"), kind: connection.KindDenied},
		{name: "malformed email", id: ident("ann@@acme.example", "s1"), kind: connection.KindInvalid},
		{name: "unverified email", id: func() connection.Identity { i := ident("ann@acme.example", "s1"); i.EmailVerified = false; return i }(), kind: connection.KindDenied},
		{name: "no role and no default", p: store.Provisioning{DefaultRoles: []string{}, GroupRoles: map[string][]string{"admins": {"admin"}}}, id: ident("ann@acme.example", "s1", "eng"), kind: connection.KindDenied},
		{name: "existing users only refuses a stranger", p: store.Provisioning{ExistingUsersOnly: true}, id: ident("ann@acme.example", "s1"), kind: connection.KindUnknownUser},
		{name: "existing users only admits a member", p: store.Provisioning{ExistingUsersOnly: true}, prior: member("ann@acme.example", "", []string{"owner"}),
			id: ident("ann@acme.example", "s1"), ok: true, roles: []string{"owner"}},
		{name: "existing users only refuses a user of another org", p: store.Provisioning{ExistingUsersOnly: true, AnyEmailDomain: true},
			prior: func(t *testing.T, st store.Store) {
				_ = st.CreateUser(context.Background(), store.User{ID: "usr_x", Email: "ann@acme.example"})
			}, id: ident("ann@acme.example", "s1"), kind: connection.KindUnknownUser},
		{name: "linked to another IdP identity", prior: member("ann@acme.example", "oidc:https://idp.example#old", nil), id: ident("ann@acme.example", "s1"), kind: connection.KindDenied},
		{name: "same identity again", prior: member("ann@acme.example", "oidc:https://idp.example#s1", []string{"member"}), id: ident("ann@acme.example", "s1"), ok: true, roles: []string{"member"}},
		{name: "roles follow groups when mapped", p: mapped, prior: member("ann@acme.example", "oidc:https://idp.example#s1", []string{"admin", "member"}),
			id: ident("ann@acme.example", "s1", "eng"), ok: true, roles: []string{"engineer", "member"}},
		{name: "disabled user", prior: func(t *testing.T, st store.Store) {
			_ = st.CreateUser(context.Background(), store.User{ID: "usr_x", Email: "ann@acme.example", Disabled: true})
		}, id: ident("ann@acme.example", "s1"), kind: connection.KindDenied},
		{name: "email from a mapped claim", p: store.Provisioning{AnyEmailDomain: true, Claims: store.ClaimMapping{Email: "upn"}}, id: ident("ann@acme.example", "s1"), ok: true, roles: []string{"member"}},
		{name: "mapped email claim still needs verification", p: store.Provisioning{AnyEmailDomain: true, Claims: store.ClaimMapping{Email: "upn"}},
			id: func() connection.Identity { i := ident("ann@acme.example", "s1"); i.EmailVerified = false; return i }(), kind: connection.KindDenied},
		{name: "any domain never takes another org's domain", p: store.Provisioning{AnyEmailDomain: true}, id: ident("bob@globex.example", "s1"), kind: connection.KindWrongDomain},
		{name: "any domain never joins another IdP's user", p: store.Provisioning{AnyEmailDomain: true}, prior: func(t *testing.T, st store.Store) {
			ctx := context.Background()
			_ = st.CreateUser(ctx, store.User{ID: "usr_g", Email: "ann@gmail.example"})
			_ = st.CreateMembership(ctx, store.Membership{UserID: "usr_g", OrgID: "org_globex", Roles: []string{"member"}})
		}, id: ident("ann@gmail.example", "s1"), kind: connection.KindDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			domains := tt.domain
			if domains == nil {
				domains = []string{"acme.example"}
			}
			p := tt.p
			p.Claims.Attributes = map[string]string{"department": "dept"}
			org := oidcOrg("org_acme", "acme", domains, p)
			h, st := provisionFixture(t, org, oidcOrg("org_globex", "globex", []string{"globex.example"}, store.Provisioning{}))
			if tt.prior != nil {
				tt.prior(t, st)
			}
			u, err := h.provision(context.Background(), &org, &org, tt.id, nil)
			if !tt.ok {
				if err == nil || connection.KindOf(err) != tt.kind {
					t.Fatalf("provision = %+v, %v (kind %d), want kind %d", u, err, connection.KindOf(err), tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			m, err := st.GetMembership(context.Background(), u.ID, "org_acme")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(m.Roles, tt.roles) || m.Subject != "oidc:https://idp.example#s1" || m.Attributes["department"] != "R&D" {
				t.Fatalf("membership %+v, want roles %v", m, tt.roles)
			}
		})
	}
}

// member creates a user with a membership of org_acme.
func member(email, subject string, roles []string) func(t *testing.T, st store.Store) {
	return func(t *testing.T, st store.Store) {
		ctx := context.Background()
		if err := st.CreateUser(ctx, store.User{ID: "usr_prior", Email: email}); err != nil {
			t.Fatal(err)
		}
		if err := st.CreateMembership(ctx, store.Membership{UserID: "usr_prior", OrgID: "org_acme", Roles: roles, Subject: subject}); err != nil {
			t.Fatal(err)
		}
	}
}

// Two first sign-ins of one person at once end with one user and one
// membership.
func TestProvisionConcurrentFirstSignIns(t *testing.T) {
	org := oidcOrg("org_acme", "acme", []string{"acme.example"}, store.Provisioning{})
	h, st := provisionFixture(t, org)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	errs := make([]error, 8)
	for i := range ids {
		wg.Go(func() {
			u, err := h.provision(context.Background(), &org, &org, ident("ann@acme.example", "s1"), nil)
			ids[i], errs[i] = u.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("sign-in %d: %q, %v (first %q)", i, ids[i], errs[i], ids[0])
		}
	}
	ms, err := st.ListMembershipsByOrg(context.Background(), "org_acme")
	if err != nil || len(ms) != 1 {
		t.Fatalf("memberships %v, %v", ms, err)
	}
}

func TestOwnerOf(t *testing.T) {
	parent := oidcOrg("org_p", "p", []string{"p.example"}, store.Provisioning{})
	child := store.Org{ID: "org_c", Slug: "c", ParentID: "org_p"}
	orphan := store.Org{ID: "org_o", Slug: "o", ParentID: "org_missing"}
	loopA := store.Org{ID: "org_la", Slug: "la", ParentID: "org_lb"}
	loopB := store.Org{ID: "org_lb", Slug: "lb", ParentID: "org_la"}
	h, _ := provisionFixture(t, parent, child, orphan, loopA, loopB)
	if o, err := h.ownerOf(&child); err != nil || o.ID != "org_p" {
		t.Fatalf("child: %v, %v", o, err)
	}
	for _, o := range []*store.Org{&orphan, &loopA} {
		if _, err := h.ownerOf(o); err == nil {
			t.Fatalf("%s: no error", o.Slug)
		}
	}
}

// updateCounter counts membership updates.
type updateCounter struct {
	store.Store
	updates atomic.Int32
}

func (c *updateCounter) UpdateMembership(ctx context.Context, userID, orgID string, fn func(store.Membership) (store.Membership, error)) (store.Membership, error) {
	c.updates.Add(1)
	return c.Store.UpdateMembership(ctx, userID, orgID, fn)
}

// A returning person whose sign-in changes nothing of their membership
// costs no write; one whose groups, roles or attributes changed is
// updated; a suspended one is still refused.
func TestReturningSignInWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	p := store.Provisioning{GroupRoles: map[string][]string{"admins": {"admin"}, "eng": {"engineer"}}, Claims: store.ClaimMapping{Attributes: map[string]string{"department": "dept"}}}
	org := oidcOrg("org_acme", "acme", []string{"acme.example"}, p)
	h, st := provisionFixture(t, org)
	c := &updateCounter{Store: st}
	h.o.Store = c
	signIn := func(id connection.Identity) (store.Membership, error) {
		u, err := h.provision(ctx, &org, &org, id, nil)
		if err != nil {
			return store.Membership{}, err
		}
		return st.GetMembership(ctx, u.ID, org.ID)
	}
	first, err := signIn(ident("ann@acme.example", "s1", "eng"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := signIn(ident("ann@acme.example", "s1", "eng"))
	if err != nil || c.updates.Load() != 0 || !again.UpdatedAt.Equal(first.UpdatedAt) {
		t.Fatalf("unchanged sign-in: %v, %d updates, updated %v then %v", err, c.updates.Load(), first.UpdatedAt, again.UpdatedAt)
	}
	moved, err := signIn(ident("ann@acme.example", "s1", "admins"))
	if err != nil || c.updates.Load() != 1 || !slices.Equal(moved.Roles, []string{"admin", "member"}) || !slices.Equal(moved.Groups, []string{"admins"}) {
		t.Fatalf("new groups: %v, %d updates, membership %+v", err, c.updates.Load(), moved)
	}
	id := ident("ann@acme.example", "s1", "admins")
	id.Claims["dept"] = []string{"Sales"}
	if m, err := signIn(id); err != nil || c.updates.Load() != 2 || m.Attributes["department"] != "Sales" {
		t.Fatalf("new attribute: %v, %d updates, membership %+v", err, c.updates.Load(), m)
	}
	if _, err := st.UpdateMembership(ctx, moved.UserID, org.ID, func(m store.Membership) (store.Membership, error) { m.Disabled = true; return m, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := signIn(id); connection.KindOf(err) != connection.KindDenied {
		t.Fatalf("suspended: %v", err)
	}
}
