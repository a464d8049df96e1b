package idp

import (
	"net/http"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// flowRefused answers a callback that belongs to no flow of this browser:
// expired, replayed, forged, or opened elsewhere.
func (h *Handler) flowRefused(w http.ResponseWriter, r *http.Request, reason string) {
	ref := h.ref()
	h.o.Logger.Warn("idp: sign-in response refused", "ref", ref, "reason", reason, "host", request.Host(r))
	h.o.Metrics.Logins.WithLabelValues("", "invalid").Inc()
	web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Sign-in expired",
		Error: "This sign-in has expired, was already used, or was started in another browser. Start again from your application.", Reference: ref, Back: LoginPath})
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
		status, outcome, msg = http.StatusInternalServerError, "error", "Sign-in failed on our side. Try again in a minute."
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
