package notify

import (
	"strings"
	"testing"
)

func TestDefaultsRenderEveryKind(t *testing.T) {
	f := Sample("Acme Corp", "acme", "https://login.acme.com/.gatehouse/login")
	f.Org.Support = "IT helpdesk: extension 4242"
	for _, k := range Kinds {
		m, err := Render(k, Template{}, f)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		if !strings.Contains(m.Subject, "Acme Corp") || !strings.Contains(m.Text, "Acme Corp") || !strings.Contains(m.HTML, "<strong>Acme Corp</strong>") && k != MFACode ||
			m.SMS == "" || len(m.SMS) > MaxSMS || strings.Contains(m.Subject, "\n") {
			t.Errorf("%s: %+v", k, m)
		}
	}
	m, _ := Render(MFACode, Template{}, f)
	if !strings.Contains(m.Subject, "428193") || !strings.Contains(m.SMS, "428193") {
		t.Errorf("mfa code: %+v", m)
	}
	m, _ = Render(NewSignIn, Template{}, f)
	if !strings.Contains(m.Text, "26 Nov 2026 09:30 UTC") || !strings.Contains(m.Text, "203.0.113.7") {
		t.Errorf("new sign-in: %s", m.Text)
	}
}

func TestRender(t *testing.T) {
	f := Sample("Acme Corp", "acme", "https://login.acme.com/.gatehouse/login")
	tests := []struct {
		name string
		kind Kind
		tmpl Template
		mod  func(*Fields)
		err  string
		chk  func(t *testing.T, m Message)
	}{
		{name: "org text, default for the rest", kind: Invitation, tmpl: Template{Text: "Join {{.Org.Name}}: {{.Link}}"},
			chk: func(t *testing.T, m Message) {
				if m.Text != "Join Acme Corp: https://login.acme.com/.gatehouse/login?token=EXAMPLE" || !strings.Contains(m.Subject, "invited") {
					t.Errorf("%+v", m)
				}
			}},
		{name: "fields are escaped in HTML", kind: Invitation, mod: func(f *Fields) { f.User.Name = `<script>alert(1)</script>` },
			chk: func(t *testing.T, m Message) {
				if strings.Contains(m.HTML, "<script>") || !strings.Contains(m.HTML, "&lt;script&gt;") {
					t.Errorf("html: %s", m.HTML)
				}
			}},
		{name: "a javascript link is neutralized in HTML", kind: Invitation, mod: func(f *Fields) { f.Link = "javascript:alert(1)" },
			chk: func(t *testing.T, m Message) {
				if strings.Contains(m.HTML, `href="javascript:`) {
					t.Errorf("html: %s", m.HTML)
				}
			}},
		{name: "subject on one line", kind: MFACode, tmpl: Template{Subject: "Code\n{{.Code}}\r\nBcc: x@y"},
			chk: func(t *testing.T, m Message) {
				if strings.ContainsAny(m.Subject, "\r\n") {
					t.Errorf("subject %q", m.Subject)
				}
			}},
		{name: "unknown field", kind: Invitation, tmpl: Template{Text: "{{.Nope}}"}, err: "can't evaluate field Nope"},
		{name: "syntax error", kind: Invitation, tmpl: Template{HTML: "{{if}}"}, err: "html"},
		{name: "SMS too long", kind: MFACode, tmpl: Template{SMS: strings.Repeat("x", 400)}, err: "SMS text"},
		{name: "output too large", kind: Invitation, tmpl: Template{Text: strings.Repeat("{{.Org.Name}}", 8000)}, err: "larger than"},
		{name: "printf widths are refused", kind: Invitation, tmpl: Template{Text: `{{printf "%999999999d" 0}}`}, err: `function "printf" is not allowed`},
		{name: "range cannot loop", kind: Invitation, tmpl: Template{Text: `{{range 1000000000000}}{{end}}`}, err: "range is not allowed"},
		{name: "range in HTML", kind: Invitation, tmpl: Template{HTML: `<p>{{range 9}}x{{end}}</p>`}, err: "html: line 1: range is not allowed"},
		{name: "variables cannot double a string without bound", kind: Invitation,
			tmpl: Template{Subject: `{{$a := "xxxxxxxxxxxxxxxx"}}` + strings.Repeat(`{{$a = print $a $a}}`, 40) + `x`}, err: "print: result longer than 8192 bytes"},
		{name: "nor can nested escapes", kind: Invitation,
			tmpl: Template{Text: `{{$a := "\\\\"}}` + strings.Repeat(`{{$a = js $a}}`, 40)}, err: "js: result longer than 8192 bytes"},
		{name: "nor new variables", kind: Invitation,
			tmpl: Template{Text: `{{$a := "xxxxxxxxxxxxxxxx"}}{{$b := print $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a $a}}{{$c := print $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b}}`}, err: "print: result longer than"},
		{name: "no methods to build strings with", kind: NewSignIn,
			tmpl: Template{Text: `{{$a := "1"}}{{$a = .SignIn.Time.Format $a}}`}, err: "Format"},
		{name: "a time prints as a date", kind: NewSignIn, tmpl: Template{Text: `{{.SignIn.Time}}|{{date .SignIn.Time}}`},
			chk: func(t *testing.T, m Message) {
				if m.Text != "26 Nov 2026 09:30 UTC|26 Nov 2026 09:30 UTC" {
					t.Errorf("text %q", m.Text)
				}
			}},
		{name: "no define", kind: Invitation, tmpl: Template{Text: `{{define "x"}}a{{end}}b`}, err: "define"},
		{name: "no template calls", kind: Invitation, tmpl: Template{Text: `{{template "text"}}`}, err: "template is not allowed"},
		{name: "no call", kind: Invitation, tmpl: Template{Text: `{{call .Org.Name}}`}, err: `"call" is not allowed`},
		{name: "if, with, else and comparisons work", kind: Invitation,
			tmpl: Template{Text: `{{/* c */}}{{if eq .Org.Slug "acme"}}A{{else}}B{{end}}{{with $n := .User.Name}}{{$n}}{{end}}{{len .Code}}{{.Org.Name | html}}`},
			chk: func(t *testing.T, m Message) {
				if m.Text != "ASam Example6Acme Corp" {
					t.Errorf("text %q", m.Text)
				}
			}},
		{name: "empty subject", kind: Invitation, tmpl: Template{Subject: "{{if false}}x{{end}} "}, err: "subject is empty"},
		{name: "blank part uses the default", kind: Invitation, tmpl: Template{Subject: "   "}, err: ""},
		{name: "unknown kind", kind: "fax", err: "unknown message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ff := f
			if tt.mod != nil {
				tt.mod(&ff)
			}
			m, err := Render(tt.kind, tt.tmpl, ff)
			if tt.err != "" || tt.chk == nil {
				if tt.err == "" {
					// An all-blank part falls back to the default.
					if err != nil || !strings.Contains(m.Subject, "invited") {
						t.Fatalf("blank subject: %+v %v", m, err)
					}
					return
				}
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.chk(t, m)
		})
	}
}

