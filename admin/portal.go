package admin

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// The delegated admin portal: server-rendered pages under PortalPrefix
// for an org's own admins (on its login domain) and the platform's (on
// the public host). It is a client of the API: every read and write goes
// through the API's routes in-process, with the caller's session, so the
// portal has exactly the API's rules, checks and audit events. What it
// adds is HTML forms, CSRF tokens bound to the session, and one answer
// (404) for anyone who is not an admin or auditor of the org in the path.

// PortalPrefix is where the portal is served on login hosts.
const PortalPrefix = "/.gatehouse/admin/"

// PortalOptions wire the portal.
type PortalOptions struct {
	// Brand dresses a page in an org's branding (its own or its nearest
	// ancestor's; nil: Gatehouse's look).
	Brand func(org *store.Org) *web.Brand
	// LoginURL is the sign-in page on host, returning to rd afterwards.
	LoginURL func(host, rd string) string
	// HostOrg is the org whose login domain host is (false: the public
	// host, where every org in the caller's reach is served).
	HostOrg func(host string) (store.Org, bool)
	// CSRFKey (32 bytes, the same on every node) binds form tokens to
	// sessions.
	CSRFKey []byte
	// TestSignIn sends the admin's browser to the IdP through draft (a
	// connection of org not in effect yet), back to returnTo with
	// ?trace= (nil: no test sign-ins).
	TestSignIn func(w http.ResponseWriter, r *http.Request, org *store.Org, draft store.Connection, userID, returnTo, base string) error
	// Trace reads a test sign-in's trace; SpendTrace removes it once its
	// draft is in effect.
	Trace      func(ctx context.Context, id string) (idp.SSOTrace, bool)
	SpendTrace func(ctx context.Context, id string)
	// SignInPreview is the path of the sign-in page preview for an org
	// ("": none).
	SignInPreview func(org *store.Org) string
}

// Portal is the admin portal's http.Handler.
type Portal struct {
	api    *API
	o      PortalOptions
	mux    *http.ServeMux
	routes []PortalRoute
	cop    *http.CrossOriginProtection
}

//go:embed portal/*.html
var portalFS embed.FS

var portalPages = template.Must(template.New("").Funcs(template.FuncMap{
	"seg":  url.PathEscape,
	"join": strings.Join,
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"has": func(list []string, s string) bool {
		for _, v := range list {
			if v == s {
				return true
			}
		}
		return false
	},
}).ParseFS(portalFS, "portal/*.html"))

// PortalRoute is one portal page or form: the right it needs on the org
// in its path (tests walk them all).
type PortalRoute struct {
	Method, Path string
	Need         Need
	handle       func(*pcall) error
}

// Portal builds the portal on top of the API.
func (a *API) Portal(o PortalOptions) *Portal {
	p := &Portal{api: a, o: o, mux: http.NewServeMux(), cop: http.NewCrossOriginProtection()}
	p.routes = p.table()
	for _, rt := range p.routes {
		p.mux.Handle(rt.Method+" "+strings.TrimSuffix(PortalPrefix, "/")+rt.Path, p.wrap(rt))
	}
	return p
}

// Routes lists the portal's pages and forms.
func (p *Portal) Routes() []PortalRoute { return p.routes }

func (p *Portal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == strings.TrimSuffix(PortalPrefix, "/") {
		http.Redirect(w, r, PortalPrefix, http.StatusSeeOther)
		return
	}
	if _, pattern := p.mux.Handler(r); pattern == "" {
		p.notFound(w, r)
		return
	}
	p.mux.ServeHTTP(w, r)
}

// pcall is one portal request being served.
type pcall struct {
	p   *Portal
	w   http.ResponseWriter
	r   *http.Request
	who *Principal
	rt  PortalRoute
	// org is the org in the path, once authorized.
	org *store.Org
}

func (c *pcall) ctx() context.Context { return c.r.Context() }

// pageError is a refusal to show as a page with its status.
type pageError struct {
	status int
	msg    string
}

func (e *pageError) Error() string { return e.msg }

func (p *Portal) wrap(rt PortalRoute) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c := &pcall{p: p, w: w, r: r, rt: rt}
		err := p.serve(c)
		if err == nil {
			return
		}
		var pe *pageError
		if !errors.As(err, &pe) {
			ref := token.RandomID()[:16]
			p.api.o.Logger.Error("admin portal: request failed", "path", r.URL.Path, "ref", ref, "err", err)
			c.renderError(web.FailureStatus(err), "Gatehouse could not complete this page. Try again; if it keeps failing, give your operator this reference.", ref)
			return
		}
		if pe.status == http.StatusNotFound {
			p.notFound(w, r)
			return
		}
		c.renderError(pe.status, pe.msg, "")
	})
}

