package idp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// CallbackPath is where OIDC IdPs send the browser back.
const CallbackPath = "/.gatehouse/callback"

const (
	flowKind = "login-flow"
	// flowTTL is how long a person may spend at their IdP.
	flowTTL = 10 * time.Minute
)

// flowRecord is a redirect sign-in in progress, kept in the store (single
// use) under flowKey: the state the IdP echoes together with the secret in
// the browser's flow cookie. Only that browser can find it, so nobody
// else, even knowing the state, can finish or spend it.
type flowRecord struct {
	OrgID string `json:"org"`
	// ConnKey is the connection's settings when the flow began: a flow
	// never finishes on changed settings.
	ConnKey  string          `json:"conn_key"`
	Type     string          `json:"type"`
	Host     string          `json:"host"`
	Callback string          `json:"callback"`
	Hint     string          `json:"hint,omitempty"`
	RD       string          `json:"rd,omitempty"`
	State    string          `json:"state,omitempty"` // the hand-off state
	Conn     json.RawMessage `json:"conn"`
}

// flowCookieName is per flow, so that sign-ins in two tabs do not undo
// each other.
func flowCookieName(r *http.Request, state string) string {
	name := "gatehouse_flow_" + state[:16]
	if request.IsSecure(r) {
		return "__Host-" + name
	}
	return name
}

// validFlowState: RandomID's alphabet and length.
func validFlowState(s string) bool { return token.ValidToken(s, 16, 64) }

// beginRedirect starts a sign-in at the org's IdP.
func (h *Handler) beginRedirect(w http.ResponseWriter, r *http.Request, org, owner *store.Org, c connection.Redirect, rd, hint string) {
	now := h.o.Now()
	if ok, until := h.flowStarts.take(throttleAddr(h.o.ClientIP.Addr(r)), now); !ok {
		ref := h.logRef("idp: sign-in flows throttled for address "+h.o.ClientIP.Addr(r), nil)
		h.o.Metrics.Logins.WithLabelValues(org.Slug, "throttled").Inc()
		w.Header().Set("Retry-After", retryAfter(until, now))
		web.Error(w, http.StatusTooManyRequests, "Too many sign-ins were started from your network. Try again in "+wait(until, now)+".", ref)
		return
	}
	state := token.RandomID()
	secret := token.RandomID()
	// The callback is on this host (checked by the caller), with the
	// public URL's scheme and port: never taken from the Host header.
	cb := url.URL{Scheme: h.o.PublicURL.Scheme, Host: withPort(request.Host(r), h.o.PublicURL.Port()), Path: CallbackPath}
	req := connection.BeginRequest{State: state, CallbackURL: cb.String(), LoginHint: hint}
	to, data, err := c.Begin(r.Context(), req)
	if err != nil {
		h.signInError(w, r, org, "begin", err)
		return
	}
	rec := flowRecord{OrgID: org.ID, ConnKey: connKey(owner), Type: owner.Connection.Type,
		Host: request.Host(r), Callback: req.CallbackURL, Hint: hint, RD: rd, State: stateParam(r), Conn: data}
	b, err := json.Marshal(rec)
	if err == nil {
		err = h.o.Store.PutOnce(r.Context(), flowKind, flowKey(state, secret), b, h.o.Now().Add(flowTTL))
	}
	if err != nil {
		h.signInError(w, r, org, "begin", connection.Errorf(connection.KindInternal, "idp: store flow: %w", err))
		return
	}
	// SameSite=Lax reaches the callback of a top-level GET from the IdP; a
	// SAML response is a cross-site POST, which only SameSite=None (with
	// Secure) cookies reach, or, on plain-HTTP development setups,
	// browsers' "Lax by default" allowance for fresh cookies.
	sameSite := http.SameSiteLaxMode
	if owner.Connection.Type == "saml" {
		sameSite = http.SameSiteDefaultMode
		if request.IsSecure(r) {
			sameSite = http.SameSiteNoneMode
		}
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookieName(r, state), Value: secret, Path: "/", MaxAge: int(flowTTL / time.Second),
		HttpOnly: true, Secure: request.IsSecure(r), SameSite: sameSite})
	h.o.Logger.Info("idp: sign-in sent to the IdP", "org", org.Slug, "connection", owner.Connection.Type)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// flowKey is the store key of a flow: a digest of its state and the
