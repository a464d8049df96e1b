package notify

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	xhtml "golang.org/x/net/html"
)

// The HTML part is markup an org writes and Gatehouse sends in the org's
// name: once org admins write templates it is the next phishing channel
// (a form posting elsewhere, a script, a tracking pixel, a javascript:
// link). html/template escapes the fields, not the template's own markup,
// so the rendered part goes through an allow-list (bluemonday) as well:
//   - formatting, lists, tables, links and images, nothing else: no
//     forms, scripts, frames, objects, <style>, <meta> or comments;
//   - no event handlers; styles only from a list of properties whose
//     values are checked (no url(), no expressions);
//   - links only to the org's own hosts over https (or its deployment's
//     own origin, http on a dev setup), and the message's own Link;
//   - images only from Gatehouse's assets (the org's branding) on those
//     hosts: nothing to track who opened the message.

// assetPath: images are Gatehouse's own assets (branding, by hash).
var assetPath = regexp.MustCompile(`^https?://[^/?#@]+/\.gatehouse/assets/[A-Za-z0-9._/-]+$`)

// styleProperties may appear in style attributes; bluemonday checks each
// value with its handler for the property.
var styleProperties = []string{
	"color", "background-color", "font-family", "font-size", "font-style", "font-weight",
	"line-height", "letter-spacing", "text-align", "text-decoration", "text-transform",
	"vertical-align", "white-space", "display",
	"margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
	"padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
	"border", "border-top", "border-right", "border-bottom", "border-left",
	"border-color", "border-style", "border-width", "border-radius", "border-collapse",
	"width", "height", "max-width", "max-height", "min-width", "min-height",
}

var (
	pixels   = regexp.MustCompile(`^[0-9]{1,4}%?$`)
	align    = regexp.MustCompile(`(?i)^(left|center|right|justify)$`)
	hexColor = regexp.MustCompile(`^#[0-9a-fA-F]{3}([0-9a-fA-F]{3})?$`)
	langTag  = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$`)
)

// ownURLs is where a message may link and load images from.
type ownURLs struct {
	link    string          // the message's Link, exactly
	hosts   map[string]bool // the org's own host names, over https
	origins map[string]bool // the deployment's own scheme://host[:port]
}

func ownURLsOf(f Fields) ownURLs {
	o := ownURLs{hosts: map[string]bool{}, origins: map[string]bool{}}
	for _, h := range f.Org.Hosts {
		if h = strings.ToLower(strings.TrimSpace(h)); h != "" {
			o.hosts[h] = true
		}
	}
	for _, s := range []string{f.Org.LoginURL, f.Org.LogoURL} {
		if u, err := url.Parse(s); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" && u.User == nil {
			o.hosts[strings.ToLower(u.Hostname())] = true
			o.origins[u.Scheme+"://"+strings.ToLower(u.Host)] = true
		}
	}
	if u, err := url.Parse(f.Link); err == nil && f.Link != "" {
		o.link = u.String() // as bluemonday will see it
	}
	return o
}

func (o ownURLs) allowed(u *url.URL) bool {
	switch {
	case u.User != nil || u.Host == "":
		return false // "https://login.acme.com@evil.example/" is evil.example
	case o.link != "" && u.String() == o.link:
		return true
	case u.Scheme == "https" && o.hosts[strings.ToLower(u.Hostname())]:
		return true
	}
	return o.origins[u.Scheme+"://"+strings.ToLower(u.Host)]
}

func policyFor(f Fields) *bluemonday.Policy {
	own := ownURLsOf(f)
	p := bluemonday.NewPolicy()
	p.AllowElements("html", "head", "body", "p", "br", "hr", "div", "span", "center",
		"strong", "b", "em", "i", "u", "s", "small", "sub", "sup", "blockquote", "pre", "code",
		"h1", "h2", "h3", "h4", "h5", "h6")
	p.AllowLists()
	p.AllowTables()
	p.AllowAttrs("href").OnElements("a")
	p.AllowAttrs("src").Matching(assetPath).OnElements("img")
	p.AllowAttrs("alt").OnElements("img")
	p.AllowAttrs("width", "height").Matching(pixels).OnElements("img", "table")
	p.AllowAttrs("align").Matching(align).OnElements("p", "div", "img", "h1", "h2", "h3", "h4", "h5", "h6")
	p.AllowAttrs("cellpadding", "cellspacing", "border").Matching(pixels).OnElements("table")
	p.AllowAttrs("bgcolor").Matching(hexColor).OnElements("body", "table", "tr", "td", "th")
	p.AllowAttrs("dir").Matching(regexp.MustCompile(`^(ltr|rtl|auto)$`)).Globally()
	p.AllowAttrs("lang").Matching(langTag).Globally()
	p.AllowStyles(styleProperties...).Globally()
	// Every href and src must parse, be absolute and pass own.allowed:
	// no other scheme (javascript:, data:, mailto:) is listed.
	p.RequireParseableURLs(true)
	p.AllowRelativeURLs(false)
	p.AllowURLSchemeWithCustomPolicy("https", own.allowed)
	p.AllowURLSchemeWithCustomPolicy("http", own.allowed)
	return p
}

// sanitizeHTML passes a rendered HTML part through the allow-list. The
// doctype is dropped by bluemonday (it does not parse one safely) and
// put back as Gatehouse writes it, so mail clients keep standards mode.
func sanitizeHTML(s string, f Fields) (string, error) {
	out := policyFor(f).Sanitize(s)
	if _, ok := cutDoctype(s); ok {
		out = "<!doctype html>" + out
	}
	if len(out) > maxBody {
		return "", fmt.Errorf("notify: html: output larger than %d bytes", maxBody)
	}
	return out, nil
}

func cutDoctype(s string) (string, bool) {
	const dt = "<!doctype html>"
	s = strings.TrimLeft(s, " \t\r\n")
	if len(s) >= len(dt) && strings.EqualFold(s[:len(dt)], dt) {
		return s[len(dt):], true
	}
	return s, false
}

// PreviewCSP is the Content-Security-Policy of an HTML preview (the ops
// listener's and `gatehouse notify preview`'s): nothing runs and nothing
// loads from anywhere; the org's images are inlined as data: URLs.
const PreviewCSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"

// srcAttr finds the image URLs in a sanitized part (bluemonday writes
// every attribute as name="value").
var srcAttr = regexp.MustCompile(`<img src="([^"]*)"`)

