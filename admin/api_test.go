package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

func TestETagsGuardUpdates(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct{ name, get, patch string }{
		{"org", "/orgs/a", "/orgs/a"},
		{"user", "/orgs/a/users/usr_user_a", "/orgs/a/users/usr_user_a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, "admin-a", "GET", tc.get, nil)
			etag := r.header.Get("ETag")
			if r.status != 200 || !strings.HasPrefix(etag, `"`) {
				t.Fatalf("GET: %d, ETag %q", r.status, etag)
			}
			body := map[string]any{"name": "First"}
			if r := h.do(t, "admin-a", "PATCH", tc.patch, body); r.status != 428 {
				t.Fatalf("PATCH without If-Match: %d %s", r.status, r.body)
			}
			r = h.do(t, "admin-a", "PATCH", tc.patch, body, "If-Match", etag)
			if r.status != 200 || r.header.Get("ETag") == etag {
				t.Fatalf("PATCH: %d, ETag %q (was %q): %s", r.status, r.header.Get("ETag"), etag, r.body)
			}
			// A second admin still holding the old ETag loses, visibly.
			r = h.do(t, "admin-a", "PATCH", tc.patch, map[string]any{"name": "Second"}, "If-Match", etag)
			if r.status != 412 || r.problem(t).Type != "urn:gatehouse:problem:changed" {
				t.Fatalf("stale PATCH: %d %s", r.status, r.body)
			}
			var got struct{ Name string }
			h.do(t, "admin-a", "GET", tc.get, nil).json(t, &got)
			if got.Name != "First" {
				t.Fatalf("name %q after a refused stale write", got.Name)
			}
		})
	}
}

func TestDeclaredObjectsAreReadOnly(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.st.UpdateOrg(ctx, "org_a", func(o store.Org) (store.Org, error) { o.Declared = true; return o, nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := h.st.UpdateMembership(ctx, "usr_user_b", "org_b", func(m store.Membership) (store.Membership, error) {
		m.Declared = true
		return m, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ who, method, path string }{
		{"platform", "PATCH", "/orgs/a"},
		{"platform", "DELETE", "/orgs/a"},
		{"admin-b", "PATCH", "/orgs/b/users/usr_user_b"},
		{"admin-b", "DELETE", "/orgs/b/users/usr_user_b"},
		{"platform", "DELETE", "/orgs/b/users/usr_user_b"},
	} {
		r := h.do(t, tc.who, tc.method, tc.path, map[string]any{"name": "x"}, "If-Match", "*")
		if r.status != 409 {
			t.Errorf("%s %s: %d %s", tc.method, tc.path, r.status, r.body)
			continue
		}
		if p := r.problem(t); p.Type != "urn:gatehouse:problem:managed-by-config" || !strings.Contains(p.Detail, "gatehouse.yaml") {
			t.Errorf("%s %s: %+v", tc.method, tc.path, p)
		}
	}
	// Shown, marked.
	var o OrgView
	h.do(t, "platform", "GET", "/orgs/a", nil).json(t, &o)
	if o.ManagedBy != "config" {
		t.Errorf("managed_by %q", o.ManagedBy)
	}
}

func TestDeprovisioningEndsSessions(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	alive := func(name string) bool {
		_, err := h.sessions.Lookup(ctx, h.sessionIDs[name])
		return err == nil
	}
	if !alive("user-a") || !alive("member-a") {
		t.Fatal("sessions not alive at the start")
	}
	// Suspension: at once on this node, and for any node reading the store.
	r := h.do(t, "admin-a", "PATCH", "/orgs/a/users/usr_user_a", map[string]any{"disabled": true}, "If-Match", "*")
	if r.status != 200 {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	if alive("user-a") {
		t.Error("a suspended member's session still authenticates")
	}
	other, err := session.New(h.st, make([]byte, 32), session.Options{})
	must(t, err)
	if _, err := other.Lookup(ctx, h.sessionIDs["user-a"]); err == nil {
		t.Error("another node still accepts the suspended member's session")
	}
	// Removal.
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/users/usr_member_a", nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if alive("member-a") {
		t.Error("a removed member's session still authenticates")
	}
	if _, err := h.st.GetUser(ctx, "usr_member_a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a person left in no org is kept: %v", err)
	}
	// A token lives only while its maker holds the rights it grants.
	r = h.do(t, "admin-a", "POST", "/orgs/a/tokens", map[string]any{"name": "ci", "role": "admin"})
	var tok NewTokenView
	r.json(t, &tok)
	h.creds["ci"] = bearer(tok.Secret)
	if r := h.do(t, "ci", "GET", "/orgs/a/users", nil); r.status != 200 {
		t.Fatalf("fresh token: %d %s", r.status, r.body)
	}
	if r := h.do(t, "platform", "PATCH", "/orgs/a/users/usr_admin_a", map[string]any{"roles": []string{"auditor"}}, "If-Match", "*"); r.status != 200 {
		t.Fatalf("demote: %d %s", r.status, r.body)
	}
	if r := h.do(t, "ci", "GET", "/orgs/a/users", nil); r.status != 401 {
		t.Fatalf("token of a demoted maker: %d %s", r.status, r.body)
	}
}

func TestTokens(t *testing.T) {
	h := newHarness(t)
	r := h.do(t, "admin-a", "POST", "/orgs/a/tokens", map[string]any{"name": "reader", "role": "auditor", "expires_in": "1h"})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var tok NewTokenView
	r.json(t, &tok)
	if !strings.HasPrefix(tok.Secret, tokenPrefix) || tok.CreatedBy != "usr_admin_a" || time.Until(tok.ExpiresAt) > time.Hour {
		t.Fatalf("token %+v", tok)
	}
	stored, err := h.st.GetAPIToken(context.Background(), tok.ID)
	must(t, err)
	if strings.Contains(stored.Hash, tok.Secret[len(tokenPrefix):]) || stored.Hash == "" {
		t.Fatal("the secret is stored as it is")
	}
	h.creds["reader"] = bearer(tok.Secret)
	if r := h.do(t, "reader", "GET", "/orgs/a/audit", nil); r.status != 200 {
		t.Fatalf("auditor token reads audit: %d", r.status)
	}
	if r := h.do(t, "reader", "POST", "/orgs/a/users", map[string]any{"email": "x@a.example"}); r.status != 403 {
		t.Fatalf("auditor token writes: %d", r.status)
	}
	if r := h.do(t, "reader", "POST", "/orgs/a/tokens", map[string]any{"name": "x", "role": "auditor"}); r.status != 403 {
		t.Fatalf("an org token makes tokens: %d", r.status)
	}
	if r := h.do(t, "admin-a", "POST", "/orgs/a/tokens", map[string]any{"name": "x", "role": "platform_admin"}); r.status != 400 {
		t.Fatalf("org token with the platform role: %d", r.status)
	}
	// The listing shows last use, never a secret or hash.
	r = h.do(t, "admin-a", "GET", "/orgs/a/tokens", nil)
	if strings.Contains(string(r.body), stored.Hash) || strings.Contains(string(r.body), "secret") {
		t.Fatalf("listing leaks: %s", r.body)
	}
	var list tokenList
	r.json(t, &list)
	i := slices.IndexFunc(list.Items, func(v TokenView) bool { return v.ID == tok.ID })
	if i < 0 || list.Items[i].LastUsedAt.IsZero() {
		t.Fatalf("last use not recorded: %+v", list.Items)
	}
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/tokens/"+tok.ID, nil); r.status != 204 {
		t.Fatalf("revoke: %d", r.status)
	}
	r = h.do(t, "reader", "GET", "/orgs/a/audit", nil)
	if r.status != 401 || !strings.Contains(r.problem(t).Detail, "revoked") {
		t.Fatalf("revoked token: %d %s", r.status, r.body)
	}
	// Anything that is not a whole, known token is refused, never taken
	// for no credentials.
	real := tok.Secret
	for _, bad := range []string{"", "ghat_", real[:len(real)-1], real + "a", strings.ToUpper(real), "ghat_" + strings.Repeat("a", 16) + "_" + strings.Repeat("a", 52),
		real[:len(real)-1] + "b", "Basic " + real, "ghat_" + strings.Repeat("é", 20)} {
		h.creds["bad"] = http.Header{"Authorization": {"Bearer " + bad}}
		if strings.HasPrefix(bad, "Basic ") {
			h.creds["bad"] = http.Header{"Authorization": {bad}}
		}
		if r := h.do(t, "bad", "GET", "/me", nil); r.status != 401 {
			t.Errorf("token %q: %d", bad, r.status)
		}
	}
}

func TestBodiesAreChecked(t *testing.T) {
	h := newHarness(t)
	big := `{"email":"` + strings.Repeat("a", maxBody) + `@a.example"}`
	for _, tc := range []struct {
		name, body, ctype string
		status            int
		code, pointer     string
	}{
		{"oversize", big, "application/json", 413, "too-large", ""},
		{"not json", `{"email":`, "application/json", 400, "malformed", ""},
		{"not an object", `["a"]`, "application/json", 400, "malformed", ""},
		{"unknown field", `{"email":"x@a.example","admin":true}`, "application/json", 400, "invalid", "/admin"},
		{"wrong type", `{"email":"x@a.example","roles":"admin"}`, "application/json", 400, "invalid", "/roles"},
		{"trailing data", `{"email":"x@a.example"} {}`, "application/json", 400, "malformed", ""},
		{"empty", ``, "application/json", 400, "malformed", ""},
		{"form", `email=x@a.example`, "application/x-www-form-urlencoded", 415, "unsupported-media-type", ""},
		{"no type", `{"email":"x@a.example"}`, "", 415, "unsupported-media-type", ""},
		{"bad email", `{"email":"x"}`, "application/json", 400, "invalid", "/email"},
		{"foreign domain", `{"email":"x@b.example"}`, "application/json", 400, "invalid", "/email"},
		{"bad role", `{"email":"x@a.example","roles":["a,b"]}`, "application/json", 400, "invalid", "/roles/0"},
		{"short password", `{"email":"x@a.example","password":"short"}`, "application/json", 400, "invalid", "/password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do(t, "admin-a", "POST", "/orgs/a/users", tc.body, "Content-Type", tc.ctype)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			p := r.problem(t)
			if p.Type != "urn:gatehouse:problem:"+tc.code {
				t.Errorf("type %q, want %s", p.Type, tc.code)
			}
			if tc.pointer != "" && !slices.ContainsFunc(p.Errors, func(e FieldError) bool { return e.Pointer == tc.pointer }) {
				t.Errorf("errors %+v, want one at %s", p.Errors, tc.pointer)
			}
		})
	}
	if n, _ := h.st.ListMembershipsByOrg(context.Background(), "org_a"); len(n) != 5 {
		t.Errorf("refused requests changed the org: %d members", len(n))
	}
}

