package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// Several nodes on one store share each org's budget: what one node
// issued counts on the other, at the check before an order and when it
// starts.
func TestIssuanceBudgetSharedAcrossNodes(t *testing.T) {
	st := badgertest.Open(t)
	orgs := map[string]string{"a1.test": "org_a", "a2.test": "org_a", "a3.test": "org_a", "b1.test": "org_b"}
	node := func() *ACME {
		a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
			Decide:           func(n string) (string, bool) { o, ok := orgs[n]; return o, ok },
			MaxPerOrgPerHour: 2, SharedBudget: st, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Stop)
		return a
	}
	n1, n2 := node(), node()
	ctx := context.Background()
	obtain := func(a *ACME, name string) error {
		return a.event(ctx, "cert_obtaining", map[string]any{"identifier": name})
	}
	if err := obtain(n1, "a1.test"); err != nil {
		t.Fatal(err)
	}
	if err := obtain(n2, "a2.test"); err != nil {
		t.Fatal(err)
	}
	for i, a := range []*ACME{n1, n2} {
		if err := a.decide(ctx, "a3.test"); err == nil {
			t.Errorf("node %d: a third certificate for org_a, the other node's included", i+1)
		}
		if err := obtain(a, "a3.test"); !errors.As(err, new(certmagic.ErrNoRetry)) {
			t.Errorf("node %d: an order past the shared budget: %v", i+1, err)
		}
		if err := a.decide(ctx, "b1.test"); err != nil {
			t.Errorf("node %d: org_b held back by org_a's budget: %v", i+1, err)
		}
	}
}

