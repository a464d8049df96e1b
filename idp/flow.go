package idp

import (
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
	"github.com/gatehouse/gatehouse/store"
)

// CallbackPath is where OIDC IdPs send the browser back.
const CallbackPath = "/.gatehouse/callback"

const (
	flowKind = store.EphemeralPrefix + "login-flow"
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
	ConnKey string `json:"conn_key"`
	Type    string `json:"type"`
	// Post: the answer arrives as a POST to the ACS (connection.PostBinding).
	Post     bool   `json:"post,omitempty"`
	Host     string `json:"host"`
	Callback string `json:"callback"`
	Hint     string `json:"hint,omitempty"`
	RD       string `json:"rd,omitempty"`
	State    string `json:"state,omitempty"` // the hand-off state
	// Invite is the hash of the invitation this sign-in accepts.
	Invite string          `json:"invite,omitempty"`
	Conn   json.RawMessage `json:"conn"`
	// Test: an admin's test sign-in through a draft connection, which
	// ends in a trace, not a session (ssotest.go).
	Test *SSOTest `json:"test,omitempty"`
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
func (h *Handler) beginRedirect(w http.ResponseWriter, r *http.Request, org, owner *store.Org, c connection.Redirect, rd, hint, invite string) {
	now := h.o.Now()
	if ok, until := h.flowStarts.take(throttleAddr(h.o.ClientIP.Addr(r)), now); !ok {
		ref := h.logRef("idp: sign-in flows throttled for address "+h.o.ClientIP.Addr(r), nil)
		h.o.Metrics.Logins.WithLabelValues(org.Slug, "throttled").Inc()
		w.Header().Set("Retry-After", retryAfter(until, now))
		web.Error(w, http.StatusTooManyRequests, "Too many sign-ins were started from your network. Try again in "+wait(until, now)+".", ref)
		return
	}
	if err := h.startFlow(w, r, org, owner, c, owner.Connection.Type, rd, hint, invite, nil); err != nil {
		h.signInError(w, r, org, "begin", err)
		return
	}
}

// startFlow begins a redirect sign-in with c: the flow record in the
// store, its cookie, and the browser sent to the IdP. test marks an
// admin's test sign-in of a draft connection.
func (h *Handler) startFlow(w http.ResponseWriter, r *http.Request, org, owner *store.Org, c connection.Redirect, typ, rd, hint, invite string, test *SSOTest) error {
	state := token.RandomID()
	secret := token.RandomID()
	// The callback is on this host (checked by the caller), with the
	// public URL's scheme and port: never taken from the Host header.
	cb := url.URL{Scheme: h.o.PublicURL.Scheme, Host: withPort(request.Host(r), h.o.PublicURL.Port()), Path: CallbackPath}
	req := connection.BeginRequest{State: state, CallbackURL: cb.String(), LoginHint: hint, Fresh: fresh(r) != "",
		RequireMFA: h.o.Orgs.Rules(org.ID).RequireMFA != "" && h.o.Orgs.Rules(org.ID).RequireMFA != store.MFAOff}
	to, data, err := c.Begin(r.Context(), req)
	if err != nil {
		return err
	}
	_, post := c.(connection.PostBinding)
	key := connKey(owner)
	if test != nil {
		key = ""
	}
	rec := flowRecord{OrgID: org.ID, ConnKey: key, Type: typ, Post: post,
		Host: request.Host(r), Callback: req.CallbackURL, Hint: hint, RD: rd, State: stateParam(r), Invite: invite, Conn: data, Test: test}
	b, err := json.Marshal(rec)
	if err == nil {
		err = h.o.Store.PutOnce(r.Context(), flowKind, flowKey(state, secret), b, h.o.Now().Add(flowTTL))
	}
	if err != nil {
		return connection.Errorf(connection.KindInternal, "idp: store flow: %w", err)
	}
	// SameSite=Lax reaches the callback of a top-level GET from the IdP; a
	// SAML response is a cross-site POST, which only SameSite=None (with
	// Secure) cookies reach, or, on plain-HTTP development setups,
	// browsers' "Lax by default" allowance for fresh cookies.
	sameSite := http.SameSiteLaxMode
	if post {
		sameSite = http.SameSiteDefaultMode
		if request.IsSecure(r) {
			sameSite = http.SameSiteNoneMode
		}
	}
	http.SetCookie(w, &http.Cookie{Name: flowCookieName(r, state), Value: secret, Path: "/", MaxAge: int(flowTTL / time.Second),
		HttpOnly: true, Secure: request.IsSecure(r), SameSite: sameSite})
	h.o.Logger.Info("idp: sign-in sent to the IdP", "org", org.Slug, "connection", typ, "test", test != nil)
	http.Redirect(w, r, to, http.StatusSeeOther)
	return nil
}

// flowKey is the store key of a flow: a digest of its state and the
// browser's secret.
func flowKey(state, secret string) string {
	sum := sha256.Sum256([]byte(state + "\x00" + secret))
	return hex.EncodeToString(sum[:])
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
	var cv any
	if err == nil && owner.ID == org.ID {
		if cv, err = h.o.Connections.Get(r.Context(), owner); err != nil {
			h.signInError(w, r, org, "acs", err)
			return
		}
	}
	if _, post := cv.(connection.PostBinding); !post {
		h.wrongOrgAddress(w, r, org, "SAML response at the ACS of org "+org.Slug+", which has no SAML connection of its own")
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
	user, err := h.provision(r.Context(), org, owner, id, nil)
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
	if rec.Test != nil {
		if (acsOrg != nil) != rec.Post {
			h.flowRefused(w, r, "a test "+rec.Type+" sign-in answered at the wrong endpoint")
			return true
		}
		h.finishTest(w, r, state, rec, acsOrg)
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
	if (acsOrg != nil) != rec.Post {
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
	var inv *store.Invitation
	if rec.Invite != "" {
		taken, ok := h.takeFlowInvite(w, r, org, owner, rec.Invite, identityEmail(owner, id))
		if !ok {
			return true
		}
		inv = &taken
	}
	user, err := h.provision(ctx, org, owner, id, inv)
	if err != nil && inv != nil {
		h.restoreInvite(ctx, *inv)
		h.acceptFailed(w, r, org, *inv, err)
		return true
	}
	if err != nil {
		h.audit(ctx, org.ID, strings.ToLower(id.Email), "login", "failure", map[string]string{"connection": owner.Connection.Type, "reason": err.Error(), "client": h.o.ClientIP.Addr(r)})
		h.signInError(w, r, org, "provision", err)
		return true
	}
	if inv != nil {
		h.audit(ctx, org.ID, user.ID, "invitation.accept", "success", map[string]string{"invitation": inv.ID, "email": inv.Email, "roles": strings.Join(inv.Roles, ",")})
	}
	h.startSession(w, r, org, user, owner, id, rec.RD, rec.State)
	return true
}

// startSession creates the session, sets its cookie and sends the browser on.
func (h *Handler) startSession(w http.ResponseWriter, r *http.Request, org *store.Org, user store.User, owner *store.Org, id connection.Identity, rd, state string) {
	sid, err := h.newSession(w, r, org, user, owner, id)
	if errors.Is(err, errIdPWithoutMFA) && h.o.Orgs.Rules(org.ID).MFAAfterIdP {
		// The org adds Gatehouse's own second step to its IdP's sign-in.
		m, err := h.o.Store.GetMembership(r.Context(), user.ID, org.ID)
		if err != nil {
			h.signInError(w, r, org, "mfa", connection.Errorf(connection.KindInternal, "idp: read membership: %w", err))
			return
		}
		h.beginSecondStep(w, r, org, pending{UserID: user.ID, Email: id.Email, OrgID: org.ID, OwnerID: owner.ID, ID: id, RD: rd, State: state,
			Enroll: !h.hasAllowed(org.ID, m.Factors)})
		return
	}
	if errors.Is(err, errIdPWithoutMFA) {
		ref := h.ref()
		h.o.Metrics.Logins.WithLabelValues(org.Slug, "mfa_missing").Inc()
		h.o.Logger.Warn("idp: sign-in refused: the org requires a second factor the IdP did not report", "ref", ref, "org", org.Slug, "user", user.ID)
		h.audit(r.Context(), org.ID, user.ID, "login", "failure", map[string]string{"reason": "no second factor at the IdP", "client": h.o.ClientIP.Addr(r)})
		web.Render(w, http.StatusForbidden, "error", web.Page{Title: "A second factor is required",
			Error: orgName(org) + " requires multi-factor authentication, and your identity provider did not report one for this sign-in. " +
				"Sign in again and complete your identity provider's second step, or ask your administrator to require it there.",
			Reference: ref, Back: LoginPath, BackText: "Sign in again"})
		return
	}
	if err != nil {
		h.signInError(w, r, org, "session", connection.Errorf(connection.KindInternal, "idp: create session: %w", err))
		return
	}
	h.complete(w, r, sid, org.ID, rd, state)
}

// amrOf are a sign-in's methods: pwd for the password pool, the second
// step's, and mfa when there were two factors (here or at the IdP).
func amrOf(typ string, id connection.Identity) []string {
	var amr []string
	if typ == "password" && !id.Passwordless {
		amr = append(amr, "pwd")
	}
	amr = append(amr, id.AMR...)
	if id.MFA {
		amr = append(amr, "mfa")
	}
	return amr
}

// errIdPWithoutMFA: the org requires a second factor for the person and
// their IdP's sign-in did not report one.
var errIdPWithoutMFA = errors.New("idp: the org requires a second factor the IdP did not report")

// newSession creates the session of a finished sign-in and sets its
// cookie. A federated sign-in of a person the org requires a second
// factor of must show one (the IdP's amr or AuthnContextClassRef).
func (h *Handler) newSession(w http.ResponseWriter, r *http.Request, org *store.Org, user store.User, owner *store.Org, id connection.Identity) (string, error) {
	ctx := r.Context()
	addr := h.o.ClientIP.Addr(r)
	typ := owner.Connection.Type
	if !id.MFA && id.Subject != "" {
		if rule := h.o.Orgs.Rules(org.ID).RequireMFA; rule == store.MFAAll {
			return "", errIdPWithoutMFA
		} else if rule == store.MFAAdmins {
			m, err := h.o.Store.GetMembership(ctx, user.ID, org.ID)
			if err != nil {
				return "", err
			}
			if store.MFARequired(rule, m.Roles) {
				return "", errIdPWithoutMFA
			}
		}
	}
	s := store.Session{UserID: user.ID, OrgID: org.ID, Connection: typ, MFA: id.MFA, AMR: amrOf(typ, id), LogoutHint: id.LogoutHint, ClientAddr: addr, UserAgent: r.UserAgent()}
	if id.MFA {
		s.MFAAt = h.o.Now().UTC()
		if !id.MFAAt.IsZero() {
			s.MFAAt = id.MFAAt.UTC()
		}
	}
	if id.Subject != "" {
		s.Federation, s.Subject = federation(owner), subjectOf(owner, id)
	}
	s, err := h.o.Sessions.CreateWith(ctx, s)
	if err == nil {
		err = h.o.Sessions.SetCookie(w, r, s)
	}
	if err != nil {
		return "", err
	}
	h.boundSessions(r, user.ID, org.ID, s.ID)
	h.o.Metrics.Logins.WithLabelValues(org.Slug, "success").Inc()
	h.o.Logger.Info("idp: signed in", "org", org.Slug, "user", user.ID, "connection", typ, "mfa", id.MFA, "client", addr)
	h.audit(ctx, org.ID, user.ID, "login", "success", map[string]string{"connection": typ, "mfa": fmt.Sprint(id.MFA), "client": addr})
	return s.ID, nil
}
