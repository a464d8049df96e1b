package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browserTab drives one Chromium (its own profile, so its own cookies)
// for a person in a test.
type browserTab struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	name string
	eval func(string) string
	do   func(string, ...chromedp.Action[chromedp.Void])
}

func newTab(t *testing.T, exe, name string) *browserTab {
	ctx, _ := chrome(t, exe)
	eval, do := pageDriver(t, ctx)
	return &browserTab{t: t, ctx: ctx, dir: artifacts(t), name: name, eval: eval, do: do}
}

// shot keeps a full-page screenshot in the artifacts folder.
func (b *browserTab) shot(name string) {
	b.t.Helper()
	buf, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(b.dir, "portal-"+b.name+"-"+name+".png"), buf, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// until polls the page (which may navigate under it) for a JavaScript
// condition.
func (b *browserTab) until(what, cond string, within time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: never true (%v) at %s:\n%s", what, err, b.eval("location.href"), b.eval("document.body ? document.body.innerText : ''"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// text is the page's visible text.
func (b *browserTab) text() string { return b.eval("document.body ? document.body.innerText : ''") }

// portalSignIn opens acme's portal on its login domain as alice, the
// admin, signing in on the way.
func portalSignIn(t *testing.T, g *gatehouse, exe string) *browserTab {
	admin := newTab(t, exe, "admin")
	admin.do("open the portal", chromedp.Navigate(g.url("login.acme.localhost", "/.gatehouse/admin/")), chromedp.WaitVisible(chromedp.ID("email")))
	admin.do("email", chromedp.SendKeys(chromedp.ID("email"), "alice@acme.example\r"), chromedp.WaitVisible(chromedp.ID("password")))
	admin.do("password", chromedp.SendKeys(chromedp.ID("password"), "alice-pw-123\r"))
	admin.until("the portal's overview", `location.pathname === "/.gatehouse/admin/orgs/acme/" && !!document.querySelector("nav")`, 15*time.Second)
	return admin
}

// The portal in Chromium, as acme's admin uses it: invite a person from
// the portal; the invitation arrives at a real SMTP server (mailpit); the
// person opens the link in their own browser, sets a password and is
// signed in; the admin disables them in the portal, and their open
// session dies within revocation_check. Screenshots of every step are
// kept.
func TestPortalInvitationInChromium(t *testing.T) {
	exe := chromium(t)
	g, up, mp := startWithMail(t, nil)
	admin := portalSignIn(t, g, exe)
	admin.shot("1-overview")
	if !strings.Contains(admin.text(), "Acme Corp") {
		t.Fatalf("the overview:\n%s", admin.text())
	}

	// Invite frank from the invitations page, with the keyboard's fields.
	admin.do("invitations", chromedp.Navigate(g.url("login.acme.localhost", "/.gatehouse/admin/orgs/acme/invitations")), chromedp.WaitVisible(chromedp.ID("email")))
	admin.do("fill the invitation",
		chromedp.SendKeys(chromedp.ID("email"), "frank@acme.example"),
		chromedp.SendKeys(chromedp.ID("name"), "Frank Example"),
		chromedp.SendKeys(chromedp.ID("roles"), "member"),
		chromedp.Submit(chromedp.ID("email")))
	admin.until("the invitation is made", `!!document.querySelector(".created")`, 10*time.Second)
	admin.shot("2-invited")
	if txt := admin.text(); !strings.Contains(txt, "frank@acme.example") || !strings.Contains(txt, "pending") {
		t.Fatalf("after inviting:\n%s", txt)
	}

	// The email arrives with the org's invitation and a working link.
	subject, text := mp.lastTo(t, "frank@acme.example")
	link := inviteLinkRE.FindString(text)
	if link == "" || !strings.Contains(subject+text, "Acme Corp") {
		t.Fatalf("the invitation message: %q\n%s", subject, text)
	}
	frank := newTab(t, exe, "frank")
	frank.do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("password")))
	frank.shot("3-accept")
	frank.do("set a password",
		chromedp.SendKeys(chromedp.ID("password"), "frank's long passphrase"),
		chromedp.SendKeys(chromedp.ID("password2"), "frank's long passphrase"),
		chromedp.Submit(chromedp.ID("password")))
	frank.until("frank is signed in", `location.host.startsWith("login.acme.localhost") && !document.querySelector("#password2")`, 15*time.Second)
	// The app sends him to discovery; his session on acme's login domain
	// hands him on without a password.
	frank.do("the app", chromedp.Navigate(g.url("app.localhost", "/reports")), chromedp.WaitVisible(chromedp.ID("email")))
	frank.do("discovery", chromedp.SendKeys(chromedp.ID("email"), "frank@acme.example\r"))
	frank.until("frank reaches the app", `!!document.body && document.body.innerText === "upstream /reports for frank@acme.example"`, 15*time.Second)
	frank.shot("4-app")
	if r := up.last("/reports"); r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "acme" {
		t.Fatalf("the upstream's view of frank: %v", r)
	}

	// The admin finds frank, sees his session, and disables him.
	admin.do("people", chromedp.Navigate(g.url("login.acme.localhost", "/.gatehouse/admin/orgs/acme/users?q=frank")), chromedp.WaitVisible(chromedp.CSS("table")))
	admin.shot("5-people")
	admin.do("frank's page", chromedp.Click(chromedp.Search(`//a[normalize-space()="Frank Example"]`)))
	admin.until("frank's page", `document.querySelector("h1") && document.querySelector("h1").innerText === "frank@acme.example"`, 10*time.Second)
	if txt := admin.text(); !strings.Contains(txt, "Open sessions of frank@acme.example") {
		t.Fatalf("frank's page shows no session:\n%s", txt)
	}
	admin.do("disable", chromedp.Click(chromedp.Search(`//button[normalize-space()="Disable frank@acme.example"]`)))
	admin.until("disabled", `!!document.querySelector('[role="status"]') && document.body.innerText.includes("disabled")`, 10*time.Second)
	disabledAt := time.Now()
	admin.shot("6-disabled")

	// frank's open session dies within revocation_check (2s here).
	frank.do("reload the app", chromedp.Navigate(g.url("app.localhost", "/reports")))
	for frank.eval("document.body ? document.body.innerText : ''") == "upstream /reports for frank@acme.example" {
		if time.Since(disabledAt) > 2*time.Second+3*time.Second {
			t.Fatal("frank's session outlived revocation_check")
		}
		time.Sleep(200 * time.Millisecond)
		frank.do("reload the app", chromedp.Navigate(g.url("app.localhost", "/reports")))
	}
	frank.until("frank is sent to sign in", `!!document.querySelector("#email") || !!document.querySelector("#password")`, 10*time.Second)
	frank.shot("7-signed-out")
	// The audit page shows the admin's actions.
	admin.do("audit", chromedp.Navigate(g.url("login.acme.localhost", "/.gatehouse/admin/orgs/acme/audit")), chromedp.WaitVisible(chromedp.CSS("table")))
	admin.shot("8-audit")
	if txt := admin.text(); !strings.Contains(txt, "invitation.create") || !strings.Contains(txt, "user.update") || !strings.Contains(txt, "invitation.accept") {
		t.Fatalf("the audit page:\n%s", txt)
	}
}
