package admin

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/apply"
	"github.com/gatehouse/gatehouse/internal/brandasset"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// BrandingView is an org's own branding: its files (as the URLs they are
// served at), colors and texts. Empty: its parent's, or Gatehouse's.
type BrandingView struct {
	Logo      string            `json:"logo"`
	Favicon   string            `json:"favicon"`
	Font      string            `json:"font"`
	CSS       string            `json:"css"`
	Colors    store.BrandColors `json:"colors"`
	Texts     BrandTexts        `json:"texts"`
	ManagedBy string            `json:"managed_by"`
	// Warnings are what an update found questionable but kept (contrast
	// below WCAG AA).
	Warnings []string `json:"warnings,omitempty"`
}

// BrandTexts are the sign-in page's texts.
type BrandTexts struct {
	Heading string `json:"heading"`
	Intro   string `json:"intro"`
	Footer  string `json:"footer"`
}

type brandingPatch struct {
	Colors *store.BrandColors `json:"colors"`
	Texts  *BrandTexts        `json:"texts"`
}

func assetURL(name string) string {
	if name == "" {
		return ""
	}
	return web.BrandPrefix + name
}

func brandingView(o store.Org) BrandingView {
	v := BrandingView{ManagedBy: managedBy(o.Declared)}
	if b := o.Branding; b != nil {
		v.Logo, v.Favicon, v.Font, v.CSS = assetURL(b.Logo), assetURL(b.Favicon), assetURL(b.Font), assetURL(b.CustomCSS)
		v.Colors, v.Texts = b.Colors, BrandTexts{Heading: b.Heading, Intro: b.Intro, Footer: b.Footer}
	}
	return v
}

func (a *API) getBranding(c *call) error {
	return c.replyETag(http.StatusOK, brandingView(*c.org), etagOf(c.org.Branding))
}

var hexColor = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// updateBranding changes the org's colors and texts (a merge: "" clears
// one), checked as the config file's are.
func (a *API) updateBranding(c *call) error {
	var in brandingPatch
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	var warnings []string
	if in.Colors != nil {
		for _, p := range []struct{ k, v string }{{"primary", in.Colors.Primary}, {"background", in.Colors.Background}, {"text", in.Colors.Text}} {
			if p.v != "" && !hexColor.MatchString(p.v) {
				errs.add("/colors/"+p.k, "use #rrggbb")
			}
		}
	}
	if in.Texts != nil {
		for _, p := range []struct{ k, v string }{{"heading", in.Texts.Heading}, {"intro", in.Texts.Intro}, {"footer", in.Texts.Footer}} {
			if msg := config.TextProblem(p.v, 500); msg != "" {
				errs.add("/texts/"+p.k, "%s", msg)
			}
		}
	}
	if err := errs.err(); err != nil {
		return err
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s branding")
	}
	if err := c.precondition(etagOf(c.org.Branding)); err != nil {
		return err
	}
	b := brandingOf(*c.org)
	if in.Colors != nil {
		b.Colors = store.BrandColors{Primary: strings.ToLower(in.Colors.Primary), Background: strings.ToLower(in.Colors.Background), Text: strings.ToLower(in.Colors.Text)}
		// WCAG 2.x AA asks 4.5:1 for normal text: said, not refused.
		pair := func(fg, bg, what string) {
			if fg != "" && bg != "" {
				if r := config.ContrastRatio(fg, bg); r < 4.5 {
					warnings = append(warnings, fmt.Sprintf("%s has a contrast of %.2f:1, below WCAG AA's 4.5:1", what, r))
				}
			}
		}
		pair(b.Colors.Text, "#ffffff", "text on the white card")
		pair("#ffffff", b.Colors.Primary, "white button text on primary")
	}
	if in.Texts != nil {
		b.Heading, b.Intro, b.Footer = in.Texts.Heading, in.Texts.Intro, in.Texts.Footer
	}
	o, err := a.saveBranding(c, b, "branding.update", "colors and texts")
	if err != nil {
		return err
	}
	v := brandingView(o)
	v.Warnings = warnings
	return c.replyETag(http.StatusOK, v, etagOf(o.Branding))
}

// brandingOf is a copy of the org's own branding to change.
func brandingOf(o store.Org) store.Branding {
	if o.Branding == nil {
		return store.Branding{}
	}
	return *o.Branding
}