func TestCrossOriginSessionWritesRefused(t *testing.T) {
	h := newHarness(t)
	body := map[string]any{"email": "x@a.example"}
	r := h.do(t, "admin-a", "POST", "/orgs/a/users", body, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
	if r.status != 403 || r.problem(t).Type != "urn:gatehouse:problem:cross-origin" {
		t.Fatalf("cross-site write with a cookie: %d %s", r.status, r.body)
	}
	// Reads are not refused, and a token is no ambient credential.
	if r := h.do(t, "admin-a", "GET", "/orgs/a/users", nil, "Sec-Fetch-Site", "cross-site"); r.status != 200 {
		t.Fatalf("cross-site read: %d", r.status)
	}
	if r := h.do(t, "platform", "POST", "/orgs/a/users", body, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); r.status != 201 {
		t.Fatalf("token write from another origin: %d %s", r.status, r.body)
	}
	// Same origin with a cookie works.
	if r := h.do(t, "admin-a", "POST", "/orgs/a/users", map[string]any{"email": "y@a.example"}, "Sec-Fetch-Site", "same-origin"); r.status != 201 {
		t.Fatalf("same-origin write: %d %s", r.status, r.body)
	}
}

func TestUserPagesAndSearch(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	now := time.Now()
	for i := range 230 {
		u := store.User{ID: fmt.Sprintf("usr_p%03d", i), Email: fmt.Sprintf("p%03d@a.example", i), Name: fmt.Sprintf("Person %d", i), CreatedAt: now, UpdatedAt: now}
		if i%10 == 0 {
			u.Name = "Zed Findable"
		}
		must(t, h.st.CreateUser(ctx, u))
		must(t, h.st.CreateMembership(ctx, store.Membership{UserID: u.ID, OrgID: "org_a", CreatedAt: now, UpdatedAt: now}))
	}
	collect := func(query string) []string {
		var ids []string
		cursor := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("paging does not end")
			}
			path := "/orgs/a/users?limit=100" + query
			if cursor != "" {
				path += "&cursor=" + cursor
			}
			r := h.do(t, "auditor-a", "GET", path, nil)
			if r.status != 200 {
				t.Fatalf("%s: %d %s", path, r.status, r.body)
			}
			var p userPage
			r.json(t, &p)
			for _, u := range p.Items {
				ids = append(ids, u.ID)
			}
			if p.NextCursor == "" {
				return ids
			}
			cursor = p.NextCursor
		}
	}
	all := collect("")
	if len(all) != 235 || len(slices.Compact(slices.Sorted(slices.Values(all)))) != 235 {
		t.Fatalf("%d members paged, want 235 distinct", len(all))
	}
	if found := collect("&q=zed+FIND"); len(found) != 23 {
		t.Fatalf("search by name found %d, want 23", len(found))
	}
	if found := collect("&q=P00"); len(found) != 10 {
		t.Fatalf("search by email found %d, want 10", len(found))
	}
	for email, n := range map[string]int{"P007@A.example": 1, "p007@b.example": 0, "user-b@b.example": 0, "nobody@a.example": 0} {
		var p userPage
		h.do(t, "auditor-a", "GET", "/orgs/a/users?email="+email, nil).json(t, &p)
		if len(p.Items) != n {
			t.Errorf("email=%s: %d people", email, len(p.Items))
		}
	}
	for _, bad := range []string{"?limit=0", "?limit=501", "?limit=x", "?cursor=%21%21", "?cursor=e30"} {
		if r := h.do(t, "auditor-a", "GET", "/orgs/a/users"+bad, nil); r.status != 400 {
			t.Errorf("%s: %d", bad, r.status)
		}
	}
}

