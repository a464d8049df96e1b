package idp

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// LoginURL is where the proxy sends a browser without a session. orgSlug
// is the route's org, if it has one; rd is the URL to return to.
func (h *Handler) LoginURL(orgSlug, rd, state string) string {
	return h.SignInURL(orgSlug, rd, state, "", false)
}

// SignInURL is LoginURL with the sign-in's email filled in (loginHint)
// and, with fresh, a new sign-in even where the browser has a session
// (the OpenID Provider's prompt=login and max_age).
func (h *Handler) SignInURL(orgSlug, rd, state, loginHint string, fresh bool) string {
	prompt := ""
	if fresh {
		prompt = promptLogin
	}
	if orgSlug == "" {
		return h.loginURL("", "rd", rd, "state", state, "login_hint", loginHint, "prompt", prompt)
	}
	if org, ok := h.o.Orgs.BySlug(orgSlug); ok && org.LoginDomain != "" {
		return h.loginURL(org.LoginDomain, "rd", rd, "state", state, "login_hint", loginHint, "prompt", prompt)
	}
	return h.loginURL("", "rd", rd, "state", state, "org", orgSlug, "login_hint", loginHint, "prompt", prompt)
}

// HostLoginURL is the sign-in page on host (the public host or an org's
// login domain), returning to rd: for pages of that host that need a
// session (the admin portal).
func (h *Handler) HostLoginURL(host, rd string) string { return h.loginURL(host, "rd", rd) }

// promptLogin asks the sign-in page for a new sign-in.
const promptLogin = "login"

// fresh reports whether the request asks for a new sign-in.
func fresh(r *http.Request) string {
	if r.FormValue("prompt") == promptLogin {
		return promptLogin
	}
	return ""
}

// loginURL is the sign-in page on host (the public host if empty), with
// the public URL's scheme and port, and the non-empty of the name/value
// pairs as its query.
func (h *Handler) loginURL(host string, pairs ...string) string {
	u := *h.o.PublicURL
	if host != "" {
		u.Host = withPort(host, h.o.PublicURL.Port())
	}
	q := url.Values{}
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			q.Set(pairs[i], pairs[i+1])
		}
	}
	u.Path, u.RawQuery = LoginPath, q.Encode()
	return u.String()
}

// fixedOrg is the org a sign-in page is for, if any: the login host's
// org, or the one named by ?org= where this is its sign-in host (an org
// without a login domain on the shared host, or a sub-org that signs in
// through its ancestor's IdP, on that ancestor's sign-in host).
func (h *Handler) fixedOrg(r *http.Request) *store.Org {
	slug := r.FormValue("org")
	if o, ok := h.o.Orgs.ByLoginHost(request.Host(r)); ok {
		if c, ok := h.o.Orgs.BySlug(slug); ok && c.ID != o.ID && c.Connection.Type == "" && h.sameOwner(c, o) {
			return c
		}
		return o
	}
	if o, ok := h.o.Orgs.BySlug(slug); ok {
		if o.LoginDomain == "" {
			return o
		}
		if owner, err := h.ownerOf(o); err == nil && owner.ID != o.ID && owner.LoginDomain == "" && owner.Connection.Type != password.Type {
			return o
		}
	}
	return nil
}

func (h *Handler) page(r *http.Request, w http.ResponseWriter, org *store.Org, rd string) web.Page {
	p := web.Page{Title: "Sign in", CSRF: h.csrfToken(w, r), Redirect: rd, State: stateParam(r), Action: LoginPath, Step: "discover", Prompt: fresh(r)}
	if org == nil {
		// The shared sign-in on an org's own login domain is still theirs.
		if o, ok := h.o.Orgs.ByLoginHost(request.Host(r)); ok {
			p.Brand = h.brand(o)
		}
	}
	if org != nil {
		p.Brand = h.brand(org)
		p.OrgName, p.Step = org.Name, "password"
		if h.resetOffered(org) {
			p.Link = ResetPath
			if !strings.EqualFold(org.LoginDomain, request.Host(r)) {
				p.Link += "?org=" + url.QueryEscape(org.Slug)
			}
		}
		if strings.EqualFold(org.LoginDomain, request.Host(r)) {
			// Not this org's person after all: back to the shared sign-in.
			p.Back = h.loginURL("", "switch", "1", "rd", rd, "state", p.State)
		}
		if request.Host(r) != strings.ToLower(org.LoginDomain) {
			p.Action = LoginPath + "?org=" + url.QueryEscape(org.Slug)
		}
	}
	return p
}

