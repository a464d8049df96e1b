package idp

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image/png"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// The second step of a password sign-in: a person whose org requires a
// second factor, or who has one, proves it here before any session
// exists. Until then the sign-in is a pending record in the store, bound
// to the browser by a cookie holding its 256-bit ID, good for
// pendingTTL and maxMFATries wrong codes.
const (
	MFAPath         = "/.gatehouse/mfa"
	mfaQRPath       = MFAPath + "/qr"
	mfaContinuePath = MFAPath + "/continue"
	pendingKind     = store.EphemeralPrefix + "mfa-pending"
	pendingTTL      = 10 * time.Minute
	maxMFATries     = 5
	recoveryCodes   = 10
	// totpSkew accepts the codes of the steps next to the current one
	// (clocks a little off, a code typed at the turn of a step).
	totpSkew = 1
)

// pending is a sign-in whose first factor passed.
type pending struct {
	UserID  string              `json:"user_id"`
	Email   string              `json:"email"`
	OrgID   string              `json:"org_id"`
	OwnerID string              `json:"owner_id"`
	ID      connection.Identity `json:"identity"`
	RD      string              `json:"rd,omitempty"`
	State   string              `json:"state,omitempty"`
	// Enroll: the person has no factor yet and sets one up now; Secret is
	// the new TOTP key.
	Enroll bool   `json:"enroll,omitempty"`
	Secret string `json:"secret,omitempty"`
	Tries  int    `json:"tries,omitempty"`
	// WebAuthn is the passkey ceremony the page last offered (nil: none
	// pending); a failed or finished attempt clears it, so that an
	// answer to it is good once.
	WebAuthn *webauthn.SessionData `json:"webauthn,omitempty"`
	// EmailCode is the hash of the code last emailed (good until
	// EmailUntil); EmailSends counts the codes sent.
	EmailCode  string    `json:"email_code,omitempty"`
	EmailUntil time.Time `json:"email_until,omitzero"`
	EmailSends int       `json:"email_sends,omitempty"`
	// SID is the session made after enrollment, waiting for the person
	// to continue past their recovery codes.
	SID string `json:"sid,omitempty"`
	// StepUp is the open session a step-up proves a second factor for
	// (no new session is made).
	StepUp string `json:"step_up,omitempty"`
}

func (h *Handler) mfaCookieName(r *http.Request) string {
	if request.IsSecure(r) {
		return "__Host-gatehouse_mfa"
	}
	return "_gatehouse_mfa"
}

// secondFactor follows a first factor that passed: a session at once if
// the person neither needs nor has a second factor, else the second step.
func (h *Handler) secondFactor(w http.ResponseWriter, r *http.Request, org, owner *store.Org, email string, id connection.Identity, rd, state string) {
	ctx := r.Context()
	mem, err := h.o.Store.GetMembership(ctx, id.UserID, org.ID)
	if err != nil {
		h.signInError(w, r, org, "mfa", connection.Errorf(connection.KindInternal, "idp: read membership: %w", err))
		return
	}
	required := store.MFARequired(h.o.Orgs.Rules(org.ID).RequireMFA, mem.Roles)
	has := h.hasAllowed(org.ID, mem.Factors)
	if !required && !has {
		h.startSession(w, r, org, store.User{ID: id.UserID}, owner, id, rd, state)
		return
	}
	// A browser the person told to remember them skips the step (its
	// proof keeps its own time: a policy asking for a recent one still
	// asks).
	if d, ok := h.rememberedFor(r, id.UserID, org.ID, mem.Factors, h.o.Now()); ok && has {
		id.MFA, id.MFAAt = true, d.At
		id.AMR = append(id.AMR, d.Factor)
		h.audit(ctx, org.ID, id.UserID, "mfa.verify", "success", map[string]string{"factor": "remembered_device", "client": h.o.ClientIP.Addr(r)})
		h.startSession(w, r, org, store.User{ID: id.UserID}, owner, id, rd, state)
		return
	}
	h.beginSecondStep(w, r, org, pending{UserID: id.UserID, Email: email, OrgID: org.ID, OwnerID: owner.ID, ID: id, RD: rd, State: state, Enroll: !has})
}