// Every admin action leaves exactly one event with its actor, org,
// target and outcome, and the chain holds.
func TestAuditCompleteness(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	type act struct {
		who, method, path string
		body              any
		action, org       string
		target            func() string
	}
	var newUser, newOrg, tokenID, invID, appID string
	steps := []act{
		{"platform", "POST", "/orgs", map[string]any{"slug": "c", "name": "C"}, "org.create", "", func() string { return newOrg }},
		{"platform", "PATCH", "/orgs/c", map[string]any{"name": "C2"}, "org.update", "", func() string { return newOrg }},
		{"admin-a", "POST", "/orgs/a/users", map[string]any{"email": "new@a.example", "password": "correct horse battery"}, "user.create", "org_a", func() string { return newUser }},
		{"admin-a", "PATCH", "/orgs/a/users/{new}", map[string]any{"roles": []string{"viewer"}, "password": "another long password"}, "user.update", "org_a", func() string { return newUser }},
		{"admin-a", "DELETE", "/orgs/a/users/usr_user_a/sessions", nil, "session.revoke", "org_a", func() string { return "usr_user_a" }},
		{"admin-a", "DELETE", "/orgs/a/users/usr_user_a/factors", nil, "user.factors.reset", "org_a", func() string { return "usr_user_a" }},
		{"admin-a", "DELETE", "/orgs/a/sessions/" + h.sessionIDs["member-a"], nil, "session.revoke", "org_a", func() string { return "usr_member_a" }},
		{"admin-a", "POST", "/orgs/a/tokens", map[string]any{"name": "t", "role": "auditor"}, "token.create", "org_a", func() string { return tokenID }},
		{"admin-a", "DELETE", "/orgs/a/tokens/{token}", nil, "token.revoke", "org_a", func() string { return tokenID }},
		{"admin-a", "DELETE", "/orgs/a/users/{new}", nil, "user.delete", "org_a", func() string { return newUser }},
		{"admin-a", "POST", "/orgs/a/invitations", map[string]any{"email": "invited@a.example", "roles": []string{"viewer"}}, "invitation.create", "org_a", func() string { return invID }},
		{"admin-a", "POST", "/orgs/a/invitations/{inv}/resend", nil, "invitation.resend", "org_a", func() string { return invID }},
		{"admin-a", "DELETE", "/orgs/a/invitations/{inv}", nil, "invitation.revoke", "org_a", func() string { return invID }},
		{"admin-a", "GET", "/orgs/a/audit/export", nil, "audit.export", "org_a", func() string { return "org_a" }},
		{"admin-a", "PUT", "/orgs/a/connection", map[string]any{"type": "password"}, "connection.update", "org_a", func() string { return "org_a" }},
		{"admin-a", "POST", "/orgs/a/connection/test", nil, "connection.test", "org_a", func() string { return "org_a" }},
		{"admin-a", "PUT", "/orgs/a/connection", map[string]any{"type": "saml", "settings": map[string]any{"metadata_url": "https://idp.example.com/md"}, "provisioning": map[string]any{"any_email_domain": true}}, "connection.update", "org_a", func() string { return "org_a" }},
		{"admin-a", "POST", "/orgs/a/connection/rotate-key", nil, "connection.rotate_key", "org_a", func() string { return "org_a" }},
		{"platform", "POST", "/orgs/a/domains", map[string]any{"name": "a-corp.example", "kind": "email"}, "domain.add", "org_a", func() string { return "a-corp.example" }},
		{"admin-a", "DELETE", "/orgs/a/domains/a-corp.example", nil, "domain.remove", "org_a", func() string { return "a-corp.example" }},
		{"admin-a", "PUT", "/orgs/a/policy", map[string]any{"modules": []map[string]string{{"name": "authz.rego", "text": testPolicy}}}, "policy.update", "org_a", func() string { return "org_a" }},
		{"admin-a", "DELETE", "/orgs/a/policy", nil, "policy.delete", "org_a", func() string { return "org_a" }},
		{"admin-a", "PUT", "/orgs/a/notifications/invitation", map[string]any{"subject": "Join {{.Org.Name}}"}, "template.update", "org_a", func() string { return "invitation" }},
		{"admin-a", "DELETE", "/orgs/a/notifications/invitation", nil, "template.delete", "org_a", func() string { return "invitation" }},
		{"admin-a", "PATCH", "/orgs/a/branding", map[string]any{"texts": map[string]string{"heading": "Welcome"}}, "branding.update", "org_a", func() string { return "org_a" }},
		{"admin-a", "PUT", "/orgs/a/branding/logo", tinyPNG(), "branding.update", "org_a", func() string { return "org_a" }},
		{"admin-a", "DELETE", "/orgs/a/branding/logo", nil, "branding.update", "org_a", func() string { return "org_a" }},
		{"admin-a", "DELETE", "/orgs/a/branding", nil, "branding.delete", "org_a", func() string { return "org_a" }},
		{"admin-a", "PUT", "/orgs/a/audit/webhook", map[string]any{"url": "https://siem.example.com/in"}, "webhook.set", "org_a", func() string { return "org_a" }},
		{"admin-a", "DELETE", "/orgs/a/audit/webhook", nil, "webhook.delete", "org_a", func() string { return "org_a" }},
		{"platform", "POST", "/tokens", map[string]any{"name": "ops", "role": "platform_admin"}, "token.create", "-", func() string { return tokenID }},
		{"platform", "DELETE", "/tokens/{token}", nil, "token.revoke", "-", func() string { return tokenID }},
		{"platform", "POST", "/clients", map[string]any{"name": "Sync", "type": "machine", "org": "a"}, "client.create", "org_a", func() string { return appID }},
		{"platform", "PATCH", "/clients/{app}", map[string]any{"scopes": []string{"sync"}}, "client.update", "org_a", func() string { return appID }},
		{"platform", "POST", "/clients/{app}/secret", nil, "client.secret.rotate", "org_a", func() string { return appID }},
		{"platform", "DELETE", "/clients/{app}", nil, "client.delete", "org_a", func() string { return appID }},
		{"admin-b", "DELETE", "/me/sessions/" + h.sessionIDs["admin-b"], nil, "session.revoke", "org_b", func() string { return "usr_admin_b" }},
		{"platform", "DELETE", "/orgs/c", nil, "org.delete", "", func() string { return newOrg }},
	}
	// Every operation that changes something is among the steps.
	done := map[string]bool{}
	for _, s := range steps {
		path := strings.NewReplacer("{new}", "x", "{token}", "x", "{inv}", "x", "{app}", "x").Replace(s.path)
		_, pattern := h.api.mux.Handler(httptest.NewRequest(s.method, Prefix+path, nil))
		for _, rt := range h.api.Routes() {
			if rt.Method+" "+Prefix+rt.Path == pattern {
				done[rt.Operation] = true
			}
		}
	}
	for _, rt := range h.api.Routes() {
		if rt.Method != "GET" && !done[rt.Operation] {
			t.Errorf("operation %s (%s %s) is not among the audited actions of this test", rt.Operation, rt.Method, rt.Path)
		}
	}
	for i, s := range steps {
		path := strings.NewReplacer("{new}", newUser, "{token}", tokenID, "{inv}", invID, "{app}", appID).Replace(s.path)
		var extra []string
		if s.method == "PATCH" || s.method == "PUT" {
			extra = []string{"If-Match", "*"}
		}
		if _, ok := s.body.([]byte); ok {
			extra = append(extra, "Content-Type", "image/png")
		}
		r := h.do(t, s.who, s.method, path, s.body, extra...)
		if r.status >= 300 {
			t.Fatalf("step %d %s %s: %d %s", i, s.method, path, r.status, r.body)
		}
		var created struct{ ID string }
		if s.method == "POST" {
			r.json(t, &created)
		}
		switch s.action {
		case "org.create":
			newOrg = created.ID
			steps[i].org = newOrg
		case "user.create":
			newUser = created.ID
		case "token.create":
			tokenID = created.ID
		case "invitation.create":
			invID = created.ID
		case "client.create":
			appID = created.ID
		}
		if s.org == "-" {
			steps[i].org = ""
		}
		obj := s.target() // its object, as known right after it
		steps[i].target = func() string { return obj }
		if s.org == "" {
			steps[i].org = newOrg
		}
	}
	for _, s := range steps {
		events, err := h.st.ListAudit(ctx, store.AuditQuery{OrgID: s.org, Action: s.action, Target: s.target(), Limit: 10})
		must(t, err)
		if s.action == "session.revoke" {
			events = slices.DeleteFunc(events, func(e store.AuditEvent) bool { return e.Target != s.target() })
		}
		want := 0
		for _, o := range steps {
			if o.action == s.action && o.target() == s.target() && o.org == s.org {
				want++
			}
		}
		if len(events) != want {
			t.Errorf("%s on %s: %d events, want %d", s.action, s.target(), len(events), want)
			continue
		}
		e := events[0]
		wantActor := "user:" + h.users[s.who].ID
		if s.who == "platform" {
			wantActor = "token:"
		}
		if !strings.HasPrefix(e.Actor, wantActor) || e.Outcome != "success" || e.Details["request_id"] == "" || e.Details["client"] == "" {
			t.Errorf("%s: event %+v", s.action, e)
		}
		if strings.Contains(fmt.Sprint(e.Details), "correct horse") || strings.Contains(fmt.Sprint(e.Details), "argon2") {
			t.Errorf("%s: a secret in the event: %v", s.action, e.Details)
		}
	}
	// before/after name what changed.
	ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Action: "user.update", Limit: 1})
	if len(ev) != 1 || !strings.Contains(ev[0].Details["after"], `"roles":["viewer"]`) || !strings.Contains(ev[0].Details["after"], `"password":"[redacted]"`) {
		t.Errorf("user.update details %v", ev)
	}
	// A refused write is recorded too, where the org's admins look.
	h.do(t, "auditor-a", "POST", "/orgs/a/users", map[string]any{"email": "z@a.example"})
	if ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Action: "createUser", Limit: 5}); len(ev) != 1 || ev[0].Outcome != "failure" {
		t.Errorf("refused write: %+v", ev)
	}
	heads, err := h.st.AuditHeads(ctx)
	must(t, err)
	for _, hd := range heads {
		if _, err := store.VerifyAudit(ctx, h.st, hd); err != nil {
			t.Errorf("chain %s: %v", hd.OrgID, err)
		}
	}
	// The deleted org's chain stays readable by platform admins, by ID.
	var all auditPage
	h.do(t, "platform", "GET", "/audit?org="+newOrg, nil).json(t, &all)
	if len(all.Items) != 3 || all.Items[0].Action != "org.delete" {
		t.Errorf("deleted org's chain: %+v", all.Items)
	}
	if r := h.do(t, "admin-a", "GET", "/audit?org="+newOrg, nil); r.status != 403 {
		t.Errorf("an org admin reads the whole trail: %d", r.status)
	}
	// A changed event breaks the chain.
	if _, err := store.VerifyAudit(ctx, tampered{h.st}, heads[0]); err == nil {
		t.Error("a changed event passes verification")
	}
}

