package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

// Self-serve SSO through the admin API: a platform admin (declared in the
// file, signed in through a declared org) creates a customer org, gives it
// an email domain and an OIDC connection to the customer's IdP (a real
// OP this project did not write), tests it live, and the customer's
// people sign in through it at once, provisioned just in time.
func TestSelfServeSSO(t *testing.T) {
	port := freePort(t)
	idp := testidp.NewOIDC(t, "gatehouse-hooli", "hooli-secret", []string{"http://auth.localhost:" + port + "/.gatehouse/callback"},
		testidp.User{ID: "h-hal", Username: "hal", Password: "hal-pw", Email: "hal@hooli.example", EmailVerified: true, First: "Hal", Last: "Hooli", Groups: []string{"hooli-it"}},
		testidp.User{ID: "h-ivy", Username: "ivy", Password: "ivy-pw", Email: "ivy@hooli.example", EmailVerified: true, First: "Ivy", Last: "Hooli"})
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) +
		"admin:\n  platform_admins: [alice@acme.example]\n  allow_private_networks: true\n"
	g := startAt(t, port, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")

	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	api := func(method, path string, body any, hdr ...string) (int, map[string]any) {
		st, _, out := alice.api(method, g.url("login.acme.localhost", "/api/v1"+path), body,
			append([]string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}, hdr...)...)
		return st, out
	}
	if st, me := api("GET", "/me", nil); st != 200 || me["platform_admin"] != true {
		t.Fatalf("alice /me: %d %v", st, me)
	}
	if st, o := api("POST", "/orgs", map[string]any{"slug": "hooli", "name": "Hooli"}); st != 201 {
		t.Fatalf("create org: %d %v", st, o)
	}
	if st, d := api("POST", "/orgs/hooli/domains", map[string]any{"name": "hooli.example", "kind": "email"}); st != 201 {
		t.Fatalf("email domain: %d %v", st, d)
	}
	st, conn := api("GET", "/orgs/hooli/connection", nil)
	ends, _ := conn["endpoints"].(map[string]any)
	if st != 200 || ends["oidc_redirect_uri"] != "http://auth.localhost:"+port+"/.gatehouse/callback" {
		t.Fatalf("endpoints to give the IdP: %d %v", st, conn)
	}
	// A wrong issuer first: the live test says what fails before anyone
	// signs in.
	bad := map[string]any{"type": "oidc", "settings": map[string]any{"issuer": idp.Issuer + "/nope", "client_id": "gatehouse-hooli", "client_secret": "hooli-secret"}}
	if st, c := api("PUT", "/orgs/hooli/connection", bad, "If-Match", "*"); st != 200 {
		t.Fatalf("set connection: %d %v", st, c)
	}
	if st, res := api("POST", "/orgs/hooli/connection/test", nil); st != 200 || res["ok"] != false || res["error"] == "" {
		t.Fatalf("test of a wrong issuer: %d %v", st, res)
	}
	good := map[string]any{"type": "oidc", "settings": map[string]any{"issuer": idp.Issuer, "client_id": "gatehouse-hooli", "client_secret": "hooli-secret"},
		"provisioning": map[string]any{"default_roles": []string{"member"}, "group_roles": map[string][]string{"hooli-it": {"admin"}}}}
	if st, c := api("PUT", "/orgs/hooli/connection", good, "If-Match", "*"); st != 200 {
		t.Fatalf("set connection: %d %v", st, c)
	}
	if st, res := api("POST", "/orgs/hooli/connection/test", nil); st != 200 || res["ok"] != true {
		t.Fatalf("test: %d %v", st, res)
	}

	// Hal signs in through Hooli's IdP.
	hal := g.browser(t)
	var p page
	eventually(t, "hooli's connection in use", func() error {
		p = hal.follow(hal.get(g.url("app.localhost", "/")))
		form := hidden(p.body)
		form.Set("email", "hal@hooli.example")
		p = hal.follow(hal.post(resolve(p.url, field(t, actionRE, p.body)), form))
		return holds(p.status == 200 && strings.Contains(p.body, `name="username"`), "discovery: %d %s", p.status, p.url)
	})
	p = hal.follow(hal.atIdP(p, "hal", "hal-pw"))
	if p.status != http.StatusOK {
		t.Fatalf("after the IdP: %d %s\n%s", p.status, p.url, p.body)
	}
	r := up.last("/")
	if r == nil || r.Header.Get("X-Gatehouse-Email") != "hal@hooli.example" || r.Header.Get("X-Gatehouse-Org-Slug") != "hooli" || r.Header.Get("X-Gatehouse-Roles") != "admin,member" {
		t.Fatalf("upstream saw %v", r)
	}
	// Admin rights mapped from the IdP's groups: Hal administers Hooli
	// (and nothing else) with his session.
	halAPI := func(path string) (int, map[string]any) {
		st, _, out := hal.api("GET", g.url("auth.localhost", "/api/v1"+path), nil)
		return st, out
	}
	if st, me := halAPI("/me"); st != 200 || me["role"] != "admin" || me["platform_admin"] != false {
		t.Fatalf("hal /me: %d %v", st, me)
	}
	if st, _ := halAPI("/orgs/hooli/audit"); st != 200 {
		t.Fatalf("hal reads hooli's audit: %d", st)
	}
	if st, _ := halAPI("/orgs/acme/users"); st != 404 {
		t.Fatalf("hal reads acme: %d", st)
	}
	// Provisioned just in time; listed for the org's admins.
	if st, list := api("GET", "/orgs/hooli/users?q=hal", nil); st != 200 || len(list["items"].([]any)) != 1 {
		t.Fatalf("hooli's people: %d %v", st, list)
	}

	// Hooli now lets in only people its admins add; Ivy, not added, is
	// refused at sign-in, then invited with a role, and the invitation
	// takes her through Hooli's IdP into the org.
	closed := map[string]any{"type": "oidc", "settings": good["settings"],
		"provisioning": map[string]any{"default_roles": []string{"member"}, "group_roles": map[string][]string{"hooli-it": {"admin"}}, "existing_users_only": true}}
	if st, c := api("PUT", "/orgs/hooli/connection", closed, "If-Match", "*"); st != 200 {
		t.Fatalf("existing users only: %d %v", st, c)
	}
	ivy := g.browser(t)
	eventually(t, "ivy refused while not added", func() error {
		p := ivy.follow(ivy.get(g.url("auth.localhost", "/.gatehouse/login?org=hooli")))
		if !strings.Contains(p.body, `name="username"`) {
			return holds(false, "not at the IdP: %d %s", p.status, p.url)
		}
		p = ivy.follow(ivy.atIdP(p, "ivy", "ivy-pw"))
		return holds(p.status == http.StatusForbidden, "ivy uninvited: %d %s", p.status, p.url)
	})
	st, inv := api("POST", "/orgs/hooli/invitations", map[string]any{"email": "ivy@hooli.example", "roles": []string{"billing"}})
	if st != 201 || !strings.HasPrefix(inv["url"].(string), "http://auth.localhost:"+port+"/.gatehouse/invite?") {
		t.Fatalf("invite ivy: %d %v", st, inv)
	}
	_, other := api("POST", "/orgs/hooli/invitations", map[string]any{"email": "zed@hooli.example"})
	accept := func(link string) page {
		p := ivy.get(link)
		if p.status != 200 || !strings.Contains(p.body, "Continue to sign in") {
			t.Fatalf("invitation page: %d\n%s", p.status, p.body)
		}
		p = ivy.follow(ivy.post(resolve(p.url, field(t, actionRE, p.body)), hidden(p.body)))
		return ivy.follow(ivy.atIdP(p, "ivy", "ivy-pw"))
	}
	// Zed's link does not let Ivy in, and stays Zed's.
	if p := accept(other["url"].(string)); p.status != http.StatusForbidden || !strings.Contains(p.body, "zed@hooli.example") {
		t.Fatalf("ivy with zed's link: %d\n%s", p.status, p.body)
	}
	if st, z := api("GET", "/orgs/hooli/invitations/"+other["id"].(string), nil); st != 200 || z["status"] != "pending" {
		t.Fatalf("zed's invitation after the mismatch: %d %v", st, z)
	}
	if p := accept(inv["url"].(string)); p.status != 200 || !strings.Contains(p.body, "signed in") {
		t.Fatalf("ivy accepts: %d\n%s", p.status, p.body)
	}
	st, people := api("GET", "/orgs/hooli/users?email=ivy@hooli.example", nil)
	items, _ := people["items"].([]any)
	if st != 200 || len(items) != 1 || !strings.Contains(mustJSON(items[0].(map[string]any)["roles"]), "billing") {
		t.Fatalf("ivy in hooli: %d %v", st, people)
	}
}
