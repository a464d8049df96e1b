package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// submitPasskey posts a WebAuthn answer with a page's form.
func (b *browser) submitPasskey(p page, answer string) page {
	b.t.Helper()
	form := hidden(p.body)
	form.Set("webauthn", answer)
	return b.post(resolve(p.url, field(b.t, actionRE, p.body)), form)
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
