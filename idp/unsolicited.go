package idp

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// An IdP-initiated sign-in arrives as a cross-site POST, which carries no
// SameSite=Lax cookie: at the ACS Gatehouse cannot see whether this
// browser is already signed in as someone else. So the sign-in is held
// (in the store, bound to this browser by a cookie) and the browser comes
// back by a same-site GET, where it can: a browser signed in as another
// person, or to another org, is asked before its session is replaced.
const (
	unsolicitedKind = store.EphemeralPrefix + "unsolicited-signin"
	unsolicitedPath = "/.gatehouse/saml/continue"
	unsolicitedTTL  = 5 * time.Minute
)

type unsolicitedRecord struct {
	OrgID    string              `json:"org_id"`
	OwnerID  string              `json:"owner_id"`
	UserID   string              `json:"user_id"`
	Identity connection.Identity `json:"identity"`
	Landing  string              `json:"landing"`
	// Expires is fixed when the ACS holds the sign-in: asking again does
	// not extend it.
	Expires time.Time `json:"expires"`
}

func (h *Handler) unsolicitedCookie(r *http.Request) string {
	if request.IsSecure(r) {
		return "__Host-gatehouse_unsolicited"
	}
	return "_gatehouse_unsolicited"
}

// holdUnsolicited stores a verified IdP-initiated sign-in and sends the
// browser on to unsolicitedPath on this host.
func (h *Handler) holdUnsolicited(w http.ResponseWriter, r *http.Request, rec unsolicitedRecord) {
	secret := token.RandomID()
	rec.Expires = h.o.Now().Add(unsolicitedTTL)
	token, err := h.putUnsolicited(w, r, rec, secret)
	if err != nil {
		org, _ := h.o.Orgs.ByID(rec.OrgID)
		h.signInError(w, r, org, "acs", connection.Errorf(connection.KindInternal, "idp: hold idp-initiated sign-in: %w", err))
		return
	}
	http.Redirect(w, r, unsolicitedPath+"?t="+token, http.StatusSeeOther)
}