// FuzzRender: an org admin's template never panics, never loops, never
// produces more than the limits allow, and its HTML part, sanitized,
// never holds a script, an event handler, a script URL, a form, a frame,
// a style that loads, or a link or image off the org's own URLs.
func FuzzRender(f *testing.F) {
	for _, k := range Kinds {
		d := Default(k)
		f.Add(d.Subject, d.Text, d.HTML)
	}
	f.Add("{{range 9}}{{end}}", "{{template \"x\"}}", "{{define \"a\"}}{{end}}")
	f.Add("{{with $x := .Org}}{{$x.Name}}{{end}}", "{{index .Org.Name 0}}", "<a href='{{.Link}}'>{{.Code | html}}</a>")
	f.Add("s", "t", `<script>alert(1)</script><img src=x onerror=alert(1)><a href="JaVaScRiPt:alert(1)">x</a><form action=https://evil.example><input></form>`)
	f.Add("s", "t", `<p style="background:url(https://evil.example/t.gif)">x</p><iframe src="https://evil.example"></iframe><svg onload=alert(1)>`)
	f.Add("s", "t", `<a href="https://login.acme.com@evil.example/">x</a><img src="https://login.acme.com/.gatehouse/assets/b/a.png"><!--[if mso]>x<![endif]-->`)
	fields := Sample("Acme <&>", "acme", "https://login.acme.com/.gatehouse/login")
	fields.Org.LogoURL = "https://login.acme.com/.gatehouse/assets/b/0123abcd.svg"
	fields.Org.Hosts = []string{"auth.saas.example", "login.acme.com"}
	f.Fuzz(func(t *testing.T, subject, text, html string) {
		m, err := Render(Invitation, Template{Subject: subject, Text: text, HTML: html}, fields)
		if err != nil {
			return
		}
		if m.Subject == "" || len(m.Subject) > MaxSubject || len(m.SMS) > MaxSMS || len(m.Text) > maxBody || len(m.HTML) > maxBody ||
			strings.ContainsAny(m.Subject, "\r\n") {
			t.Fatalf("out of bounds: %+v", m)
		}
		if err := unsafeIn(m.HTML, fields); err != nil {
			t.Fatalf("unsafe HTML (%v) from %q:\n%s", err, html, m.HTML)
		}
	})
}
