// Package signing owns a workspace's signing keys: creation, rotation with
// overlap, the published JWKS, and signing of identity assertions.
//
// Rotation: a key signs from its ActiveAt until the next key's ActiveAt.
// The next key is created and published PrePublish ahead of becoming
// active, so verifiers that cache the JWKS already know it; a retired key
// stays published until every token it signed has expired.
package signing

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/internal/loop"
	"github.com/gatehouse/gatehouse/store"
)

// Options configure a Manager.
type Options struct {
	Algorithm string // ES256 (default), RS256, EdDSA
	// RotationPeriod is how long a key stays current (default 30 days).
	RotationPeriod time.Duration
	// PrePublish is how long a next key is published before it signs
	// (default 1h, capped at RotationPeriod/2).
	PrePublish time.Duration
	// MaxTokenLifetime is the longest lifetime of anything signed; retired
	// keys stay published this long (plus a minute of skew).
	MaxTokenLifetime time.Duration
	Now              func() time.Time
	Logger           *slog.Logger
}

type keySet struct {
	// signers, newest ActiveAt first. Sign picks by the clock, so a node
	// starts using the next key the moment it activates, even if its own
	// refresh is late or failing: the key was published long before.
	signers []*signer
	all     []store.SigningKey
	jwks    []byte
}

type signer struct {
	id       string
	alg      jose.SignatureAlgorithm
	s        jose.Signer
	priv     crypto.Signer
	activeAt time.Time
	// typed signs with another "typ" header (Typed).
	typed map[string]jose.Signer
}

func (ks *keySet) current(now time.Time) *signer {
	for _, s := range ks.signers {
		if !s.activeAt.After(now) {
			return s
		}
	}
	return nil
}

// Manager signs with the current key and serves the JWKS. Its state is
// built whole and swapped atomically, so Sign never blocks on rotation.
type Manager struct {
	st    store.Store
	opts  Options
	state atomic.Pointer[keySet]
	// changed wakes Run early: another node changed the keys.
	changed chan struct{}
}