// tampered changes the second event of every chain it walks.
type tampered struct{ store.Store }

func (s tampered) WalkAudit(ctx context.Context, org string, after uint64, fn func(store.AuditEvent) error) error {
	return s.Store.WalkAudit(ctx, org, after, func(e store.AuditEvent) error {
		if e.Seq == 1 {
			e.Outcome = "failure"
		}
		return fn(e)
	})
}

func TestAuditQueries(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	for i := range 30 {
		must(t, h.st.AppendAudit(ctx, store.AuditEvent{OrgID: "org_a", Actor: "user:x", Action: []string{"login", "logout"}[i%2], Outcome: "success"}))
	}
	must(t, h.st.AppendAudit(ctx, store.AuditEvent{OrgID: "org_b", Actor: "user:y", Action: "login"}))
	var seen []uint64
	cursor := ""
	for range 10 {
		r := h.do(t, "auditor-a", "GET", "/orgs/a/audit?action=login&limit=4&cursor="+cursor, nil)
		var p auditPage
		r.json(t, &p)
		for _, e := range p.Items {
			if e.Action != "login" || e.OrgID != "org_a" {
				t.Fatalf("event %+v", e)
			}
			seen = append(seen, e.Seq)
		}
		if cursor = p.NextCursor; cursor == "" {
			break
		}
	}
	if len(seen) != 15 || !slices.IsSortedFunc(seen, func(a, b uint64) int { return int(b) - int(a) }) {
		t.Fatalf("paged %v", seen)
	}
	r := h.do(t, "auditor-a", "GET", "/orgs/a/audit/export?action=logout", nil)
	lines := strings.Split(strings.TrimSpace(string(r.body)), "\n")
	if r.header.Get("Content-Type") != "application/jsonl" || len(lines) != 15 {
		t.Fatalf("export: %s, %d lines", r.header.Get("Content-Type"), len(lines))
	}
	if r := h.do(t, "auditor-a", "GET", "/orgs/a/audit?since=yesterday", nil); r.status != 400 {
		t.Fatalf("bad since: %d", r.status)
	}
}

func TestUnknownEndpointsAndMethods(t *testing.T) {
	h := newHarness(t)
	if r := h.do(t, "platform", "GET", "/nope", nil); r.status != 404 || r.problem(t).Status != 404 {
		t.Fatalf("unknown path: %d", r.status)
	}
	if r := h.do(t, "platform", "PUT", "/orgs/a", nil); r.status != 405 {
		t.Fatalf("unknown method: %d", r.status)
	}
	r := h.do(t, "anonymous", "GET", "/orgs", nil)
	if r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("anonymous: %d %v", r.status, r.header)
	}
}

func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"email":"a@b.c","roles":["x"]}`, `{"name":null}`, `[`, `{"a":1}`, `{"roles":[1]}`, "{\"email\":\"\xff\"}", `{} {}`, `{"name":"x"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var u userCreate
		err := decodeJSON(b, &u)
		var p *Problem
		if err != nil && (!errors.As(err, &p) || p.Status != 400) {
			t.Fatalf("%q: %v", b, err)
		}
		var patch userPatch
		if err := decodeJSON(b, &patch); err != nil && !errors.As(err, &p) {
			t.Fatalf("%q: %v", b, err)
		}
	})
}

