package e2e

import (
	"html"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runExample builds examples/apps/name and starts it with env, waiting
// until addr accepts connections (if set); it is killed when the test ends.
func runExample(t *testing.T, name, addr string, env ...string) (*exec.Cmd, *lockedBuffer) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("go", "build", "-o", bin, "../examples/apps/"+name).CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
	cmd := exec.Command(bin)
	cmd.Env = env
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if addr == "" {
		return cmd, out
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	waitListening(t, name, addr)
	return cmd, out
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, name, addr string) {
	t.Helper()
	eventually(t, name+" listens on "+addr, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// The OpenID Provider's example apps, run as their README says against
// `gatehouse serve --dev` and its demo apps: the Go web app signs alice
// in (code with PKCE) and shows her org; the Go service gets a token of
// Acme with client credentials and calls the Go API, which accepts it and
// refuses alice's ID token and the proxy's assertion.
func TestAppExamples(t *testing.T) {
	g, banner := startDev(t, "GATEHOUSE_DEV_PASSWORD=dev-pass-123")
	issuer := "http://auth.localhost:" + g.port
	secretOf := func(id string) string {
		m := regexp.MustCompile(regexp.QuoteMeta(id) + ` +[^\n]*?secret (\S+)`).FindStringSubmatch(banner.raw)
		if m == nil {
			t.Fatalf("no secret for %s in the banner\n%s", id, banner.raw)
		}
		return m[1]
	}

	// The web app, on the demo client's address.
	_, webLog := runExample(t, "go-web", "127.0.0.1:5555", "ISSUER="+issuer, "CLIENT_SECRET="+secretOf("demo-web"), "GATEHOUSE_ADDR="+g.addr)
	alice := g.browser(t)
	p := alice.follow(alice.get("http://127.0.0.1:5555/"))
	form := hidden(p.body)
	form.Set("email", "alice@acme.example")
	p = alice.follow(alice.post(resolve(p.url, field(t, actionRE, p.body)), form))
	form = hidden(p.body)
	form.Set("email", "alice@acme.example")
	form.Set("password", "dev-pass-123")
	p = alice.follow(alice.post(resolve(p.url, field(t, actionRE, p.body)), form))
	if p.status != 200 || !strings.Contains(p.body, "Hello, alice@acme.example") || !strings.Contains(p.body, "<strong>acme</strong>") {
		t.Fatalf("the web app after sign-in: %d %s\n%s\n%s", p.status, p.url, p.body, webLog)
	}
	if !regexp.MustCompile(`"sid": "[^"]+"`).MatchString(html.UnescapeString(p.body)) {
		t.Errorf("the web app shows no sid claim:\n%s", p.body)
	}
	// Its logout ends Gatehouse's session too and comes back.
	out := alice.follow(alice.get("http://127.0.0.1:5555/logout"))
	form = hidden(out.body)
	back := alice.post(resolve(out.url, "/.gatehouse/logout"), form)
	if back.header.Get("Location") != "http://127.0.0.1:5555/" {
		t.Fatalf("logout through the web app: %d %q\n%s", back.status, back.header.Get("Location"), back.body)
	}

	// The API and the service.
	apiAddr := "127.0.0.1:" + freePort(t)
	_, apiLog := runExample(t, "go-api", apiAddr, "ISSUER="+issuer, "AUDIENCE=https://api.acme.example", "LISTEN="+apiAddr, "GATEHOUSE_ADDR="+g.addr)
	svc, svcOut := runExample(t, "go-service", "", "ISSUER="+issuer, "CLIENT_SECRET="+secretOf("demo-service"),
		"API_URL=http://"+apiAddr+"/whoami", "GATEHOUSE_ADDR="+g.addr)
	if err := svc.Run(); err != nil || !strings.Contains(svcOut.String(), `"org_slug":"acme"`) || !strings.Contains(svcOut.String(), `"sub":"demo-service"`) {
		t.Fatalf("go-service: %v\n%s\napi: %s", err, svcOut, apiLog)
	}
	// Not an access token: refused.
	a := g.browser(t)
	a.login(banner.appURL, "alice@acme.example", "dev-pass-123")
	assertion := regexp.MustCompile(`X-Gatehouse-Jwt-Assertion</td><td><code>([^<]+)</code>`).FindStringSubmatch(a.get(banner.appURL).body)
	if assertion == nil {
		t.Fatal("no assertion on the demo page")
	}
	req, _ := http.NewRequest("GET", "http://"+apiAddr+"/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+assertion[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the API with a proxy assertion: %d\n%s", resp.StatusCode, apiLog)
	}
	eventually(t, "the API says why", func() error {
		return holds(strings.Contains(apiLog.String(), "not an access token"), "api log: %s", apiLog)
	})
}

// The Node example (examples/apps/node-web, openid-client) against dev
// mode's demo-web app: alice signs in, and the app has her ID token
// claims and userinfo, with the org.
func TestNodeAppExample(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") != "" {
			t.Fatal("npm is not installed")
		}
		t.Skip("npm is not installed: the Node app example is not tested")
	}
	dir := "../examples/apps/node-web"
	install := exec.Command(npm, "ci", "--prefer-offline", "--no-audit", "--no-fund")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	g, banner := startDev(t, "GATEHOUSE_DEV_PASSWORD=dev-pass-123")
	secret := regexp.MustCompile(`demo-web +web +secret (\S+)`).FindStringSubmatch(banner.raw)
	if secret == nil {
		t.Fatalf("no demo-web secret\n%s", banner.raw)
	}
	node := exec.Command("node", "server.mjs")
	node.Dir = dir
	node.Env = append(os.Environ(), "ISSUER=http://auth.localhost:"+g.port, "CLIENT_SECRET="+secret[1], "GATEHOUSE_ADDR="+g.addr, "LISTEN=127.0.0.1:5555")
	logs := &lockedBuffer{}
	node.Stdout, node.Stderr = logs, logs
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Process.Kill(); _ = node.Wait() })
	waitListening(t, "node-web", "127.0.0.1:5555")
	alice := g.browser(t)
	p := alice.follow(alice.get("http://127.0.0.1:5555/"))
	form := hidden(p.body)
	form.Set("email", "alice@acme.example")
	p = alice.follow(alice.post(resolve(p.url, field(t, actionRE, p.body)), form))
	form = hidden(p.body)
	form.Set("email", "alice@acme.example")
	form.Set("password", "dev-pass-123")
	p = alice.follow(alice.post(resolve(p.url, field(t, actionRE, p.body)), form))
	if p.status != 200 || !strings.Contains(p.body, `"email":"alice@acme.example"`) || !strings.Contains(p.body, `"org_slug":"acme"`) {
		t.Fatalf("node-web after sign-in: %d %s\n%s\nlogs: %s", p.status, p.url, p.body, logs)
	}
}
