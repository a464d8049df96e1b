// Package devmode builds the zero-setup deployment of `gatehouse serve
// --dev`: a fresh data folder, two demo orgs on *.localhost, and a
// built-in upstream that shows the identity it receives and verifies it.
package devmode

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse/gatehouse/certs"
	"github.com/gatehouse/gatehouse/config"
)

// Login is a demo account printed at start.
type Login struct {
	Email, Password, Org, LoginURL string
}

// Client is a demo OIDC client printed at start.
type Client struct {
	ID, Type, Secret, RedirectURI string
}

// Demo clients' addresses: where the examples in examples/apps listen.
const (
	DemoWebRedirect = "http://127.0.0.1:5555/callback"
	DemoSPARedirect = "http://127.0.0.1:5556/"
)

// Setup is what --dev prepared.
type Setup struct {
	Config  *config.Config
	DataDir string
	// CACert is the local CA's certificate to trust, with HTTPS.
	CACert string
	AppURL string
	Logins []Login
	// AdminToken is a platform admin API token, made at start.
	AdminToken string
	// Clients are the demo OIDC clients (a web app, a SPA, a service).
	Clients  []Client
	Upstream *http.Server
}

// New prepares a dev deployment listening on listen (host:port) with ops
// on opsListen. It starts the built-in upstream on a free loopback port;
// the caller shuts it down.
// With https, it serves HTTPS from a local CA kept in caDir (made there
// once; trust its ca.pem).
func New(listen, opsListen string, https bool, caDir string) (*Setup, error) {
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("devmode: listen %q: %w", listen, err)
	}
	dir, err := os.MkdirTemp("", "gatehouse-dev-")
	if err != nil {
		return nil, fmt.Errorf("devmode: data folder: %w", err)
	}
	pw := func() string {
		if p := os.Getenv("GATEHOUSE_DEV_PASSWORD"); p != "" {
			return p
		}
		return strings.ToLower(rand.Text()[:16])
	}
	alice, bob, carol := pw(), pw(), pw()
	scheme := "http"
	var roots *x509.CertPool
	if https {
		scheme = "https"
		ca, _, replaced, err := certs.LoadOrCreateCA(caDir)
		if err != nil {
			return nil, fmt.Errorf("devmode: local CA: %w", err)
		}
		if replaced != nil {
			fmt.Fprintln(os.Stderr, "gatehouse: WARNING:", replaced)
		}
		roots = x509.NewCertPool()
		roots.AddCert(ca)
	}
	public := scheme + "://auth.localhost:" + port

	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("devmode: upstream listen: %w", err)
	}
	up := &http.Server{Handler: Upstream(public, "app.localhost", listen, roots), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = up.Serve(upLn) }()

	cfg := &config.Config{
		PublicURL: public,
		Listen:    listen,
		OpsListen: opsListen,
		Store:     config.Store{Badger: &config.BadgerStore{Path: dir}},
		Routes: []config.Route{{
			ID: "app", Host: "app.localhost", Upstream: "http://" + upLn.Addr().String(),
			PublicPaths: []string{"/healthz"},
		}},
		Orgs: []config.Org{
			{
				Slug: "acme", Name: "Acme Corp", EmailDomains: []string{"acme.example"},
				LoginDomain: "login.acme.localhost", Connection: config.Connection{Type: "password"},
				Users: []config.User{
					{Email: "alice@acme.example", Name: "Alice Admin", Password: alice, Roles: []string{"admin"}},
					{Email: "bob@acme.example", Name: "Bob Member", Password: bob, Roles: []string{"member"}},
				},
			},
			{
				Slug: "globex", Name: "Globex", EmailDomains: []string{"globex.example"},
				Connection: config.Connection{Type: "password"},
				Users: []config.User{
					{Email: "carol@globex.example", Name: "Carol Admin", Password: carol, Roles: []string{"admin"}},
				},
			},
		},
	}
	webSecret, botSecret := rand.Text()+rand.Text(), rand.Text()+rand.Text()
	cfg.Clients = []config.Client{
		{ID: "demo-web", Name: "Demo web app", Type: config.ClientWeb, Secret: webSecret, RedirectURIs: []string{DemoWebRedirect},
			PostLogoutRedirectURIs: []string{strings.TrimSuffix(DemoWebRedirect, "callback")}},
		{ID: "demo-spa", Name: "Demo single-page app", Type: config.ClientSPA, RedirectURIs: []string{DemoSPARedirect},
			PostLogoutRedirectURIs: []string{DemoSPARedirect}},
		{ID: "demo-service", Name: "Demo service of Acme", Type: config.ClientMachine, Secret: botSecret, Org: "acme",
			Audience: "https://api.acme.example", Scopes: []string{"reports.read"}},
	}
	setup := &Setup{DataDir: dir, AppURL: scheme + "://app.localhost:" + port + "/", Upstream: up,
		Clients: []Client{{"demo-web", "web", webSecret, DemoWebRedirect}, {"demo-spa", "spa", "", DemoSPARedirect},
			{"demo-service", "machine (org acme)", botSecret, ""}},
		Logins: []Login{
			{"alice@acme.example", alice, "acme", scheme + "://login.acme.localhost:" + port + "/.gatehouse/login"},
			{"bob@acme.example", bob, "acme", scheme + "://login.acme.localhost:" + port + "/.gatehouse/login"},
			{"carol@globex.example", carol, "globex", public + "/.gatehouse/login"},
		}}
	if https {
		cfg.TLS = &config.TLS{LocalCA: caDir}
		setup.CACert = filepath.Join(caDir, certs.LocalCACert)
	}
	if err := config.Finish(cfg); err != nil {
		return nil, err
	}
	setup.Config = cfg
	return setup, nil
}

