package certs

import (
	"crypto/tls"
	"crypto/x509"
	"testing"
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