// beginSecondStep stores the pending sign-in (with a new authenticator
// key if the person enrolls), binds it to the browser and shows its page.
func (h *Handler) beginSecondStep(w http.ResponseWriter, r *http.Request, org *store.Org, p pending) {
	ctx := r.Context()
	if p.Enroll && h.allows(p.OrgID, store.FactorTOTP) {
		key, err := totp.Generate(totp.GenerateOpts{Issuer: orgName(org), AccountName: p.Email, Rand: rand.Reader})
		if err != nil {
			h.signInError(w, r, org, "mfa", connection.Errorf(connection.KindInternal, "idp: totp key: %w", err))
			return
		}
		p.Secret = key.Secret()
	}
	pid := token.RandomID()
	b, _ := json.Marshal(p)
	if err := h.o.Store.PutOnce(ctx, pendingKind, pid, b, h.o.Now().Add(pendingTTL)); err != nil {
		h.signInError(w, r, org, "mfa", connection.Errorf(connection.KindInternal, "idp: store pending sign-in: %w", err))
		return
	}
	http.SetCookie(w, &http.Cookie{Name: h.mfaCookieName(r), Value: pid, Path: "/", MaxAge: int(pendingTTL / time.Second),
		HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, MFAPath, http.StatusSeeOther)
}

func orgName(o *store.Org) string {
	if o.Name != "" {
		return o.Name
	}
	return o.Slug
}

// pendingOf reads the browser's pending sign-in.
func (h *Handler) pendingOf(r *http.Request) (string, pending, error) {
	pid, ok := request.CookieValue(r, h.mfaCookieName(r))
	if !ok || !token.ValidToken(pid, 43, 43) {
		return "", pending{}, errors.New("no pending sign-in cookie")
	}
	b, err := h.o.Store.GetOnce(r.Context(), pendingKind, pid)
	if err != nil {
		return "", pending{}, fmt.Errorf("pending sign-in: %w", err)
	}
	var p pending
	if err := json.Unmarshal(b, &p); err != nil {
		return "", pending{}, fmt.Errorf("pending sign-in: %w", err)
	}
	return pid, p, nil
}

// mfaExpired answers a request without a pending sign-in.
func (h *Handler) mfaExpired(w http.ResponseWriter, r *http.Request, reason string) {
	ref := h.ref()
	h.o.Logger.Info("idp: second step refused", "ref", ref, "reason", reason, "client", h.o.ClientIP.Addr(r))
	web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Sign in again",
		Error: "This sign-in took too long or was finished already. Sign in again.", Reference: ref, Back: LoginPath, BackText: "Sign in"})
}

func (h *Handler) mfaPage(w http.ResponseWriter, r *http.Request, pid string, p pending, status int, msg string) {
	h.renderMFA(w, r, pid, p, status, msg, "")
}

func (h *Handler) renderMFA(w http.ResponseWriter, r *http.Request, pid string, p pending, status int, msg, notice string) {
	org, _ := h.o.Orgs.ByID(p.OrgID)
	pg := h.page(r, w, org, "")
	pg.Title, pg.Action, pg.Error, pg.Notice, pg.Email = "Second step", MFAPath, msg, notice, p.Email
	pg.Step = "verify"
	if p.Enroll {
		pg.Step, pg.Title = "enroll", "Set up a second factor"
		if p.Secret != "" {
			pg.Secret = groupSecret(p.Secret)
			pg.OTPAuth = template.URL(otpauthURL(org, p)) // built here: otpauth://totp/…
			pg.Image = mfaQRPath
		}
	}
	if window := h.o.Orgs.Rules(p.OrgID).RememberDevice; window > 0 && p.StepUp == "" {
		pg.RememberFor = rememberText(window)
	}
	pg.PasskeyOptions, pg.PasskeyMode = h.offerPasskey(r, pid, p)
	if !p.Enroll && h.allows(p.OrgID, store.FactorEmail) {
		pg.Link = "email" // the page offers to email a code
	}
	pg.Scripts = pg.PasskeyOptions != ""
	w.Header().Set("Cache-Control", "no-store")
	web.Render(w, status, "mfa", pg)
}

