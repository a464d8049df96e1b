// Package web renders Gatehouse's own pages (login, discovery, errors,
// 403, logout) with html/template and serves their embedded assets. No page
// loads anything from another origin.
package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/brandasset"
	"github.com/gatehouse/gatehouse/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

var pages = template.Must(template.New("").ParseFS(templateFS, "templates/*.html"))

// AssetsPrefix is where Serve is mounted on every host.
const AssetsPrefix = "/.gatehouse/assets/"

// CSP allows only same-origin styles and images and no scripts. It has no
// form-action: browsers apply it to the redirects that follow a form post,
// and sign-in legitimately redirects to an org's login domain or an app
// host; with no scripts and escaped templates there is no injected form
// for it to stop.
const CSP = "default-src 'none'; style-src 'self'; img-src 'self'; font-src 'self'; frame-ancestors 'none'; base-uri 'none'"

// BrandPrefix is where orgs' branding assets are served (under
// AssetsPrefix): content-addressed names, cached for good.
const BrandPrefix = AssetsPrefix + "b/"

// AssetName is a branding file's name under BrandPrefix: its contents'
// hash, so a changed file gets a new name and caches never go stale.
func AssetName(b []byte, ext string) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16]) + ext
}

// Brand dresses a page for an org; nil is Gatehouse's own look.
type Brand struct {
	LogoURL, FaviconURL, CSSURL string
	Heading, Intro, Footer      string
}

// Page is what every template receives.
type Page struct {
	Title   string
	OrgName string
	// Error is shown in an alert region at the top of the form.
	Error string
	// Notice is a non-error message (e.g. "You are signed out").
	Notice string
	// Reference ties an error page to its log line.
	Reference string
	Reasons   []string
	CSRF      string
	Email     string
	Redirect  string
	// Action is the form's target path.
	Action string
	// Step: "discover" (ask for the email) or "password".
	Step string
	// Status is the HTTP status, shown on error pages.
	Status int
	Back   string
	// BackText labels the Back link (default "Go back").
	BackText string
	// State is the hand-off state carried through sign-in.
	State string
	// Orgs are the person's organizations (the org chooser).
	Orgs []OrgChoice
	// Link is a second way on from an error page (e.g. another org).
	Link, LinkText string
	Brand          *Brand
	// Name and Invite: the invitation page's name field and link secret.
	Name, Invite string
	// Prompt "login" carries a request for a new sign-in through the form.
	Prompt string
	// App names the app asking for consent.
	App string
	// Secret, OTPAuth and Image: an authenticator's key to set up (as
	// text, as an otpauth: link, and the path of its QR code); Codes are
	// recovery codes, shown once.
	Secret, Image string
	// OTPAuth is trusted: Gatehouse builds it (an otpauth: link, which
	// the template would otherwise refuse as an unsafe scheme).
	OTPAuth template.URL
	Codes   []string
	// PasskeyOptions are a WebAuthn ceremony's options, JSON that
	// webauthn.js reads (encoding/json escapes <, > and & in it, so it
	// cannot end its script block); PasskeyMode is "create" or "get";
	// Ceremony a sealed stateless ceremony to post back.
	PasskeyOptions        template.JS
	PasskeyMode, Ceremony string
	// Passkeys lists a person's passkeys, HasTOTP says whether they have
	// an authenticator app and RecoveryLeft how many recovery codes (the
	// account page).
	Passkeys     []PasskeyItem
	HasTOTP      bool
	RecoveryLeft int
	// RememberFor offers to remember this browser that long (the second
	// step's page; "" for none).
	RememberFor string
	// Scripts: the page runs webauthn.js (the CSP allows same-origin
	// scripts on such a page only).
	Scripts bool
}

// PasskeyItem is one passkey on the account page.
type PasskeyItem struct {
	ID, Name, Host, Created, LastUsed string
}

