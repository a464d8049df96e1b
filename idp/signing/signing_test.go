package signing

import (
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

func jwksIDs(t *testing.T, m *Manager) map[string]bool {
	t.Helper()
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(m.JWKS(), &set); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, k := range set.Keys {
		if !k.IsPublic() {
			t.Fatalf("JWKS publishes a private key: %s", k.KeyID)
		}
		ids[k.KeyID] = true
	}
	return ids
}

func verify(t *testing.T, m *Manager, tok string) string {
	t.Helper()
	jws, err := jose.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var set jose.JSONWebKeySet
	_ = json.Unmarshal(m.JWKS(), &set)
	kid := jws.Signatures[0].Header.KeyID
	keys := set.Key(kid)
	if len(keys) != 1 {
		t.Fatalf("kid %s not in JWKS", kid)
	}
	if _, err := jws.Verify(keys[0]); err != nil {
		t.Fatalf("signature: %v", err)
	}
	return kid
}

func TestRotationWithOverlap(t *testing.T) {
	st, err := badgerstore.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	m, err := New(ctx, st, Options{RotationPeriod: 24 * time.Hour, PrePublish: time.Hour, MaxTokenLifetime: 5 * time.Minute, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	first := m.CurrentKeyID()
	tok, _ := m.Sign(map[string]any{"sub": "u1"})
	if kid := verify(t, m, tok); kid != first {
		t.Fatalf("signed with %s, current is %s", kid, first)
	}
	if ids := jwksIDs(t, m); len(ids) != 1 {
		t.Fatalf("JWKS = %v", ids)
	}

	// An hour before rotation, the next key is published but not used.
	now = now.Add(23*time.Hour + time.Minute)
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := jwksIDs(t, m); len(ids) != 2 || m.CurrentKeyID() != first {
		t.Fatalf("pre-publish: JWKS %v, current %s", ids, m.CurrentKeyID())
	}

	// After rotation the new key signs; the old one stays published.
	now = now.Add(time.Hour)
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	second := m.CurrentKeyID()
	if second == first || !jwksIDs(t, m)[first] {
		t.Fatalf("after rotation: current %s, JWKS %v", second, jwksIDs(t, m))
	}
	// A token signed by the old key just before rotation still verifies.
	verify(t, m, tok)

	// Once every token of the old key has expired, it leaves the JWKS.
	now = now.Add(10 * time.Minute)
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ids := jwksIDs(t, m); ids[first] || !ids[second] {
		t.Fatalf("old key not retired: %v", ids)
	}

	// A node whose refreshes fail still switches to the next key on time:
	// it was loaded when published.
	now = now.Add(23*time.Hour - 5*time.Minute)
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	next := ""
	for id := range jwksIDs(t, m) {
		if id != second {
			next = id
		}
	}
	if next == "" {
		t.Fatal("next key not published")
	}
	now = now.Add(2 * time.Hour) // no Refresh: the store is unreachable
	tok2, _ := m.Sign(map[string]any{"sub": "u1"})
	if kid := verify(t, m, tok2); kid != next {
		t.Fatalf("signed with %s after rotation without refresh, want %s", kid, next)
	}
	second = next

	// A second node over the same store converges on the same keys.
	m2, err := New(ctx, st, Options{RotationPeriod: 24 * time.Hour, PrePublish: time.Hour, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if m2.CurrentKeyID() != second {
		t.Fatalf("node 2 current %s, want %s", m2.CurrentKeyID(), second)
	}
}

func TestAlgorithms(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			st, err := badgerstore.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			m, err := New(context.Background(), st, Options{Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			tok, err := m.Sign(map[string]string{"sub": "x"})
			if err != nil {
				t.Fatal(err)
			}
			verify(t, m, tok)
		})
	}
	if _, err := New(context.Background(), nil, Options{Algorithm: "HS256"}); err == nil {
		t.Fatal("HS256 accepted")
	}
}

// BenchmarkSign: one token signed (assertion, ID token, access token
// alike), per algorithm.
func BenchmarkSign(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		b.Run(alg, func(b *testing.B) {
			st, _ := badgerstore.Open(b.TempDir())
			defer st.Close()
			m, err := New(context.Background(), st, Options{Algorithm: alg, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			claims := map[string]any{"iss": "https://auth.example.com", "sub": "usr_1", "org_id": "org_1", "roles": []string{"admin"}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Sign(claims); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// RFC 7518 §6.2.1.2: an EC key's x and y are published at the curve's full
// size. A coordinate that happens to start with a zero byte (1 in 256) must
// not be shortened: several JWT libraries refuse such a key.
func TestJWKSECCoordinatesFullLength(t *testing.T) {
	var priv *ecdsa.PrivateKey
	for range 100_000 {
		k, err := generate(jose.ES256)
		if err != nil {
			t.Fatal(err)
		}
		if e := k.(*ecdsa.PrivateKey); e.X.BitLen() <= 248 {
			priv = e
			break
		}
	}
	if priv == nil {
		t.Fatal("no key with a short x coordinate found")
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m := &Manager{}
	if err := m.build([]store.SigningKey{{ID: "ES256-short", Algorithm: "ES256", PrivateKey: der, CreatedAt: now, ActiveAt: now}}, now); err != nil {
		t.Fatal(err)
	}
	b := m.JWKS()
	var set struct{ Keys []struct{ X, Y string } }
	if err := json.Unmarshal(b, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS %s: %v", b, err)
	}
	jwk := set.Keys[0]
	for name, v := range map[string]string{"x": jwk.X, "y": jwk.Y} {
		raw, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(raw) != 32 {
			t.Fatalf("%s is %d bytes (%v), want 32: %s", name, len(raw), err, b)
		}
	}
}

// Key IDs are activation seconds. A node whose clock is a fraction of a
// second behind the node that made the first key, in the same second,
// finds that key current instead of failing to make its own under the same
// ID; rotations with sub-second leftovers never reuse an ID.
func TestKeyIDsAreActivationSeconds(t *testing.T) {
	st := badgertest.Open(t)
	ctx := context.Background()
	base := time.Unix(1_800_000_000, 0)
	ahead := func() time.Time { return base.Add(700 * time.Millisecond) }
	behind := func() time.Time { return base.Add(400 * time.Millisecond) }
	opts := func(now func() time.Time) Options {
		return Options{RotationPeriod: time.Minute, PrePublish: 30 * time.Second, MaxTokenLifetime: time.Second, Now: now}
	}
	a, err := New(ctx, st, opts(ahead))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(ctx, st, opts(behind))
	if err != nil {
		t.Fatalf("node 0.3s behind: %v", err)
	}
	if a.CurrentKeyID() != b.CurrentKeyID() {
		t.Fatalf("nodes disagree: %s and %s", a.CurrentKeyID(), b.CurrentKeyID())
	}

	now := ahead()
	m, err := New(ctx, st, opts(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{m.CurrentKeyID(): true}
	for range 20 {
		now = now.Add(13*time.Second + 300*time.Millisecond)
		if err := m.Refresh(ctx); err != nil {
			t.Fatalf("refresh at %v: %v", now, err)
		}
		seen[m.CurrentKeyID()] = true
	}
	keys, err := st.ListSigningKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if !k.ActiveAt.Equal(k.ActiveAt.Truncate(time.Second)) {
			t.Errorf("key %s activates at %v, not on a second", k.ID, k.ActiveAt)
		}
	}
	if len(seen) < 4 {
		t.Fatalf("keys over 266s of 1m rotations: %v", seen)
	}
}

// Each kind of token says what it is, and Verify takes only the kind
// asked for, signed by a published key.
func TestTypedTokens(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			m, err := New(context.Background(), badgertest.Open(t), Options{Algorithm: alg})
			if err != nil {
				t.Fatal(err)
			}
			at, err := m.SignTyped(TypeAccessToken, map[string]string{"sub": "x"})
			if err != nil {
				t.Fatal(err)
			}
			verify(t, m, at)
			if b, err := m.Verify(at, TypeAccessToken); err != nil || string(b) != `{"sub":"x"}` {
				t.Fatalf("Verify(at) = %s, %v", b, err)
			}
			assertion, _ := m.Sign(map[string]string{"sub": "x"})
			if _, err := m.Verify(assertion, TypeAssertion); err != nil {
				t.Fatalf("the assertion's typ: %v", err)
			}
			logout, _ := m.SignTyped(TypeLogout, map[string]string{"sub": "x"})
			for name, tok := range map[string]string{"assertion": assertion, "logout token": logout} {
				if _, err := m.Verify(tok, TypeAccessToken); err == nil {
					t.Errorf("a %s passed as an access token", name)
				}
			}
			if _, err := m.SignTyped("JWT", nil); err == nil {
				t.Error("SignTyped with an unknown type")
			}
			parts := strings.Split(at, ".")
			other, _ := New(context.Background(), badgertest.Open(t), Options{Algorithm: alg})
			foreign, _ := other.SignTyped(TypeAccessToken, map[string]string{"sub": "x"})
			for name, tok := range map[string]string{
				"payload changed":    parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"y"}`)) + "." + parts[2],
				"no signature":       parts[0] + "." + parts[1] + ".",
				"another's key":      foreign,
				"alg none":           base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt"}`)) + "." + parts[1] + ".",
				"HS256 with a kid":   base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"at+jwt","kid":"`+m.CurrentKeyID()+`"}`)) + "." + parts[1] + "." + parts[2],
				"garbage":            "x.y.z",
				"empty":              "",
				"JSON serialization": `{"payload":"e30","signatures":[]}`,
			} {
				if _, err := m.Verify(tok, TypeAccessToken); err == nil {
					t.Errorf("%s verified", name)
				}
			}
		})
	}
}

func FuzzVerify(f *testing.F) {
	m, err := New(context.Background(), badgertest.Open(f), Options{})
	if err != nil {
		f.Fatal(err)
	}
	at, _ := m.SignTyped(TypeAccessToken, map[string]string{"sub": "x"})
	f.Add(at)
	f.Add("a.b.c")
	f.Add(at[:len(at)-3])
	f.Fuzz(func(t *testing.T, tok string) {
		if b, err := m.Verify(tok, TypeAccessToken); err == nil && tok != at && string(b) != `{"sub":"x"}` {
			t.Fatalf("forged token verified: %q", tok)
		}
	})
}

// Changed (another node published a key: the store's notification)
// makes Run reload the keys at once, not at its next interval.
func TestChangedRefreshesAtOnce(t *testing.T) {
	st := badgertest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := Options{RotationPeriod: time.Hour, PrePublish: time.Minute, MaxTokenLifetime: time.Minute}
	a, err := New(ctx, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx, time.Hour)
	// Another node publishes the next key early.
	b, err := New(ctx, st, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.create(ctx, time.Now().Add(time.Hour).Truncate(time.Second)); err != nil {
		t.Fatal(err)
	}
	if n := len(a.PublicKeys()); n != 1 {
		t.Fatalf("node a has %d keys before the change is told", n)
	}
	a.Changed()
	deadline := time.Now().Add(5 * time.Second)
	for len(a.PublicKeys()) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("node a did not reload its keys after Changed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
