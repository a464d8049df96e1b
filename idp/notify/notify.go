// Package notify renders the messages Gatehouse sends people on an org's
// behalf: invitations, password resets, MFA codes and new sign-in alerts,
// each with a subject, a text part, an HTML part and an SMS text, from
// the org's own templates or safe defaults. Sending them belongs to
// delegated administration; this package only renders and previews.
package notify

import (
	"bytes"
	"embed"
	"fmt"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"text/template/parse"
	"time"
)

// Kind names a message.
type Kind string

const (
	Invitation    Kind = "invitation"
	PasswordReset Kind = "password_reset"
	MFACode       Kind = "mfa_code"
	NewSignIn     Kind = "new_sign_in"
)

// Kinds are every message, in a stable order.
var Kinds = []Kind{Invitation, PasswordReset, MFACode, NewSignIn}

// Fields are what templates may use (documented in docs/branding.md).
type Fields struct {
	Org  Org
	User User
	// Link is the invitation or password-reset link.
	Link string
	// Code is the MFA code.
	Code string
	// Expires is how long Link or Code works, in words ("15 minutes").
	Expires string
	// SignIn describes the sign-in a new_sign_in alert is about.
	SignIn SignIn
}

// Org is the org a message is sent for.
type Org struct {
	Name, Slug string
	// LoginURL is the org's sign-in page; LogoURL its logo, if any.
	LoginURL, LogoURL string
	// Support is the org's footer line (branding texts.footer).
	Support string
	// Hosts are the org's own host names (its login domain, the public
	// URL's host): the HTML part may link to them over https and show
	// Gatehouse's assets from them, besides LoginURL's and LogoURL's
	// origins and Link. Anything else is removed (see sanitize.go).
	Hosts []string
}

// User is the person a message is sent to.
type User struct{ Name, Email string }

// SignIn is the sign-in a new_sign_in alert reports.
type SignIn struct {
	Time                  Time
	ClientAddr, UserAgent string
}

// Time is an instant a template can print (as is, or with date) but not
// compute with: time.Time's methods (Format with a template-made layout,
// say) would let a template build strings without bound.
type Time struct{ t time.Time }

// At is t as a template field.
func At(t time.Time) Time { return Time{t} }

// String is how a template prints it: "26 Nov 2026 09:30 UTC".
func (t Time) String() string { return t.t.UTC().Format("2 Jan 2006 15:04 UTC") }

// Template is one message's parts as Go templates; an empty part uses the
// default.
type Template struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
	SMS     string `json:"sms,omitempty"`
}

// Inherit fills each blank part of own from the nearest ancestor that
// has it (ancestors nearest first); parts blank everywhere render with
// the defaults.
func Inherit(own Template, ancestors ...Template) Template {
	fill := func(p *string, a string) {
		if strings.TrimSpace(*p) == "" {
			*p = a
		}
	}
	for _, a := range ancestors {
		fill(&own.Subject, a.Subject)
		fill(&own.Text, a.Text)
		fill(&own.HTML, a.HTML)
		fill(&own.SMS, a.SMS)
	}
	return own
}

// Message is a rendered message.
type Message struct {
	Subject, Text, HTML, SMS string
}

// Limits on what a template may produce.
const (
	MaxSubject = 200
	MaxSMS     = 320 // two SMS segments
	maxBody    = 64 << 10
)

//go:embed defaults/*.tmpl
var defaultsFS embed.FS

// Default is Gatehouse's own template for kind.
func Default(kind Kind) Template {
	read := func(part string) string {
		b, err := defaultsFS.ReadFile("defaults/" + string(kind) + "." + part + ".tmpl")
		if err != nil {
			return ""
		}
		return string(b)
	}
	return Template{Subject: strings.TrimSpace(read("subject")), Text: read("text"), HTML: read("html"), SMS: strings.TrimSpace(read("sms"))}
}

