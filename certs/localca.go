package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// LocalCA is a certificate authority Gatehouse runs itself, for
// development (`serve --dev --https`): certificates for the names under
// localhost that Decide
// allows, issued at the first handshake, signed by a CA whose certificate
// (ca.pem in its folder) the developer's browser or curl trusts. Never for
// production: anyone with the folder can issue certificates.
type LocalCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	decide func(string) (string, bool)
	now    func() time.Time
	// Refusals, if set, counts handshakes refused for names not served.
	Refusals *RefusalLog

	mu     sync.Mutex
	leaves map[string]*tls.Certificate
}

// Local CA files in its folder.
const (
	LocalCACert = "ca.pem"
	localCAKey  = "ca-key.pem"
)

// The local CA is for development: it may sign only names under
// "localhost" (an X.509 name constraint, so a leaked ca-key.pem cannot
// mint a certificate a browser that trusts ca.pem accepts for any real
// site), and lives localCALifetime; a CA in the folder without the
// constraint, living longer, or within localCARenew of its end is
// replaced by a new one (the developer trusts the new ca.pem).
const (
	localCADomain   = "localhost"
	localCALifetime = 90 * 24 * time.Hour
	localCARenew    = 14 * 24 * time.Hour
)

// ErrLocalCAReplaced is wrapped in the note LoadOrCreateCA returns when
// it replaced an existing CA that the developer may have trusted.
var ErrLocalCAReplaced = errors.New("certs: local CA replaced")

// LoadOrCreateCA reads the CA in dir, or makes one (ECDSA P-256,
// constrained to names under localhost, 90 days) and writes it there, so
// the developer trusts it once per CA. replaced is set when a CA was
// there but was not fit to keep (see localCALifetime).
func LoadOrCreateCA(dir string) (cert *x509.Certificate, key *ecdsa.PrivateKey, replaced error, err error) {
	certPath, keyPath := filepath.Join(dir, LocalCACert), filepath.Join(dir, localCAKey)
	cb, cerr := os.ReadFile(certPath)
	kb, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		cert, key, err := parseCA(cb, kb)
		if err != nil {
			return nil, nil, nil, err
		}
		why := unfitCA(cert, time.Now())
		if why == "" {
			return cert, key, nil, nil
		}
		replaced = fmt.Errorf("%w (%s): trust the new %s", ErrLocalCAReplaced, why, certPath)
	} else if !errors.Is(cerr, os.ErrNotExist) && cerr != nil || !errors.Is(kerr, os.ErrNotExist) && kerr != nil {
		return nil, nil, nil, fmt.Errorf("certs: local CA in %s: %v %v", dir, cerr, kerr)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: randSerial(), Subject: pkix.Name{CommonName: "Gatehouse development CA (localhost only)", Organization: []string{"Gatehouse dev"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(localCALifetime), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		PermittedDNSDomainsCritical: true, PermittedDNSDomains: []string{localCADomain},
		// Mail and URI names only at localhost, and server certificates
		// only: a leaked key can sign no S/MIME or code-signing
		// certificate either.
		PermittedEmailAddresses: []string{localCADomain}, PermittedURIDomains: []string{localCADomain},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// No IP addresses at all.
		ExcludedIPRanges: []*net.IPNet{{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, {IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, nil, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, nil, err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, nil, err
	}
	cert, _ = x509.ParseCertificate(der)
	return cert, key, replaced, nil
}

// unfitCA says why a CA found in the folder is not kept ("" if it is).
func unfitCA(c *x509.Certificate, now time.Time) string {
	switch {
	case !c.PermittedDNSDomainsCritical || len(c.PermittedDNSDomains) != 1 || c.PermittedDNSDomains[0] != localCADomain ||
		len(c.PermittedEmailAddresses) != 1 || len(c.PermittedURIDomains) != 1 ||
		len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth:
		return "not constrained to server certificates for names under localhost"
	case c.NotAfter.Sub(c.NotBefore) > localCALifetime+2*time.Hour:
		return "lives longer than 90 days"
	case c.NotAfter.Sub(now) < localCARenew:
		return "expires within 14 days"
	}
	return ""
}

// underLocalhost reports whether the local CA may sign name.
func underLocalhost(name string) bool {
	return name == localCADomain || strings.HasSuffix(name, "."+localCADomain)
}

func parseCA(cb, kb []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, nil, errors.New("certs: local CA files are not PEM")
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: local CA certificate: %w", err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kblk.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: local CA key: %w", err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, nil, errors.New("certs: local CA key does not match its certificate")
	}
	return cert, key, nil
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// NewLocalCA issues from the CA in dir (made if missing) for names decide
// allows.
// A name outside localhost is refused at the handshake: the CA's name
// constraint would make browsers refuse its certificate anyway.
func NewLocalCA(dir string, decide func(string) (string, bool)) (*LocalCA, error) {
	cert, key, _, err := LoadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	allowed := func(name string) (string, bool) {
		if !underLocalhost(name) {
			return "", false
		}
		return decide(name)
	}
	return &LocalCA{cert: cert, key: key, decide: allowed, now: time.Now, leaves: map[string]*tls.Certificate{}}, nil
}

// TLSConfig serves a certificate for each allowed name, made at its first
// handshake and renewed a day before it expires.
func (c *LocalCA) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}, GetCertificate: c.get}
}

func (c *LocalCA) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	// DNS names are case-insensitive; certificates and decisions use
	// lowercase (as certmagic's path does).
	name := strings.ToLower(hello.ServerName)
	if _, ok := c.decide(name); !ok {
		c.Refusals.Refused(name)
		return nil, ErrNotAllowed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.leaves[name]; l != nil && c.now().Before(l.Leaf.NotAfter.Add(-24*time.Hour)) {
		return l, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := c.now()
	tmpl := &x509.Certificate{SerialNumber: randSerial(), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	l := &tls.Certificate{Certificate: [][]byte{der, c.cert.Raw}, PrivateKey: key, Leaf: leaf}
	if len(c.leaves) > 1000 {
		clear(c.leaves)
	}
	c.leaves[name] = l
	return l, nil
}
