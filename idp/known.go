package idp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/request"
)

// Known clients. A per-account failure limit that anyone can run down
// locks the real person out; so the account's shared budget applies only
// to browsers and addresses that never signed in to that account. A
// browser that did holds a known-device cookie (a MAC over the account
// and when it signed in, so it cannot be made for another account), and
// an address that did is remembered; either gets a budget of its own,
// max_failures per window like the shared one. Guessing stays bounded:
// per address, per account for strangers, per account and device or
// address for known clients.
const (
	knownDeviceLifetime = 90 * 24 * time.Hour
	knownAddrLifetime   = 30 * 24 * time.Hour
	// maxDeviceEntries bounds the accounts one browser is remembered for.
	maxDeviceEntries = 5
	maxKnownAddrs    = 100_000
)

func deviceCookieName(r *http.Request) string {
	if request.IsSecure(r) {
		return "__Host-gatehouse_device"
	}
	return "_gatehouse_device"
}

// deviceMAC is an entry's MAC for account acct issued at (Unix seconds).
func (h *Handler) deviceMAC(acct string, issued int64) string {
	m := hmac.New(sha256.New, h.deviceKey)
	m.Write([]byte(acct + "|" + strconv.FormatInt(issued, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// deviceEntries parses the known-device cookie: "~"-separated entries of
// "<issued, base 36>.<mac>", newest first.
func deviceEntries(r *http.Request) []string {
	v, ok := request.CookieValue(r, deviceCookieName(r))
	if !ok || len(v) > 512 {
		return nil
	}
	return strings.Split(v, "~")
}

// knownDevice returns the MAC of the browser's entry for acct, if it has
// a valid one ("" if not).
func (h *Handler) knownDevice(r *http.Request, acct string, now time.Time) string {
	for _, e := range deviceEntries(r) {
		ts, mac, ok := strings.Cut(e, ".")
		issued, err := strconv.ParseInt(ts, 36, 64)
		if !ok || err != nil || now.Sub(time.Unix(issued, 0)) >= knownDeviceLifetime || issued > now.Unix()+60 {
			continue
		}
		if hmac.Equal([]byte(mac), []byte(h.deviceMAC(acct, issued))) {
			return mac
		}
	}
	return ""
}

// rememberDevice adds (or renews) acct's entry in the browser's cookie.
func (h *Handler) rememberDevice(w http.ResponseWriter, r *http.Request, acct string, now time.Time) {
	old := h.knownDevice(r, acct, now)
	entries := []string{strconv.FormatInt(now.Unix(), 36) + "." + h.deviceMAC(acct, now.Unix())}
	for _, e := range deviceEntries(r) {
		if len(entries) == maxDeviceEntries {
			break
		}
		if _, mac, ok := strings.Cut(e, "."); ok && mac != old && e != "" {
			entries = append(entries, e)
		}
	}
	http.SetCookie(w, &http.Cookie{Name: deviceCookieName(r), Value: strings.Join(entries, "~"), Path: "/",
		MaxAge: int(knownDeviceLifetime / time.Second), HttpOnly: true, Secure: request.IsSecure(r), SameSite: http.SameSiteLaxMode})
}

// knownAddrs remembers (account, address) pairs that signed in, per node.
type knownAddrs struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (k *knownAddrs) has(key string, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	t, ok := k.m[key]
	return ok && now.Sub(t) < knownAddrLifetime
}

func (k *knownAddrs) add(key string, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]time.Time{}
	}
	if _, ok := k.m[key]; !ok && len(k.m) >= maxKnownAddrs {
		// Full: forget the expired, then the oldest tenth.
		for key, t := range k.m {
			if now.Sub(t) >= knownAddrLifetime {
				delete(k.m, key)
			}
		}
		if len(k.m) >= maxKnownAddrs {
			cut := now.Add(-knownAddrLifetime * 9 / 10)
			for key, t := range k.m {
				if t.Before(cut) || len(k.m) >= maxKnownAddrs {
					delete(k.m, key)
				}
			}
		}
	}
	k.m[key] = now
}

// budgetKey is the per-account throttle key for this attempt: the shared
// account key for strangers, one of its own for a known device or address.
func (h *Handler) budgetKey(r *http.Request, acct, addrKey string, now time.Time) (key, known string) {
	if mac := h.knownDevice(r, acct, now); mac != "" {
		return acct + "|device|" + mac, "device"
	}
	if h.known.has(acct+"|"+addrKey, now) {
		return acct + "|addr|" + addrKey, "address"
	}
	return acct, ""
}
