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
	"os"
	"path/filepath"
	"sync"
	"time"
)

// LocalCA is a certificate authority Gatehouse runs itself, for
// development (`serve --dev --https`): certificates for the names Decide
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

// LoadOrCreateCA reads the CA in dir, or makes one (ten years, ECDSA
// P-256) and writes it there, so the developer trusts it once.
func LoadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, LocalCACert), filepath.Join(dir, localCAKey)
	cb, cerr := os.ReadFile(certPath)
	kb, kerr := os.ReadFile(keyPath)
	if cerr == nil && kerr == nil {
		return parseCA(cb, kb)
	}
	if !errors.Is(cerr, os.ErrNotExist) && cerr != nil || !errors.Is(kerr, os.ErrNotExist) && kerr != nil {
		return nil, nil, fmt.Errorf("certs: local CA in %s: %v %v", dir, cerr, kerr)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: randSerial(), Subject: pkix.Name{CommonName: "Gatehouse development CA", Organization: []string{"Gatehouse dev"}},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	return cert, key, nil
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
func NewLocalCA(dir string, decide func(string) (string, bool)) (*LocalCA, error) {
	cert, key, err := LoadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	return &LocalCA{cert: cert, key: key, decide: decide, now: time.Now, leaves: map[string]*tls.Certificate{}}, nil
}

// TLSConfig serves a certificate for each allowed name, made at its first
// handshake and renewed a day before it expires.
func (c *LocalCA) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}, GetCertificate: c.get}
}

func (c *LocalCA) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
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
