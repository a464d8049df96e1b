// Package idp runs sign-in: home-realm discovery, the org's connection
// (the password pool today), the cross-host session hand-off and logout.
package idp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Reserved paths this package serves on every host.
const (
	LoginPath   = "/.gatehouse/login"
	LogoutPath  = "/.gatehouse/logout"
	HandoffPath = "/.gatehouse/handoff"
)

const (
	handoffKind = "handoff"
	handoffTTL  = 60 * time.Second
	maxFormSize = 16 << 10
)

// Options wire a Handler.
type Options struct {
	Store    store.Store
	Sessions *session.Manager
	Orgs     *Directory
	// Connections opens each org's sign-in connection.
	Connections *Connections
	PublicURL   *url.URL
	// Serves reports whether Gatehouse serves a hostname (post-login
	// redirects go nowhere else).
	Serves func(host string) bool
	// RouteHost reports whether a hostname is a route's. Sessions are handed
	// off only to route hosts, the public host and the session's own org's
	// login domain: never to another org's domain, whose DNS that org runs.
	RouteHost func(host string) bool
	ClientIP  *clientip.Resolver
	Metrics   *telemetry.Metrics
	Logger    *slog.Logger
	Now       func() time.Time
	// CSRFKey is 32 bytes shared by every node.
	CSRFKey               []byte
	MaxFailures           int
	FailureWindow         time.Duration
	MaxFailuresPerAddress int
}

// Handler serves the sign-in paths.
type Handler struct {
	o         Options
	byAccount *throttle
	byAddr    *throttle
	// flowStarts bounds the sign-in flows one client address opens: each
	// is a store record and, for SAML, an RSA signature.
	flowStarts *throttle
	mux        *http.ServeMux
	// known and deviceKey recognize clients that signed in before (known.go).
	known     knownAddrs
	deviceKey []byte
}

