package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"

	"github.com/gatehouse/gatehouse/certs"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testdns"
)

// pebble is Let's Encrypt's test ACME server, in process, with its DNS
// test server answering 127.0.0.1 for every name.
type pebble struct {
	dir    string         // directory URL
	caRoot string         // PEM file of the HTTPS certificate of the ACME API
	roots  *x509.CertPool // the CA that issues certificates
	orders atomic.Int32   // new-order requests seen
	// accounts counts new-account requests that made an account.
	accounts atomic.Int32
	// dns answers Pebble's lookups (127.0.0.1 for every name); tests add
	// TXT records to it and point Gatehouse's domains.resolver at dnsAddr.
	dns     *challtestsrv.ChallSrv
	dnsAddr string
}

// startDNS runs challtestsrv's DNS server: every name is 127.0.0.1 unless
// a test adds records.
func startDNS(t *testing.T) (*challtestsrv.ChallSrv, string) {
	t.Helper()
	dns, addr := testdns.Start(t)
	dns.SetDefaultDNSIPv4("127.0.0.1")
	dns.SetDefaultDNSIPv6("")
	return dns, addr
}

// startPebble runs Pebble validating on httpPort (HTTP-01) and tlsPort
// (TLS-ALPN-01); with eab, it requires External Account Binding with
// these key IDs and base64url MAC keys.
func startPebble(t *testing.T, httpPort, tlsPort int, eab map[string]string) *pebble {
	t.Helper()
	return startPebbleValid(t, httpPort, tlsPort, eab, 0)
}

// startPebbleValid is startPebble issuing certificates valid for
// validity (0: Pebble's default, 90 days).
func startPebbleValid(t *testing.T, httpPort, tlsPort int, eab map[string]string, validity time.Duration) *pebble {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	// Pebble rejects 5% of nonces by default to exercise client retries;
	// a retried new-order would count as a second order here.
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	dns, dnsAddr := startDNS(t)

	quiet := log.New(io.Discard, "", 0)
	store := db.NewMemoryStore()
	issuer := ca.New(quiet, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default", ValidityPeriod: uint64(validity / time.Second)}})
	validator := va.New(quiet, httpPort, tlsPort, false, dnsAddr, store)
	for id, key := range eab {
		if err := store.AddExternalAccountKeyByID(id, key); err != nil {
			t.Fatal(err)
		}
	}
	front := wfe.New(quiet, store, validator, issuer, []string{"pebble.letsencrypt.org"}, false, eab != nil, 0, 0)
	p := &pebble{dns: dns, dnsAddr: dnsAddr}
	api := front.Handler()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/order-plz" {
			p.orders.Add(1)
		}
		if r.Method == http.MethodPost && r.URL.Path == "/sign-me-up" {
			rec := &statusRecorder{ResponseWriter: w}
			api.ServeHTTP(rec, r)
			if rec.status == http.StatusCreated {
				p.accounts.Add(1)
			}
			return
		}
		api.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	mgmt := httptest.NewTLSServer(front.ManagementHandler())
	t.Cleanup(mgmt.Close)
	p.dir = srv.URL + "/dir"
	p.caRoot = filepath.Join(t.TempDir(), "acme-api.pem")
	if err := os.WriteFile(p.caRoot, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err := mgmt.Client().Get(mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	root, _ := io.ReadAll(resp.Body)
	p.roots = x509.NewCertPool()
	if !p.roots.AppendCertsFromPEM(root) {
		t.Fatalf("pebble root: %s", root)
	}
	return p
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

const acmeConfig = "public_url: https://auth.saas.test:{{PORT}}\n" + listenPreamble + `tls:
  acme:
    directory_url: {{DIR}}
    ca_root: {{CAROOT}}
    email: ops@saas.test
    challenges: [tls-alpn-01]
routes:
  - id: app
    host: app.saas.test
    upstream: {{UPSTREAM}}
  - id: tenants
    host: "*.tenants.saas.test"
    upstream: {{UPSTREAM}}
orgs:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    login_domain: login.acme.test
    connection: { type: password }
`

// handshake connects to Gatehouse with SNI name and returns the leaf
// certificate it served, verified against the ACME CA.
func handshake(g *gatehouse, p *pebble, name string) (*x509.Certificate, error) {
	return handshakeWithin(g, p, name, 20*time.Second)
}

func handshakeWithin(g *gatehouse, p *pebble, name string, timeout time.Duration) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", g.addr, &tls.Config{ServerName: name, RootCAs: p.roots, NextProtos: []string{"http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// metrics scrapes the ops listener's /metrics ("name{labels}" → value).
func metrics(t *testing.T, g *gatehouse) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + g.ops + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := telemetry.ParseText(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// acmeClient is an HTTPS client trusting Pebble's CA that reaches every
// name at Gatehouse.
func acmeClient(g *gatehouse, p *pebble) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: p.roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, g.addr)
		}}}
}

