package idp

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/store"
)

// Passkeys and security keys (WebAuthn). A credential belongs to one
// person's membership of one org and to the host it was registered on
// (its relying party ID: the org's login domain, or the shared sign-in
// host): it works there only. Ceremonies' options are rendered into the
// page (a JSON block the one script, webauthn.js, reads); the answer
// comes back in the page's form, so every step is a plain form post.

// maxWebAuthnResponse bounds a credential response in a form field.
const maxWebAuthnResponse = 64 << 10

// ceremonyTTL is how long a ceremony's challenge is good.
const ceremonyTTL = 5 * time.Minute

// waUser is a person's membership as the WebAuthn library sees it: the
// user handle is the user ID; the credentials are those of this org
// registered on this host.
type waUser struct {
	id, name, display string
	creds             []webauthn.Credential
}

func (u *waUser) WebAuthnID() []byte                         { return []byte(u.id) }
func (u *waUser) WebAuthnName() string                       { return u.name }
func (u *waUser) WebAuthnDisplayName() string                { return u.display }
func (u *waUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

// relyingParty is the WebAuthn configuration of the request's host, a
// sign-in host (the public host or an org's login domain) only.
func (h *Handler) relyingParty(r *http.Request) (*webauthn.WebAuthn, error) {
	host := request.Host(r)
	if _, ok := h.o.Orgs.ByLoginHost(host); !ok && host != strings.ToLower(h.o.PublicURL.Hostname()) {
		return nil, fmt.Errorf("idp: %s is not a sign-in host", host)
	}
	scheme := "http"
	if request.IsSecure(r) {
		scheme = "https"
	}
	return webauthn.New(&webauthn.Config{RPID: host, RPDisplayName: "Gatehouse", RPOrigins: []string{scheme + "://" + r.Host},
		AuthenticatorSelection: protocol.AuthenticatorSelection{ResidentKey: protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationPreferred},
		// Enforced here too: a challenge is good for ceremonyTTL.
		Timeouts: webauthn.TimeoutsConfig{Login: webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL}}})
}

// passkeysOn are a membership's credentials registered on host.
func passkeysOn(m store.Membership, host string) ([]webauthn.Credential, error) {
	if m.Factors == nil {
		return nil, nil
	}
	var out []webauthn.Credential
	for _, pk := range m.Factors.Passkeys {
		if pk.RPID != host {
			continue
		}
		var c webauthn.Credential
		if err := json.Unmarshal(pk.Credential, &c); err != nil {
			return nil, fmt.Errorf("idp: passkey record: %w", err)
		}
		out = append(out, c)
	}
	return out, nil
}

func (h *Handler) waUserOf(ctx context.Context, userID, orgID, host string) (*waUser, store.Membership, error) {
	m, err := h.o.Store.GetMembership(ctx, userID, orgID)
	if err != nil {
		return nil, m, err
	}
	u, err := h.o.Store.GetUser(ctx, userID)
	if err != nil {
		return nil, m, err
	}
	creds, err := passkeysOn(m, host)
	if err != nil {
		return nil, m, err
	}
	display := u.Name
	if display == "" {
		display = u.Email
	}
	return &waUser{id: u.ID, name: u.Email, display: display, creds: creds}, m, nil
}

// optionsJSON is a ceremony's options for the page's JSON block:
// json.Marshal escapes <, > and & in strings, so a person's name cannot
// end the block.
func optionsJSON(v any) template.JS {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return template.JS(b)
}

// parseCreation and parseAssertion read a credential response from a
// form field: bounded, and refused whole if malformed.
func parseCreation(raw string) (*protocol.ParsedCredentialCreationData, error) {
	if len(raw) > maxWebAuthnResponse {
		return nil, errors.New("credential response too large")
	}
	return protocol.ParseCredentialCreationResponseBody(strings.NewReader(raw))
}

func parseAssertion(raw string) (*protocol.ParsedCredentialAssertionData, error) {
	if len(raw) > maxWebAuthnResponse {
		return nil, errors.New("credential response too large")
	}
	return protocol.ParseCredentialRequestResponseBody(strings.NewReader(raw))
}

// newPasskey is a credential made by a registration ceremony, named for
// the person's list.
func newPasskey(c *webauthn.Credential, host, name string, now time.Time) (store.Passkey, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return store.Passkey{}, err
	}
	if name = strings.TrimSpace(name); name == "" || len(name) > 64 {
		name = "Passkey added " + now.UTC().Format("2006-01-02")
	}
	return store.Passkey{ID: c.ID, RPID: host, Name: name, Credential: b, CreatedAt: now.UTC()}, nil
}