// browser's secret.
func flowKey(state, secret string) string {
	sum := sha256.Sum256([]byte(state + "\x00" + secret))
	return hex.EncodeToString(sum[:])
}

// federation names owner's connection as it is now: a session records
// it, and only orgs signing in through the very same one are switchable.
func federation(owner *store.Org) string { return owner.ID + "/" + connKey(owner) }

// subjectOf is the IdP identity a membership is linked to.
func subjectOf(owner *store.Org, id connection.Identity) string {
	return owner.Connection.Type + ":" + id.Issuer + "#" + id.Subject
}

func connKey(o *store.Org) string {
	sum := sha256.Sum256([]byte(o.Connection.Type + "\x00" + string(o.Connection.Config)))
	return hex.EncodeToString(sum[:8])
}

// callback finishes an OIDC sign-in.
func (h *Handler) callback(w http.ResponseWriter, r *http.Request) {
	state := r.URL.Query().Get("state")
	if !validFlowState(state) {
		h.flowRefused(w, r, "callback without a valid state")
		return
	}
	h.finishRedirect(w, r, state)
}

// SAML paths (see idp/saml): on an org's login domain as is, on the
// shared sign-in host followed by /<org slug>.
const (
	samlACSPath      = "/.gatehouse/saml/acs"
	samlMetadataPath = "/.gatehouse/saml/metadata"
	samlSLOPath      = "/.gatehouse/saml/slo"
)

const logoutKind = "logout-flow"

// logoutRecord is a single logout in progress at the IdP.
type logoutRecord struct {
	OrgID     string `json:"org"`
	RequestID string `json:"req"`
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
			}
		}
	}
	return n, nil
}

// samlOrg is the org a SAML endpoint serves: the login domain's org, or
// the slug in the path on the shared host.
func (h *Handler) samlOrg(r *http.Request) (*store.Org, bool) {
	if o, ok := h.o.Orgs.ByLoginHost(request.Host(r)); ok {
		return o, r.PathValue("org") == ""
	}
	if request.Host(r) != strings.ToLower(h.o.PublicURL.Hostname()) {
		return nil, false
	}
	o, ok := h.o.Orgs.BySlug(r.PathValue("org"))
	if !ok || o.LoginDomain != "" {
		return nil, false
	}
	return o, true
}

// Outcomes of SAML messages posted to an address that is not the org's
// own: the ACS (or single logout) URL configured at the IdP is wrong.
const (
	// outcomeUnknownEndpoint: an address of no org (a mistyped slug or
	// host, the shared host for an org with a login domain).
	outcomeUnknownEndpoint = "unknown_endpoint"
	// outcomeWrongEndpoint: another org's address, or that of an org
	// without a SAML connection of its own.
	outcomeWrongEndpoint = "wrong_endpoint"
)

// strayEndpoint says why r's SAML endpoint belongs to no org, and names
// the org whose host or slug it used, if any (nil otherwise).
func (h *Handler) strayEndpoint(r *http.Request) (*store.Org, string) {
	host, slug := request.Host(r), r.PathValue("org")
	if o, ok := h.o.Orgs.ByLoginHost(host); ok {
		return o, fmt.Sprintf("org %s's login domain %s takes no org slug in the path (got %.64q)", o.Slug, host, slug)
	}
	if host != strings.ToLower(h.o.PublicURL.Hostname()) {
		return nil, fmt.Sprintf("host %.100q is no org's sign-in host", host)
	}
	if slug == "" {
		return nil, "no org slug after the path on the shared sign-in host"
	}
	o, ok := h.o.Orgs.BySlug(slug)
	if !ok {
		return nil, fmt.Sprintf("no org with slug %.64q", slug)
	}
	return o, fmt.Sprintf("org %s signs in on its login domain %s, not on the shared sign-in host", o.Slug, o.LoginDomain)
}