// Preview is a sanitized HTML part as a document to open in a browser:
// a CSP <meta> (for a file, which has no headers) right after the
// doctype, and each image that image returns inlined as a data: URL
// (PreviewCSP loads nothing else). image gets the src as written and
// returns the bytes and their type, or ok false to leave the src, which
// the CSP then blocks.
func Preview(html string, image func(src string) (b []byte, ctype string, ok bool)) string {
	body := srcAttr.ReplaceAllStringFunc(html, func(m string) string {
		src := strings.ReplaceAll(srcAttr.FindStringSubmatch(m)[1], "&amp;", "&")
		b, ctype, ok := image(src)
		if !ok || strings.ContainsAny(ctype, `"<>&`) {
			return m
		}
		return `<img src="data:` + ctype + ";base64," + base64.StdEncoding.EncodeToString(b) + `"`
	})
	meta := `<meta http-equiv="Content-Security-Policy" content="` + PreviewCSP + `">`
	if rest, ok := cutDoctype(body); ok {
		return "<!doctype html>" + meta + rest
	}
	return meta + body
}

// Removed renders kind like Render and reports the first piece of markup
// the sanitizer takes out of (or changes in) the HTML part, "" when it
// takes nothing: config validation warns with it, so whoever writes a
// template learns that a link to another site will not be sent, before a
// message goes out without it.
func Removed(kind Kind, t Template, f Fields) (string, error) {
	src := t.HTML
	if strings.TrimSpace(src) == "" {
		src = Default(kind).HTML
	}
	raw, err := renderHTML(src, f)
	if err != nil {
		return "", err
	}
	clean, err := sanitizeHTML(raw, f)
	if err != nil {
		return "", err
	}
	a, b := tokens(raw), tokens(clean)
	for i, tok := range a {
		if i >= len(b) || b[i].key != tok.key {
			s := tok.text
			if len(s) > 80 {
				s = s[:77] + "..."
			}
			return s, nil
		}
	}
	return "", nil
}

type token struct{ key, text string }

// tokens is HTML's markup as a comparable list: tags with their
// attributes decoded and sorted (style spacing ignored), comments and the
// doctype. Text is left out: the sanitizer keeps the text of what it
// removes (or drops it with the script or style around it), and removing
// a tag joins the texts on either side.
func tokens(s string) []token {
	var out []token
	z := xhtml.NewTokenizer(strings.NewReader(s))
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			return out
		}
		t := z.Token()
		switch tt {
		case xhtml.TextToken:
			continue
		case xhtml.DoctypeToken:
			out = append(out, token{"doctype", t.String()})
			continue
		case xhtml.CommentToken:
			out = append(out, token{"comment", "<!--" + t.Data + "-->"})
			continue
		}
		attrs := make([]string, 0, len(t.Attr))
		for _, a := range t.Attr {
			v := a.Val
			if a.Key == "style" {
				v = strings.TrimSuffix(strings.Join(strings.Fields(strings.ReplaceAll(v, ":", ": ")), ""), ";")
			}
			attrs = append(attrs, a.Key+"="+v)
		}
		slices.Sort(attrs)
		out = append(out, token{fmt.Sprint(tt) + ":" + t.Data + " " + strings.Join(attrs, " "), t.String()})
	}
}