// mfaPageNotice is the second step's page with a notice.
func (h *Handler) mfaPageNotice(w http.ResponseWriter, r *http.Request, pid string, p pending, notice string) {
	h.renderMFA(w, r, pid, p, http.StatusOK, "", notice)
}

// offerPasskey begins the page's passkey ceremony: registration when
// enrolling, a login when the person has passkeys on this host. Its
// session goes with the pending sign-in.
func (h *Handler) offerPasskey(r *http.Request, pid string, p pending) (template.JS, string) {
	ctx := r.Context()
	wa, err := h.relyingParty(r)
	if err != nil || !h.allows(p.OrgID, store.FactorPasskey) {
		return "", ""
	}
	user, _, err := h.waUserOf(ctx, p.UserID, p.OrgID, request.Host(r))
	if err != nil {
		h.o.Logger.Warn("idp: passkey ceremony not offered", "user", p.UserID, "err", err)
		return "", ""
	}
	var (
		opts any
		sd   *webauthn.SessionData
		mode string
	)
	switch {
	case p.Enroll:
		opts, sd, err = wa.BeginRegistration(user)
		mode = "create"
	case len(user.creds) > 0:
		opts, sd, err = wa.BeginLogin(user)
		mode = "get"
	default:
		return "", ""
	}
	if err == nil {
		err = h.o.Store.UpdateOnce(ctx, pendingKind, pid, func(b []byte) ([]byte, error) {
			var cur pending
			if err := json.Unmarshal(b, &cur); err != nil {
				return nil, err
			}
			cur.WebAuthn = sd
			return json.Marshal(cur)
		})
	}
	if err != nil {
		h.o.Logger.Warn("idp: passkey ceremony not offered", "user", p.UserID, "err", err)
		return "", ""
	}
	return optionsJSON(opts), mode
}

// otpauthURL is the enrollment's key as authenticator apps take it.
func otpauthURL(org *store.Org, p pending) string {
	issuer := "Gatehouse"
	if org != nil {
		issuer = orgName(org)
	}
	secret, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(p.Secret)
	if err != nil {
		return ""
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: p.Email, Secret: secret})
	if err != nil {
		return ""
	}
	return key.URL()
}