// wrongAddress answers a SAML message posted to an address of no org:
// the person is told so (not that the sign-in expired), the log says
// exactly why, and a response counts as a failed sign-in by its reason.
func (h *Handler) wrongAddress(w http.ResponseWriter, r *http.Request, outcome string, logout bool) {
	org, reason := h.strayEndpoint(r)
	h.refuseAddress(w, r, org, outcome, reason, logout)
}

// wrongOrgAddress answers a SAML response posted to the ACS of an org
// that is not the one it is for.
func (h *Handler) wrongOrgAddress(w http.ResponseWriter, r *http.Request, org *store.Org, reason string) {
	h.refuseAddress(w, r, org, outcomeWrongEndpoint, reason, false)
}

func (h *Handler) refuseAddress(w http.ResponseWriter, r *http.Request, org *store.Org, outcome, reason string, logout bool) {
	ref := h.ref()
	slug := ""
	if org != nil {
		slug = org.Slug
	}
	what, setting := "sign-in", "ACS URL (also called reply URL or single sign-on URL)"
	if logout {
		what, setting = "sign-out", "single logout URL"
	}
	h.o.Logger.Warn("idp: SAML "+what+" posted to a wrong address", "ref", ref, "outcome", outcome, "org", slug, "reason", reason,
		"host", request.Host(r), "path", truncate(r.URL.Path, 200))
	if !logout {
		h.o.Metrics.Logins.WithLabelValues(slug, outcome).Inc()
	}
	status, where := http.StatusNotFound, "an address that belongs to no organization here"
	if outcome == outcomeWrongEndpoint {
		status, where = http.StatusBadRequest, "the address of another organization, or of one that does not sign in with SAML there"
	}
	web.Render(w, status, "error", web.Page{Title: "Wrong sign-in address", Reference: ref,
		Error: "Your identity provider sent this " + what + " to " + where + ", so nothing happened. " +
			"Your administrator should check the " + setting + " configured at the identity provider: it must be exactly the one in your organization's SAML service provider metadata."})
}

