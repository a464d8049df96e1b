package e2e

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The example SPA (examples/apps/spa: plain JavaScript, PKCE, tokens in
// memory) in Chromium: alice signs in through Acme's own sign-in page and
// the app shows her, from an ID token it verified with WebCrypto and the
// userinfo endpoint it called with the access token across origins; no
// token is left in the browser's storage.
func TestSPAInChromium(t *testing.T) {
	exe := chromium(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	spa := &http.Server{Handler: http.FileServer(http.Dir("../examples/apps/spa")), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = spa.Serve(ln) }()
	t.Cleanup(func() { spa.Close() })
	origin := "http://" + ln.Addr().String()

	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig) +
		"clients:\n  - id: spa\n    type: spa\n    redirect_uris: [" + origin + "/]\n    post_logout_redirect_uris: [" + origin + "/]\n"
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	ctx, _ := chrome(t, exe)
	eval, do := pageDriver(t, ctx)
	do("open the SPA", chromedp.Navigate(origin+"/?issuer="+g.url("auth.localhost", "")+"&client_id=spa"), chromedp.WaitVisible(chromedp.ID("signin")))
	do("sign in", chromedp.Click(chromedp.ID("signin")), chromedp.WaitVisible(chromedp.ID("email")))
	do("discovery", chromedp.SendKeys(chromedp.ID("email"), "alice@acme.example\r"), chromedp.WaitVisible(chromedp.ID("password")))
	do("password", chromedp.SendKeys(chromedp.ID("password"), "alice-pw-123\r"))
	var status string
	deadline := time.Now().Add(20 * time.Second)
	for {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.origin === "`+origin+`" && document.getElementById("status") ? document.getElementById("status").innerText : ""`))
		if err == nil && strings.HasPrefix(s, "Signed in") || err == nil && strings.HasPrefix(s, "Error") {
			status = s
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the SPA never showed the sign-in: %v %q (at %s)", err, s, eval("location.href"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status != "Signed in as alice@acme.example of acme." {
		t.Fatalf("SPA status %q\n%s", status, eval(`document.body.innerText`))
	}
	if who := eval(`document.getElementById("who").innerText`); !strings.Contains(who, `"org_slug": "acme"`) || !strings.Contains(who, `"roles"`) {
		t.Fatalf("SPA shows %s", who)
	}
	if stored := eval(`JSON.stringify(localStorage) + JSON.stringify(sessionStorage)`); strings.Contains(stored, "eyJ") || strings.Contains(stored, "ghrt_") {
		t.Fatalf("tokens left in storage: %s", stored)
	}
	if loc := eval("location.href"); strings.Contains(loc, "code=") {
		t.Fatalf("the code stays in the address bar: %s", loc)
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err == nil {
		_ = os.WriteFile(filepath.Join(artifacts(t), "spa-signed-in.png"), buf, 0o644)
	}
}