// New loads (or creates) the workspace keys.
func New(ctx context.Context, st store.Store, opts Options) (*Manager, error) {
	if opts.Algorithm == "" {
		opts.Algorithm = "ES256"
	}
	if _, err := algorithm(opts.Algorithm); err != nil {
		return nil, err
	}
	if opts.RotationPeriod <= 0 {
		opts.RotationPeriod = 30 * 24 * time.Hour
	}
	if opts.PrePublish <= 0 {
		opts.PrePublish = time.Hour
	}
	opts.PrePublish = min(opts.PrePublish, opts.RotationPeriod/2)
	if opts.MaxTokenLifetime <= 0 {
		opts.MaxTokenLifetime = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m := &Manager{st: st, opts: opts, changed: make(chan struct{}, 1)}
	if err := m.Refresh(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

// Run refreshes keys every interval until ctx ends. Errors are logged: the
// last good key set keeps serving.
func (m *Manager) Run(ctx context.Context, interval time.Duration) {
	loop.EveryOrKick(ctx, interval, m.changed, func(ctx context.Context) {
		if err := m.Refresh(ctx); err != nil {
			m.opts.Logger.Error("signing: key refresh failed; keeping current keys", "err", err)
		}
	})
}

// Changed makes Run refresh now (another node published or retired a
// key), without waiting.
func (m *Manager) Changed() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// Refresh creates keys that are due, deletes expired ones and rebuilds the
// signing state from the store.
func (m *Manager) Refresh(ctx context.Context) error {
	return m.refresh(ctx, 0)
}

func (m *Manager) refresh(ctx context.Context, depth int) error {
	if depth > 3 {
		// A key this node just created is not current yet by its clock
		// (another node's clock is ahead): give up for now, retry later.
		return errors.New("signing: no key is current yet (clock skew between nodes?)")
	}
	now := m.opts.Now()
	keys, err := m.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("signing: list keys: %w", err)
	}
	cur := current(keys, now)
	if cur == nil {
		// Activation times are whole seconds, as key IDs are: one ID is
		// then one activation time, and a key that already exists under it
		// is the same rotation made by another node.
		if err := m.create(ctx, now.Truncate(time.Second)); err != nil {
			return err
		}
		return m.refresh(ctx, depth+1)
	}
	nextAt := cur.ActiveAt.Add(m.opts.RotationPeriod)
	if !now.Before(nextAt.Add(-m.opts.PrePublish)) && !hasKeyAfter(keys, cur.ActiveAt) {
		// Never activate a key that was not published for PrePublish.
		if err := m.create(ctx, ceilSecond(maxTime(nextAt, now.Add(m.opts.PrePublish)))); err != nil {
			return err
		}
		return m.refresh(ctx, depth+1)
	}
	// Mark superseded keys and drop those whose tokens have all expired.
	keep := keys[:0:0]
	for _, k := range keys {
		succ := successor(keys, k)
		if succ != nil && !now.Before(succ.ActiveAt) {
			deleteAt := succ.ActiveAt.Add(m.opts.MaxTokenLifetime + time.Minute)
			if !now.Before(deleteAt) {
				if err := m.st.DeleteSigningKey(ctx, k.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("signing: delete key %s: %w", k.ID, err)
				}
				m.opts.Logger.Info("signing: key removed from JWKS", "kid", k.ID)
				continue
			}
			if k.RetiredAt.IsZero() {
				upd, err := m.st.UpdateSigningKey(ctx, k.ID, func(k store.SigningKey) (store.SigningKey, error) {
					k.RetiredAt, k.DeleteAt = succ.ActiveAt, deleteAt
					return k, nil
				})
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("signing: retire key %s: %w", k.ID, err)
				}
				if err == nil {
					k = upd
				}
			}
		}
		keep = append(keep, k)
	}
	return m.build(keep, now)
}

func (m *Manager) build(keys []store.SigningKey, now time.Time) error {
	if current(keys, now) == nil {
		return errors.New("signing: no current key")
	}
	ks := &keySet{all: keys}
	var set jose.JSONWebKeySet
	for _, k := range keys {
		priv, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
		if err != nil {
			return fmt.Errorf("signing: key %s: %w", k.ID, err)
		}
		alg, err := algorithm(k.Algorithm)
		if err != nil {
			return fmt.Errorf("signing: key %s: %w", k.ID, err)
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{
			Key: publicKey(priv), KeyID: k.ID, Algorithm: string(alg), Use: "sig",
		})
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv},
			(&jose.SignerOptions{}).WithType(TypeAssertion).WithHeader("kid", k.ID))
		if err != nil {
			return fmt.Errorf("signing: key %s: %w", k.ID, err)
		}
		sg := &signer{id: k.ID, alg: alg, s: s, priv: priv.(crypto.Signer), activeAt: k.ActiveAt, typed: map[string]jose.Signer{}}
		for _, typ := range Types {
			if sg.typed[typ], err = jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: priv},
				(&jose.SignerOptions{}).WithType(jose.ContentType(typ)).WithHeader("kid", k.ID)); err != nil {
				return fmt.Errorf("signing: key %s: %w", k.ID, err)
			}
		}
		ks.signers = append(ks.signers, sg)
	}
	slices.SortFunc(ks.signers, func(a, b *signer) int { return b.activeAt.Compare(a.activeAt) })
	b, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("signing: jwks: %w", err)
	}
	ks.jwks = b
	m.state.Store(ks)
	return nil
}

func (m *Manager) create(ctx context.Context, activeAt time.Time) error {
	alg, _ := algorithm(m.opts.Algorithm)
	priv, err := generate(alg)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return fmt.Errorf("signing: marshal key: %w", err)
	}
	// The ID derives from the activation time so that nodes racing to
	// create the same rotation converge on one key (the first write wins).
	k := store.SigningKey{
		ID:         fmt.Sprintf("%s-%d", alg, activeAt.Unix()),
		Algorithm:  string(alg),
		PrivateKey: der,
		CreatedAt:  m.opts.Now(),
		ActiveAt:   activeAt,
	}
	switch err := m.st.CreateSigningKey(ctx, k); {
	case errors.Is(err, store.ErrAlreadyExists):
		m.opts.Logger.Debug("signing: key already published by another node", "kid", k.ID)
	case err != nil:
		return fmt.Errorf("signing: create key: %w", err)
	default:
		m.opts.Logger.Info("signing: key published", "kid", k.ID, "active_at", activeAt)
	}
	return nil
}

// ceilSecond rounds t up to a whole second.
func ceilSecond(t time.Time) time.Time {
	if f := t.Truncate(time.Second); !f.Equal(t) {
		return f.Add(time.Second)
	}
	return t
}

// Sign returns a proxy assertion: a compact JWS of claims (a JSON
// object) with the current key and typ TypeAssertion.
func (m *Manager) Sign(claims any) (string, error) {
	cur := m.state.Load().current(m.opts.Now())
	if cur == nil {
		return "", errors.New("signing: no current key")
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("signing: claims: %w", err)
	}
	jws, err := cur.s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: sign with %s: %w", cur.id, err)
	}
	return jws.CompactSerialize()
}