// putUnsolicited stores rec for the browser holding secret (in its
// cookie, set here) and returns the token that, with it, takes rec back.
func (h *Handler) putUnsolicited(w http.ResponseWriter, r *http.Request, rec unsolicitedRecord, secret string) (string, error) {
	token := token.RandomID()
	b, err := json.Marshal(rec)
	if err != nil {
		return "", err
	}
	left := rec.Expires.Sub(h.o.Now())
	if left <= 0 {
		return "", errors.New("the held sign-in expired")
	}
	if err := h.o.Store.PutOnce(r.Context(), unsolicitedKind, flowKey(token, secret), b, rec.Expires); err != nil {
		return "", err
	}
	http.SetCookie(w, &http.Cookie{Name: h.unsolicitedCookie(r), Value: secret, Path: "/", MaxAge: max(1, int(left/time.Second)),
		HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
	return token, nil
}

// unsolicitedContinue finishes a held IdP-initiated sign-in: at once if
// the browser has no session here, or one of the same person in the same
// org; otherwise after the person chose (POST, with the CSRF token).
func (h *Handler) unsolicitedContinue(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	tok := r.FormValue("t")
	cv, ok := request.CookieValue(r, h.unsolicitedCookie(r))
	if !ok || !token.ValidToken(tok, 16, 64) || !token.ValidToken(cv, 16, 64) {
		h.flowRefused(w, r, "IdP-initiated sign-in continued without its token or browser cookie")
		return
	}
	if r.Method == http.MethodPost && !h.checkCSRF(r) {
		h.flowRefused(w, r, "IdP-initiated sign-in choice without a valid CSRF token")
		return
	}
	b, err := h.o.Store.TakeOnce(r.Context(), unsolicitedKind, flowKey(tok, cv))
	if h.storeDown(w, err, "IdP-initiated sign-in") {
		return
	}
	var rec unsolicitedRecord
	if err != nil || json.Unmarshal(b, &rec) != nil || !h.o.Now().Before(rec.Expires) {
		h.flowRefused(w, r, "unknown, used or expired IdP-initiated sign-in")
		return
	}
	org, ok1 := h.o.Orgs.ByID(rec.OrgID)
	owner, ok2 := h.o.Orgs.ByID(rec.OwnerID)
	user, err := h.o.Store.GetUser(r.Context(), rec.UserID)
	if !ok1 || !ok2 || err != nil {
		h.flowRefused(w, r, "IdP-initiated sign-in for an org or user that is gone")
		return
	}
	if !h.samlHostOf(r, org) {
		h.flowRefused(w, r, "IdP-initiated sign-in continued on another host")
		return
	}
	if r.Method == http.MethodPost && r.PostFormValue("choice") == "stay" {
		h.o.Logger.Info("idp: idp-initiated sign-in declined; the existing session stays", "org", org.Slug)
		http.SetCookie(w, &http.Cookie{Name: h.unsolicitedCookie(r), Path: "/", MaxAge: -1, HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
		http.Redirect(w, r, rec.Landing, http.StatusSeeOther)
		return
	}
	if r.Method == http.MethodGet && h.otherSession(r, user.ID, org.ID) {
		// Ask; the record is stored again under a new token.
		tok, err := h.putUnsolicited(w, r, rec, cv)
		if err != nil {
			h.signInError(w, r, org, "acs", connection.Errorf(connection.KindInternal, "idp: hold idp-initiated sign-in: %w", err))
			return
		}
		h.o.Logger.Info("idp: idp-initiated sign-in would replace another session; asking", "org", org.Slug)
		h.renderSwitch(w, r, rec, tok)
		return
	}
	if r.Method == http.MethodPost {
		// The person chose to switch: the other session ends everywhere
		// (its cookies on other hosts too), so no host keeps it.
		if sid, err := h.o.Sessions.SessionID(r); err == nil && h.otherSession(r, user.ID, org.ID) {
			if err := h.o.Sessions.Revoke(r.Context(), sid); err != nil {
				h.signInError(w, r, org, "acs", connection.Errorf(connection.KindInternal, "idp: end the replaced session: %w", err))
				return
			}
		}
	}
	http.SetCookie(w, &http.Cookie{Name: h.unsolicitedCookie(r), Path: "/", MaxAge: -1, HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
	h.startSession(w, r, org, user, owner, rec.Identity, rec.Landing, "")
}

// otherSession reports whether this browser has an active session here
// of another person or in another org.
func (h *Handler) otherSession(r *http.Request, userID, orgID string) bool {
	sid, err := h.o.Sessions.SessionID(r)
	if err != nil {
		return false
	}
	e, err := h.o.Sessions.Lookup(r.Context(), sid)
	if err != nil {
		// No session (revoked or unknown); if the store could not say,
		// ask rather than replace one unasked.
		return !errors.Is(err, session.ErrRevoked)
	}
	id := e.Identity()
	return id.UserID != userID || id.OrgID != orgID
}

func (h *Handler) renderSwitch(w http.ResponseWriter, r *http.Request, rec unsolicitedRecord, token string) {
	org, _ := h.o.Orgs.ByID(rec.OrgID)
	p := h.page(r, w, org, "")
	p.Title = "Switch account?"
	p.Notice = "Your identity provider signed you in as " + rec.Identity.Email + ". This browser is already signed in as someone else here. Continue as " + rec.Identity.Email + "? Choose this only if you just opened the application from your identity provider yourself."
	p.Email, p.State, p.Action, p.CSRF = rec.Identity.Email, token, unsolicitedPath, h.csrfToken(w, r)
	web.Render(w, http.StatusOK, "switch", p)
}

// samlHostOf reports whether r is on the host org's SAML endpoints use.
func (h *Handler) samlHostOf(r *http.Request, org *store.Org) bool {
	if org.LoginDomain != "" {
		return strings.EqualFold(request.Host(r), org.LoginDomain)
	}
	return strings.EqualFold(request.Host(r), h.o.PublicURL.Hostname())
}
