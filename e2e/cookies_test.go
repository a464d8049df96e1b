package e2e

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A session cookie named without "gatehouse" in it is still Gatehouse's:
// it never reaches the upstream, and it signs in only in the form
// browsers send (no whitespace around "=", no quotes).
func TestCustomSessionCookieStaysWithGatehouse(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "  lifetime: 12h\n", "  lifetime: 12h\n  cookie_name: sid\n", 1)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	var sid string
	for _, c := range alice.jar.Cookies(&url.URL{Scheme: "http", Host: "app.localhost:" + g.port, Path: "/"}) {
		if c.Name == "sid" {
			sid = c.Value
		}
	}
	if sid == "" {
		t.Fatal("no sid cookie after sign-in")
	}
	head := func(path, cookie string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: app.localhost:" + g.port + "\r\nAccept: text/html\r\nCookie: " + cookie + "\r\n"
	}
	// As browsers send it: signed in, and the upstream gets only the app's cookies.
	for i, cookie := range []string{"sid=" + sid, "app=1; sid=" + sid + "; theme=dark", "app=1;sid=" + sid} {
		path := "/ok" + string(rune('a'+i))
		if st, body := rawDo(t, g.addr, head(path, cookie)); st != 200 || !strings.Contains(body, "alice@acme.example") {
			t.Fatalf("Cookie %q: %d %s", cookie, st, body)
		}
		got := up.last(path).Header.Get("Cookie")
		if strings.Contains(got, sid) || strings.Contains(got, "sid=") {
			t.Fatalf("Cookie %q: upstream got %q", cookie, got)
		}
	}
	// Other spellings neither sign in nor reach the upstream.
	for i, cookie := range []string{"sid =" + sid, "sid\t=" + sid, " sid = " + sid, "app=1; sid =" + sid, `sid="` + sid + `"`, "sid= " + sid} {
		path := "/bad" + string(rune('a'+i))
		st, _ := rawDo(t, g.addr, head(path, cookie))
		if st != http.StatusFound {
			t.Errorf("Cookie %q: status %d, want 302 to sign in", cookie, st)
		}
		if r := up.last(path); r != nil {
			t.Errorf("Cookie %q: reached the upstream with Cookie %q", cookie, r.Header.Get("Cookie"))
		}
	}
	// On a public path too, the session cookie in any spelling is removed.
	for _, cookie := range []string{"sid=" + sid + "; app=1", "sid =" + sid + "; app=1", "app=1; sid\t=" + sid} {
		if st, _ := rawDo(t, g.addr, head("/healthz", cookie)); st != 200 {
			t.Fatalf("public path: %d", st)
		}
		if got := up.last("/healthz").Header.Get("Cookie"); got != "app=1" {
			t.Errorf("Cookie %q on a public path: upstream got %q, want app=1", cookie, got)
		}
	}
}