// Banner is what --dev prints at start.
func (s *Setup) Banner() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nGatehouse dev mode: nothing here is for production.\n\n")
	fmt.Fprintf(&b, "  App (behind Gatehouse):  %s\n", s.AppURL)
	fmt.Fprintf(&b, "  Shared sign-in:          %s/.gatehouse/login\n", s.Config.PublicURL)
	fmt.Fprintf(&b, "  JWKS:                    %s/.well-known/jwks.json\n", s.Config.PublicURL)
	fmt.Fprintf(&b, "  Health and metrics:      http://%s/healthz  /readyz  /metrics\n", s.Config.OpsListen)
	fmt.Fprintf(&b, "  Data folder:             %s\n", s.DataDir)
	if s.CACert != "" {
		fmt.Fprintf(&b, "  HTTPS from a local CA:   trust %s (curl --cacert; or import it in the browser)\n", s.CACert)
	}
	b.WriteString("\n  Demo logins:\n")
	for _, l := range s.Logins {
		fmt.Fprintf(&b, "    %-22s %-18s org %-7s %s\n", l.Email, l.Password, l.Org, l.LoginURL)
	}
	b.WriteString("\n  OpenID Provider apps (issuer " + s.Config.PublicURL + "):\n")
	for _, c := range s.Clients {
		fmt.Fprintf(&b, "    %-13s %-19s", c.ID, c.Type)
		if c.Secret != "" {
			fmt.Fprintf(&b, " secret %s", c.Secret)
		}
		if c.RedirectURI != "" {
			fmt.Fprintf(&b, " redirect %s", c.RedirectURI)
		}
		b.WriteString("\n")
	}
	if s.AdminToken != "" {
		fmt.Fprintf(&b, "\n  Admin API:               %s/api/v1  (OpenAPI: %s/api/v1/openapi.json)\n", s.Config.PublicURL, s.Config.PublicURL)
		fmt.Fprintf(&b, "  Platform admin token:    %s\n", s.AdminToken)
		fmt.Fprintf(&b, "    curl -H 'Authorization: Bearer %s' %s/api/v1/orgs\n", s.AdminToken, s.Config.PublicURL)
	}
	b.WriteString("\n")
	return b.String()
}

var page = template.Must(template.New("up").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Gatehouse demo upstream</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse}td,th{border:1px solid #999;padding:.3rem .6rem;text-align:left;vertical-align:top}
.ok{color:#0a6b2d;font-weight:700}.bad{color:#a4161a;font-weight:700}code{word-break:break-all}</style></head>
<body><main><h1>Hello{{with .Email}}, {{.}}{{end}}</h1>
<p>This page is the demo upstream application. It shows what Gatehouse forwarded.</p>
<h2>Signed assertion</h2>
{{if .Verified}}<p class="ok">Verified against {{.JWKS}}.</p>{{else}}<p class="bad">Not verified: {{.VerifyError}}</p>{{end}}
{{with .Claims}}<pre>{{.}}</pre>{{end}}
<h2>Identity headers</h2><table><tr><th>Header</th><th>Value</th></tr>
{{range .Headers}}<tr><td>{{index . 0}}</td><td><code>{{index . 1}}</code></td></tr>{{end}}</table>
<p><a href="/.gatehouse/logout">Sign out</a></p></main></body></html>`))

// Upstream is the demo app: it verifies X-Gatehouse-Jwt-Assertion with
// go-oidc against Gatehouse's JWKS, the way a real upstream would.
// gatehouseAddr is where *.localhost names are dialed, so the demo works
// even where the system resolver does not map them to loopback.
func Upstream(issuer, audience, gatehouseAddr string, roots *x509.CertPool) http.Handler {
	dial := &net.Dialer{Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if h, _, _ := net.SplitHostPort(addr); h == "localhost" || strings.HasSuffix(h, ".localhost") {
				addr = gatehouseAddr
			}
			return dial.DialContext(ctx, network, addr)
		},
	}}
	jwks := issuer + "/.well-known/jwks.json"
	keySet := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), client), jwks)
	verifier := oidc.NewVerifier(issuer, keySet, &oidc.Config{ClientID: audience, SupportedSigningAlgs: []string{oidc.ES256, oidc.RS256, oidc.EdDSA}})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		data := struct {
			Email, JWKS, VerifyError, Claims string
			Verified                         bool
			Headers                          [][2]string
		}{Email: r.Header.Get("X-Gatehouse-Email"), JWKS: jwks}
		for k, v := range r.Header {
			if strings.HasPrefix(k, "X-Gatehouse-") {
				data.Headers = append(data.Headers, [2]string{k, strings.Join(v, ", ")})
			}
		}
		sort.Slice(data.Headers, func(i, j int) bool { return data.Headers[i][0] < data.Headers[j][0] })
		if tok := r.Header.Get("X-Gatehouse-Jwt-Assertion"); tok == "" {
			data.VerifyError = "no assertion received"
		} else if _, err := verifier.Verify(r.Context(), tok); err != nil {
			data.VerifyError = err.Error()
		} else {
			data.Verified = true
			if parts := strings.Split(tok, "."); len(parts) == 3 {
				if raw, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
					var v any
					if json.Unmarshal(raw, &v) == nil {
						pretty, _ := json.MarshalIndent(v, "", "  ")
						data.Claims = string(pretty)
					}
				}
			}
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_ = page.Execute(w, data)
	})
}