func (h *Handler) loginPage(w http.ResponseWriter, r *http.Request) {
	rd, ok := h.redirectParam(w, r)
	if !ok {
		return
	}
	org := h.fixedOrg(r)
	// Already signed in on this host (to this host's org, if it has one):
	// hand the session on without a form.
	if rd != "" && fresh(r) == "" {
		if sid, err := h.o.Sessions.SessionID(r); err == nil {
			if e, err := h.o.Sessions.Lookup(r.Context(), sid); err == nil && (org == nil || h.sessionServes(org, e.Identity().OrgID)) {
				h.complete(w, r, sid, e.Identity().OrgID, rd, stateParam(r))
				return
			}
		}
	}
	// The shared sign-in remembers which org this browser used last
	// (home-realm discovery cookie) and goes straight to its own domain,
	// unless the person asked to use a different email.
	if org == nil && r.FormValue("switch") == "" {
		if slug, ok := request.CookieValue(r, hrdCookieName(r)); ok {
			if o, ok := h.o.Orgs.BySlug(slug); ok && o.LoginDomain != "" {
				http.Redirect(w, r, h.orgLoginURL(o, rd, r.FormValue("login_hint"), stateParam(r), fresh(r)), http.StatusSeeOther)
				return
			}
		}
	}
	hint := r.FormValue("login_hint")
	if len(hint) > 254 {
		hint = ""
	}
	// An org that signs in at its own IdP needs nothing from this page.
	if org != nil && h.startFederated(w, r, org, rd, hint) {
		return
	}
	p := h.page(r, w, org, rd)
	p.Email = hint
	h.offerPasswordless(r, &p)
	web.Render(w, http.StatusOK, "login", p)
}

// startFederated sends the browser to org's IdP if org signs in through
// one, and reports whether it answered the request (also with an error).
func (h *Handler) startFederated(w http.ResponseWriter, r *http.Request, org *store.Org, rd, hint string) bool {
	owner, err := h.ownerOf(org)
	if err != nil {
		h.signInError(w, r, org, "connection", err)
		return true
	}
	if owner.Connection.Type == password.Type {
		return false
	}
	cv, err := h.o.Connections.Get(r.Context(), owner)
	if err != nil {
		h.signInError(w, r, org, "connection", err)
		return true
	}
	c, ok := cv.(connection.Redirect)
	if !ok {
		return false
	}
	// The IdP knows one callback per connection: its owner's login
	// domain's, or the shared sign-in host's. Start there, whatever host
	// this request came to, so the flow cookie and the callback share a
	// host.
	host := strings.ToLower(owner.LoginDomain)
	if host == "" {
		host = strings.ToLower(h.o.PublicURL.Hostname())
	}
	if request.Host(r) != host {
		slug := ""
		if org.ID != owner.ID || owner.LoginDomain == "" {
			slug = org.Slug
		}
		http.Redirect(w, r, h.loginURL(owner.LoginDomain, "rd", rd, "login_hint", hint, "state", stateParam(r), "org", slug, "prompt", fresh(r)), http.StatusSeeOther)
		return true
	}
	h.beginRedirect(w, r, org, owner, c, rd, hint, "")
	return true
}

