package provider

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/config"
)

type jwtClient struct {
	key *ecdsa.PrivateKey
	kid string
}

func newJWTClient(t *testing.T, kid string) jwtClient {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return jwtClient{k, kid}
}

func (c jwtClient) jwks() string {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: c.key.Public(), KeyID: c.kid, Algorithm: "ES256", Use: "sig"}}})
	return string(b)
}

func (c jwtClient) assertion(t *testing.T, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: c.key}, (&jose.SignerOptions{}).WithHeader("kid", c.kid).WithType("JWT"))
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

// private_key_jwt for a machine client, keys inline and from a JWKS URL:
// a good assertion works once; every kind of bad one is invalid_client.
func TestPrivateKeyJWT(t *testing.T) {
	inline, remote, stranger := newJWTClient(t, "in-1"), newJWTClient(t, "re-1"), newJWTClient(t, "in-1")
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(remote.jwks())) }))
	t.Cleanup(keys.Close)
	f := newFixture(t, "ES256", config.Client{ID: "jwt-in", Type: config.ClientMachine, AuthMethod: "private_key_jwt", JWKS: inline.jwks(), Org: "acme"},
		config.Client{ID: "jwt-url", Type: config.ClientMachine, AuthMethod: "private_key_jwt", JWKSURL: keys.URL, Org: "acme"})
	tokenURL := "https://auth.example.com" + TokenPath
	good := func(id string) map[string]any {
		now := time.Now()
		return map[string]any{"iss": id, "sub": id, "aud": tokenURL, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "jti": rand.Text()}
	}
	send := func(form url.Values) *httptest.ResponseRecorder {
		req := httptest.NewRequest("POST", tokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		f.p.ServeHTTP(rec, req)
		return rec
	}
	grant := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {oidc_jwtBearer}, "client_assertion": {a}}
	}
	for _, tc := range []struct {
		id string
		c  jwtClient
	}{{"jwt-in", inline}, {"jwt-url", remote}} {
		a := tc.c.assertion(t, good(tc.id))
		if rec := send(grant(a)); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "access_token") {
			t.Fatalf("%s: %d %s", tc.id, rec.Code, rec.Body)
		}
		if rec := send(grant(a)); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "replayed") {
			t.Fatalf("%s replayed: %d %s", tc.id, rec.Code, rec.Body)
		}
	}
	bad := map[string]string{
		"another key":        stranger.assertion(t, good("jwt-in")),
		"aud of another":     inline.assertion(t, merge(good("jwt-in"), "aud", "https://other.example.com/token")),
		"expired":            inline.assertion(t, merge(good("jwt-in"), "exp", time.Now().Add(-5*time.Minute).Unix())),
		"no exp":             inline.assertion(t, merge(good("jwt-in"), "exp", nil)),
		"lives too long":     inline.assertion(t, merge(good("jwt-in"), "exp", time.Now().Add(time.Hour).Unix())),
		"no jti":             inline.assertion(t, merge(good("jwt-in"), "jti", nil)),
		"iss is not sub":     inline.assertion(t, merge(good("jwt-in"), "sub", "jwt-url")),
		"another client":     inline.assertion(t, good("jwt-url")),
		"issued in a minute": inline.assertion(t, merge(good("jwt-in"), "iat", time.Now().Add(10*time.Minute).Unix())),
		"garbage":            "x.y.z",
	}
	for name, a := range bad {
		if rec := send(grant(a)); rec.Code != http.StatusUnauthorized || !strings.Contains(rec.Body.String(), "invalid_client") {
			t.Errorf("%s: %d %s", name, rec.Code, rec.Body)
		}
	}
	// Its secret way is closed; a secret client's assertion way too.
	if rec := send(url.Values{"grant_type": {"client_credentials"}, "client_id": {"jwt-in"}, "client_secret": {testSecret}}); rec.Code != http.StatusUnauthorized {
		t.Errorf("secret for a private_key_jwt client: %d %s", rec.Code, rec.Body)
	}
	if rec := send(grant(inline.assertion(t, good("bot")))); rec.Code != http.StatusUnauthorized {
		t.Errorf("assertion for a secret client: %d %s", rec.Code, rec.Body)
	}
}

const oidc_jwtBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

func merge(m map[string]any, k string, v any) map[string]any {
	if v == nil {
		delete(m, k)
	} else {
		m[k] = v
	}
	return m
}