// usedPasskey records a login: the credential's new counter and flags,
// and when. A counter that went backwards means a cloned authenticator:
// refused.
func usedPasskey(m store.Membership, c *webauthn.Credential, now time.Time) (store.Membership, error) {
	if c.Authenticator.CloneWarning {
		return m, errors.New("the authenticator's signature counter went backwards (a cloned authenticator?)")
	}
	if m.Factors == nil {
		return m, errors.New("no factors")
	}
	f := *m.Factors
	f.Passkeys = slices.Clone(f.Passkeys)
	i := slices.IndexFunc(f.Passkeys, func(p store.Passkey) bool { return bytes.Equal(p.ID, c.ID) })
	if i < 0 {
		return m, errors.New("the passkey was removed meanwhile")
	}
	var stored webauthn.Credential
	if err := json.Unmarshal(f.Passkeys[i].Credential, &stored); err != nil {
		return m, err
	}
	if c.Authenticator.SignCount != 0 && c.Authenticator.SignCount <= stored.Authenticator.SignCount {
		// Another login used this counter value meanwhile: a replay or a
		// clone.
		return m, errors.New("the authenticator's signature counter did not advance")
	}
	b, err := json.Marshal(c)
	if err != nil {
		return m, err
	}
	f.Passkeys[i].Credential, f.Passkeys[i].LastUsedAt = b, now.UTC()
	m.Factors = &f
	return m, nil
}

// passkeyAMR: a software (synced, backup-eligible) or hardware key.
func passkeyAMR(c *webauthn.Credential) string {
	if c.Flags.BackupEligible {
		return "swk"
	}
	return "hwk"
}

// Stateless ceremonies (passwordless sign-in, adding a passkey from the
// account page): the challenge and what it is bound to travel sealed in
// the page, so that showing the page writes nothing; the challenge is
// spent in the store when it is used, once.

type sealedCeremony struct {
	Session webauthn.SessionData `json:"s"`
	// Bind is what the ceremony belongs to: the host (and the session,
	// for the account page).
	Bind string `json:"b"`
}

func (h *Handler) ceremonyMAC(b []byte) []byte {
	m := hmac.New(sha256.New, h.o.CSRFKey)
	m.Write([]byte("gatehouse webauthn ceremony\x00"))
	m.Write(b)
	return m.Sum(nil)
}

func (h *Handler) sealCeremony(s *webauthn.SessionData, bind string) string {
	b, _ := json.Marshal(sealedCeremony{Session: *s, Bind: bind})
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(h.ceremonyMAC(b))
}

// unsealCeremony checks a sealed ceremony's MAC and reads it.
func (h *Handler) unsealCeremony(tok string) (sealedCeremony, error) {
	var sc sealedCeremony
	body, mac, ok := strings.Cut(tok, ".")
	if !ok || len(tok) > 8<<10 {
		return sc, errors.New("malformed ceremony")
	}
	// Strict: one token per ceremony (no other spelling of the same bytes).
	b, err1 := base64.RawURLEncoding.Strict().DecodeString(body)
	m, err2 := base64.RawURLEncoding.Strict().DecodeString(mac)
	if err1 != nil || err2 != nil || !hmac.Equal(m, h.ceremonyMAC(b)) {
		return sc, errors.New("forged ceremony")
	}
	if err := json.Unmarshal(b, &sc); err != nil {
		return sc, errors.New("malformed ceremony")
	}
	return sc, nil
}

// openCeremony checks a sealed ceremony's MAC, binding and age, and
// spends its challenge: a second use is refused.
func (h *Handler) openCeremony(ctx context.Context, tok, bind string) (webauthn.SessionData, error) {
	sc, err := h.unsealCeremony(tok)
	if err != nil {
		return webauthn.SessionData{}, err
	}
	if sc.Bind != bind {
		return webauthn.SessionData{}, errors.New("ceremony of another host or session")
	}
	if !h.o.Now().Before(sc.Session.Expires) {
		return webauthn.SessionData{}, errors.New("ceremony expired")
	}
	if err := h.o.Store.PutOnce(ctx, "webauthn-challenge", sc.Session.Challenge, []byte{1}, sc.Session.Expires.Add(time.Minute)); err != nil {
		return webauthn.SessionData{}, fmt.Errorf("challenge already used: %w", err)
	}
	return sc.Session, nil
}