// sameAfterRestart restarts Gatehouse and checks it serves cert for name
// from the store, with no new ACME order; it returns the restarted one.
func sameAfterRestart(t *testing.T, g *gatehouse, p *pebble, name string, cert *x509.Certificate) *gatehouse {
	t.Helper()
	orders := p.orders.Load()
	g = g.restart(t)
	again, err := handshake(g, p, name)
	if err != nil {
		t.Fatal(err)
	}
	if again.SerialNumber.Cmp(cert.SerialNumber) != 0 || p.orders.Load() != orders {
		t.Fatalf("after restart: serial %v (was %v), %d orders (was %d)", again.SerialNumber, cert.SerialNumber, p.orders.Load(), orders)
	}
	return g
}

func TestACMECertificatesOnDemand(t *testing.T) {
	port := freePort(t)
	tlsPort, _ := strconv.Atoi(port)
	p := startPebble(t, 0, tlsPort, nil)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{DIR}}", p.dir, "{{CAROOT}}", p.caRoot, "{{UPSTREAM}}", up.URL).Replace(acmeConfig)
	g := startAt(t, port, cfg)

	// The org's login domain gets a certificate at its first handshake.
	cert, err := handshake(g, p, "login.acme.test")
	if err != nil {
		t.Fatalf("first handshake for the login domain: %v\n%s", err, g.Logs())
	}
	if cert.VerifyHostname("login.acme.test") != nil || p.orders.Load() != 1 {
		t.Fatalf("certificate for %v; %d orders", cert.DNSNames, p.orders.Load())
	}
	// And the login page is served over it.
	client := acmeClient(g, p)
	resp, err := client.Get("https://login.acme.test:" + port + "/.gatehouse/login")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "Acme Corp") {
		t.Fatalf("login page: %d\n%s", resp.StatusCode, body)
	}

	// Names Gatehouse does not serve get no certificate and no order. (A
	// trailing dot never reaches a server from Go's client, which strips
	// it from SNI; certs.TestDecide covers it.)
	for _, name := range []string{"random.test", "evil.login.acme.test", "x.tenants.saas.test", "", "127.0.0.1"} {
		if _, err := handshake(g, p, name); err == nil {
			t.Errorf("handshake for %q succeeded", name)
		}
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d ACME orders after handshakes for names not served, want 1", n)
	}
	// The refusals are one warning naming the first SNI, the rest counted
	// for the next line (a minute later, or at shutdown), not a line per
	// probe.
	const refused = `"msg":"certs: refused TLS handshakes for names not served","count":1,"names":["random.test"]`
	if !g.logged(refused) {
		t.Errorf("no refusal line naming random.test")
	}
	if strings.Contains(g.Logs(), certs.ErrNotAllowed.Error()) {
		t.Errorf("a handshake error line per refused probe:\n%s", g.Logs())
	}

	// A restart serves the same certificate from the store: no new order.
	sameAfterRestart(t, g, p, "login.acme.test", cert)
	if want := `"count":4,"names":["evil.login.acme.test","x.tenants.saas.test","(no SNI)"]`; !strings.Contains(g.Logs(), want) {
		t.Errorf("the refusals pending at shutdown: no %s line", want)
	}
}

