// Package telemetry holds Gatehouse's Prometheus metrics. One Metrics is
// built per process and handed to the packages that record into it.
package telemetry

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type Metrics struct {
	reg      *prometheus.Registry
	Requests *prometheus.CounterVec
	Latency  *prometheus.HistogramVec
	Logins   *prometheus.CounterVec

	// CertExpiry is each stored ACME certificate's not-after time, for
	// the names still served (what "expires within N days" alerts use).
	CertExpiry *prometheus.GaugeVec
	// CertIssuances counts certificate orders by kind (new, renewal) and
	// result (success, failure, budget_exceeded).
	CertIssuances *prometheus.CounterVec
	// ACMEErrors counts failed orders by kind: the ACME problem type
	// (rateLimited, unauthorized, dns, caa, connection, tls, ...), or
	// timeout, network, other.
	ACMEErrors *prometheus.CounterVec
	// DomainClaims is the number of domain claims by kind (login, email)
	// and state (pending, verified, suspended, released), as the last
	// verification sweep left them.
	DomainClaims *prometheus.GaugeVec
}

func New() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_requests_total",
			Help: "Requests handled, by route, status code and decision (allow, deny, login, public, error, gatehouse).",
		}, []string{"route", "status", "decision"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gatehouse_request_duration_seconds",
			Help:    "Time from request to response headers, by route and decision.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "decision"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_logins_total",
			Help: "Sign-in attempts by org and outcome (success, bad_credentials, throttled, unknown_org, error; federated: invalid, expired, canceled, idp_unreachable, idp_not_ready, unknown_user, wrong_domain, denied, unknown_endpoint, wrong_endpoint).",
		}, []string{"org", "outcome"}),
	}
	m.CertExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatehouse_certificate_expiry_timestamp_seconds",
		Help: "Not-after time of each stored ACME certificate for a name still served, in Unix seconds.",
	}, []string{"name"})
	m.CertIssuances = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_certificate_issuances_total",
		Help: "Certificate orders by kind (new, renewal) and result (success, failure, budget_exceeded).",
	}, []string{"kind", "result"})
	m.ACMEErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_acme_errors_total",
		Help: "Failed certificate orders by kind: the ACME problem type (rateLimited, unauthorized, dns, caa, connection, tls, ...), or timeout, network, other.",
	}, []string{"kind"})
	m.DomainClaims = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatehouse_domain_claims",
		Help: "Domain claims by kind (login, email) and verification state (pending, verified, suspended, released), as of the last check.",
	}, []string{"kind", "state"})
	reg.MustRegister(m.Requests, m.Latency, m.Logins, m.CertExpiry, m.CertIssuances, m.ACMEErrors, m.DomainClaims,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registerer is where other packages register their metrics.
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// ParseText reads metrics in Prometheus's text format (what /metrics
// serves) into "name{labels}" → value, for tests and tools that check
// what an operator would scrape.
func ParseText(r io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			return nil, fmt.Errorf("telemetry: metrics line %q: not name value", line)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}
