package admin

import (
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/apply"
	"github.com/gatehouse/gatehouse/internal/brandasset"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// table lists the portal's pages and forms. Forms are POSTs (HTML has no
// other methods) named by what they do; each maps onto API calls.
func (p *Portal) table() []PortalRoute {
	return []PortalRoute{
		{"GET", "/{$}", NeedSelf, p.home},
		{"GET", "/orgs", NeedRead, p.orgList},
		{"GET", "/orgs/{org}/{$}", NeedRead, p.overview},
		{"POST", "/orgs/{org}/settings", NeedWrite, p.saveSettings},

		{"GET", "/orgs/{org}/users", NeedRead, p.users},
		{"GET", "/orgs/{org}/users/{user}", NeedRead, p.user},
		{"POST", "/orgs/{org}/users/{user}", NeedWrite, p.userAction},

		{"GET", "/orgs/{org}/invitations", NeedRead, p.invitations},
		{"POST", "/orgs/{org}/invitations", NeedWrite, p.invite},
		{"POST", "/orgs/{org}/invitations/{invitation}", NeedWrite, p.invitationAction},

		{"GET", "/orgs/{org}/sso", NeedRead, p.sso},
		{"POST", "/orgs/{org}/sso/test", NeedWrite, p.ssoTest},
		{"POST", "/orgs/{org}/sso/activate", NeedWrite, p.ssoActivate},

		{"GET", "/orgs/{org}/domains", NeedRead, p.domains},
		{"POST", "/orgs/{org}/domains", NeedWrite, p.addDomain},
		{"POST", "/orgs/{org}/domains/{domain}", NeedWrite, p.domainAction},

		{"GET", "/orgs/{org}/branding", NeedRead, p.branding},
		{"POST", "/orgs/{org}/branding", NeedWrite, p.saveBranding},
		{"POST", "/orgs/{org}/branding/preview", NeedRead, p.previewBranding},
		{"GET", "/orgs/{org}/branding/preview.css", NeedRead, p.previewCSS},

		{"GET", "/orgs/{org}/templates", NeedRead, p.templates},
		{"GET", "/orgs/{org}/templates/{kind}", NeedRead, p.template},
		{"POST", "/orgs/{org}/templates/{kind}", NeedWrite, p.saveTemplate},

		{"GET", "/orgs/{org}/policy", NeedRead, p.policy},
		{"POST", "/orgs/{org}/policy", NeedWrite, p.savePolicy},

		{"GET", "/orgs/{org}/tokens", NeedRead, p.tokens},
		{"POST", "/orgs/{org}/tokens", NeedWrite, p.createToken},
		{"POST", "/orgs/{org}/tokens/{token}", NeedWrite, p.tokenAction},

		{"GET", "/orgs/{org}/audit", NeedRead, p.audit},
		{"GET", "/orgs/{org}/audit/export", NeedRead, p.auditExport},
	}
}

// home sends an org's admin to their org, a platform admin to the list.
func (p *Portal) home(c *pcall) error {
	if c.who.Platform {
		if hostOrg, ok := p.hostOrg(c.r); !ok {
			return c.done(PortalPrefix+"orgs", "")
		} else {
			return c.done(PortalPrefix+"orgs/"+url.PathEscape(hostOrg.Slug)+"/", "")
		}
	}
	org, err := p.api.o.Store.GetOrg(c.ctx(), c.who.OrgID)
	if err != nil {
		return &pageError{http.StatusNotFound, ""}
	}
	return c.done(PortalPrefix+"orgs/"+url.PathEscape(org.Slug)+"/", "")
}

func hostOf(r *http.Request) string { return request.Host(r) }

func (p *Portal) hostOrg(r *http.Request) (store.Org, bool) {
	if p.o.HostOrg == nil {
		return store.Org{}, false
	}
	return p.o.HostOrg(hostOf(r))
}

// orgList lists the orgs in the caller's reach (served on this host).
func (p *Portal) orgList(c *pcall) error {
	var list orgList
	if _, err := c.get("/orgs", nil, &list); err != nil {
		return err
	}
	var shown []OrgView
	for _, o := range list.Items {
		so := store.Org{ID: o.ID}
		if p.onThisHost(c.ctx(), c.r, &so) {
			shown = append(shown, o)
		}
	}
	v := c.view("Organizations")
	v.Data = shown
	return c.render(http.StatusOK, "orgs", v)
}

type overviewData struct {
	Org     OrgView
	ETag    string
	SubOrgs []OrgView
}

func (p *Portal) overview(c *pcall) error { return p.renderOverview(c, http.StatusOK, "") }

func (p *Portal) renderOverview(c *pcall, status int, msg string) error {
	var d overviewData
	etag, err := c.get(c.orgPath(""), nil, &d.Org)
	if err != nil {
		return err
	}
	d.ETag = etag
	var list orgList
	if _, err := c.get("/orgs", nil, &list); err != nil {
		return err
	}
	for _, o := range list.Items {
		if o.ParentID == c.org.ID {
			d.SubOrgs = append(d.SubOrgs, o)
		}
	}
	v := c.view("Overview")
	v.Error, v.Data = msg, d
	return c.render(status, "overview", v)
}

// saveSettings changes the org's name, sign-in rules and alerts.
func (p *Portal) saveSettings(c *pcall) error {
	f := c.r.PostFormValue
	require := f("mfa_require")
	lifetime, idle := strings.TrimSpace(f("session_lifetime")), strings.TrimSpace(f("session_idle_timeout"))
	alert := f("new_sign_in_alert") == "on"
	name := strings.TrimSpace(f("name"))
	patch := map[string]any{
		"name":              name,
		"mfa":               map[string]any{"require": require},
		"session":           map[string]any{"lifetime": lifetime, "idle_timeout": idle},
		"new_sign_in_alert": alert,
	}
	res, err := c.api(http.MethodPatch, c.orgPath(""), nil, patch, f("etag"))
	if err != nil {
		return err
	}
	if !res.ok() {
		return p.renderOverview(c, res.status, res.message())
	}
	return c.done(c.here("/"), "settings")
}

// --- people ---

type usersData struct {
	Q     string
	Items []UserView
	Next  string
}

func (p *Portal) users(c *pcall) error {
	q := c.r.URL.Query()
	query := url.Values{"limit": {"50"}}
	if s := strings.TrimSpace(q.Get("q")); s != "" {
		query.Set("q", s)
	}
	if cur := q.Get("cursor"); cur != "" {
		query.Set("cursor", cur)
	}
	var page userPage
	if _, err := c.get(c.orgPath("/users"), query, &page); err != nil {
		return err
	}
	d := usersData{Q: query.Get("q"), Items: page.Items}
	if page.NextCursor != "" {
		next := url.Values{"cursor": {page.NextCursor}}
		if d.Q != "" {
			next.Set("q", d.Q)
		}
		d.Next = c.here("/users") + "?" + next.Encode()
	}
	v := c.view("People")
	v.Data = d
	return c.render(http.StatusOK, "users", v)
}

type userData struct {
	User     UserView
	ETag     string
	Sessions []SessionView
	Roles    string
}

func (p *Portal) user(c *pcall) error { return p.renderUser(c, http.StatusOK, "") }

func (p *Portal) renderUser(c *pcall, status int, msg string) error {
	var d userData
	up := c.orgPath("/users/" + url.PathEscape(c.r.PathValue("user")))
	etag, err := c.get(up, nil, &d.User)
	if err != nil {
		return err
	}
	d.ETag, d.Roles = etag, strings.Join(d.User.Roles, ", ")
	var sessions struct {
		Items []SessionView `json:"items"`
	}
	if _, err := c.get(up+"/sessions", nil, &sessions); err != nil {
		return err
	}
	d.Sessions = sessions.Items
	v := c.view(d.User.Email)
	v.Error, v.Data = msg, d
	return c.render(status, "user", v)
}

// splitList reads a comma- or space-separated list field.
func splitList(s string) []string {
	out := []string{}
	for f := range strings.FieldsFuncSeq(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\r' || r == '\t' }) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

func (p *Portal) userAction(c *pcall) error {
	userID := c.r.PathValue("user")
	up := c.orgPath("/users/" + url.PathEscape(userID))
	etag := c.r.PostFormValue("etag")
	var (
		res    *apiResult
		err    error
		notice string
		next   = c.here("/users/" + url.PathEscape(userID))
	)
	switch action := c.r.PostFormValue("action"); action {
	case "disable", "enable":
		res, err = c.api(http.MethodPatch, up, nil, map[string]any{"disabled": action == "disable"}, etag)
		notice = action + "d"
	case "roles":
		res, err = c.api(http.MethodPatch, up, nil, map[string]any{"roles": splitList(c.r.PostFormValue("roles"))}, etag)
		notice = "roles"
	case "reset-factors":
		res, err = c.api(http.MethodDelete, up+"/factors", nil, nil, "")
		notice = "factors"
	case "end-sessions":
		res, err = c.api(http.MethodDelete, up+"/sessions", nil, nil, "")
		notice = "sessions"
	case "end-session":
		res, err = c.api(http.MethodDelete, c.orgPath("/sessions/"+url.PathEscape(c.r.PostFormValue("session"))), nil, nil, "")
		notice = "session-ended"
	case "remove":
		res, err = c.api(http.MethodDelete, up, nil, nil, etag)
		notice, next = "removed", c.here("/users")
	default:
		return &pageError{http.StatusBadRequest, "This form asks for nothing the portal knows."}
	}
	if err != nil {
		return err
	}
	if !res.ok() {
		if res.status == http.StatusNotFound {
			return &pageError{http.StatusNotFound, ""}
		}
		return p.renderUser(c, res.status, res.message())
	}
	return c.done(next, notice)
}

// --- invitations ---

type invitationsData struct {
	Items []InvitationView
	// Created is the invitation just made, with its link (shown once).
	Created *NewInvitationView
	Form    invitationForm
	// Texts: the deployment sends text messages (the phone field).
	Texts bool
}

type invitationForm struct {
	Email, Name, Roles, Phone, ExpiresIn string
}

func (p *Portal) invitations(c *pcall) error {
	return p.renderInvitations(c, http.StatusOK, "", nil, invitationForm{ExpiresIn: "168h"})
}

func (p *Portal) renderInvitations(c *pcall, status int, msg string, created *NewInvitationView, form invitationForm) error {
	var list invitationList
	if _, err := c.get(c.orgPath("/invitations"), nil, &list); err != nil {
		return err
	}
	v := c.view("Invitations")
	v.Error, v.Data = msg, invitationsData{Items: list.Items, Created: created, Form: form, Texts: p.api.o.TextInvitation != nil}
	if created != nil && created.Delivery == "queued" {
		v.Notice = noticeText["invited"]
	}
	return c.render(status, "invitations", v)
}

func (p *Portal) invite(c *pcall) error {
	f := c.r.PostFormValue
	form := invitationForm{Email: strings.TrimSpace(f("email")), Name: strings.TrimSpace(f("name")), Roles: f("roles"), Phone: strings.ReplaceAll(strings.TrimSpace(f("phone")), " ", ""), ExpiresIn: f("expires_in")}
	body := map[string]any{"email": form.Email, "name": form.Name, "roles": splitList(form.Roles)}
	if form.Phone != "" {
		body["phone"] = form.Phone
	}
	if form.ExpiresIn != "" {
		body["expires_in"] = form.ExpiresIn
	}
	res, err := c.api(http.MethodPost, c.orgPath("/invitations"), nil, body, "")
	if err != nil {
		return err
	}
	if !res.ok() {
		return p.renderInvitations(c, res.status, res.message(), nil, form)
	}
	var created NewInvitationView
	if err := res.decode(&created); err != nil {
		return err
	}
	return p.renderInvitations(c, http.StatusCreated, "", &created, invitationForm{ExpiresIn: "168h"})
}

func (p *Portal) invitationAction(c *pcall) error {
	ip := c.orgPath("/invitations/" + url.PathEscape(c.r.PathValue("invitation")))
	var (
		res    *apiResult
		err    error
		notice string
	)
	switch c.r.PostFormValue("action") {
	case "resend":
		res, err = c.api(http.MethodPost, ip+"/resend", nil, nil, "")
		notice = "resent"
	case "revoke":
		res, err = c.api(http.MethodDelete, ip, nil, nil, "")
		notice = "revoked"
	default:
		return &pageError{http.StatusBadRequest, "This form asks for nothing the portal knows."}
	}
	if err != nil {
		return err
	}
	if !res.ok() {
		if res.status == http.StatusNotFound {
			return &pageError{http.StatusNotFound, ""}
		}
		return p.renderInvitations(c, res.status, res.message(), nil, invitationForm{ExpiresIn: "168h"})
	}
	if notice == "resent" {
		// The new link, with what became of its email.
		var sent NewInvitationView
		if err := res.decode(&sent); err != nil {
			return err
		}
		return p.renderInvitations(c, http.StatusOK, "", &sent, invitationForm{ExpiresIn: "168h"})
	}
	return c.done(c.here("/invitations"), notice)
}

// --- single sign-on ---

// --- domains ---

func (p *Portal) domains(c *pcall) error { return p.renderDomains(c, http.StatusOK, "", "", "") }

type domainsData struct {
	Items      []DomainView
	Name, Kind string
}

func (p *Portal) renderDomains(c *pcall, status int, msg, name, kind string) error {
	var list domainList
	if _, err := c.get(c.orgPath("/domains"), nil, &list); err != nil {
		return err
	}
	v := c.view("Domains")
	v.Error, v.Data = msg, domainsData{Items: list.Items, Name: name, Kind: kind}
	return c.render(status, "domains", v)
}

func (p *Portal) addDomain(c *pcall) error {
	name, kind := strings.TrimSpace(c.r.PostFormValue("name")), c.r.PostFormValue("kind")
	res, err := c.api(http.MethodPost, c.orgPath("/domains"), nil, map[string]any{"name": name, "kind": kind}, "")
	if err != nil {
		return err
	}
	if !res.ok() {
		return p.renderDomains(c, res.status, res.message(), name, kind)
	}
	return c.done(c.here("/domains"), "domain-added")
}

func (p *Portal) domainAction(c *pcall) error {
	if c.r.PostFormValue("action") != "remove" {
		return &pageError{http.StatusBadRequest, "This form asks for nothing the portal knows."}
	}
	q := url.Values{}
	if k := c.r.PostFormValue("kind"); k != "" {
		q.Set("kind", k)
	}
	res, err := c.api(http.MethodDelete, c.orgPath("/domains/"+url.PathEscape(c.r.PathValue("domain"))), q, nil, "")
	if err != nil {
		return err
	}
	if !res.ok() {
		if res.status == http.StatusNotFound {
			return &pageError{http.StatusNotFound, ""}
		}
		return p.renderDomains(c, res.status, res.message(), "", "")
	}
	return c.done(c.here("/domains"), "domain-removed")
}

// --- branding ---

type brandingData struct {
	B       BrandingView
	ETag    string
	Preview string
	Files   []brandasset.Spec
}

func (p *Portal) branding(c *pcall) error { return p.renderBranding(c, http.StatusOK, "") }

func (p *Portal) renderBranding(c *pcall, status int, msg string) error {
	var d brandingData
	etag, err := c.get(c.orgPath("/branding"), nil, &d.B)
	if err != nil {
		return err
	}
	d.ETag, d.Files = etag, brandasset.Files
	if p.o.SignInPreview != nil {
		d.Preview = p.o.SignInPreview(c.org)
	}
	v := c.view("Branding")
	v.Error, v.Data = msg, d
	if len(d.B.Warnings) > 0 && msg == "" {
		v.Error = strings.Join(d.B.Warnings, " ")
	}
	return c.render(status, "branding", v)
}

// extType is the media type the API takes for a branding file's
// extension.
func extType(ext string) string {
	for t, e := range contentExt {
		if e == ext {
			return t
		}
	}
	return ""
}

// saveBranding saves the texts and colors, then each file sent (the
// files are checked by their bytes by the API, one call each).
func (p *Portal) saveBranding(c *pcall) error {
	f := c.r.PostFormValue
	etag := f("etag")
	if f("action") == "reset" {
		res, err := c.api(http.MethodDelete, c.orgPath("/branding"), nil, nil, etag)
		if err != nil {
			return err
		}
		if !res.ok() && res.status != http.StatusNotFound {
			return p.renderBranding(c, res.status, res.message())
		}
		return c.done(c.here("/branding"), "branding-reset")
	}
	patch := map[string]any{
		"colors": map[string]string{"primary": f("primary"), "background": f("background"), "text": f("text")},
		"texts":  map[string]string{"heading": f("heading"), "intro": f("intro"), "footer": f("footer")},
	}
	res, err := c.api(http.MethodPatch, c.orgPath("/branding"), nil, patch, etag)
	if err != nil {
		return err
	}
	if !res.ok() {
		return p.renderBranding(c, res.status, res.message())
	}
	etag = res.header.Get("ETag")
	for _, spec := range brandasset.Files {
		file, hdr, err := c.r.FormFile(spec.Key)
		if err != nil {
			continue // not sent
		}
		b, err := readUpload(file, hdr, spec.Max)
		if err != nil {
			return p.renderBranding(c, http.StatusRequestEntityTooLarge, fmt.Sprintf("The %s is too large: at most %d bytes.", spec.Key, spec.Max))
		}
		if len(b) == 0 {
			continue // an empty file input
		}
		ext := strings.ToLower(path.Ext(hdr.Filename))
		ctype := extType(ext)
		if ctype == "" || !slices.Contains(spec.Exts, ext) {
			return p.renderBranding(c, http.StatusUnsupportedMediaType, fmt.Sprintf("A %s is one of %s.", spec.Key, strings.Join(spec.Exts, ", ")))
		}
		res, err := c.api(http.MethodPut, c.orgPath("/branding/"+spec.Key), nil, rawBody{b, ctype}, etag)
		if err != nil {
			return err
		}
		if !res.ok() {
			return p.renderBranding(c, res.status, "The "+spec.Key+" was not saved: "+res.message())
		}
		etag = res.header.Get("ETag")
	}
	return c.done(c.here("/branding"), "branding")
}

// signInPreview is the sign-in page as the branding form's unsaved
// texts and colors would make it (the files are the saved ones).
type signInPreview struct {
	Title, OrgName, Heading, Intro, Footer string
	LogoURL, FaviconURL, CSSURL            string
	Back                                   string
}

// previewBranding shows the sign-in page with the form's texts and
// colors, saving nothing (the branding form's "Preview" button).
func (p *Portal) previewBranding(c *pcall) error {
	f := c.r.PostFormValue
	pv := signInPreview{Title: "Sign in", OrgName: c.org.Name, Heading: f("heading"), Intro: f("intro"), Footer: f("footer"), Back: c.here("/branding")}
	if pv.Heading == "" {
		pv.Heading = "Sign in"
	}
	if p.o.Brand != nil {
		if b := p.o.Brand(c.org); b != nil {
			pv.LogoURL, pv.FaviconURL = b.LogoURL, b.FaviconURL
		}
	}
	q := url.Values{}
	for _, k := range []string{"primary", "background", "text"} {
		if v := f(k); hexColor.MatchString(v) {
			q.Set(k, v)
		}
	}
	pv.CSSURL = c.here("/branding/preview.css") + "?" + q.Encode()
	web.RenderTemplate(c.w, http.StatusOK, portalPages, "signin_preview.html", pv, false)
	return nil
}

// previewCSS is the stylesheet of the preview: the colors asked for
// (checked), with the org's saved font and own CSS.
func (p *Portal) previewCSS(c *pcall) error {
	b := store.Branding{}
	if c.org.Branding != nil {
		b.Font, b.CustomCSS = c.org.Branding.Font, c.org.Branding.CustomCSS
	}
	q := c.r.URL.Query()
	for k, dst := range map[string]*string{"primary": &b.Colors.Primary, "background": &b.Colors.Background, "text": &b.Colors.Text} {
		if v := q.Get(k); hexColor.MatchString(v) {
			*dst = v
		}
	}
	css, err := apply.BrandCSS(c.ctx(), p.api.o.Store, &b)
	if err != nil {
		return err
	}
	h := c.w.Header()
	h.Set("Content-Type", "text/css; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = io.WriteString(c.w, css)
	return nil
}

func readUpload(f multipart.File, hdr *multipart.FileHeader, max int64) ([]byte, error) {
	defer f.Close()
	if hdr.Size > max {
		return nil, fmt.Errorf("too large")
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil || int64(len(b)) > max {
		return nil, fmt.Errorf("too large")
	}
	return b, nil
}

// --- message templates ---

func (p *Portal) templates(c *pcall) error {
	var list templateList
	if _, err := c.get(c.orgPath("/notifications"), nil, &list); err != nil {
		return err
	}
	v := c.view("Messages")
	v.Data = list.Items
	return c.render(http.StatusOK, "templates", v)
}

type templateData struct {
	T        TemplateView
	Preview  *Rendered
	Warnings []string
}

func (p *Portal) template(c *pcall) error {
	kind := c.r.PathValue("kind")
	if !slices.Contains(notify.Kinds, notify.Kind(kind)) {
		return &pageError{http.StatusNotFound, ""}
	}
	var list templateList
	if _, err := c.get(c.orgPath("/notifications"), nil, &list); err != nil {
		return err
	}
	var d templateData
	for _, t := range list.Items {
		if t.Kind == kind {
			d.T = t
		}
	}
	own := store.MessageTemplate{Subject: d.T.Subject, Text: d.T.Text, HTML: d.T.HTML, SMS: d.T.SMS}
	m, err := p.api.sampleMessage(c.ctx(), c.org, kind, own)
	if err == nil {
		r := Rendered(m)
		d.Preview = &r
	}
	v := c.view("Message: " + kindLabel(kind))
	if err != nil {
		v.Error = "The template does not render: " + err.Error()
	}
	v.Data = d
	return c.render(http.StatusOK, "template", v)
}

func kindLabel(kind string) string {
	return map[string]string{"invitation": "invitation", "password_reset": "password reset", "mfa_code": "sign-in code", "new_sign_in": "new sign-in alert"}[kind]
}

func (p *Portal) saveTemplate(c *pcall) error {
	kind := c.r.PathValue("kind")
	if !slices.Contains(notify.Kinds, notify.Kind(kind)) {
		return &pageError{http.StatusNotFound, ""}
	}
	tp := c.orgPath("/notifications/" + url.PathEscape(kind))
	f := c.r.PostFormValue
	if f("action") == "reset" {
		res, err := c.api(http.MethodDelete, tp, nil, nil, "")
		if err != nil {
			return err
		}
		if !res.ok() && res.status != http.StatusNotFound {
			return &pageError{res.status, res.message()}
		}
		return c.done(c.here("/templates/"+url.PathEscape(kind)), "template-reset")
	}
	d := templateData{T: TemplateView{Kind: kind, Subject: f("subject"), Text: f("text"), HTML: f("html"), SMS: f("sms")}}
	res, err := c.api(http.MethodPut, tp, nil, map[string]string{"subject": d.T.Subject, "text": d.T.Text, "html": d.T.HTML, "sms": d.T.SMS}, "*")
	if err != nil {
		return err
	}
	v := c.view("Message: " + kindLabel(kind))
	if !res.ok() {
		v.Error, v.Data = res.message(), d
		return c.render(res.status, "template", v)
	}
	var set TemplateSetView
	if err := res.decode(&set); err != nil {
		return err
	}
	d.T, d.Preview, d.Warnings = set.TemplateView, &set.Preview, set.Warnings
	v.Notice, v.Data = noticeText["template"], d
	return c.render(http.StatusOK, "template", v)
}

// --- policy ---

type policyData struct {
	P    PolicyView
	ETag string
	// Failed lists what the API refused (compile errors, failed tests).
	Failed []FieldError
}

func (p *Portal) policy(c *pcall) error {
	var d policyData
	etag, err := c.get(c.orgPath("/policy"), nil, &d.P)
	if err != nil {
		return err
	}
	d.ETag = etag
	v := c.view("Policy")
	v.Data = d
	return c.render(http.StatusOK, "policy", v)
}

// maxPolicyFiles bounds the modules one upload carries (the API's
// bound).
const maxPolicyFiles = 32

func (p *Portal) savePolicy(c *pcall) error {
	etag := c.r.PostFormValue("etag")
	if c.r.PostFormValue("action") == "remove" {
		res, err := c.api(http.MethodDelete, c.orgPath("/policy"), nil, nil, etag)
		if err != nil {
			return err
		}
		if !res.ok() && res.status != http.StatusNotFound {
			return &pageError{res.status, res.message()}
		}
		return c.done(c.here("/policy"), "policy-removed")
	}
	var mods []store.PolicyModule
	if c.r.MultipartForm != nil {
		files := c.r.MultipartForm.File["modules"]
		if len(files) > maxPolicyFiles {
			return &pageError{http.StatusBadRequest, fmt.Sprintf("Send at most %d files.", maxPolicyFiles)}
		}
		for _, fh := range files {
			f, err := fh.Open()
			if err != nil {
				return fmt.Errorf("admin portal: open upload: %w", err)
			}
			b, err := readUpload(f, fh, maxBody)
			if err != nil {
				return &pageError{http.StatusRequestEntityTooLarge, fh.Filename + " is too large."}
			}
			mods = append(mods, store.PolicyModule{Name: path.Base(fh.Filename), Text: string(b)})
		}
	}
	if name, text := strings.TrimSpace(c.r.PostFormValue("name")), c.r.PostFormValue("text"); strings.TrimSpace(text) != "" {
		if name == "" {
			name = "policy.rego"
		}
		mods = append(mods, store.PolicyModule{Name: name, Text: text})
	}
	v := c.view("Policy")
	res, err := c.api(http.MethodPut, c.orgPath("/policy"), nil, map[string]any{"modules": mods}, etag)
	if err != nil {
		return err
	}
	if !res.ok() {
		var d policyData
		d.ETag, _ = c.get(c.orgPath("/policy"), nil, &d.P)
		if res.problem != nil {
			d.Failed = res.problem.Errors
			v.Error = res.problem.Detail
		}
		v.Data = d
		return c.render(res.status, "policy", v)
	}
	var d policyData
	if err := res.decode(&d.P); err != nil {
		return err
	}
	d.ETag = res.header.Get("ETag")
	v.Notice, v.Data = noticeText["policy"], d
	return c.render(http.StatusOK, "policy", v)
}

// --- API tokens ---

type tokensData struct {
	Items   []TokenView
	Created *NewTokenView
}

func (p *Portal) tokens(c *pcall) error { return p.renderTokens(c, http.StatusOK, "", nil) }

func (p *Portal) renderTokens(c *pcall, status int, msg string, created *NewTokenView) error {
	var list tokenList
	if _, err := c.get(c.orgPath("/tokens"), nil, &list); err != nil {
		return err
	}
	v := c.view("API tokens")
	v.Error, v.Data = msg, tokensData{Items: list.Items, Created: created}
	if created != nil {
		v.Notice = "Token created. Copy it now: it is shown only once."
	}
	return c.render(status, "tokens", v)
}

func (p *Portal) createToken(c *pcall) error {
	f := c.r.PostFormValue
	body := map[string]any{"name": strings.TrimSpace(f("name")), "role": f("role")}
	if e := f("expires_in"); e != "" {
		body["expires_in"] = e
	}
	res, err := c.api(http.MethodPost, c.orgPath("/tokens"), nil, body, "")
	if err != nil {
		return err
	}
	if !res.ok() {
		return p.renderTokens(c, res.status, res.message(), nil)
	}
	var created NewTokenView
	if err := res.decode(&created); err != nil {
		return err
	}
	return p.renderTokens(c, http.StatusCreated, "", &created)
}

func (p *Portal) tokenAction(c *pcall) error {
	if c.r.PostFormValue("action") != "revoke" {
		return &pageError{http.StatusBadRequest, "This form asks for nothing the portal knows."}
	}
	res, err := c.api(http.MethodDelete, c.orgPath("/tokens/"+url.PathEscape(c.r.PathValue("token"))), nil, nil, "")
	if err != nil {
		return err
	}
	if !res.ok() {
		if res.status == http.StatusNotFound {
			return &pageError{http.StatusNotFound, ""}
		}
		return p.renderTokens(c, res.status, res.message(), nil)
	}
	return c.done(c.here("/tokens"), "token-revoked")
}

// --- audit ---

type auditData struct {
	Filter auditFilter
	Items  []store.AuditEvent
	Next   string
	Export string
}

type auditFilter struct {
	Action, Actor, Target, Since, Until string
}

// auditParams turns the filter form (dates as the browser's date
// inputs send them) into the API's query.
func auditParams(q url.Values) (auditFilter, url.Values, string) {
	f := auditFilter{Action: strings.TrimSpace(q.Get("action")), Actor: strings.TrimSpace(q.Get("actor")), Target: strings.TrimSpace(q.Get("target")), Since: q.Get("since"), Until: q.Get("until")}
	out := url.Values{}
	for k, v := range map[string]string{"action": f.Action, "actor": f.Actor, "target": f.Target} {
		if v != "" {
			out.Set(k, v)
		}
	}
	var bad string
	for k, v := range map[string]string{"since": f.Since, "until": f.Until} {
		if v == "" {
			continue
		}
		t, err := time.Parse("2006-01-02", v)
		if err != nil {
			bad = "Dates are written 2026-01-31."
			continue
		}
		if k == "until" {
			t = t.Add(24*time.Hour - time.Nanosecond) // through the end of that day
		}
		out.Set(k, t.Format(time.RFC3339Nano))
	}
	return f, out, bad
}

func (p *Portal) audit(c *pcall) error {
	q := c.r.URL.Query()
	filter, query, bad := auditParams(q)
	export := c.here("/audit/export")
	if len(query) > 0 {
		export += "?" + query.Encode()
	}
	query.Set("limit", "50")
	if cur := q.Get("cursor"); cur != "" {
		query.Set("cursor", cur)
	}
	var page auditPage
	res, err := c.api(http.MethodGet, c.orgPath("/audit"), query, nil, "")
	if err != nil {
		return err
	}
	v := c.view("Audit log")
	d := auditData{Filter: filter, Export: export}
	switch {
	case res.ok():
		if err := res.decode(&page); err != nil {
			return err
		}
		d.Items = page.Items
		if page.NextCursor != "" {
			next := c.r.URL.Query()
			next.Set("cursor", page.NextCursor)
			next.Del("done")
			d.Next = c.here("/audit") + "?" + next.Encode()
		}
	case res.status == http.StatusBadRequest:
		v.Error = res.message()
	default:
		return &pageError{res.status, res.message()}
	}
	if bad != "" {
		v.Error = bad
	}
	v.Data = d
	return c.render(http.StatusOK, "audit", v)
}

// auditExport streams the API's export (JSON Lines) as a download.
func (p *Portal) auditExport(c *pcall) error {
	_, query, _ := auditParams(c.r.URL.Query())
	r, err := c.apiRequest(http.MethodGet, c.orgPath("/audit/export"), query.Encode(), "", nil)
	if err != nil {
		return err
	}
	p.api.ServeHTTP(c.w, r)
	return nil
}
