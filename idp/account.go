package idp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// Passwordless sign-in with a discoverable passkey, and the page where a
// person manages their own second factors.
const (
	totpSetupKind = store.EphemeralPrefix + "totp-setup"
	PasskeyPath   = "/.gatehouse/passkey"
	AccountPath   = "/.gatehouse/account"
	// accountFreshness: changing one's factors needs a sign-in this
	// recent, with a second factor if the person has one.
	accountFreshness = 15 * time.Minute
)

// offerPasswordless adds a passwordless sign-in to a sign-in page of a
// sign-in host: a discoverable-credential ceremony sealed in the page.
func (h *Handler) offerPasswordless(r *http.Request, p *web.Page) {
	wa, err := h.relyingParty(r)
	if err != nil {
		return
	}
	if o, ok := h.o.Orgs.ByLoginHost(request.Host(r)); ok && !h.allows(o.ID, store.FactorPasskey) {
		return // the host's org does not count passkeys
	}
	opts, sd, err := wa.BeginDiscoverableLogin(webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		h.o.Logger.Warn("idp: passwordless sign-in not offered", "err", err)
		return
	}
	p.PasskeyOptions, p.PasskeyMode, p.Scripts = optionsJSON(opts), "get", true
	p.Ceremony = h.sealCeremony(sd, "login|"+request.Host(r))
}