// groupSecret shows a base32 key in groups of four, as people type it.
func groupSecret(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (h *Handler) mfaShow(w http.ResponseWriter, r *http.Request) {
	pid, p, err := h.pendingOf(r)
	if h.storeDown(w, err, "second factor") {
		return
	}
	if err != nil {
		h.mfaExpired(w, r, err.Error())
		return
	}
	h.mfaPage(w, r, pid, p, http.StatusOK, "")
}

// mfaQR is the enrollment's key as a QR code, for the browser that is
// enrolling only.
func (h *Handler) mfaQR(w http.ResponseWriter, r *http.Request) {
	_, p, err := h.pendingOf(r)
	if err != nil || !p.Enroll {
		http.NotFound(w, r)
		return
	}
	org, _ := h.o.Orgs.ByID(p.OrgID)
	key, err := otp.NewKeyFromURL(otpauthURL(org, p))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	img, err := key.Image(240, 240)
	if err != nil {
		http.NotFound(w, r)
		return
	}
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

// errMFA is a code that did not pass, said to the person as msg.
type errMFA struct{ msg, reason string }

func (e *errMFA) Error() string { return e.reason }

func (h *Handler) mfaSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.readForm(w, r, "Reload the page and try again.") {
		return
	}
	ctx := r.Context()
	pid, p, err := h.pendingOf(r)
	if h.storeDown(w, err, "second factor") {
		return
	}
	if err != nil {
		h.mfaExpired(w, r, err.Error())
		return
	}
	org, ok := h.o.Orgs.ByID(p.OrgID)
	owner, ok2 := h.o.Orgs.ByID(p.OwnerID)
	if !ok || !ok2 || p.SID != "" {
		h.mfaExpired(w, r, "org gone or sign-in already done")
		return
	}
	now := h.o.Now()
	addr := h.o.ClientIP.Addr(r)
	key := "mfa|" + p.OrgID + "|" + p.UserID
	if allowed, until := h.byAccount.take(key, now); !allowed {
		h.o.Logger.Warn("idp: second step throttled", "org", org.Slug, "user", p.UserID, "client", addr)
		w.Header().Set("Retry-After", retryAfter(until, now))
		h.mfaPage(w, r, pid, p, http.StatusTooManyRequests, fmt.Sprintf("Too many wrong codes. Try again in %s.", wait(until, now)))
		return
	}
	if r.PostFormValue("send") == "email" {
		h.sendEmailCode(w, r, pid, p, org)
		return
	}
	code := normalizeCode(r.PostFormValue("code"))
	var (
		used, amr string
		codes     []string
	)
	switch answer := r.PostFormValue("webauthn"); {
	case answer == "" && !p.Enroll && p.EmailCode != "" && len(code) == 6 && emailCodeMatches(p, code, now):
		used, amr = "email", "email"
	case answer != "":
		var cred *webauthn.Credential
		cred, codes, err = h.passkeyStep(r, p, answer, now)
		if err == nil {
			used, amr = "passkey", passkeyAMR(cred)
		}
	case p.Enroll:
		if p.Secret == "" {
			err = &errMFA{"Set up a passkey: it is what your organization counts.", "authenticator app not allowed"}
			break
		}
		codes, err = h.enroll(ctx, p, code, now)
		used, amr = "totp", "otp"
	default:
		used, err = h.verifyFactor(ctx, p, code, now)
		if used == "totp" {
			amr = "otp"
		}
	}
	var bad *errMFA
	switch {
	case errors.As(err, &bad):
		h.audit(ctx, org.ID, p.UserID, "mfa.verify", "failure", map[string]string{"reason": bad.reason, "client": addr})
		p.Tries++
		if p.Tries >= maxMFATries {
			_, _ = h.o.Store.TakeOnce(ctx, pendingKind, pid)
			h.mfaExpired(w, r, "too many wrong codes")
			return
		}
		_ = h.o.Store.UpdateOnce(ctx, pendingKind, pid, func(b []byte) ([]byte, error) {
			var cur pending
			if err := json.Unmarshal(b, &cur); err != nil {
				return nil, err
			}
			cur.Tries++
			cur.WebAuthn = nil // its challenge is spent
			return json.Marshal(cur)
		})
		h.mfaPage(w, r, pid, p, http.StatusUnauthorized, bad.msg)
		return
	case err != nil:
		h.signInError(w, r, org, "mfa", connection.Errorf(connection.KindInternal, "idp: second factor: %w", err))
		return
	}
	h.byAccount.reset(key)
	h.audit(ctx, org.ID, p.UserID, "mfa.verify", "success", map[string]string{"factor": used, "client": addr})
	if used != "recovery_code" && p.StepUp == "" {
		h.rememberDeviceFor(w, r, p, amr, now)
	}
	p.ID.MFA = true
	if amr != "" {
		p.ID.AMR = append(p.ID.AMR, amr)
	}
	if !p.Enroll {
		// One use: whoever takes the pending sign-in makes the session.
		if _, err := h.o.Store.TakeOnce(ctx, pendingKind, pid); err != nil {
			if h.storeDown(w, err, "second factor") {
				return
			}
			h.mfaExpired(w, r, "pending sign-in already used")
			return
		}
		h.clearMFACookie(w, r)
		if p.StepUp != "" {
			if err := h.o.Sessions.SteppedUp(ctx, p.StepUp, amr, now); err != nil {
				h.mfaExpired(w, r, err.Error())
				return
			}
			h.audit(ctx, org.ID, p.UserID, "mfa.step_up", "success", map[string]string{"factor": used, "client": addr})
			h.complete(w, r, p.StepUp, p.OrgID, p.RD, p.State)
			return
		}
		h.startSession(w, r, org, store.User{ID: p.UserID}, owner, p.ID, p.RD, p.State)
		return
	}
	// Enrolled: the session now (or the stepped-up one), then the
	// recovery codes, once, before the person goes on.
	sid := p.StepUp
	if sid != "" {
		err = h.o.Sessions.SteppedUp(ctx, sid, amr, now)
	} else {
		sid, err = h.newSession(w, r, org, store.User{ID: p.UserID}, owner, p.ID)
	}
	if err != nil {
		h.signInError(w, r, org, "session", connection.Errorf(connection.KindInternal, "idp: create session: %w", err))
		return
	}
	if err := h.o.Store.UpdateOnce(ctx, pendingKind, pid, func(b []byte) ([]byte, error) {
		var cur pending
		if err := json.Unmarshal(b, &cur); err != nil {
			return nil, err
		}
		cur.SID, cur.Secret = sid, ""
		return json.Marshal(cur)
	}); err != nil {
		h.o.Logger.Warn("idp: pending sign-in not updated; the person goes on from the app", "err", err)
	}
	pg := h.page(r, w, org, "")
	pg.Title, pg.Step, pg.Codes, pg.Action = "Save your recovery codes", "codes", codes, mfaContinuePath
	w.Header().Set("Cache-Control", "no-store")
	web.Render(w, http.StatusOK, "mfa", pg)
}

// StepUpPath is where a person proves a second factor again because a
// policy asked for a more recent one.
const StepUpPath = MFAPath + "/step-up"

// StepUpURL is the step-up page for org orgSlug's person, on the org's
// sign-in host, returning to rd.
func (h *Handler) StepUpURL(orgSlug, rd, state string) string {
	host := h.o.PublicURL.Host
	if o, ok := h.o.Orgs.BySlug(orgSlug); ok {
		su := SignInURL(*h.o.PublicURL, o)
		host = su.Host
	}
	u := url.URL{Scheme: h.o.PublicURL.Scheme, Host: host, Path: StepUpPath, RawQuery: url.Values{"rd": {rd}, "state": {state}}.Encode()}
	return u.String()
}

// stepUp proves a second factor for the browser's open session on this
// host: its password-pool person answers the second step (or sets up a
// factor); anyone else (no session here, an org with its own IdP) signs
// in again.
func (h *Handler) stepUp(w http.ResponseWriter, r *http.Request) {
	rd, ok := h.redirectParam(w, r)
	if !ok {
		return
	}
	state := stateParam(r)
	again := func(slug string) {
		http.Redirect(w, r, h.SignInURL(slug, rd, state, "", true), http.StatusSeeOther)
	}
	e, err := h.o.Sessions.Authenticate(r)
	if err != nil {
		again("")
		return
	}
	id := e.Identity()
	org, ok := h.o.Orgs.ByID(id.OrgID)
	if !ok {
		again("")
		return
	}
	owner, err := h.ownerOf(org)
	if err != nil || owner.Connection.Type != "password" {
		again(org.Slug) // the IdP's sign-in, afresh
		return
	}
	m, err := h.o.Store.GetMembership(r.Context(), id.UserID, id.OrgID)
	if err != nil {
		again(org.Slug)
		return
	}
	h.beginSecondStep(w, r, org, pending{UserID: id.UserID, Email: id.Email, OrgID: org.ID, OwnerID: owner.ID, RD: rd, State: state,
		Enroll: !h.hasAllowed(org.ID, m.Factors), StepUp: id.SessionID})
}

// mfaContinue goes on from the recovery codes page to where the sign-in
// was going.
func (h *Handler) mfaContinue(w http.ResponseWriter, r *http.Request) {
	if !h.readForm(w, r, "Reload the page and try again.") {
		return
	}
	pid, p, err := h.pendingOf(r)
	if h.storeDown(w, err, "second factor") {
		return
	}
	if err != nil || p.SID == "" {
		h.mfaExpired(w, r, "no enrolled sign-in to continue")
		return
	}
	if _, err := h.o.Store.TakeOnce(r.Context(), pendingKind, pid); err != nil {
		if h.storeDown(w, err, "second factor") {
			return
		}
		h.mfaExpired(w, r, "pending sign-in already used")
		return
	}
	h.clearMFACookie(w, r)
	h.complete(w, r, p.SID, p.OrgID, p.RD, p.State)
}

func (h *Handler) clearMFACookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: h.mfaCookieName(r), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
}

