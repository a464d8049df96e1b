package idp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Which factors an org counts, remembered devices, and the bound on a
// person's sessions.

// allows reports whether org orgID counts factor (store.FactorPasskey,
// store.FactorTOTP): every factor unless the org names some.
func (h *Handler) allows(orgID, factor string) bool {
	f := h.o.Orgs.Rules(orgID).MFAFactors
	if factor == store.FactorEmail {
		// The weakest: only where the org names it, and email is set up.
		return h.o.Mail != nil && slices.Contains(f, factor)
	}
	return len(f) == 0 || slices.Contains(f, factor)
}

// hasAllowed reports whether the person has a factor the org counts
// (passkeys: on any host; which one works is the ceremony's business).
func (h *Handler) hasAllowed(orgID string, f *store.Factors) bool {
	if h.allows(orgID, store.FactorEmail) {
		return true // everyone has an address
	}
	if f == nil {
		return false
	}
	return f.TOTP != nil && h.allows(orgID, store.FactorTOTP) || len(f.Passkeys) > 0 && h.allows(orgID, store.FactorPasskey)
}

// factorsPrint changes whenever the person's factors do: a remembered
// device is remembered for the factors it proved.
func factorsPrint(f *store.Factors) string {
	hsh := sha256.New()
	hsh.Write([]byte("gatehouse factors\x00"))
	if f != nil {
		if f.TOTP != nil {
			hsh.Write([]byte(f.TOTP.Secret))
		}
		for _, p := range f.Passkeys {
			hsh.Write([]byte{0})
			hsh.Write(p.ID)
		}
	}
	return hex.EncodeToString(hsh.Sum(nil)[:16])
}

// rememberedDevice is what the remembered-device cookie holds.
type rememberedDevice struct {
	User   string    `json:"u"`
	Org    string    `json:"o"`
	At     time.Time `json:"a"` // when the second factor was proved
	Until  time.Time `json:"e"`
	Print  string    `json:"p"`
	Factor string    `json:"f"` // its amr
}

func (h *Handler) deviceCookieName(r *http.Request, orgID string) string {
	sum := sha256.Sum256([]byte(orgID))
	name := "gatehouse_device_" + hex.EncodeToString(sum[:6])
	if request.IsSecure(r) {
		return "__Host-" + name
	}
	return "_" + name
}

func (h *Handler) rememberMAC(b []byte) []byte {
	m := hmac.New(sha256.New, h.o.CSRFKey)
	m.Write([]byte("gatehouse remembered device\x00"))
	m.Write(b)
	return m.Sum(nil)
}