// maxValue bounds any string a function returns inside a template.
// Output is bounded by limitedBuffer, but values built in variables are
// not: {{$b := print $a $a}} line after line doubles a string each time,
// and so do nested js escapes. No field comes near this.
const maxValue = 8 << 10

// capped wraps a string function so that its result is refused past
// maxValue.
func capped(name string, f func(...any) string) func(...any) (string, error) {
	return func(args ...any) (string, error) {
		for _, a := range args {
			if s, ok := a.(string); ok && len(s) > maxValue {
				return "", fmt.Errorf("%s: argument longer than %d bytes", name, maxValue)
			}
		}
		out := f(args...)
		if len(out) > maxValue {
			return "", fmt.Errorf("%s: result longer than %d bytes", name, maxValue)
		}
		return out, nil
	}
}

var funcs = map[string]any{
	"date":     func(t Time) string { return t.String() },
	"print":    capped("print", fmt.Sprint),
	"html":     capped("html", texttemplate.HTMLEscaper),
	"js":       capped("js", texttemplate.JSEscaper),
	"urlquery": capped("urlquery", texttemplate.URLQueryEscaper),
}

// Render renders kind for f with t's parts, or the defaults where t has
// none. HTML parts are html/template (every field escaped for HTML),
// then sanitized with an allow-list (sanitize.go); the others
// text/template.
func Render(kind Kind, t Template, f Fields) (Message, error) {
	d := Default(kind)
	if d.Text == "" {
		return Message{}, fmt.Errorf("notify: unknown message %q", kind)
	}
	pick := func(own, def string) string {
		if strings.TrimSpace(own) != "" {
			return own
		}
		return def
	}
	var m Message
	var err error
	if m.Subject, err = renderText("subject", pick(t.Subject, d.Subject), f); err != nil {
		return Message{}, err
	}
	m.Subject = strings.Join(strings.Fields(m.Subject), " ") // one line, always
	if m.Text, err = renderText("text", pick(t.Text, d.Text), f); err != nil {
		return Message{}, err
	}
	if m.SMS, err = renderText("sms", pick(t.SMS, d.SMS), f); err != nil {
		return Message{}, err
	}
	m.SMS = strings.TrimSpace(m.SMS)
	if m.HTML, err = renderHTML(pick(t.HTML, d.HTML), f); err != nil {
		return Message{}, err
	}
	if m.HTML, err = sanitizeHTML(m.HTML, f); err != nil {
		return Message{}, err
	}
	switch {
	case m.Subject == "":
		return Message{}, fmt.Errorf("notify: %s: the subject is empty", kind)
	case len(m.Subject) > MaxSubject:
		return Message{}, fmt.Errorf("notify: %s: the subject is %d characters, at most %d", kind, len(m.Subject), MaxSubject)
	case len(m.SMS) > MaxSMS:
		return Message{}, fmt.Errorf("notify: %s: the SMS text is %d characters, at most %d", kind, len(m.SMS), MaxSMS)
	}
	return m, nil
}

func renderText(part, src string, f Fields) (string, error) {
	t, err := texttemplate.New(part).Funcs(funcs).Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("notify: %s: %w", part, err)
	}
	if err := checkTree(t); err != nil {
		return "", fmt.Errorf("notify: %s: %w", part, err)
	}
	var b limitedBuffer
	if err := t.Execute(&b, f); err != nil {
		return "", fmt.Errorf("notify: %s: %w", part, err)
	}
	return b.String(), nil
}

func renderHTML(src string, f Fields) (string, error) {
	// The same syntax parsed as text first, to check what it may do
	// before html/template adds its escapers.
	tt, err := texttemplate.New("html").Funcs(funcs).Parse(src)
	if err == nil {
		err = checkTree(tt)
	}
	if err != nil {
		return "", fmt.Errorf("notify: html: %w", err)
	}
	t, err := htmltemplate.New("html").Funcs(funcs).Option("missingkey=error").Parse(src)
	if err != nil {
		return "", fmt.Errorf("notify: html: %w", err)
	}
	var b limitedBuffer
	if err := t.Execute(&b, f); err != nil {
		return "", fmt.Errorf("notify: html: %w", err)
	}
	return b.String(), nil
}