// New builds the sign-in handler.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h := &Handler{
		o:         o,
		byAccount: newThrottle(o.MaxFailures, o.FailureWindow),
		byAddr:    newThrottle(o.MaxFailuresPerAddress, o.FailureWindow),
		// About one a second sustained: an office behind one address signs
		// in comfortably; a script gets 600 records, not millions.
		flowStarts: newThrottle(600, 10*time.Minute),
	}
	dk := hmac.New(sha256.New, o.CSRFKey)
	dk.Write([]byte("gatehouse known-device cookie"))
	h.deviceKey = dk.Sum(nil)
	cop := http.NewCrossOriginProtection()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoginPath, h.loginPage)
	mux.Handle("POST "+LoginPath, cop.Handler(http.HandlerFunc(h.loginSubmit)))
	mux.HandleFunc("GET "+HandoffPath, h.handoff)
	mux.HandleFunc("GET "+CallbackPath, h.callback)
	mux.HandleFunc("GET "+OrgsPath, h.orgsPage)
	mux.Handle("POST "+OrgsPath, cop.Handler(http.HandlerFunc(h.orgsSwitch)))
	mux.HandleFunc("GET "+samlMetadataPath, h.samlMetadata)
	mux.HandleFunc("GET "+samlMetadataPath+"/{org}", h.samlMetadata)
	// The IdP posts from its own origin: no cross-origin protection here;
	// the response is bound to the flow (RelayState), the browser and the
	// org's SP instead.
	mux.HandleFunc("GET "+samlSLOPath, h.samlSLO)
	mux.HandleFunc("GET "+samlSLOPath+"/{org}", h.samlSLO)
	mux.HandleFunc("POST "+samlSLOPath, h.samlSLO)
	mux.HandleFunc("POST "+samlSLOPath+"/{org}", h.samlSLO)
	mux.HandleFunc("GET "+unsolicitedPath, h.unsolicitedContinue)
	mux.HandleFunc("POST "+unsolicitedPath, h.unsolicitedContinue)
	mux.HandleFunc("POST "+samlACSPath, h.samlACS)
	mux.HandleFunc("POST "+samlACSPath+"/{org}", h.samlACS)
	mux.HandleFunc("GET "+LogoutPath, h.logoutPage)
	mux.Handle("POST "+LogoutPath, cop.Handler(http.HandlerFunc(h.logoutSubmit)))
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// LoginURL is where the proxy sends a browser without a session. orgSlug
// is the route's org, if it has one; rd is the URL to return to.
func (h *Handler) LoginURL(orgSlug, rd, state string) string {
	if orgSlug == "" {
		return h.loginURL("", "rd", rd, "state", state)
	}
	if org, ok := h.o.Orgs.BySlug(orgSlug); ok && org.LoginDomain != "" {
		return h.loginURL(org.LoginDomain, "rd", rd, "state", state)
	}
	return h.loginURL("", "rd", rd, "state", state, "org", orgSlug)
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

func withPort(host, port string) string {
	if port == "" {
		return host
	}
	return host + ":" + port
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

// stateParam is the browser's hand-off state carried through sign-in.
func stateParam(r *http.Request) string {
	if s := r.FormValue("state"); session.ValidState(s) {
		return s
	}
	return ""
}

func (h *Handler) page(r *http.Request, w http.ResponseWriter, org *store.Org, rd string) web.Page {
	p := web.Page{Title: "Sign in", CSRF: h.csrfToken(w, r), Redirect: rd, State: stateParam(r), Action: LoginPath, Step: "discover"}
	if org == nil {
		// The shared sign-in on an org's own login domain is still theirs.
		if o, ok := h.o.Orgs.ByLoginHost(request.Host(r)); ok {
			p.Brand = h.brand(o)
		}
	}
	if org != nil {
		p.Brand = h.brand(org)
		p.OrgName, p.Step = org.Name, "password"
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
	if rd != "" {
		if sid, err := h.o.Sessions.SessionID(r); err == nil {
			if e, err := h.o.Sessions.Lookup(r.Context(), sid); err == nil && (org == nil || e.Identity().OrgID == org.ID) {
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
				http.Redirect(w, r, h.orgLoginURL(o, rd, "", stateParam(r)), http.StatusSeeOther)
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
	web.Render(w, http.StatusOK, "login", p)
}

// brand is org's branding, or its nearest ancestor's (nil: Gatehouse's).
func (h *Handler) brand(org *store.Org) *web.Brand {
	o := org
	for range maxOrgDepth {
		if o.Branding != nil {
			b := o.Branding
			url := func(name string) string {
				if name == "" {
					return ""
				}
				return web.BrandPrefix + name
			}
			return &web.Brand{LogoURL: url(b.Logo), FaviconURL: url(b.Favicon), CSSURL: url(b.CSS), Heading: b.Heading, Intro: b.Intro, Footer: b.Footer}
		}
		if o.ParentID == "" {
			return nil
		}
		p, ok := h.o.Orgs.ByID(o.ParentID)
		if !ok {
			return nil
		}
		o = p
	}
	return nil
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
		http.Redirect(w, r, h.loginURL(owner.LoginDomain, "rd", rd, "login_hint", hint, "state", stateParam(r), "org", slug), http.StatusSeeOther)
		return true
	}
	h.beginRedirect(w, r, org, owner, c, rd, hint)
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
func (h *Handler) orgLoginURL(o *store.Org, rd, email, state string) string {
	return h.loginURL(o.LoginDomain, "rd", rd, "login_hint", email, "state", state)
}

// redirectParam validates rd; on failure it writes the error page.
func (h *Handler) redirectParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	raw := r.FormValue("rd")
	if raw == "" {
		return "", true
	}
	rd, err := ValidateRedirect(raw, h.o.Serves)
	if err == nil {
		err = h.sameSchemeAndPort(rd)
	}
	if err != nil {
		ref := h.ref()
		// No query string or fragment in logs: they may carry tokens.
		h.o.Logger.Warn("idp: redirect refused", "ref", ref, "rd", truncate(withoutQuery(raw), 200), "host", request.Host(r))
		web.Error(w, http.StatusBadRequest, "The link you followed points somewhere this sign-in page will not send you. Open the application again from its usual address.", ref)
		return "", false
	}
	return rd, true
}

// withoutQuery is a URL (as written) for a log line: its query, fragment
// and path parameters are replaced by "?…" or ";…" (so the log shows there
// were some), and any userinfo by "…@": each may carry a credential.
func withoutQuery(raw string) string {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i] + "?…"
	}
	if i := strings.IndexByte(raw, ';'); i >= 0 {
		raw = raw[:i] + ";…"
	}
	if i := strings.Index(raw, "//"); i >= 0 {
		auth := raw[i+2:]
		if j := strings.IndexAny(auth, "/?;"); j >= 0 {
			auth = auth[:j]
		}
		if k := strings.LastIndexByte(auth, '@'); k >= 0 {
			raw = raw[:i+2] + "…@" + raw[i+2+k+1:]
		}
	}
	return raw
}

// sameSchemeAndPort keeps absolute targets on the public URL's scheme (no
// downgrade to http when it is https) and port: a hand-off ticket must
// not travel in the clear or to another listener on a served host.
func (h *Handler) sameSchemeAndPort(rd string) error {
	u, err := url.Parse(rd)
	if err != nil {
		return ErrBadRedirect
	}
	if u.Host == "" {
		return nil
	}
	pub := h.o.PublicURL
	if u.Scheme != pub.Scheme {
		return ErrBadRedirect
	}
	if portOf(u) != portOf(pub) {
		return ErrBadRedirect
	}
	return nil
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if u.Scheme == "https" {
		return "443"
	}
	return "80"
}

func (h *Handler) loginSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormSize)
	if err := r.ParseForm(); err != nil {
		web.Error(w, http.StatusBadRequest, "The form could not be read. Go back and try again.", "")
		return
	}
	if !h.checkCSRF(r) {
		ref := h.ref()
		h.o.Logger.Warn("idp: csrf token missing or wrong", "ref", ref, "host", request.Host(r))
		web.Error(w, http.StatusForbidden, "This form expired or was not sent from this page. Reload the sign-in page and try again.", ref)
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
			http.Redirect(w, r, h.orgLoginURL(org, rd, email, stateParam(r)), http.StatusSeeOther)
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
		web.Error(w, http.StatusInternalServerError, "Sign-in failed on our side. Try again in a minute.", ref)
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
	h.known.add(acct+"|"+addrKey, now)
	h.rememberDevice(w, r, acct, now)
	owner, _ := h.ownerOf(org) // passwordConnection found it
	h.startSession(w, r, org, store.User{ID: id.UserID}, owner, id, rd, stateParam(r))
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

type ticket struct {
	SID   string `json:"sid"`
	Host  string `json:"host"`
	RD    string `json:"rd"`
	State string `json:"state,omitempty"`
}

// handoffTarget reports whether a session of org orgID may be handed to
// host: route hosts and the public host (the operator's), and the org's
// own login domain.
func (h *Handler) handoffTarget(host, orgID string) bool {
	if host == strings.ToLower(h.o.PublicURL.Hostname()) || h.o.RouteHost(host) {
		return true
	}
	o, ok := h.o.Orgs.ByID(orgID)
	return ok && o.LoginDomain != "" && strings.EqualFold(o.LoginDomain, host)
}

// complete sends the browser on after sign-in. A target on another host
// gets its own cookie through a single-use ticket bound to that host and
// to the browser's state cookie there.
func (h *Handler) complete(w http.ResponseWriter, r *http.Request, sid, orgID, rd, state string) {
	if rd == "" {
		web.Render(w, http.StatusOK, "error", web.Page{Title: "You are signed in", Notice: "You can close this page or go back to your application."})
		return
	}
	u, err := url.Parse(rd)
	if err != nil || u.Host == "" || u.Hostname() == request.Host(r) {
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return
	}
	if !h.handoffTarget(u.Hostname(), orgID) {
		ref := h.ref()
		h.o.Logger.Warn("idp: hand-off to another org's domain refused", "ref", ref, "target", u.Hostname(), "org", orgID)
		web.Error(w, http.StatusForbidden, "You are signed in to a different organization than the one this address belongs to. Sign out first to use another organization's sign-in.", ref)
		return
	}
	if state == "" {
		// No browser state to bind a hand-off ticket to (a sign-in not
		// started by the proxy, like an IdP-initiated one): send the
		// browser on; the target's proxy brings it back here with a state
		// and this session hands over then.
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return
	}
	id := token.RandomID()
	b, _ := json.Marshal(ticket{SID: sid, Host: u.Hostname(), RD: rd, State: state})
	if err := h.o.Store.PutOnce(r.Context(), handoffKind, id, b, h.o.Now().Add(handoffTTL)); err != nil {
		ref := h.ref()
		h.o.Logger.Error("idp: store hand-off ticket", "ref", ref, "err", err)
		web.Error(w, http.StatusInternalServerError, "Sign-in failed on our side. Try again in a minute.", ref)
		return
	}
	next := url.URL{Scheme: u.Scheme, Host: u.Host, Path: HandoffPath, RawQuery: url.Values{"ticket": {id}}.Encode()}
	http.Redirect(w, r, next.String(), http.StatusSeeOther)
}

func (h *Handler) handoff(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("ticket")
	again := h.LoginURL("", "", "")
	fail := func(reason string) {
		ref := h.ref()
		h.o.Logger.Warn("idp: hand-off refused", "ref", ref, "reason", reason, "host", request.Host(r))
		web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Sign-in link expired",
			Error: "This sign-in link has expired or was already used. Open the application again to sign in.", Reference: ref, Back: again})
	}
	if id == "" || len(id) > 64 {
		fail("missing or malformed ticket")
		return
	}
	b, err := h.o.Store.TakeOnce(r.Context(), handoffKind, id)
	if err != nil {
		fail("unknown, used or expired ticket")
		return
	}
	var t ticket
	if err := json.Unmarshal(b, &t); err != nil {
		fail("corrupt ticket")
		return
	}
	if t.Host != request.Host(r) {
		fail("ticket for host " + t.Host)
		return
	}
	e, err := h.o.Sessions.Lookup(r.Context(), t.SID)
	if err != nil {
		fail("session ended: " + err.Error())
		return
	}
	if !h.handoffTarget(t.Host, e.Identity().OrgID) {
		fail("host belongs to another org")
		return
	}
	// The ticket must come back to the browser that started the sign-in.
	// Otherwise (a link from elsewhere, a planted or leaked ticket) ask the
	// person to continue, which starts a fresh, bound sign-in.
	if !session.TakeState(w, r, t.State) {
		ref := h.ref()
		h.o.Logger.Warn("idp: hand-off without matching state", "ref", ref, "host", t.Host, "has_state", t.State != "")
		web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Continue to sign in",
			Error: "This sign-in was not started in this browser, so it was not used.", Reference: ref, Back: t.RD, BackText: "Continue"})
		return
	}
	id2 := e.Identity()
	if err := h.o.Sessions.SetCookie(w, r, store.Session{ID: t.SID, ExpiresAt: id2.ExpiresAt}); err != nil {
		fail(err.Error())
		return
	}
	http.Redirect(w, r, t.RD, http.StatusSeeOther)
}

