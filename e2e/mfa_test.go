package e2e

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

// oathtool computes a TOTP code with Debian's oathtool, an implementation
// this project did not write.
func oathtool(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	path, err := exec.LookPath("oathtool")
	if err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") != "" {
			t.Fatal("oathtool is not installed")
		}
		t.Skip("oathtool is not installed: the TOTP test is skipped")
	}
	out, err := exec.Command(path, "--totp", "--base32", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), strings.ReplaceAll(secret, " ", "")).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var (
	secretRE = regexp.MustCompile(`<code id="totp-secret">([A-Z2-7 ]+)</code>`)
	codeRE   = regexp.MustCompile(`<li><code>([a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4})</code></li>`)
)

// formOf is the hidden fields of the page's form that holds marker.
func formOf(t *testing.T, body, marker string) url.Values {
	t.Helper()
	i := strings.Index(body, marker)
	if i < 0 {
		t.Fatalf("no %s in the page:\n%s", marker, body)
	}
	start := strings.LastIndex(body[:i], "<form")
	end := i + strings.Index(body[i:], "</form>")
	return hidden(body[start:end])
}

// passwordStep walks an app's sign-in to the second step and returns it.
func (b *browser) passwordStep(appURL, email, password string) page {
	b.t.Helper()
	p := b.follow(b.get(appURL))
	form := hidden(p.body)
	form.Set("email", email)
	p = b.follow(b.post(resolve(p.url, field(b.t, actionRE, p.body)), form))
	form = hidden(p.body)
	form.Set("email", email)
	form.Set("password", password)
	p = b.post(resolve(p.url, field(b.t, actionRE, p.body)), form)
	if p.status != http.StatusSeeOther || !strings.HasSuffix(p.header.Get("Location"), "/.gatehouse/mfa") {
		b.t.Fatalf("password step: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
	}
	return b.follow(p)
}

// submitCode posts a code on the second step's page.
func (b *browser) submitCode(p page, code string) page {
	b.t.Helper()
	return b.submitWith(p, "code", code)
}

// submitWith posts the page's form with one field set.
func (b *browser) submitWith(p page, name, value string) page {
	b.t.Helper()
	form := hidden(p.body)
	form.Set(name, value)
	return b.post(resolve(p.url, field(b.t, actionRE, p.body)), form)
}

// TOTP end to end: an org that requires a second factor for everyone
// enrolls its admin at sign-in (the key checked with oathtool), shows the
// recovery codes once, and forwards with amr pwd+otp+mfa; the next
// sign-in asks for a code, refuses a reused one, a wrong one, and is
// throttled; a recovery code works once; an org without the rule is not
// asked; a session from before the rule no longer passes.
func TestTOTP(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	// A session of bob from before acme required a second factor.
	g := start(t, cfg)
	bobOld := g.browser(t)
	bobOld.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	// Then acme requires one of everyone.
	b, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.Replace(string(b), "  - slug: globex\n", "    mfa: { require: all }\n  - slug: globex\n", 1)
	if err := os.WriteFile(g.cfgPath, []byte(strict), 0o600); err != nil {
		t.Fatal(err)
	}
	g = g.restart(t)

	alice := g.browser(t)
	p := alice.passwordStep(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	if p.status != 200 || !strings.Contains(p.body, "Set up a second factor") || !strings.Contains(p.body, "otpauth://totp/") {
		t.Fatalf("enrollment page: %d\n%s", p.status, p.body)
	}
	secret := field(t, secretRE, p.body)
	if qr := alice.get(resolve(p.url, "/.gatehouse/mfa/qr")); qr.status != 200 || qr.header.Get("Content-Type") != "image/png" {
		t.Fatalf("QR code: %d %s", qr.status, qr.header.Get("Content-Type"))
	}
	// Nothing passes before the second step: no session exists yet (an
	// API call, so that the browser's sign-in state stays as it is).
	req, _ := http.NewRequest("GET", g.url("app.localhost", "/private"), nil)
	req.Header.Set("Accept", "application/json")
	if r := alice.do(req); r.status != http.StatusUnauthorized {
		t.Fatalf("app before the second step: %d", r.status)
	}
	if r := alice.submitCode(p, "000000"); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "not right") {
		t.Fatalf("wrong enrollment code: %d", r.status)
	}
	now := time.Now()
	r := alice.submitCode(p, oathtool(t, secret, now))
	codes := codeRE.FindAllStringSubmatch(r.body, -1)
	if r.status != 200 || len(codes) != 10 {
		t.Fatalf("after enrollment: %d, %d codes\n%s", r.status, len(codes), r.body)
	}
	r = alice.follow(alice.post(resolve(r.url, field(t, actionRE, r.body)), hidden(r.body)))
	if r.status != 200 || !strings.Contains(r.body, "upstream / for alice@acme.example") {
		t.Fatalf("after the codes: %d %s\n%s", r.status, r.url, r.body)
	}
	claims := jwtPart(t, up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)
	if amr, _ := claims["amr"].([]any); len(amr) != 3 || amr[0] != "pwd" || amr[1] != "otp" || amr[2] != "mfa" {
		t.Fatalf("assertion amr %v", claims["amr"])
	}

	// The next sign-in asks for a code; the enrollment's code is spent.
	again := g.browser(t)
	p = again.passwordStep(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	if !strings.Contains(p.body, "Code from your authenticator app") {
		t.Fatalf("second sign-in's step: %s", p.body)
	}
	if r := again.submitCode(p, oathtool(t, secret, now)); r.status != http.StatusUnauthorized || !strings.Contains(r.body, "used already") {
		t.Fatalf("reused code: %d\n%s", r.status, r.body)
	}
	// A recovery code works once.
	if r := again.follow(again.submitCode(p, strings.ToUpper(codes[0][1]))); r.status != 200 || !strings.Contains(r.body, "upstream / for alice") {
		t.Fatalf("recovery code: %d %s", r.status, r.body)
	}
	third := g.browser(t)
	p = third.passwordStep(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	if r := third.submitCode(p, codes[0][1]); r.status != http.StatusUnauthorized {
		t.Fatalf("recovery code used twice: %d", r.status)
	}
	// Guessing is throttled (login.max_failures: 3 a window).
	var last page
	for range 3 {
		last = third.submitCode(p, "123456")
	}
	if last.status != http.StatusTooManyRequests || last.header.Get("Retry-After") == "" {
		t.Fatalf("guessing: %d", last.status)
	}

	// bob's session from before the rule: refused, sent to sign in; the
	// sign-in host, where the same session lives, does not hand it on
	// either.
	r = bobOld.get(g.url("app.localhost", "/"))
	if r.status != http.StatusFound || !strings.Contains(r.header.Get("Location"), "/.gatehouse/login") {
		t.Fatalf("a session without a second factor: %d %s", r.status, r.header.Get("Location"))
	}
	if p := bobOld.follow(r); strings.Contains(p.body, "upstream") || !strings.Contains(p.body, "<form") {
		t.Fatalf("the hand-off passed a session without a second factor: %d %s", p.status, p.url)
	}
	// acme's admin resets her own factors through the admin API (as for
	// a lost phone): her next sign-in enrolls again.
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	st, _, me := alice.api("GET", g.url("login.acme.localhost", "/api/v1/me"), nil)
	if st != 200 {
		t.Fatalf("/me: %d %v", st, me)
	}
	st, _, u := alice.api("DELETE", g.url("login.acme.localhost", "/api/v1/orgs/acme/users/"+me["user_id"].(string)+"/factors"), nil, same...)
	if st != 200 || len(u["factors"].([]any)) != 0 {
		t.Fatalf("reset factors: %d %v", st, u)
	}
	fourth := g.browser(t)
	if p := fourth.passwordStep(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123"); !strings.Contains(p.body, "Set up a second factor") {
		t.Fatalf("after a reset: %s", p.body)
	}

	// globex has no rule: carol is not asked.
	carol := g.browser(t)
	if r := carol.login(g.url("globex-app.localhost", "/"), "carol@globex.example", "carol-pw-456"); r.status != 200 {
		t.Fatalf("carol: %d %s", r.status, r.url)
	}
	// She sets up an authenticator app on her account page anyway.
	acct := carol.get(g.url("login.globex.localhost", "/.gatehouse/account"))
	csecret := field(t, secretRE, acct.body)
	form := formOf(t, acct.body, `value="totp"`)
	form.Set("code", oathtool(t, csecret, time.Now()))
	r = carol.post(g.url("login.globex.localhost", "/.gatehouse/account"), form)
	if r.status != 200 || !strings.Contains(r.body, "Authenticator app set up") || len(codeRE.FindAllString(r.body, -1)) != 10 {
		t.Fatalf("setting up an app on the account page: %d\n%s", r.status, r.body)
	}
	// Removing it needs a sign-in with it: this session had none.
	form = formOf(t, r.body, `value="remove-totp"`)
	if r := carol.post(g.url("login.globex.localhost", "/.gatehouse/account"), form); r.status != http.StatusForbidden {
		t.Fatalf("removing the app without a sign-in with it: %d", r.status)
	}
	// Her next sign-in asks for a code; then she may remove it.
	carol2 := g.browser(t)
	p = carol2.passwordStep(g.url("globex-app.localhost", "/"), "carol@globex.example", "carol-pw-456")
	if r := carol2.follow(carol2.submitCode(p, oathtool(t, csecret, time.Now().Add(30*time.Second)))); !strings.Contains(r.body, "upstream / for carol") {
		t.Fatalf("carol with her app: %d %s", r.status, r.body)
	}
	acct = carol2.get(g.url("login.globex.localhost", "/.gatehouse/account"))
	form = formOf(t, acct.body, `value="remove-totp"`)
	if r := carol2.post(g.url("login.globex.localhost", "/.gatehouse/account"), form); r.status != 200 || !strings.Contains(r.body, "Authenticator app removed") {
		t.Fatalf("removing the app: %d\n%s", r.status, r.body)
	}
}

// Step-up from policy: a route policy asks for a second factor of the
// last 10 minutes under /admin (examples/policies/step_up_admin). A
// person signed in with a password only is sent to prove one (here:
// set up an authenticator app, checked with oathtool) and comes back to
// the page; an API call gets 401 insufficient_user_authentication; a
// sign-in that had a second factor goes straight in.
func TestStepUp(t *testing.T) {
	pol, err := filepath.Abs("../examples/policies/step_up_admin")
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "    public_paths: [/healthz]\n", "    public_paths: [/healthz]\n    policy: "+pol+"\n", 1)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")

	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	if r := alice.get(g.url("app.localhost", "/reports")); r.status != 200 {
		t.Fatalf("a page without step-up: %d", r.status)
	}
	r := alice.get(g.url("app.localhost", "/admin/users"))
	if r.status != http.StatusFound || !strings.Contains(r.header.Get("Location"), "login.acme.localhost") || !strings.Contains(r.header.Get("Location"), "/.gatehouse/mfa/step-up") {
		t.Fatalf("/admin without a recent factor: %d %s", r.status, r.header.Get("Location"))
	}
	p := alice.follow(r)
	if !strings.Contains(p.body, "Set up a second factor") {
		t.Fatalf("step-up page: %d %s\n%s", p.status, p.url, p.body)
	}
	secret := field(t, secretRE, p.body)
	c := alice.submitCode(p, oathtool(t, secret, time.Now()))
	if c.status != 200 || len(codeRE.FindAllString(c.body, -1)) != 10 {
		t.Fatalf("after the step-up's enrollment: %d\n%s", c.status, c.body)
	}
	c = alice.follow(alice.post(resolve(c.url, field(t, actionRE, c.body)), hidden(c.body)))
	if c.status != 200 || !strings.Contains(c.body, "upstream /admin/users for alice@acme.example") {
		t.Fatalf("back at /admin: %d %s\n%s", c.status, c.url, c.body)
	}
	if amr, _ := jwtPart(t, up.last("/admin/users").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); len(amr) != 3 || amr[1] != "otp" || amr[2] != "mfa" {
		t.Fatalf("amr after step-up %v", amr)
	}
	if r := alice.get(g.url("app.localhost", "/admin/settings")); r.status != 200 {
		t.Fatalf("/admin again: %d", r.status)
	}

	// An API call without a recent factor: 401 with the step-up error.
	bob := g.browser(t)
	bob.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	req, _ := http.NewRequest("GET", g.url("app.localhost", "/admin/api"), nil)
	req.Header.Set("Accept", "application/json")
	if r := bob.do(req); r.status != http.StatusUnauthorized || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_user_authentication"`) ||
		!strings.Contains(r.header.Get("WWW-Authenticate"), "max_age=600") {
		t.Fatalf("API step-up: %d %v", r.status, r.header)
	}

	// alice's next sign-in has her second step: /admin at once.
	again := g.browser(t)
	p = again.passwordStep(g.url("app.localhost", "/admin/users"), "alice@acme.example", "alice-pw-123")
	// The next step's code (the current one is spent; a clock a step
	// ahead is accepted).
	if r := again.follow(again.submitCode(p, oathtool(t, secret, time.Now().Add(30*time.Second)))); !strings.Contains(r.body, "upstream /admin/users for alice") {
		t.Fatalf("a sign-in with a second factor: %d %s", r.status, r.body)
	}
}

// Orgs with their own IdP that require a second factor: Gatehouse asks
// the IdP for one (acr_values, as the org's connection says) and takes
// its amr; an IdP sign-in without one is refused with a page saying so,
// or, where the org says after_idp, goes on to Gatehouse's own second
// step (an authenticator app, checked with oathtool).
func TestFederatedMFA(t *testing.T) {
	requireAll := func(cfg string) string {
		cfg = strings.Replace(cfg, "        client_secret: \"${INITECH_SECRET}\"\n",
			"        client_secret: \"${INITECH_SECRET}\"\n        acr_values: [\""+testidp.MFAACR+"\"]\n", 1)
		cfg = strings.Replace(cfg, "  - slug: initech-eu\n", "    mfa: { require: all }\n  - slug: initech-eu\n", 1)
		// leo (labs.umbrella.example) may sign in to umbrella itself too.
		cfg = strings.Replace(cfg, "      default_roles: []\n", "      default_roles: []\n      any_email_domain: true\n", 1)
		return strings.Replace(cfg, "  - slug: umbrella-labs\n", "  - slug: umbrella-labs\n    mfa: { require: all }\n", 1)
	}
	f := startFederationWith(t, requireAll)
	g := f.g

	// initech asks its IdP for MFA; ann's sign-in there had it.
	ann := g.browser(t)
	p := ann.follow(ann.atIdP(ann.toIdP(g.url("app.localhost", "/"), "ann@initech.example"), "ann", "ann-pw"))
	if !strings.Contains(p.body, "upstream / for ann@initech.example") {
		t.Fatalf("ann with the IdP's MFA: %d %s\n%s", p.status, p.url, p.body)
	}
	if acr := f.idpA.ACRRequested(); len(acr) == 0 || !slices.Equal(acr[len(acr)-1], []string{testidp.MFAACR}) {
		t.Fatalf("acr_values at the IdP: %v", acr)
	}
	if amr, _ := jwtPart(t, f.up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); !slices.Contains(amr, any("mfa")) {
		t.Fatalf("ann's amr %v", amr)
	}

	// umbrella-labs requires MFA; its IdP (umbrella's) is not asked for it
	// and does not report one: leo is refused.
	leo := g.browser(t)
	p = leo.follow(leo.atIdP(leo.toIdP(g.url("app.localhost", "/"), "leo@labs.umbrella.example"), "leo", "leo-pw"))
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "requires multi-factor authentication") {
		t.Fatalf("leo without the IdP's MFA: %d %s\n%s", p.status, p.url, p.body)
	}
	if acr := f.idpB.ACRRequested(); len(acr) == 0 || len(acr[len(acr)-1]) != 0 {
		t.Fatalf("umbrella's IdP was asked for %v", acr)
	}

	// Nor does a switch from another org's session bring him in: signed
	// in to umbrella (no rule), he switches to umbrella-labs (same IdP)
	// and gets a session that passes nothing there.
	leoU := g.browser(t)
	p = leoU.follow(leoU.get(g.url("auth.localhost", "/.gatehouse/login?org=umbrella&rd="+url.QueryEscape(g.url("app.localhost", "/u")))))
	p = leoU.follow(leoU.atIdP(p, "leo", "leo-pw"))
	if r := f.up.last("/u"); r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "umbrella" {
		t.Fatalf("leo in umbrella: %d %s", p.status, p.url)
	}
	p = leoU.get(g.url("app.localhost", "/.gatehouse/orgs?rd=/switched"))
	form := hidden(p.body)
	form.Set("org", "umbrella-labs")
	p = leoU.follow(leoU.post(g.url("app.localhost", "/.gatehouse/orgs"), form))
	if f.up.last("/switched") != nil || strings.Contains(p.body, "upstream /switched") {
		t.Fatalf("a switch into an org that requires MFA passed: %d %s", p.status, p.url)
	}

	// With after_idp, leo goes on to Gatehouse's own second step instead.
	f2 := startFederationWith(t, func(cfg string) string {
		return strings.Replace(cfg, "  - slug: umbrella-labs\n", "  - slug: umbrella-labs\n    mfa: { require: all, after_idp: true }\n", 1)
	})
	leo2 := f2.g.browser(t)
	p = leo2.follow(leo2.atIdP(leo2.toIdP(f2.g.url("app.localhost", "/"), "leo@labs.umbrella.example"), "leo", "leo-pw"))
	if !strings.Contains(p.body, "Set up a second factor") {
		t.Fatalf("leo after his IdP: %d %s\n%s", p.status, p.url, p.body)
	}
	c := leo2.submitCode(p, oathtool(t, field(t, secretRE, p.body), time.Now()))
	c = leo2.follow(leo2.post(resolve(c.url, field(t, actionRE, c.body)), hidden(c.body)))
	if !strings.Contains(c.body, "upstream / for leo@labs.umbrella.example") {
		t.Fatalf("leo after Gatehouse's second step: %d %s\n%s", c.status, c.url, c.body)
	}
	if amr, _ := jwtPart(t, f2.up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); !slices.Equal(amr, []any{"otp", "mfa"}) {
		t.Fatalf("leo's amr %v", amr)
	}
}

// Tightening an org's session lifetime through the admin API ends its
// sessions older than the new lifetime within revocation_check; another
// org's sessions are untouched. (The shortest lifetime an org may set is
// a minute, so the test waits one.)
func TestOrgSessionLifetimeTightened(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a minute")
	}
	g, _ := startCore(t)
	app := g.url("app.localhost", "/")
	alice := g.browser(t)
	alice.login(app, "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	api := func(path string) string { return g.url("login.acme.localhost", "/api/v1"+path) }
	if st, _, p := alice.api("POST", api("/orgs"), map[string]any{"slug": "acme-eu", "name": "Acme EU", "parent": "acme"}, same...); st != 201 {
		t.Fatalf("create acme-eu: %d %v", st, p)
	}
	if st, _, p := alice.api("POST", api("/orgs/acme-eu/users"), map[string]any{"email": "dave@acme.example", "password": "dave-long-password"}, same...); st != 201 {
		t.Fatalf("create dave: %d %v", st, p)
	}
	// dave signs in to acme-eu (its sign-in on the shared host), bob to acme.
	dave := g.browser(t)
	p := dave.follow(dave.get(g.url("auth.localhost", "/.gatehouse/login?org=acme-eu&rd="+url.QueryEscape(app))))
	form := hidden(p.body)
	form.Set("email", "dave@acme.example")
	form.Set("password", "dave-long-password")
	if r := dave.follow(dave.post(resolve(p.url, field(t, actionRE, p.body)), form)); !strings.Contains(r.body, "upstream / for dave@acme.example") {
		t.Fatalf("dave: %d %s\n%s", r.status, r.url, r.body)
	}
	bob := g.browser(t)
	bob.login(app, "bob@acme.example", "bob-example-password")
	time.Sleep(62 * time.Second)
	for name, b := range map[string]*browser{"dave": dave, "bob": bob} {
		if r := b.get(app); r.status != 200 {
			t.Fatalf("%s before the change: %d", name, r.status)
		}
	}
	if st, _, p := alice.api("PATCH", api("/orgs/acme-eu"), map[string]any{"session": map[string]any{"lifetime": "1m"}}, append(same, "If-Match", "*")...); st != 200 {
		t.Fatalf("tighten acme-eu's lifetime: %d %v", st, p)
	}
	changed := time.Now()
	eventuallyWithin(t, 4*time.Second, "dave's session ends", func() error {
		r := dave.get(app)
		return holds(r.status == http.StatusFound, "dave still gets %d", r.status)
	})
	if d := time.Since(changed); d > 3*time.Second { // revocation_check is 2s
		t.Fatalf("dave's session lasted %s after the change", d)
	}
	if r := bob.get(app); r.status != 200 {
		t.Fatalf("bob (another org) after the change: %d", r.status)
	}
}