func TestPasswords(t *testing.T) {
	h := newHarness(t)
	patch := func(body string) UserView {
		t.Helper()
		r := h.do(t, "admin-a", "PATCH", "/orgs/a/users/usr_user_a", body, "If-Match", "*", "Content-Type", "application/merge-patch+json")
		if r.status != 200 {
			t.Fatalf("PATCH %s: %d %s", body, r.status, r.body)
		}
		var v UserView
		r.json(t, &v)
		return v
	}
	if v := patch(`{"password":"a long enough password"}`); !v.HasPassword {
		t.Fatal("password not set")
	}
	if v := patch(`{"name":"kept"}`); !v.HasPassword {
		t.Fatal("a patch without password removed it")
	}
	if v := patch(`{"password":null}`); v.HasPassword {
		t.Fatal("null did not remove the password")
	}
	// An org that signs in through its IdP, and a sub-org inheriting it,
	// take no passwords.
	for _, id := range []string{"org_a"} {
		_, err := h.st.UpdateOrg(context.Background(), id, func(o store.Org) (store.Org, error) {
			o.Connection = store.Connection{Type: "oidc"}
			return o, nil
		})
		must(t, err)
	}
	for _, path := range []string{"/orgs/a/users", "/orgs/a1/users"} {
		r := h.do(t, "admin-a", "POST", path, map[string]any{"email": "p@a.example", "password": "a long enough password"})
		if r.status != 400 || !slices.ContainsFunc(r.problem(t).Errors, func(e FieldError) bool { return e.Pointer == "/password" }) {
			t.Errorf("%s: password in an IdP org: %d %s", path, r.status, r.body)
		}
	}
	// merge-patch is for PATCH only.
	if r := h.do(t, "admin-a", "POST", "/orgs/a/users", `{"email":"q@a.example"}`, "Content-Type", "application/merge-patch+json"); r.status != 415 {
		t.Errorf("merge-patch POST: %d", r.status)
	}
}

func TestOrgPolicy(t *testing.T) {
	h := newHarness(t)
	put := func(mods ...map[string]string) response {
		return h.do(t, "admin-a", "PUT", "/orgs/a/policy", map[string]any{"modules": mods}, "If-Match", "*")
	}
	mod := func(name, text string) map[string]string { return map[string]string{"name": name, "text": text} }
	const good = "package gatehouse.authz\n\ndefault allow := false\n\nallow if input.request.path != \"/secret\"\n"
	// Does not compile: refused, pointing at the module.
	r := put(mod("a.rego", good), mod("b.rego", "package gatehouse.authz\n\nallow if {"))
	if p := r.problem(t); r.status != 400 || p.Type != "urn:gatehouse:problem:policy-invalid" || len(p.Errors) != 1 || p.Errors[0].Pointer != "/modules/1/text" {
		t.Fatalf("broken module: %d %s", r.status, r.body)
	}
	// Another package, no allow rule: refused.
	for _, text := range []string{"package other\n\nallow := true\n", "package gatehouse.authz\n\nx := 1\n"} {
		if r := put(mod("a.rego", text)); r.status != 400 {
			t.Errorf("%q: %d", text, r.status)
		}
	}
	// A failing test: refused, each failed test named.
	const tests = "package gatehouse.authz_test\n\nimport data.gatehouse.authz\n\ntest_public if authz.allow with input as {\"request\": {\"path\": \"/\"}}\n\ntest_secret if authz.allow with input as {\"request\": {\"path\": \"/secret\"}}\n"
	r = put(mod("authz.rego", good), mod("authz_test.rego", tests))
	p := r.problem(t)
	if r.status != 400 || p.Type != "urn:gatehouse:problem:policy-tests-failed" || len(p.Errors) != 1 || !strings.Contains(p.Errors[0].Detail, "test_secret") {
		t.Fatalf("failing test: %d %s", r.status, r.body)
	}
	if o, _ := h.st.GetOrg(context.Background(), "org_a"); len(o.Policy) != 0 {
		t.Fatal("a refused policy was stored")
	}
	// Passing tests: stored without them, results answered.
	fixed := strings.Replace(tests, "test_secret if authz.allow", "test_secret if not authz.allow", 1)
	r = put(mod("authz.rego", good), mod("authz_test.rego", fixed))
	var v PolicyView
	r.json(t, &v)
	if r.status != 200 || len(v.Modules) != 1 || v.Modules[0].Name != "authz.rego" || len(v.Tests) != 2 || !v.Tests[0].Pass || !v.Tests[1].Pass {
		t.Fatalf("good policy: %d %s", r.status, r.body)
	}
	// A policy that calls out is refused by the capabilities.
	if r := put(mod("a.rego", "package gatehouse.authz\n\ndefault allow := false\n\nallow if http.send({\"method\": \"get\", \"url\": \"http://x\"}).status_code == 200\n")); r.status != 400 {
		t.Errorf("http.send: %d %s", r.status, r.body)
	}
	// Stale ETag: refused.
	if r := h.do(t, "admin-a", "PUT", "/orgs/a/policy", map[string]any{"modules": []map[string]string{mod("a.rego", good)}}, "If-Match", `"stale"`); r.status != 412 {
		t.Errorf("stale: %d", r.status)
	}
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/policy", nil); r.status != 204 {
		t.Errorf("delete: %d", r.status)
	}
	if ev, _ := h.st.ListAudit(context.Background(), store.AuditQuery{OrgID: "org_a", Action: "policy.update", Limit: 5}); len(ev) != 1 {
		t.Errorf("policy.update events: %d", len(ev))
	}
}