// emailCodeTTL is how long an emailed code works; maxEmailSends bounds
// the codes one second step sends.
const (
	emailCodeTTL  = 10 * time.Minute
	maxEmailSends = 3
)

// sendEmailCode emails the person a new code for this second step (the
// org's mfa_code message) and shows the page again.
func (h *Handler) sendEmailCode(w http.ResponseWriter, r *http.Request, pid string, p pending, org *store.Org) {
	ctx := r.Context()
	if p.Enroll || !h.allows(p.OrgID, store.FactorEmail) {
		h.mfaPage(w, r, pid, p, http.StatusBadRequest, "Email codes are not offered here.")
		return
	}
	if p.EmailSends >= maxEmailSends {
		h.mfaPage(w, r, pid, p, http.StatusTooManyRequests, "We sent you several codes already. Use the last one, or sign in again.")
		return
	}
	code := sixDigits()
	m, err := h.Message(org, notify.MFACode, notify.Fields{User: notify.User{Email: p.Email}, Code: code, Expires: "10 minutes"})
	if err == nil {
		err = h.o.Mail(ctx, p.Email, m)
	}
	if err != nil {
		ref := h.logRef("idp: email code not sent", err)
		h.audit(ctx, p.OrgID, p.UserID, "mfa.email_code", "failure", map[string]string{"reason": err.Error()})
		pg := "We could not send the email (reference " + ref + "). Try again in a minute, or use another way."
		h.mfaPage(w, r, pid, p, http.StatusBadGateway, pg)
		return
	}
	p.EmailCode, p.EmailUntil, p.EmailSends = emailCodeHash(p, code), h.o.Now().Add(emailCodeTTL), p.EmailSends+1
	if err := h.o.Store.UpdateOnce(ctx, pendingKind, pid, func(b []byte) ([]byte, error) {
		var cur pending
		if err := json.Unmarshal(b, &cur); err != nil {
			return nil, err
		}
		cur.EmailCode, cur.EmailUntil, cur.EmailSends = p.EmailCode, p.EmailUntil, p.EmailSends
		return json.Marshal(cur)
	}); err != nil {
		h.mfaExpired(w, r, "pending sign-in gone: "+err.Error())
		return
	}
	h.audit(ctx, p.OrgID, p.UserID, "mfa.email_code", "success", nil)
	h.mfaPageNotice(w, r, pid, p, "We emailed a code to "+maskEmail(p.Email)+". It works for 10 minutes.")
}

