package idp

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/store"
)

func TestInviteSecret(t *testing.T) {
	s, h := NewInviteSecret()
	if !validInviteSecret(s) || h != InviteHash(s) || len(h) != 64 {
		t.Fatalf("secret %q hash %q", s, h)
	}
	if s2, _ := NewInviteSecret(); s2 == s {
		t.Fatal("two secrets alike")
	}
	for _, bad := range []string{"", s[:len(s)-1], s + "A", strings.ToLower(s), "ghat_" + s[6:], strings.Replace(s, s[10:11], "1", 1),
		s[:20] + "=" + s[21:], s[:20] + "\x00" + s[21:], s[:20] + "é" + s[22:]} {
		if validInviteSecret(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

// An invitation lets a person into an org that creates no one by itself,
// with the invited roles on top of the mapped ones; an org admin's
// invitation cannot pull in a person of an org outside their reach.
func TestProvisionInvited(t *testing.T) {
	closed := store.Provisioning{ExistingUsersOnly: true, GroupRoles: map[string][]string{"eng": {"engineer"}}}
	parent := oidcOrg("org_p", "p", []string{"acme.example"}, closed)
	child := store.Org{ID: "org_c", Slug: "c", Name: "c", ParentID: "org_p"}
	other := oidcOrg("org_o", "o", []string{"other.example"}, store.Provisioning{})
	h, st := provisionFixture(t, parent, child, other)
	ctx := context.Background()
	inv := func(email, scope string, roles ...string) *store.Invitation {
		return &store.Invitation{ID: "inv_" + email, OrgID: "org_p", Email: email, Roles: roles, Scope: scope}
	}

	// Uninvited: refused; invited: in, with both kinds of roles.
	if _, err := h.provision(ctx, &parent, &parent, ident("ann@acme.example", "s1", "eng"), nil); connection.KindOf(err) != connection.KindUnknownUser {
		t.Fatalf("uninvited: %v", err)
	}
	u, err := h.provision(ctx, &parent, &parent, ident("ann@acme.example", "s1", "eng"), inv("ann@acme.example", "org_p", "billing"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMembership(ctx, u.ID, "org_p")
	if err != nil || !slices.Equal(m.Roles, []string{"engineer", "member", "billing"}) {
		t.Fatalf("membership %+v %v", m, err)
	}
	// An invitation to an existing member adds its roles.
	if _, err := h.provision(ctx, &parent, &parent, ident("ann@acme.example", "s1"), inv("ann@acme.example", "org_p", "auditor")); err != nil {
		t.Fatal(err)
	}
	if m, _ := st.GetMembership(ctx, u.ID, "org_p"); !slices.Equal(m.Roles, []string{"engineer", "member", "billing", "auditor"}) {
		t.Fatalf("roles after a second invitation %v", m.Roles)
	}

	// Bob is a member of org o. An org admin of p cannot bring him in;
	// a platform admin's invitation can.
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateUser(ctx, store.User{ID: "usr_bob", Email: "bob@acme.example", CreatedAt: now, UpdatedAt: now}))
	must(st.CreateMembership(ctx, store.Membership{UserID: "usr_bob", OrgID: "org_o", CreatedAt: now, UpdatedAt: now}))
	_, err = h.provision(ctx, &parent, &parent, ident("bob@acme.example", "s2"), inv("bob@acme.example", "org_p"))
	var refusal *inviteRefusal
	if !errors.As(err, &refusal) || !strings.Contains(refusal.reason, "org_o") {
		t.Fatalf("org admin's invitation of another org's person: %v", err)
	}
	if _, err := st.GetMembership(ctx, "usr_bob", "org_p"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob joined anyway: %v", err)
	}
	if _, err := h.provision(ctx, &parent, &parent, ident("bob@acme.example", "s2"), inv("bob@acme.example", "")); err != nil {
		t.Fatalf("platform's invitation: %v", err)
	}

	// Scope covers sub-orgs: carol, a member of c, joins p on an
	// invitation made in p's scope, not in c's.
	must(st.CreateUser(ctx, store.User{ID: "usr_carol", Email: "carol@acme.example", CreatedAt: now, UpdatedAt: now}))
	must(st.CreateMembership(ctx, store.Membership{UserID: "usr_carol", OrgID: "org_c", CreatedAt: now, UpdatedAt: now}))
	if err := h.withinScope(ctx, store.User{ID: "usr_carol"}, "org_p"); err != nil {
		t.Errorf("carol within p: %v", err)
	}
	if err := h.withinScope(ctx, store.User{ID: "usr_bob"}, "org_p"); err == nil {
		t.Error("bob (in o and p) within p")
	}
	if err := h.withinScope(ctx, store.User{ID: "usr_x", PlatformAdmin: true}, "org_p"); err == nil {
		t.Error("a platform admin within an org's scope")
	}
}