// samlMetadata serves the org's SP metadata (entity ID, ACS, certificate).
func (h *Handler) samlMetadata(w http.ResponseWriter, r *http.Request) {
	org, ok := h.samlOrg(r)
	if !ok {
		web.Error(w, http.StatusNotFound, "No SAML service provider here.", "")
		return
	}
	owner, err := h.ownerOf(org)
	if err != nil || owner.ID != org.ID || owner.Connection.Type != "saml" {
		web.Error(w, http.StatusNotFound, "This organization does not sign in with SAML here.", "")
		return
	}
	// Not a sign-in: a failure here is logged, never counted as one.
	fail := func(err error) {
		ref := h.ref()
		h.o.Logger.Error("idp: SAML SP metadata unavailable", "ref", ref, "org", org.Slug, "err", err)
		web.Error(w, http.StatusInternalServerError, "This organization's SAML service provider metadata could not be made. Try again in a minute.", ref)
	}
	cv, err := h.o.Connections.Get(r.Context(), owner)
	if err != nil {
		fail(err)
		return
	}
	mc, ok := cv.(connection.Metadata)
	if !ok {
		web.Error(w, http.StatusNotFound, "This organization does not sign in with SAML here.", "")
		return
	}
	b, err := mc.Metadata(r.Context())
	if err != nil {
		fail(err)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Write(b)
}

// maxSAMLForm bounds the posted SAMLResponse form (an encrypted, signed
// response with many attributes stays well under it).
const maxSAMLForm = 256 << 10

// samlACS receives the IdP's response: the flow in RelayState if this
// browser started one, else an IdP-initiated sign-in if the org allows.
func (h *Handler) samlACS(w http.ResponseWriter, r *http.Request) {
	org, ok := h.samlOrg(r)
	if !ok {
		h.wrongAddress(w, r, outcomeUnknownEndpoint, false)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSAMLForm)
	if err := r.ParseForm(); err != nil {
		h.signInError(w, r, org, "acs", connection.Errorf(connection.KindInvalid, "idp: saml form: %w", err))
		return
	}
	if rs := r.PostFormValue("RelayState"); validFlowState(rs) {
		if h.finishFlow(w, r, rs, org) {
			return
		}
	}
	owner, err := h.ownerOf(org)
	if err != nil || owner.ID != org.ID || owner.Connection.Type != "saml" {
		h.wrongOrgAddress(w, r, org, "SAML response at the ACS of org "+org.Slug+", which has no SAML connection of its own")
		return
	}
	cv, err := h.o.Connections.Get(r.Context(), owner)
	if err != nil {
		h.signInError(w, r, org, "acs", err)
		return
	}
	uc, ok := cv.(connection.Unsolicited)
	if !ok {
		h.flowRefused(w, r, "unsolicited response to a connection that takes none")
		return
	}
	id, landing, err := uc.FinishUnsolicited(r.Context(), r)
	if err != nil {
		h.signInError(w, r, org, "acs", err)
		return
	}
	if landing, err = ValidateRedirect(landing, h.o.Serves); err != nil {
		h.signInError(w, r, org, "acs", connection.Errorf(connection.KindInternal, "idp: idp_initiated_url of org %s is not a page Gatehouse serves", org.Slug))
		return
	}
	user, err := h.provision(r.Context(), org, owner, id)
	if err != nil {
		h.signInError(w, r, org, "provision", err)
		return
	}
	h.holdUnsolicited(w, r, unsolicitedRecord{OrgID: org.ID, OwnerID: owner.ID, UserID: user.ID, Identity: id, Landing: landing})
}

// finishRedirect takes the flow named by state (once), checks that this
// browser started it on this host, and lets the connection verify the
// IdP's response.
func (h *Handler) finishRedirect(w http.ResponseWriter, r *http.Request, state string) {
	if !h.finishFlow(w, r, state, nil) {
		h.flowRefused(w, r, "unknown, used or expired state")
	}
}

// finishFlow finishes the flow named by state; false (having written
// nothing) if there is no such flow. acsOrg, for a SAML response, is the
// org whose ACS received it: the flow must be that org's.
func (h *Handler) finishFlow(w http.ResponseWriter, r *http.Request, state string, acsOrg *store.Org) bool {
	ctx := r.Context()
	// Only the browser holding the flow's cookie finds the flow: a
	// response stolen or posted elsewhere neither finishes nor spends the
	// sign-in of the person it belongs to.
	name := flowCookieName(r, state)
	ckv, ok := request.CookieValue(r, name)
	if !ok {
		if acsOrg != nil {
			return false // treated as unsolicited: refused unless the org allows those
		}
		h.flowRefused(w, r, "state not started in this browser (no flow cookie)")
		return true
	}
	b, err := h.o.Store.TakeOnce(ctx, flowKind, flowKey(state, ckv))
	if errors.Is(err, store.ErrNotFound) {
		if acsOrg != nil {
			return false
		}
		h.flowRefused(w, r, "unknown, used or expired state, or a flow cookie of another sign-in")
		return true
	}
	if err != nil {
		h.signInError(w, r, nil, "callback", connection.Errorf(connection.KindInternal, "idp: read flow: %w", err))
		return true
	}
	var rec flowRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		h.signInError(w, r, nil, "callback", connection.Errorf(connection.KindInternal, "idp: corrupt flow record: %w", err))
		return true
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
	if rec.Host != request.Host(r) {
		h.flowRefused(w, r, "state started on host "+rec.Host)
		return true
	}
	org, ok := h.o.Orgs.ByID(rec.OrgID)
	if !ok {
		h.flowRefused(w, r, "org "+rec.OrgID+" no longer exists")
		return true
	}
	owner, err := h.ownerOf(org)
	if err != nil {
		h.signInError(w, r, org, "callback", err)
		return true
	}
	if (acsOrg != nil) != (rec.Type == "saml") {
		h.flowRefused(w, r, "a "+rec.Type+" sign-in answered at the wrong endpoint")
		return true
	}
	if acsOrg != nil && owner.ID != acsOrg.ID {
		// A response for one org's sign-in posted to another org's ACS.
		h.wrongOrgAddress(w, r, org, "SAML response for org "+org.Slug+"'s sign-in posted to org "+acsOrg.Slug+"'s ACS")
		return true
	}
	if connKey(owner) != rec.ConnKey {
		h.signInError(w, r, org, "callback", connection.Errorf(connection.KindExpired, "idp: the org's connection changed during the sign-in"))
		return true
	}
	cv, err := h.o.Connections.Get(ctx, owner)
	if err != nil {
		h.signInError(w, r, org, "callback", err)
		return true
	}
	c, ok := cv.(connection.Redirect)
	if !ok {
		h.signInError(w, r, org, "callback", connection.Errorf(connection.KindInternal, "idp: connection %s has no redirect sign-in", owner.Connection.Type))
		return true
	}
	id, err := c.Finish(ctx, r, connection.BeginRequest{State: state, CallbackURL: rec.Callback, LoginHint: rec.Hint}, rec.Conn)
	if err != nil {
		h.signInError(w, r, org, "callback", err)
		return true
	}
	user, err := h.provision(ctx, org, owner, id)
	if err != nil {
		h.audit(ctx, org.ID, strings.ToLower(id.Email), "login", "failure", map[string]string{"connection": owner.Connection.Type, "reason": err.Error(), "client": h.o.ClientIP.Addr(r)})
		h.signInError(w, r, org, "provision", err)
		return true
	}
	h.startSession(w, r, org, user, owner, id, rec.RD, rec.State)
	return true
}

// startSession creates the session, sets its cookie and sends the browser on.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, org *store.Org, user store.User, owner *store.Org, id connection.Identity, rd, state string) {
	ctx := r.Context()
	addr := h.o.ClientIP.Addr(r)
	typ := owner.Connection.Type
	s := store.Session{UserID: user.ID, OrgID: org.ID, Connection: typ, MFA: id.MFA, LogoutHint: id.LogoutHint, ClientAddr: addr, UserAgent: r.UserAgent()}
	if id.Subject != "" {
		s.Federation, s.Subject = federation(owner), subjectOf(owner, id)
	}
	s, err := h.o.Sessions.CreateWith(ctx, s)
	if err == nil {
		err = h.o.Sessions.SetCookie(w, r, s)
	}
	if err != nil {
		h.signInError(w, r, org, "session", connection.Errorf(connection.KindInternal, "idp: create session: %w", err))
		return
	}
	h.o.Metrics.Logins.WithLabelValues(org.Slug, "success").Inc()
	h.o.Logger.Info("idp: signed in", "org", org.Slug, "user", user.ID, "connection", typ, "client", addr)
	h.audit(ctx, org.ID, user.ID, "login", "success", map[string]string{"connection": typ, "client": addr})
	h.complete(w, r, s.ID, org.ID, rd, state)
}

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