// passkeySignIn signs a person in with a passkey alone: the user handle
// names the person, the credential must be one of theirs registered on
// this host, for an org that signs in on this host with its password pool,
// and user verification (the device's PIN or biometrics) makes it two
// factors.
func (h *Handler) passkeySignIn(w http.ResponseWriter, r *http.Request) {
	if !h.readForm(w, r, "Reload the sign-in page and try again.") {
		return
	}
	rd, ok := h.redirectParam(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	now := h.o.Now()
	addr := h.o.ClientIP.Addr(r)
	host := request.Host(r)
	fail := func(status int, reason string, err error) {
		ref := h.ref()
		h.o.Logger.Info("idp: passkey sign-in refused", "ref", ref, "reason", reason, "err", err, "host", host, "client", addr)
		h.o.Metrics.Logins.WithLabelValues("", "passkey_refused").Inc()
		web.Render(w, status, "error", web.Page{Title: "Passkey not accepted",
			Error: "Your passkey did not sign you in here. Sign in with your email instead.", Reference: ref,
			Back: h.loginURL(host, "rd", rd, "state", stateParam(r)), BackText: "Sign in"})
	}
	addrKey := throttleAddr(addr)
	if allowed, until := h.byAddr.take(addrKey, now); !allowed {
		w.Header().Set("Retry-After", retryAfter(until, now))
		fail(http.StatusTooManyRequests, "throttled", nil)
		return
	}
	wa, err := h.relyingParty(r)
	if err != nil {
		fail(http.StatusNotFound, "not a sign-in host", err)
		return
	}
	sd, err := h.openCeremony(ctx, r.PostFormValue("ceremony"), "login|"+host)
	if err != nil {
		fail(http.StatusBadRequest, "ceremony", err)
		return
	}
	parsed, err := parseAssertion(r.PostFormValue("webauthn"))
	if err != nil {
		fail(http.StatusBadRequest, "malformed assertion", err)
		return
	}
	var mem store.Membership
	var u store.User
	owner := func(rawID, handle []byte) (webauthn.User, error) {
		u, mem, err = h.passkeyOwner(ctx, rawID, handle, host)
		if err != nil {
			return nil, err
		}
		creds, err := passkeysOn(mem, host)
		if err != nil {
			return nil, err
		}
		return &waUser{id: u.ID, name: u.Email, display: u.Name, creds: creds}, nil
	}
	_, cred, err := wa.ValidatePasskeyLogin(owner, sd, parsed)
	if err != nil {
		fail(http.StatusUnauthorized, "assertion did not verify", err)
		return
	}
	org, ok := h.o.Orgs.ByID(mem.OrgID)
	if !ok {
		fail(http.StatusUnauthorized, "org gone", nil)
		return
	}
	ownerOrg, err := h.ownerOf(org)
	if err != nil || ownerOrg.Connection.Type != "password" {
		fail(http.StatusForbidden, "the org does not sign in with its password pool", err)
		return
	}
	if !h.allows(org.ID, store.FactorPasskey) {
		fail(http.StatusForbidden, "the org does not count passkeys", nil)
		return
	}
	if su := SignInURL(*h.o.PublicURL, org); su.Hostname() != host {
		fail(http.StatusForbidden, "the org signs in on "+su.Hostname(), nil)
		return
	}
	if _, err := h.o.Store.UpdateMembership(ctx, u.ID, org.ID, func(m store.Membership) (store.Membership, error) {
		return usedPasskey(m, cred, now)
	}); err != nil {
		fail(http.StatusUnauthorized, "passkey record", err)
		return
	}
	h.byAddr.refund(addrKey)
	h.audit(ctx, org.ID, u.ID, "mfa.verify", "success", map[string]string{"factor": "passkey", "passwordless": "true", "client": addr})
	id := connection.Identity{UserID: u.ID, Email: u.Email, Name: u.Name, EmailVerified: true, MFA: cred.Flags.UserVerified,
		AMR: []string{passkeyAMR(cred)}, Passwordless: true}
	h.startSession(w, r, org, store.User{ID: u.ID}, ownerOrg, id, rd, stateParam(r))
}

// removeFactor takes one of the person's factors away (remove changes
// their factors), never the last one counted by an org that requires one;
// with no factor left, the recovery codes go too.
func (h *Handler) removeFactor(ctx context.Context, userID string, org *store.Org, required bool, now time.Time, remove func(*store.Factors) error) error {
	_, err := h.o.Store.UpdateMembership(ctx, userID, org.ID, func(m store.Membership) (store.Membership, error) {
		if m.Factors == nil {
			return m, errors.New("no such factor")
		}
		f := *m.Factors
		if err := remove(&f); err != nil {
			return m, err
		}
		if required && !h.hasAllowed(org.ID, &f) {
			return m, fmt.Errorf("%s requires a second factor: add another before removing your last", orgName(org))
		}
		if !f.Has() {
			f.RecoveryCodes = nil
		}
		m.Factors, m.UpdatedAt = &f, now.UTC()
		return m, nil
	})
	return err
}

// passkeyOwner finds the membership holding credential rawID on host for
// the user handle: the person, enabled, and a member where it was
// registered.
func (h *Handler) passkeyOwner(ctx context.Context, rawID, handle []byte, host string) (store.User, store.Membership, error) {
	if len(handle) == 0 || len(handle) > 64 {
		return store.User{}, store.Membership{}, errors.New("no user handle")
	}
	u, err := h.o.Store.GetUser(ctx, string(handle))
	if err != nil {
		return u, store.Membership{}, fmt.Errorf("user handle: %w", err)
	}
	if u.Disabled {
		return u, store.Membership{}, errors.New("user disabled")
	}
	ms, err := h.o.Store.ListMembershipsByUser(ctx, u.ID)
	if err != nil {
		return u, store.Membership{}, err
	}
	for _, m := range ms {
		if m.Disabled || m.Factors == nil {
			continue
		}
		if slices.ContainsFunc(m.Factors.Passkeys, func(p store.Passkey) bool { return p.RPID == host && bytes.Equal(p.ID, rawID) }) {
			return u, m, nil
		}
	}
	return u, store.Membership{}, errors.New("the credential is not this person's on this host")
}

// accountPage shows the person's second factors in their session's org.
func (h *Handler) accountPage(w http.ResponseWriter, r *http.Request) {
	e, err := h.o.Sessions.Authenticate(r)
	if err != nil {
		u := url.URL{Scheme: "http", Host: r.Host, Path: AccountPath}
		if request.IsSecure(r) {
			u.Scheme = "https"
		}
		http.Redirect(w, r, h.loginURL(request.Host(r), "rd", u.String()), http.StatusSeeOther)
		return
	}
	h.renderAccount(w, r, e.Identity().UserID, e.Identity().OrgID, e.Identity().SessionID, http.StatusOK, "", "", nil)
}

func (h *Handler) renderAccount(w http.ResponseWriter, r *http.Request, userID, orgID, sid string, status int, msg, notice string, codes []string) {
	ctx := r.Context()
	org, _ := h.o.Orgs.ByID(orgID)
	pg := h.page(r, w, org, "")
	pg.Title, pg.Action, pg.Error, pg.Notice, pg.Codes, pg.Step = "Your sign-in methods", AccountPath, msg, notice, codes, "account"
	m, err := h.o.Store.GetMembership(ctx, userID, orgID)
	if err != nil {
		h.signInError(w, r, org, "account", connection.Errorf(connection.KindInternal, "idp: read membership: %w", err))
		return
	}
	if owner, err := h.ownerOf(org); err != nil || owner.Connection.Type != "password" {
		pg.Step = "federated"
		web.Render(w, status, "account", pg)
		return
	}
	if f := m.Factors; f != nil {
		for _, pk := range f.Passkeys {
			item := web.PasskeyItem{ID: base64.RawURLEncoding.EncodeToString(pk.ID), Name: pk.Name, Host: pk.RPID, Created: pk.CreatedAt.Format("2006-01-02")}
			if !pk.LastUsedAt.IsZero() {
				item.LastUsed = pk.LastUsedAt.Format("2006-01-02 15:04 MST")
			}
			pg.Passkeys = append(pg.Passkeys, item)
		}
		pg.HasTOTP, pg.RecoveryLeft = f.TOTP != nil, len(f.RecoveryCodes)
	}
	if !pg.HasTOTP && h.allows(orgID, store.FactorTOTP) {
		// An authenticator app to set up: its key waits in the store for
		// the first code, bound to this session, for pendingTTL.
		u, err := h.o.Store.GetUser(ctx, userID)
		if err == nil {
			key, err := totp.Generate(totp.GenerateOpts{Issuer: orgName(org), AccountName: u.Email, Rand: rand.Reader})
			setup := token.RandomID()
			if err == nil {
				err = h.o.Store.PutOnce(ctx, totpSetupKind, sid+"|"+setup, []byte(key.Secret()), h.o.Now().Add(pendingTTL))
			}
			if err == nil {
				pg.Secret, pg.Invite, pg.OTPAuth = groupSecret(key.Secret()), setup, template.URL(key.URL()) // built here: otpauth://totp/…
			}
		}
	}
	if wa, err := h.relyingParty(r); err == nil && h.allows(orgID, store.FactorPasskey) {
		if user, _, err := h.waUserOf(ctx, userID, orgID, request.Host(r)); err == nil {
			opts, sd, err := wa.BeginRegistration(user, webauthn.WithExclusions(webauthn.Credentials(user.creds).CredentialDescriptors()))
			if err == nil {
				pg.PasskeyOptions, pg.PasskeyMode, pg.Scripts = optionsJSON(opts), "create", true
				pg.Ceremony = h.sealCeremony(sd, "register|"+request.Host(r)+"|"+sid)
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	web.Render(w, status, "account", pg)
}

// accountSubmit adds or removes a passkey, or makes new recovery codes,
// for a person who signed in recently (with a second factor if they
// have one).
func (h *Handler) accountSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.readForm(w, r, "Reload the page and try again.") {
		return
	}
	ctx := r.Context()
	e, err := h.o.Sessions.Authenticate(r)
	if err != nil {
		h.mfaExpired(w, r, "no session for the account page")
		return
	}
	id := e.Identity()
	now := h.o.Now()
	render := func(status int, msg, notice string, codes []string) {
		h.renderAccount(w, r, id.UserID, id.OrgID, id.SessionID, status, msg, notice, codes)
	}
	m, err := h.o.Store.GetMembership(ctx, id.UserID, id.OrgID)
	if err != nil {
		h.mfaExpired(w, r, "membership gone")
		return
	}
	if now.Sub(id.AuthTime) > accountFreshness || (m.Factors.Has() && !id.MFA) {
		render(http.StatusForbidden, "To change how you sign in, sign in again first (within the last 15 minutes, with your second factor).", "", nil)
		return
	}
	org, _ := h.o.Orgs.ByID(id.OrgID)
	required := store.MFARequired(h.o.Orgs.Rules(id.OrgID).RequireMFA, m.Roles)
	host := request.Host(r)
	switch r.PostFormValue("action") {
	case "add":
		wa, err := h.relyingParty(r)
		if err == nil && !h.allows(id.OrgID, store.FactorPasskey) {
			render(http.StatusForbidden, orgName(org)+" does not count passkeys as a second factor.", "", nil)
			return
		}
		if err != nil {
			render(http.StatusBadRequest, "Passkeys cannot be added on this address.", "", nil)
			return
		}
		sd, err := h.openCeremony(ctx, r.PostFormValue("ceremony"), "register|"+host+"|"+id.SessionID)
		if err != nil {
			h.o.Logger.Info("idp: passkey registration refused", "user", id.UserID, "reason", err)
			render(http.StatusBadRequest, "That took too long or was done already. Try again.", "", nil)
			return
		}
		user, _, err := h.waUserOf(ctx, id.UserID, id.OrgID, host)
		if err != nil {
			h.mfaExpired(w, r, err.Error())
			return
		}
		parsed, err := parseCreation(r.PostFormValue("webauthn"))
		var cred *webauthn.Credential
		if err == nil {
			cred, err = wa.CreateCredential(user, sd, parsed)
		}
		if err != nil {
			h.o.Logger.Info("idp: passkey registration refused", "user", id.UserID, "reason", "did not verify", "err", err)
			render(http.StatusBadRequest, "Your passkey was not created. Try again.", "", nil)
			return
		}
		pk, err := newPasskey(cred, host, r.PostFormValue("name"), now)
		var codes []string
		if err == nil {
			codes, err = h.addFactor(ctx, id.UserID, id.OrgID, now, func(f *store.Factors) error {
				if slices.ContainsFunc(f.Passkeys, func(p store.Passkey) bool { return bytes.Equal(p.ID, pk.ID) }) {
					return errors.New("passkey registered already")
				}
				if len(f.Passkeys) >= 20 {
					return errors.New("at most 20 passkeys")
				}
				f.Passkeys = append(slices.Clone(f.Passkeys), pk)
				return nil
			})
		}
		if err != nil {
			render(http.StatusConflict, "Your passkey was not added: "+err.Error()+".", "", nil)
			return
		}
		h.audit(ctx, id.OrgID, id.UserID, "mfa.passkey.add", "success", map[string]string{"name": pk.Name, "rp_id": host})
		render(http.StatusOK, "", "Passkey added.", codes)
	case "remove":
		credID, err := base64.RawURLEncoding.DecodeString(r.PostFormValue("id"))
		if err != nil || len(credID) == 0 {
			render(http.StatusBadRequest, "No such passkey.", "", nil)
			return
		}
		var name string
		err = h.removeFactor(ctx, id.UserID, org, required, now, func(f *store.Factors) error {
			i := slices.IndexFunc(f.Passkeys, func(p store.Passkey) bool { return bytes.Equal(p.ID, credID) })
			if i < 0 {
				return errors.New("no such passkey")
			}
			name = f.Passkeys[i].Name
			f.Passkeys = slices.Delete(slices.Clone(f.Passkeys), i, i+1)
			return nil
		})
		if err != nil {
			render(http.StatusConflict, "Not removed: "+err.Error()+".", "", nil)
			return
		}
		h.audit(ctx, id.OrgID, id.UserID, "mfa.passkey.remove", "success", map[string]string{"name": name})
		render(http.StatusOK, "", "Passkey removed. Remove it from your device too (its settings list passkeys by site).", nil)
	case "totp":
		setup := r.PostFormValue("setup")
		raw, err := h.o.Store.GetOnce(ctx, totpSetupKind, id.SessionID+"|"+setup)
		if h.storeDown(w, err, "authenticator app setup") {
			return
		}
		if err != nil || !h.allows(id.OrgID, store.FactorTOTP) {
			render(http.StatusBadRequest, "That took too long. Try again with the new key below.", "", nil)
			return
		}
		secret := string(raw)
		step, ok := totpStep(secret, normalizeCode(r.PostFormValue("code")), now, 0)
		if !ok {
			render(http.StatusBadRequest, "That code is not right. Scan the key again and enter the code your app shows now.", "", nil)
			return
		}
		if _, err := h.o.Store.TakeOnce(ctx, totpSetupKind, id.SessionID+"|"+setup); err != nil {
			if h.storeDown(w, err, "authenticator app setup") {
				return
			}
			render(http.StatusBadRequest, "That was done already.", "", nil)
			return
		}
		codes, err := h.addFactor(ctx, id.UserID, id.OrgID, now, func(f *store.Factors) error {
			if f.TOTP != nil {
				return errors.New("an authenticator app is set up already")
			}
			f.TOTP = &store.TOTPFactor{Secret: secret, LastStep: step, CreatedAt: now.UTC()}
			return nil
		})
		if err != nil {
			render(http.StatusConflict, "Not set up: "+err.Error()+".", "", nil)
			return
		}
		h.audit(ctx, id.OrgID, id.UserID, "mfa.enroll", "success", map[string]string{"factor": "totp", "via": "account"})
		render(http.StatusOK, "", "Authenticator app set up.", codes)
	case "remove-totp":
		err := h.removeFactor(ctx, id.UserID, org, required, now, func(f *store.Factors) error {
			if f.TOTP == nil {
				return errors.New("no authenticator app is set up")
			}
			f.TOTP = nil
			return nil
		})
		if err != nil {
			render(http.StatusConflict, "Not removed: "+err.Error()+".", "", nil)
			return
		}
		h.audit(ctx, id.OrgID, id.UserID, "mfa.totp.remove", "success", nil)
		render(http.StatusOK, "", "Authenticator app removed. Remove the account from the app too.", nil)
	case "codes":
		codes, hashes := newRecoveryCodes(id.UserID)
		_, err := h.o.Store.UpdateMembership(ctx, id.UserID, id.OrgID, func(m store.Membership) (store.Membership, error) {
			if !m.Factors.Has() {
				return m, errors.New("set up a second factor first")
			}
			f := *m.Factors
			f.RecoveryCodes = hashes
			m.Factors, m.UpdatedAt = &f, now.UTC()
			return m, nil
		})
		if err != nil {
			render(http.StatusConflict, "No new codes: "+err.Error()+".", "", nil)
			return
		}
		h.audit(ctx, id.OrgID, id.UserID, "mfa.recovery_codes.new", "success", nil)
		render(http.StatusOK, "", "New recovery codes: your old ones no longer work. They are shown only now.", codes)
	default:
		render(http.StatusBadRequest, "Unknown action.", "", nil)
	}
}
