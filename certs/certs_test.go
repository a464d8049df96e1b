package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeCert(t *testing.T, dir, cn string, mod time.Time) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn}, DNSNames: []string{cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(cf, mod, mod)
	return cf, kf
}

func servedCN(t *testing.T, c *tls.Config) string {
	t.Helper()
	crt, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: "x"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(crt.Certificate[0])
	return leaf.Subject.CommonName
}

func TestStaticReloadKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	cf, kf := writeCert(t, dir, "one.example", time.Now().Add(-time.Minute))
	c, err := staticConfig(cf, kf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := servedCN(t, c); got != "one.example" {
		t.Fatalf("served %s", got)
	}
	if c.NextProtos[0] != "h2" || c.MinVersion != tls.VersionTLS12 {
		t.Fatalf("config: %v %x", c.NextProtos, c.MinVersion)
	}
	writeCert(t, dir, "two.example", time.Now())
	if got := servedCN(t, c); got != "two.example" {
		t.Fatalf("after renewal on disk: served %s", got)
	}
	// A broken replacement: the last good certificate stays.
	if err := os.WriteFile(cf, []byte("not a cert"), 0o600); err != nil {
		t.Fatal(err)
	}
	future := time.Now().Add(time.Minute)
	_ = os.Chtimes(cf, future, future)
	if got := servedCN(t, c); got != "two.example" {
		t.Fatalf("after a broken replacement: served %s", got)
	}
	// A replacement whose files carry an older time (copied with their
	// times kept, say) is a replacement too.
	writeCert(t, dir, "three.example", time.Now().Add(-time.Hour))
	if got := servedCN(t, c); got != "three.example" {
		t.Fatalf("after a replacement with an older time: served %s", got)
	}
	if _, err := StaticConfig(filepath.Join(dir, "missing.pem"), kf); err == nil {
		t.Fatal("missing certificate accepted")
	}
}