// New certificates are bounded per org per hour, and a name whose
// issuance failed waits before the next try, doubling up to an hour.
func TestIssuanceBudgetAndBackoff(t *testing.T) {
	st := badgertest.Open(t)
	now := time.Unix(1_800_000_000, 0)
	orgs := map[string]string{"a1.test": "org_a", "a2.test": "org_a", "a3.test": "org_a", "b1.test": "org_b"}
	a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
		Decide:           func(n string) (string, bool) { o, ok := orgs[n]; return o, ok },
		MaxPerOrgPerHour: 2, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx := context.Background()
	issue := func(name string) error {
		if err := a.decide(ctx, name); err != nil {
			return err
		}
		return a.event(ctx, "cert_obtaining", map[string]any{"identifier": name})
	}
	if err := a.decide(ctx, "other.test"); err != ErrNotAllowed {
		t.Fatalf("name not served: %v", err)
	}
	for _, n := range []string{"a1.test", "a2.test"} {
		if err := issue(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.decide(ctx, "a3.test"); err == nil {
		t.Fatal("a third certificate for org_a within the hour")
	}
	if err := a.decide(ctx, "b1.test"); err != nil {
		t.Fatalf("org_b held back by org_a's budget: %v", err)
	}
	now = now.Add(time.Hour)
	if err := a.decide(ctx, "a3.test"); err != nil {
		t.Fatalf("next hour: %v", err)
	}
	// Failures back off: 1 minute, then 2.
	a.event(ctx, "cert_failed", map[string]any{"identifier": "b1.test", "error": "CA said no"})
	if err := a.decide(ctx, "b1.test"); err == nil {
		t.Fatal("retried at once after a failure")
	}
	now = now.Add(61 * time.Second)
	if err := a.decide(ctx, "b1.test"); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
	a.event(ctx, "cert_failed", map[string]any{"identifier": "b1.test", "error": "CA said no"})
	now = now.Add(61 * time.Second)
	if err := a.decide(ctx, "b1.test"); err == nil {
		t.Fatal("second back-off did not double")
	}
	a.event(ctx, "cert_obtained", map[string]any{"identifier": "b1.test"})
	if err := a.decide(ctx, "b1.test"); err != nil {
		t.Fatalf("after success: %v", err)
	}
}

// BenchmarkHandshake is one full TLS 1.3 handshake (ECDSA P-256, both
// sides in process over a pipe) served from certmagic's cache through
// Gatehouse's TLS config: the cost of a new connection once a
// certificate is there.
func BenchmarkHandshake(b *testing.B) {
	st := badgertest.Open(b)
	a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
		Decide: func(n string) (string, bool) { return "", n == "login.acme.test" }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Stop()
	roots := cacheCert(b, a, "login.acme.test")
	srvCfg := a.TLSConfig()
	cliCfg := &tls.Config{ServerName: "login.acme.test", RootCAs: roots}
	b.ReportAllocs()
	for b.Loop() {
		c, s := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- tls.Server(s, srvCfg).Handshake() }()
		if err := tls.Client(c, cliCfg).Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		c.Close()
		s.Close()
	}
}

// A certificate already in storage is never held back: certmagic asks
// before loading one and before renewing one, and a refusal would drop a
// valid certificate. Renewals neither spend the budget nor back off.
func TestStoredCertificatesAndRenewalsAreNotHeldBack(t *testing.T) {
	st := badgertest.Open(t)
	now := time.Unix(1_800_000_000, 0)
	orgs := map[string]string{"a1.test": "org_a", "a2.test": "org_a", "a3.test": "org_a"}
	a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
		Decide:           func(n string) (string, bool) { o, ok := orgs[n]; return o, ok },
		MaxPerOrgPerHour: 1, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx := context.Background()
	if err := a.event(ctx, "cert_obtaining", map[string]any{"identifier": "a1.test"}); err != nil {
		t.Fatal(err)
	}
	// The budget is checked and spent in one step when an order starts.
	err = a.event(ctx, "cert_obtaining", map[string]any{"identifier": "a2.test"})
	var noRetry certmagic.ErrNoRetry
	if !errors.As(err, &noRetry) {
		t.Fatalf("second order within the budget of 1: %v, want ErrNoRetry", err)
	}
	a.event(ctx, "cert_failed", map[string]any{"identifier": "a3.test", "error": "CA said no"})
	if a.decide(ctx, "a2.test") == nil || a.decide(ctx, "a3.test") == nil {
		t.Fatal("budget or back-off not applied to names without a certificate")
	}
	// With a certificate in storage, both names are allowed.
	for _, n := range []string{"a2.test", "a3.test"} {
		if err := a.o.Storage.Store(ctx, certmagic.StorageKeys.SiteCert(a.issuer.IssuerKey(), n), []byte("PEM")); err != nil {
			t.Fatal(err)
		}
		if err := a.decide(ctx, n); err != nil {
			t.Errorf("%s has a stored certificate: %v", n, err)
		}
	}
	if err := a.decide(ctx, "a4.test"); err != ErrNotAllowed {
		t.Errorf("a name not served: %v", err)
	}
	// Renewals are not counted.
	for range 3 {
		if err := a.event(ctx, "cert_obtaining", map[string]any{"identifier": "a1.test", "renewal": true}); err != nil {
			t.Fatalf("renewal refused: %v", err)
		}
	}
	// A failed renewal backs that name's renewals off (10 minutes, then
	// 20), refusing the attempt with ErrNoRetry (no certmagic retry loop),
	// without holding back the certificate itself or new certificates.
	a.event(ctx, "cert_failed", map[string]any{"identifier": "a1.test", "renewal": true, "error": "CA down"})
	if err := a.event(ctx, "cert_obtaining", map[string]any{"identifier": "a1.test", "renewal": true}); !errors.As(err, &noRetry) {
		t.Fatalf("renewal during its back-off: %v", err)
	}
	if err := a.o.Storage.Store(ctx, certmagic.StorageKeys.SiteCert(a.issuer.IssuerKey(), "a1.test"), []byte("PEM")); err != nil {
		t.Fatal(err)
	}
	if err := a.decide(ctx, "a1.test"); err != nil {
		t.Fatalf("a certificate with renewals backed off is still served: %v", err)
	}
	now = now.Add(11 * time.Minute)
	if err := a.event(ctx, "cert_obtaining", map[string]any{"identifier": "a1.test", "renewal": true}); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
	a.event(ctx, "cert_failed", map[string]any{"identifier": "a1.test", "renewal": true, "error": "CA down"})
	now = now.Add(11 * time.Minute)
	if err := a.event(ctx, "cert_obtaining", map[string]any{"identifier": "a1.test", "renewal": true}); err == nil {
		t.Fatal("the renewal back-off did not double")
	}
	a.event(ctx, "cert_obtained", map[string]any{"identifier": "a1.test", "renewal": true})
	if err := a.event(ctx, "cert_obtaining", map[string]any{"identifier": "a1.test", "renewal": true}); err != nil {
		t.Fatalf("after a renewal: %v", err)
	}
	a.mu.Lock()
	_, backedOff := a.fails["a1.test"]
	a.mu.Unlock()
	if backedOff {
		t.Error("a failed renewal backed off new certificates")
	}
}

// The renewal sweep picks stored certificates in the last third of their
// life, for names still served, and nothing else.
func TestRenewDueSelection(t *testing.T) {
	st := badgertest.Open(t)
	now := time.Now()
	var logs strings.Builder
	served := map[string]bool{"fresh.test": true, "due.test": true}
	a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
		Decide: func(n string) (string, bool) { return "", served[n] }, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	a.renewWait = time.Second
	ctx := context.Background()
	store := func(name string, notBefore, notAfter time.Time) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err := a.o.Storage.Store(ctx, certmagic.StorageKeys.SiteCert(a.issuer.IssuerKey(), name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
			t.Fatal(err)
		}
	}
	day := 24 * time.Hour
	store("fresh.test", now.Add(-10*day), now.Add(80*day)) // a third of 90 days is 30: not due
	store("due.test", now.Add(-70*day), now.Add(20*day))   // due
	store("gone.test", now.Add(-89*day), now.Add(day))     // due, but no longer served
	a.RenewDue(ctx)
	out := logs.String()
	// due.test is tried (and fails here: no CA, no key in storage).
	if !strings.Contains(out, "background renewal failed") || !strings.Contains(out, "name=due.test") {
		t.Fatalf("due.test not renewed:\n%s", out)
	}
	if strings.Contains(out, "name=fresh.test") || strings.Contains(out, "name=gone.test") {
		t.Fatalf("renewed a certificate not due or not served:\n%s", out)
	}
	if _, ok := a.lives["fresh.test"]; !ok {
		t.Error("the sweep does not remember what it read")
	}
	for _, tc := range []struct {
		l    life
		at   time.Time
		want bool
	}{
		{life{now, now.Add(90 * day)}, now.Add(59 * day), false},
		{life{now, now.Add(90 * day)}, now.Add(60 * day), true},
		{life{now, now.Add(90 * day)}, now.Add(91 * day), true},
	} {
		if got := tc.l.due(tc.at); got != tc.want {
			t.Errorf("due at %v: %v", tc.at.Sub(now), got)
		}
	}
}

// cacheCert puts a self-signed certificate for name in certmagic's
// memory (as if obtained) and returns a pool trusting it.
func cacheCert(tb testing.TB, a *ACME, name string) *x509.CertPool {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if _, err := a.cfg.CacheUnmanagedTLSCertificate(context.Background(), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil); err != nil {
		tb.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	return roots
}

// pipeHandshake runs one TLS handshake between srv and cli in memory.
func pipeHandshake(srv, cli *tls.Config) error {
	c, s := net.Pipe()
	defer c.Close()
	defer s.Close()
	done := make(chan error, 1)
	go func() { done <- tls.Server(s, srv).Handshake() }()
	cerr := tls.Client(c, cli).Handshake()
	if cerr != nil {
		s.Close()
		<-done
		return cerr
	}
	return <-done
}

// A certificate in memory serves while its name's renewals back off, and
// stops serving the moment the name is no longer served (a suspended
// domain), though certmagic still holds it.
func TestCachedCertificateAndDecision(t *testing.T) {
	st := badgertest.Open(t)
	served := true
	a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
		Decide: func(n string) (string, bool) { return "", served && n == "login.acme.test" }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	roots := cacheCert(t, a, "login.acme.test")
	cli := &tls.Config{ServerName: "login.acme.test", RootCAs: roots}
	if err := pipeHandshake(a.TLSConfig(), cli); err != nil {
		t.Fatalf("cached certificate: %v", err)
	}
	a.mu.Lock()
	a.renewFails["login.acme.test"] = backoff{until: time.Now().Add(time.Hour), wait: time.Hour}
	a.mu.Unlock()
	if err := pipeHandshake(a.TLSConfig(), cli); err != nil {
		t.Fatalf("while renewals back off: %v", err)
	}
	served = false
	if err := pipeHandshake(a.TLSConfig(), cli); err == nil {
		t.Fatal("a name no longer served still got its cached certificate")
	}
}

// Every certs: line about an org's name names the org as the decision
// does (by slug, as domains: lines do), whatever the event.
func TestEventLogLinesNameTheOrg(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []map[string]any // all for a1.test, in order
		msg    string
	}{
		{"obtaining", []map[string]any{{"event": "cert_obtaining"}}, "certs: obtaining a certificate"},
		{"obtained", []map[string]any{{"event": "cert_obtained"}}, "certs: certificate obtained"},
		{"failed", []map[string]any{{"event": "cert_failed", "error": "CA said no"}}, "certs: obtaining a certificate failed"},
		{"renewing", []map[string]any{{"event": "cert_obtaining", "renewal": true}}, "certs: renewing a certificate"},
		{"renewed", []map[string]any{{"event": "cert_obtained", "renewal": true}}, "certs: certificate obtained"},
		{"renewal failed", []map[string]any{{"event": "cert_failed", "renewal": true, "error": "CA down"}}, "certs: renewing a certificate failed; the current one keeps serving"},
		{"budget spent", []map[string]any{{"event": "cert_obtaining"}, {"event": "cert_obtaining"}}, "certs: issuance budget spent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := badgertest.Open(t)
			var logs strings.Builder
			a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
				Decide:           func(n string) (string, bool) { return "acme", n == "a1.test" },
				MaxPerOrgPerHour: 1, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Stop()
			for _, e := range tc.events {
				data := map[string]any{"identifier": "a1.test"}
				for k, v := range e {
					if k != "event" {
						data[k] = v
					}
				}
				_ = a.event(context.Background(), e["event"].(string), data)
			}
			found := false
			for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
				var m map[string]any
				if err := json.Unmarshal([]byte(line), &m); err != nil {
					t.Fatalf("%q: %v", line, err)
				}
				if m["name"] == "a1.test" && m["org"] != "acme" {
					t.Errorf("line without the org's slug: %s", line)
				}
				found = found || m["msg"] == tc.msg
			}
			if !found {
				t.Errorf("no %q line:\n%s", tc.msg, logs.String())
			}
		})
	}
}
