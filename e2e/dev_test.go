package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"html"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// lockedBuffer is an io.Writer safe to read while the process writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logWriter appends to the harness's log buffer.
type logWriter struct{ g *gatehouse }

func (w logWriter) Write(p []byte) (int, error) {
	w.g.logMu.Lock()
	defer w.g.logMu.Unlock()
	return w.g.logs.Write(p)
}

type devLogin struct{ email, password, org, loginURL string }

type devBanner struct {
	raw, appURL, dataDir string
	logins               map[string]devLogin
}

// startDev runs `gatehouse serve --dev` on free ports and returns once it
// has printed its banner and /readyz answers. Unlike the harness's run,
// it keeps stdout, where the banner goes.
func startDev(t *testing.T, env ...string) (*gatehouse, devBanner) {
	t.Helper()
	return startDevArgs(t, nil, env...)
}

// startDevArgs is startDev with more serve flags.
func startDevArgs(t *testing.T, args []string, env ...string) (*gatehouse, devBanner) {
	t.Helper()
	g := &gatehouse{t: t, port: freePort(t), done: make(chan struct{})}
	g.addr = "127.0.0.1:" + g.port
	g.ops = "127.0.0.1:" + freePort(t)
	g.cmd = exec.Command(binary, append([]string{"serve", "--dev", "--listen", g.addr, "--ops-listen", g.ops}, args...)...)
	g.cmd.Env = append(os.Environ(), env...)
	stdout := &lockedBuffer{}
	g.cmd.Stdout, g.cmd.Stderr = stdout, logWriter{g}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		g.exitErr = g.cmd.Wait()
		close(g.done)
	}()
	var banner devBanner
	t.Cleanup(func() {
		g.stop()
		if strings.Contains(g.Logs(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in gatehouse (%s)", g.addr)
		}
		if t.Failed() {
			t.Logf("gatehouse stdout:\n%s\nlogs:\n%s", stdout.String(), g.Logs())
		}
		// --dev leaves its data folder behind; do not litter /tmp.
		if d := banner.dataDir; d != "" && strings.HasPrefix(filepath.Base(d), "gatehouse-dev-") &&
			filepath.Dir(d) == filepath.Clean(os.TempDir()) {
			os.RemoveAll(d)
		}
	})

	deadline := time.Now().Add(20 * time.Second)
	for {
		out := stdout.String()
		if i := strings.Index(out, "carol@globex.example"); i >= 0 && strings.Contains(out[i:], "\n") {
			break
		}
		select {
		case <-g.done:
			t.Fatalf("gatehouse --dev exited at start: %v\nstdout:\n%s\nlogs:\n%s", g.exitErr, out, g.Logs())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 20s\nstdout:\n%s\nlogs:\n%s", out, g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	banner = parseBanner(t, stdout.String())
	resp, err := http.Get("http://" + g.ops + "/readyz")
	if err != nil {
		t.Fatalf("readyz after banner: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readyz after banner: %d", resp.StatusCode)
	}
	return g, banner
}

func parseBanner(t *testing.T, out string) devBanner {
	t.Helper()
	b := devBanner{raw: out, logins: map[string]devLogin{}}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "App (behind Gatehouse):") && len(f) > 0:
			b.appURL = f[len(f)-1]
		case strings.HasPrefix(strings.TrimSpace(line), "Data folder:") && len(f) > 0:
			b.dataDir = f[len(f)-1]
		case len(f) == 5 && f[2] == "org" && strings.Contains(f[0], "@"):
			b.logins[f[0]] = devLogin{email: f[0], password: f[1], org: f[3], loginURL: f[4]}
		}
	}
	return b
}

var devPasswordRE = regexp.MustCompile(`^[a-z2-7]{16}$`)