func (h *Handler) logoutPage(w http.ResponseWriter, r *http.Request) {
	if _, err := h.o.Sessions.SessionID(r); err != nil {
		web.Render(w, http.StatusOK, "logout", web.Page{Title: "Signed out", Notice: "You are not signed in."})
		return
	}
	web.Render(w, http.StatusOK, "logout", web.Page{Title: "Sign out", CSRF: h.csrfToken(w, r)})
}

func (h *Handler) logoutSubmit(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormSize)
	if err := r.ParseForm(); err != nil || !h.checkCSRF(r) {
		ref := h.ref()
		h.o.Logger.Warn("idp: logout without valid csrf token", "ref", ref)
		web.Error(w, http.StatusForbidden, "This form expired. Reload the page and try again.", ref)
		return
	}
	var ended *session.Identity
	if sid, err := h.o.Sessions.SessionID(r); err == nil {
		var orgID, actor string
		if e, err := h.o.Sessions.Lookup(r.Context(), sid); err == nil {
			orgID, actor = e.Identity().OrgID, e.Identity().UserID
			ended = e.Identity()
		}
		if err := h.o.Sessions.Revoke(r.Context(), sid); err != nil {
			ref := h.ref()
			h.o.Logger.Error("idp: logout failed", "ref", ref, "err", err)
			web.Error(w, http.StatusInternalServerError, "Sign-out failed on our side. Try again.", ref)
			return
		}
		h.audit(r.Context(), orgID, actor, "logout", "success", nil)
	}
	h.o.Sessions.ClearCookie(w, r)
	// Signed out here whatever happens next; then at the IdP too, where
	// the connection and the IdP offer single logout.
	if ended != nil && h.startIdPLogout(w, r, ended) {
		return
	}
	web.Render(w, http.StatusOK, "logout", web.Page{Title: "Signed out", Notice: "You are signed out of every application you reached through this sign-in."})
}