// saveBranding composes the stylesheet and stores b (nil when nothing is
// left of it: the parent's branding applies).
func (a *API) saveBranding(c *call, b store.Branding, action, what string) (store.Org, error) {
	if err := apply.ComposeBrandCSS(c.ctx(), a.o.Store, &b); err != nil {
		return store.Org{}, fmt.Errorf("admin: branding: %w", err)
	}
	nb := &b
	if b == (store.Branding{}) {
		nb = nil
	}
	before := c.org.Branding
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		if o.Declared {
			return o, c.declared("Org " + o.Slug + "'s branding")
		}
		if etagOf(o.Branding) != etagOf(before) {
			return o, &Problem{Status: http.StatusPreconditionFailed, Code: "changed", Detail: "The branding changed meanwhile: read it again, then apply your change."}
		}
		o.Branding, o.UpdatedAt = nb, a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return o, err
	}
	c.record(o.ID, action, o.ID, "success", map[string]string{"changed": what})
	return o, nil
}

// contentExt maps an upload's media type to the extension brandasset
// checks it as.
var contentExt = map[string]string{
	"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif", "image/webp": ".webp", "image/svg+xml": ".svg",
	"image/x-icon": ".ico", "image/vnd.microsoft.icon": ".ico",
	"font/woff2": ".woff2", "font/woff": ".woff", "font/ttf": ".ttf", "font/otf": ".otf", "text/css": ".css",
}

// putAsset uploads one branding file (logo, favicon, font, css): the body
// is the file, its Content-Type its format; it is checked by its bytes as
// the config file's are, stored content-addressed, and in use at once.
func (a *API) putAsset(c *call) error {
	key := c.r.PathValue("asset")
	var spec brandasset.Spec
	if i := slices.IndexFunc(brandasset.Files, func(s brandasset.Spec) bool { return s.Key == key }); i >= 0 {
		spec = brandasset.Files[i]
	} else {
		return notFound("branding file (logo, favicon, font, css)")
	}
	mt, _, _ := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	ext, ok := contentExt[mt]
	if !ok || !slices.Contains(spec.Exts, ext) {
		return &Problem{Status: http.StatusUnsupportedMediaType, Code: "unsupported-media-type",
			Detail: fmt.Sprintf("A %s is one of %s; send it with its Content-Type.", key, strings.Join(spec.Exts, ", "))}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, spec.Max))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Problem{Status: http.StatusRequestEntityTooLarge, Code: "too-large", Detail: fmt.Sprintf("A %s is at most %d bytes.", key, spec.Max)}
		}
		return &Problem{Status: http.StatusBadRequest, Code: "malformed", Detail: "The body could not be read."}
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s branding")
	}
	if err := c.precondition(etagOf(c.org.Branding)); err != nil {
		return err
	}
	name, err := apply.PutBrandAsset(c.ctx(), a.o.Store, key, ext, body)
	if err != nil {
		return invalid(field("", "%s: %v", key, err))
	}
	b := brandingOf(*c.org)
	*assetField(&b, key) = name
	o, err := a.saveBranding(c, b, "branding.update", key)
	if err != nil {
		return err
	}
	return c.replyETag(http.StatusOK, brandingView(o), etagOf(o.Branding))
}

func assetField(b *store.Branding, key string) *string {
	switch key {
	case "logo":
		return &b.Logo
	case "favicon":
		return &b.Favicon
	case "font":
		return &b.Font
	}
	return &b.CustomCSS
}

func (a *API) deleteAsset(c *call) error {
	key := c.r.PathValue("asset")
	if !slices.ContainsFunc(brandasset.Files, func(s brandasset.Spec) bool { return s.Key == key }) {
		return notFound("branding file (logo, favicon, font, css)")
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s branding")
	}
	b := brandingOf(*c.org)
	if *assetField(&b, key) == "" {
		return notFound(key + " of this org")
	}
	*assetField(&b, key) = ""
	if _, err := a.saveBranding(c, b, "branding.update", key+" removed"); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteBranding removes the org's own branding: its parent's (or
// Gatehouse's) applies.
func (a *API) deleteBranding(c *call) error {
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s branding")
	}
	if c.org.Branding == nil {
		return notFound("branding of this org")
	}
	if _, err := a.saveBranding(c, store.Branding{}, "branding.delete", "all"); err != nil {
		return err
	}
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