func TestDevMode(t *testing.T) {
	g, banner := startDev(t, "GATEHOUSE_DEV_PASSWORD=dev-pass-123")

	if want := "http://app.localhost:" + g.port + "/"; banner.appURL != want {
		t.Errorf("banner app URL = %q, want %q\n%s", banner.appURL, want, banner.raw)
	}
	for _, want := range []string{
		"http://auth.localhost:" + g.port + "/.gatehouse/login",
		"http://auth.localhost:" + g.port + "/.well-known/jwks.json",
		"http://" + g.ops + "/healthz",
	} {
		if !strings.Contains(banner.raw, want) {
			t.Errorf("banner lacks %s\n%s", want, banner.raw)
		}
	}
	for email, want := range map[string]devLogin{
		"alice@acme.example":   {"alice@acme.example", "dev-pass-123", "acme", "http://login.acme.localhost:" + g.port + "/.gatehouse/login"},
		"bob@acme.example":     {"bob@acme.example", "dev-pass-123", "acme", "http://login.acme.localhost:" + g.port + "/.gatehouse/login"},
		"carol@globex.example": {"carol@globex.example", "dev-pass-123", "globex", "http://auth.localhost:" + g.port + "/.gatehouse/login"},
	} {
		if got := banner.logins[email]; got != want {
			t.Errorf("banner login for %s = %+v, want %+v", email, got, want)
		}
	}
	if fi, err := os.Stat(banner.dataDir); err != nil || !fi.IsDir() {
		t.Errorf("banner data folder %q: %v", banner.dataDir, err)
	}

	// The banner's platform admin token works on the admin API.
	tok := tokenRE.FindString(banner.raw)
	if tok == "" || !strings.Contains(banner.raw, "http://auth.localhost:"+g.port+"/api/v1") {
		t.Errorf("banner lacks the admin API and its token\n%s", banner.raw)
	}
	if st, _, orgs := g.browser(t).api("GET", "http://auth.localhost:"+g.port+"/api/v1/orgs", nil, "Authorization", "Bearer "+tok); st != 200 || len(orgs["items"].([]any)) != 2 {
		t.Errorf("admin API with the dev token: %d %v", st, orgs)
	}

	// alice: acme has a login domain; the built-in upstream verifies the
	// assertion it gets against the JWKS.
	jwks := "http://auth.localhost:" + g.port + "/.well-known/jwks.json"
	a := g.browser(t)
	p := a.login(banner.appURL, "alice@acme.example", "dev-pass-123")
	body := html.UnescapeString(p.body)
	if p.status != 200 {
		t.Fatalf("alice: %d %s\n%s", p.status, p.url, body)
	}
	for _, want := range []string{
		"<h1>Hello, alice@acme.example</h1>",
		`<p class="ok">Verified against ` + jwks + `.</p>`,
		`"email": "alice@acme.example"`,
		`"org_slug": "acme"`,
		`"aud": "app.localhost"`,
		`"iss": "http://auth.localhost:` + g.port + `"`,
		`"name": "Alice Admin"`,
		"<td>X-Gatehouse-Email</td><td><code>alice@acme.example</code></td>",
		"<td>X-Gatehouse-Roles</td><td><code>admin</code></td>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("alice's page lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(body, "Not verified") {
		t.Errorf("alice's assertion not verified:\n%s", body)
	}

	// carol: globex has no login domain, so discovery on auth.localhost
	// leads to the password form on auth.localhost itself.
	c := g.browser(t)
	start := c.follow(c.get(banner.appURL))
	if !strings.HasPrefix(start.url, "http://auth.localhost:"+g.port+"/.gatehouse/login") {
		t.Fatalf("carol's sign-in starts at %s", start.url)
	}
	form := hidden(start.body)
	form.Set("email", "carol@globex.example")
	disc := c.post(resolve(start.url, field(t, actionRE, start.body)), form)
	disc = c.follow(disc)
	if !strings.HasPrefix(disc.url, "http://auth.localhost:"+g.port+"/") || !strings.Contains(disc.body, `name="password"`) {
		t.Fatalf("carol's password form: %d at %s\n%s", disc.status, disc.url, disc.body)
	}
	c = g.browser(t)
	p = c.login(banner.appURL, "carol@globex.example", "dev-pass-123")
	body = html.UnescapeString(p.body)
	if p.status != 200 {
		t.Fatalf("carol: %d %s\n%s", p.status, p.url, body)
	}
	for _, want := range []string{
		"<h1>Hello, carol@globex.example</h1>",
		`<p class="ok">Verified against ` + jwks + `.</p>`,
		`"email": "carol@globex.example"`,
		`"org_slug": "globex"`,
		"<td>X-Gatehouse-Org-Slug</td><td><code>globex</code></td>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("carol's page lacks %s\n%s", want, body)
		}
	}
	if strings.Contains(body, "alice@acme.example") || strings.Contains(body, `"org_slug": "acme"`) {
		t.Errorf("carol's page shows alice's identity:\n%s", body)
	}

	// Anonymous visitors never reach the demo upstream.
	if p := g.browser(t).get(banner.appURL); p.status != http.StatusFound {
		t.Errorf("anonymous dev app request: %d", p.status)
	}

	// The demo apps are registered and printed: the web app gets alice's
	// tokens by code with PKCE, the service a token of acme.
	webSecret := regexp.MustCompile(`demo-web +web +secret (\S+) redirect http://127\.0\.0\.1:5555/callback`).FindStringSubmatch(banner.raw)
	botSecret := regexp.MustCompile(`demo-service +machine \(org acme\) +secret (\S+)`).FindStringSubmatch(banner.raw)
	if webSecret == nil || botSecret == nil || !strings.Contains(banner.raw, "demo-spa      spa                 redirect http://127.0.0.1:5556/") {
		t.Fatalf("banner lacks the demo apps\n%s", banner.raw)
	}
	web := newRP(t, g, "demo-web", "http://127.0.0.1:5555/callback")
	web.conf.ClientSecret = webSecret[1]
	v := oauth2.GenerateVerifier()
	wtok, err := web.conf.Exchange(web.ctx, web.signIn(a, oauth2.S256ChallengeOption(v)).Get("code"), oauth2.VerifierOption(v))
	if err != nil {
		t.Fatalf("demo-web: %v", err)
	}
	if c := jwtPart(t, wtok.Extra("id_token").(string), 1); c["email"] != "alice@acme.example" || c["org_slug"] != "acme" {
		t.Fatalf("demo-web ID token %v", c)
	}
	cc := clientcredentials.Config{ClientID: "demo-service", ClientSecret: botSecret[1], TokenURL: web.provider.Endpoint().TokenURL, Scopes: []string{"reports.read"}}
	mt, err := cc.Token(web.ctx)
	if err != nil {
		t.Fatalf("demo-service: %v", err)
	}
	if c := jwtPart(t, mt.AccessToken, 1); c["org_slug"] != "acme" || c["aud"] != "https://api.acme.example" {
		t.Fatalf("demo-service token %v", c)
	}
}

