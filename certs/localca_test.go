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
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestLocalCA(t *testing.T) {
	dir := t.TempDir()
	allowed := func(n string) (string, bool) { return "", n == "login.acme.localhost" }
	ca, err := NewLocalCA(dir, allowed)
	if err != nil {
		t.Fatal(err)
	}
	// The CA is made once and reused: the developer trusts it once.
	again, err := NewLocalCA(dir, allowed)
	if err != nil || !again.cert.Equal(ca.cert) {
		t.Fatalf("second start made another CA: %v", err)
	}
	get := ca.TLSConfig().GetCertificate
	c, err := get(&tls.ClientHelloInfo{ServerName: "login.acme.localhost"})
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "login.acme.localhost", Roots: roots}); err != nil {
		t.Fatalf("leaf does not verify: %v", err)
	}
	if c2, _ := get(&tls.ClientHelloInfo{ServerName: "login.acme.localhost"}); c2 != c {
		t.Fatal("leaf not reused")
	}
	for _, n := range []string{"", "other.localhost", "127.0.0.1"} {
		if _, err := get(&tls.ClientHelloInfo{ServerName: n}); err == nil {
			t.Errorf("certificate for %q", n)
		}
	}
}

// The dev CA signs only names under localhost (a name constraint every
// verifier enforces, so its key cannot vouch for a real site) and lives
// 90 days; an old unconstrained or long-lived CA in the folder is replaced.
func TestLocalCAIsConstrainedAndShortLived(t *testing.T) {
	dir := t.TempDir()
	everything := func(string) (string, bool) { return "", true }
	ca, err := NewLocalCA(dir, everything)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.cert
	if !c.PermittedDNSDomainsCritical || len(c.PermittedDNSDomains) != 1 || c.PermittedDNSDomains[0] != "localhost" {
		t.Fatalf("CA constraints: %v critical=%v", c.PermittedDNSDomains, c.PermittedDNSDomainsCritical)
	}
	if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || len(c.PermittedEmailAddresses) != 1 || len(c.PermittedURIDomains) != 1 {
		t.Fatalf("CA usages %v, email %v, URI %v", c.ExtKeyUsage, c.PermittedEmailAddresses, c.PermittedURIDomains)
	}
	if life := c.NotAfter.Sub(c.NotBefore); life > 91*24*time.Hour {
		t.Fatalf("CA lives %s", life)
	}
	// Names outside localhost are refused even when decide allows them.
	get := ca.TLSConfig().GetCertificate
	for _, n := range []string{"app.example.com", "localhost.example.com", "evillocalhost", "127.0.0.1"} {
		if _, err := get(&tls.ClientHelloInfo{ServerName: n}); err == nil {
			t.Errorf("certificate for %q", n)
		}
	}
	for _, n := range []string{"localhost", "app.localhost", "login.acme.localhost", "APP.LocalHost"} {
		if _, err := get(&tls.ClientHelloInfo{ServerName: n}); err != nil {
			t.Errorf("no certificate for %q: %v", n, err)
		}
	}
	// Even a leaf signed with the CA's key directly does not verify for
	// another name: the constraint is in the CA certificate.
	roots := x509.NewCertPool()
	roots.AddCert(c)
	for _, n := range []string{"bank.example.com", "localhost.evil.com"} {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: n}, DNSNames: []string{n},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, c, &key.PublicKey, ca.key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: n, Roots: roots}); err == nil {
			t.Errorf("a leaf for %q verifies under the dev CA", n)
		}
	}

	// A CA of the old kind (unconstrained, ten years) is replaced, and the
	// caller told; a fit one is kept.
	old := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "old"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().AddDate(10, 0, 0), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	mustCA(t, os.WriteFile(filepath.Join(old, LocalCACert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	mustCA(t, os.WriteFile(filepath.Join(old, localCAKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	cert, _, replaced, err := LoadOrCreateCA(old)
	if err != nil || !errors.Is(replaced, ErrLocalCAReplaced) || !cert.PermittedDNSDomainsCritical {
		t.Fatalf("old CA: replaced=%v err=%v constrained=%v", replaced, err, cert != nil && cert.PermittedDNSDomainsCritical)
	}
	again, _, replaced, err := LoadOrCreateCA(old)
	if err != nil || replaced != nil || !again.Equal(cert) {
		t.Fatalf("fit CA not kept: replaced=%v err=%v", replaced, err)
	}
	// A leaf for code signing does not verify for that use under it.
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cs := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "app.localhost"}, DNSNames: []string{"app.localhost"},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}
	csDER, err := x509.CreateCertificate(rand.Reader, cs, c, &key2.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	csLeaf, _ := x509.ParseCertificate(csDER)
	if _, err := csLeaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}}); err == nil {
		t.Error("a code-signing leaf verifies under the dev CA")
	}
	if why := unfitCA(cert, cert.NotAfter.Add(-13*24*time.Hour)); why == "" {
		t.Error("a CA 13 days from its end is kept")
	}
}

func mustCA(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
