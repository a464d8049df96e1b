// Package notifycli implements `gatehouse notify preview`: an org's
// messages rendered from a config file with sample fields, so whoever
// writes the templates sees what people will receive.
package notifycli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/brandasset"
	"github.com/gatehouse/gatehouse/internal/web"
)

// Parts a preview can show.
var parts = []string{"subject", "text", "html", "sms"}

// Preview renders the messages of one org of a config file.
func Preview(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("notify preview", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "config file")
	slug := fs.String("org", "", "org slug")
	kind := fs.String("kind", "", "one message (invitation, password_reset, mfa_code, new_sign_in); default all")
	part := fs.String("part", "", "one part (subject, text, html, sms); default all")
	out := fs.String("out", "", "write each part to a file in this folder instead of printing")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || *slug == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "usage: gatehouse notify preview --config FILE --org SLUG [--kind K] [--part P] [--out DIR]")
		return 2
	}
	kinds := notify.Kinds
	if *kind != "" {
		if !slices.Contains(notify.Kinds, notify.Kind(*kind)) {
			fmt.Fprintf(stderr, "gatehouse notify preview: unknown message %q (invitation, password_reset, mfa_code or new_sign_in)\n", *kind)
			return 2
		}
		kinds = []notify.Kind{notify.Kind(*kind)}
	}
	if *part != "" && !slices.Contains(parts, *part) {
		fmt.Fprintf(stderr, "gatehouse notify preview: unknown part %q (subject, text, html or sms)\n", *part)
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	r, err := Render(cfg, *slug, kinds)
	if err != nil {
		fmt.Fprintf(stderr, "gatehouse notify preview: %v\n", err)
		return 1
	}
	if *out != "" {
		if err := os.MkdirAll(*out, 0o755); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
	}
	for i, k := range kinds {
		m := r.Messages[i]
		for _, p := range parts {
			if *part != "" && p != *part {
				continue
			}
			body := map[string]string{"subject": m.Subject, "text": m.Text, "html": m.HTML, "sms": m.SMS}[p]
			if p == "html" && (*out != "" || *part != "" && len(kinds) == 1) {
				// A document someone opens in a browser: it gets a CSP
				// that loads and runs nothing, and the logo inlined. The
				// listing of every part shows the part as sent.
				body = notify.Preview(body, r.image)
			}
			if *out != "" {
				name := filepath.Join(*out, string(k)+"."+map[string]string{"subject": "subject.txt", "text": "txt", "html": "html", "sms": "sms.txt"}[p])
				if err := os.WriteFile(name, []byte(body), 0o644); err != nil {
					fmt.Fprintln(stderr, err)
					return 1
				}
				fmt.Fprintln(stdout, name)
				continue
			}
			if *part != "" && len(kinds) == 1 {
				fmt.Fprint(stdout, body)
				if !strings.HasSuffix(body, "\n") {
					fmt.Fprintln(stdout)
				}
				continue
			}
			fmt.Fprintf(stdout, "==> %s %s <==\n%s", k, p, body)
			if !strings.HasSuffix(body, "\n") {
				fmt.Fprintln(stdout)
			}
			fmt.Fprintln(stdout)
		}
	}
	return 0
}

// Rendered is an org's messages and the logo they may show.
type Rendered struct {
	Messages          []notify.Message
	logoURL, logoType string
	logo              []byte
}

// image is the org's logo for its URL in a message, for notify.Preview to
// inline.
func (r *Rendered) image(src string) ([]byte, string, bool) {
	if r.logoURL == "" || src != r.logoURL {
		return nil, "", false
	}
	return r.logo, r.logoType, true
}

// Render renders kinds for the org slug of cfg with sample fields: the
// org's templates, part by part inherited from its ancestors, then
// Gatehouse's defaults.
func Render(cfg *config.Config, slug string, kinds []notify.Kind) (*Rendered, error) {
	chain, err := ancestry(cfg, slug)
	if err != nil {
		return nil, err
	}
	org := chain[0]
	r := &Rendered{}
	f := notify.Sample(org.Name, org.Slug, loginURL(cfg, org))
	// The org's own hosts, as the server names them (idp.Message).
	if u, err := url.Parse(cfg.PublicURL); err == nil {
		f.Org.Hosts = append(f.Org.Hosts, u.Hostname())
	}
	if org.LoginDomain != "" {
		f.Org.Hosts = append(f.Org.Hosts, strings.ToLower(org.LoginDomain))
	}
	for _, o := range chain {
		if o.Branding == nil {
			continue
		}
		// The nearest branding dresses the message, as it does the pages.
		f.Org.Support = o.Branding.Texts.Footer
		if o.Branding.Logo != "" {
			b, err := brandasset.ReadFile("logo", o.Branding.Logo)
			if err != nil {
				return nil, fmt.Errorf("org %s: logo: %w", o.Slug, err)
			}
			ext := strings.ToLower(filepath.Ext(o.Branding.Logo))
			f.Org.LogoURL = publicBase(cfg, org) + web.BrandPrefix + web.AssetName(b, ext)
			r.logoURL, r.logo, r.logoType = f.Org.LogoURL, b, brandasset.Type(ext)
		}
		break
	}
	for _, k := range kinds {
		own := notify.Template(org.Notifications[string(k)])
		var up []notify.Template
		for _, a := range chain[1:] {
			up = append(up, notify.Template(a.Notifications[string(k)]))
		}
		f.Expires = notify.SampleExpiry(k)
		m, err := notify.Render(k, notify.Inherit(own, up...), f)
		if err != nil {
			return nil, fmt.Errorf("org %s: %w", slug, err)
		}
		r.Messages = append(r.Messages, m)
	}
	return r, nil
}

// ancestry is the org and its ancestors, nearest first.
func ancestry(cfg *config.Config, slug string) ([]config.Org, error) {
	bySlug := map[string]config.Org{}
	for _, o := range cfg.Orgs {
		bySlug[o.Slug] = o
	}
	var chain []config.Org
	for s := slug; s != ""; {
		o, ok := bySlug[s]
		if !ok {
			if s == slug {
				return nil, fmt.Errorf("no org %q in the config", slug)
			}
			return nil, fmt.Errorf("org %s: parent %q is not in the config", chain[len(chain)-1].Slug, s)
		}
		if len(chain) > len(cfg.Orgs) {
			return nil, errors.New("org parents form a cycle")
		}
		chain = append(chain, o)
		s = o.Parent
	}
	return chain, nil
}

// publicBase is the scheme and host an org's people reach Gatehouse on:
// its login domain when it has one, with the public URL's port.
func publicBase(cfg *config.Config, o config.Org) string {
	u, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return cfg.PublicURL
	}
	if o.LoginDomain != "" {
		if p := u.Port(); p != "" {
			u.Host = net.JoinHostPort(strings.ToLower(o.LoginDomain), p)
		} else {
			u.Host = strings.ToLower(o.LoginDomain)
		}
	}
	return u.Scheme + "://" + u.Host
}

func loginURL(cfg *config.Config, o config.Org) string {
	u := publicBase(cfg, o) + "/.gatehouse/login"
	if o.LoginDomain == "" {
		u += "?org=" + url.QueryEscape(o.Slug)
	}
	return u
}
