package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"

	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// scrape reads /metrics as Prometheus does and returns each series'
// value ("name{labels}" → value).
func scrape(t *testing.T, m *telemetry.Metrics) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	out, err := telemetry.ParseText(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// storeCert writes a self-signed certificate for name into a's storage.
func storeCert(t *testing.T, a *ACME, name string, notBefore, notAfter time.Time) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{name}, NotBefore: notBefore, NotAfter: notAfter}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err := a.o.Storage.Store(context.Background(), certmagic.StorageKeys.SiteCert(a.issuer.IssuerKey(), name), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		t.Fatal(err)
	}
}

// The expiry gauge carries every stored certificate of a name still
// served, from the start (before any renewal sweep), and follows new
// certificates; a name no longer served loses it.
func TestCertificateExpiryMetric(t *testing.T) {
	st := badgertest.Open(t)
	m := telemetry.New()
	var mu sync.Mutex
	served := map[string]bool{"a.test": true, "b.test": true, "new.test": true}
	a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
		Decide: func(n string) (string, bool) {
			mu.Lock()
			defer mu.Unlock()
			return "acme", served[n]
		},
		RenewCheckInterval: time.Hour, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	now := time.Now().Truncate(time.Second)
	day := 24 * time.Hour
	storeCert(t, a, "a.test", now.Add(-day), now.Add(89*day))
	storeCert(t, a, "b.test", now.Add(-80*day), now.Add(10*day)) // due: still only read at the start
	storeCert(t, a, "gone.test", now.Add(-day), now.Add(89*day))
	series := func(name string) string {
		return `gatehouse_certificate_expiry_timestamp_seconds{name="` + name + `"}`
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	var got map[string]float64
	for range 200 {
		if got = scrape(t, m); len(got) > 0 && got[series("b.test")] != 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if got[series("a.test")] != float64(now.Add(89*day).Unix()) || got[series("b.test")] != float64(now.Add(10*day).Unix()) {
		t.Fatalf("expiry at start: a %v, b %v", got[series("a.test")], got[series("b.test")])
	}
	if _, ok := got[series("gone.test")]; ok {
		t.Error("a name no longer served has an expiry")
	}

	// A new certificate is published when obtained.
	storeCert(t, a, "new.test", now, now.Add(90*day))
	if err := a.event(context.Background(), "cert_obtained", map[string]any{"identifier": "new.test"}); err != nil {
		t.Fatal(err)
	}
	if v := scrape(t, m)[series("new.test")]; v != float64(now.Add(90*day).Unix()) {
		t.Errorf("expiry of an obtained certificate: %v", v)
	}
	// A name no longer served (removed, suspended) loses its gauge at the
	// next sweep: its certificate is not renewed on purpose.
	mu.Lock()
	served["a.test"] = false
	mu.Unlock()
	a.sweep(context.Background(), false)
	if v, ok := scrape(t, m)[series("a.test")]; ok {
		t.Errorf("expiry of a name no longer served: %v", v)
	}
	if _, ok := scrape(t, m)[series("b.test")]; !ok {
		t.Error("another name lost its expiry")
	}
	// Served again (a suspension ends): published at the next sweep.
	mu.Lock()
	served["a.test"] = true
	mu.Unlock()
	a.sweep(context.Background(), false)
	if v := scrape(t, m)[series("a.test")]; v != float64(now.Add(89*day).Unix()) {
		t.Errorf("expiry of a name served again: %v", v)
	}
}

// Orders count by kind and result, and failures by ACME error kind.
func TestIssuanceAndErrorMetrics(t *testing.T) {
	st := badgertest.Open(t)
	m := telemetry.New()
	a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
		Decide:           func(n string) (string, bool) { return "acme", true },
		MaxPerOrgPerHour: 1, Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop()
	ctx := context.Background()
	problem := func(typ string, sub ...string) error {
		p := acme.Problem{Type: typ}
		for _, s := range sub {
			p.Subproblems = append(p.Subproblems, acme.Subproblem{Problem: acme.Problem{Type: s}})
		}
		return fmt.Errorf("authorization failed: %w", p)
	}
	events := []struct {
		event   string
		renewal bool
		err     any
	}{
		{"cert_obtaining", false, nil},
		{"cert_obtaining", false, nil}, // over the budget of 1
		{"cert_obtained", false, nil},
		{"cert_obtained", true, nil},
		{"cert_obtained", true, nil},
		{"cert_failed", false, problem(acme.ProblemTypeRateLimited)},
		{"cert_failed", false, problem(acme.ProblemTypeUnauthorized)},
		{"cert_failed", false, problem(acme.ProblemTypeCompound, acme.ProblemTypeCAA)},
		{"cert_failed", false, problem("urn:ietf:params:acme:error:somethingNew")},
		{"cert_failed", false, problem("https://ca.example/weird")},
		{"cert_failed", true, fmt.Errorf("renew: %w", context.DeadlineExceeded)},
		{"cert_failed", true, &net.OpError{Op: "dial", Err: errors.New("connection refused")}},
		{"cert_failed", true, "a string, not an error"},
	}
	for i, e := range events {
		data := map[string]any{"identifier": fmt.Sprintf("n%d.test", i), "renewal": e.renewal}
		if e.err != nil {
			data["error"] = e.err
		}
		_ = a.event(ctx, e.event, data)
	}
	got := scrape(t, m)
	want := map[string]float64{
		`gatehouse_certificate_issuances_total{kind="new",result="budget_exceeded"}`: 1,
		`gatehouse_certificate_issuances_total{kind="new",result="success"}`:         1,
		`gatehouse_certificate_issuances_total{kind="renewal",result="success"}`:     2,
		`gatehouse_certificate_issuances_total{kind="new",result="failure"}`:         5,
		`gatehouse_certificate_issuances_total{kind="renewal",result="failure"}`:     3,
		`gatehouse_acme_errors_total{kind="rateLimited"}`:                            1,
		`gatehouse_acme_errors_total{kind="unauthorized"}`:                           1,
		`gatehouse_acme_errors_total{kind="caa"}`:                                    1,
		`gatehouse_acme_errors_total{kind="problem"}`:                                2,
		`gatehouse_acme_errors_total{kind="timeout"}`:                                1,
		`gatehouse_acme_errors_total{kind="network"}`:                                1,
		`gatehouse_acme_errors_total{kind="other"}`:                                  1,
	}
	for s, v := range want {
		if got[s] != v {
			t.Errorf("%s = %v, want %v", s, got[s], v)
		}
	}
	for s := range got {
		if strings.HasPrefix(s, "gatehouse_acme_errors_total") || strings.HasPrefix(s, "gatehouse_certificate_issuances_total") {
			if _, ok := want[s]; !ok {
				t.Errorf("unexpected series %s = %v", s, got[s])
			}
		}
	}
}