// provisionRetries bounds re-reads after racing another first sign-in.
const provisionRetries = 3

// provision maps a federated identity onto a user and a membership of
// org, creating them just in time unless the org forbids it, and updating
// mapped fields on every sign-in.
func (h *Handler) provision(ctx context.Context, org, owner *store.Org, id connection.Identity) (store.User, error) {
	p := owner.Connection.Provisioning
	email := strings.ToLower(strings.TrimSpace(first(id.Claims, p.Claims.Email, id.Email)))
	name := first(id.Claims, p.Claims.Name, id.Name)
	groups := id.Groups
	if p.Claims.Groups != "" {
		groups = id.Claims[p.Claims.Groups]
	}
	if email == "" {
		return store.User{}, connection.Errorf(connection.KindDenied, "provision: the IdP sent no email (claim %q)", orDefault(p.Claims.Email, "email"))
	}
	domain, err := EmailDomain(email)
	if err != nil {
		return store.User{}, connection.Errorf(connection.KindInvalid, "provision: malformed email %q", truncate(email, 100))
	}
	if !id.EmailVerified {
		return store.User{}, connection.Errorf(connection.KindDenied, "provision: the IdP does not mark %s verified (email_verified); the org may set allow_unverified_email", email)
	}
	domains := org.EmailDomains
	if len(domains) == 0 {
		domains = owner.EmailDomains
	}
	if !p.AnyEmailDomain && !containsFold(domains, domain) {
		return store.User{}, connection.Errorf(connection.KindWrongDomain, "provision: %s is not one of org %s's email domains %v", email, org.Slug, domains)
	}
	// Even an org that takes any domain cannot take one another org owns:
	// its IdP would sign in (and rename) that org's people.
	if d, ok := h.o.Orgs.ByEmailDomain(domain); ok && !h.sameOwner(d, owner) {
		return store.User{}, connection.Errorf(connection.KindWrongDomain, "provision: %s belongs to org %s, not to org %s's sign-in", email, d.Slug, org.Slug)
	}
	roles, ok := mapRoles(p, groups)
	if !ok {
		return store.User{}, connection.Errorf(connection.KindDenied, "provision: groups %v map to no role and the org has no default roles", groups)
	}
	attrs := map[string]string{}
	for attr, claim := range p.Claims.Attributes {
		if v := id.Claims[claim]; len(v) > 0 {
			attrs[attr] = strings.Join(v, ",")
		}
	}
	subject := subjectOf(owner, id)
	now := h.o.Now()
	for range provisionRetries {
		u, err := h.o.Store.GetUserByEmail(ctx, email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if p.ExistingUsersOnly {
				return store.User{}, connection.Errorf(connection.KindUnknownUser, "provision: no user %s and org %s creates none (existing_users_only)", email, org.Slug)
			}
			u = store.User{ID: "usr_" + strings.ToLower(token.RandomID()[:26]), Email: email, Name: name, CreatedAt: now, UpdatedAt: now}
			if err := h.o.Store.CreateUser(ctx, u); errors.Is(err, store.ErrAlreadyExists) {
				continue // another first sign-in won; read theirs
			} else if err != nil {
				return store.User{}, connection.Errorf(connection.KindInternal, "provision: create user: %w", err)
			}
			h.audit(ctx, org.ID, u.ID, "user.create", "success", map[string]string{"email": email, "via": owner.Connection.Type})
		case err != nil:
			return store.User{}, connection.Errorf(connection.KindInternal, "provision: read user: %w", err)
		case u.Disabled:
			return store.User{}, connection.Errorf(connection.KindDenied, "provision: user %s is disabled", u.ID)
		case p.AnyEmailDomain && !p.ExistingUsersOnly:
			// An address of no org's domains may already be a person of
			// another customer's IdP: joining them to this org needs an
			// admin (existing_users_only), not this IdP's word.
			if other, err := h.foreignMembership(ctx, u, owner); err != nil {
				return store.User{}, connection.Errorf(connection.KindInternal, "provision: read memberships: %w", err)
			} else if other != "" {
				if _, err := h.o.Store.GetMembership(ctx, u.ID, org.ID); errors.Is(err, store.ErrNotFound) {
					return store.User{}, connection.Errorf(connection.KindDenied, "provision: %s is a user of org %s, which signs in elsewhere; an admin must add them to org %s", email, other, org.Slug)
				}
			}
		case name != "" && name != u.Name && containsFold(org.EmailDomains, domain):
			// Only the org that owns the address renames the person.
			if u, err = h.o.Store.UpdateUser(ctx, u.ID, func(u store.User) (store.User, error) {
				u.Name, u.UpdatedAt = name, now
				return u, nil
			}); err != nil {
				return store.User{}, connection.Errorf(connection.KindInternal, "provision: update user: %w", err)
			}
		}
		err = h.member(ctx, org, u, subject, roles, groups, attrs, p, now)
		if errors.Is(err, store.ErrAlreadyExists) {
			continue
		}
		return u, err
	}
	return store.User{}, connection.Errorf(connection.KindInternal, "provision: %s: gave up after %d concurrent updates", email, provisionRetries)
}

