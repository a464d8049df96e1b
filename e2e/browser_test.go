package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// chromium finds Debian's chromium, skipping on a developer machine without
// it and failing in CI (GATEHOUSE_REQUIRE_EXAMPLES=1), which installs it.
func chromium(t *testing.T) string {
	for _, p := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") != "" {
		t.Fatal("chromium is not installed")
	}
	t.Skip("chromium is not installed: the browser test is skipped")
	return ""
}

// chrome starts a headless Chromium for the test and records every URL
// it requests; requests returns them so far.
func chrome(t *testing.T, exe string) (ctx context.Context, requests func() []string) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelA := chromedp.NewExecAllocator(t.Context(), opts...)
	t.Cleanup(cancelA)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancelT)
	var mu sync.Mutex
	var requested []string
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok {
			mu.Lock()
			requested = append(requested, e.Request.URL)
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return ctx, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(requested)
	}
}

// artifacts is where screenshots go: $GATEHOUSE_ARTIFACTS or a temp dir.
func artifacts(t *testing.T) string {
	dir := os.Getenv("GATEHOUSE_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestBrowserSignIn signs in with a real Chromium using only the keyboard:
// the sign-in pages must work with their CSP, across the hosts of the
// flow (shared sign-in, the org's domain, the app), and load nothing from
// another origin.
func TestBrowserSignIn(t *testing.T) {
	exe := chromium(t)
	g, up := startCore(t)
	ctx, requests := chrome(t, exe)
	dir := artifacts(t)
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	eval, do := pageDriver(t, ctx)

	// focus waits for the page's autofocus, which Chrome applies at a
	// rendering pass after the field is visible.
	focus := func(id string) string {
		t.Helper()
		var f string
		var err error
		for range 50 {
			f, err = chromedp.Run(ctx, chromedp.Evaluate[string]("document.activeElement ? document.activeElement.id : ''"))
			if err == nil && f == id {
				return f
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Sprintf("%s (reading the focus: %v)", f, err)
		}
		return f
	}

	do("open the app", chromedp.Navigate(g.url("app.localhost", "/dashboard")), chromedp.WaitVisible(chromedp.ID("email")))
	if f := focus("email"); f != "email" {
		t.Fatalf("keyboard focus on load: %q, want the email field", f)
	}
	shot("1-discovery")
	// Type the work email and press Enter: discovery sends the browser to
	// Acme's own sign-in domain with the password field focused.
	do("discovery", chromedp.KeyEvent("alice@acme.example\r"), chromedp.WaitVisible(chromedp.ID("password")))
	if f, loc := focus("password"), eval("location.host"); !strings.HasPrefix(loc, "login.acme.localhost") || f != "password" {
		t.Fatalf("after discovery: at %s, focus %q", loc, f)
	}
	shot("2-password")
	// A wrong password is announced in an alert region.
	do("wrong password", chromedp.KeyEvent("wrong\r"), chromedp.WaitVisible(chromedp.CSS(`[role="alert"]`)))
	shot("3-wrong-password")
	if alert := eval(`document.querySelector('[role="alert"]').innerText`); !strings.Contains(alert, "Incorrect email or password") {
		t.Fatalf("alert = %q", alert)
	}
	// The right password lands on the app, through the hand-off.
	do("sign in", chromedp.Focus(chromedp.ID("password")), chromedp.KeyEvent("alice-pw-123\r"))
	// The page navigates several times (sign-in post, hand-off, app):
	// poll until it settles on the app, tolerating navigation mid-check.
	deadline := time.Now().Add(15 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`location.host.startsWith("app.localhost") && !!document.body && document.body.innerText.startsWith("upstream /dashboard")`))
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sign-in in the browser never reached the app: %v (at %s)", err, eval("location.href"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	shot("4-app")
	if body, loc := eval("document.body.innerText"), eval("location.href"); body != "upstream /dashboard for alice@acme.example" || loc != g.url("app.localhost", "/dashboard") {
		t.Fatalf("landed on %s: %q", loc, body)
	}
	if r := up.last("/dashboard"); r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "acme" {
		t.Fatalf("upstream identity: %v", r)
	}
	requested := requests()
	if len(requested) < 5 {
		t.Fatalf("saw only %d requests: %v", len(requested), requested)
	}
	for _, raw := range requested {
		u, err := url.Parse(raw)
		if err != nil || !strings.HasSuffix(u.Hostname(), "localhost") || u.Port() != g.port {
			t.Errorf("the browser requested %s: not Gatehouse's origin", raw)
		}
	}
	t.Logf("screenshots in %s", dir)
}

// pageDriver returns eval (a JavaScript expression's string value) and
// do (steps, failing the test with the page's URL), both in ctx's tab.
func pageDriver(t *testing.T, ctx context.Context) (eval func(string) string, do func(string, ...chromedp.Action[chromedp.Void])) {
	eval = func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	do = func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v (at %s)", what, err, eval("location.href"))
		}
	}
	return eval, do
}
