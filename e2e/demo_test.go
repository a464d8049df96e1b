package e2e

import (
	"bufio"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

// TestFederationDemo runs examples/federation as its README says (the
// demo IdPs, then Gatehouse with demo.yaml), on free ports, and signs in
// both demo people.
func TestFederationDemo(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "demo-idps")
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/federation/demo-idps").CombinedOutput(); err != nil {
		t.Fatalf("build demo-idps: %v\n%s", err, out)
	}
	port, oidcPort, samlPort, upPort := freePort(t), freePort(t), freePort(t), freePort(t)
	demo := exec.Command(bin, "-oidc", "127.0.0.1:"+oidcPort, "-saml", "127.0.0.1:"+samlPort, "-upstream", "127.0.0.1:"+upPort,
		"-gatehouse", "http://auth.localhost:"+port)
	stderr, _ := demo.StderrPipe()
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { demo.Process.Kill(); demo.Wait() })
	var mu sync.Mutex
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	demoLogged := func(s string) bool {
		for range 200 {
			mu.Lock()
			ok := strings.Contains(logs.String(), s)
			mu.Unlock()
			if ok {
				return true
			}
			time.Sleep(50 * time.Millisecond)
		}
		return false
	}
	if !demoLogged("demo app at") {
		t.Fatalf("demo-idps did not start:\n%s", logs.String())
	}

	raw, err := os.ReadFile("../examples/federation/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("127.0.0.1:9998", "127.0.0.1:"+oidcPort, "127.0.0.1:9997", "127.0.0.1:"+samlPort, "127.0.0.1:9000", "127.0.0.1:"+upPort,
		"auth.localhost:8080", "auth.localhost:{{PORT}}", "127.0.0.1:8080", "127.0.0.1:{{PORT}}", "127.0.0.1:9090", "{{OPS}}",
		"./gatehouse-demo-data", "{{DATA}}").Replace(string(raw))
	g := startAt(t, port, cfg)
	if !demoLogged("registered Gatehouse's SP") {
		t.Fatalf("demo SAML IdP did not load Gatehouse's SP metadata:\n%s", logs.String())
	}

	// Alice, through the OpenID Provider.
	b := g.browser(t)
	p := b.follow(b.atIdP(b.toIdP(g.url("app.localhost", "/"), "alice@oidc-demo.example"), "alice", "alice-demo-pw"))
	if p.status != 200 || !strings.Contains(p.body, `"X-Gatehouse-Org-Slug": "oidc-demo"`) || !strings.Contains(p.body, `"X-Gatehouse-Roles": "admin,member"`) {
		t.Fatalf("alice: %d %s\n%s", p.status, p.url, p.body)
	}

	// Bob, through the SAML IdP's own login form.
	b = g.browser(t)
	p = b.follow(b.get(g.url("app.localhost", "/")))
	form := hidden(p.body)
	form.Set("email", "bob@saml-demo.example")
	p = b.follow(b.post(resolve(p.url, field(t, actionRE, p.body)), form))
	action, vals := testidp.Form(p.body)
	vals.Set("user", "bob")
	vals.Set("password", "bob-demo-pw")
	p = b.post(resolve(p.url, action), vals)
	if p.status != 200 || !strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("bob at the SAML IdP: %d\n%s", p.status, p.body)
	}
	action, vals = testidp.Form(p.body)
	p = b.follow(b.postResponse(action, vals, "http://127.0.0.1:"+samlPort))
	if p.status != http.StatusOK || !strings.Contains(p.body, `"X-Gatehouse-Org-Slug": "saml-demo"`) || !strings.Contains(p.body, `"X-Gatehouse-Roles": "member"`) {
		t.Fatalf("bob: %d %s\n%s", p.status, p.url, p.body)
	}
}