// ScriptCSP is CSP with the pages' one same-origin script allowed.
const ScriptCSP = CSP + "; script-src 'self'"

// OrgChoice is one organization on the chooser.
type OrgChoice struct {
	Slug, Name string
	// Current: the org of this session. Switchable: reachable without
	// signing in again (same IdP sign-in).
	Current, Switchable bool
}

// Render writes the named page with security headers. Rendering into a
// buffer first means a template error never sends half a page.
func Render(w http.ResponseWriter, status int, name string, p Page) {
	if p.Status == 0 {
		p.Status = status
	}
	RenderTemplate(w, status, pages, name+".html", p, p.Scripts)
}

// RenderTemplate writes another package's page (the admin portal's) with
// the same security headers as Gatehouse's own pages: no script unless
// scripts, no framing, no caching.
func RenderTemplate(w http.ResponseWriter, status int, t *template.Template, name string, data any, scripts bool) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		slog.Error("web: render failed", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	if scripts {
		h.Set("Content-Security-Policy", ScriptCSP)
	} else {
		h.Set("Content-Security-Policy", CSP)
	}
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// Error renders the plain error page.
func Error(w http.ResponseWriter, status int, msg, ref string) {
	Render(w, status, "error", Page{Title: http.StatusText(status), Error: msg, Reference: ref})
}

// FailureStatus is the status of a failure on Gatehouse's side: 503 when
// the store did not answer (nothing was decided; the same request may
// work shortly), 500 for anything else.
func FailureStatus(err error) int {
	if errors.Is(err, store.ErrUnavailable) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Failure is Error for a failure on Gatehouse's side (FailureStatus),
// with Retry-After on a 503.
func Failure(w http.ResponseWriter, err error, msg, ref string) {
	status := FailureStatus(err)
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	Error(w, status, msg, ref)
}

type assetHandler struct {
	fs    fs.FS
	etag  map[string]string
	brand BlobSource
}

// serveBrand serves a content-addressed branding asset: its name is its
// hash, so it never changes and may be cached for good.
func (h *assetHandler) serveBrand(w http.ResponseWriter, r *http.Request, name string) {
	ext := path.Ext(name)
	// Only the branding formats are served, each with its own type
	// (their bytes were checked when stored); nosniff keeps browsers to
	// it.
	ctype := brandasset.Type(ext)
	if ctype == "" || h.brand == nil || strings.ContainsAny(name, "/\\") || len(name) > 80 {
		http.NotFound(w, r)
		return
	}
	etag := `"` + strings.TrimSuffix(name, ext) + `"`
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b, err := h.brand(r.Context(), name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", ctype)
	hd.Set("ETag", etag)
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	hd.Set("X-Content-Type-Options", "nosniff")
	// An SVG opened on its own must not run anything, nor submit a form
	// or open a link on Gatehouse's origin (sandbox: an opaque origin).
	hd.Set("Content-Security-Policy", "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; font-src 'self'")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(b)
}

// BlobSource reads an org branding asset by name.
type BlobSource func(ctx context.Context, name string) ([]byte, error)

// Assets serves the embedded assets with strong ETags, and orgs' branding
// assets from brand; mount under AssetsPrefix.
func Assets(brand BlobSource) http.Handler {
	sub, _ := fs.Sub(assetFS, "assets")
	h := &assetHandler{fs: sub, etag: map[string]string{}, brand: brand}
	_ = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(sub, p)
			sum := sha256.Sum256(b)
			h.etag[p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		}
		return nil
	})
	return h
}

func (h *assetHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, AssetsPrefix)
	if b, ok := strings.CutPrefix(name, "b/"); ok && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		h.serveBrand(w, r, b)
		return
	}
	etag, ok := h.etag[name]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	f, err := h.fs.Open(name)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	defer f.Close()
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, time.Time{}, f.(interface {
		fs.File
		Read([]byte) (int, error)
		Seek(int64, int) (int64, error)
	}))
}
