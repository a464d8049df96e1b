package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// tlsHosts are the names the test certificate covers. A "*.localhost"
// wildcard would not match two-label names like login.acme.localhost.
var tlsHosts = []string{"auth.localhost", "app.localhost", "login.acme.localhost", "login.globex.localhost", "globex-app.localhost"}

// selfSigned writes a fresh ECDSA certificate for tlsHosts into dir and
// returns the file paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "gatehouse e2e"},
		DNSNames:              tlsHosts,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// exchange is one response seen by a recordingTransport.
type exchange struct {
	host       string
	protoMajor int
	setCookie  []string
	location   string
}

// recordingTransport keeps every response's protocol, Set-Cookie and
// Location headers, so tests can inspect each hop of a login flow.
type recordingTransport struct {
	rt  http.RoundTripper
	mu  sync.Mutex
	log []exchange
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	if err == nil {
		r.mu.Lock()
		r.log = append(r.log, exchange{
			host: req.URL.Hostname(), protoMajor: resp.ProtoMajor,
			setCookie: resp.Header.Values("Set-Cookie"), location: resp.Header.Get("Location"),
		})
		r.mu.Unlock()
	}
	return resp, err
}

func (r *recordingTransport) exchanges() []exchange {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]exchange(nil), r.log...)
}

