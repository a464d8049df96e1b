package oidc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/testidp"
)

const callback = "http://login.acme.test/.gatehouse/callback"

func open(t *testing.T, cfg Config) *conn {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	c, err := Open(context.Background(), raw, connection.Deps{OrgSlug: "acme"})
	if err != nil {
		t.Fatal(err)
	}
	return c.(*conn)
}

// noRedirect does one HTTP request without following redirects.
var noRedirect = (&http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
	return http.ErrUseLastResponse
}}).Do

// signIn drives a browser through the real OP from the authorization URL
// to the redirect back to Gatehouse, and returns that callback request.
func signIn(t *testing.T, authURL, user, pw string) *http.Request {
	t.Helper()
	next := authURL
	for range 10 {
		req, _ := http.NewRequest("GET", next, nil)
		resp, err := noRedirect(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.Contains(string(body), `name="username"`) {
			resp, err = testidp.Login(noRedirect, next, string(body), user, pw)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			t.Fatalf("IdP answered %d at %s:\n%s", resp.StatusCode, next, body)
		}
		loc, _ := resp.Location()
		if strings.HasPrefix(loc.String(), callback) {
			return httptest.NewRequest("GET", loc.String(), nil)
		}
		next = loc.String()
	}
	t.Fatal("no redirect back to the callback")
	return nil
}

func TestRealOP(t *testing.T) {
	idp := testidp.NewOIDC(t, "gatehouse", "s3cret", []string{callback},
		testidp.User{ID: "u1", Username: "ann", Password: "pw-ann", Email: "ann@acme.test", EmailVerified: true, First: "Ann", Last: "Lee", Groups: []string{"eng", "admins"}})
	c := open(t, Config{Issuer: idp.Issuer, ClientID: "gatehouse", ClientSecret: "s3cret", Scopes: []string{"openid", "email", "profile", "groups"}})
	ctx := context.Background()

	begin := func(state string) (connection.BeginRequest, string, []byte) {
		req := connection.BeginRequest{State: state, CallbackURL: callback, LoginHint: "ann@acme.test"}
		to, flow, err := c.Begin(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(to)
		q := u.Query()
		if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") != state || q.Get("login_hint") != "ann@acme.test" {
			t.Fatalf("authorization URL lacks PKCE, nonce, state or hint: %s", to)
		}
		return req, to, flow
	}

	t.Run("sign-in", func(t *testing.T) {
		req, to, flow := begin("state-one-0123456789")
		cb := signIn(t, to, "ann", "pw-ann")
		id, err := c.Finish(ctx, cb, req, flow)
		if err != nil {
			t.Fatal(err)
		}
		if id.Subject != "u1" || id.Issuer != idp.Issuer || id.Email != "ann@acme.test" || !id.EmailVerified || id.Name != "Ann Lee" ||
			!slices.Equal(id.Groups, []string{"eng", "admins"}) {
			t.Fatalf("identity %+v", id)
		}
		// The same response again: the IdP refuses the used code.
		if _, err := c.Finish(ctx, cb, req, flow); connection.KindOf(err) != connection.KindInvalid {
			t.Fatalf("replayed code: %v (kind %d)", err, connection.KindOf(err))
		}
	})
	t.Run("code of another flow", func(t *testing.T) {
		req1, to1, _ := begin("state-two-0123456789")
		_, _, flow2 := begin("state-three-23456789")
		cb := signIn(t, to1, "ann", "pw-ann")
		// The PKCE verifier (and nonce) of another flow: refused.
		if _, err := c.Finish(ctx, cb, req1, flow2); connection.KindOf(err) != connection.KindInvalid {
			t.Fatalf("cross-flow code: %v", err)
		}
	})
	t.Run("idp error", func(t *testing.T) {
		req, _, flow := begin("state-four-123456789")
		cb := httptest.NewRequest("GET", callback+"?error=access_denied&error_description=no&state="+req.State, nil)
		if _, err := c.Finish(ctx, cb, req, flow); connection.KindOf(err) != connection.KindCanceled {
			t.Fatalf("access_denied: %v", err)
		}
	})
}

// forger is an OpenID Provider that signs whatever ID token a test asks
// for: the real OP above cannot be made to mint forgeries.
type forger struct {
	srv  *httptest.Server
	key  *rsa.PrivateKey
	kid  string // the key ID the JWKS publishes key under
	mu   sync.Mutex
	next func(nonce string) string // the ID token for the next exchange
	sub  string                    // userinfo's sub
	// lastNonce is the nonce of the last authorization request.
	nonce string
}

func newForger(t testing.TB) *forger {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	f := &forger{key: key, kid: "k1"}
	mux := http.NewServeMux()
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	iss := f.srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "authorization_endpoint": iss + "/auth", "token_endpoint": iss + "/token",
			"jwks_uri": iss + "/keys", "userinfo_endpoint": iss + "/userinfo", "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: f.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		tok := f.next(f.nonce)
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		resp := map[string]any{"access_token": "at-1", "token_type": "Bearer", "expires_in": 300}
		if tok != "" {
			resp["id_token"] = tok
		}
		json.NewEncoder(w).Encode(resp)
	})
	mux.HandleFunc("/userinfo", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		json.NewEncoder(w).Encode(map[string]any{"sub": f.sub, "email": "ann@acme.test", "email_verified": true})
	})
	return f
}

