package provider

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/idp/signing"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

const testSecret = "bench-secret-0123456789-abcdefghijklmnop"

type fixture struct {
	p   *Provider
	st  store.Store
	org store.Org
	usr store.User
}

func TestMain(m *testing.M) {
	// The provider library logs its routes through slog's default.
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

func newFixture(tb testing.TB, alg string, more ...config.Client) *fixture {
	tb.Helper()
	ctx := context.Background()
	var st store.Store = badgertest.Open(tb)
	if _, ok := tb.(*testing.B); ok {
		// On disk, every write synced: as deployed.
		ds, err := badgerstore.Open(tb.TempDir(), badgerstore.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { ds.Close() })
		st = ds
	}
	now := time.Now().UTC()
	org := store.Org{ID: "org_acme", Slug: "acme", Name: "Acme", CreatedAt: now, UpdatedAt: now,
		Attributes:  map[string]string{"plan": "enterprise", "region": "eu", "long": strings.Repeat("x", 300)},
		TokenClaims: map[string]string{"region": "org.attributes.region", "tier": "org.slug", "long": "org.attributes.long", "who": "user.email"}}
	usr := store.User{ID: "usr_alice", Email: "alice@acme.example", Name: "Alice", CreatedAt: now, UpdatedAt: now}
	for _, err := range []error{st.CreateOrg(ctx, org), st.CreateUser(ctx, usr),
		st.CreateMembership(ctx, store.Membership{UserID: usr.ID, OrgID: org.ID, Roles: []string{"admin"}, CreatedAt: now, UpdatedAt: now})} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	keys, err := signing.New(ctx, st, signing.Options{Algorithm: alg})
	if err != nil {
		tb.Fatal(err)
	}
	sm, err := session.New(st, make([]byte, 32), session.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, err := idp.NewDirectory(ctx, st, log)
	if err != nil {
		tb.Fatal(err)
	}
	iss, _ := url.Parse("https://auth.example.com")
	clients := []config.Client{
		{ID: "web", Type: config.ClientWeb, Secret: testSecret, AuthMethod: "client_secret_basic", RedirectURIs: []string{"https://app.example.com/cb"}},
		{ID: "bot", Type: config.ClientMachine, Secret: testSecret, AuthMethod: "client_secret_basic", Org: "acme", Scopes: []string{"reports.read"},
			Claims: map[string]string{"plan": "org.attributes.plan", "tier": "org.name", "missing": "org.attributes.nope"}},
	}
	clients = append(clients, more...)
	for i := range clients {
		clients[i].AccessTokenLifetime, clients[i].IDTokenLifetime, clients[i].RefreshTokenLifetime = 5*time.Minute, 10*time.Minute, time.Hour
	}
	p, err := New(Options{Issuer: iss, Store: st, Keys: keys, Sessions: sm, Orgs: dir, Clients: clients, Key: make([]byte, 32), Logger: log,
		SignIn: func(string, string, string, string, bool) string { return "/signin" }})
	if err != nil {
		tb.Fatal(err)
	}
	return &fixture{p: p, st: st, org: org, usr: usr}
}

// post sends a form to the token endpoint as client id.
func (f *fixture) post(tb testing.TB, id string, form url.Values) *httptest.ResponseRecorder {
	return f.postAs(id, testSecret, strings.NewReader(form.Encode()))
}

func (f *fixture) postAs(id, secret string, body io.Reader) *httptest.ResponseRecorder {
	req := httptest.NewRequest("POST", "https://auth.example.com"+TokenPath, body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	rec := httptest.NewRecorder()
	f.p.ServeHTTP(rec, req)
	return rec
}

// family makes a session-less (offline) refresh family for alice.
func (f *fixture) family(tb testing.TB, id string) string {
	tb.Helper()
	now := time.Now().UTC()
	if err := f.st.CreateRefreshFamily(context.Background(), store.RefreshFamily{ID: id, ClientID: "web", UserID: f.usr.ID, OrgID: f.org.ID,
		Scopes: []string{"openid"}, AuthTime: now, Generation: 1, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		tb.Fatal(err)
	}
	return f.p.refreshToken(id, 1)
}

func TestRefreshTokenFormat(t *testing.T) {
	f := newFixture(t, "ES256")
	good := f.p.refreshToken("AAAAAAAAAAAAAAAAAAAAAA", 7)
	fid, gen, ok := f.p.parseRefresh(good)
	if !ok || fid != "AAAAAAAAAAAAAAAAAAAAAA" || gen != 7 {
		t.Fatalf("parse %q: %q %d %v", good, fid, gen, ok)
	}
	other, _ := New(Options{Issuer: f.p.o.Issuer, Store: f.st, Keys: f.p.o.Keys, Sessions: f.p.o.Sessions, Orgs: f.p.o.Orgs, Key: []byte(strings.Repeat("k", 32))})
	for name, tok := range map[string]string{
		"empty":                  "",
		"no prefix":              strings.TrimPrefix(good, refreshPrefix),
		"another key's tag":      other.refreshToken("AAAAAAAAAAAAAAAAAAAAAA", 7),
		"generation changed":     strings.Replace(good, ".7.", ".8.", 1),
		"generation with a zero": strings.Replace(good, ".7.", ".07.", 1),
		"short family":           refreshPrefix + "AAAA.7." + f.p.refreshTag("AAAA", 7),
		"extra part":             good + ".x",
		"huge":                   good + strings.Repeat("A", 300),
		"negative generation":    strings.Replace(good, ".7.", ".-7.", 1),
	} {
		if _, _, ok := f.p.parseRefresh(tok); ok {
			t.Errorf("%s: %q accepted", name, tok)
		}
	}
}

func FuzzParseRefresh(f *testing.F) {
	fx := newFixture(f, "ES256")
	good := fx.p.refreshToken("AAAAAAAAAAAAAAAAAAAAAA", 1)
	f.Add(good)
	f.Add("ghrt_x.1.y")
	f.Fuzz(func(t *testing.T, tok string) {
		if fid, gen, ok := fx.p.parseRefresh(tok); ok && fx.p.refreshToken(fid, gen) != tok {
			t.Fatalf("accepted %q, which this key never made", tok)
		}
	})
}

// Token endpoint throughput (16 callers per core): each op is
// one token answered, with its audit event (a synced store write).
func BenchmarkClientCredentials(b *testing.B) {
	f := newFixture(b, "ES256")
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"reports.read"}}
	b.ReportAllocs()
	// Many clients at once, as a busy token endpoint sees them: the store
	// groups their synced writes.
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rec := f.post(b, "bot", form); rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// Each op rotates its own family one generation (reads the family, the
// person and membership, writes the family and an audit event, signs an
// access token and an ID token).
func BenchmarkRefresh(b *testing.B) {
	f := newFixture(b, "ES256")
	var n atomicCounter
	b.ReportAllocs()
	// Many clients at once, as a busy token endpoint sees them: the store
	// groups their synced writes.
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rt := f.family(b, n.next())
		for pb.Next() {
			rec := f.post(b, "web", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
			if rec.Code != http.StatusOK {
				b.Fatalf("%d %s", rec.Code, rec.Body)
			}
			rt = refreshIn(b, rec.Body.String())
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

type atomicCounter struct{ n atomic.Int64 }

// next is a new 22-character family ID.
func (c *atomicCounter) next() string {
	return fmt.Sprintf("bench%017d", c.n.Add(1))
}

func refreshIn(tb testing.TB, body string) string {
	var r struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.RefreshToken == "" {
		tb.Fatalf("no refresh token in %s", body)
	}
	return r.RefreshToken
}

// BenchmarkCodeFlow is Gatehouse's side of a whole sign-in of an app with
// a session already there: authorize, the hand-off, the callback and the
// code exchange with PKCE (tokens signed, the family and the audit event
// written, synced).
func BenchmarkCodeFlow(b *testing.B) {
	f := newFixture(b, "ES256")
	ctx := context.Background()
	s, err := f.p.o.Sessions.Create(ctx, f.usr.ID, f.org.ID, "password", "127.0.0.1", "bench")
	if err != nil {
		b.Fatal(err)
	}
	val, err := f.p.o.Sessions.Seal("auth.example.com", s.ID, s.ExpiresAt)
	if err != nil {
		b.Fatal(err)
	}
	cookie := &http.Cookie{Name: f.p.o.Sessions.CookieName(true), Value: val}
	verifier := "bench-verifier-0123456789-0123456789-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	get := func(u string) *httptest.ResponseRecorder {
		if strings.HasPrefix(u, "/") {
			u = "https://auth.example.com" + u
		}
		req := httptest.NewRequest("GET", u, nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		f.p.ServeHTTP(rec, req)
		return rec
	}
	authorize := "https://auth.example.com" + AuthorizePath + "?" + url.Values{"client_id": {"web"}, "redirect_uri": {"https://app.example.com/cb"},
		"response_type": {"code"}, "scope": {"openid email"}, "state": {"s"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}.Encode()
	b.ReportAllocs()
	for b.Loop() {
		rec := get(authorize)
		for i := 0; i < 3 && rec.Code == http.StatusFound && !strings.HasPrefix(rec.Header().Get("Location"), "https://app.example.com/"); i++ {
			rec = get(rec.Header().Get("Location"))
		}
		loc, _ := url.Parse(rec.Header().Get("Location"))
		code := loc.Query().Get("code")
		if code == "" {
			b.Fatalf("no code: %d %s %s", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
		if rec := f.post(b, "web", url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier},
			"redirect_uri": {"https://app.example.com/cb"}}); rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body)
		}
	}
}

// Mapped claims: the org's and the client's (the client's win), values
// from the org (a machine token has no person), too long ones left out.
func TestMappedClaims(t *testing.T) {
	f := newFixture(t, "ES256")
	rec := f.post(t, "bot", url.Values{"grant_type": {"client_credentials"}, "scope": {"reports.read"}})
	if rec.Code != http.StatusOK {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
		t.Fatal(err)
	}
	payload, err := f.p.o.Keys.Verify(resp.AccessToken, signing.TypeAccessToken)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"plan": "enterprise", "region": "eu", "tier": "Acme", "org_slug": "acme", "sub": "bot"}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("claim %s = %v, want %v (all: %v)", k, c[k], v, c)
		}
	}
	for _, absent := range []string{"long", "missing", "who"} {
		if _, ok := c[absent]; ok {
			t.Errorf("claim %s present: %v", absent, c[absent])
		}
	}
}