// The HTTP-01 challenge, answered on the plain-HTTP listener, which sends
// every other request to HTTPS (for served hosts only).
func TestACMEHTTPChallenge(t *testing.T) {
	port, httpPort := freePort(t), freePort(t)
	hp, _ := strconv.Atoi(httpPort)
	p := startPebble(t, hp, 0, nil)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{DIR}}", p.dir, "{{CAROOT}}", p.caRoot, "{{UPSTREAM}}", up.URL,
		"    challenges: [tls-alpn-01]", "    challenges: [http-01]\n  http_listen: 127.0.0.1:"+httpPort).Replace(acmeConfig)
	g := startAt(t, port, cfg)
	cert, err := handshake(g, p, "app.saas.test")
	if err != nil {
		t.Fatalf("handshake: %v\n%s", err, g.Logs())
	}
	if cert.VerifyHostname("app.saas.test") != nil || p.orders.Load() != 1 {
		t.Fatalf("certificate for %v; %d orders", cert.DNSNames, p.orders.Load())
	}
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(host string) *http.Response {
		req, _ := http.NewRequest("GET", "http://127.0.0.1:"+httpPort+"/x?y=1", nil)
		req.Host = host
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := get("app.saas.test:" + httpPort); r.StatusCode != http.StatusPermanentRedirect || r.Header.Get("Location") != "https://app.saas.test:"+port+"/x?y=1" {
		t.Fatalf("plain HTTP: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	if r := get("random.test"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("plain HTTP for a host not served: %d", r.StatusCode)
	}
}

// A CA that requires External Account Binding (ZeroSSL, private CAs):
// without the binding no account, no certificate; with it, issuance.
func TestACMEExternalAccountBinding(t *testing.T) {
	const keyID, macKey = "kid-gatehouse", "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"
	for _, tc := range []struct {
		name, eab string
		ok        bool
	}{
		{"without", "", false},
		{"with", "    eab: { key_id: " + keyID + ", mac_key: " + macKey + " }\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			tlsPort, _ := strconv.Atoi(port)
			p := startPebble(t, 0, tlsPort, map[string]string{keyID: macKey})
			up := newUpstream(t)
			cfg := strings.NewReplacer("{{DIR}}", p.dir, "{{CAROOT}}", p.caRoot, "{{UPSTREAM}}", up.URL,
				"    challenges: [tls-alpn-01]\n", "    challenges: [tls-alpn-01]\n"+tc.eab).Replace(acmeConfig)
			g := startAt(t, port, cfg)
			// Without the binding the CA refuses the account: the
			// handshake gets no certificate (certmagic keeps retrying
			// behind it, so give up after a few seconds).
			within := 4 * time.Second
			if tc.ok {
				within = 20 * time.Second // a whole issuance, on a loaded machine
			}
			_, err := handshakeWithin(g, p, "app.saas.test", within)
			if tc.ok != (err == nil) {
				t.Fatalf("handshake: %v\n%s", err, g.Logs())
			}
		})
	}
}

const acmeVerifiedConfig = "public_url: https://auth.saas.test:{{PORT}}\n" + listenPreamble + `tls:
  acme:
    directory_url: {{DIR}}
    ca_root: {{CAROOT}}
    email: ops@saas.test
    challenges: [tls-alpn-01]
domains:
  verify: true
  resolver: {{DNS}}
  recheck: 1s
routes:
  - id: app
    host: app.saas.test
    upstream: {{UPSTREAM}}
orgs:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    login_domain: login.acme.test
    connection: { type: password }
    branding:
      logo: {{BRAND}}/acme-logo.svg
      colors: { primary: "#b00020" }
      texts: { heading: "Welcome to Acme" }
  - slug: globex
    name: Globex
    email_domains: [globex.example]
    login_domain: login.globex.test
    connection: { type: password }
`