func (f *forger) claims(nonce string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": f.srv.URL, "aud": "gatehouse", "sub": "u1", "nonce": nonce, "email": "ann@acme.test", "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
}

func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

func TestForgedIDTokens(t *testing.T) {
	f := newForger(t)
	c := open(t, Config{Issuer: f.srv.URL, ClientID: "gatehouse", ClientSecret: "x"})
	pubDER, _ := x509.MarshalPKIXPublicKey(&f.key.PublicKey)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	with := func(mod func(map[string]any)) func(t *testing.T, nonce string) string {
		return func(t *testing.T, nonce string) string {
			cl := f.claims(nonce)
			mod(cl)
			return sign(t, jose.RS256, f.key, "k1", cl)
		}
	}
	tests := []struct {
		name  string
		token func(t *testing.T, nonce string) string
		sub   string // userinfo sub (default u1)
		kind  connection.Kind
		ok    bool
	}{
		{name: "valid (control)", token: with(func(map[string]any) {}), ok: true},
		{name: "alg none", kind: connection.KindInvalid, token: func(t *testing.T, nonce string) string {
			enc := base64.RawURLEncoding.EncodeToString
			b, _ := json.Marshal(f.claims(nonce))
			return enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(b) + "."
		}},
		{name: "HS256 signed with the public key", kind: connection.KindInvalid, token: func(t *testing.T, nonce string) string {
			return sign(t, jose.HS256, pubPEM, "k1", f.claims(nonce))
		}},
		{name: "signed by another key with the same kid", kind: connection.KindInvalid, token: func(t *testing.T, nonce string) string {
			return sign(t, jose.RS256, other, "k1", f.claims(nonce))
		}},
		{name: "other issuer", kind: connection.KindInvalid, token: with(func(c map[string]any) { c["iss"] = "https://evil.example" })},
		{name: "other audience", kind: connection.KindInvalid, token: with(func(c map[string]any) { c["aud"] = "another-client" })},
		{name: "expired", kind: connection.KindExpired, token: with(func(c map[string]any) { c["exp"] = time.Now().Add(-time.Minute).Unix() })},
		{name: "not yet valid", kind: connection.KindExpired, token: with(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })},
		{name: "missing nonce", kind: connection.KindInvalid, token: with(func(c map[string]any) { delete(c, "nonce") })},
		{name: "nonce of another sign-in (replayed token)", kind: connection.KindInvalid, token: with(func(c map[string]any) { c["nonce"] = "an-older-nonce" })},
		{name: "no sub", kind: connection.KindInvalid, token: with(func(c map[string]any) { delete(c, "sub") })},
		{name: "no id_token", kind: connection.KindInvalid, token: func(*testing.T, string) string { return "" }},
		{name: "garbage", kind: connection.KindInvalid, token: func(*testing.T, string) string { return "a.b.c" }},
		{name: "userinfo for another subject", kind: connection.KindInvalid, sub: "u2", token: with(func(c map[string]any) { delete(c, "email") })},
		{name: "email from userinfo", ok: true, token: with(func(c map[string]any) { delete(c, "email") })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := connection.BeginRequest{State: "state-0123456789abcdef", CallbackURL: callback}
			to, flow, err := c.Begin(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(to)
			f.mu.Lock()
			f.nonce = u.Query().Get("nonce")
			f.next = func(nonce string) string { return tt.token(t, nonce) }
			f.sub = "u1"
			if tt.sub != "" {
				f.sub = tt.sub
			}
			f.mu.Unlock()
			cb := httptest.NewRequest("GET", callback+"?code=c1&state="+req.State, nil)
			id, err := c.Finish(context.Background(), cb, req, flow)
			if tt.ok {
				if err != nil || id.Email != "ann@acme.test" || id.Subject != "u1" {
					t.Fatalf("got %+v, %v", id, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if got := connection.KindOf(err); got != tt.kind {
				t.Fatalf("kind %d, want %d: %v", got, tt.kind, err)
			}
			t.Log(err)
		})
	}
}

// The IdP rotates its signing key: a token under the new key ID is
// accepted after go-oidc refetches the JWKS; the retired key is not.
func TestIdPKeyRotation(t *testing.T) {
	f := newForger(t)
	c := open(t, Config{Issuer: f.srv.URL, ClientID: "gatehouse", ClientSecret: "x"})
	old := f.key
	finish := func(key *rsa.PrivateKey, kid string) error {
		req := connection.BeginRequest{State: "state-0123456789abcdef", CallbackURL: callback}
		to, flow, err := c.Begin(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(to)
		f.mu.Lock()
		f.nonce, f.sub = u.Query().Get("nonce"), "u1"
		f.next = func(nonce string) string { return sign(t, jose.RS256, key, kid, f.claims(nonce)) }
		f.mu.Unlock()
		_, err = c.Finish(context.Background(), httptest.NewRequest("GET", callback+"?code=c1&state="+req.State, nil), req, flow)
		return err
	}
	if err := finish(old, "k1"); err != nil {
		t.Fatal(err)
	}
	next, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.mu.Lock()
	f.key, f.kid = next, "k2"
	f.mu.Unlock()
	if err := finish(next, "k2"); err != nil {
		t.Fatalf("token under the rotated key: %v", err)
	}
	// go-oidc answers the waiting verification as soon as the new key set
	// is fetched, and swaps its cache a moment later (on the fetching
	// goroutine): for that moment the old set is still cached. After it,
	// the retired key is refused.
	var err error
	for range 50 {
		if err = finish(old, "k1"); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("token under the retired key accepted")
	}
}

func TestMixUpIssuerParameter(t *testing.T) {
	f := newForger(t)
	c := open(t, Config{Issuer: f.srv.URL, ClientID: "gatehouse", ClientSecret: "x"})
	req := connection.BeginRequest{State: "state-0123456789abcdef", CallbackURL: callback}
	_, flow, _ := c.Begin(context.Background(), req)
	cb := httptest.NewRequest("GET", callback+"?code=c1&iss="+url.QueryEscape("https://other-idp.example"), nil)
	if _, err := c.Finish(context.Background(), cb, req, flow); connection.KindOf(err) != connection.KindInvalid {
		t.Fatalf("response naming another issuer: %v", err)
	}
}

func TestEntraTenants(t *testing.T) {
	c := &conn{cfg: Config{AllowedTenants: []string{"tid-a"}}, issuerTemplate: "https://login.microsoftonline.com/{tenantid}/v2.0"}
	tests := []struct {
		name, iss, tid string
		kind           connection.Kind
		ok             bool
	}{
		{"allowed tenant", "https://login.microsoftonline.com/tid-a/v2.0", "tid-a", 0, true},
		{"tenant not allowed", "https://login.microsoftonline.com/tid-b/v2.0", "tid-b", connection.KindDenied, false},
		{"issuer of another tenant than tid", "https://login.microsoftonline.com/tid-b/v2.0", "tid-a", connection.KindInvalid, false},
		{"no tid", "https://login.microsoftonline.com/tid-a/v2.0", "", connection.KindDenied, false},
		{"issuer of another host", "https://evil.example/tid-a/v2.0", "tid-a", connection.KindInvalid, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			claims := map[string]any{}
			if tt.tid != "" {
				claims["tid"] = tt.tid
			}
			err := c.checkTenant(tt.iss, claims)
			if tt.ok != (err == nil) || !tt.ok && connection.KindOf(err) != tt.kind {
				t.Fatalf("checkTenant = %v", err)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		err  string
	}{
		{"ok", Config{Issuer: "https://idp.example", ClientID: "a", ClientSecret: "b"}, ""},
		{"loopback http", Config{Issuer: "http://127.0.0.1:5556", ClientID: "a", ClientSecret: "b"}, ""},
		{"http", Config{Issuer: "http://idp.example", ClientID: "a", ClientSecret: "b"}, "https"},
		{"no issuer", Config{ClientID: "a", ClientSecret: "b"}, "issuer is required"},
		{"query", Config{Issuer: "https://idp.example/?x=1", ClientID: "a", ClientSecret: "b"}, "without query"},
		{"no client", Config{Issuer: "https://idp.example", ClientSecret: "b"}, "client_id"},
		{"no secret", Config{Issuer: "https://idp.example", ClientID: "a"}, "client_secret"},
		{"entra common", Config{Issuer: "https://login.microsoftonline.com/common/v2.0", ClientID: "a", ClientSecret: "b"}, "allowed_tenants"},
		{"entra organizations with tenants", Config{Issuer: "https://login.microsoftonline.com/organizations/v2.0", ClientID: "a", ClientSecret: "b", AllowedTenants: []string{"t"}}, ""},
		{"entra single tenant", Config{Issuer: "https://login.microsoftonline.com/0000-1111/v2.0", ClientID: "a", ClientSecret: "b"}, ""},
		{"tenants elsewhere", Config{Issuer: "https://idp.example", ClientID: "a", ClientSecret: "b", AllowedTenants: []string{"t"}}, "only to the multi-tenant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("Validate = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestOpenUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	raw, _ := json.Marshal(Config{Issuer: srv.URL, ClientID: "a", ClientSecret: "b"})
	if _, err := Open(context.Background(), raw, connection.Deps{OrgSlug: "acme"}); connection.KindOf(err) != connection.KindUnreachable {
		t.Fatalf("Open with the IdP down: %v", err)
	}
}

// BenchmarkCallback is one sign-in's work after the IdP: the code
// exchange over loopback HTTP, ID token verification (RS256, keys cached)
// and claim mapping. It runs against the forging provider answering with
// a token signed once, so that the IdP's own signing is not counted.
func BenchmarkCallback(b *testing.B) {
	f, c, flow, tok := fixedNonce(b)
	f.next = func(string) string { return tok }
	req := connection.BeginRequest{State: "state-0123456789abcdef", CallbackURL: callback}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Finish(context.Background(), httptest.NewRequest("GET", callback+"?code=c1&state="+req.State, nil), req, flow); err != nil {
			b.Fatal(err)
		}
	}
}

// fixedNonce is a connection to a forging provider, a flow record with a
// known nonce, and a valid ID token for it, signed once.
func fixedNonce(tb testing.TB) (*forger, *conn, []byte, string) {
	f := newForger(tb)
	raw, _ := json.Marshal(Config{Issuer: f.srv.URL, ClientID: "gatehouse", ClientSecret: "x"})
	cv, err := Open(context.Background(), raw, connection.Deps{OrgSlug: "acme"})
	if err != nil {
		tb.Fatal(err)
	}
	flow, _ := json.Marshal(map[string]string{"v": "verifier-0123456789-0123456789-0123456789", "n": "fixed-nonce"})
	f.sub = "u1"
	return f, cv.(*conn), flow, sign(tb, jose.RS256, f.key, "k1", f.claims("fixed-nonce"))
}

// FuzzIDToken feeds arbitrary ID tokens through the whole callback: never
// a panic, and nothing accepted but what the provider's key signed.
func FuzzIDToken(f *testing.F) {
	fg, c, flow, valid := fixedNonce(f)
	f.Add(valid)
	f.Add("a.b.c")
	f.Add(strings.Replace(valid, ".", "X.", 1))
	f.Add(`eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1MSJ9.`)
	req := connection.BeginRequest{State: "state-0123456789abcdef", CallbackURL: callback}
	f.Fuzz(func(t *testing.T, tok string) {
		fg.mu.Lock()
		fg.next = func(string) string { return tok }
		fg.mu.Unlock()
		id, err := c.Finish(context.Background(), httptest.NewRequest("GET", callback+"?code=c1&state="+req.State, nil), req, flow)
		if err == nil && (tok != valid || id.Subject != "u1") {
			t.Fatalf("accepted %+v for token %q", id, tok)
		}
	})
}

// An org that requires a second factor asks the IdP with its acr_values;
// the answer counts as MFA by the standard amr values or the org's own
// (amr or acr); without the request the IdP's password-only sign-in does
// not count.
func TestMFAFromIdP(t *testing.T) {
	idp := testidp.NewOIDC(t, "gatehouse", "s3cret", []string{callback},
		testidp.User{ID: "u1", Username: "ann", Password: "pw-ann", Email: "ann@acme.test", EmailVerified: true})
	ctx := context.Background()
	for _, tt := range []struct {
		name       string
		cfg        Config
		requireMFA bool
		acr        string // acr_values sent
		mfa        bool
	}{
		{"MFA asked and done", Config{ACRValues: []string{testidp.MFAACR}}, true, testidp.MFAACR, true},
		{"not asked: the org does not require it", Config{ACRValues: []string{testidp.MFAACR}}, false, "", false},
		{"nothing to ask with", Config{}, true, "", false},
		{"several acr values", Config{ACRValues: []string{testidp.MFAACR, "urn:other"}}, true, testidp.MFAACR + " urn:other", true},
		// The mapping: an amr value the org names counts (here the test
		// OP's password-only "pwd", which nobody should map in earnest).
		{"the org's own values count", Config{MFAValues: []string{"pwd"}}, false, "", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Issuer, cfg.ClientID, cfg.ClientSecret = idp.Issuer, "gatehouse", "s3cret"
			c := open(t, cfg)
			req := connection.BeginRequest{State: "state-mfa-0123456789", CallbackURL: callback, RequireMFA: tt.requireMFA}
			to, flow, err := c.Begin(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			u, _ := url.Parse(to)
			if got := u.Query().Get("acr_values"); got != tt.acr {
				t.Fatalf("acr_values %q, want %q", got, tt.acr)
			}
			id, err := c.Finish(ctx, signIn(t, to, "ann", "pw-ann"), req, flow)
			if err != nil {
				t.Fatal(err)
			}
			if id.MFA != tt.mfa {
				t.Fatalf("MFA %v, want %v", id.MFA, tt.mfa)
			}
		})
	}
	// A fresh sign-in (step-up, an app's prompt=login) asks the IdP to
	// sign the person in again.
	c := open(t, Config{Issuer: idp.Issuer, ClientID: "gatehouse", ClientSecret: "s3cret"})
	to, _, err := c.Begin(ctx, connection.BeginRequest{State: "state-fresh-0123456789", CallbackURL: callback, Fresh: true})
	if u, _ := url.Parse(to); err != nil || u.Query().Get("prompt") != "login" || u.Query().Get("max_age") != "0" {
		t.Fatalf("fresh sign-in: %s %v", to, err)
	}
	to, _, _ = c.Begin(ctx, connection.BeginRequest{State: "state-fresh-0123456789", CallbackURL: callback})
	if u, _ := url.Parse(to); u.Query().Has("prompt") || u.Query().Has("max_age") {
		t.Fatalf("not fresh: %s", to)
	}
	if ps := (Config{Issuer: "https://idp.example", ClientID: "c", ClientSecret: "s", ACRValues: []string{"a b"}, MFAValues: []string{""}}).Problems(); len(ps) != 2 {
		t.Errorf("problems %v", ps)
	}
}