// CSRF: a random cookie per browser and host; the form token is an HMAC
// of it, so a page on another origin can neither read nor forge it.
func (h *Handler) csrfCookieName(r *http.Request) string {
	if request.IsSecure(r) {
		return "__Host-gatehouse_csrf"
	}
	return "_gatehouse_csrf"
}

func (h *Handler) csrfToken(w http.ResponseWriter, r *http.Request) string {
	name := h.csrfCookieName(r)
	v, ok := request.CookieValue(r, name)
	if !ok || len(v) != 43 {
		v = token.RandomID()
		http.SetCookie(w, &http.Cookie{Name: name, Value: v, Path: "/", HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
		// Let this request's form use the new cookie's token.
		r.AddCookie(&http.Cookie{Name: name, Value: v})
	}
	return h.csrfMAC(v, request.Host(r))
}

func (h *Handler) csrfMAC(cookie, host string) string {
	m := hmac.New(sha256.New, h.o.CSRFKey)
	m.Write([]byte(cookie + "|" + host))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (h *Handler) checkCSRF(r *http.Request) bool {
	cv, ok := request.CookieValue(r, h.csrfCookieName(r))
	tok := r.PostFormValue("csrf")
	if !ok || tok == "" {
		return false
	}
	return hmac.Equal([]byte(tok), []byte(h.csrfMAC(cv, request.Host(r))))
}

func (h *Handler) audit(ctx context.Context, orgID, actor, action, outcome string, details map[string]string) {
	// Audit must not be lost to a client that hangs up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := h.o.Store.AppendAudit(ctx, store.AuditEvent{Time: h.o.Now(), OrgID: orgID, Actor: actor, Action: action, Outcome: outcome, Details: details})
	if err != nil {
		h.o.Logger.Error("idp: audit write failed", "action", action, "err", err)
	}
}

func (h *Handler) ref() string { return token.RandomID()[:12] }

func wait(until, now time.Time) string {
	d := until.Sub(now).Round(time.Minute)
	if d < time.Minute {
		return "a minute"
	}
	if d == time.Minute {
		return "1 minute"
	}
	return fmt.Sprintf("%d minutes", int(d.Minutes()))
}

func retryAfter(until, now time.Time) string {
	return fmt.Sprint(int(until.Sub(now).Seconds()) + 1)
}

// throttleAddr groups IPv6 clients by /64, the block one subscriber gets;
// per-address limits on single IPv6 addresses would be no limit at all.
func throttleAddr(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
