package session

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newManager(t testing.TB, st store.Store, now func() time.Time) *Manager {
	t.Helper()
	m, err := New(st, testKey, Options{Lifetime: time.Hour, IdleTimeout: 10 * time.Minute, RecheckInterval: 2 * time.Second, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSealOpen(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	m := newManager(t, nil, func() time.Time { return now })
	v, err := m.Seal("app.example.com", "sid-1", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if sid, err := m.Open("app.example.com", v, now); err != nil || sid != "sid-1" {
		t.Fatalf("Open = %q, %v", sid, err)
	}
	other, _ := New(nil, []byte("ffffffffffffffffffffffffffffffff"), Options{})
	tamper := []byte(v)
	tamper[len(tamper)-2] ^= 1
	tests := []struct {
		name, host, value string
		now               time.Time
		want              error
	}{
		{"other host", "login.globex.example", v, now, ErrBadCookie},
		{"host suffix", "app.example.com.evil", v, now, ErrBadCookie},
		{"tampered", "app.example.com", string(tamper), now, ErrBadCookie},
		{"expired", "app.example.com", v, now.Add(time.Hour), ErrExpired},
		{"empty", "app.example.com", "", now, ErrBadCookie},
		{"no version", "app.example.com", v[3:], now, ErrBadCookie},
		{"not base64", "app.example.com", "v1.!!!", now, ErrBadCookie},
		{"short", "app.example.com", "v1.AAAA", now, ErrBadCookie},
		{"oversized", "app.example.com", "v1." + strings.Repeat("A", MaxCookieLen), now, ErrBadCookie},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := m.Open(tt.host, tt.value, tt.now); !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := other.Open("app.example.com", v, now); !errors.Is(err, ErrBadCookie) {
		t.Fatalf("cookie opened with another key: %v", err)
	}
}

func FuzzOpen(f *testing.F) {
	m, _ := New(nil, testKey, Options{})
	good, _ := m.Seal("h", "sid", time.Now().Add(time.Hour))
	f.Add("h", good)
	f.Add("h", "v1.")
	f.Add("h", "v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	f.Fuzz(func(t *testing.T, host, value string) {
		sid, err := m.Open(host, value, time.Now())
		// Only ever sealed: ID "sid" for host "h". Anything else that opens
		// would be a forgery.
		if err == nil && (sid != "sid" || host != "h") {
			t.Fatalf("Open(%q, %q) accepted a cookie it did not issue: %q", host, value, sid)
		}
	})
}

type fixture struct {
	st      store.Store
	m       *Manager
	now     atomic.Int64
	session store.Session
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := badgerstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st}
	f.now.Store(time.Unix(1_800_000_000, 0).UnixNano())
	f.m = newManager(t, st, func() time.Time { return time.Unix(0, f.now.Load()) })
	ctx := t.Context()
	must(t, st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "acme", Name: "Acme"}))
	must(t, st.CreateUser(ctx, store.User{ID: "u1", Email: "alice@acme.example"}))
	must(t, st.CreateMembership(ctx, store.Membership{UserID: "u1", OrgID: "o1", Roles: []string{"admin"}}))
	f.session, err = f.m.Create(ctx, "u1", "o1", "password", "127.0.0.1", "test")
	must(t, err)
	return f
}

func (f *fixture) advance(d time.Duration) { f.now.Add(int64(d)) }

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCookieRoundTripThroughRequest(t *testing.T) {
	f := newFixture(t)
	req := httptest.NewRequest("GET", "http://app.example.com/", nil)
	rec := httptest.NewRecorder()
	must(t, f.m.SetCookie(rec, req, f.session))
	c := rec.Result().Cookies()[0]
	if !c.HttpOnly || c.SameSite != 2 || c.Path != "/" || c.Domain != "" {
		t.Fatalf("cookie attributes: %+v", c)
	}
	req.AddCookie(c)
	e, err := f.m.Authenticate(req)
	must(t, err)
	if id := e.Identity(); id.OrgSlug != "acme" || id.Email != "alice@acme.example" || id.Roles[0] != "admin" {
		t.Fatalf("identity = %+v", id)
	}
	// The same cookie on another host is refused.
	other := httptest.NewRequest("GET", "http://login.globex.example/", nil)
	other.AddCookie(c)
	if _, err := f.m.Authenticate(other); !errors.Is(err, ErrBadCookie) {
		t.Fatalf("cookie accepted on another host: %v", err)
	}
	// HTTPS gets a __Host- cookie with Secure.
	sreq := httptest.NewRequest("GET", "https://app.example.com/", nil)
	srec := httptest.NewRecorder()
	must(t, f.m.SetCookie(srec, sreq, f.session))
	sc := srec.Result().Cookies()[0]
	if !sc.Secure || !strings.HasPrefix(sc.Name, "__Host-") {
		t.Fatalf("https cookie: %+v", sc)
	}
}

func TestRevocationSeenByOtherNodeWithinRecheck(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	// A second manager over the same store plays another node.
	node2 := newManager(t, f.st, func() time.Time { return time.Unix(0, f.now.Load()) })
	if _, err := node2.Lookup(ctx, f.session.ID); err != nil {
		t.Fatal(err)
	}
	must(t, f.m.Revoke(ctx, f.session.ID))
	if _, err := f.m.Lookup(ctx, f.session.ID); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoking node still accepts: %v", err)
	}
	// Node 2 serves from its cache until the recheck interval passes...
	f.advance(time.Second)
	if _, err := node2.Lookup(ctx, f.session.ID); err != nil {
		t.Fatalf("within the interval the cache answers: %v", err)
	}
	// ...and refuses once it has passed.
	f.advance(1500 * time.Millisecond)
	if _, err := node2.Lookup(ctx, f.session.ID); !errors.Is(err, ErrRevoked) {
		t.Fatalf("node 2 accepts a revoked session: %v", err)
	}
}

