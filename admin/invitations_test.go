package admin

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/store"
)

func TestInvitations(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	create := func(who, org string, body map[string]any) (response, NewInvitationView) {
		t.Helper()
		r := h.do(t, who, "POST", "/orgs/"+org+"/invitations", body)
		var v NewInvitationView
		if r.status == 201 {
			r.json(t, &v)
		}
		return r, v
	}

	// Refused bodies, each at its field.
	for name, tc := range map[string]struct {
		body    map[string]any
		pointer string
	}{
		"no email":          {map[string]any{}, "/email"},
		"bad email":         {map[string]any{"email": "not an address"}, "/email"},
		"foreign domain":    {map[string]any{"email": "x@elsewhere.example"}, "/email"},
		"reserved role":     {map[string]any{"email": "x@a.example", "roles": []string{"platform_admin"}}, "/roles/0"},
		"role with a comma": {map[string]any{"email": "x@a.example", "roles": []string{"a,b"}}, "/roles/0"},
		"control name":      {map[string]any{"email": "x@a.example", "name": "a\u202eb"}, "/name"},
		"short life":        {map[string]any{"email": "x@a.example", "expires_in": "59m"}, "/expires_in"},
		"long life":         {map[string]any{"email": "x@a.example", "expires_in": "721h"}, "/expires_in"},
		"no duration":       {map[string]any{"email": "x@a.example", "expires_in": "soon"}, "/expires_in"},
	} {
		r, _ := create("admin-a", "a", tc.body)
		if r.status != 400 || !hasPointer(r.problem(t), tc.pointer) {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}

	r, v := create("admin-a", "a", map[string]any{"email": " New.Person@A.example ", "name": "New", "roles": []string{"viewer"}, "expires_in": "48h"})
	if r.status != 201 || v.Email != "new.person@a.example" || v.Status != "pending" || !slices.Equal(v.Roles, []string{"viewer"}) ||
		v.CreatedBy != h.users["admin-a"].ID || v.ExpiresAt.Sub(v.CreatedAt) != 48*time.Hour {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	u, err := url.Parse(v.URL)
	if err != nil {
		t.Fatal(err)
	}
	secret := u.Query().Get("token")
	stored, err := h.st.GetInvitation(ctx, v.ID)
	must(t, err)
	if stored.Hash != idp.InviteHash(secret) || strings.Contains(string(r.body), stored.Hash) || stored.Scope != "org_a" {
		t.Fatalf("stored %+v for link %s", stored, v.URL)
	}
	// Default role; already a member; pending already.
	if r, d := create("admin-a", "a", map[string]any{"email": "other@a.example"}); r.status != 201 || !slices.Equal(d.Roles, []string{"member"}) {
		t.Errorf("default roles: %d %s", r.status, r.body)
	}
	if r, _ := create("admin-a", "a", map[string]any{"email": "user-a@a.example"}); r.status != 409 || r.problem(t).Type != "urn:gatehouse:problem:exists" {
		t.Errorf("a member: %d %s", r.status, r.body)
	}
	if r, _ := create("admin-a", "a", map[string]any{"email": "new.person@a.example"}); r.status != 409 || r.problem(t).Type != "urn:gatehouse:problem:pending" {
		t.Errorf("pending already: %d %s", r.status, r.body)
	}
	// Another org's person: only a platform admin invites them, and an
	// org admin cannot resend that invitation (its link would bring them
	// in with the platform's word).
	now := time.Now().UTC()
	must(t, h.st.CreateUser(ctx, store.User{ID: "usr_x", Email: "x@a.example", CreatedAt: now, UpdatedAt: now}))
	must(t, h.st.CreateMembership(ctx, store.Membership{UserID: "usr_x", OrgID: "org_b", CreatedAt: now, UpdatedAt: now}))
	if r, _ := create("admin-a", "a", map[string]any{"email": "x@a.example"}); r.status != 409 || r.problem(t).Type != "urn:gatehouse:problem:person-elsewhere" {
		t.Errorf("another org's person: %d %s", r.status, r.body)
	}
	if r, _ := create("admin-a", "a", map[string]any{"email": "platform@a.example"}); r.status != 403 {
		t.Errorf("a platform admin's address: %d %s", r.status, r.body)
	}
	r, px := create("platform", "a", map[string]any{"email": "x@a.example"})
	if r.status != 201 {
		t.Fatalf("platform invites another org's person: %d %s", r.status, r.body)
	}
	if st, _ := h.st.GetInvitation(ctx, px.ID); st.Scope != "" {
		t.Errorf("platform invitation scope %q", st.Scope)
	}
	if r := h.do(t, "admin-a", "POST", "/orgs/a/invitations/"+px.ID+"/resend", nil); r.status != 403 {
		t.Errorf("org admin resends the platform's invitation: %d %s", r.status, r.body)
	}
	// A sub-org's admin cannot resend the parent admin's invitation to
	// the sub-org either; the parent's admin can.
	r, sub := create("admin-a", "a1", map[string]any{"email": "sub@a.example"})
	if r.status != 201 {
		t.Fatalf("invite to a1: %d %s", r.status, r.body)
	}
	if r := h.do(t, "admin-a1", "POST", "/orgs/a1/invitations/"+sub.ID+"/resend", nil); r.status != 403 {
		t.Errorf("a1's admin resends a's: %d", r.status)
	}

	// Resend: a new link, the old one's hash gone, the same lifetime.
	r = h.do(t, "admin-a", "POST", "/orgs/a/invitations/"+v.ID+"/resend", nil)
	var again NewInvitationView
	r.json(t, &again)
	if r.status != 200 || again.URL == v.URL || again.ExpiresAt.Sub(again.SentAt) != 48*time.Hour {
		t.Fatalf("resend: %d %s", r.status, r.body)
	}
	if _, err := h.st.GetInvitationByHash(ctx, idp.InviteHash(secret)); err == nil {
		t.Error("the old link still finds the invitation")
	}
	// Expired ones are listed as such, and can be resent.
	_, err = h.st.UpdateInvitation(ctx, v.ID, func(i store.Invitation) (store.Invitation, error) {
		i.SentAt, i.ExpiresAt = now.Add(-72*time.Hour), now.Add(-24*time.Hour)
		return i, nil
	})
	must(t, err)
	var list invitationList
	h.do(t, "auditor-a", "GET", "/orgs/a/invitations", nil).json(t, &list)
	statuses := map[string]string{}
	for _, i := range list.Items {
		statuses[i.Email] = i.Status
	}
	if len(list.Items) != 4 || statuses["new.person@a.example"] != "expired" || statuses["x@a.example"] != "pending" {
		t.Fatalf("listing: %+v", list.Items)
	}
	r = h.do(t, "admin-a", "POST", "/orgs/a/invitations/"+v.ID+"/resend", nil)
	r.json(t, &again)
	if r.status != 200 || again.Status != "pending" || !again.ExpiresAt.After(now) {
		t.Fatalf("resend of an expired one: %d %s", r.status, r.body)
	}

	// Revoked: gone, and gone for its org only.
	if r := h.do(t, "admin-b", "DELETE", "/orgs/a/invitations/"+v.ID, nil); r.status != 404 {
		t.Errorf("b's admin revokes a's: %d", r.status)
	}
	if r := h.do(t, "admin-a", "DELETE", "/orgs/b/invitations/"+h.invitationIDs["b"], nil); r.status != 404 {
		t.Errorf("a's admin revokes b's: %d", r.status)
	}
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/invitations/"+v.ID, nil); r.status != 204 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if r := h.do(t, "admin-a", "GET", "/orgs/a/invitations/"+v.ID, nil); r.status != 404 {
		t.Errorf("revoked: %d", r.status)
	}

	// An invitation goes with its maker: admin-a, removed from the only
	// org they are in, is deleted, and their invitations with them.
	if r := h.do(t, "platform", "DELETE", "/orgs/a/users/"+h.users["admin-a"].ID, nil); r.status != 204 {
		t.Fatalf("remove admin-a: %d %s", r.status, r.body)
	}
	list = invitationList{}
	h.do(t, "platform", "GET", "/orgs/a/invitations", nil).json(t, &list)
	for _, i := range list.Items {
		if i.CreatedBy == h.users["admin-a"].ID {
			t.Errorf("invitation %s outlived its maker", i.ID)
		}
	}
	if len(list.Items) != 1 || list.Items[0].ID != px.ID { // the platform's only
		t.Errorf("after the maker left: %+v", list.Items)
	}
}

func hasPointer(p problemBody, pointer string) bool {
	return slices.ContainsFunc(p.Errors, func(e FieldError) bool { return e.Pointer == pointer })
}