// member creates or updates the membership (ErrAlreadyExists: retry).
func (h *Handler) member(ctx context.Context, org *store.Org, u store.User, subject string, roles, groups []string, attrs map[string]string, p store.Provisioning, now time.Time) error {
	_, err := h.o.Store.GetMembership(ctx, u.ID, org.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if p.ExistingUsersOnly {
			return connection.Errorf(connection.KindUnknownUser, "provision: %s is not a member of org %s, which creates none (existing_users_only)", u.Email, org.Slug)
		}
		m := store.Membership{UserID: u.ID, OrgID: org.ID, Roles: roles, Groups: groups, Subject: subject, Attributes: attrs, CreatedAt: now, UpdatedAt: now}
		if err := h.o.Store.CreateMembership(ctx, m); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return err
			}
			return connection.Errorf(connection.KindInternal, "provision: create membership: %w", err)
		}
		h.audit(ctx, org.ID, u.ID, "membership.create", "success", map[string]string{"roles": strings.Join(roles, ","), "subject": subject})
		return nil
	case err != nil:
		return connection.Errorf(connection.KindInternal, "provision: read membership: %w", err)
	}
	var linked error
	_, err = h.o.Store.UpdateMembership(ctx, u.ID, org.ID, func(m store.Membership) (store.Membership, error) {
		if m.Subject != "" && m.Subject != subject {
			linked = connection.Errorf(connection.KindDenied, "provision: %s is linked to IdP identity %q, this sign-in is %q", u.Email, m.Subject, subject)
			return m, linked
		}
		m.Subject = subject
		if len(p.GroupRoles) > 0 {
			m.Roles = roles // the IdP's groups are the source of truth
		}
		m.Groups, m.Attributes, m.UpdatedAt = groups, attrs, now
		return m, nil
	})
	if linked != nil {
		return linked
	}
	if err != nil {
		return connection.Errorf(connection.KindInternal, "provision: update membership: %w", err)
	}
	return nil
}