func TestHotPathReadsStoreOncePerInterval(t *testing.T) {
	f := newFixture(t)
	cs := &countingStore{Store: f.st}
	m := newManager(t, cs, func() time.Time { return time.Unix(0, f.now.Load()) })
	for range 1000 {
		if _, err := m.Lookup(t.Context(), f.session.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.gets.Load(); n != 1 {
		t.Fatalf("1000 lookups read the session %d times, want 1", n)
	}
	f.advance(3 * time.Second)
	_, _ = m.Lookup(t.Context(), f.session.ID)
	if n := cs.gets.Load(); n != 2 {
		t.Fatalf("after the interval: %d reads, want 2", n)
	}
}

func TestIdleAndAbsoluteExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	if _, err := f.m.Lookup(ctx, f.session.ID); err != nil {
		t.Fatal(err)
	}
	f.advance(11 * time.Minute)
	if _, err := f.m.Lookup(ctx, f.session.ID); !errors.Is(err, ErrExpired) {
		t.Fatalf("idle session accepted: %v", err)
	}
	g := newFixture(t)
	for range 7 { // active every 9 minutes: never idle, but past the lifetime
		g.advance(9 * time.Minute)
		_, _ = g.m.Lookup(ctx, g.session.ID)
	}
	if _, err := g.m.Lookup(ctx, g.session.ID); !errors.Is(err, ErrExpired) {
		t.Fatalf("session past its lifetime accepted: %v", err)
	}
}

func TestRemovedMembershipEndsSession(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	_, _ = f.m.Lookup(ctx, f.session.ID)
	must(t, f.st.DeleteMembership(ctx, "u1", "o1"))
	f.advance(3 * time.Second)
	if _, err := f.m.Lookup(ctx, f.session.ID); err == nil {
		t.Fatal("session survived removal from the org")
	}
}

type countingStore struct {
	store.Store
	gets atomic.Int64
}

func (c *countingStore) GetSession(ctx context.Context, id string) (store.Session, error) {
	c.gets.Add(1)
	return c.Store.GetSession(ctx, id)
}

func BenchmarkAuthenticate(b *testing.B) {
	st, err := badgerstore.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	must(b, st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "acme", Name: "Acme"}))
	must(b, st.CreateUser(ctx, store.User{ID: "u1", Email: "alice@acme.example"}))
	must(b, st.CreateMembership(ctx, store.Membership{UserID: "u1", OrgID: "o1"}))
	m := newManager(b, st, time.Now)
	s, err := m.Create(ctx, "u1", "o1", "password", "", "")
	must(b, err)
	req := httptest.NewRequest("GET", "http://app.example.com/", nil)
	rec := httptest.NewRecorder()
	must(b, m.SetCookie(rec, req, s))
	req.AddCookie(rec.Result().Cookies()[0])
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := m.Authenticate(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A session ends on a whole second, as JWT times are: the identity
// assertion, whose exp is capped at the session's end, then has exp after
// iat even in the session's last second.
func TestSessionEndsOnWholeSecond(t *testing.T) {
	st := badgertest.Open(t)
	created := time.Unix(1_800_000_000, 700_000_000)
	m := newManager(t, st, func() time.Time { return created })
	s, err := m.Create(t.Context(), "u1", "o1", "password", "127.0.0.1", "test")
	if err != nil {
		t.Fatal(err)
	}
	if !s.ExpiresAt.Equal(s.ExpiresAt.Truncate(time.Second)) || s.ExpiresAt.After(created.Add(time.Hour)) {
		t.Fatalf("ExpiresAt = %v for a session made at %v with a 1h lifetime", s.ExpiresAt, created)
	}
	last := s.ExpiresAt.Add(-time.Nanosecond) // still active
	if !s.Active(last, 0) || last.Unix() >= s.ExpiresAt.Unix() {
		t.Fatalf("in the last instant: iat %d, exp %d", last.Unix(), s.ExpiresAt.Unix())
	}
}

// An org's rules hold its sessions: tightened, they end longer ones (or
// refuse ones without a second factor) within RecheckInterval; another
// org's sessions are untouched; new sessions are made to them.
func TestOrgRules(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	must(t, f.st.CreateOrg(ctx, store.Org{ID: "o2", Slug: "globex", Name: "Globex"}))
	must(t, f.st.CreateMembership(ctx, store.Membership{UserID: "u1", OrgID: "o2"}))
	other, err := f.m.Create(ctx, "u1", "o2", "password", "", "")
	must(t, err)
	var rules atomic.Pointer[map[string]OrgRules]
	set := func(r map[string]OrgRules) { rules.Store(&r) }
	set(map[string]OrgRules{})
	f.m.opts.OrgRules = func(id string) OrgRules { return (*rules.Load())[id] }
	live := func(id string) error {
		_, err := f.m.Lookup(ctx, id)
		return err
	}
	for range 2 { // active (the deployment's idle timeout is 10m), 18m old
		f.advance(9 * time.Minute)
		must(t, live(f.session.ID))
		must(t, live(other.ID))
	}

	// acme's lifetime drops to 15 minutes: acme's 18-minute-old session
	// ends at the next check, globex's does not.
	set(map[string]OrgRules{"o1": {Lifetime: 15 * time.Minute}})
	must(t, live(f.session.ID)) // checked less than RecheckInterval ago
	f.advance(3 * time.Second)
	if err := live(f.session.ID); !errors.Is(err, ErrExpired) {
		t.Fatalf("a session past its org's new lifetime: %v", err)
	}
	must(t, live(other.ID))
	// A new session of acme is made to the org's lifetime.
	s, err := f.m.Create(ctx, "u1", "o1", "password", "", "")
	must(t, err)
	if got := s.ExpiresAt.Sub(s.CreatedAt); got > 15*time.Minute {
		t.Errorf("new session lives %s", got)
	}
	// An idle timeout of the org's, shorter than the deployment's.
	set(map[string]OrgRules{"o2": {IdleTimeout: 2 * time.Minute}})
	f.advance(3 * time.Second)
	must(t, live(other.ID))
	f.advance(2*time.Minute + time.Second)
	if err := live(other.ID); !errors.Is(err, ErrExpired) {
		t.Fatalf("a session idle past its org's timeout: %v", err)
	}

	// A second factor required of admins: the admin's session without one
	// is refused; one with is not.
	s, err = f.m.Create(ctx, "u1", "o1", "password", "", "")
	must(t, err)
	withMFA, err := f.m.CreateWith(ctx, store.Session{UserID: "u1", OrgID: "o1", Connection: "password", MFA: true})
	must(t, err)
	must(t, live(s.ID))
	set(map[string]OrgRules{"o1": {RequireMFA: store.MFAAdmins}})
	f.advance(3 * time.Second)
	if err := live(s.ID); !errors.Is(err, ErrMFARequired) {
		t.Fatalf("an admin's session without a second factor: %v", err)
	}
	must(t, live(withMFA.ID))
	// Relaxed again, it passes (the record was never changed).
	set(map[string]OrgRules{})
	f.advance(3 * time.Second)
	must(t, live(s.ID))
}

// An org that counts only some factors refuses sessions whose own second
// factor was another kind; an IdP's second factor is not judged.
func TestOrgFactorRule(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	f.m.opts.OrgRules = func(string) OrgRules {
		return OrgRules{RequireMFA: store.MFAAll, MFAFactors: []string{store.FactorPasskey}}
	}
	for _, c := range []struct {
		amr  []string
		want error
	}{
		{[]string{"pwd", "otp", "mfa"}, ErrMFARequired},
		{[]string{"pwd", "hwk", "mfa"}, nil},
		{[]string{"swk", "mfa"}, nil},
		{[]string{"mfa"}, nil},        // the IdP's
		{[]string{"pwd", "mfa"}, nil}, // a recovery code
	} {
		s, err := f.m.CreateWith(ctx, store.Session{UserID: "u1", OrgID: "o1", Connection: "password", MFA: true, AMR: c.amr})
		must(t, err)
		if _, err := f.m.Lookup(ctx, s.ID); !errors.Is(err, c.want) && (c.want != nil || err != nil) {
			t.Errorf("amr %v: %v, want %v", c.amr, err, c.want)
		}
	}
}

// A change another node made (a store.Watcher's) makes this node read the
// sessions it concerns again at once, not at the next recheck: a
// revoked session, a person's, an org's, or all; others stay cached.
func TestRecheckOnChange(t *testing.T) {
	f := newFixture(t)
	ctx := t.Context()
	node2 := newManager(t, f.st, func() time.Time { return time.Unix(0, f.now.Load()) })
	other, err := f.m.Create(ctx, "u1", "o1", "password", "127.0.0.1", "test")
	must(t, err)
	for _, id := range []string{f.session.ID, other.ID} {
		if _, err := node2.Lookup(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	must(t, f.m.Revoke(ctx, f.session.ID))
	node2.Recheck(store.Change{Kind: "session", ID: f.session.ID})
	if _, err := node2.Lookup(ctx, f.session.ID); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after the change, node 2 still accepts: %v", err)
	}
	// The person's membership disabled: "user" rechecks their sessions.
	_, err = f.st.UpdateMembership(ctx, "u1", "o1", func(m store.Membership) (store.Membership, error) { m.Disabled = true; return m, nil })
	must(t, err)
	if _, err := node2.Lookup(ctx, other.ID); err != nil {
		t.Fatalf("before the change the cache answers: %v", err)
	}
	node2.Recheck(store.Change{Kind: "user", ID: "u2"})
	if _, err := node2.Lookup(ctx, other.ID); err != nil {
		t.Fatalf("another person's change rechecked u1: %v", err)
	}
	node2.Recheck(store.Change{Kind: "user", ID: "u1"})
	if _, err := node2.Lookup(ctx, other.ID); err == nil {
		t.Fatal("a disabled membership's session still accepted after the change")
	}
}
