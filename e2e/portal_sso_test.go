package e2e

import (
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

// Self-serve SAML setup in the portal, in Chromium, against a real SAML
// IdP (crewjam/saml's): initech's admin, signed in with a password,
// gives the IdP Gatehouse's SP metadata, pastes the IdP's metadata with a
// wrong certificate, runs the test sign-in and sees the exact reason in
// the tracer, with nothing activated (her password still signs her in);
// then pastes the right metadata, sees the verified assertion in the
// tracer, and activates: initech's people sign in through the IdP.
func TestPortalSAMLSetupInChromium(t *testing.T) {
	exe := chromium(t)
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	g, up := startCore(t)
	g, platform := g.bootstrap(t)
	ops := g.browser(t)
	api := func(method, path string, body any) map[string]any {
		t.Helper()
		return ops.mustAPI(method, g.url("auth.localhost", "/api/v1"+path), body, "Authorization", "Bearer "+platform)
	}
	// initech: a customer without a login domain, signing in with
	// passwords for now; ian is its admin.
	api("POST", "/orgs", map[string]any{"slug": "initech", "name": "Initech"})
	api("POST", "/orgs/initech/domains", map[string]any{"name": "initech.example", "kind": "email"})
	api("POST", "/orgs/initech/users", map[string]any{"email": "ian@initech.example", "name": "Ian", "roles": []string{"admin"}, "password": "ian's long passphrase"})

	idp := testidp.NewSAML(t, testidp.SAMLUser{Name: "ian", Password: "ian-pw", Email: "ian@initech.example", GivenName: "Ian", Surname: "Admin"})
	other := testidp.NewSAML(t)
	// The IdP's admin registers Gatehouse's SP metadata, served before
	// initech uses SAML at all.
	idp.AddSPFrom(t, ops.client, "gatehouse-initech", g.url("auth.localhost", "/.gatehouse/saml/metadata/initech"))
	resp, err := http.Get(idp.MetadataURL)
	if err != nil {
		t.Fatal(err)
	}
	goodXML, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The classic mistake: the metadata with another IdP's certificate.
	wrongXML := strings.ReplaceAll(string(goodXML), base64.StdEncoding.EncodeToString(idp.Cert.Raw), base64.StdEncoding.EncodeToString(other.Cert.Raw))
	if wrongXML == string(goodXML) {
		t.Fatal("the IdP's certificate is not in its metadata")
	}

	// ian signs in to the portal with his password on the shared host.
	admin := newTab(t, exe, "sso")
	admin.do("open the portal", chromedp.Navigate(g.url("auth.localhost", "/.gatehouse/admin/")), chromedp.WaitVisible(chromedp.ID("email")))
	admin.do("email", chromedp.SendKeys(chromedp.ID("email"), "ian@initech.example\r"), chromedp.WaitVisible(chromedp.ID("password")))
	admin.do("password", chromedp.SendKeys(chromedp.ID("password"), "ian's long passphrase\r"))
	admin.until("the portal", `location.pathname === "/.gatehouse/admin/orgs/initech/"`, 15*time.Second)
	// He is signed in at his IdP already (samlidp's own login form cannot
	// answer a signed request: see samlSignIn).
	admin.do("IdP session", chromedp.Navigate(idp.URL+"/not-a-page"))
	if v, err := chromedp.Run(admin.ctx, chromedp.Evaluate[string](`fetch("/login", {method: "POST", body: new URLSearchParams({user: "ian", password: "ian-pw"}), credentials: "include"}).then(r => String(r.status))`, chromedp.EvalAwaitPromise)); err != nil || v != "200" {
		t.Fatalf("IdP login: %q %v", v, err)
	}

	ssoPage := g.url("auth.localhost", "/.gatehouse/admin/orgs/initech/sso")
	testWith := func(metadata string) {
		t.Helper()
		admin.do("SSO page", chromedp.Navigate(ssoPage), chromedp.WaitVisible(chromedp.ID("metadata_xml")))
		admin.do("fill the metadata", chromedp.Click(chromedp.ID("type-saml")), chromedp.SetValue(chromedp.ID("metadata_xml"), metadata),
			chromedp.Click(chromedp.Search(`//button[normalize-space()="Test sign-in"]`)))
		admin.until("the tracer", `location.pathname.endsWith("/sso") && location.search.includes("trace=") && !!document.querySelector("#trace-title")`, 20*time.Second)
	}

	// 1. The wrong certificate: the tracer says exactly why; nothing is
	// activated.
	axe := axeIfAvailable(t)
	testWith(wrongXML)
	admin.shot("1-wrong-certificate")
	if axe != "" {
		axeAssert(t, "the tracer of a refused test", axeRun(t, admin, axe, "tracer", ""))
	}
	reason := admin.eval(`document.querySelector(".reason") ? document.querySelector(".reason").innerText : ""`)
	if !strings.Contains(admin.eval(`document.querySelector("#trace-title").innerText`), "refused") ||
		!strings.Contains(reason, "saml: response rejected") || !strings.Contains(strings.ToLower(reason), "certificate") {
		t.Fatalf("the tracer for a wrong certificate: %q\n%s", reason, admin.text())
	}
	if strings.Contains(admin.text(), "Activate this connection") {
		t.Fatal("a refused test offers activation")
	}
	// What arrived is shown, but an assertion encrypted to the org's key
	// is opened only for a response that verifies.
	if txt := admin.text(); !strings.Contains(txt, "Destination") || !strings.Contains(txt, "not trusted") ||
		!strings.Contains(txt, "shown only when the response verifies") || strings.Contains(txt, "ian@initech.example\n") || strings.Contains(txt, "urn:oid:0.9.2342.19200300.100.1.3") {
		t.Fatalf("the tracer of a response that did not verify:\n%s", txt)
	}
	if c := api("GET", "/orgs/initech/connection", nil); c["type"] != "password" {
		t.Fatalf("after a refused test, initech signs in with %v", c["type"])
	}
	// ian's password still signs him in (nothing changed).
	if p := g.browser(t).login(g.url("app.localhost", "/"), "ian@initech.example", "ian's long passphrase"); !strings.Contains(p.body, "upstream / for ian@initech.example") {
		t.Fatalf("ian's password after the refused test: %d %s", p.status, p.body)
	}

	// 2. The right metadata: the verified assertion, then activation.
	testWith(string(goodXML))
	admin.shot("2-tracer")
	if axe != "" {
		axeAssert(t, "the tracer of a test that worked", axeRun(t, admin, axe, "tracer", ""))
	}
	txt := admin.text()
	for _, want := range []string{"it worked", "ian@initech.example", "Claims and attributes, verified", "Audience", "Not on or after", "Activate this connection"} {
		if !strings.Contains(txt, want) {
			t.Fatalf("the tracer lacks %q:\n%s", want, txt)
		}
	}
	if c := api("GET", "/orgs/initech/connection", nil); c["type"] != "password" {
		t.Fatal("a test alone changed the connection")
	}
	traceURL := admin.eval("location.href")
	admin.do("activate", chromedp.Click(chromedp.Search(`//button[normalize-space()="Activate this connection"]`)))
	admin.until("activated", `location.search.includes("done=connection-saved")`, 10*time.Second)
	admin.shot("3-activated")
	if c := api("GET", "/orgs/initech/connection", nil); c["type"] != "saml" {
		t.Fatalf("after activation: %v", c)
	}
	// A trace is spent by its activation.
	admin.do("the spent trace", chromedp.Navigate(traceURL), chromedp.WaitVisible(chromedp.ID("page-title")))
	if txt := admin.text(); !strings.Contains(txt, "not known") || strings.Contains(txt, "Activate this connection") {
		t.Fatalf("the trace after activation:\n%s", txt)
	}
	// initech's people now sign in through the IdP.
	b := g.browser(t)
	action, vals := b.samlSignIn(g.url("app.localhost", "/initech"), "ian@initech.example", "ian", "ian-pw")
	if p := b.follow(b.postResponse(action, vals, idp.URL)); p.status != 200 {
		t.Fatalf("SAML sign-in after activation: %d %s\n%s", p.status, p.url, p.body)
	}
	if r := up.last("/initech"); r == nil || r.Header.Get("X-Gatehouse-Email") != "ian@initech.example" || r.Header.Get("X-Gatehouse-Org-Slug") != "initech" {
		t.Fatalf("the upstream after the SAML sign-in: %v", r)
	}
	// The audit trail has the tests and the change.
	events := api("GET", "/orgs/initech/audit?action=connection.test_sign_in", nil)["items"].([]any)
	if len(events) != 2 {
		t.Fatalf("test sign-ins audited: %v", events)
	}
	if ch := api("GET", "/orgs/initech/audit?action=connection.update", nil)["items"].([]any); len(ch) != 1 {
		t.Fatalf("activation audited: %v", ch)
	}
}

// Self-serve OIDC setup in the portal against a real OP (zitadel's): a
// wrong client secret shows the token endpoint's refusal in the tracer
// and activates nothing; the right one shows the ID token's claims, and
// activation puts the connection into effect for hooli's people.
func TestPortalOIDCSetup(t *testing.T) {
	port := freePort(t)
	op := testidp.NewOIDC(t, "gatehouse-hooli", "hooli-secret", []string{"http://auth.localhost:" + port + "/.gatehouse/callback"},
		testidp.User{ID: "h-hal", Username: "hal", Password: "hal-pw", Email: "hal@hooli.example", EmailVerified: true, First: "Hal", Last: "Hooli", Groups: []string{"hooli-it"}},
		testidp.User{ID: "h-zed", Username: "zed", Password: "zed-pw", Email: "zed@elsewhere.example", EmailVerified: true, First: "Zed", Last: "Else"})
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) +
		"admin:\n  platform_admins: [alice@acme.example]\n  allow_private_networks: true\n"
	g := startAt(t, port, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	api := func(method, path string, body any) map[string]any {
		t.Helper()
		return alice.mustAPI(method, g.url("login.acme.localhost", "/api/v1"+path), body, "Origin", "http://login.acme.localhost:"+g.port, "Sec-Fetch-Site", "same-origin")
	}
	api("POST", "/orgs", map[string]any{"slug": "hooli", "name": "Hooli"})
	api("POST", "/orgs/hooli/domains", map[string]any{"name": "hooli.example", "kind": "email"})
	api("POST", "/orgs/hooli/users", map[string]any{"email": "hal@hooli.example", "name": "Hal", "roles": []string{"admin"}, "password": "hal's long passphrase"})

	hal := g.browser(t)
	hal.login(g.url("app.localhost", "/"), "hal@hooli.example", "hal's long passphrase")
	ssoPage := g.url("auth.localhost", "/.gatehouse/admin/orgs/hooli/sso")
	test := func(secret, user string) page {
		t.Helper()
		p := hal.get(ssoPage)
		m := csrfRE.FindStringSubmatch(p.body)
		if p.status != 200 || m == nil {
			t.Fatalf("the SSO page: %d\n%s", p.status, p.body)
		}
		form := url.Values{"csrf": {m[1]}, "type": {"oidc"}, "issuer": {op.Issuer}, "client_id": {"gatehouse-hooli"}, "client_secret": {secret}}
		req, _ := http.NewRequest("POST", g.url("auth.localhost", "/.gatehouse/admin/orgs/hooli/sso/test"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://auth.localhost:"+g.port)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		at := hal.follow(hal.do(req))
		if !strings.Contains(at.body, `name="username"`) {
			t.Fatalf("want the OP's login page: %d %s\n%s", at.status, at.url, at.body)
		}
		back := hal.follow(hal.atIdP(at, user, user+"-pw"))
		if back.status != 200 || !strings.Contains(back.url, "/sso?trace=") {
			t.Fatalf("back from the OP: %d %s\n%s", back.status, back.url, back.body)
		}
		return back
	}

	p := test("not-the-secret", "hal")
	if !strings.Contains(p.body, "Test sign-in: refused") || !strings.Contains(p.body, "invalid_client") || strings.Contains(p.body, "Activate this connection") {
		t.Fatalf("the tracer of a wrong secret:\n%s", p.body)
	}
	if c := api("GET", "/orgs/hooli/connection", nil); c["type"] != "password" {
		t.Fatalf("after a refused test: %v", c["type"])
	}
	if strings.Contains(p.body, "not-the-secret") {
		t.Fatal("the page shows the secret tried")
	}

	// The IdP signs in someone Gatehouse would not let in: not activated.
	p = test("hooli-secret", "zed")
	if !strings.Contains(p.body, "Test sign-in: refused") || !strings.Contains(p.body, "would refuse them") ||
		!strings.Contains(p.body, "zed@elsewhere.example is not one of org hooli&#39;s email domains") || strings.Contains(p.body, "Activate this connection") {
		t.Fatalf("the tracer of a person outside the org's domains:\n%s", p.body)
	}
	p = test("hooli-secret", "hal")
	for _, want := range []string{"Test sign-in: it worked", "hal@hooli.example", "<code>sub</code>", "h-hal", "hooli-it", "Roles they get here", "Activate this connection"} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("the tracer lacks %q:\n%s", want, p.body)
		}
	}
	m := csrfRE.FindStringSubmatch(p.body)
	trace := regexp.MustCompile(`name="trace" value="([^"]+)"`).FindStringSubmatch(p.body)
	req, _ := http.NewRequest("POST", g.url("auth.localhost", "/.gatehouse/admin/orgs/hooli/sso/activate"), strings.NewReader(url.Values{"csrf": {m[1]}, "trace": {trace[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if r := hal.do(req); r.status != http.StatusSeeOther || !strings.Contains(r.header.Get("Location"), "done=connection-saved") {
		t.Fatalf("activate: %d %s\n%s", r.status, r.header.Get("Location"), r.body)
	}
	if c := api("GET", "/orgs/hooli/connection", nil); c["type"] != "oidc" {
		t.Fatalf("after activation: %v", c)
	}
	// hal signs in through the OP now.
	b := g.browser(t)
	if r := b.follow(b.atIdP(b.toIdP(g.url("app.localhost", "/hooli"), "hal@hooli.example"), "hal", "hal-pw")); r.status != 200 {
		t.Fatalf("OIDC sign-in after activation: %d %s", r.status, r.body)
	}
	if r := up.last("/hooli"); r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "hooli" {
		t.Fatalf("the upstream: %v", r)
	}
}
