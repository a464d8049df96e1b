package telemetry

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// The certificate and domain metrics are served on /metrics with their
// types and the values recorded.
func TestCertificateAndDomainMetricsServed(t *testing.T) {
	m := New()
	m.CertExpiry.WithLabelValues("login.acme.test").Set(1.8e9)
	m.CertIssuances.WithLabelValues("renewal", "failure").Inc()
	m.ACMEErrors.WithLabelValues("rateLimited").Add(2)
	m.DomainClaims.WithLabelValues("login", "suspended").Set(3)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		"# TYPE gatehouse_certificate_expiry_timestamp_seconds gauge\n",
		`gatehouse_certificate_expiry_timestamp_seconds{name="login.acme.test"} 1.8e+09` + "\n",
		"# TYPE gatehouse_certificate_issuances_total counter\n",
		`gatehouse_certificate_issuances_total{kind="renewal",result="failure"} 1` + "\n",
		"# TYPE gatehouse_acme_errors_total counter\n",
		`gatehouse_acme_errors_total{kind="rateLimited"} 2` + "\n",
		"# TYPE gatehouse_domain_claims gauge\n",
		`gatehouse_domain_claims{kind="login",state="suspended"} 3` + "\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in /metrics", want)
		}
	}
}
