package main

import (
	// The connection protocols the config may name.
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	_ "github.com/gatehouse/gatehouse/idp/protocols"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	gatehouseconfig "github.com/gatehouse/gatehouse/config"
)

const audience = "app.localhost"

// issuerServer plays Gatehouse's side: it publishes a JWKS at
// {URL}/.well-known/jwks.json, and its URL is the issuer.
type issuerServer struct {
	*httptest.Server
	mu      sync.Mutex
	keys    []jose.JSONWebKey
	fetches atomic.Int32
}

func newIssuer(t *testing.T) *issuerServer {
	t.Helper()
	s := &issuerServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		s.fetches.Add(1)
		s.mu.Lock()
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: s.keys})
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

// signingKey is a private key with its kid and algorithm.
type signingKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newKey(t *testing.T, kid string, alg jose.SignatureAlgorithm) signingKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("alg %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{kid: kid, alg: alg, priv: priv}
}

// publish adds k's public half to the JWKS, as Gatehouse does.
func (s *issuerServer) publish(k signingKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = append(s.keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
}

// sign makes a compact JWS the way Gatehouse does: typ
// gatehouse-assertion+jwt, kid header.
func (k signingKey) sign(t *testing.T, claims map[string]any) string {
	t.Helper()
	return k.signTyped(t, AssertionType, claims)
}

// signTyped signs with another typ: the issuer's other tokens.
func (k signingKey) signTyped(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithHeader("kid", k.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := sig.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims are what Gatehouse sends for alice, with overrides applied
// (a nil value deletes the claim).
func claims(issuer string, over map[string]any) map[string]any {
	now := time.Now()
	c := map[string]any{
		"iss": issuer, "aud": audience, "sub": "usr_alice",
		"email": "alice@acme.example", "name": "Alice Admin",
		"org_id": "org_acme", "org_slug": "acme",
		"roles": []string{"admin"}, "groups": []string{},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"jti": "jti-123",
	}
	for k, v := range over {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func b64JSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b64(b)
}

// request sends tok (if any) through the handler.
func request(t *testing.T, h http.Handler, tok string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", "http://app.localhost/whoami", nil)
	if tok != "" {
		req.Header.Set(AssertionHeader, tok)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestHandler(t *testing.T) {
	iss := newIssuer(t)
	es := newKey(t, "ES256-1", jose.ES256)
	rs := newKey(t, "RS256-1", jose.RS256)
	ed := newKey(t, "EdDSA-1", jose.EdDSA)
	for _, k := range []signingKey{es, rs, ed} {
		iss.publish(k)
	}
	// Keys never published: one reusing a published kid, one with its own.
	impostor := newKey(t, es.kid, jose.ES256)
	stranger := newKey(t, "ES256-unknown", jose.ES256)

	valid := es.sign(t, claims(iss.URL, nil))
	parts := strings.Split(valid, ".")

	// alg none: a well-formed token with no signature.
	none := b64JSON(t, map[string]any{"alg": "none", "typ": AssertionType}) + "." + parts[1] + "."

	// HS256 keyed with the public key: the classic algorithm confusion
	// attack. The attacker knows the public key, so it must not work.
	der, err := x509.MarshalPKIXPublicKey(es.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	hsInput := b64JSON(t, map[string]any{"alg": "HS256", "typ": AssertionType, "kid": es.kid}) + "." + parts[1]
	mac := hmac.New(sha256.New, pubPEM)
	mac.Write([]byte(hsInput))
	hs256 := hsInput + "." + b64(mac.Sum(nil))

	// A valid signature over claims changed afterwards.
	tampered := parts[0] + "." + b64JSON(t, claims(iss.URL, map[string]any{"roles": []string{"admin", "owner"}})) + "." + parts[2]

	// The handler logs why it refused; each case checks the reason too, so
	// a 401 for the wrong reason fails the test.
	var reasons bytes.Buffer
	h := Handler(NewVerifier(iss.URL, audience, iss.Client()), log.New(&reasons, "", 0))
	past := time.Now().Add(-10 * time.Minute)
	for _, tc := range []struct {
		name   string
		tok    string
		want   int
		reason string // in the log of a 401
	}{
		{"valid ES256", valid, 200, ""},
		{"valid RS256", rs.sign(t, claims(iss.URL, nil)), 200, ""},
		{"valid EdDSA", ed.sign(t, claims(iss.URL, nil)), 200, ""},
		{"audience in an array", es.sign(t, claims(iss.URL, map[string]any{"aud": []string{"other", audience}})), 200, ""},
		{"missing header", "", 401, "no X-Gatehouse-Jwt-Assertion header"},
		{"not a JWT", "not-a-jwt", 401, "malformed jwt"},
		{"expired", es.sign(t, claims(iss.URL, map[string]any{"iat": past.Unix(), "nbf": past.Unix(), "exp": past.Add(5 * time.Minute).Unix()})), 401, "token is expired"},
		{"no exp", es.sign(t, claims(iss.URL, map[string]any{"exp": nil})), 401, "token is expired"},
		{"not yet valid", es.sign(t, claims(iss.URL, map[string]any{"nbf": time.Now().Add(time.Hour).Unix(), "exp": time.Now().Add(time.Hour + 5*time.Minute).Unix()})), 401, "before the nbf"},
		{"wrong audience", es.sign(t, claims(iss.URL, map[string]any{"aud": "globex-app.localhost"})), 401, "expected audience"},
		{"no audience", es.sign(t, claims(iss.URL, map[string]any{"aud": nil})), 401, "expected audience"},
		{"wrong issuer", es.sign(t, claims("http://evil.localhost:8080", nil)), 401, "issued by a different provider"},
		{"no sub", es.sign(t, claims(iss.URL, map[string]any{"sub": nil})), 401, "no sub"},
		{"unknown key with a published kid", impostor.sign(t, claims(iss.URL, nil)), 401, "failed to verify"},
		{"unknown key and kid", stranger.sign(t, claims(iss.URL, nil)), 401, "failed to verify"},
		{"alg none", none, 401, `unexpected signature algorithm "none"`},
		{"HS256 keyed with the public key", hs256, 401, `unexpected signature algorithm "HS256"`},
		{"tampered claims", tampered, 401, "failed to verify"},
		{"an ID token of the issuer (typ JWT)", es.signTyped(t, "JWT", claims(iss.URL, nil)), 401, "not a Gatehouse assertion"},
		{"an access token of the issuer (typ at+jwt)", es.signTyped(t, "at+jwt", claims(iss.URL, nil)), 401, "not a Gatehouse assertion"},
		{"no typ", es.signTyped(t, "", claims(iss.URL, nil)), 401, "not a Gatehouse assertion"},
		{"typ with its media type prefix", es.signTyped(t, "application/"+AssertionType, claims(iss.URL, nil)), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reasons.Reset()
			rec := request(t, h, tc.tok)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s (log: %s)", rec.Code, tc.want, rec.Body, reasons.String())
			}
			if tc.want != 200 {
				if !strings.Contains(reasons.String(), tc.reason) {
					t.Fatalf("refused for %q, want a reason containing %q", reasons.String(), tc.reason)
				}
				if strings.Contains(rec.Body.String(), "alice") {
					t.Fatalf("401 leaks identity: %s", rec.Body)
				}
				return
			}
			var got struct {
				Sub   string   `json:"sub"`
				Email string   `json:"email"`
				Org   string   `json:"org"`
				OrgID string   `json:"org_id"`
				Roles []string `json:"roles"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if got.Sub != "usr_alice" || got.Email != "alice@acme.example" || got.Org != "acme" ||
				got.OrgID != "org_acme" || !slices.Equal(got.Roles, []string{"admin"}) {
				t.Fatalf("identity = %+v (body %s)", got, rec.Body)
			}
		})
	}

	if rec := request(t, h, ""); rec.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("401 content type %q", rec.Header().Get("Content-Type"))
	}
	req := httptest.NewRequest("GET", "http://app.localhost/healthz", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("/healthz = %d", rec.Code)
	}
}

// Gatehouse publishes a new key before signing with it. A verifier that
// fetched the JWKS earlier has never seen that kid: it must fetch again
// rather than reject, and keep accepting tokens of the previous key.
func TestKeyRotation(t *testing.T) {
	iss := newIssuer(t)
	first := newKey(t, "ES256-1", jose.ES256)
	iss.publish(first)
	h := Handler(NewVerifier(iss.URL, audience, iss.Client()), nil)

	if rec := request(t, h, first.sign(t, claims(iss.URL, nil))); rec.Code != 200 {
		t.Fatalf("first key: %d %s", rec.Code, rec.Body)
	}
	if rec := request(t, h, first.sign(t, claims(iss.URL, nil))); rec.Code != 200 {
		t.Fatalf("first key again: %d %s", rec.Code, rec.Body)
	}
	if n := iss.fetches.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times for one key, want 1 (cached)", n)
	}

	second := newKey(t, "ES256-2", jose.ES256)
	iss.publish(second) // after the verifier cached the set
	if rec := settled(t, h, second.sign(t, claims(iss.URL, nil)), 200); rec.Code != 200 {
		t.Fatalf("rotated key: %d %s", rec.Code, rec.Body)
	}
	if n := iss.fetches.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2 (refetch on unknown kid)", n)
	}
	if rec := request(t, h, first.sign(t, claims(iss.URL, nil))); rec.Code != 200 {
		t.Fatalf("previous key after rotation: %d %s", rec.Code, rec.Body)
	}

	// A key retired from the JWKS stops verifying once the set is refetched.
	iss.mu.Lock()
	iss.keys = iss.keys[1:]
	iss.mu.Unlock()
	third := newKey(t, "ES256-3", jose.ES256)
	iss.publish(third)
	if rec := settled(t, h, third.sign(t, claims(iss.URL, nil)), 200); rec.Code != 200 {
		t.Fatalf("third key: %d %s", rec.Code, rec.Body)
	}
	if rec := settled(t, h, first.sign(t, claims(iss.URL, nil)), 401); rec.Code != 401 {
		t.Fatalf("retired key still accepted: %d %s", rec.Code, rec.Body)
	}
}

// settled asks until the answer is want, for at most half a second.
// go-oidc answers the verifications waiting on a JWKS refetch as soon as the
// new set arrives, but swaps its cache and frees the refetch a moment later
// on the fetching goroutine. In that moment a request still sees the
// previous set: a new kid is refused, a retired one accepted.
func settled(t *testing.T, h http.Handler, token string, want int) *httptest.ResponseRecorder {
	t.Helper()
	var rec *httptest.ResponseRecorder
	for range 50 {
		if rec = request(t, h, token); rec.Code == want {
			return rec
		}
		time.Sleep(10 * time.Millisecond)
	}
	return rec
}

// The example's own server, wired as main wires it, over real HTTP.
func TestOverHTTP(t *testing.T) {
	iss := newIssuer(t)
	k := newKey(t, "ES256-1", jose.ES256)
	iss.publish(k)
	cfg, err := LoadConfig([]string{"-issuer", iss.URL + "/"}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	app := httptest.NewServer(Handler(NewVerifier(cfg.Issuer, cfg.Audience, nil), nil))
	defer app.Close()

	for _, tc := range []struct {
		tok  string
		want int
	}{{k.sign(t, claims(iss.URL, nil)), 200}, {"", 401}} {
		req, _ := http.NewRequest("GET", app.URL+"/", nil)
		if tc.tok != "" {
			req.Header.Set(AssertionHeader, tc.tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	env := map[string]string{"ISSUER": "http://auth.example.com", "AUDIENCE": "wiki.example.com", "LISTEN": "127.0.0.1:7000"}
	getenv := func(k string) string { return env[k] }

	c, err := LoadConfig(nil, getenv)
	if err != nil || c != (Config{"http://auth.example.com", "wiki.example.com", "127.0.0.1:7000"}) {
		t.Fatalf("env: %+v %v", c, err)
	}
	c, err = LoadConfig([]string{"-audience", "other.example.com", "-listen", ":9999"}, getenv)
	if err != nil || c != (Config{"http://auth.example.com", "other.example.com", ":9999"}) {
		t.Fatalf("flags over env: %+v %v", c, err)
	}
	c, err = LoadConfig(nil, func(string) string { return "" })
	if err != nil || c != (Config{"http://auth.localhost:8080", "app.localhost", "127.0.0.1:9000"}) {
		t.Fatalf("defaults: %+v %v", c, err)
	}
	if _, err := LoadConfig([]string{"-issuer", ""}, getenv); err == nil {
		t.Fatal("empty issuer accepted")
	}
	if _, err := LoadConfig([]string{"-bogus"}, getenv); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// examples/gatehouse.yaml, the config the README runs the examples behind,
// must load and route app.localhost to the examples' default LISTEN, with
// the issuer and audience they verify by default.
func TestExampleGatehouseConfig(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-example-pw")
	t.Setenv("CAROL_PASSWORD", "carol-example-pw")
	cfg, err := gatehouseconfig.Load("../gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	def, err := LoadConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PublicURL != def.Issuer {
		t.Errorf("public_url %q, examples verify issuer %q", cfg.PublicURL, def.Issuer)
	}
	if len(cfg.Routes) != 1 {
		t.Fatalf("routes = %+v", cfg.Routes)
	}
	rt := cfg.Routes[0]
	if rt.Upstream != "http://"+def.Listen {
		t.Errorf("route upstream %q, examples listen on %q", rt.Upstream, def.Listen)
	}
	aud := rt.Audience
	if aud == "" {
		aud = rt.Host
	}
	if aud != def.Audience {
		t.Errorf("route audience %q, examples verify %q", aud, def.Audience)
	}
}
