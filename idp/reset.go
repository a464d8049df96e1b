package idp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// Password reset for an org's password pool, by an emailed link: the
// request page answers the same whether or not the address has an
// account (and is throttled per address and per account); the link
// carries a 256-bit secret of which the store keeps the hash, works once
// for resetTTL, and setting the password ends the person's sessions in
// the org. A second factor is still asked at the next sign-in.
const (
	ResetPath  = "/.gatehouse/reset"
	resetKind  = "pw-reset"
	resetTTL   = 30 * time.Minute
	resetWords = "30 minutes"
)

type resetRecord struct {
	UserID string `json:"u"`
	OrgID  string `json:"o"`
}

func resetHash(secret string) string {
	sum := sha256.Sum256([]byte("gatehouse password reset\x00" + secret))
	return hex.EncodeToString(sum[:])
}

// resetOffered: the org signs in with its password pool and email goes
// out.
func (h *Handler) resetOffered(org *store.Org) bool {
	if h.o.Queue == nil || org == nil {
		return false
	}
	owner, err := h.ownerOf(org)
	return err == nil && owner.Connection.Type == "password"
}

func (h *Handler) resetPage(w http.ResponseWriter, r *http.Request, org *store.Org, status int, step, msg, notice string) {
	p := h.page(r, w, org, "")
	p.Title, p.Step, p.Error, p.Notice, p.Action = "Reset your password", step, msg, notice, ResetPath
	if org != nil && !strings.EqualFold(org.LoginDomain, request.Host(r)) {
		p.Action = ResetPath + "?org=" + url.QueryEscape(org.Slug)
	}
	p.Back, p.BackText = h.loginURL(request.Host(r), "org", orgSlugIfShared(org, r)), "Back to sign-in"
	w.Header().Set("Cache-Control", "no-store")
	web.Render(w, status, "reset", p)
}

func orgSlugIfShared(org *store.Org, r *http.Request) string {
	if org == nil || strings.EqualFold(org.LoginDomain, request.Host(r)) {
		return ""
	}
	return org.Slug
}

// resetShow is the request form, or, with a link's token, the new
// password form.
func (h *Handler) resetShow(w http.ResponseWriter, r *http.Request) {
	org := h.fixedOrg(r)
	if !h.resetOffered(org) {
		h.resetPage(w, r, org, http.StatusNotFound, "none", "Password reset is not offered here. Ask your administrator.", "")
		return
	}
	secret := r.URL.Query().Get("token")
	if secret == "" {
		h.resetPage(w, r, org, http.StatusOK, "request", "", "")
		return
	}
	if !token.ValidToken(secret, 43, 43) {
		h.resetPage(w, r, org, http.StatusGone, "request", "This link is not valid. Ask for a new one.", "")
		return
	}
	if _, err := h.o.Store.GetOnce(r.Context(), resetKind, resetHash(secret)); err != nil {
		if h.storeDown(w, err, "password reset") {
			return
		}
		h.resetPage(w, r, org, http.StatusGone, "request", "This link expired or was used already. Ask for a new one.", "")
		return
	}
	p := h.page(r, w, org, "")
	p.Title, p.Step, p.Invite, p.Action = "Choose a new password", "set", secret, ResetPath
	if org != nil && !strings.EqualFold(org.LoginDomain, request.Host(r)) {
		p.Action = ResetPath + "?org=" + url.QueryEscape(org.Slug)
	}
	w.Header().Set("Cache-Control", "no-store")
	web.Render(w, http.StatusOK, "reset", p)
}

func (h *Handler) resetSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.readForm(w, r, "Reload the page and try again.") {
		return
	}
	org := h.fixedOrg(r)
	if !h.resetOffered(org) {
		h.resetPage(w, r, org, http.StatusNotFound, "none", "Password reset is not offered here. Ask your administrator.", "")
		return
	}
	if r.PostFormValue("step") == "set" {
		h.resetSet(w, r, org)
		return
	}
	now := h.o.Now()
	email := strings.ToLower(strings.TrimSpace(r.PostFormValue("email")))
	same := "If " + email + " has an account at " + orgName(org) + ", we emailed it a link to choose a new password. It works for " + resetWords + "."
	if email == "" || len(email) > 254 || !strings.Contains(email, "@") {
		h.resetPage(w, r, org, http.StatusUnprocessableEntity, "request", "Enter the email address you sign in with.", "")
		return
	}
	addr := h.o.ClientIP.Addr(r)
	if ok, until := h.resets.take(throttleAddr(addr), now); !ok {
		w.Header().Set("Retry-After", retryAfter(until, now))
		h.resetPage(w, r, org, http.StatusTooManyRequests, "request", "Too many requests from your network. Try again in "+wait(until, now)+".", "")
		return
	}
	// The account's budget: the same answer when it is spent, so that it
	// tells nothing either.
	if ok, _ := h.resets.take("acct|"+org.ID+"|"+email, now); !ok {
		h.o.Logger.Info("idp: password reset throttled for an account", "org", org.Slug, "client", addr)
		h.resetPage(w, r, org, http.StatusOK, "sent", "", same)
		return
	}
	if err := h.queueReset(r, org, email, now); err != nil {
		h.o.Logger.Error("idp: password reset not queued", "org", org.Slug, "err", err)
	}
	h.resetPage(w, r, org, http.StatusOK, "sent", "", same)
}

