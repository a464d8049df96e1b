package e2e

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// The policy-bypass class against a real servlet container: Tomcat reads
// ";params", empty segments and escapes its own way, so every spelling of
// /admin/... and /internal/... must either take the route and policy that
// protect them, or be refused; the protected files never come back to a
// user without the rights. The policy is examples/policies/roles_by_path,
// the one docs/policies.md recommends (prefix checks on match_path).
func TestPathVariantsAgainstServletContainer(t *testing.T) {
	tomcat := startTomcat(t, map[string]string{
		"index.txt":           "home",
		"admin/secret.txt":    "ADMIN-SECRET",
		"internal/secret.txt": "INTERNAL-SECRET",
	})
	cfg := strings.NewReplacer("{{UPSTREAM}}", tomcat, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "login:\n", "policy:\n  platform: ../examples/policies/roles_by_path\nlogin:\n", 1)
	// A longer route on the same host for Globex only: bob (Acme) must
	// never be routed past it to the shorter "/" route.
	cfg = strings.Replace(cfg, "  - id: globex-only\n", "  - id: internal\n    host: app.localhost\n    path_prefix: /internal\n    upstream: "+tomcat+"\n    orgs: [globex]\n  - id: globex-only\n", 1)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")

	bob, alice := g.browser(t), g.browser(t)
	bob.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")

	// Controls: the files are there, and those with the rights get them.
	if st, body := rawGet(t, g, alice, "/admin/secret.txt"); st != 200 || body != "ADMIN-SECRET" {
		t.Fatalf("alice /admin/secret.txt: %d %q", st, body)
	}
	if st, body := rawGet(t, g, bob, "/index.txt"); st != 200 || body != "home" {
		t.Fatalf("bob /index.txt: %d %q", st, body)
	}
	if st, _ := rawGet(t, g, bob, "/admin/secret.txt"); st != http.StatusForbidden {
		t.Fatalf("bob /admin/secret.txt: %d, want 403", st)
	}

	for _, dir := range []string{"admin", "internal"} {
		upper := strings.ToUpper(dir)
		variants := []string{
			"/" + dir + "/secret.txt",
			"/;x/" + dir + "/secret.txt",
			"/;/" + dir + "/secret.txt",
			"/;x=1;y=2/" + dir + "/secret.txt",
			"/" + dir + ";x/secret.txt",
			"/" + dir + ";/secret.txt",
			"/" + dir + "/;x/secret.txt",
			"/" + dir + "/secret.txt;x",
			"//" + dir + "//secret.txt",
			"/./" + dir + "/./secret.txt",
			"/index.txt/../" + dir + "/secret.txt",
			"/index.txt/..;/" + dir + "/secret.txt",
			"/x/%2e%2e/" + dir + "/secret.txt",
			"/" + upper + "/secret.txt",
			"/" + upper[:1] + dir[1:] + ";x/secret.txt",
			"/%" + hexOf(dir[0]) + dir[1:] + "/secret.txt",
			"/%25" + hexOf(dir[0]) + dir[1:] + "/secret.txt",
			"/" + dir + "%3Bx/secret.txt",
			"/" + dir + "%2fsecret.txt",
			"/" + strings.Replace(dir, "i", "%C4%B1", 1) + "/secret.txt", // dotless i
			"/" + strings.Replace(upper, "I", "%C4%B0", 1) + "/secret.txt",
			"/" + strings.Replace(dir, "s", "%C5%BF", 1) + "/%C5%BFecret.txt", // long s
			"/%EF%BD%" + hexOf(dir[0]+0x20) + dir[1:] + "/secret.txt",         // fullwidth letter
			"/%C0%AE%C0%AE/" + dir + "/secret.txt",
		}
		for _, v := range variants {
			st, body := rawGet(t, g, bob, v)
			if strings.Contains(body, "SECRET") {
				t.Errorf("bob %s: %d, got the protected file", v, st)
				continue
			}
			switch st {
			case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound:
			default:
				t.Errorf("bob %s: status %d, want 400, 403 or 404", v, st)
			}
		}
	}
}

func hexOf(c byte) string {
	const h = "0123456789ABCDEF"
	return string([]byte{h[c>>4], h[c&15]})
}

// rawGet sends path exactly as written (no client-side normalization)
// with b's cookies for app.localhost, and returns the status and body.
func rawGet(t *testing.T, g *gatehouse, b *browser, path string) (int, string) {
	t.Helper()
	var cookies []string
	for _, ck := range b.jar.Cookies(&url.URL{Scheme: "http", Host: "app.localhost:" + g.port, Path: "/"}) {
		cookies = append(cookies, ck.Name+"="+ck.Value)
	}
	extra := ""
	if len(cookies) > 0 {
		extra = "Cookie: " + strings.Join(cookies, "; ") + "\r\n"
	}
	return rawDo(t, g.addr, "GET "+path+" HTTP/1.1\r\nHost: app.localhost:"+g.port+"\r\nAccept: text/html\r\n"+extra)
}

// rawDo sends head (request line and headers, each ending in CRLF) as
// written, with "Connection: close", to addr and returns the status and
// body of the answer.
func rawDo(t *testing.T, addr, head string) (int, string) {
	t.Helper()
	return rawSend(t, addr, head, "")
}

// rawSend is rawDo with a body written as is after the headers.
func rawSend(t *testing.T, addr, head, body string) (int, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, head+"Connection: close\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}