// sixDigits is a uniformly random 6-digit code.
func sixDigits() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	return fmt.Sprintf("%06d", n.Int64())
}

func emailCodeHash(p pending, code string) string {
	sum := sha256.Sum256([]byte("gatehouse email code\x00" + p.UserID + "\x00" + p.OrgID + "\x00" + code))
	return hex.EncodeToString(sum[:])
}

// emailCodeMatches: the code last emailed, in time.
func emailCodeMatches(p pending, code string, now time.Time) bool {
	return now.Before(p.EmailUntil) && hmac.Equal([]byte(emailCodeHash(p, code)), []byte(p.EmailCode))
}

// maskEmail shows enough of an address to recognize it: a***@acme.example.
func maskEmail(addr string) string {
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" {
		return "your address"
	}
	return local[:1] + "***@" + domain
}

// rememberText says a remembered-device window in days (or hours).
func rememberText(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return fmt.Sprintf("%d hours", int(d/time.Hour))
}

// normalizeCode drops what people type around a code: spaces, dashes.
func normalizeCode(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) > 64 {
		return ""
	}
	return strings.NewReplacer(" ", "", "-", "").Replace(s)
}

// totpStep finds the step whose code code is, within totpSkew of now
// and after last; ok is false if none is.
func totpStep(secret, code string, now time.Time, last int64) (int64, bool) {
	if len(code) != 6 {
		return 0, false
	}
	cur := now.Unix() / 30
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		step := cur + d
		if step <= last {
			continue
		}
		want, err := totp.GenerateCodeCustom(secret, time.Unix(step*30, 0), totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err == nil && hmac.Equal([]byte(want), []byte(code)) {
			return step, true
		}
	}
	return 0, false
}