// hrdCookieName remembers, on the shared sign-in host, the org a browser
// last signed in with. It holds only a public org slug.
func hrdCookieName(r *http.Request) string {
	if request.IsSecure(r) {
		return "__Host-gatehouse_hrd"
	}
	return "_gatehouse_hrd"
}

// orgLoginURL is the sign-in page on an org's own login domain.
func (h *Handler) orgLoginURL(o *store.Org, rd, email, state, prompt string) string {
	return h.loginURL(o.LoginDomain, "rd", rd, "login_hint", email, "state", state, "prompt", prompt)
}

func (h *Handler) loginSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.readForm(w, r, "Reload the sign-in page and try again.") {
		return
	}
	rd, ok := h.redirectParam(w, r)
	if !ok {
		return
	}
	email := strings.TrimSpace(r.PostFormValue("email"))
	org := h.fixedOrg(r)
	if org == nil {
		var msg string
		org, msg = h.discover(email)
		if org == nil {
			h.o.Metrics.Logins.WithLabelValues("", "unknown_org").Inc()
			p := h.page(r, w, nil, rd)
			p.Email, p.Error = email, msg
			web.Render(w, http.StatusUnprocessableEntity, "login", p)
			return
		}
		// The org signs in on its own domain: go there.
		if org.LoginDomain != "" && request.Host(r) != org.LoginDomain {
			http.SetCookie(w, &http.Cookie{Name: hrdCookieName(r), Value: org.Slug, Path: "/", MaxAge: 90 * 24 * 3600,
				HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
			http.Redirect(w, r, h.orgLoginURL(org, rd, email, stateParam(r), fresh(r)), http.StatusSeeOther)
			return
		}
	}
	if h.startFederated(w, r, org, rd, email) {
		return
	}
	if r.PostFormValue("step") != "password" {
		p := h.page(r, w, org, rd)
		p.Email = email
		p.Back = LoginPath
		h.offerPasswordless(r, &p)
		web.Render(w, http.StatusOK, "login", p)
		return
	}
	h.passwordLogin(w, r, org, email, r.PostFormValue("password"), rd)
}

// discover finds the org for an email address (home-realm discovery).
func (h *Handler) discover(email string) (*store.Org, string) {
	domain, err := EmailDomain(email)
	if err != nil {
		return nil, "Enter your work email address, like name@company.com."
	}
	org, ok := h.o.Orgs.ByEmailDomain(domain)
	if !ok {
		return nil, fmt.Sprintf("No organization signs in with %s addresses. Check the address, or ask your administrator which email to use.", domain)
	}
	return org, ""
}

func (h *Handler) passwordLogin(w http.ResponseWriter, r *http.Request, org *store.Org, email, pw, rd string) {
	ctx := r.Context()
	now := h.o.Now()
	addr := h.o.ClientIP.Addr(r)
	acct := org.ID + "|" + strings.ToLower(email)
	fail := func(status int, outcome, msg string) {
		h.o.Metrics.Logins.WithLabelValues(org.Slug, outcome).Inc()
		p := h.page(r, w, org, rd)
		p.Email, p.Error = email, msg
		web.Render(w, status, "login", p)
	}
	pc, err := h.passwordConnection(r.Context(), org)
	if err != nil {
		h.signInError(w, r, org, "connection", err)
		return
	}
	addrKey := throttleAddr(addr)
	// A browser or address that signed in to this account before is held
	// to a budget of its own, not to the address's or the account's
	// shared ones: failures from strangers on the same network (a shared
	// NAT, a /64) or against the same account cannot lock it out.
	acctKey, known := h.budgetKey(r, acct, addrKey, now)
	byAddr := known == ""
	if byAddr {
		if ok, until := h.byAddr.take(addrKey, now); !ok {
			h.o.Logger.Warn("idp: sign-in throttled", "org", org.Slug, "client", addr, "by", "address")
			w.Header().Set("Retry-After", retryAfter(until, now))
			fail(http.StatusTooManyRequests, "throttled", fmt.Sprintf("Too many failed sign-ins from your network. Try again in %s.", wait(until, now)))
			return
		}
	}
	refundAddr := func() {
		if byAddr {
			h.byAddr.refund(addrKey)
		}
	}
	if ok, until := h.byAccount.take(acctKey, now); !ok {
		refundAddr()
		by := "account"
		if known != "" {
			by = "account and known " + known
		}
		h.o.Logger.Warn("idp: sign-in throttled", "org", org.Slug, "client", addr, "by", by)
		w.Header().Set("Retry-After", retryAfter(until, now))
		fail(http.StatusTooManyRequests, "throttled", fmt.Sprintf("Too many failed sign-ins for this account. Try again in %s, or ask your administrator to reset your password.", wait(until, now)))
		return
	}
	id, err := pc.CheckPassword(ctx, org.ID, email, pw)
	if err != nil && connection.KindOf(err) != connection.KindBadCredentials {
		// Not the person's fault: give the attempts back.
		refundAddr()
		h.byAccount.refund(acctKey)
		ref := h.ref()
		h.o.Logger.Error("idp: password check failed", "ref", ref, "org", org.Slug, "err", err)
		h.o.Metrics.Logins.WithLabelValues(org.Slug, "error").Inc()
		web.Failure(w, err, "Sign-in failed on our side. Try again in a minute.", ref)
		return
	}
	if err != nil {
		reason := err.Error()
		h.o.Logger.Info("idp: sign-in failed", "org", org.Slug, "client", addr, "reason", reason)
		h.audit(ctx, org.ID, strings.ToLower(email), "login", "failure", map[string]string{"reason": reason, "client": addr})
		fail(http.StatusUnauthorized, "bad_credentials", "Incorrect email or password.")
		return
	}
	h.byAccount.reset(acctKey)
	refundAddr()
	// A browser and network this account never signed in from: the
	// person hears of it, where the org asks (after the password, so a
	// guessed password is told even if the second step stops it).
	if h.knownDevice(r, acct, now) == "" && !h.known.has(acct+"|"+addrKey, now) {
		h.alertNewSignIn(r, org, id.UserID, email, addr, now)
	}
	h.known.add(acct+"|"+addrKey, now)
	h.rememberDevice(w, r, acct, now)
	owner, _ := h.ownerOf(org) // passwordConnection found it
	h.secondFactor(w, r, org, owner, email, id, rd, stateParam(r))
}

// passwordConnection is the org's password pool, if it signs in with one.
func (h *Handler) passwordConnection(ctx context.Context, org *store.Org) (connection.Password, error) {
	owner, err := h.ownerOf(org)
	if err != nil {
		return nil, err
	}
	cv, err := h.o.Connections.Get(ctx, owner)
	if err != nil {
		return nil, err
	}
	pc, ok := cv.(connection.Password)
	if !ok {
		return nil, connection.Errorf(connection.KindInternal, "idp: org %s signs in with %s, not a password", org.Slug, owner.Connection.Type)
	}
	return pc, nil
}

// sessionServes reports whether a session of org sessOrg is a sign-in to
// org: the same org, or one of its sub-orgs that signs in through the
// same connection (that IdP's sign-in proves the person to both; which of
// the two the person may use is the route's or the app's to decide).
func (h *Handler) sessionServes(org *store.Org, sessOrg string) bool {
	if sessOrg == org.ID {
		return true
	}
	so, ok := h.o.Orgs.ByID(sessOrg)
	if !ok || so.ParentID == "" {
		return false
	}
	owner, err := h.ownerOf(org)
	if err != nil || owner.Connection.Type == password.Type || !h.sameOwner(so, owner) {
		return false
	}
	found := false
	_, _ = h.o.Orgs.Nearest(so, maxOrgDepth-1, func(o *store.Org) bool {
		found = found || o.ID == org.ID
		return found
	})
	return found
}
