package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/store"
)

// private_key_jwt (RFC 7523 §2.2, OIDC Core §9): a client proves itself
// with a JWT signed by one of its keys, whose iss and sub are its id, whose
// aud is this provider, and which is used once.
const (
	kindClientJTI     = "oidc-client-jti"
	maxAssertionLife  = 10 * time.Minute
	assertionSkew     = time.Minute
	jwksCacheFor      = 5 * time.Minute
	jwksRefetchAfter  = 10 * time.Second
	maxJWKSBytes      = 256 << 10
	maxAssertionBytes = 16 << 10
)

var assertionAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// clientKeys are a private_key_jwt client's public keys: inline, or from
// its JWKS URL, cached and fetched again for a key ID not seen (at most
// every jwksRefetchAfter).
type clientKeys struct {
	url    string
	http   *http.Client
	mu     sync.Mutex
	set    *jose.JSONWebKeySet
	got    time.Time
	tried  time.Time
	inline bool
}

func (k *clientKeys) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.inline {
		return k.set.Keys, nil
	}
	now := time.Now()
	stale := k.set == nil || now.Sub(k.got) > jwksCacheFor || (kid != "" && len(k.set.Key(kid)) == 0)
	if stale && now.Sub(k.tried) > jwksRefetchAfter {
		k.tried = now
		set, err := fetchJWKS(ctx, k.http, k.url)
		if err != nil && k.set == nil {
			return nil, err
		}
		if err == nil {
			k.set, k.got = set, now
		}
	}
	if k.set == nil {
		return nil, errors.New("no keys yet")
	}
	return k.set.Keys, nil
}

func fetchJWKS(ctx context.Context, c *http.Client, u string) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks %s: %d", u, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("jwks %s: %w", u, err)
	}
	return &set, nil
}

// assertionClaims are the parts of a client assertion checked here.
type assertionClaims struct {
	Issuer   string        `json:"iss"`
	Subject  string        `json:"sub"`
	Audience oidc.Audience `json:"aud"`
	Expiry   *json.Number  `json:"exp"`
	NotBef   *json.Number  `json:"nbf"`
	IssuedAt *json.Number  `json:"iat"`
	JTI      string        `json:"jti"`
}

func unix(n *json.Number) (time.Time, bool) {
	if n == nil {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(int64(f), 0), true
}

// verifyClientAssertion authenticates a private_key_jwt client.
func (p *Provider) verifyClientAssertion(ctx context.Context, raw, clientID string) (*client, error) {
	refuse := func(why string) error {
		p.o.Logger.Info("provider: client assertion refused", "client", truncate(clientID, 64), "reason", why)
		return oidc.ErrInvalidClient().WithDescription("client assertion: %s", why)
	}
	if len(raw) > maxAssertionBytes {
		return nil, refuse("too large")
	}
	jws, err := jose.ParseSigned(raw, assertionAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, refuse("not a signed JWT with an asymmetric algorithm")
	}
	var c assertionClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &c); err != nil {
		return nil, refuse("malformed claims")
	}
	if c.Issuer == "" || c.Issuer != c.Subject || (clientID != "" && clientID != c.Issuer) {
		return nil, refuse("iss and sub must both be the client id")
	}
	cl, ok := p.client(c.Issuer)
	if !ok || cl.keys == nil {
		return nil, refuse("not a private_key_jwt client")
	}
	kid := jws.Signatures[0].Protected.KeyID
	keys, err := cl.keys.keys(ctx, kid)
	if err != nil {
		return nil, refuse("its keys could not be read: " + err.Error())
	}
	verified := false
	for _, k := range keys {
		if kid != "" && k.KeyID != kid || k.Use != "" && k.Use != "sig" {
			continue
		}
		if _, err := jws.Verify(k.Key); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, refuse("signature does not verify with the client's keys")
	}
	if !slices.ContainsFunc(c.Audience, func(a string) bool {
		return slices.Contains([]string{p.issuer, p.issuer + "/", p.issuer + TokenPath, p.issuer + RevokePath, p.issuer + IntrospectPath}, a)
	}) {
		return nil, refuse("aud is not this provider (its issuer or the endpoint's URL)")
	}
	now := p.o.Now()
	exp, ok := unix(c.Expiry)
	switch {
	case !ok:
		return nil, refuse("no exp")
	case !now.Before(exp.Add(assertionSkew)):
		return nil, refuse("expired")
	case exp.After(now.Add(maxAssertionLife + assertionSkew)):
		return nil, refuse(fmt.Sprintf("exp more than %s ahead", maxAssertionLife))
	}
	for _, n := range []*json.Number{c.NotBef, c.IssuedAt} {
		if t, ok := unix(n); ok && t.After(now.Add(assertionSkew)) {
			return nil, refuse("issued in the future")
		}
	}
	if c.JTI == "" || len(c.JTI) > 256 {
		return nil, refuse("no jti")
	}
	sum := sha256.Sum256([]byte(c.Issuer + "\x00" + c.JTI))
	switch err := p.o.Store.PutOnce(ctx, kindClientJTI, hex.EncodeToString(sum[:]), nil, exp.Add(assertionSkew)); {
	case errors.Is(err, store.ErrAlreadyExists):
		return nil, refuse("used before (jti replayed)")
	case err != nil:
		return nil, oidc.ErrServerError().WithParent(err)
	}
	return cl, nil
}

// VerifyClient: a client assertion is checked here (for every grant, and
// with replay protection); a private_key_jwt client may not use a secret.
func (s *server) VerifyClient(ctx context.Context, r *op.Request[op.ClientCredentials]) (op.Client, error) {
	cc := r.Data
	if cc.ClientAssertion != "" || cc.ClientAssertionType != "" {
		if cc.ClientAssertionType != oidc.ClientAssertionTypeJWTAssertion {
			return nil, oidc.ErrInvalidClient().WithDescription("unsupported client_assertion_type")
		}
		cl, err := s.p.verifyClientAssertion(ctx, cc.ClientAssertion, cc.ClientID)
		if err != nil {
			return nil, op.NewStatusError(err, http.StatusUnauthorized)
		}
		return cl, nil
	}
	if cl, ok := s.p.client(cc.ClientID); ok && cl.keys != nil {
		return nil, op.NewStatusError(oidc.ErrInvalidClient().WithDescription("this client authenticates with private_key_jwt"), http.StatusUnauthorized)
	}
	cl, err := s.LegacyServer.VerifyClient(ctx, r)
	// invalid_client is a 401 (RFC 6749 §5.2); the library answers 400.
	var oe *oidc.Error
	if errors.As(err, &oe) && oe.ErrorType == oidc.InvalidClient && !errors.As(err, new(op.StatusError)) {
		return nil, op.NewStatusError(oe, http.StatusUnauthorized)
	}
	return cl, err
}