// queueReset emails a link if email names a person of org's password pool
// whose password is the org's (not the config file's), else nothing.
func (h *Handler) queueReset(r *http.Request, org *store.Org, email string, now time.Time) error {
	ctx := r.Context()
	u, err := h.o.Store.GetUserByEmail(ctx, email)
	if err != nil {
		return nil // no such person: the same answer, no email
	}
	m, err := h.o.Store.GetMembership(ctx, u.ID, org.ID)
	if err != nil || m.Disabled || u.Disabled || m.Declared {
		h.audit(ctx, org.ID, u.ID, "password.reset_request", "failure", map[string]string{"reason": "no resettable password here"})
		return nil
	}
	secret := token.RandomID()
	b, _ := json.Marshal(resetRecord{UserID: u.ID, OrgID: org.ID})
	if err := h.o.Store.PutOnce(ctx, resetKind, resetHash(secret), b, now.Add(resetTTL)); err != nil {
		return err
	}
	link := SignInURL(*h.o.PublicURL, org)
	link.Path = ResetPath
	q := url.Values{"token": {secret}}
	if org.LoginDomain == "" {
		q.Set("org", org.Slug)
	}
	link.RawQuery = q.Encode()
	msg, err := h.Message(org, notify.PasswordReset, notify.Fields{User: notify.User{Name: u.Name, Email: u.Email}, Link: link.String(), Expires: resetWords})
	if err != nil {
		return err
	}
	if err := h.o.Queue(ctx, org.ID, string(notify.PasswordReset), u.Email, msg); err != nil {
		return err
	}
	h.audit(ctx, org.ID, u.ID, "password.reset_request", "success", map[string]string{"client": h.o.ClientIP.Addr(r)})
	return nil
}

// resetSet sets the new password of a link, once, and ends the person's
// sessions in the org.
func (h *Handler) resetSet(w http.ResponseWriter, r *http.Request, org *store.Org) {
	ctx := r.Context()
	secret := r.PostFormValue("token")
	pw, pw2 := r.PostFormValue("password"), r.PostFormValue("password2")
	again := func(status int, msg string) {
		p := h.page(r, w, org, "")
		p.Title, p.Step, p.Invite, p.Error, p.Action = "Choose a new password", "set", secret, msg, ResetPath
		if org != nil && !strings.EqualFold(org.LoginDomain, request.Host(r)) {
			p.Action = ResetPath + "?org=" + url.QueryEscape(org.Slug)
		}
		web.Render(w, status, "reset", p)
	}
	switch {
	case !token.ValidToken(secret, 43, 43):
		h.resetPage(w, r, org, http.StatusGone, "request", "This link is not valid. Ask for a new one.", "")
		return
	case password.Problem(pw) != "":
		again(http.StatusUnprocessableEntity, "Your password "+password.Problem(pw)+".")
		return
	case pw != pw2:
		again(http.StatusUnprocessableEntity, "The two passwords differ. Type the same password twice.")
		return
	}
	hash, err := password.Hash(pw)
	if err != nil {
		h.signInError(w, r, org, "reset", connection.Errorf(connection.KindInternal, "idp: %w", err))
		return
	}
	b, err := h.o.Store.TakeOnce(ctx, resetKind, resetHash(secret))
	if h.storeDown(w, err, "password reset") {
		return
	}
	var rec resetRecord
	if err != nil || json.Unmarshal(b, &rec) != nil || rec.OrgID != org.ID {
		h.resetPage(w, r, org, http.StatusGone, "request", "This link expired or was used already. Ask for a new one.", "")
		return
	}
	if _, err := h.o.Store.UpdateMembership(ctx, rec.UserID, rec.OrgID, func(m store.Membership) (store.Membership, error) {
		m.PasswordHash, m.UpdatedAt = hash, h.o.Now().UTC()
		return m, nil
	}); err != nil {
		if h.storeDown(w, err, "password reset") {
			return
		}
		h.resetPage(w, r, org, http.StatusGone, "request", "This account changed meanwhile. Ask for a new link.", "")
		return
	}
	ended := 0
	if ss, err := h.o.Store.ListSessionsByUser(ctx, rec.UserID); err == nil {
		for _, s := range ss {
			if s.OrgID == rec.OrgID && s.RevokedAt.IsZero() && h.o.Sessions.Revoke(ctx, s.ID) == nil {
				ended++
			}
		}
	}
	h.audit(ctx, org.ID, rec.UserID, "password.reset", "success", map[string]string{"sessions_ended": strconv.Itoa(ended), "client": h.o.ClientIP.Addr(r)})
	p := h.page(r, w, org, "")
	p.Notice = "Your password is changed, and your other sessions here ended. Sign in with the new one."
	web.Render(w, http.StatusOK, "login", p)
}
