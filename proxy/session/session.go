// Package session issues and checks Gatehouse session cookies.
//
// A cookie holds only a session ID and expiry, sealed with AES-256-GCM
// whose additional data names the host the cookie was issued for, so a
// cookie moved to another host does not open. The server-side record in
// the store is what makes logout and revocation work; this package keeps
// a per-node cache of it that is re-read at most every RecheckInterval,
// so the hot path does not touch the store on every request and a
// revoked session still dies within that interval on every node.
package session

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/loop"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// Errors returned by Authenticate. All of them mean "no valid session".
var (
	ErrNoCookie  = errors.New("session: no cookie")
	ErrBadCookie = errors.New("session: cookie does not open")
	ErrExpired   = errors.New("session: expired")
	ErrRevoked   = errors.New("session: revoked or unknown")
	// ErrMFARequired: the org requires a second factor the session's
	// sign-in did not have; the person signs in again, with one.
	ErrMFARequired = errors.New("session: the org requires a second factor this sign-in lacks")
	// ErrUnavailable means the store could not be read and the cached view
	// is too old to trust: neither valid nor invalid, so no cookie is
	// cleared, and nothing is forwarded.
	ErrUnavailable = errors.New("session: store unavailable")
)

// storeGrace is how long past RecheckInterval a cached session keeps
// serving while the store cannot be read.
const storeGrace = 5 * time.Second

// MaxCookieLen bounds the work done on an untrusted cookie.
const MaxCookieLen = 512

// Identity is who a session authenticates: what policy and the identity
// headers are built from. It is immutable once published.
type Identity struct {
	SessionID string
	UserID    string
	Email     string
	Name      string
	OrgID     string
	OrgSlug   string
	Roles     []string
	Groups    []string
	// Attributes are the member's attributes mapped from the IdP.
	Attributes map[string]string
	Connection string
	MFA        bool
	// AMR are the sign-in's methods (RFC 8176).
	AMR []string
	// MFAAt is when the person last proved a second factor here.
	MFAAt time.Time
	// LogoutHint is the connection's data for signing out at the IdP.
	LogoutHint string
	// Federation and Subject: see store.Session.
	Federation, Subject string
	AuthTime            time.Time
	ExpiresAt           time.Time
}

// Options configure a Manager.
type Options struct {
	CookieName      string
	Lifetime        time.Duration
	IdleTimeout     time.Duration
	RecheckInterval time.Duration
	Now             func() time.Time
	Logger          *slog.Logger
	// Revoked, if set, is told of every session Revoke ends (logout, an
	// admin, deprovisioning), after the store has it.
	Revoked func(ctx context.Context, sid string)
	// OrgRules, if set, gives an org's effective rules: its sessions are
	// held to them when made and at every check, so that tightening them
	// reaches open sessions within RecheckInterval.
	OrgRules func(orgID string) OrgRules
}

// OrgRules are one org's limits on its sessions (0: the deployment's)
// and its second-factor requirement (store.MFAOff, MFAAdmins, MFAAll).
type OrgRules struct {
	Lifetime    time.Duration
	IdleTimeout time.Duration
	RequireMFA  string
	// MFAAfterIdP: a federated sign-in without the IdP's second factor
	// gets Gatehouse's own second step (the sign-in side reads it).
	MFAAfterIdP bool
	// MFAFactors are the factors that count (empty: any): a session whose
	// own second factor is another kind is refused like one without.
	MFAFactors []string
	// RememberDevice, MaxPerPerson and NewSignInAlert are read by the
	// sign-in side.
	RememberDevice time.Duration
	MaxPerPerson   int
	NewSignInAlert bool
}

// FactorAMR is the amr value each of Gatehouse's own factors leaves in
// a session.
func FactorAMR(factor string) []string {
	switch factor {
	case store.FactorPasskey:
		return []string{"hwk", "swk"}
	case store.FactorTOTP:
		return []string{"otp"}
	case store.FactorEmail:
		return []string{"email"}
	}
	return nil
}