// The scenario end to end: a new org's login domain gets no
// certificate (and causes no ACME order) until its DNS record proves it;
// then its first handshake gets one from Pebble and serves the org's
// branded page; a restart serves the same certificate; an org whose
// domain never verifies never causes an order.
func TestACMEVerifiedDomainBrandedPage(t *testing.T) {
	port := freePort(t)
	tlsPort, _ := strconv.Atoi(port)
	p := startPebble(t, 0, tlsPort, nil)
	up := newUpstream(t)
	brand := t.TempDir()
	logo := `<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><rect width="120" height="40" fill="#b00020"/></svg>`
	if err := os.WriteFile(filepath.Join(brand, "acme-logo.svg"), []byte(logo), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer("{{DIR}}", p.dir, "{{CAROOT}}", p.caRoot, "{{UPSTREAM}}", up.URL, "{{DNS}}", p.dnsAddr, "{{BRAND}}", brand).Replace(acmeVerifiedConfig)
	g := startAt(t, port, cfg)

	claim := waitStatus(t, g, "login.acme.test", "pending")
	waitStatus(t, g, "login.globex.test", "pending")
	for _, name := range []string{"login.acme.test", "login.globex.test"} {
		start := time.Now()
		if _, err := handshakeWithin(g, p, name, 5*time.Second); err == nil {
			t.Fatalf("handshake for unverified %s succeeded", name)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("refusing unverified %s took %v", name, d)
		}
	}
	if n := p.orders.Load(); n != 0 {
		t.Fatalf("%d ACME orders for unverified domains", n)
	}

	p.dns.AddDNSTXTRecord(claim.Record, claim.Value)
	waitStatus(t, g, "login.acme.test", "verified")
	var cert *x509.Certificate
	eventually(t, "first handshake after verification", func() (err error) {
		cert, err = handshake(g, p, "login.acme.test")
		return err
	})
	if cert.VerifyHostname("login.acme.test") != nil || p.orders.Load() != 1 {
		t.Fatalf("certificate for %v; %d orders", cert.DNSNames, p.orders.Load())
	}
	// Operators see it on /metrics: its expiry, the order, the claims.
	expiry := `gatehouse_certificate_expiry_timestamp_seconds{name="login.acme.test"}`
	m := metrics(t, g)
	for s, want := range map[string]float64{
		expiry: float64(cert.NotAfter.Unix()),
		`gatehouse_certificate_issuances_total{kind="new",result="success"}`: 1,
		`gatehouse_domain_claims{kind="login",state="verified"}`:             1,
		`gatehouse_domain_claims{kind="login",state="pending"}`:              1,
	} {
		if m[s] != want {
			t.Errorf("%s = %v, want %v", s, m[s], want)
		}
	}
	if !g.logged(`"msg":"certs: obtaining a certificate","name":"login.acme.test","org":"acme"`) {
		t.Error("the certs: line does not name the org by its slug")
	}
	client := acmeClient(g, p)
	get := func(u string) (int, string) {
		t.Helper()
		resp, err := client.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	base := "https://login.acme.test:" + port
	status, page := get(base + "/.gatehouse/login")
	if status != 200 || !strings.Contains(page, "Welcome to Acme") {
		t.Fatalf("branded login page: %d\n%s", status, page)
	}
	src := regexp.MustCompile(`<img[^>]+src="(/.gatehouse/assets/b/[0-9a-f]+\.svg)"`).FindStringSubmatch(page)
	if src == nil {
		t.Fatalf("no logo on the page:\n%s", page)
	}
	if status, body := get(base + src[1]); status != 200 || body != logo {
		t.Fatalf("logo over HTTPS: %d %q", status, body)
	}

	if _, err := handshakeWithin(g, p, "login.globex.test", 5*time.Second); err == nil {
		t.Fatal("handshake for the unverified org succeeded")
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d ACME orders, want 1", n)
	}

	g = sameAfterRestart(t, g, p, "login.acme.test", cert)
	// Published from the start, with no order or renewal since.
	eventually(t, "expiry gauge after a restart", func() error {
		if v := metrics(t, g)[expiry]; v != float64(cert.NotAfter.Unix()) {
			return fmt.Errorf("%s = %v", expiry, v)
		}
		return nil
	})

	// The record goes away: once the domain is suspended, its handshakes
	// fail at once, though its certificate is still in memory, and no
	// order is placed.
	p.dns.DeleteDNSTXTRecord(claim.Record)
	waitStatus(t, g, "login.acme.test", "suspended")
	for range 100 { // the suspension reaches the org directory just after the store
		if _, err := handshakeWithin(g, p, "login.acme.test", 5*time.Second); err != nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	if _, err := handshakeWithin(g, p, "login.acme.test", 5*time.Second); err == nil {
		t.Fatal("handshake for a suspended domain succeeded")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("refusing the suspended domain took %v", d)
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d ACME orders, want 1", n)
	}
}

// When the CA cannot validate a name, the handshake fails, and the next
// ones fail at once without another order until the back-off passes.
func TestACMEFailureBacksOff(t *testing.T) {
	port := freePort(t)
	wrong, _ := strconv.Atoi(freePort(t)) // Pebble validates TLS-ALPN-01 where nothing listens
	p := startPebble(t, 0, wrong, nil)
	up := newUpstream(t)
	g := startAt(t, port, strings.NewReplacer("{{DIR}}", p.dir, "{{CAROOT}}", p.caRoot, "{{UPSTREAM}}", up.URL).Replace(acmeConfig))

	start := time.Now()
	if _, err := handshakeWithin(g, p, "login.acme.test", 60*time.Second); err == nil {
		t.Fatal("handshake succeeded without a validated challenge")
	}
	first := time.Since(start)
	orders := p.orders.Load()
	if orders < 1 {
		t.Fatalf("%d orders", orders)
	}
	for range 3 {
		start = time.Now()
		if _, err := handshakeWithin(g, p, "login.acme.test", 10*time.Second); err == nil {
			t.Fatal("handshake succeeded")
		}
		if d := time.Since(start); d > 3*time.Second { // an order would take longer; the count below is exact
			t.Errorf("a handshake during the back-off took %v", d)
		}
	}
	if n := p.orders.Load(); n != orders {
		t.Fatalf("%d orders during the back-off, want %d", n, orders)
	}
	if !g.logged("certs: obtaining a certificate failed") {
		t.Error("no log line for the failure")
	}
	// Pebble could not connect to validate; it calls that an
	// "unauthorized" problem.
	m := metrics(t, g)
	if m[`gatehouse_certificate_issuances_total{kind="new",result="failure"}`] < 1 || m[`gatehouse_acme_errors_total{kind="unauthorized"}`] < 1 {
		var got []string
		for k, v := range m {
			if strings.HasPrefix(k, "gatehouse_acme") || strings.HasPrefix(k, "gatehouse_certificate") {
				got = append(got, fmt.Sprint(k, " ", v))
			}
		}
		t.Errorf("failure metrics: %v", got)
	}
	t.Logf("first failing handshake took %v with %d orders", first, orders)
}

// startShortLived runs Pebble issuing certificates valid for validity and
// Gatehouse sweeping for renewals every second, and returns the login
// domain's first certificate.
func startShortLived(t *testing.T, validity time.Duration) (*gatehouse, *pebble, *x509.Certificate) {
	t.Helper()
	port := freePort(t)
	tlsPort, _ := strconv.Atoi(port)
	p := startPebbleValid(t, 0, tlsPort, nil, validity)
	up := newUpstream(t)
	g := startAt(t, port, strings.NewReplacer("{{DIR}}", p.dir, "{{CAROOT}}", p.caRoot, "{{UPSTREAM}}", up.URL,
		"    challenges: [tls-alpn-01]", "    challenges: [tls-alpn-01]\n    renew_check_interval: 1s").Replace(acmeConfig))
	first, err := handshake(g, p, "login.acme.test")
	if err != nil {
		t.Fatalf("first handshake: %v\n%s", err, g.Logs())
	}
	return g, p, first
}

// Certificates are renewed while the old one keeps serving, and the
// renewed one is kept in the store. Pebble's renewal information (ARI)
// suggests a window of a day around two thirds of a certificate's life,
// so the 20-second certificates it issues here are due at once: the test
// shows the renewal path, not its timing.
func TestACMERenewal(t *testing.T) {
	g, p, first := startShortLived(t, 20*time.Second)
	if life := first.NotAfter.Sub(first.NotBefore); life > 21*time.Second {
		t.Fatalf("Pebble issued a certificate for %v", life)
	}
	deadline := time.Now().Add(30 * time.Second)
	var cert *x509.Certificate
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		c, err := handshake(g, p, "login.acme.test")
		if err != nil {
			t.Fatalf("handshake during renewal: %v", err)
		}
		if time.Now().After(c.NotAfter) {
			t.Fatalf("served an expired certificate (not after %v)", c.NotAfter)
		}
		if c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			cert = c
			break
		}
	}
	if cert == nil {
		t.Fatalf("no renewal within 30s; %d orders\n%s", p.orders.Load(), g.Logs())
	}
	// (Renewed within the first's second, both end on the same second:
	// Pebble's validity is whole seconds.)
	if n := p.orders.Load(); n < 2 || cert.NotAfter.Before(first.NotAfter) {
		t.Errorf("%d orders; renewed certificate ends %v, before the first (%v)", n, cert.NotAfter, first.NotAfter)
	}
	if !g.logged(`"msg":"certs: certificate obtained"`) {
		t.Error("no log line for the renewal")
	}
	// A restart serves a renewed certificate from the store.
	g = g.restart(t)
	again, err := handshake(g, p, "login.acme.test")
	if err != nil {
		t.Fatal(err)
	}
	if again.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Error("after a restart, the certificate renewed before it is gone")
	}
}

// certmagic renews on-demand certificates only at handshakes; Gatehouse's
// sweep renews a certificate nobody asks for before it expires.
func TestACMEBackgroundRenewal(t *testing.T) {
	g, p, first := startShortLived(t, 30*time.Second)
	// No handshake from here on: the renewal window (the last third)
	// opens 20 s after issuance.
	deadline := first.NotAfter
	for p.orders.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
	}
	if n := p.orders.Load(); n < 2 {
		t.Fatalf("no renewal before expiry without handshakes; %d orders\n%s", n, g.Logs())
	}
	if at := time.Now(); at.Before(first.NotAfter.Add(-first.NotAfter.Sub(first.NotBefore) / 3).Add(-2 * time.Second)) {
		t.Errorf("renewed at %v, before the renewal window", at)
	}
	// The next handshakes move to the renewed certificate.
	for range 40 {
		c, err := handshake(g, p, "login.acme.test")
		if err != nil {
			t.Fatal(err)
		}
		if c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatal("handshakes still serve the first certificate")
}
