package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	cdpwa "github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"
)

// Passkeys in Chromium with its virtual authenticator (the Chrome
// DevTools WebAuthn domain): enrollment at sign-in in an org that
// requires a second factor, a passkey as the second step, passwordless
// sign-in, a second passkey on the account page, and its removal (after
// which it signs in no more).
func TestPasskeysInChromium(t *testing.T) {
	exe := chromium(t)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "  - slug: globex\n", "    mfa: { require: all }\n  - slug: globex\n", 1)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	ctx, _ := chrome(t, exe)
	eval, do := pageDriver(t, ctx)
	if _, err := chromedp.Call(ctx, cdpwa.Enable, cdpwa.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn domain: %v", err)
	}
	authenticator := func() cdpwa.AuthenticatorID {
		t.Helper()
		res, err := chromedp.Call(ctx, cdpwa.AddVirtualAuthenticator, cdpwa.AddVirtualAuthenticatorParams{Options: &cdpwa.VirtualAuthenticatorOptions{
			Protocol: cdpwa.AuthenticatorProtocolCtap2, Ctap2version: cdpwa.Ctap2versionCtap21, Transport: cdpwa.AuthenticatorTransportInternal,
			HasResidentKey: true, HasUserVerification: true, IsUserVerified: true, AutomaticPresenceSimulation: true}})
		if err != nil {
			t.Fatalf("virtual authenticator: %v", err)
		}
		return res.AuthenticatorID
	}
	first := authenticator()
	credentials := func(id cdpwa.AuthenticatorID) []*cdpwa.Credential {
		t.Helper()
		res, err := chromedp.Call(ctx, cdpwa.GetCredentials, cdpwa.GetCredentialsParams{AuthenticatorID: id})
		if err != nil {
			t.Fatal(err)
		}
		return res.Credentials
	}
	// until polls the page (which navigates under it) for cond.
	until := func(what, cond string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
			if err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: never true (%v) at %s:\n%s", what, err, eval("location.href"), eval("document.body ? document.body.innerText : ''"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	atApp := `location.host.startsWith("app.localhost") && !!document.body && document.body.innerText.startsWith("upstream / for alice@acme.example")`
	signOut := func() {
		t.Helper()
		if _, err := chromedp.Call(ctx, network.ClearBrowserCookies, cdp.Empty{}); err != nil {
			t.Fatal(err)
		}
	}
	toPassword := func() {
		t.Helper()
		do("open the app", chromedp.Navigate(g.url("app.localhost", "/")), chromedp.WaitVisible(chromedp.ID("email")))
		do("discovery", chromedp.SendKeys(chromedp.ID("email"), "alice@acme.example\r"), chromedp.WaitVisible(chromedp.ID("password")))
	}

	// 1. Enrollment: after her password, alice creates a passkey.
	toPassword()
	do("password", chromedp.SendKeys(chromedp.ID("password"), "alice-pw-123\r"), chromedp.WaitVisible(chromedp.CSS(`button[data-webauthn="create"]`)))
	do("create a passkey", chromedp.SendKeys(chromedp.ID("name"), "Laptop"), chromedp.Click(chromedp.CSS(`button[data-webauthn="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(".codes")))
	if n := eval(`String(document.querySelectorAll(".codes li").length)`); n != "10" {
		t.Fatalf("%s recovery codes", n)
	}
	do("continue", chromedp.Click(chromedp.CSS(`form button[type="submit"]`)))
	until("the app after enrollment", atApp)
	creds := credentials(first)
	if len(creds) != 1 || creds[0].RpID != "login.acme.localhost" || !creds[0].IsResidentCredential {
		t.Fatalf("authenticator credentials: %+v", creds)
	}
	if amr, _ := jwtPart(t, up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); len(amr) != 3 || amr[1] != "hwk" {
		t.Fatalf("amr %v", amr)
	}

	// 2. The passkey as the second step of the next sign-in.
	signOut()
	toPassword()
	do("password again", chromedp.SendKeys(chromedp.ID("password"), "alice-pw-123\r"), chromedp.WaitVisible(chromedp.CSS(`button[data-webauthn="get"]`)))
	// The click starts the ceremony, which may finish and submit before
	// DevTools is done with the click: then the click "fails" with the
	// node gone, after doing its work. Only other errors count.
	clickOnce := func(sel string) {
		t.Helper()
		// Clicked where the button is once the page has its styles: a
		// click aimed before the layout settles can miss it.
		until("the page loaded", `document.readyState === "complete"`)
		if _, err := chromedp.Run(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil && !strings.Contains(err.Error(), "Could not find node") {
			t.Fatalf("click %s: %v", sel, err)
		}
	}
	clickOnce(`button[data-webauthn="get"]`)
	until("the app after the passkey step", atApp)

	// 3. Passwordless: from acme's sign-in page, the passkey alone.
	signOut()
	toPassword()
	clickOnce(`form.passkey button[data-webauthn="get"]`)
	until("the app after passwordless sign-in", atApp)
	if amr, _ := jwtPart(t, up.last("/").Header.Get("X-Gatehouse-Jwt-Assertion"), 1)["amr"].([]any); len(amr) != 2 || amr[0] != "hwk" {
		t.Fatalf("passwordless amr %v", amr)
	}

	// 4. A second passkey, on another authenticator (a security key), from
	// the account page.
	if _, err := chromedp.Call(ctx, cdpwa.RemoveVirtualAuthenticator, cdpwa.RemoveVirtualAuthenticatorParams{AuthenticatorID: first}); err != nil {
		t.Fatal(err)
	}
	second := authenticator()
	do("account page", chromedp.Navigate(g.url("login.acme.localhost", "/.gatehouse/account")), chromedp.WaitVisible(chromedp.CSS(`button[data-webauthn="create"]`)))
	do("add a passkey", chromedp.SendKeys(chromedp.ID("name"), "Security key"), chromedp.Click(chromedp.CSS(`button[data-webauthn="create"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[role="status"]`)))
	until("two passkeys listed", `document.querySelectorAll(".passkeys li").length === 2 && document.body.innerText.includes("Passkey added")`)
	if len(credentials(second)) != 1 {
		t.Fatal("the security key holds no credential")
	}

	// 5. Removal: the security key's passkey goes; it signs in no more.
	do("remove", chromedp.Click(chromedp.CSS(`button[aria-label="Remove Security key"]`)))
	until("one passkey listed", `document.querySelectorAll(".passkeys li").length === 1 && document.body.innerText.includes("Passkey removed")`)
	signOut()
	toPassword()
	do("passwordless with the removed passkey", chromedp.Click(chromedp.CSS(`form.passkey button[data-webauthn="get"]`)))
	until("refused", `!!document.body && document.body.innerText.includes("did not sign you in")`)
}
