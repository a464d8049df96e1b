package idp

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

const logoutKind = store.EphemeralPrefix + "logout-flow"

// logoutRecord is a single logout in progress at the IdP.
type logoutRecord struct {
	OrgID     string `json:"org"`
	RequestID string `json:"req"`
}

func (h *Handler) logoutPage(w http.ResponseWriter, r *http.Request) {
	ret := r.FormValue("return")
	if _, err := h.o.Sessions.SessionID(r); err != nil {
		if to := h.logoutReturn(r.Context(), ret); to != "" {
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		web.Render(w, http.StatusOK, "logout", web.Page{Title: "Signed out", Notice: "You are not signed in."})
		return
	}
	if len(ret) > 64 {
		ret = ""
	}
	web.Render(w, http.StatusOK, "logout", web.Page{Title: "Sign out", CSRF: h.csrfToken(w, r), Redirect: ret})
}

// logoutReturn is where an app asked the browser to go after signing
// out ("" if nowhere).
func (h *Handler) logoutReturn(ctx context.Context, handle string) string {
	if handle == "" || h.o.LogoutReturn == nil || !token.ValidToken(handle, 43, 43) {
		return ""
	}
	return h.o.LogoutReturn(ctx, handle)
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
			web.Failure(w, err, "Sign-out failed on our side. Try again.", ref)
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
	if to := h.logoutReturn(r.Context(), r.PostFormValue("return")); to != "" {
		http.Redirect(w, r, to, http.StatusSeeOther)
		return
	}
	web.Render(w, http.StatusOK, "logout", web.Page{Title: "Signed out", Notice: "You are signed out of every application you reached through this sign-in."})
}

// startIdPLogout sends the browser to sign out at the IdP of the session
// that just ended, if its connection offers it, and reports whether it did.
// Any failure leaves the person signed out here, with the page saying so.
func (h *Handler) startIdPLogout(w http.ResponseWriter, r *http.Request, id *session.Identity) bool {
	if id.LogoutHint == "" {
		return false
	}
	org, ok := h.o.Orgs.ByID(id.OrgID)
	if !ok {
		return false
	}
	owner, err := h.ownerOf(org)
	if err != nil || owner.Connection.Type != id.Connection {
		return false
	}
	cv, err := h.o.Connections.Get(r.Context(), owner)
	if err != nil {
		h.o.Logger.Warn("idp: single logout skipped: connection unavailable", "org", org.Slug, "err", err)
		return false
	}
	lc, ok := cv.(connection.Logout)
	if !ok {
		return false
	}
	relay := token.RandomID()
	to, reqID, err := lc.LogoutURL(r.Context(), id.LogoutHint, relay)
	if err != nil || to == "" {
		if err != nil {
			h.o.Logger.Warn("idp: single logout skipped", "org", org.Slug, "err", err)
		}
		return false
	}
	// The IdP answers at the SLO endpoint of the connection's owner.
	b, _ := json.Marshal(logoutRecord{OrgID: owner.ID, RequestID: reqID})
	if err := h.o.Store.PutOnce(r.Context(), logoutKind, relay, b, h.o.Now().Add(flowTTL)); err != nil {
		h.o.Logger.Warn("idp: single logout skipped: store", "org", org.Slug, "err", err)
		return false
	}
	h.o.Logger.Info("idp: single logout sent to the IdP", "org", org.Slug)
	http.Redirect(w, r, to, http.StatusSeeOther)
	return true
}

// samlSLO receives the IdP's LogoutResponse to our single logout request.
func (h *Handler) samlSLO(w http.ResponseWriter, r *http.Request) {
	done := func(note string) {
		web.Render(w, http.StatusOK, "logout", web.Page{Title: "Signed out", Notice: note})
	}
	org, ok := h.samlOrg(r)
	if !ok {
		h.wrongAddress(w, r, outcomeUnknownEndpoint, true)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSAMLForm)
	if err := r.ParseForm(); err != nil {
		h.signInError(w, r, org, "slo", connection.Errorf(connection.KindInvalid, "idp: saml logout form: %w", err))
		return
	}
	if r.FormValue("SAMLRequest") != "" {
		h.idpLogout(w, r, org)
		return
	}
	relay := r.FormValue("RelayState")
	if r.FormValue("SAMLResponse") == "" || !validFlowState(relay) {
		h.flowRefused(w, r, "SAML logout message that answers no logout of ours")
		return
	}
	b, err := h.o.Store.TakeOnce(r.Context(), logoutKind, relay)
	if h.storeDown(w, err, "SAML logout") {
		return
	}
	var rec logoutRecord
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.OrgID != org.ID {
		h.flowRefused(w, r, "unknown, used or expired logout RelayState")
		return
	}
	cv, err := h.o.Connections.Get(r.Context(), org)
	lc, ok := cv.(connection.Logout)
	if err == nil && !ok {
		err = connection.Errorf(connection.KindInternal, "idp: connection has no single logout")
	}
	if err == nil {
		err = lc.FinishLogout(r.Context(), r, rec.RequestID)
	}
	if err != nil {
		ref := h.ref()
		h.o.Logger.Warn("idp: single logout not confirmed by the IdP", "ref", ref, "org", org.Slug, "reason", err.Error())
		web.Render(w, http.StatusOK, "logout", web.Page{Title: "Signed out", Reference: ref,
			Notice: "You are signed out here. Your identity provider did not confirm that it signed you out too; close the browser to be sure."})
		return
	}
	h.o.Logger.Info("idp: single logout confirmed by the IdP", "org", org.Slug)
	done("You are signed out here and at your organization's identity provider.")
}

// idpLogout takes a single logout the org's IdP started: the person
// signed out at the IdP, which sends their browser here with a signed
// LogoutRequest. Every session it names, in the orgs signing in through
// this connection, is revoked (on every host and node), and the browser
// goes back to the IdP with a signed LogoutResponse.
func (h *Handler) idpLogout(w http.ResponseWriter, r *http.Request, org *store.Org) {
	cv, err := h.o.Connections.Get(r.Context(), org)
	il, ok := cv.(connection.IdPLogout)
	if err == nil && !ok {
		err = connection.Errorf(connection.KindInvalid, "idp: connection takes no logout request")
	}
	var req connection.LogoutRequest
	if err == nil {
		req, err = il.AcceptLogout(r.Context(), r)
	}
	if err != nil {
		ref := h.ref()
		h.o.Logger.Warn("idp: logout request from the IdP refused", "ref", ref, "org", org.Slug, "reason", err.Error())
		web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Sign-out failed", Reference: ref,
			Error: "This sign-out request could not be checked, so nothing was signed out. Sign out from your application instead."})
		return
	}
	n, revokeErr := h.revokeMatching(r.Context(), org, req.Matches)
	ref := ""
	if revokeErr != nil {
		// The IdP is told (Responder), so it does not report a logout that
		// did not happen; sessions revoked so far stay revoked.
		ref = h.ref()
		h.o.Logger.Error("idp: logout request from the IdP: revoking sessions", "ref", ref, "org", org.Slug, "revoked", n, "err", revokeErr)
	} else {
		h.o.Logger.Info("idp: single logout started by the IdP", "org", org.Slug, "sessions_revoked", n)
	}
	relay := r.PostFormValue("RelayState")
	if r.URL.Query().Get("SAMLRequest") != "" {
		relay = r.URL.Query().Get("RelayState") // the redirect binding's (signed) one
	}
	to, err := il.AnswerLogout(r.Context(), req.ID, relay, revokeErr == nil)
	if err != nil || to == "" {
		if err != nil {
			h.o.Logger.Warn("idp: logout response to the IdP", "org", org.Slug, "err", err)
		}
		if revokeErr != nil {
			web.Error(w, http.StatusServiceUnavailable, "Signing you out failed on our side. Sign out from your application, or try again in a minute.", ref)
			return
		}
		web.Render(w, http.StatusOK, "logout", web.Page{Title: "Signed out", Notice: "You are signed out."})
		return
	}
	http.Redirect(w, r, to, http.StatusFound)
}