// enroll checks the first code of a new authenticator and keeps it, with
// new recovery codes (returned in the clear, this once).
func (h *Handler) enroll(ctx context.Context, p pending, code string, now time.Time) ([]string, error) {
	step, ok := totpStep(p.Secret, code, now, 0)
	if !ok {
		return nil, &errMFA{"That code is not right. Enter the 6-digit code your app shows now.", "wrong enrollment code"}
	}
	codes, err := h.addFactor(ctx, p.UserID, p.OrgID, now, func(f *store.Factors) error {
		if f.TOTP != nil {
			return &errMFA{"An authenticator was set up meanwhile. Sign in again.", "factor enrolled concurrently"}
		}
		f.TOTP = &store.TOTPFactor{Secret: p.Secret, LastStep: step, CreatedAt: now.UTC()}
		return nil
	})
	if err != nil {
		return nil, err
	}
	h.audit(ctx, p.OrgID, p.UserID, "mfa.enroll", "success", map[string]string{"factor": "totp"})
	return codes, nil
}

// addFactor gives the person a factor (add changes their factors) and,
// if they have none, recovery codes, returned in the clear this once (nil
// when their codes stand).
func (h *Handler) addFactor(ctx context.Context, userID, orgID string, now time.Time, add func(*store.Factors) error) ([]string, error) {
	var codes []string
	_, err := h.o.Store.UpdateMembership(ctx, userID, orgID, func(m store.Membership) (store.Membership, error) {
		f := store.Factors{}
		if m.Factors != nil {
			f = *m.Factors
		}
		if err := add(&f); err != nil {
			return m, err
		}
		codes = nil
		if len(f.RecoveryCodes) == 0 {
			var hashes []string
			codes, hashes = newRecoveryCodes(userID)
			f.RecoveryCodes = hashes
		}
		m.Factors, m.UpdatedAt = &f, now.UTC()
		return m, nil
	})
	return codes, err
}