// rememberDeviceFor sets the cookie that lets this browser skip the org's
// second step for the org's window (if it has one).
func (h *Handler) rememberDeviceFor(w http.ResponseWriter, r *http.Request, p pending, amr string, now time.Time) {
	window := h.o.Orgs.Rules(p.OrgID).RememberDevice
	if window <= 0 || r.PostFormValue("remember") != "1" {
		return
	}
	m, err := h.o.Store.GetMembership(r.Context(), p.UserID, p.OrgID)
	if err != nil {
		return
	}
	d := rememberedDevice{User: p.UserID, Org: p.OrgID, At: now.UTC(), Until: now.Add(window).UTC(), Print: factorsPrint(m.Factors), Factor: amr}
	b, _ := json.Marshal(d)
	v := base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(h.rememberMAC(b))
	http.SetCookie(w, &http.Cookie{Name: h.deviceCookieName(r, p.OrgID), Value: v, Path: "/", Expires: d.Until,
		HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
	h.audit(r.Context(), p.OrgID, p.UserID, "mfa.device.remember", "success", map[string]string{"until": d.Until.Format(time.RFC3339)})
}

// rememberedFor reads this browser's remembered device for the person in
// org: valid if sealed by Gatehouse, theirs, within the org's window as it
// is now, and for their factors as they are now.
func (h *Handler) rememberedFor(r *http.Request, userID, orgID string, f *store.Factors, now time.Time) (rememberedDevice, bool) {
	var d rememberedDevice
	window := h.o.Orgs.Rules(orgID).RememberDevice
	v, ok := request.CookieValue(r, h.deviceCookieName(r, orgID))
	if window <= 0 || !ok || len(v) > 2048 {
		return d, false
	}
	body, mac, ok := strings.Cut(v, ".")
	b, err1 := base64.RawURLEncoding.Strict().DecodeString(body)
	m, err2 := base64.RawURLEncoding.Strict().DecodeString(mac)
	if !ok || err1 != nil || err2 != nil || !hmac.Equal(m, h.rememberMAC(b)) || json.Unmarshal(b, &d) != nil {
		return d, false
	}
	if d.User != userID || d.Org != orgID || !now.Before(d.Until) || now.Sub(d.At) > window || d.Print != factorsPrint(f) {
		return d, false
	}
	// The factor it proved must still count.
	for _, fac := range []string{store.FactorPasskey, store.FactorTOTP, store.FactorEmail} {
		if slices.Contains(session.FactorAMR(fac), d.Factor) && !h.allows(orgID, fac) {
			return d, false
		}
	}
	return d, true
}

// boundSessions ends the person's oldest sessions in the org past its
// sessions-per-person bound, keeping keep (the one just made).
func (h *Handler) boundSessions(r *http.Request, userID, orgID, keep string) {
	max := h.o.Orgs.Rules(orgID).MaxPerPerson
	if max <= 0 {
		return
	}
	ctx := r.Context()
	ss, err := h.o.Store.ListSessionsByUser(ctx, userID)
	if err != nil {
		h.o.Logger.Warn("idp: sessions per person not bounded", "user", userID, "err", err)
		return
	}
	now := h.o.Now()
	live := slices.DeleteFunc(ss, func(s store.Session) bool {
		return s.OrgID != orgID || !s.RevokedAt.IsZero() || !now.Before(s.ExpiresAt)
	})
	// Newest first; the one just made always stays.
	slices.SortFunc(live, func(a, b store.Session) int {
		if a.ID == keep {
			return -1
		}
		if b.ID == keep {
			return 1
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
	for _, s := range live[min(max, len(live)):] {
		if err := h.o.Sessions.Revoke(ctx, s.ID); err != nil {
			h.o.Logger.Warn("idp: an old session not ended", "session", s.ID[:8], "err", err)
			continue
		}
		h.audit(ctx, orgID, userID, "session.revoke", "success", map[string]string{"reason": "sessions per person", "max": strconv.Itoa(max)})
	}
}

// alertNewSignIn emails the person the org's new_sign_in message, where
// the org asks for it and email goes out.
func (h *Handler) alertNewSignIn(r *http.Request, org *store.Org, userID, email, addr string, now time.Time) {
	if h.o.Queue == nil || !h.o.Orgs.Rules(org.ID).NewSignInAlert {
		return
	}
	ctx := r.Context()
	name := ""
	if u, err := h.o.Store.GetUser(ctx, userID); err == nil {
		name = u.Name
	}
	ua := r.UserAgent()
	if len(ua) > 200 {
		ua = ua[:200]
	}
	m, err := h.Message(org, notify.NewSignIn, notify.Fields{User: notify.User{Name: name, Email: email},
		SignIn: notify.SignIn{Time: notify.At(now), ClientAddr: addr, UserAgent: ua}})
	if err == nil {
		err = h.o.Queue(ctx, org.ID, string(notify.NewSignIn), email, m)
	}
	if err != nil {
		h.o.Logger.Warn("idp: new sign-in alert not queued", "org", org.Slug, "user", userID, "err", err)
		return
	}
	h.audit(ctx, org.ID, userID, "login.new_device", "success", map[string]string{"client": addr})
}