// tlsBrowser is g.browser over HTTPS: it trusts pool and negotiates HTTP/2.
func (g *gatehouse) tlsBrowser(t *testing.T, pool *x509.CertPool) (*browser, *recordingTransport) {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{
		DialContext:        g.dial,
		TLSClientConfig:    &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	rec := &recordingTransport{rt: tr}
	return &browser{t: t, g: g, jar: jar, client: &http.Client{
		Jar:       jar,
		Transport: rec,
		Timeout:   15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}, rec
}

func (g *gatehouse) surl(host, path string) string {
	return "https://" + host + ":" + g.port + path
}

func TestTLSAndHTTP2(t *testing.T) {
	up := newUpstream(t)
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	if !strings.Contains(testConfig, "public_url: http://auth.localhost:{{PORT}}\n") {
		t.Fatal("testConfig changed: public_url line not found")
	}
	httpPort := freePort(t)
	cfg := strings.Replace(testConfig, "public_url: http://", "public_url: https://", 1) +
		"tls:\n  cert_file: " + certFile + "\n  key_file: " + keyFile + "\n  http_listen: 127.0.0.1:" + httpPort + "\n"
	cfg = strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(cfg)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	b, rec := g.tlsBrowser(t, pool)

	// The plain-HTTP listener redirects served hosts to HTTPS, and only
	// those: any other Host gets a 404, not a redirect to https://<it>.
	for host, served := range map[string]bool{
		"app.localhost": true, "APP.localhost.": true, "login.acme.localhost": true, "auth.localhost": true,
		"evil.example": false, "app.localhost.evil": false, "127.0.0.1": false, "login.unknown.localhost": false,
	} {
		st, _ := rawDo(t, "127.0.0.1:"+httpPort, "GET /x?y=1 HTTP/1.1\r\nHost: "+host+"\r\n")
		switch {
		case !served && st != http.StatusNotFound:
			t.Errorf("plain HTTP, Host %s: %d, want 404", host, st)
		case served && st != http.StatusPermanentRedirect:
			t.Errorf("plain HTTP, Host %s: %d, want 308 to HTTPS", host, st)
		}
	}

	// The anonymous redirect sends the browser to the HTTPS sign-in page
	// and asks to come back to the HTTPS app URL.
	first := b.get(g.surl("app.localhost", "/dashboard?tab=2"))
	wantLogin := "https://auth.localhost:" + g.port + "/.gatehouse/login?rd=" + url.QueryEscape(g.surl("app.localhost", "/dashboard?tab=2"))
	if first.status != http.StatusFound || !strings.HasPrefix(first.header.Get("Location"), wantLogin+"&state=") {
		t.Fatalf("anonymous request: %d %q, want 302 to %q", first.status, first.header.Get("Location"), wantLogin)
	}

	p := b.login(g.surl("app.localhost", "/dashboard?tab=2"), "alice@acme.example", "alice-pw-123")
	if p.status != 200 || p.body != "upstream /dashboard for alice@acme.example" {
		t.Fatalf("login over HTTPS: %d %s\n%s", p.status, p.url, p.body)
	}
	if p.url != g.surl("app.localhost", "/dashboard?tab=2") {
		t.Errorf("landed on %s", p.url)
	}

	// HTTP/2 on the app host (and everywhere else on the way).
	req, _ := http.NewRequest("GET", g.surl("app.localhost", "/h2"), nil)
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Fatalf("app host: %d %s, want 200 over HTTP/2 (tls=%v)\n%s", resp.StatusCode, resp.Proto, resp.TLS != nil, body)
	}
	if string(body) != "upstream /h2 for alice@acme.example" {
		t.Errorf("app host body = %q", body)
	}

	// Each hop: HTTP/2, HTTPS redirects only, and every cookie locked down.
	hosts := map[string]bool{}
	sessionCookieOn := map[string]bool{}
	csrfCookie := false
	for _, x := range rec.exchanges() {
		hosts[x.host] = true
		if x.protoMajor != 2 {
			t.Errorf("%s answered over HTTP/%d", x.host, x.protoMajor)
		}
		if strings.HasPrefix(x.location, "http:") {
			t.Errorf("%s redirected to plain HTTP: %s", x.host, x.location)
		}
		for _, raw := range x.setCookie {
			c, err := http.ParseSetCookie(raw)
			if err != nil {
				t.Errorf("%s: bad Set-Cookie %q: %v", x.host, raw, err)
				continue
			}
			if !strings.HasPrefix(c.Name, "__Host-") || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode ||
				c.Path != "/" || c.Domain != "" || strings.Contains(strings.ToLower(raw), "domain=") {
				t.Errorf("%s: cookie not locked down: %s", x.host, raw)
			}
			switch c.Name {
			case "__Host-_gatehouse":
				if c.MaxAge >= 0 && c.Value != "" {
					sessionCookieOn[x.host] = true
				}
			case "__Host-gatehouse_csrf":
				csrfCookie = true
			}
		}
	}
	for _, h := range []string{"app.localhost", "auth.localhost", "login.acme.localhost"} {
		if !hosts[h] {
			t.Errorf("flow never reached %s", h)
		}
	}
	for _, h := range []string{"app.localhost", "login.acme.localhost"} {
		if !sessionCookieOn[h] {
			t.Errorf("no __Host-_gatehouse session cookie set on %s", h)
		}
	}
	if !csrfCookie {
		t.Error("no __Host-gatehouse_csrf cookie set")
	}
	appURL, _ := url.Parse(g.surl("app.localhost", "/"))
	for _, c := range b.jar.Cookies(appURL) {
		if c.Name == "_gatehouse" {
			t.Errorf("unprefixed session cookie in the jar for the app host")
		}
	}

	// The upstream got the identity, learned the client used HTTPS, and
	// the assertion verifies against the HTTPS issuer's JWKS.
	r := up.last("/dashboard")
	if r == nil {
		t.Fatal("upstream never saw /dashboard")
	}
	for h, want := range map[string]string{
		"X-Gatehouse-Email": "alice@acme.example", "X-Gatehouse-Org-Slug": "acme", "X-Gatehouse-Roles": "admin",
		"X-Forwarded-Proto": "https", "X-Forwarded-Host": "app.localhost:" + g.port,
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("upstream %s = %q, want %q", h, got, want)
		}
	}
	if r.URL.RawQuery != "tab=2" {
		t.Errorf("upstream query = %q", r.URL.RawQuery)
	}
	issuer := "https://auth.localhost:" + g.port
	ctx := oidc.ClientContext(t.Context(), b.client)
	v := oidc.NewVerifier(issuer, oidc.NewRemoteKeySet(ctx, issuer+"/.well-known/jwks.json"),
		&oidc.Config{ClientID: "app.localhost", SupportedSigningAlgs: []string{oidc.ES256}})
	if _, err := v.Verify(ctx, r.Header.Get("X-Gatehouse-Jwt-Assertion")); err != nil {
		t.Errorf("assertion does not verify against %s: %v", issuer, err)
	}

	// Plain HTTP on the TLS port is not served.
	plain := g.browser(t)
	preq, _ := http.NewRequest("GET", g.url("app.localhost", "/plain"), nil)
	presp, err := plain.client.Do(preq)
	if err == nil {
		pbody, _ := io.ReadAll(presp.Body)
		presp.Body.Close()
		if presp.StatusCode != http.StatusBadRequest || strings.Contains(string(pbody), "upstream") {
			t.Errorf("plain HTTP on the TLS port: %d %q, want 400 or a failure", presp.StatusCode, pbody)
		}
	}
	if up.last("/plain") != nil {
		t.Error("plain HTTP request reached the upstream")
	}

	// Host and SNI disagree (a connection made for the login domain,
	// reused for the app, as HTTP/2 coalescing does): 421 on both HTTP/1.1
	// and HTTP/2, and nothing reaches the upstream.
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{DialContext: g.dial, ForceAttemptHTTP2: h2, DisableCompression: true,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "login.acme.localhost", MinVersion: tls.VersionTLS12}}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 15 * time.Second}).Get(g.surl("app.localhost", "/misdirected"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		tr.CloseIdleConnections()
		if resp.StatusCode != http.StatusMisdirectedRequest || resp.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
			t.Errorf("SNI login.acme.localhost, Host app.localhost (h2 %v): %d over %s, want 421", h2, resp.StatusCode, resp.Proto)
		}
	}
	if up.last("/misdirected") != nil {
		t.Error("misdirected request reached the upstream")
	}
}
