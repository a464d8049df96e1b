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
)

const notifyConfig = `
public_url: http://auth.localhost:{{PORT}}
listen: 127.0.0.1:{{PORT}}
ops_listen: {{OPS}}
store:
  badger: { path: {{DATA}} }
routes:
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
	resp, body = get("/notifications/acme/invitation?part=html")
	if resp.Header.Get("Content-Type") != "text/html; charset=utf-8" || !strings.HasPrefix(resp.Header.Get("Content-Security-Policy"), "sandbox;") ||
		!strings.Contains(body, `href="http://login.acme.localhost:`+g.port+`/.gatehouse/login?token=EXAMPLE"`) {
		t.Errorf("html part: %v %s", resp.Header, body)
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
	for file, want := range map[string]string{"invitation.subject.txt": m["subject"], "invitation.txt": m["text"], "invitation.html": m["html"], "invitation.sms.txt": m["sms"]} {
		b, err := os.ReadFile(filepath.Join(outDir, file))
		if err != nil || string(b) != want {
			t.Errorf("%s: %v\n got %q\nwant %q", file, err, b, want)
		}
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