func TestDomains(t *testing.T) {
	h := newHarness(t)
	h.reconfigure(func(o *Options) {
		o.DomainsVerify, o.CNAMETarget = true, "edge.saas.example"
		o.ReservedHost = func(host string) bool { return host == "auth.saas.example" }
	})
	r := h.do(t, "admin-a", "POST", "/orgs/a/domains", map[string]any{"name": "Login.A-Corp.example", "kind": "login"})
	var d DomainView
	r.json(t, &d)
	if r.status != 201 || d.Name != "login.a-corp.example" || d.Status != "pending" || d.Record.Type != "TXT" ||
		d.Record.Name != "_gatehouse.login.a-corp.example" || !strings.HasPrefix(d.Record.Value, "gatehouse-verification=") ||
		d.CNAMETarget != "edge.saas.example" || d.Verification != "required" {
		t.Fatalf("add: %d %s", r.status, r.body)
	}
	// The same record every time for this org and name; another org's
	// claim on it is refused while a uses it.
	for _, tc := range []struct {
		who, path string
		body      map[string]any
		status    int
		code      string
	}{
		{"admin-b", "/orgs/b/domains", map[string]any{"name": "login.a-corp.example", "kind": "login"}, 409, "domain-taken"},
		{"admin-b", "/orgs/b/domains", map[string]any{"name": "login.a-corp.example", "kind": "email"}, 409, "domain-taken"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "login2.a-corp.example", "kind": "login"}, 409, "login-domain-set"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "login.a-corp.example", "kind": "login"}, 409, "exists"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "co.uk", "kind": "email"}, 400, "invalid"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "localhost", "kind": "email"}, 400, "invalid"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "auth.saas.example", "kind": "login"}, 400, "invalid"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "10.0.0.1", "kind": "login"}, 400, "invalid"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "a_b.example", "kind": "login"}, 400, "invalid"},
		{"admin-a", "/orgs/a/domains", map[string]any{"name": "x.example", "kind": "mx"}, 400, "invalid"},
		{"auditor-a", "/orgs/a/domains", map[string]any{"name": "x.example", "kind": "email"}, 403, "forbidden"},
	} {
		r := h.do(t, tc.who, "POST", tc.path, tc.body)
		if r.status != tc.status || r.problem(t).Type != "urn:gatehouse:problem:"+tc.code {
			t.Errorf("%s %v: %d %s", tc.who, tc.body, r.status, r.body)
		}
	}
	var list domainList
	h.do(t, "auditor-a", "GET", "/orgs/a/domains", nil).json(t, &list)
	var names []string
	for _, d := range list.Items {
		names = append(names, d.Kind+":"+d.Name+":"+d.Status)
	}
	if !slices.Equal(names, []string{"login:login.a-corp.example:pending", "email:a.example:pending"}) || list.Items[0].Record != d.Record {
		t.Fatalf("list: %v", names)
	}
	// Removed and added back: the same token, nothing new to create.
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/domains/login.a-corp.example", nil); r.status != 204 {
		t.Fatalf("remove: %d", r.status)
	}
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/domains/login.a-corp.example", nil); r.status != 404 {
		t.Fatalf("remove again: %d", r.status)
	}
	var again DomainView
	h.do(t, "admin-a", "POST", "/orgs/a/domains", map[string]any{"name": "login.a-corp.example", "kind": "login"}).json(t, &again)
	if again.Record != d.Record {
		t.Fatalf("record changed: %+v then %+v", d.Record, again.Record)
	}
	// Without DNS verification, only platform admins add domains.
	h.reconfigure(func(o *Options) { o.DomainsVerify = false })
	if r := h.do(t, "admin-b", "POST", "/orgs/b/domains", map[string]any{"name": "b-corp.example", "kind": "email"}); r.status != 403 {
		t.Fatalf("org admin without verification: %d", r.status)
	}
	if r := h.do(t, "platform", "POST", "/orgs/b/domains", map[string]any{"name": "b-corp.example", "kind": "email"}); r.status != 201 {
		t.Fatalf("platform admin without verification: %d %s", r.status, r.body)
	}
}

// Regressions from the adversarial review: an org admin must never give
// a password to, or read the sessions of, a person another org (or the
// platform) owns; tokens never outlive the token that made them; what an
// org admin does in a sub-org is on the org's own chain too.
func TestNoReachBeyondScope(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// A sub-org has its parent's email domains.
	if r := h.do(t, "admin-a", "POST", "/orgs/a1/users", map[string]any{"email": "x@b.example"}); r.status != 400 {
		t.Errorf("sub-org without email domains took another domain: %d %s", r.status, r.body)
	}
	// Another org's person, or a platform admin, cannot be linked.
	must(t, h.st.CreateUser(ctx, store.User{ID: "usr_ops", Email: "ops@a.example", PlatformAdmin: true}))
	for _, tc := range []struct {
		email  string
		status int
	}{{"user-b@b.example", 409}, {"ops@a.example", 403}} {
		h.reconfigure(func(*Options) {})
		if _, err := h.st.UpdateOrg(ctx, "org_a1", func(o store.Org) (store.Org, error) { o.EmailDomains = nil; return o, nil }); err != nil {
			t.Fatal(err)
		}
		_, err := h.st.UpdateOrg(ctx, "org_a", func(o store.Org) (store.Org, error) { o.EmailDomains = nil; return o, nil })
		must(t, err)
		r := h.do(t, "admin-a", "POST", "/orgs/a/users", map[string]any{"email": tc.email, "password": "attacker password 1"})
		if r.status != tc.status {
			t.Errorf("link %s: %d %s", tc.email, r.status, r.body)
		}
	}
	if _, err := h.st.GetMembership(ctx, "usr_user_b", "org_a"); err == nil {
		t.Fatal("another org's person was linked")
	}
	// A person of a and b: a's admin sets no password for them.
	must(t, h.st.CreateMembership(ctx, store.Membership{UserID: "usr_user_b", OrgID: "org_a"}))
	if r := h.do(t, "admin-a", "PATCH", "/orgs/a/users/usr_user_b", map[string]any{"password": "attacker password 1"}, "If-Match", "*"); r.status != 409 {
		t.Errorf("password for a shared person: %d %s", r.status, r.body)
	}
	// Their sessions in b are not visible from a session in a.
	s, err := h.sessions.Create(ctx, "usr_user_b", "org_a", "password", "", "")
	must(t, err)
	h.creds["user-b-in-a"] = h.cookie(s)
	var list sessionList
	h.do(t, "user-b-in-a", "GET", "/me/sessions", nil).json(t, &list)
	if len(list.Items) != 1 || list.Items[0].OrgID != "org_a" {
		t.Errorf("sessions seen from org a: %+v", list.Items)
	}
	if r := h.do(t, "user-b-in-a", "DELETE", "/me/sessions/"+h.sessionIDs["user-b"], nil); r.status != 404 {
		t.Errorf("revoke an org b session from org a: %d", r.status)
	}
	// A platform admin's session in an org the file does not declare has
	// no platform rights.
	must(t, h.st.CreateMembership(ctx, store.Membership{UserID: "usr_ops", OrgID: "org_a"}))
	s, err = h.sessions.Create(ctx, "usr_ops", "org_a", "password", "", "")
	must(t, err)
	h.creds["ops-in-a"] = h.cookie(s)
	if r := h.do(t, "ops-in-a", "GET", "/tokens", nil); r.status != 403 {
		t.Errorf("platform rights from an API-managed org's session: %d", r.status)
	}
	_, err = h.st.UpdateOrg(ctx, "org_a", func(o store.Org) (store.Org, error) { o.Declared = true; return o, nil })
	must(t, err)
	if r := h.do(t, "ops-in-a", "GET", "/tokens", nil); r.status != 200 {
		t.Errorf("platform rights from a declared org's session: %d", r.status)
	}
	// Tokens made with a token die with it, and never outlive it.
	var child NewTokenView
	h.do(t, "platform", "POST", "/orgs/b/tokens", map[string]any{"name": "c", "role": "admin", "expires_in": "8000h"}).json(t, &child)
	if time.Until(child.ExpiresAt) > 2*time.Hour {
		t.Errorf("child expires %v, after its parent", child.ExpiresAt)
	}
	h.creds["child"] = bearer(child.Secret)
	if r := h.do(t, "child", "GET", "/me", nil); r.status != 200 {
		t.Fatalf("child: %d", r.status)
	}
	var me MeView
	h.do(t, "platform", "GET", "/me", nil).json(t, &me)
	if r := h.do(t, "ops-in-a", "DELETE", "/tokens/"+me.TokenID, nil); r.status != 204 {
		t.Fatalf("revoke the parent: %d %s", r.status, r.body)
	}
	if r := h.do(t, "child", "GET", "/me", nil); r.status != 401 {
		t.Errorf("a child of a revoked token: %d", r.status)
	}
	// Sub-org actions are on the parent's chain too.
	r := h.do(t, "admin-b", "POST", "/orgs", map[string]any{"slug": "b-lab", "name": "B Lab", "parent": "b"})
	if r.status != 201 {
		t.Fatalf("sub-org: %d", r.status)
	}
	if ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_b", Action: "org.create", Limit: 5}); len(ev) != 1 {
		t.Errorf("org.create on the parent's chain: %d events", len(ev))
	}
	// Input the review found accepted.
	for _, body := range []string{`{"password":null,"password":"short"}`, `{"roles":["platform_admin"]}`, `{"roles":["ADMIN"]}`, "{\"name\":\"a\\u0000b\"}", "{\"name\":\"a\\u202eb\"}"} {
		if r := h.do(t, "admin-b", "PATCH", "/orgs/b/users/usr_user_b", body, "If-Match", "*"); r.status != 400 {
			t.Errorf("%s: %d %s", body, r.status, r.body)
		}
	}
	h.creds["two"] = http.Header{"Authorization": {h.creds["admin-b"].Get("Authorization"), "Bearer x"}}
	if r := h.do(t, "two", "GET", "/me", nil); r.status != 401 {
		t.Errorf("two Authorization headers: %d", r.status)
	}
	// A webhook URL's query (a SIEM token) is never shown or recorded.
	h.do(t, "admin-b", "PUT", "/orgs/b/audit/webhook", map[string]any{"url": "https://siem.example.com/hec?token=SPLUNKSECRET"})
	r = h.do(t, "admin-b", "GET", "/orgs/b/audit/webhook", nil)
	ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_b", Action: "webhook.set", Limit: 1})
	if strings.Contains(string(r.body), "SPLUNKSECRET") || len(ev) != 1 || strings.Contains(fmt.Sprint(ev[0].Details), "SPLUNKSECRET") {
		t.Errorf("webhook query leaked: %s %v", r.body, ev)
	}
}