// factorAllowed reports whether a session with amr proved an allowed
// factor: an IdP's second factor or a recovery code (no amr of
// Gatehouse's factors) is not judged here.
func factorAllowed(amr, allowed []string) bool {
	if len(allowed) == 0 {
		return true
	}
	own := false
	for _, f := range []string{store.FactorPasskey, store.FactorTOTP, store.FactorEmail} {
		for _, v := range FactorAMR(f) {
			if slices.Contains(amr, v) {
				own = true
				if slices.Contains(allowed, f) {
					return true
				}
			}
		}
	}
	return !own
}

// Manager creates, authenticates and revokes sessions.
type Manager struct {
	st   store.Store
	aead cipher.AEAD
	opts Options

	mu    sync.RWMutex
	cache map[string]*Entry
}

// Entry is a cached, authenticated session.
type Entry struct {
	id       string
	ident    atomic.Pointer[Identity]
	checked  atomic.Int64 // unix nanos of the last store read
	lastSeen atomic.Int64 // unix nanos of the last request
	stored   atomic.Int64 // LastSeenAt as persisted
	expires  atomic.Int64 // unix nanos
	idle     atomic.Int64 // the idle timeout, its org's if shorter (0: none)
	// needsMFA: the org requires a second factor the sign-in did not have.
	needsMFA atomic.Bool
	dead     atomic.Bool
	refresh  sync.Mutex

	amu     sync.Mutex
	asserts map[string]assertion

	memo atomic.Pointer[memo]
}

// memo caches values derived from one identity (such as a policy input's
// per-session parts), keyed by caller-chosen keys. A new identity starts
// a new memo.
type memo struct {
	ident *Identity
	vals  map[any]any
}

// Memo returns the value cached under key for identity id, or builds,
// caches and returns it. id must be the identity build reads from: a value
// is only cached while id is still the session's identity, so a refresh
// racing with build cannot file old roles under the new identity. The map
// is copied on write, so readers never lock.
func (e *Entry) Memo(id *Identity, key any, build func() any) any {
	m := e.memo.Load()
	if m != nil && m.ident == id {
		if v, ok := m.vals[key]; ok {
			return v
		}
	}
	v := build()
	if e.ident.Load() != id {
		return v // the identity changed meanwhile: use, do not cache
	}
	next := &memo{ident: id, vals: map[any]any{key: v}}
	if m != nil && m.ident == id && len(m.vals) < 64 {
		for k, old := range m.vals {
			next.vals[k] = old
		}
	}
	e.memo.Store(next)
	return v
}

type assertion struct {
	token string
	exp   time.Time
	ident *Identity // the identity it was signed from
}

// Identity returns the session's identity.
func (e *Entry) Identity() *Identity { return e.ident.Load() }

// Assertion returns a cached signed assertion for aud that is valid for at
// least minValid more.
func (e *Entry) Assertion(aud string, now time.Time, minValid time.Duration) (string, bool) {
	e.amu.Lock()
	a, ok := e.asserts[aud]
	e.amu.Unlock()
	if !ok || a.exp.Sub(now) < minValid || a.ident != e.ident.Load() {
		return "", false
	}
	return a.token, true
}

// StoreAssertion caches a signed assertion for aud, made from identity
// id; it is never served for another identity (roles changed meanwhile).
func (e *Entry) StoreAssertion(aud, token string, exp time.Time, id *Identity) {
	e.amu.Lock()
	if e.asserts == nil || len(e.asserts) > 64 {
		e.asserts = map[string]assertion{}
	}
	e.asserts[aud] = assertion{token, exp, id}
	e.amu.Unlock()
}

