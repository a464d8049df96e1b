// Package server assembles a Gatehouse deployment from its config and runs
// it until its context ends.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/gatehouse/gatehouse/certs"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/oidc"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/idp/saml"
	"github.com/gatehouse/gatehouse/idp/signing"
	"github.com/gatehouse/gatehouse/internal/apply"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/connlimit"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
)

// Options are process-level settings that are not part of the config file.
type Options struct {
	Logger *slog.Logger
	// Ready, if set, is called with the bound addresses once both
	// listeners accept connections.
	Ready func(proxyAddr, opsAddr string)
}

// Run serves cfg until ctx is cancelled, then drains in-flight requests
// for up to server.shutdown_timeout.
func Run(ctx context.Context, cfg *config.Config, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	pub, err := url.Parse(cfg.PublicURL)
	if err != nil {
		return fmt.Errorf("server: public_url: %w", err)
	}
	publicHost := strings.ToLower(pub.Hostname())
	for _, w := range cfg.Warnings {
		log.Warn("config: "+w.Msg, "key", w.Path, "line", w.Line)
	}

	st, err := badgerstore.Open(cfg.Store.Badger.Path, badgerstore.WithLogger(log))
	if err != nil {
		return fmt.Errorf("server: open store: %w", err)
	}
	defer st.Close()

	now := time.Now()
	if err := apply.Orgs(ctx, st, cfg.Orgs, now, log); err != nil {
		return err
	}
	sessKey, err := store.Secret32(ctx, st, "session-key")
	if err != nil {
		return err
	}
	csrfKey, err := store.Secret32(ctx, st, "csrf-key")
	if err != nil {
		return err
	}
	keys, err := signing.New(ctx, st, signing.Options{
		Algorithm: cfg.Signing.Algorithm, RotationPeriod: cfg.Signing.RotationPeriod,
		MaxTokenLifetime: cfg.Signing.AssertionLifetime, Logger: log,
	})
	if err != nil {
		return err
	}
	sessions, err := session.New(st, sessKey, session.Options{
		CookieName: cfg.Session.CookieName, Lifetime: cfg.Session.Lifetime,
		IdleTimeout: cfg.Session.IdleTimeout, RecheckInterval: cfg.Session.RevocationCheck, Logger: log,
	})
	if err != nil {
		return err
	}
	orgs, err := idp.NewDirectory(ctx, st, log)
	if err != nil {
		return err
	}
	if cfg.Domains.Verify {
		// Until their DNS records prove them, orgs' domains do not route,
		// get certificates or take part in home-realm discovery.
		orgs.RequireVerified()
		if err := orgs.Reload(ctx); err != nil {
			return err
		}
	}
	router, err := proxy.NewRouter(cfg.Routes)
	if err != nil {
		return err
	}
	ips, err := clientip.New(cfg.TrustedProxies)
	if err != nil {
		return err
	}
	metrics := telemetry.New()
	isLoginHost := func(host string) bool {
		_, ok := orgs.ByLoginHost(host)
		return ok || host == publicHost
	}
	serves := func(host string) bool { return isLoginHost(host) || router.ServesHost(host) }
	saml.SetClockSkew(cfg.Login.SAMLClockSkew)
	// Each protocol registers here; idp imports none by name.
	conns := idp.NewConnections(map[string]connection.Factory{
		password.Type: password.Open,
		oidc.Type:     oidc.Open,
		saml.Type:     saml.Open,
	}, connection.Deps{Store: st, HTTPClient: connection.NewHTTPClient(), Logger: log,
		SignInURL: url.URL{Scheme: pub.Scheme, Host: pub.Host}, KeyRotation: cfg.Login.SAMLKeyRotation})
	login := idp.New(idp.Options{
		Store: st, Sessions: sessions, Orgs: orgs, Connections: conns, PublicURL: pub, Serves: serves, RouteHost: router.ServesHost, ClientIP: ips,
		Metrics: metrics, Logger: log, CSRFKey: csrfKey,
		MaxFailures: cfg.Login.MaxFailures, FailureWindow: cfg.Login.FailureWindow,
		MaxFailuresPerAddress: cfg.Login.MaxFailuresPerAddress,
	})
	var decisionFile io.Writer
	if f := cfg.Policy.DecisionLog.File; f != "" {
		df, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("server: decision log: %w", err)
		}
		defer df.Close()
		decisionFile = df
	}
	rego := policy.NewRego(cfg.Policy.Timeout, policy.NewDecisionLog(log, decisionFile, cfg.Policy.DecisionLog.SampleAllows, metrics.Registerer()))
	policies := &policyLoader{cfg: cfg, st: st, orgs: orgs, engine: rego, log: log}
	if err := policies.reload(ctx, true); err != nil {
		return err
	}
	issuer := strings.TrimSuffix(pub.String(), "/")
	brand := apply.BrandAssets(st)
	handler := proxy.New(proxy.Options{BrandAssets: brand,
		Router: router, Sessions: sessions, Policy: policy.Chain{policy.RouteOrgs{}, rego}, Orgs: orgs.ByID,
		DecisionCacheTTL: *cfg.Policy.DecisionCacheTTL, Signer: keys, Login: login,
		Issuer: issuer, IsLoginHost: isLoginHost, WellKnown: keys.WellKnown(issuer),
		ClientIP: ips, Metrics: metrics, Logger: log, AssertionLifetime: cfg.Signing.AssertionLifetime,
		MinBodyRate: max(cfg.Server.MinBodyRate, 0), BodyGrace: cfg.Server.ReadHeaderTimeout,
	})

	var tlsConf *tls.Config
	var plain http.Handler // the plain-HTTP listener's, with tls.http_listen
	// Handshakes for names not served: one line a minute, however many
	// scanners probe (the TLS listener's error log leaves them out).
	refusals := certs.NewRefusalLog(log, time.Minute)
	defer refusals.Close()
	switch {
	case cfg.TLS != nil && cfg.TLS.LocalCA != "":
		ca, err := certs.NewLocalCA(cfg.TLS.LocalCA, decider(cfg, pub, orgs).Decide)
		if err != nil {
			return err
		}
		ca.Refusals = refusals
		log.Warn("gatehouse: serving certificates from a local development CA; clients must trust it", "ca", filepath.Join(cfg.TLS.LocalCA, certs.LocalCACert))
		tlsConf = ca.TLSConfig()
		plain = redirectToHTTPS(portOf(cfg.Listen), serves)
	case cfg.TLS != nil && cfg.TLS.ACME != nil:
		am, err := newACME(cfg, st, pub, orgs, refusals, metrics, log)
		if err != nil {
			return err
		}
		defer am.Stop()
		// Renewals run through the drain and end before the store closes.
		renewals, stopRenewals := context.WithCancel(context.WithoutCancel(ctx))
		var renewing sync.WaitGroup
		renewing.Go(func() { am.Run(renewals) })
		defer renewing.Wait()
		defer stopRenewals()
		tlsConf = am.TLSConfig()
		plain = am.HTTPHandler(portOf(cfg.Listen))
	case cfg.TLS != nil:
		if tlsConf, err = certs.StaticConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return err
		}
		plain = redirectToHTTPS(portOf(cfg.Listen), serves)
	}
	srv := &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          certs.TLSErrorLog(log),
	}
	var draining atomic.Bool
	ops := &http.Server{Handler: opsMux(st, metrics, &draining, login.NotificationsPreview(brand), cfg.Domains.CNAMETarget), ReadHeaderTimeout: 5 * time.Second}

	nofile := connlimit.RaiseFileLimit()
	maxConns := cfg.Server.MaxConnections
	if maxConns == 0 {
		maxConns = connlimit.DefaultMax(nofile)
	}
	log.Info("gatehouse: connection limits", "open_files", nofile, "max_connections", maxConns, "max_connections_per_client", cfg.Server.MaxConnectionsPerClient)
	connMetrics := newConnMetrics(metrics)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	limited := connMetrics.limit(ln, "main", connlimit.Options{Max: maxConns, PerClient: cfg.Server.MaxConnectionsPerClient, Exempt: ips.IsTrusted})
	ln, srv.ConnState = limited, limited.ConnState
	opsLn, err := net.Listen("tcp", cfg.OpsListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: ops listen: %w", err)
	}
	// The ops listener has its own small budget: probes and scrapes keep
	// answering however many connections the main listener holds.
	opsLimited := connMetrics.limit(opsLn, "ops", connlimit.Options{Max: opsMaxConnections})
	opsLn, ops.ConnState = opsLimited, opsLimited.ConnState
	var plainSrv *http.Server
	var plainLn net.Listener
	if plain != nil && cfg.TLS.HTTPListen != "" {
		if plainLn, err = net.Listen("tcp", cfg.TLS.HTTPListen); err != nil {
			ln.Close()
			opsLn.Close()
			return fmt.Errorf("server: http listen: %w", err)
		}
		plainSrv = &http.Server{Handler: plain, ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout, IdleTimeout: cfg.Server.IdleTimeout,
			MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		pl := connMetrics.limit(plainLn, "http", connlimit.Options{Max: max(maxConns/4, 64), PerClient: cfg.Server.MaxConnectionsPerClient, Exempt: ips.IsTrusted})
		plainLn, plainSrv.ConnState = pl, pl.ConnState
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	go keys.Run(bg, time.Minute)
	go sessions.Run(bg)
	go orgs.Run(bg, 10*time.Second)
	if cfg.Domains.Verify {
		dc := certs.NewDomainChecker(certs.DomainCheckerOptions{Store: st, Orgs: orgs, Recheck: cfg.Domains.Recheck, Logger: log, Metrics: metrics,
			Verifier: &certs.Verifier{Server: cfg.Domains.Resolver, CNAMETarget: cfg.Domains.CNAMETarget}})
		go dc.Run(bg)
	}
	go policies.run(bg, cfg.Policy.ReloadInterval)

	errc := make(chan error, 3)
	if plainSrv != nil {
		go func() { errc <- plainSrv.Serve(plainLn) }()
	}
	go func() {
		var err error
		if tlsConf != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	go func() { errc <- ops.Serve(opsLn) }()
	log.Info("gatehouse: serving", "listen", ln.Addr().String(), "ops", opsLn.Addr().String(),
		"public_url", cfg.PublicURL, "tls", tlsConf != nil, "routes", len(cfg.Routes), "orgs", len(cfg.Orgs))
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String(), opsLn.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("server: %w", err)
	}
	// Drain: report not-ready, stop accepting, finish in-flight requests.
	draining.Store(true)
	log.Info("gatehouse: shutting down", "timeout", cfg.Server.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	_ = ops.Shutdown(sctx)
	if plainSrv != nil {
		_ = plainSrv.Shutdown(sctx)
	}
	stopBG()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("server: shutdown: %w", err)
	}
	log.Info("gatehouse: stopped")
	return nil
}

func opsMux(st store.Store, m *telemetry.Metrics, draining *atomic.Bool, notifications http.Handler, cnameTarget string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := st.Ping(ctx); err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", m.Handler())
	mux.Handle("GET /domains", certs.DomainsHandler(st, cnameTarget))
	mux.Handle("GET /notifications/{org}/{kind}", notifications)
	return mux
}

// newACME sets up automatic certificates for the public host, the exact
// route hosts and the orgs' login domains.
func newACME(cfg *config.Config, st store.Store, pub *url.URL, orgs *idp.Directory, refusals *certs.RefusalLog, metrics *telemetry.Metrics, log *slog.Logger) (*certs.ACME, error) {
	a := cfg.TLS.ACME
	var roots *x509.CertPool
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("server: tls.acme.ca_root: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("server: tls.acme.ca_root %s: no PEM certificates", a.CARoot)
		}
	}
	d := decider(cfg, pub, orgs)
	o := certs.ACMEOptions{DirectoryURL: a.DirectoryURL, Roots: roots, Email: a.Email, Storage: certs.NewStorage(st),
		Decide: d.Decide, MaxPerOrgPerHour: a.MaxCertsPerOrgPerHour,
		RenewCheckInterval: a.RenewCheckInterval, Refusals: refusals, Metrics: metrics, Logger: log,
		TLSPort: portOf(cfg.Listen), HTTPPort: portOf(cfg.TLS.HTTPListen)}
	if a.EAB != nil {
		o.EAB = &acme.EAB{KeyID: a.EAB.KeyID, MACKey: a.EAB.MACKey}
	}
	for _, ch := range a.Challenges {
		o.HTTP01 = o.HTTP01 || ch == "http-01"
		o.TLSALPN01 = o.TLSALPN01 || ch == "tls-alpn-01"
	}
	return certs.NewACME(o)
}

// decider allows certificates for the public host, exact route hosts and
// the orgs' (verified) login domains. The org is named by its slug, as
// every log line names orgs.
func decider(cfg *config.Config, pub *url.URL, orgs *idp.Directory) *certs.Decider {
	d := &certs.Decider{Public: strings.ToLower(pub.Hostname()), Routes: map[string]bool{},
		OrgOf: func(host string) (string, bool) {
			if o, ok := orgs.ByLoginHost(host); ok {
				return o.Slug, true
			}
			return "", false
		}}
	for _, r := range cfg.Routes {
		if !strings.HasPrefix(r.Host, "*.") {
			d.Routes[strings.ToLower(r.Host)] = true
		}
	}
	return d
}

// portOf is the port of a listen address (0 if none).
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// redirectToHTTPS answers the plain-HTTP listener with static TLS.
func redirectToHTTPS(httpsPort int, serves func(host string) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only names Gatehouse serves: a redirect for any Host would make
		// this listener an open redirector to https://<anything>.
		host := request.Host(r)
		if !serves(host) {
			http.Error(w, "Nothing is served at this address.", http.StatusNotFound)
			return
		}
		if httpsPort != 443 {
			host = net.JoinHostPort(host, strconv.Itoa(httpsPort))
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}
