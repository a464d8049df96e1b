package config

import (
	"bytes"
	"errors"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const brandingYAML = `public_url: http://auth.localhost:8080
store: { badger: { path: ./data } }
orgs:
  - slug: acme
    name: Acme
    connection: { type: password }
    branding:
`

func pngFile(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 1, 1))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// writeConfig writes files (name → content) and the config into a fresh
// folder and returns the config's path.
func writeConfig(t *testing.T, cfg string, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Branding files are checked by their bytes when the config is loaded
// (`config validate` and `serve` both Load), each refusal with its key
// path.
func TestBrandingFilesByContent(t *testing.T) {
	const html = "<!doctype html><html><body><form action=https://evil.example/><input type=password></form></body></html>"
	const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>`
	tests := []struct {
		name     string
		branding string // the branding mapping's lines
		files    map[string][]byte
		want     []string // problems (key path: part of the message); none means accepted
	}{
		{"real files", "      logo: logo.png\n      favicon: icon.svg\n      font: inter.woff2\n      css: extra.css\n",
			map[string][]byte{"logo.png": pngFile(t), "icon.svg": []byte(svg), "inter.woff2": append([]byte("wOF2"), make([]byte, 40)...), "extra.css": []byte(".card { color: #111 }")}, nil},
		{"an HTML page named .png", "      logo: logo.png\n", map[string][]byte{"logo.png": []byte(html)},
			[]string{`orgs[0].branding.logo: brandasset: "` + "DIR/logo.png" + `" is not a PNG image`}},
		{"a font that is not a font", "      font: inter.woff2\n", map[string][]byte{"inter.woff2": []byte("hello, I am a text file")},
			[]string{`orgs[0].branding.font: brandasset: "DIR/inter.woff2" is not a WOFF2 font`}},
		{"a WOFF named .woff2", "      font: inter.woff2\n", map[string][]byte{"inter.woff2": append([]byte("wOFF"), make([]byte, 40)...)},
			[]string{`orgs[0].branding.font: brandasset: "DIR/inter.woff2" is not a WOFF2 font`}},
		{"an HTML favicon named .svg", "      favicon: icon.svg\n", map[string][]byte{"icon.svg": []byte(html)},
			[]string{`orgs[0].branding.favicon: brandasset: "DIR/icon.svg" is not an SVG image`}},
		{"an SVG with a script", "      logo: logo.svg\n", map[string][]byte{"logo.svg": []byte(`<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>`)},
			[]string{`orgs[0].branding.logo: brandasset: "DIR/logo.svg" is not an SVG image (it has a <script> element`}},
		{"CSS that closes the style and opens a script", "      css: extra.css\n", map[string][]byte{"extra.css": []byte("a{}</style><script>alert(1)</script>")},
			[]string{`orgs[0].branding.css: brandasset: "DIR/extra.css" is not a CSS file (HTML`}},
		{"every file wrong at once", "      logo: a.png\n      favicon: b.ico\n      font: c.otf\n      css: d.css\n",
			map[string][]byte{"a.png": []byte(html), "b.ico": pngFile(t), "c.otf": []byte(html), "d.css": []byte(html)},
			[]string{"orgs[0].branding.logo: ", "orgs[0].branding.favicon: ", "orgs[0].branding.font: ", "orgs[0].branding.css: "}},
		{"a pipe named as a logo (it would block)", "      logo: pipe.png\n", map[string][]byte{}, []string{`orgs[0].branding.logo: brandasset: "DIR/pipe.png" is not a regular file`}},
		{"names are still checked first", "      logo: logo.html\n      font: inter.exe\n", map[string][]byte{"logo.html": []byte(html), "inter.exe": []byte("MZ")},
			[]string{"orgs[0].branding.logo: \"DIR/logo.html\": must be one of .svg, .png, .jpg, .gif, .webp", "orgs[0].branding.font: \"DIR/inter.exe\": must be one of .woff2, .woff, .ttf, .otf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, brandingYAML+tt.branding, tt.files)
			dir := filepath.Dir(path)
			if strings.Contains(tt.branding, "pipe.png") {
				if err := syscall.Mkfifo(filepath.Join(dir, "pipe.png"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(path)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if got := c.Orgs[0].Branding.Logo; got != filepath.Join(dir, "logo.png") {
					t.Errorf("logo = %q", got)
				}
				return
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v, want *Errors", err)
			}
			if len(errs.Problems) != len(tt.want) {
				t.Errorf("%d problems, want %d:\n%v", len(errs.Problems), len(tt.want), err)
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "DIR", dir); !strings.Contains(err.Error(), w) {
					t.Errorf("missing %q in\n%v", w, err)
				}
			}
		})
	}
}

// Relative branding file names are relative to the config file's folder,
// wherever Gatehouse is started; absolute ones stay as they are.
func TestBrandingPathsRelativeToConfigFile(t *testing.T) {
	png := pngFile(t)
	elsewhere := t.TempDir()
	if err := os.WriteFile(filepath.Join(elsewhere, "abs.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	// The working directory has files of the same names that are not
	// images: the old reading (relative to it) would refuse them.
	cwd := t.TempDir()
	for _, name := range []string{"logo.png", "brand/icon.png"} {
		os.MkdirAll(filepath.Join(cwd, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(cwd, name), []byte("<html>not this one</html>"), 0o644)
	}
	t.Chdir(cwd)
	tests := []struct {
		name, branding string
		files          map[string][]byte
		logo, favicon  string // want, relative to the config's folder unless absolute
		err            string
	}{
		{"beside the config", "      logo: logo.png\n", map[string][]byte{"logo.png": png}, "logo.png", "", ""},
		{"in a subfolder", "      logo: brand/logo.png\n      favicon: ./brand/icon.png\n",
			map[string][]byte{"brand/logo.png": png, "brand/icon.png": png}, "brand/logo.png", "brand/icon.png", ""},
		{"in a sibling folder", "      logo: ../shared/logo.png\n", map[string][]byte{"../shared/logo.png": png}, "../shared/logo.png", "", ""},
		{"absolute", "      logo: " + filepath.Join(elsewhere, "abs.png") + "\n", nil, filepath.Join(elsewhere, "abs.png"), "", ""},
		{"only in the working directory", "      favicon: brand/icon.png\n", nil, "", "", `orgs[0].branding.favicon: file "DIR/brand/icon.png" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Files outside the config's folder ("../shared") go into a
			// parent made for this case.
			root := t.TempDir()
			cfgDir := filepath.Join(root, "etc")
			for name, b := range tt.files {
				p := filepath.Join(cfgDir, name)
				os.MkdirAll(filepath.Dir(p), 0o755)
				if err := os.WriteFile(p, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			os.MkdirAll(cfgDir, 0o755)
			path := filepath.Join(cfgDir, "gatehouse.yaml")
			if err := os.WriteFile(path, []byte(brandingYAML+tt.branding), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if tt.err != "" {
				if want := strings.ReplaceAll(tt.err, "DIR", cfgDir); err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("err = %v, want %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			abs := func(p string) string {
				if p == "" || filepath.IsAbs(p) {
					return p
				}
				return filepath.Join(cfgDir, p)
			}
			if b := c.Orgs[0].Branding; b.Logo != abs(tt.logo) || b.Favicon != abs(tt.favicon) {
				t.Errorf("logo %q favicon %q, want %q %q", b.Logo, b.Favicon, abs(tt.logo), abs(tt.favicon))
			}
		})
	}
}

// Branding texts and message templates are shown to the public: ${...}
// there never reads the environment, while the rest of the file still
// takes its secrets from it.
func TestPublicTextsDoNotReadTheEnvironment(t *testing.T) {
	const secret = "s3cr3t-value"
	getenv := func(k string) (string, bool) {
		if k == "SECRET" || k == "ADMIN_PASSWORD" {
			return secret, true
		}
		return "", false
	}
	base := "public_url: http://auth.localhost:8080\nstore: { badger: { path: ./data } }\norgs:\n  - slug: acme\n    name: Acme\n    connection: { type: password }\n" +
		"    users: [{ email: a@acme.example, password: \"${ADMIN_PASSWORD}\" }]\n"
	tests := []struct {
		name, yaml string
		path       string // the refused key; "" means accepted
		check      func(t *testing.T, c *Config)
	}{
		{"heading", "    branding: { texts: { heading: \"Hi ${SECRET}\" } }\n", "orgs[0].branding.texts.heading", nil},
		{"intro with a default", "    branding: { texts: { intro: \"${SECRET:-hello}\" } }\n", "orgs[0].branding.texts.intro", nil},
		{"footer", "    branding: { texts: { footer: \"${SECRET}\" } }\n", "orgs[0].branding.texts.footer", nil},
		{"notification subject", "    notifications: { invitation: { subject: \"x ${SECRET}\" } }\n", "orgs[0].notifications.invitation.subject", nil},
		{"notification text", "    notifications: { password_reset: { text: \"${SECRET} {{.Link}}\" } }\n", "orgs[0].notifications.password_reset.text", nil},
		{"notification html", "    notifications: { new_sign_in: { html: \"<p>${SECRET}</p>\" } }\n", "orgs[0].notifications.new_sign_in.html", nil},
		{"notification sms", "    notifications: { mfa_code: { sms: \"{{.Code}} ${SECRET}\" } }\n", "orgs[0].notifications.mfa_code.sms", nil},
		{"a literal ${ in a text", "    branding: { texts: { footer: \"Price: $${PRICE}\" } }\n", "", func(t *testing.T, c *Config) {
			if got := c.Orgs[0].Branding.Texts.Footer; got != "Price: ${PRICE}" {
				t.Errorf("footer %q", got)
			}
		}},
		{"a literal ${ in a template", "    notifications: { invitation: { text: \"$${X} {{.Link}}\" } }\n", "", func(t *testing.T, c *Config) {
			if got := c.Orgs[0].Notifications["invitation"].Text; got != "${X} {{.Link}}" {
				t.Errorf("text %q", got)
			}
		}},
		{"secrets elsewhere still expand", "    branding: { texts: { heading: Welcome } }\n", "", func(t *testing.T, c *Config) {
			if got := c.Orgs[0].Users[0].Password; got != secret {
				t.Errorf("password %q", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tt.yaml), "g.yaml", getenv)
			if tt.path == "" {
				if err != nil {
					t.Fatal(err)
				}
				tt.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", c.Orgs[0])
			}
			if !strings.Contains(err.Error(), tt.path+`: environment variable reference "${SECRET`) || !strings.Contains(err.Error(), "never reads the environment") {
				t.Errorf("err = %v, want a refusal at %s", err, tt.path)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the secret is in the message: %v", err)
			}
		})
	}
}

// A template whose HTML loses markup to the sanitizer loads, with a
// warning at its key path naming what goes.
func TestNotificationHTMLSanitizerWarnings(t *testing.T) {
	base := "public_url: https://auth.saas.example\nstore: { badger: { path: ./data } }\norgs:\n  - slug: acme\n    name: Acme\n    login_domain: login.acme.com\n    connection: { type: password }\n    notifications:\n"
	tests := []struct{ name, yaml, want string }{
		{"a link to another site", "      invitation: { html: '<p><a href=\"https://acme.com/help\">help</a></p>' }\n",
			`orgs[0].notifications.invitation.html: <a href="https://acme.com/help"> is removed when the message is sent`},
		{"a form", "      password_reset: { html: '<form action=\"https://evil.example/\"><input name=p></form>' }\n",
			`orgs[0].notifications.password_reset.html: <form action="https://evil.example/"> is removed`},
		{"a script", "      new_sign_in: { html: '<p>x</p><script>alert(1)</script>' }\n", `orgs[0].notifications.new_sign_in.html: <script> is removed`},
		{"links to the org's own hosts", "      invitation: { html: '<a href=\"https://login.acme.com/x\">a</a><a href=\"https://auth.saas.example/y\">b</a><a href=\"{{.Link}}\">c</a>' }\n", ""},
		{"no HTML of its own", "      invitation: { text: 'Join {{.Link}}' }\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(base+tt.yaml), "g.yaml", testEnv)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range c.Warnings {
				got = append(got, w.Path+": "+w.Msg)
			}
			if tt.want == "" && len(got) != 0 || tt.want != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tt.want)) {
				t.Fatalf("warnings %q, want %q", got, tt.want)
			}
		})
	}
}