// New builds a Manager. key is 32 bytes shared by every node (the store's
// "session-key" secret).
func New(st store.Store, key []byte, opts Options) (*Manager, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("session: key must be 32 bytes, got %d", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	if opts.CookieName == "" {
		opts.CookieName = "_gatehouse"
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = 12 * time.Hour
	}
	if opts.RecheckInterval <= 0 || opts.RecheckInterval > 5*time.Second {
		opts.RecheckInterval = 2 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Manager{st: st, aead: aead, opts: opts, cache: map[string]*Entry{}}, nil
}

// CookieName is the session cookie's name for a request: "__Host-"
// prefixed on HTTPS so the browser itself pins it to the host.
func (m *Manager) CookieName(secure bool) string {
	if secure {
		return "__Host-" + m.opts.CookieName
	}
	return m.opts.CookieName
}

// Seal returns a cookie value for sid valid on host until exp.
func (m *Manager) Seal(host, sid string, exp time.Time) (string, error) {
	// Plaintext: 8-byte big-endian expiry (unix seconds), then the ID.
	plain := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(sid)), uint64(exp.Unix()))
	plain = append(plain, sid...)
	nonce := make([]byte, m.aead.NonceSize(), m.aead.NonceSize()+len(plain)+m.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := m.aead.Seal(nonce, nonce, plain, aad(host))
	return "v1." + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open checks a cookie value for host and returns its session ID.
func (m *Manager) Open(host, value string, now time.Time) (string, error) {
	if len(value) > MaxCookieLen || !strings.HasPrefix(value, "v1.") {
		return "", ErrBadCookie
	}
	raw, err := base64.RawURLEncoding.DecodeString(value[3:])
	if err != nil || len(raw) < m.aead.NonceSize()+m.aead.Overhead() {
		return "", ErrBadCookie
	}
	ns := m.aead.NonceSize()
	plain, err := m.aead.Open(nil, raw[:ns], raw[ns:], aad(host))
	if err != nil {
		return "", ErrBadCookie
	}
	if len(plain) <= 8 {
		return "", ErrBadCookie
	}
	if now.Unix() >= int64(binary.BigEndian.Uint64(plain)) {
		return "", ErrExpired
	}
	return string(plain[8:]), nil
}

func aad(host string) []byte { return []byte("gatehouse-session|" + host) }

// Create records a new session for a user in an org.
func (m *Manager) Create(ctx context.Context, userID, orgID, connection, clientAddr, userAgent string) (store.Session, error) {
	return m.CreateWith(ctx, store.Session{UserID: userID, OrgID: orgID, Connection: connection, ClientAddr: clientAddr, UserAgent: userAgent})
}

// CreateWith stores a new session from s's user, org, connection, MFA and
// client fields; the ID and times are set here.
func (m *Manager) CreateWith(ctx context.Context, s store.Session) (store.Session, error) {
	now := m.opts.Now()
	s.ID = token.RandomID()
	s.UserAgent = truncate(s.UserAgent, 256)
	// The end is a whole second, as JWT times are: an identity assertion
	// capped at it then always has exp after iat, even in its last second.
	s.CreatedAt, s.ExpiresAt, s.LastSeenAt = now, now.Add(m.lifetime(s.OrgID)).Truncate(time.Second), now
	s.RevokedAt = time.Time{}
	if err := m.st.CreateSession(ctx, s); err != nil {
		return store.Session{}, fmt.Errorf("session: create: %w", err)
	}
	return s, nil
}

// rules are org orgID's (none without an OrgRules hook).
func (m *Manager) rules(orgID string) OrgRules {
	if m.opts.OrgRules == nil {
		return OrgRules{}
	}
	return m.opts.OrgRules(orgID)
}

// lifetime is the deployment's session lifetime, the org's if shorter.
func (m *Manager) lifetime(orgID string) time.Duration {
	if l := m.rules(orgID).Lifetime; l > 0 && l < m.opts.Lifetime {
		return l
	}
	return m.opts.Lifetime
}

// SetCookie issues the session cookie for the request's host.
func (m *Manager) SetCookie(w http.ResponseWriter, r *http.Request, s store.Session) error {
	v, err := m.Seal(request.Host(r), s.ID, s.ExpiresAt)
	if err != nil {
		return fmt.Errorf("session: seal: %w", err)
	}
	secure := request.IsSecure(r)
	http.SetCookie(w, &http.Cookie{
		Name:     m.CookieName(secure),
		Value:    v,
		Path:     "/",
		Expires:  s.ExpiresAt,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	})
	return nil
}

// ClearCookie removes the session cookie on the request's host.
func (m *Manager) ClearCookie(w http.ResponseWriter, r *http.Request) {
	secure := request.IsSecure(r)
	http.SetCookie(w, &http.Cookie{
		Name: m.CookieName(secure), Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
}

// SessionID returns the ID in the request's cookie without checking the
// server-side record.
func (m *Manager) SessionID(r *http.Request) (string, error) {
	v, ok := request.CookieValue(r, m.CookieName(request.IsSecure(r)))
	if !ok {
		return "", ErrNoCookie
	}
	return m.Open(request.Host(r), v, m.opts.Now())
}

// Authenticate returns the request's live session.
func (m *Manager) Authenticate(r *http.Request) (*Entry, error) {
	sid, err := m.SessionID(r)
	if err != nil {
		return nil, err
	}
	return m.Lookup(r.Context(), sid)
}

// Lookup returns the live session sid, reading the store at most once per
// RecheckInterval.
func (m *Manager) Lookup(ctx context.Context, sid string) (*Entry, error) {
	now := m.opts.Now()
	m.mu.RLock()
	e := m.cache[sid]
	m.mu.RUnlock()
	if e == nil {
		e = &Entry{id: sid}
		m.mu.Lock()
		if cur := m.cache[sid]; cur != nil {
			e = cur
		} else {
			m.cache[sid] = e
		}
		m.mu.Unlock()
	}
	if now.UnixNano()-e.checked.Load() >= int64(m.opts.RecheckInterval) {
		if err := m.refresh(ctx, e, now); err != nil {
			return nil, err
		}
	}
	if e.dead.Load() {
		return nil, ErrRevoked
	}
	if now.UnixNano() >= e.expires.Load() {
		return nil, ErrExpired
	}
	if idle := e.idle.Load(); idle > 0 && now.UnixNano()-e.lastSeen.Load() >= idle {
		return nil, ErrExpired
	}
	if e.needsMFA.Load() {
		return nil, ErrMFARequired
	}
	e.lastSeen.Store(now.UnixNano())
	return e, nil
}

func (m *Manager) refresh(ctx context.Context, e *Entry, now time.Time) error {
	e.refresh.Lock()
	defer e.refresh.Unlock()
	if now.UnixNano()-e.checked.Load() < int64(m.opts.RecheckInterval) {
		return nil // another request refreshed it meanwhile
	}
	ident, s, err := m.load(ctx, e.id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			e.dead.Store(true)
			m.evict(e.id)
			return ErrRevoked
		}
		// A store outage must not log everyone out, nor keep a revoked
		// session alive for long: serve the cached view for a short grace,
		// then fail closed without touching the cookie.
		if e.ident.Load() != nil && now.UnixNano()-e.checked.Load() < int64(m.opts.RecheckInterval+storeGrace) {
			m.opts.Logger.Warn("session: store read failed; using cached session", "err", err)
			return nil
		}
		m.opts.Logger.Error("session: store read failed", "err", err)
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !s.RevokedAt.IsZero() {
		e.dead.Store(true)
		m.evict(e.id)
		return ErrRevoked
	}
	seen := e.lastSeen.Load()
	if s.LastSeenAt.UnixNano() > seen {
		seen = s.LastSeenAt.UnixNano()
		e.lastSeen.Store(seen)
	}
	// The org's rules as they are now: a tightened lifetime or idle
	// timeout ends longer sessions, a second factor now required refuses
	// sessions without one.
	rules := m.rules(s.OrgID)
	exp := s.ExpiresAt
	if rules.Lifetime > 0 && s.CreatedAt.Add(rules.Lifetime).Before(exp) {
		exp = s.CreatedAt.Add(rules.Lifetime)
	}
	e.expires.Store(exp.UnixNano())
	idle := m.opts.IdleTimeout
	if rules.IdleTimeout > 0 && (idle <= 0 || rules.IdleTimeout < idle) {
		idle = rules.IdleTimeout
	}
	e.idle.Store(int64(idle))
	e.needsMFA.Store(store.MFARequired(rules.RequireMFA, ident.Roles) && (!s.MFA || !factorAllowed(s.AMR, rules.MFAFactors)))
	if old := e.ident.Load(); old == nil || !sameIdentity(old, ident) {
		// A new view: memoized values and assertions keyed to the old
		// identity pointer stop being served.
		e.ident.Store(ident)
	}
	// Persist activity at most every minute (or quarter idle timeout), so
	// that other nodes see it for idle checks without a write per request.
	stored := max(e.stored.Load(), s.LastSeenAt.UnixNano())
	step := time.Minute
	if q := m.opts.IdleTimeout / 4; q > 0 && q < step {
		step = q
	}
	if seen-stored >= int64(step) {
		_, err := m.st.UpdateSession(ctx, e.id, func(s store.Session) (store.Session, error) {
			if t := time.Unix(0, seen); t.After(s.LastSeenAt) {
				s.LastSeenAt = t
			}
			return s, nil
		})
		if err == nil {
			e.stored.Store(seen)
		}
	} else {
		e.stored.Store(stored)
	}
	e.checked.Store(now.UnixNano())
	return nil
}

func (m *Manager) load(ctx context.Context, sid string) (*Identity, store.Session, error) {
	s, err := m.st.GetSession(ctx, sid)
	if err != nil {
		return nil, s, err
	}
	u, err := m.st.GetUser(ctx, s.UserID)
	if err != nil {
		return nil, s, err
	}
	if u.Disabled {
		return nil, s, store.ErrNotFound
	}
	mem, err := m.st.GetMembership(ctx, s.UserID, s.OrgID)
	if err != nil {
		return nil, s, err
	}
	if mem.Disabled {
		return nil, s, store.ErrNotFound // suspended in this org: as gone
	}
	org, err := m.st.GetOrg(ctx, s.OrgID)
	if err != nil {
		return nil, s, err
	}
	return &Identity{
		SessionID:  s.ID,
		UserID:     u.ID,
		Email:      u.Email,
		Name:       u.Name,
		OrgID:      org.ID,
		OrgSlug:    org.Slug,
		Roles:      mem.Roles,
		Groups:     mem.Groups,
		Attributes: mem.Attributes,
		Connection: s.Connection,
		MFA:        s.MFA,
		AMR:        s.AMR,
		MFAAt:      s.MFAAt,
		LogoutHint: s.LogoutHint,
		Federation: s.Federation,
		Subject:    s.Subject,
		AuthTime:   s.CreatedAt,
		ExpiresAt:  s.ExpiresAt,
	}, s, nil
}

func sameIdentity(a, b *Identity) bool {
	return a.UserID == b.UserID && a.Email == b.Email && a.Name == b.Name && a.OrgID == b.OrgID && a.MFA == b.MFA && a.MFAAt.Equal(b.MFAAt) &&
		slices.Equal(a.AMR, b.AMR) &&
		a.OrgSlug == b.OrgSlug && slices.Equal(a.Roles, b.Roles) && slices.Equal(a.Groups, b.Groups)
}

// SteppedUp records a second factor the person just proved in session
// sid (a step-up): its MFA time moves to at and amr joins its methods.
// This node sees it at once, others within RecheckInterval.
func (m *Manager) SteppedUp(ctx context.Context, sid, amr string, at time.Time) error {
	_, err := m.st.UpdateSession(ctx, sid, func(s store.Session) (store.Session, error) {
		if !s.RevokedAt.IsZero() {
			return s, ErrRevoked
		}
		s.MFA, s.MFAAt = true, at.UTC()
		for _, v := range []string{amr, "mfa"} {
			if v != "" && !slices.Contains(s.AMR, v) {
				s.AMR = append(slices.DeleteFunc(slices.Clone(s.AMR), func(x string) bool { return x == "mfa" }), v)
			}
		}
		return s, nil
	})
	if err != nil {
		return fmt.Errorf("session: step-up: %w", err)
	}
	m.mu.RLock()
	e := m.cache[sid]
	m.mu.RUnlock()
	if e != nil {
		e.checked.Store(0) // read again at the next request
	}
	return nil
}

// Revoke ends a session everywhere: this node at once, others within
// RecheckInterval.
func (m *Manager) Revoke(ctx context.Context, sid string) error {
	_, err := m.st.UpdateSession(ctx, sid, func(s store.Session) (store.Session, error) {
		if s.RevokedAt.IsZero() {
			s.RevokedAt = m.opts.Now()
		}
		return s, nil
	})
	m.mu.RLock()
	e := m.cache[sid]
	m.mu.RUnlock()
	if e != nil {
		e.dead.Store(true)
	}
	m.evict(sid)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("session: revoke: %w", err)
	}
	if err == nil && m.opts.Revoked != nil {
		m.opts.Revoked(ctx, sid)
	}
	return nil
}

// Recheck makes the cached sessions a change concerns read the store
// again at their next use: a revoked or deleted session, a person's
// (their record or a membership changed), an org's, or all of them (a
// store.Watcher's resync). Changes from other nodes reach this one this
// way at once, instead of at RecheckInterval.
func (m *Manager) Recheck(c store.Change) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if c.Kind == "session" {
		if e := m.cache[c.ID]; e != nil {
			e.checked.Store(0)
		}
		return
	}
	for _, e := range m.cache {
		id := e.ident.Load()
		switch {
		case c.Kind == "resync",
			c.Kind == "user" && id != nil && id.UserID == c.ID,
			c.Kind == "org" && id != nil && id.OrgID == c.ID:
			e.checked.Store(0)
		}
	}
}

func (m *Manager) evict(sid string) {
	m.mu.Lock()
	delete(m.cache, sid)
	m.mu.Unlock()
}

// Run sweeps idle entries from the cache and expired sessions from the
// store until ctx ends.
func (m *Manager) Run(ctx context.Context) {
	loop.Every(ctx, time.Minute, m.sweep)
}

func (m *Manager) sweep(ctx context.Context) {
	now := m.opts.Now()
	idle := m.opts.IdleTimeout
	if idle <= 0 {
		idle = time.Hour
	}
	m.mu.Lock()
	for id, e := range m.cache {
		if e.dead.Load() || now.UnixNano()-e.lastSeen.Load() > int64(idle) || (e.expires.Load() != 0 && now.UnixNano() > e.expires.Load()) {
			delete(m.cache, id)
		}
	}
	m.mu.Unlock()
	if n, err := m.st.DeleteExpiredSessions(ctx, now.Add(-time.Hour)); err != nil {
		m.opts.Logger.Warn("session: sweep failed", "err", err)
	} else if n > 0 {
		m.opts.Logger.Info("session: expired sessions removed", "count", n)
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// The state cookie ties a sign-in hand-off to the browser that started it:
// the proxy sets it on the app host before sending the browser to sign in,
// the state travels with the sign-in, and the hand-off on the app host only
// succeeds when the cookie matches. A ticket planted in another browser, or
// leaked to someone else, does not.
const stateTTL = 10 * time.Minute

func stateCookieName(secure bool) string {
	if secure {
		return "__Host-gatehouse_state"
	}
	return "_gatehouse_state"
}

// NewState sets a fresh state cookie on the request's host and returns it.
func NewState(w http.ResponseWriter, r *http.Request) string {
	v := token.RandomID()[:32]
	secure := request.IsSecure(r)
	http.SetCookie(w, &http.Cookie{
		Name: stateCookieName(secure), Value: v, Path: "/", MaxAge: int(stateTTL.Seconds()),
		HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode,
	})
	return v
}

// TakeState reports whether the request carries the state cookie with
// value state, and clears the cookie (it is single-use).
func TakeState(w http.ResponseWriter, r *http.Request, state string) bool {
	secure := request.IsSecure(r)
	v, ok := request.CookieValue(r, stateCookieName(secure))
	if !ok || state == "" {
		return false
	}
	http.SetCookie(w, &http.Cookie{Name: stateCookieName(secure), Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode})
	return subtle.ConstantTimeCompare([]byte(v), []byte(state)) == 1
}

// ValidState reports whether s looks like a state NewState made.
func ValidState(s string) bool { return token.ValidToken(s, 32, 32) }

// CookieMarkers are substrings one of which every name IsGatehouseCookie
// accepts contains: a Cookie header without any of them holds none.
func (m *Manager) CookieMarkers() []string {
	return []string{m.opts.CookieName, "gatehouse"}
}

// IsGatehouseCookie reports whether a cookie name is one Gatehouse sets,
// so the proxy can keep them from upstreams.
func (m *Manager) IsGatehouseCookie(name string) bool {
	switch name {
	case m.opts.CookieName, "__Host-" + m.opts.CookieName,
		"_gatehouse_csrf", "__Host-gatehouse_csrf", "_gatehouse_state", "__Host-gatehouse_state",
		"_gatehouse_hrd", "__Host-gatehouse_hrd", "_gatehouse_device", "__Host-gatehouse_device":
		return true
	}
	// Sign-in flow cookies (one per flow).
	return strings.HasPrefix(name, "gatehouse_flow_") || strings.HasPrefix(name, "__Host-gatehouse_flow_")
}