// sameOwner reports whether o signs in through owner's connection.
func (h *Handler) sameOwner(o, owner *store.Org) bool {
	oo, err := h.ownerOf(o)
	return err == nil && oo.ID == owner.ID
}

// foreignMembership names an org of u's that signs in through another
// connection than owner's ("" if none).
func (h *Handler) foreignMembership(ctx context.Context, u store.User, owner *store.Org) (string, error) {
	ms, err := h.o.Store.ListMembershipsByUser(ctx, u.ID)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if o, ok := h.o.Orgs.ByID(m.OrgID); ok && !h.sameOwner(o, owner) {
			return o.Slug, nil
		}
	}
	return "", nil
}

// mapRoles: the roles of the person's groups plus the default roles;
// false when that is none and the org gives no default.
func mapRoles(p store.Provisioning, groups []string) ([]string, bool) {
	defaults := p.DefaultRoles
	if defaults == nil {
		defaults = []string{"member"}
	}
	var roles []string
	add := func(rs []string) {
		for _, r := range rs {
			if !containsFold(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	for _, g := range groups {
		add(p.GroupRoles[g])
	}
	add(defaults)
	return roles, len(roles) > 0
}

// first is claims[name][0] when a mapping names a claim, else def.
func first(claims map[string][]string, name, def string) string {
	if name == "" {
		return def
	}
	if v := claims[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
