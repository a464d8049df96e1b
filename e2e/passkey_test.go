package e2e

import (
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// submitPasskey posts a WebAuthn answer with a page's form.
func (b *browser) submitPasskey(p page, answer string) page {
	b.t.Helper()
	return b.submitWith(p, "webauthn", answer)
}

// Passkeys over HTTP with a software authenticator, against the binary:
// enrollment at sign-in, a passkey as the second step, passwordless
// sign-in, and a table of answers that must be refused: another
// person's credential, a credential answering for another relying party
// (login domain) or origin, a signature counter that did not move (a
// clone), an answer replayed to another sign-in, a user handle that is
// not the credential's owner.
func TestPasskeyAttacks(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "  - slug: globex\n", "    mfa: { require: all }\n  - slug: globex\n", 1)
	cfg = strings.Replace(cfg, "max_failures: 3", "max_failures: 50", 1)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	rp := "login.acme.localhost"
	origin := "http://" + rp + ":" + g.port
	app := g.url("app.localhost", "/")

	// enroll signs a person in for the first time with a new passkey.
	enroll := func(email, password string) *softKey {
		t.Helper()
		k := newSoftKey(t)
		b := g.browser(t)
		p := b.passwordStep(app, email, password)
		r := b.submitPasskey(p, k.create(t, pageOptions(t, p.body), origin, rp))
		if r.status != 200 || len(codeRE.FindAllString(r.body, -1)) != 10 {
			t.Fatalf("%s: enrollment: %d\n%s", email, r.status, r.body)
		}
		r = b.follow(b.post(resolve(r.url, field(t, actionRE, r.body)), hidden(r.body)))
		if !strings.Contains(r.body, "upstream / for "+email) {
			t.Fatalf("%s: after enrollment: %d %s", email, r.status, r.body)
		}
		return k
	}
	alice := enroll("alice@acme.example", "alice-pw-123")
	amr := jwtPart(t, up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"]
	if s, _ := amr.([]any); len(s) != 3 || s[0] != "pwd" || s[1] != "hwk" || s[2] != "mfa" {
		t.Fatalf("amr after a passkey: %v", amr)
	}
	bob := enroll("bob@acme.example", "bob-example-password")

	// atStep is a browser at alice's second step, with its options.
	atStep := func() (*browser, page, map[string]any) {
		t.Helper()
		b := g.browser(t)
		p := b.passwordStep(app, "alice@acme.example", "alice-pw-123")
		if !strings.Contains(p.body, `data-webauthn="get"`) {
			t.Fatalf("no passkey offered at the second step:\n%s", p.body)
		}
		return b, p, pageOptions(t, p.body)
	}
	refused := func(name string, r page) {
		t.Helper()
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "passkey was not accepted") {
			t.Errorf("%s: %d, want 401 refused\n%s", name, r.status, r.body)
		}
	}
	for name, answer := range map[string]func(opts map[string]any) string{
		"another person's credential": func(o map[string]any) string { return bob.get(t, o, origin, rp, false) },
		"another relying party (domain)": func(o map[string]any) string {
			return alice.get(t, o, "http://login.globex.localhost:"+g.port, "login.globex.localhost", false)
		},
		"another origin":              func(o map[string]any) string { return alice.get(t, o, "http://evil.localhost:"+g.port, rp, false) },
		"a counter that did not move": func(o map[string]any) string { return alice.get(t, o, origin, rp, true) },
		"not JSON":                    func(map[string]any) string { return "{" },
	} {
		b, p, opts := atStep()
		refused(name, b.submitPasskey(p, answer(opts)))
	}
	// An oversized answer is refused before it is read.
	if b, p, _ := atStep(); b.submitPasskey(p, strings.Repeat("a", 70<<10)).status != http.StatusBadRequest {
		t.Error("an oversized answer was read")
	}

	// A good answer signs in once; replayed to another sign-in, and to
	// the same one after it finished, it is refused.
	b, p, opts := atStep()
	good := alice.get(t, opts, origin, rp, false)
	if r := b.follow(b.submitPasskey(p, good)); !strings.Contains(r.body, "upstream / for alice@acme.example") {
		t.Fatalf("passkey second step: %d %s", r.status, r.body)
	}
	alice.accepted = alice.count
	if r := b.submitPasskey(p, good); r.status != http.StatusBadRequest || !strings.Contains(r.body, "Sign in again") {
		t.Errorf("replayed to the finished sign-in: %d", r.status)
	}
	b2, p2, _ := atStep()
	refused("replayed to another sign-in", b2.submitPasskey(p2, good))

	// Passwordless: alice's passkey alone, from acme's sign-in page; the
	// answer must be her credential with her user handle, on this host.
	// toPasskeyPage walks a new browser from the app to acme's sign-in
	// page, which offers passwordless sign-in.
	toPasskeyPage := func() (*browser, page) {
		t.Helper()
		b := g.browser(t)
		p := b.follow(b.get(app))
		form := hidden(p.body)
		form.Set("email", "alice@acme.example")
		p = b.follow(b.post(resolve(p.url, field(t, actionRE, p.body)), form))
		if !strings.HasPrefix(p.url, origin) || !strings.Contains(p.body, `action="/.gatehouse/passkey"`) {
			t.Fatalf("acme's sign-in page: %s\n%s", p.url, p.body)
		}
		return b, p
	}
	passwordless := func(k *softKey, handle []byte, stuck bool) page {
		t.Helper()
		b, p := toPasskeyPage()
		saved := k.handle
		if handle != nil {
			k.handle = handle
		}
		answer := k.get(t, pageOptions(t, p.body), origin, rp, stuck)
		k.handle = saved
		form := hidden(p.body[strings.Index(p.body, `action="/.gatehouse/passkey"`):])
		form.Set("webauthn", answer)
		return b.post(g.url(rp, "/.gatehouse/passkey"), form)
	}
	pb, pp := toPasskeyPage()
	form := hidden(pp.body[strings.Index(pp.body, `action="/.gatehouse/passkey"`):])
	form.Set("webauthn", alice.get(t, pageOptions(t, pp.body), origin, rp, false))
	r := pb.follow(pb.post(g.url(rp, "/.gatehouse/passkey"), form))
	if !strings.Contains(r.body, "upstream / for alice@acme.example") {
		t.Fatalf("passwordless: %d %s\n%s", r.status, r.url, r.body)
	}
	alice.accepted = alice.count
	if amr, _ := jwtPart(t, up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); len(amr) != 2 || amr[0] != "hwk" || amr[1] != "mfa" {
		t.Errorf("passwordless amr %v, want [hwk mfa]", amr)
	}
	// The same ceremony cannot be answered twice.
	form.Set("webauthn", alice.get(t, pageOptions(t, pp.body), origin, rp, false))
	if r := pb.post(g.url(rp, "/.gatehouse/passkey"), form); r.status != http.StatusBadRequest {
		t.Errorf("a ceremony answered twice: %d", r.status)
	}
	for name, r := range map[string]page{
		"someone else's user handle":  passwordless(alice, bob.handle, false),
		"a counter that did not move": passwordless(alice, nil, true),
		"another person's credential": passwordless(bob, alice.handle, false),
	} {
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, "did not sign you in") {
			t.Errorf("passwordless with %s: %d\n%s", name, r.status, r.body)
		}
	}
}