// allowedFuncs are the functions a template may call. Org admins will
// write these templates, so nothing may loop (range over an integer),
// allocate without bound before writing (printf widths), call functions
// or define templates: rendering stays linear in the template's size.
var allowedFuncs = map[string]bool{
	"date": true, "and": true, "or": true, "not": true, "eq": true, "ne": true,
	"lt": true, "le": true, "gt": true, "ge": true, "len": true, "index": true,
	"print": true, "html": true, "urlquery": true, "js": true,
}

func checkTree(t *texttemplate.Template) error {
	if len(t.Templates()) > 1 {
		return fmt.Errorf("define and block are not allowed")
	}
	if t.Tree == nil {
		return nil
	}
	return checkNode(t.Tree.Root)
}

func checkNode(n parse.Node) error {
	switch n := n.(type) {
	case nil:
		return nil
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := checkNode(c); err != nil {
				return err
			}
		}
	case *parse.TextNode, *parse.CommentNode, *parse.FieldNode, *parse.VariableNode, *parse.DotNode,
		*parse.NilNode, *parse.BoolNode, *parse.NumberNode, *parse.StringNode:
	case *parse.ActionNode:
		return checkNode(n.Pipe)
	case *parse.IfNode:
		return checkBranch(&n.BranchNode)
	case *parse.WithNode:
		return checkBranch(&n.BranchNode)
	case *parse.PipeNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Cmds {
			if err := checkNode(c); err != nil {
				return err
			}
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			if err := checkNode(a); err != nil {
				return err
			}
		}
	case *parse.ChainNode:
		return checkNode(n.Node)
	case *parse.IdentifierNode:
		if !allowedFuncs[n.Ident] {
			return fmt.Errorf("function %q is not allowed", n.Ident)
		}
	case *parse.RangeNode:
		return fmt.Errorf("line %d: range is not allowed", n.Line)
	case *parse.TemplateNode:
		return fmt.Errorf("line %d: template is not allowed", n.Line)
	default:
		return fmt.Errorf("%s is not allowed", n)
	}
	return nil
}

func checkBranch(b *parse.BranchNode) error {
	for _, c := range []parse.Node{b.Pipe, b.List, b.ElseList} {
		if err := checkNode(c); err != nil {
			return err
		}
	}
	return nil
}

// limitedBuffer refuses output past maxBody, so no template can make a
// message of unbounded size.
type limitedBuffer struct{ bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.Len()+len(p) > maxBody {
		return 0, fmt.Errorf("output larger than %d bytes", maxBody)
	}
	return l.Buffer.Write(p)
}

// SampleExpiry is how long a sample message's link or code works: what
// Gatehouse will use for each kind.
func SampleExpiry(kind Kind) string {
	switch kind {
	case Invitation:
		return "7 days"
	case PasswordReset:
		return "1 hour"
	}
	return "10 minutes"
}

// Sample is the fields a preview (and config validation) renders with.
func Sample(orgName, orgSlug, loginURL string) Fields {
	var f Fields
	f.Org.Name, f.Org.Slug, f.Org.LoginURL = orgName, orgSlug, loginURL
	f.User.Name, f.User.Email = "Sam Example", "sam@example.com"
	sep := "?"
	if strings.Contains(loginURL, "?") {
		sep = "&"
	}
	f.Link = loginURL + sep + "token=EXAMPLE"
	f.Code = "428193"
	f.Expires = "15 minutes"
	f.SignIn.Time = At(time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC))
	f.SignIn.ClientAddr, f.SignIn.UserAgent = "203.0.113.7", "Mozilla/5.0 (X11; Linux x86_64) Firefox/150.0"
	return f
}