func (p *Portal) serve(c *pcall) error {
	a := p.api
	r := c.r
	if a.o.Sessions == nil {
		return &pageError{http.StatusNotFound, ""}
	}
	who, err := p.signedIn(r)
	var refused *Problem
	if err != nil && !errors.As(err, &refused) && !errors.Is(err, errNotASession) {
		return err // the store did not answer: 503, not "signed out"
	}
	if err != nil {
		if r.Method == http.MethodGet {
			http.Redirect(c.w, r, p.loginURL(r), http.StatusSeeOther)
			return nil
		}
		return &pageError{http.StatusUnauthorized, "Your session has ended. Sign in again, then repeat what you were doing."}
	}
	c.who = who
	// A member (no admin or auditor role) has no portal at all: the same
	// answer as for a page that does not exist.
	if !who.Platform && rank(who.Role) < rank(store.RoleAuditor) {
		a.o.Logger.Info("admin portal: refused", "reason", "not an admin", "principal", who.String(), "path", r.URL.Path)
		return &pageError{http.StatusNotFound, ""}
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		if err := p.cop.Check(r); err != nil {
			a.o.Logger.Info("admin portal: refused", "reason", "cross-origin form", "principal", who.String(), "path", r.URL.Path)
			return &pageError{http.StatusForbidden, "This form was sent from another site. Open the page again and send it from there."}
		}
		// The whole body is bounded, files included (ParseMultipartForm
		// alone bounds only what it keeps in memory).
		r.Body = http.MaxBytesReader(c.w, r.Body, maxUpload+64<<10)
		if err := r.ParseMultipartForm(maxUpload); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			return &pageError{http.StatusBadRequest, "The form could not be read: it may be too large."}
		}
		if !p.csrfOK(who, r.PostFormValue("csrf")) {
			a.o.Logger.Info("admin portal: refused", "reason", "csrf token", "principal", who.String(), "path", r.URL.Path)
			return &pageError{http.StatusForbidden, "This form has expired. Open the page again and repeat what you were doing."}
		}
	}
	if slug := r.PathValue("org"); slug != "" {
		org, err := a.resolveOrg(c.ctx(), slug)
		if err != nil {
			return &pageError{http.StatusNotFound, ""}
		}
		if !p.onThisHost(c.ctx(), r, &org) {
			a.o.Logger.Info("admin portal: refused", "reason", "org not served on this host", "principal", who.String(), "path", r.URL.Path)
			return &pageError{http.StatusNotFound, ""}
		}
		if err := a.authorize(c.ctx(), who, c.rt.Need, &org); err != nil {
			var prob *Problem
			if errors.As(err, &prob) {
				a.o.Logger.Info("admin portal: refused", "reason", prob.Detail, "principal", who.String(), "path", r.URL.Path)
				return &pageError{prob.Status, prob.Detail}
			}
			return err
		}
		c.org = &org
	}
	return c.rt.handle(c)
}

// signedIn is the session's principal; API tokens are not for browsers.
var errNotASession = errors.New("admin portal: not a session")

func (p *Portal) signedIn(r *http.Request) (*Principal, error) {
	r2 := r.Clone(r.Context())
	r2.Header.Del("Authorization")
	who, viaCookie, err := p.api.authenticate(r2)
	if err != nil {
		return nil, err
	}
	if !viaCookie {
		return nil, errNotASession
	}
	return who, nil
}

// onThisHost: on an org's login domain only that org and the orgs below
// it are served (its branding, its admins' sessions); on the public host,
// whatever the caller's rights reach.
func (p *Portal) onThisHost(ctx context.Context, r *http.Request, org *store.Org) bool {
	if p.o.HostOrg == nil {
		return true
	}
	hostOrg, ok := p.o.HostOrg(request.Host(r))
	if !ok {
		return true
	}
	chain, err := p.api.ancestry(ctx, org.ID)
	if err != nil {
		return false
	}
	for _, id := range chain {
		if id == hostOrg.ID {
			return true
		}
	}
	return false
}

