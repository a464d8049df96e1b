package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Isolation of the portal, against the binary: every page and form of
// acme is 404 for globex's admin (on her own login domain, with her own
// session and form token) and for acme's members, and changes nothing;
// acme's admin gets the pages.
func TestPortalIsolation(t *testing.T) {
	g, _ := startCore(t)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	acmeAPI := func(method, path string, body any) map[string]any {
		t.Helper()
		return alice.mustAPI(method, g.url("login.acme.localhost", "/api/v1/orgs/acme"+path), body, same...)
	}
	dave := acmeAPI("POST", "/users", map[string]any{"email": "dave@acme.example", "password": "dave-long-password", "roles": []string{"member"}})
	inv := acmeAPI("POST", "/invitations", map[string]any{"email": "erin@acme.example"})
	tok := acmeAPI("POST", "/tokens", map[string]any{"name": "ci", "role": "auditor"})
	ids := map[string]string{"{user}": dave["id"].(string), "{invitation}": inv["id"].(string), "{token}": tok["id"].(string)}

	type req struct{ method, path string }
	var reqs []req
	for _, p := range []string{"/", "/users", "/users/{user}", "/invitations", "/sso", "/domains", "/branding", "/templates", "/templates/invitation", "/policy", "/tokens", "/audit", "/audit/export", "/branding/preview.css"} {
		reqs = append(reqs, req{"GET", p})
	}
	for _, p := range []string{"/settings", "/users/{user}", "/invitations", "/invitations/{invitation}", "/sso/test", "/sso/activate", "/domains", "/domains/acme.example",
		"/branding", "/branding/preview", "/templates/invitation", "/policy", "/tokens", "/tokens/{token}"} {
		reqs = append(reqs, req{"POST", p})
	}
	path := func(r req) string {
		p := "/.gatehouse/admin/orgs/acme" + r.path
		for k, v := range ids {
			p = strings.ReplaceAll(p, k, v)
		}
		return p
	}
	send := func(b *browser, host string, r req, csrf string) page {
		t.Helper()
		u := g.url(host, path(r))
		if r.method == "GET" {
			return b.get(u)
		}
		form := url.Values{"csrf": {csrf}, "action": {"disable"}, "email": {"x@acme.example"}, "name": {"x"}, "type": {"saml"}, "metadata_xml": {"<x/>"}}
		hr, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
		hr.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		hr.Header.Set("Origin", "http://"+host+":"+g.port)
		hr.Header.Set("Sec-Fetch-Site", "same-origin")
		return b.do(hr)
	}

	// carol, globex's admin, on her own login domain with her own token.
	carol := g.browser(t)
	carol.login(g.url("globex-app.localhost", "/"), "carol@globex.example", "carol-pw-456")
	own := carol.get(g.url("login.globex.localhost", "/.gatehouse/admin/orgs/globex/"))
	carolCSRF := csrfRE.FindStringSubmatch(own.body)
	if own.status != 200 || carolCSRF == nil {
		t.Fatalf("carol's own portal: %d\n%s", own.status, own.body)
	}
	// dave, a member of acme, on acme's login domain.
	daveB := g.browser(t)
	daveB.login(g.url("app.localhost", "/"), "dave@acme.example", "dave-long-password")
	for _, r := range reqs {
		if p := send(carol, "login.globex.localhost", r, carolCSRF[1]); p.status != 404 || strings.Contains(p.body, "Acme") {
			t.Errorf("carol %s %s: %d", r.method, path(r), p.status)
		}
		if p := send(daveB, "login.acme.localhost", r, "x"); p.status != 404 || strings.Contains(p.body, "dave@acme.example") {
			t.Errorf("dave %s %s: %d", r.method, path(r), p.status)
		}
		if r.method == "GET" {
			if p := send(alice, "login.acme.localhost", r, ""); p.status != 200 {
				t.Errorf("alice %s %s: %d", r.method, path(r), p.status)
			}
		}
	}
	// Nothing changed: dave is active, the invitation and token are there.
	if u := acmeAPI("GET", "/users/"+ids["{user}"], nil); u["disabled"] != false {
		t.Fatalf("dave after the refused forms: %v", u)
	}
	acmeAPI("GET", "/invitations/"+ids["{invitation}"], nil)
	if tk := acmeAPI("GET", "/tokens/"+ids["{token}"], nil); tk["revoked_at"] != nil {
		t.Fatalf("the token after the refused forms: %v", tk)
	}
}