func TestConnections(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var v ConnectionView
	r := h.do(t, "admin-a", "GET", "/orgs/a/connection", nil)
	r.json(t, &v)
	e := v.Endpoints
	if v.Type != "password" || e.OIDCCallback != "https://auth.saas.example/.gatehouse/callback" || e.SAMLEntityID != "https://auth.saas.example/.gatehouse/saml/metadata/a" ||
		e.SAMLACS != "https://auth.saas.example/.gatehouse/saml/acs/a" || !e.SharedSignIn || e.SignInURL != "https://auth.saas.example/.gatehouse/login" {
		t.Fatalf("view: %s", r.body)
	}
	put := func(body any) response {
		return h.do(t, "admin-a", "PUT", "/orgs/a/connection", body, "If-Match", "*")
	}
	oidc := func(settings map[string]any) map[string]any {
		return map[string]any{"type": "oidc", "settings": settings}
	}
	for _, tc := range []struct {
		body    any
		pointer string
	}{
		{oidc(map[string]any{"client_id": "x"}), "/settings"},
		{oidc(map[string]any{"issuer": "https://idp.example.com", "client_id": "x", "client_secret": "s", "bogus": 1}), "/settings/bogus"},
		{oidc(map[string]any{"issuer": "https://idp.example.com", "client_id": "x", "client_secret_file": "/etc/passwd"}), "/settings/client_secret_file"},
		{oidc(map[string]any{"issuer": "https://idp.example.com", "client_id": 7}), "/settings/client_id"},
		{map[string]any{"type": "ldap"}, "/type"},
		{map[string]any{"type": "inherit"}, "/type"},
		{map[string]any{"type": "password", "provisioning": map[string]any{"any_email_domain": true}}, "/provisioning"},
		{map[string]any{"type": "saml", "settings": map[string]any{"metadata_url": "https://idp.example.com/md"}, "provisioning": map[string]any{"default_roles": []string{"platform_admin"}}}, "/provisioning/default_roles/0"},
	} {
		r := put(tc.body)
		if r.status != 400 || !slices.ContainsFunc(r.problem(t).Errors, func(e FieldError) bool { return strings.HasPrefix(e.Pointer, tc.pointer) }) {
			t.Errorf("%v: %d %s", tc.body, r.status, r.body)
		}
	}
	// Private IdP addresses, unless the deployment allows them.
	h.reconfigure(func(o *Options) { o.WebhooksAllowPrivate = false })
	for _, iss := range []string{"https://10.0.0.5", "https://169.254.169.254/latest", "http://localhost:8080", "https://[::1]/"} {
		if r := put(oidc(map[string]any{"issuer": iss, "client_id": "x", "client_secret": "s"})); r.status != 400 {
			t.Errorf("issuer %s: %d %s", iss, r.status, r.body)
		}
	}
	// A good one: stored, its secret never shown, kept when left out.
	r = put(oidc(map[string]any{"issuer": "https://idp.example.com", "client_id": "gh", "client_secret": "s3cret-value"}))
	if r.status != 200 || strings.Contains(string(r.body), "s3cret-value") {
		t.Fatalf("set oidc: %d %s", r.status, r.body)
	}
	r.json(t, &v)
	if v.Settings["client_secret"] != redacted || v.Type != "oidc" {
		t.Fatalf("view: %+v", v)
	}
	if r := put(oidc(map[string]any{"issuer": "https://idp.example.com", "client_id": "gh", "client_secret": redacted, "scopes": []string{"groups"}})); r.status != 200 {
		t.Fatalf("update keeping the secret: %d %s", r.status, r.body)
	}
	o, _ := h.st.GetOrg(ctx, "org_a")
	if !strings.Contains(string(o.Connection.Config), "s3cret-value") || !strings.Contains(string(o.Connection.Config), `"groups"`) {
		t.Fatalf("stored: %s", o.Connection.Config)
	}
	// A secret is not kept for another client or issuer: it would go to
	// whatever the new issuer names.
	for _, change := range []map[string]any{
		{"issuer": "https://idp.example.com", "client_id": "gh2", "client_secret": redacted},
		{"issuer": "https://evil.example.com", "client_id": "gh"},
	} {
		r := put(oidc(change))
		if r.status != 400 || !strings.Contains(string(r.body), "/settings/client_secret") {
			t.Errorf("%v: %d %s", change, r.status, r.body)
		}
	}
	ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Action: "connection.update", Limit: 5})
	if len(ev) != 2 || strings.Contains(fmt.Sprint(ev[0].Details), "s3cret") {
		t.Fatalf("events: %v", ev)
	}
	// The live test answers what failed.
	var res ConnectionTest
	h.do(t, "admin-a", "POST", "/orgs/a/connection/test", nil).json(t, &res)
	if res.OK || !strings.Contains(res.Error, "discovery") {
		t.Fatalf("test: %+v", res)
	}
	// Only a SAML connection has SP keys to rotate.
	if r := h.do(t, "admin-a", "POST", "/orgs/a/connection/rotate-key", nil); r.status != 409 || r.problem(t).Type != "urn:gatehouse:problem:not-saml" {
		t.Errorf("rotate an OIDC org's key: %d %s", r.status, r.body)
	}
	// A sub-org inherits.
	if r := h.do(t, "admin-a", "PUT", "/orgs/a1/connection", map[string]any{"type": "inherit"}, "If-Match", "*"); r.status != 200 {
		t.Fatalf("inherit: %d %s", r.status, r.body)
	}
}