func (p *Portal) loginURL(r *http.Request) string {
	u := url.URL{Scheme: "http", Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
	if request.IsSecure(r) {
		u.Scheme = "https"
	}
	if p.o.LoginURL == nil {
		return "/.gatehouse/login"
	}
	return p.o.LoginURL(request.Host(r), u.String())
}

// csrf is the form token for a session: an HMAC of its ID, so a page on
// another origin can neither read nor forge it, and it dies with the
// session.
func (p *Portal) csrf(who *Principal) string {
	m := hmac.New(sha256.New, p.o.CSRFKey)
	m.Write([]byte("admin-portal\x00" + who.SessionID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (p *Portal) csrfOK(who *Principal, got string) bool {
	if len(p.o.CSRFKey) == 0 || got == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(p.csrf(who))) == 1
}

// maxUpload bounds a portal form (branding files are the largest).
const maxUpload = 4 << 20

// --- the API, in-process ---

// apiResult is an API answer.
type apiResult struct {
	status  int
	header  http.Header
	body    []byte
	problem *problemBody
}

// ok reports a 2xx answer.
func (res *apiResult) ok() bool { return res.status >= 200 && res.status < 300 }

// decode reads a 2xx answer's JSON into v.
func (res *apiResult) decode(v any) error {
	if err := json.Unmarshal(res.body, v); err != nil {
		return fmt.Errorf("admin portal: decode API answer: %w", err)
	}
	return nil
}

// message is a refused call's explanation for the page, with the fields
// at fault.
func (res *apiResult) message() string {
	if res.problem == nil {
		return http.StatusText(res.status)
	}
	msg := res.problem.Detail
	if len(res.problem.Errors) > 1 {
		parts := make([]string, 0, len(res.problem.Errors))
		for _, e := range res.problem.Errors {
			parts = append(parts, strings.TrimPrefix(e.Pointer, "/")+": "+e.Detail)
		}
		msg += " " + strings.Join(parts, "; ")
	}
	return msg
}

// recorder keeps an API answer in memory.
type recorder struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.h }
func (rec *recorder) WriteHeader(s int) {
	if rec.status == 0 {
		rec.status = s
	}
}
func (rec *recorder) Write(b []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.buf.Write(b)
}

// apiRequest is the API request for a portal call: the caller's session
// cookie, client address and host; the portal has checked the form's
// origin and CSRF token already.
func (c *pcall) apiRequest(method, path, rawQuery, ctype string, body []byte) (*http.Request, error) {
	// path has its segments escaped (url.PathEscape): the URL keeps them
	// so, and a "." or ".." segment is refused, never cleaned by the mux.
	u, err := url.Parse(Prefix + path)
	if err != nil {
		return nil, &pageError{http.StatusNotFound, ""}
	}
	for seg := range strings.SplitSeq(u.Path, "/") {
		if seg == "." || seg == ".." {
			return nil, &pageError{http.StatusNotFound, ""}
		}
	}
	u.RawQuery = rawQuery
	r := c.r.Clone(c.ctx())
	r.Method = method
	r.URL = u
	r.RequestURI = ""
	r.Header = http.Header{}
	for _, k := range []string{"Cookie", "User-Agent", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Forwarded", "X-Real-Ip"} {
		if v, ok := c.r.Header[k]; ok {
			r.Header[k] = v
		}
	}
	r.Body, r.ContentLength = http.NoBody, 0
	if body != nil {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		r.Header.Set("Content-Type", ctype)
	}
	r.Form, r.PostForm, r.MultipartForm = nil, nil, nil
	return r, nil
}

// api calls the API with a JSON body (nil: none); ifMatch, when set, is
// sent as If-Match.
func (c *pcall) api(method, path string, query url.Values, body any, ifMatch string) (*apiResult, error) {
	var b []byte
	ctype := "application/json"
	switch v := body.(type) {
	case nil:
	case rawBody:
		b, ctype = v.b, v.ctype
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("admin portal: encode: %w", err)
		}
		if method == http.MethodPatch {
			ctype = "application/merge-patch+json"
		}
	}
	r, err := c.apiRequest(method, path, query.Encode(), ctype, b)
	if err != nil {
		return nil, err
	}
	if ifMatch != "" {
		r.Header.Set("If-Match", ifMatch)
	}
	rec := &recorder{h: http.Header{}}
	c.p.api.ServeHTTP(rec, r)
	res := &apiResult{status: rec.status, header: rec.h, body: rec.buf.Bytes()}
	if !res.ok() {
		var pb problemBody
		if json.Unmarshal(res.body, &pb) == nil {
			res.problem = &pb
		}
		if res.status >= 500 {
			return nil, fmt.Errorf("admin portal: %s %s: %d (request %s)", method, path, res.status, rec.h.Get("X-Request-Id"))
		}
	}
	return res, nil
}

// rawBody is a body sent as is, with its media type (branding files).
type rawBody struct {
	b     []byte
	ctype string
}

// get reads a 2xx answer into v, or returns the refusal as a page error
// (404 stays 404: the org or object is not the caller's to see).
func (c *pcall) get(path string, query url.Values, v any) (etag string, err error) {
	res, err := c.api(http.MethodGet, path, query, nil, "")
	if err != nil {
		return "", err
	}
	if !res.ok() {
		return "", &pageError{res.status, res.message()}
	}
	return res.header.Get("ETag"), res.decode(v)
}

// orgPath is the API path of the current org plus rest.
func (c *pcall) orgPath(rest string) string { return "/orgs/" + url.PathEscape(c.org.Slug) + rest }

// here is the portal path of the current org plus rest.
func (c *pcall) here(rest string) string {
	return PortalPrefix + "orgs/" + url.PathEscape(c.org.Slug) + rest
}

// done redirects after a successful form to page, which shows notice
// (one of noticeText's keys).
func (c *pcall) done(page, notice string) error {
	u := page
	if notice != "" {
		u += "?done=" + url.QueryEscape(notice)
	}
	http.Redirect(c.w, c.r, u, http.StatusSeeOther)
	return nil
}

// noticeText are the messages a page shows after a form worked (only
// these: a link cannot make the portal say anything else).
var noticeText = map[string]string{
	"invited":          "Invitation sent.",
	"resent":           "Invitation sent again, with a new link.",
	"revoked":          "Invitation revoked.",
	"disabled":         "The person is disabled: their sessions end within the revocation check.",
	"enabled":          "The person can sign in again.",
	"roles":            "Roles saved.",
	"factors":          "Second factors reset: the person sets them up again at their next sign-in.",
	"sessions":         "Sessions ended.",
	"removed":          "The person is removed from this organization.",
	"domain-added":     "Domain added. Create the DNS record below; Gatehouse checks it regularly.",
	"domain-removed":   "Domain removed.",
	"branding":         "Branding saved.",
	"branding-reset":   "Branding removed: the sign-in page uses the default look.",
	"template":         "Template saved.",
	"template-reset":   "Template reset to the default.",
	"policy":           "Policy saved: it applies within the policy reload interval.",
	"policy-removed":   "Policy removed.",
	"token-revoked":    "Token revoked.",
	"settings":         "Settings saved.",
	"session-ended":    "Session ended.",
	"connection-saved": "Single sign-on is in effect: your people sign in through your identity provider from now on.",
}

// --- rendering ---

// view is what every portal template receives.
type view struct {
	Title, OrgName string
	Brand          *web.Brand
	Error, Notice  string
	Reference      string
	Status         int
	CSRF           string
	// Org is the org in the path; Me the caller's email.
	Org      *store.Org
	Me       string
	Platform bool
	// CanWrite: the caller may change this org (admin or platform admin).
	CanWrite bool
	Nav      []navLink
	Data     any
}

type navLink struct {
	Href, Label string
	Current     bool
}

// sections are the org pages in the navigation.
var sections = []struct{ path, label string }{
	{"/", "Overview"},
	{"/users", "People"},
	{"/invitations", "Invitations"},
	{"/sso", "Single sign-on"},
	{"/domains", "Domains"},
	{"/branding", "Branding"},
	{"/templates", "Messages"},
	{"/policy", "Policy"},
	{"/tokens", "API tokens"},
	{"/audit", "Audit log"},
}

// view builds the common part of a page.
func (c *pcall) view(title string) *view {
	v := &view{Title: title, Org: c.org}
	if c.who != nil {
		v.Me, v.Platform, v.CSRF = c.who.Email, c.who.Platform, c.p.csrf(c.who)
		v.CanWrite = c.who.Platform || rank(c.who.Role) >= rank(store.RoleAdmin)
	}
	if c.org != nil {
		v.OrgName = c.org.Name
		if c.p.o.Brand != nil {
			v.Brand = c.p.o.Brand(c.org)
		}
		cur := strings.TrimPrefix(c.r.URL.Path, strings.TrimSuffix(c.here(""), "/"))
		for _, s := range sections {
			cur := cur == s.path || (s.path != "/" && strings.HasPrefix(cur, s.path+"/"))
			v.Nav = append(v.Nav, navLink{Href: c.here(s.path), Label: s.label, Current: cur})
		}
	}
	if n := noticeText[c.r.URL.Query().Get("done")]; n != "" && c.r.Method == http.MethodGet {
		v.Notice = n
	}
	return v
}

// render writes page with v.
func (c *pcall) render(status int, page string, v *view) error {
	v.Status = status
	web.RenderTemplate(c.w, status, portalPages, page+".html", v, false)
	return nil
}

func (c *pcall) renderError(status int, msg, ref string) {
	v := c.view(http.StatusText(status))
	v.Error, v.Reference = msg, ref
	_ = c.render(status, "error", v)
}

func (p *Portal) notFound(w http.ResponseWriter, r *http.Request) {
	c := &pcall{p: p, w: w, r: r}
	v := c.view("Not found")
	v.Error = "There is no page at this address, or it is not yours to see."
	_ = c.render(http.StatusNotFound, "error", v)
}