// revokeMatching revokes the active sessions, in owner's org and the orgs
// signing in through its connection, whose logout hint matches. It reads
// the members of those orgs and their sessions: a logout request is rare
// and signed by the IdP, and the store keeps no index by IdP session.
func (h *Handler) revokeMatching(ctx context.Context, owner *store.Org, matches func(string) bool) (int, error) {
	n := 0
	now := h.o.Now()
	for _, o := range h.o.Orgs.All() {
		if !h.sameOwner(o, owner) {
			continue
		}
		ms, err := h.o.Store.ListMembershipsByOrg(ctx, o.ID)
		if err != nil {
			return n, err
		}
		for _, m := range ms {
			ss, err := h.o.Store.ListSessionsByUser(ctx, m.UserID)
			if err != nil {
				return n, err
			}
			for _, s := range ss {
				if s.OrgID != o.ID || !s.RevokedAt.IsZero() || !now.Before(s.ExpiresAt) || s.LogoutHint == "" || !matches(s.LogoutHint) {
					continue
				}
				if err := h.o.Sessions.Revoke(ctx, s.ID); err != nil {
					return n, err
				}
				n++
				h.audit(ctx, o.ID, "idp:"+owner.Slug, "session.revoke", "success", map[string]string{"user": s.UserID, "reason": "single logout from the IdP"})
			}
		}
	}
	return n, nil
}
