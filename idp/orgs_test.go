package idp

import (
	"context"
	"testing"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

func TestSwitchableOrgs(t *testing.T) {
	parent := oidcOrg("org_p", "p", []string{"p.example"}, store.Provisioning{})
	child := store.Org{ID: "org_c", Slug: "c", Name: "C", ParentID: "org_p"}
	linked := store.Org{ID: "org_l", Slug: "l", Name: "L", ParentID: "org_p"}
	other := oidcOrg("org_o", "o", []string{"o.example"}, store.Provisioning{})
	h, st := provisionFixture(t, parent, child, linked, other)
	ctx := context.Background()
	_ = st.CreateUser(ctx, store.User{ID: "usr_1", Email: "ann@p.example"})
	for _, m := range []store.Membership{
		{UserID: "usr_1", OrgID: "org_p", Subject: "oidc:https://idp.example#s1"},
		{UserID: "usr_1", OrgID: "org_c"},
		{UserID: "usr_1", OrgID: "org_l", Subject: "oidc:https://idp.example#someone-else"},
		{UserID: "usr_1", OrgID: "org_o"},
	} {
		if err := st.CreateMembership(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	switchable := func(id *session.Identity) []string {
		_, sw, err := h.choices(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for slug := range sw {
			out = append(out, slug)
		}
		return out
	}
	id := &session.Identity{UserID: "usr_1", OrgID: "org_p", Connection: "oidc", Federation: federation(&parent), Subject: "oidc:https://idp.example#s1"}
	if got := switchable(id); len(got) != 1 || got[0] != "c" {
		t.Fatalf("switchable = %v, want [c] (not l: linked to another identity; not o: another IdP)", got)
	}
	// A session from before the connection changed switches nowhere.
	stale := *id
	stale.Federation = "org_p/0123456789abcdef"
	if got := switchable(&stale); len(got) != 0 {
		t.Fatalf("stale session can switch to %v", got)
	}
	// Nor does a password session.
	pw := *id
	pw.Connection, pw.Federation, pw.Subject = "password", "", ""
	if got := switchable(&pw); len(got) != 0 {
		t.Fatalf("password session can switch to %v", got)
	}
}