// An org's factor rules: only passkeys count (a person whose only factor
// is an authenticator app sets up a passkey, and their old session with
// the app is refused), a browser remembered for the org's window skips
// the second step (keeping the time of its proof), and a person's
// sessions are bounded (the oldest ends).
func TestOrgFactorRules(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "  - slug: globex\n", "    mfa: { require: all }\n  - slug: globex\n", 1)
	g := start(t, cfg)
	rp := "login.acme.localhost"
	origin := "http://" + rp + ":" + g.port
	app := g.url("app.localhost", "/")

	// bob sets up an authenticator app while any factor counts.
	bobOld := g.browser(t)
	p := bobOld.passwordStep(app, "bob@acme.example", "bob-example-password")
	c := bobOld.submitCode(p, oathtool(t, field(t, secretRE, p.body), time.Now()))
	if r := bobOld.follow(bobOld.post(resolve(c.url, field(t, actionRE, c.body)), hidden(c.body))); !strings.Contains(r.body, "upstream / for bob") {
		t.Fatalf("bob with his app: %d %s", r.status, r.body)
	}

	// Then acme counts passkeys only, remembers browsers for 30 days and
	// allows two sessions a person.
	b, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	strict := strings.Replace(string(b), "    mfa: { require: all }\n",
		"    mfa: { require: all, factors: [passkey], remember_device: 720h }\n    session: { max_per_person: 2 }\n", 1)
	if err := os.WriteFile(g.cfgPath, []byte(strict), 0o600); err != nil {
		t.Fatal(err)
	}
	g = g.restart(t)
	if r := bobOld.get(app); r.status != http.StatusFound {
		t.Fatalf("bob's session with an app that no longer counts: %d", r.status)
	}
	bob := g.browser(t)
	p = bob.passwordStep(app, "bob@acme.example", "bob-example-password")
	if !strings.Contains(p.body, `data-webauthn="create"`) || strings.Contains(p.body, "totp-secret") {
		t.Fatalf("bob must set up a passkey, and only that:\n%s", p.body)
	}

	// alice sets up a passkey and asks to be remembered.
	alice := newSoftKey(t)
	a1 := g.browser(t)
	p = a1.passwordStep(app, "alice@acme.example", "alice-pw-123")
	if !strings.Contains(p.body, "Remember this browser for 30 days") {
		t.Fatalf("no offer to remember the browser:\n%s", p.body)
	}
	form := hidden(p.body)
	form.Set("webauthn", alice.create(t, pageOptions(t, p.body), origin, rp))
	form.Set("remember", "1")
	c = a1.post(resolve(p.url, field(t, actionRE, p.body)), form)
	if r := a1.follow(a1.post(resolve(c.url, field(t, actionRE, c.body)), hidden(c.body))); !strings.Contains(r.body, "upstream / for alice") {
		t.Fatalf("alice's enrollment: %d %s", r.status, r.body)
	}
	// The same browser, signing in again (its sessions gone), skips the
	// second step; its proof keeps the enrollment's time.
	a2 := g.browser(t)
	u, _ := url.Parse(origin)
	for _, ck := range a1.jar.Cookies(u) {
		if strings.Contains(ck.Name, "gatehouse_device_") {
			a2.jar.SetCookies(u, []*http.Cookie{ck})
		}
	}
	if len(a2.jar.Cookies(u)) != 1 {
		t.Fatalf("no remembered-device cookie: %v", a1.jar.Cookies(u))
	}
	r := a2.login(app, "alice@acme.example", "alice-pw-123")
	if !strings.Contains(r.body, "upstream / for alice") {
		t.Fatalf("a remembered browser: %d %s\n%s", r.status, r.url, r.body)
	}
	if amr, _ := jwtPart(t, up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); !slices.Equal(amr, []any{"pwd", "hwk", "mfa"}) {
		t.Fatalf("amr of a remembered browser %v", amr)
	}
	// Another browser is asked.
	a3 := g.browser(t)
	p = a3.passwordStep(app, "alice@acme.example", "alice-pw-123")
	if r := a3.follow(a3.submitPasskey(p, alice.get(t, pageOptions(t, p.body), origin, rp, false))); !strings.Contains(r.body, "upstream / for alice") {
		t.Fatalf("a third browser: %d %s", r.status, r.body)
	}
	// Three sessions, two allowed: the first browser's ended.
	if r := a1.get(app); r.status != http.StatusFound {
		t.Fatalf("the oldest session past max_per_person: %d", r.status)
	}
	for _, br := range []*browser{a2, a3} {
		if r := br.get(app); r.status != 200 {
			t.Fatalf("a newer session: %d", r.status)
		}
	}
}