func TestBranding(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	put := func(asset, ctype string, body []byte) response {
		return h.do(t, "admin-a", "PUT", "/orgs/a/branding/"+asset, body, "If-Match", "*", "Content-Type", ctype)
	}
	r := put("logo", "image/png", tinyPNG())
	var v BrandingView
	r.json(t, &v)
	if r.status != 200 || !strings.HasPrefix(v.Logo, "/.gatehouse/assets/b/") || !strings.HasSuffix(v.Logo, ".png") {
		t.Fatalf("logo: %d %s", r.status, r.body)
	}
	if _, err := h.st.GetBlob(ctx, "branding/"+strings.TrimPrefix(v.Logo, "/.gatehouse/assets/b/")); err != nil {
		t.Fatalf("logo blob: %v", err)
	}
	for _, tc := range []struct {
		asset, ctype string
		body         []byte
		status       int
	}{
		{"logo", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`), 400},
		{"logo", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.example/x.png"/></svg>`), 400},
		{"logo", "image/png", []byte("GIF89a not a png"), 400},
		{"logo", "image/png", append(tinyPNG(), make([]byte, 300<<10)...), 413},
		{"font", "image/png", tinyPNG(), 415},
		{"logo", "application/json", []byte(`{}`), 415},
		{"css", "text/css", []byte("</style><script>alert(1)</script>"), 400},
		{"banner", "image/png", tinyPNG(), 404},
	} {
		if r := put(tc.asset, tc.ctype, tc.body); r.status != tc.status {
			t.Errorf("%s %s: %d, want %d: %s", tc.asset, tc.ctype, r.status, tc.status, r.body)
		}
	}
	if r := put("css", "text/css", []byte("h1 { letter-spacing: 2px; }")); r.status != 200 {
		t.Fatalf("css: %d %s", r.status, r.body)
	}
	r = h.do(t, "admin-a", "PATCH", "/orgs/a/branding", map[string]any{"colors": map[string]string{"primary": "#FFFF00", "text": "#222222"}}, "If-Match", "*")
	r.json(t, &v)
	if r.status != 200 || len(v.Warnings) == 0 || v.Colors.Primary != "#ffff00" {
		t.Fatalf("colors: %d %s", r.status, r.body)
	}
	o, _ := h.st.GetOrg(ctx, "org_a")
	css, err := h.st.GetBlob(ctx, "branding/"+o.Branding.CSS)
	must(t, err)
	if !strings.Contains(string(css.Value), "--accent: #ffff00") || !strings.Contains(string(css.Value), "letter-spacing: 2px") {
		t.Fatalf("composed css: %s", css.Value)
	}
	if r := h.do(t, "admin-a", "PATCH", "/orgs/a/branding", map[string]any{"colors": map[string]string{"primary": "red"}}, "If-Match", "*"); r.status != 400 {
		t.Errorf("bad color: %d", r.status)
	}
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/branding/logo", nil); r.status != 204 {
		t.Errorf("delete logo: %d", r.status)
	}
	if r := h.do(t, "admin-a", "DELETE", "/orgs/a/branding", nil); r.status != 204 {
		t.Errorf("delete branding: %d", r.status)
	}
	if o, _ := h.st.GetOrg(ctx, "org_a"); o.Branding != nil {
		t.Errorf("branding left: %+v", o.Branding)
	}
}

// An org's MFA and session rules through the API: set, checked against
// the deployment's limits, kept when left out, audited; and a person's
// factors reset.
func TestOrgRulesAndFactors(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.reconfigure(func(o *Options) { o.SessionLifetime, o.SessionIdleTimeout = 12*time.Hour, time.Hour })
	r := h.do(t, "admin-a", "PATCH", "/orgs/a", map[string]any{"mfa": map[string]any{"require": "admins"}, "session": map[string]any{"lifetime": "8h"}}, "If-Match", "*")
	var v OrgView
	r.json(t, &v)
	if r.status != 200 || v.MFA.Require != "admins" || v.Session.Lifetime != "8h" || v.Session.IdleTimeout != "" {
		t.Fatalf("set rules: %d %s", r.status, r.body)
	}
	if o, _ := h.st.GetOrg(ctx, "org_a"); o.MFA.Require != store.MFAAdmins || o.Session.Lifetime != 8*time.Hour {
		t.Fatalf("stored %+v %+v", o.MFA, o.Session)
	}
	// A field left out is kept; "" goes back to the deployment's.
	r = h.do(t, "admin-a", "PATCH", "/orgs/a", map[string]any{"session": map[string]any{"idle_timeout": "30m"}}, "If-Match", "*")
	r.json(t, &v)
	if v.MFA.Require != "admins" || v.Session.Lifetime != "8h" || v.Session.IdleTimeout != "30m" {
		t.Fatalf("partial patch: %s", r.body)
	}
	r = h.do(t, "admin-a", "PATCH", "/orgs/a", map[string]any{"mfa": map[string]any{"require": "off"}, "session": map[string]any{"lifetime": ""}}, "If-Match", "*")
	v = OrgView{}
	r.json(t, &v)
	if v.MFA.Require != "off" || v.Session.Lifetime != "" || v.Session.IdleTimeout != "30m" {
		t.Fatalf("back to defaults: %s", r.body)
	}
	for body, pointer := range map[string]string{
		`{"mfa":{"require":"sometimes"}}`:    "/mfa/require",
		`{"session":{"lifetime":"24h"}}`:     "/session/lifetime",
		`{"session":{"idle_timeout":"10s"}}`: "/session/idle_timeout",
		`{"session":{"lifetime":"forever"}}`: "/session/lifetime",
		`{"session":{"idle_timeout":"2h"}}`:  "/session/idle_timeout",
	} {
		r := h.do(t, "admin-a", "PATCH", "/orgs/a", body, "If-Match", "*")
		if r.status != 400 || !strings.Contains(string(r.body), pointer) {
			t.Errorf("%s: %d %s", body, r.status, r.body)
		}
	}
	ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Action: "org.update", Limit: 10})
	if len(ev) != 3 || !strings.Contains(ev[2].Details["after"], `"require":"admins"`) {
		t.Errorf("org.update events: %+v", ev)
	}

	// A person's factors: shown, and reset by the org's admin.
	_, err := h.st.UpdateMembership(ctx, "usr_user_a", "org_a", func(m store.Membership) (store.Membership, error) {
		m.Factors = &store.Factors{TOTP: &store.TOTPFactor{Secret: "JBSWY3DPEHPK3PXP"}, RecoveryCodes: []string{"h1", "h2"}}
		return m, nil
	})
	must(t, err)
	var u UserView
	h.do(t, "admin-a", "GET", "/orgs/a/users/usr_user_a", nil).json(t, &u)
	if len(u.Factors) != 1 || u.Factors[0] != "totp" || u.RecoveryCodes != 2 || strings.Contains(fmt.Sprint(u), "JBSW") {
		t.Fatalf("user view %+v", u)
	}
	r = h.do(t, "admin-a", "DELETE", "/orgs/a/users/usr_user_a/factors", nil)
	r.json(t, &u)
	if m, _ := h.st.GetMembership(ctx, "usr_user_a", "org_a"); r.status != 200 || len(u.Factors) != 0 || m.Factors != nil {
		t.Fatalf("reset: %d %s", r.status, r.body)
	}
	if ev, _ := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Action: "user.factors.reset"}); len(ev) != 1 || ev[0].Details["factors"] != "totp" {
		t.Errorf("reset event %+v", ev)
	}
}