// passkeyStep takes a passkey answer to the page's ceremony: a new
// passkey when enrolling (with recovery codes), else a login with one of
// the person's passkeys on this host.
func (h *Handler) passkeyStep(r *http.Request, p pending, answer string, now time.Time) (*webauthn.Credential, []string, error) {
	ctx := r.Context()
	refused := func(reason string, err error) error {
		h.o.Logger.Info("idp: passkey refused", "user", p.UserID, "org", p.OrgID, "reason", reason, "err", err)
		return &errMFA{"Your passkey was not accepted. Try again, or use another way.", reason}
	}
	if p.WebAuthn == nil || !h.allows(p.OrgID, store.FactorPasskey) {
		return nil, nil, refused("no passkey ceremony pending (used, never offered, or passkeys not counted)", nil)
	}
	wa, err := h.relyingParty(r)
	if err != nil {
		return nil, nil, refused("not a sign-in host", err)
	}
	host := request.Host(r)
	user, _, err := h.waUserOf(ctx, p.UserID, p.OrgID, host)
	if err != nil {
		return nil, nil, err
	}
	if p.Enroll {
		parsed, err := parseCreation(answer)
		if err != nil {
			return nil, nil, refused("malformed registration", err)
		}
		cred, err := wa.CreateCredential(user, *p.WebAuthn, parsed)
		if err != nil {
			return nil, nil, refused("registration did not verify", err)
		}
		pk, err := newPasskey(cred, host, r.PostFormValue("name"), now)
		if err != nil {
			return nil, nil, err
		}
		codes, err := h.addFactor(ctx, p.UserID, p.OrgID, now, func(f *store.Factors) error {
			if h.hasAllowed(p.OrgID, f) {
				return &errMFA{"A second factor was set up meanwhile. Sign in again.", "factor enrolled concurrently"}
			}
			f.Passkeys = append(slices.Clone(f.Passkeys), pk)
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		h.audit(ctx, p.OrgID, p.UserID, "mfa.enroll", "success", map[string]string{"factor": "passkey", "rp_id": host})
		return cred, codes, nil
	}
	parsed, err := parseAssertion(answer)
	if err != nil {
		return nil, nil, refused("malformed assertion", err)
	}
	cred, err := wa.ValidateLogin(user, *p.WebAuthn, parsed)
	if err != nil {
		return nil, nil, refused("assertion did not verify", err)
	}
	if _, err := h.o.Store.UpdateMembership(ctx, p.UserID, p.OrgID, func(m store.Membership) (store.Membership, error) {
		m, err := usedPasskey(m, cred, now)
		if err != nil {
			return m, refused(err.Error(), nil)
		}
		return m, nil
	}); err != nil {
		return nil, nil, err
	}
	return cred, nil, nil
}

// verifyFactor checks a code against the person's factors: a TOTP code
// good once (never one of a step already used), or a recovery code,
// which is used up.
func (h *Handler) verifyFactor(ctx context.Context, p pending, code string, now time.Time) (string, error) {
	wrong := &errMFA{"That code is not right. Enter the code your authenticator app shows, or a recovery code.", "wrong code"}
	if code == "" {
		return "", wrong
	}
	used := ""
	_, err := h.o.Store.UpdateMembership(ctx, p.UserID, p.OrgID, func(m store.Membership) (store.Membership, error) {
		if !m.Factors.Has() {
			if h.allows(p.OrgID, store.FactorEmail) {
				return m, wrong // an emailed code that did not match
			}
			return m, &errMFA{"Your second factor was reset. Sign in again to set up a new one.", "no factor"}
		}
		f := *m.Factors
		if t := f.TOTP; t != nil && len(code) == 6 && h.allows(p.OrgID, store.FactorTOTP) {
			step, ok := totpStep(t.Secret, code, now, t.LastStep)
			if !ok {
				if _, again := totpStep(t.Secret, code, now, t.LastStep-totpSkew-1); again {
					return m, &errMFA{"That code was used already. Wait for the next one.", "code reused"}
				}
				return m, wrong
			}
			tc := *t
			tc.LastStep = step
			f.TOTP = &tc
			used = "totp"
		} else {
			hash := recoveryHash(p.UserID, code)
			i := slices.Index(f.RecoveryCodes, hash)
			if i < 0 {
				return m, wrong
			}
			f.RecoveryCodes = slices.Delete(slices.Clone(f.RecoveryCodes), i, i+1)
			used = "recovery_code"
		}
		m.Factors, m.UpdatedAt = &f, now.UTC()
		return m, nil
	})
	if err != nil {
		return "", err
	}
	if used == "recovery_code" {
		h.audit(ctx, p.OrgID, p.UserID, "mfa.recovery_code", "success", nil)
	}
	return used, nil
}

var recoveryEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newRecoveryCodes makes recoveryCodes codes of 80 random bits, shown
// as xxxx-xxxx-xxxx-xxxx, and their hashes.
func newRecoveryCodes(userID string) (codes, hashes []string) {
	for range recoveryCodes {
		b := make([]byte, 10)
		_, _ = rand.Read(b)
		c := recoveryEncoding.EncodeToString(b)
		codes = append(codes, c[0:4]+"-"+c[4:8]+"-"+c[8:12]+"-"+c[12:16])
		hashes = append(hashes, recoveryHash(userID, c))
	}
	return codes, hashes
}

func recoveryHash(userID, code string) string {
	sum := sha256.Sum256([]byte("gatehouse recovery code\x00" + userID + "\x00" + code))
	return hex.EncodeToString(sum[:])
}
