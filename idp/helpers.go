package idp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

const maxFormSize = 16 << 10

// flowRefused answers a callback that belongs to no flow of this browser:
// expired, replayed, forged, or opened elsewhere.
func (h *Handler) flowRefused(w http.ResponseWriter, r *http.Request, reason string) {
	ref := h.ref()
	h.o.Logger.Warn("idp: sign-in response refused", "ref", ref, "reason", reason, "host", request.Host(r))
	h.o.Metrics.Logins.WithLabelValues("", "invalid").Inc()
	web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Sign-in expired",
		Error: "This sign-in has expired, was already used, or was started in another browser. Start again from your application.", Reference: ref, Back: LoginPath})
}

// storeDown answers 503 with Retry-After (web.Failure) when err is the
// store not answering, and reports whether it did: the caller stops there
// instead of reading the failure as an expired, used or unknown value.
func (h *Handler) storeDown(w http.ResponseWriter, err error, what string) bool {
	if !errors.Is(err, store.ErrUnavailable) {
		return false
	}
	web.Failure(w, err, "Gatehouse cannot reach its database right now, so nothing was done. Try again in a minute.", h.logRef("idp: "+what, err))
	return true
}

// signInError shows the page for a failed sign-in and logs the exact reason.
func (h *Handler) signInError(w http.ResponseWriter, r *http.Request, org *store.Org, step string, err error) {
	ref := h.ref()
	slug := ""
	if org != nil {
		slug = org.Slug
	}
	kind := connection.KindOf(err)
	status, outcome, msg := http.StatusBadRequest, "invalid", "The response from your identity provider could not be verified, so you were not signed in. Try again; if it keeps happening, give your administrator the reference below."
	switch kind {
	case connection.KindInternal:
		status, outcome, msg = web.FailureStatus(err), "error", "Sign-in failed on our side. Try again in a minute."
	case connection.KindUnreachable:
		status, outcome, msg = http.StatusBadGateway, "idp_unreachable", "Your organization's identity provider is not answering. Try again in a few minutes; if you are already signed in to an application, you can keep using it."
	case connection.KindExpired:
		outcome, msg = "expired", "The sign-in took too long or its timestamps are off (the clocks of your identity provider and of this service may differ). Start again from your application."
	case connection.KindCanceled:
		status, outcome, msg = http.StatusForbidden, "canceled", "Your identity provider did not sign you in (it was canceled or access was refused there)."
	case connection.KindUnknownUser:
		status, outcome, msg = http.StatusForbidden, "unknown_user", "You do not have an account in this organization yet. Ask your administrator to add you."
	case connection.KindWrongDomain:
		status, outcome, msg = http.StatusForbidden, "wrong_domain", "Your identity provider signed you in with an email address this organization does not use. Sign in with your work account, or ask your administrator."
	case connection.KindDenied:
		status, outcome, msg = http.StatusForbidden, "denied", "Your organization's settings do not give your account access here. Ask your administrator to assign you a group or role."
	case connection.KindNotReady:
		status, outcome, msg = http.StatusServiceUnavailable, "idp_not_ready", "Single sign-on for your organization is not ready yet: its identity provider's metadata could not be read. If your organization is still setting it up, try again once its administrator has finished; otherwise give them the reference below."
	}
	h.o.Metrics.Logins.WithLabelValues(slug, outcome).Inc()
	level := h.o.Logger.Warn
	if kind == connection.KindInternal || kind == connection.KindUnreachable {
		level = h.o.Logger.Error
	}
	level("idp: sign-in failed", "ref", ref, "org", slug, "step", step, "outcome", outcome, "reason", err.Error(), "host", request.Host(r))
	p := web.Page{Title: "Sign-in failed", Error: msg, Reference: ref, Back: LoginPath}
	if org != nil {
		p.Brand, p.OrgName = h.brand(org), org.Name
	}
	web.Render(w, status, "error", p)
}

func withPort(host, port string) string {
	if port == "" {
		return host
	}
	return host + ":" + port
}

// Brand is org's branding, or its nearest ancestor's (nil: Gatehouse's),
// for pages other packages render (the admin portal).
func (h *Handler) Brand(org *store.Org) *web.Brand { return h.brand(org) }

// brand is org's branding, or its nearest ancestor's (nil: Gatehouse's).
func (h *Handler) brand(org *store.Org) *web.Brand {
	// The org and its ancestors: maxOrgDepth orgs at most.
	o, err := h.o.Orgs.Nearest(org, maxOrgDepth-1, func(o *store.Org) bool { return o.Branding != nil })
	if err != nil {
		return nil
	}
	b := o.Branding
	url := func(name string) string {
		if name == "" {
			return ""
		}
		return web.BrandPrefix + name
	}
	return &web.Brand{LogoURL: url(b.Logo), FaviconURL: url(b.Favicon), CSSURL: url(b.CSS), Heading: b.Heading, Intro: b.Intro, Footer: b.Footer}
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

// readForm reads a bounded form and checks its CSRF token; it has
// answered the request (again says how to start over) when false.
func (h *Handler) readForm(w http.ResponseWriter, r *http.Request, again string) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormSize)
	if err := r.ParseForm(); err != nil {
		web.Error(w, http.StatusBadRequest, "The form could not be read. Go back and try again.", "")
		return false
	}
	if !h.checkCSRF(r) {
		ref := h.ref()
		h.o.Logger.Warn("idp: csrf token missing or wrong", "ref", ref, "host", request.Host(r))
		web.Error(w, http.StatusForbidden, "This form expired or was not sent from this page. "+again, ref)
		return false
	}
	return true
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

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// logRef logs msg (with err, if any) under a new reference and returns it.
func (h *Handler) logRef(msg string, err error) string {
	ref := h.ref()
	if err != nil {
		h.o.Logger.Error(msg, "ref", ref, "err", err)
	} else {
		h.o.Logger.Warn(msg, "ref", ref)
	}
	return ref
}