func TestDevModeRandomPasswords(t *testing.T) {
	var runs [2]map[string]string
	for i := range runs {
		// An empty GATEHOUSE_DEV_PASSWORD (overriding any inherited one)
		// means: generate.
		g, banner := startDev(t, "GATEHOUSE_DEV_PASSWORD=")
		runs[i] = map[string]string{}
		seen := map[string]bool{}
		for _, email := range []string{"alice@acme.example", "bob@acme.example", "carol@globex.example"} {
			pw := banner.logins[email].password
			if !devPasswordRE.MatchString(pw) {
				t.Fatalf("run %d: %s's password %q is not 16 random base32 characters\n%s", i, email, pw, banner.raw)
			}
			if seen[pw] {
				t.Errorf("run %d: password %q printed for two users", i, pw)
			}
			seen[pw] = true
			runs[i][email] = pw
		}
		if i == 0 {
			// The printed password is the real one.
			p := g.browser(t).login(banner.appURL, "bob@acme.example", runs[i]["bob@acme.example"])
			if body := html.UnescapeString(p.body); p.status != 200 || !strings.Contains(body, "<h1>Hello, bob@acme.example</h1>") {
				t.Fatalf("bob with the printed password: %d\n%s", p.status, body)
			}
		}
		g.stop()
		if g.exitErr != nil {
			t.Errorf("run %d exit: %v", i, g.exitErr)
		}
	}
	for email, pw := range runs[0] {
		if runs[1][email] == pw {
			t.Errorf("%s got the same password %q in two dev runs", email, pw)
		}
	}
}

// `serve --dev --https`: HTTPS out of the box from a local CA, trusted by
// whoever trusts the ca.pem the banner names; the demo app still verifies
// the assertion (over HTTPS to the JWKS).
func TestDevModeHTTPS(t *testing.T) {
	caDir := t.TempDir()
	g, banner := startDevArgs(t, []string{"--https"}, "GATEHOUSE_DEV_PASSWORD=dev-pass-123", "GATEHOUSE_DEV_CA_DIR="+caDir)
	caFile := filepath.Join(caDir, "ca.pem")
	if banner.appURL != "https://app.localhost:"+g.port+"/" || !strings.Contains(banner.raw, "trust "+caFile) {
		t.Fatalf("banner:\n%s", banner.raw)
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, g.addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	// Every served name verifies against the dev CA; others get none.
	for _, host := range []string{"app.localhost", "auth.localhost", "login.acme.localhost"} {
		resp, err := client.Get("https://" + host + ":" + g.port + "/.gatehouse/login")
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		resp.Body.Close()
	}
	if _, err := client.Get("https://random.localhost:" + g.port + "/"); err == nil {
		t.Fatal("a certificate for a name not served")
	}
	// The sign-in works end to end over HTTPS (shared sign-in, Acme's
	// domain, the hand-off to the app), and the demo app verifies the
	// assertion it receives.
	br := g.browser(t)
	br.client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	p := br.login(banner.appURL, "alice@acme.example", "dev-pass-123")
	if p.status != 200 || !strings.Contains(p.body, "Verified against") || !strings.HasPrefix(p.url, "https://app.localhost:") {
		t.Fatalf("after sign-in over HTTPS: %d %s\n%s", p.status, p.url, p.body)
	}
}