// Token types ("typ" headers): each kind of token says what it is, so
// that none passes for another (RFC 8725 §3.11). ID tokens are "JWT", as
// every OIDC library expects.
const (
	// TypeAssertion is the proxy's X-Gatehouse-Jwt-Assertion (Sign).
	TypeAssertion   = "gatehouse-assertion+jwt"
	TypeAccessToken = "at+jwt"     // RFC 9068
	TypeLogout      = "logout+jwt" // OIDC Back-Channel Logout
)

// Types are the typ headers Typed signs with.
var Types = []string{TypeAccessToken, TypeLogout}

// SignTyped is Sign with the typ header typ (one of Types).
func (m *Manager) SignTyped(typ string, claims any) (string, error) {
	cur := m.state.Load().current(m.opts.Now())
	if cur == nil {
		return "", errors.New("signing: no current key")
	}
	s, ok := cur.typed[typ]
	if !ok {
		return "", fmt.Errorf("signing: unknown token type %q", typ)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("signing: claims: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: sign with %s: %w", cur.id, err)
	}
	return jws.CompactSerialize()
}

// Current is the key that signs now: its ID, algorithm and private key.
func (m *Manager) Current() (string, jose.SignatureAlgorithm, crypto.Signer, error) {
	cur := m.state.Load().current(m.opts.Now())
	if cur == nil {
		return "", "", nil, errors.New("signing: no current key")
	}
	return cur.id, cur.alg, cur.priv, nil
}

// PublicKeys are the published keys (current, next and retired).
func (m *Manager) PublicKeys() []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, s := range m.state.Load().signers {
		out = append(out, jose.JSONWebKey{Key: s.priv.Public(), KeyID: s.id, Algorithm: string(s.alg), Use: "sig"})
	}
	return out
}

// Verify checks a compact JWS signed by one of the published keys with
// the typ header typ, and returns its payload. Expiry and claims are the
// caller's.
func (m *Manager) Verify(token, typ string) ([]byte, error) {
	ks := m.state.Load()
	algs := make([]jose.SignatureAlgorithm, 0, 3)
	for _, s := range ks.signers {
		if !slices.Contains(algs, s.alg) {
			algs = append(algs, s.alg)
		}
	}
	jws, err := jose.ParseSigned(token, algs)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("signing: not one signature")
	}
	h := jws.Signatures[0].Protected
	if got, _ := h.ExtraHeaders[jose.HeaderType].(string); got != typ {
		return nil, fmt.Errorf("signing: token type %q, want %q", got, typ)
	}
	for _, s := range ks.signers {
		if s.id == h.KeyID && string(s.alg) == h.Algorithm {
			return jws.Verify(s.priv.Public())
		}
	}
	return nil, fmt.Errorf("signing: unknown key %q", h.KeyID)
}

// CurrentKeyID names the key Sign uses now ("" if none).
func (m *Manager) CurrentKeyID() string {
	if cur := m.state.Load().current(m.opts.Now()); cur != nil {
		return cur.id
	}
	return ""
}

// JWKS is the published key set (current, next and retired keys).
func (m *Manager) JWKS() []byte { return m.state.Load().jwks }

// Algorithms lists the algorithms of the published keys.
func (m *Manager) Algorithms() []string {
	var out []string
	for _, k := range m.state.Load().all {
		if !slices.Contains(out, k.Algorithm) {
			out = append(out, k.Algorithm)
		}
	}
	return out
}

func current(keys []store.SigningKey, now time.Time) *store.SigningKey {
	var cur *store.SigningKey
	for i := range keys {
		k := &keys[i]
		if !k.ActiveAt.After(now) && (cur == nil || k.ActiveAt.After(cur.ActiveAt)) {
			cur = k
		}
	}
	return cur
}

func successor(keys []store.SigningKey, k store.SigningKey) *store.SigningKey {
	var next *store.SigningKey
	for i := range keys {
		c := &keys[i]
		if c.ActiveAt.After(k.ActiveAt) && (next == nil || c.ActiveAt.Before(next.ActiveAt)) {
			next = c
		}
	}
	return next
}

func hasKeyAfter(keys []store.SigningKey, t time.Time) bool {
	return slices.ContainsFunc(keys, func(k store.SigningKey) bool { return k.ActiveAt.After(t) })
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func algorithm(name string) (jose.SignatureAlgorithm, error) {
	switch name {
	case "ES256":
		return jose.ES256, nil
	case "RS256":
		return jose.RS256, nil
	case "EdDSA":
		return jose.EdDSA, nil
	}
	return "", fmt.Errorf("signing: unsupported algorithm %q (want ES256, RS256 or EdDSA)", name)
}

func generate(alg jose.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jose.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
}

func publicKey(priv any) any {
	if s, ok := priv.(crypto.Signer); ok {
		return s.Public()
	}
	return nil
}
