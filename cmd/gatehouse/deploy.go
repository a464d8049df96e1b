package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mholt/acmez/v3/acme"

	"github.com/gatehouse/gatehouse/admin"
	"github.com/gatehouse/gatehouse/certs"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/idp/protocols"
	"github.com/gatehouse/gatehouse/idp/provider"
	"github.com/gatehouse/gatehouse/idp/saml"
	"github.com/gatehouse/gatehouse/idp/signing"
	"github.com/gatehouse/gatehouse/internal/apply"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/connlimit"
	"github.com/gatehouse/gatehouse/internal/mailer"
	"github.com/gatehouse/gatehouse/internal/outbox"
	"github.com/gatehouse/gatehouse/internal/sms"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// deployOptions are process-level settings that are not part of the
// config file.
type deployOptions struct {
	Logger *slog.Logger
	// Ready, if set, is called with the bound addresses once both
	// listeners accept connections.
	Ready func(proxyAddr, opsAddr string)
	// ConfigFile names the config file (in the admin API's answers about
	// objects it declares).
	ConfigFile string
	// AdminToken, if set (dev mode), gets a platform admin API token made
	// at start.
	AdminToken func(secret string)
}

// deployment is one running Gatehouse, assembled a service at a time
// (store, sign-in, policies, proxy, TLS, listeners), the way Pomerium
// assembles its services. Each step adds what the next ones use.
type deployment struct {
	cfg     *config.Config
	opts    deployOptions
	log     *slog.Logger
	pub     *url.URL
	metrics *telemetry.Metrics
	// cleanup runs at exit, last added first.
	cleanup []func()

	st       store.Store
	csrfKey  []byte
	keys     *signing.Manager
	sessions *session.Manager
	orgs     *idp.Directory
	router   *proxy.Router
	ips      *clientip.Resolver
	login    *idp.Handler
	provider *provider.Provider
	conns    *idp.Connections
	rego     *policy.Rego
	policies *policyLoader
	brand    web.BlobSource
	handler  http.Handler
	// mail is the email outbox (nil: no email).
	mail *outbox.Outbox
	// texts is the SMS outbox (nil without sms).
	texts *outbox.Outbox

	tlsConf *tls.Config
	plain   http.Handler // the plain-HTTP listener's, with tls.http_listen
}

// deploy serves cfg until ctx is cancelled, then drains in-flight
// requests for up to server.shutdown_timeout.
func deploy(ctx context.Context, cfg *config.Config, opts deployOptions) error {
	d := &deployment{cfg: cfg, log: opts.Logger, metrics: telemetry.New(), opts: opts}
	if d.log == nil {
		d.log = slog.Default()
	}
	defer func() {
		for i := len(d.cleanup) - 1; i >= 0; i-- {
			d.cleanup[i]()
		}
	}()
	var err error
	if d.pub, err = url.Parse(cfg.PublicURL); err != nil {
		return fmt.Errorf("server: public_url: %w", err)
	}
	for _, w := range cfg.Warnings {
		d.log.Warn("config: "+w.Msg, "key", w.Path, "line", w.Line)
	}
	for _, step := range []func(context.Context) error{d.openStore, d.signIn, d.loadPolicies, d.proxy, d.serveTLS} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return d.listen(ctx, opts.Ready)
}

// openStore opens the store and applies the orgs the config declares.
func (d *deployment) openStore(ctx context.Context) error {
	st, err := openStore(ctx, d.cfg.Store, d.log, d.metrics.Registerer())
	if err != nil {
		return fmt.Errorf("server: open store: %w", err)
	}
	d.st = st
	d.cleanup = append(d.cleanup, func() { st.Close() })
	if err := apply.Orgs(ctx, st, d.cfg.Orgs, time.Now(), d.log); err != nil {
		return err
	}
	if err := apply.PlatformAdmins(ctx, st, d.cfg.Admin.PlatformAdmins, time.Now()); err != nil {
		return err
	}
	if d.opts.AdminToken != nil {
		t, err := admin.MintToken(ctx, st, "", store.RolePlatformAdmin, "dev mode", "", time.Now(), 24*time.Hour)
		if err != nil {
			return err
		}
		d.opts.AdminToken(t.Secret)
	}
	return nil
}

// signIn builds sessions, signing keys, the org directory, routes and
// the sign-in handler with its connections.
func (d *deployment) signIn(ctx context.Context) error {
	cfg, st, log := d.cfg, d.st, d.log
	sessKey, err := store.Secret32(ctx, st, "session-key")
	if err != nil {
		return err
	}
	if d.csrfKey, err = store.Secret32(ctx, st, "csrf-key"); err != nil {
		return err
	}
	d.keys, err = signing.New(ctx, st, signing.Options{
		Algorithm: cfg.Signing.Algorithm, RotationPeriod: cfg.Signing.RotationPeriod,
		MaxTokenLifetime: maxTokenLifetime(cfg), Logger: log,
	})
	if err != nil {
		return err
	}
	d.sessions, err = session.New(st, sessKey, session.Options{
		CookieName: cfg.Session.CookieName, Lifetime: cfg.Session.Lifetime,
		IdleTimeout: cfg.Session.IdleTimeout, RecheckInterval: cfg.Session.RevocationCheck, Logger: log,
		// Apps that hold tokens of an ended session hear of it.
		Revoked: func(ctx context.Context, sid string) { d.provider.SessionEnded(ctx, sid) },
		// Each org's MFA and session rules, as the directory has them now
		// (it is built next, before anything is served).
		OrgRules: func(orgID string) session.OrgRules {
			if d.orgs == nil {
				return session.OrgRules{}
			}
			return d.orgs.Rules(orgID)
		},
	})
	if err != nil {
		return err
	}
	if d.orgs, err = idp.NewDirectory(ctx, st, log); err != nil {
		return err
	}
	if cfg.Domains.Verify {
		// Until their DNS records prove them, orgs' domains do not route,
		// get certificates or take part in home-realm discovery.
		d.orgs.RequireVerified()
		if err := d.orgs.Reload(ctx); err != nil {
			return err
		}
	}
	if d.router, err = proxy.NewRouter(cfg.Routes); err != nil {
		return err
	}
	if d.ips, err = clientip.New(cfg.TrustedProxies); err != nil {
		return err
	}
	saml.SetClockSkew(cfg.Login.SAMLClockSkew)
	// Each protocol is in idp/protocols' table; idp imports none by name.
	var public *http.Client
	if !cfg.Admin.AllowPrivateNetworks {
		public = connection.NewPublicHTTPClient()
	}
	d.conns = idp.NewConnections(protocols.Factories(), connection.Deps{Store: st, HTTPClient: connection.NewHTTPClient(), PublicHTTPClient: public, Logger: log,
		SignInURL: url.URL{Scheme: d.pub.Scheme, Host: d.pub.Host}, KeyRotation: cfg.Login.SAMLKeyRotation})
	var mail func(context.Context, string, notify.Message) error
	if e := cfg.Email; e != nil {
		mc := mailer.Config{Host: e.SMTP.Host, Port: e.SMTP.Port, Username: e.SMTP.Username, Password: e.SMTP.Password, TLS: e.SMTP.TLS, From: e.From}
		if e.SMTP.CAFile != "" {
			pem, err := os.ReadFile(e.SMTP.CAFile)
			if err != nil {
				return fmt.Errorf("server: email.smtp.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("server: email.smtp.ca_file %s: no PEM certificate", e.SMTP.CAFile)
			}
			mc.TLSConfig = &tls.Config{RootCAs: pool, ServerName: e.SMTP.Host, MinVersion: tls.VersionTLS12}
		}
		sender, err := mailer.New(mc)
		if err != nil {
			return err
		}
		mail = sender.Send
		perHour, perDay := e.Limits()
		d.mail = outbox.New(outbox.Options{Store: st, Name: "mail", Logger: log, PerOrgHour: perHour, PerOrgDay: perDay,
			Deliver: func(ctx context.Context, it outbox.Item) error {
				var m notify.Message
				if err := json.Unmarshal(it.Payload, &m); err != nil {
					return fmt.Errorf("corrupt message: %w", err)
				}
				return sender.Send(ctx, it.To, m)
			},
			Done: func(ctx context.Context, it outbox.Item, err error) {
				e := store.AuditEvent{Time: time.Now(), OrgID: it.OrgID, Actor: "gatehouse", Action: "email.sent", Target: it.To, Outcome: "success",
					Details: map[string]string{"kind": it.Kind, "attempts": strconv.Itoa(it.Attempts + 1)}}
				if err != nil {
					e.Outcome, e.Details["error"] = "failure", err.Error()
				}
				if aerr := st.AppendAudit(context.WithoutCancel(ctx), e); aerr != nil {
					log.Warn("email: audit write failed", "err", aerr)
				}
			}})
	}
	if sc := cfg.SMS; sc != nil {
		key, err := config.WebhookKey(sc.Webhook.Secret)
		if err != nil {
			return fmt.Errorf("server: sms.webhook.secret %w", err)
		}
		sender, err := sms.New(sms.Config{URL: sc.Webhook.URL, Key: key, Timeout: sc.Webhook.Timeout})
		if err != nil {
			return err
		}
		perHour, perDay := sc.Limits()
		d.texts = outbox.New(outbox.Options{Store: st, Name: "sms", Logger: log, PerOrgHour: perHour, PerOrgDay: perDay,
			Deliver: func(ctx context.Context, it outbox.Item) error {
				var m sms.Message
				if err := json.Unmarshal(it.Payload, &m); err != nil {
					return fmt.Errorf("corrupt message: %w: %w", err, outbox.ErrPermanent)
				}
				m.ID = it.ID // the same across retries: the receiver's idempotency key
				err := sender.Send(ctx, m)
				var se *sms.StatusError
				if errors.As(err, &se) && se.Body != "" {
					log.Info("sms: the webhook's answer", "org", it.OrgID, "status", se.Code, "body", se.Body)
				}
				if errors.Is(err, sms.ErrRefused) {
					return fmt.Errorf("%w: %w", err, outbox.ErrPermanent)
				}
				return err
			},
			Done: func(ctx context.Context, it outbox.Item, err error) {
				e := store.AuditEvent{Time: time.Now(), OrgID: it.OrgID, Actor: "gatehouse", Action: "sms.sent", Target: it.To, Outcome: "success",
					Details: map[string]string{"kind": it.Kind, "attempts": strconv.Itoa(it.Attempts + 1)}}
				if err != nil {
					e.Outcome, e.Details["error"] = "failure", err.Error()
				}
				if aerr := st.AppendAudit(context.WithoutCancel(ctx), e); aerr != nil {
					log.Warn("sms: audit write failed", "err", aerr)
				}
			}})
	}
	var queue func(context.Context, string, string, string, notify.Message) error
	if d.mail != nil {
		queue = d.queueMail
	}
	d.login = idp.New(idp.Options{Mail: mail, Queue: queue,
		Store: st, Sessions: d.sessions, Orgs: d.orgs, Connections: d.conns, PublicURL: d.pub, Serves: d.serves, RouteHost: d.router.ServesHost, ClientIP: d.ips,
		Metrics: d.metrics, Logger: log, CSRFKey: d.csrfKey, SetupMetadata: saml.SetupMetadata,
		LogoutReturn:    func(ctx context.Context, handle string) string { return d.provider.LogoutReturn(ctx, handle) },
		SharedThrottles: cfg.Store.Postgres != nil, // several nodes share the store
		MaxFailures:     cfg.Login.MaxFailures, FailureWindow: cfg.Login.FailureWindow,
		MaxFailuresPerAddress: cfg.Login.MaxFailuresPerAddress,
	})
	key, err := store.Secret32(ctx, st, "oidc-provider-key")
	if err != nil {
		return err
	}
	d.provider, err = provider.New(provider.Options{Issuer: d.pub, Store: st, Keys: d.keys, Sessions: d.sessions, Orgs: d.orgs,
		SignIn: d.login.SignInURL, Clients: cfg.Clients, Key: key, Logger: log, Tokens: tokenPolicy{d},
		ReloadInterval: min(cfg.Policy.ReloadInterval, 10*time.Second)})
	if err != nil {
		return err
	}
	return d.provider.Reload(ctx)
}

// maxTokenLifetime is the longest life of anything the workspace keys
// sign: a retired key stays published that long. Apps the admin API
// registers may live up to the longest token lifetimes a client may have.
func maxTokenLifetime(cfg *config.Config) time.Duration {
	return max(cfg.Signing.AssertionLifetime, config.MaxAccessTokenLifetime, config.MaxIDTokenLifetime)
}

// isLoginHost reports whether host is the public host or an org's login
// domain: it serves sign-in pages.
func (d *deployment) isLoginHost(host string) bool {
	_, ok := d.orgs.ByLoginHost(host)
	return ok || host == strings.ToLower(d.pub.Hostname())
}

// serves reports whether Gatehouse serves host at all.
func (d *deployment) serves(host string) bool {
	return d.isLoginHost(host) || d.router.ServesHost(host)
}

// loadPolicies compiles the policies (Gatehouse does not start without
// them) and opens the decision log.
func (d *deployment) loadPolicies(ctx context.Context) error {
	cfg := d.cfg
	var decisionFile io.Writer
	if f := cfg.Policy.DecisionLog.File; f != "" {
		df, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return fmt.Errorf("server: decision log: %w", err)
		}
		d.cleanup = append(d.cleanup, func() { df.Close() })
		decisionFile = df
	}
	d.rego = policy.NewRego(cfg.Policy.Timeout, policy.NewDecisionLog(d.log, decisionFile, cfg.Policy.DecisionLog.SampleAllows, d.metrics.Registerer()))
	d.policies = &policyLoader{cfg: cfg, st: d.st, orgs: d.orgs, engine: d.rego, log: d.log}
	return d.policies.reload(ctx, true)
}

// proxy builds the request path.
func (d *deployment) proxy(context.Context) error {
	cfg := d.cfg
	issuer := strings.TrimSuffix(d.pub.String(), "/")
	d.brand = apply.BrandAssets(d.st)
	api := d.adminAPI()
	d.handler = proxy.New(proxy.Options{BrandAssets: d.brand,
		Router: d.router, Sessions: d.sessions, Policy: policy.Chain{policy.RouteOrgs{}, d.rego}, Orgs: d.orgs.ByID,
		DecisionCacheTTL: *cfg.Policy.DecisionCacheTTL, Signer: d.keys, Login: d.login,
		Issuer: issuer, IsLoginHost: d.isLoginHost, WellKnown: d.keys.WellKnown(issuer, d.provider.Metadata), OIDC: d.provider, API: api, Portal: d.portal(api),
		ClientIP: d.ips, Metrics: d.metrics, Logger: d.log, AssertionLifetime: cfg.Signing.AssertionLifetime,
		MinBodyRate: max(cfg.Server.MinBodyRate, 0), BodyGrace: cfg.Server.ReadHeaderTimeout,
	})
	return nil
}

// auditStream delivers audit events to the orgs' webhooks and the
// platform's sink, from one node at a time.
func (d *deployment) auditStream() *admin.Streamer {
	var platform *admin.Sink
	if w := d.cfg.Admin.AuditWebhook; w != nil {
		platform = &admin.Sink{Key: admin.PlatformSinkKey(w.URL), URL: w.URL, Secret: w.Secret}
	}
	host, _ := os.Hostname()
	return admin.NewStreamer(admin.StreamOptions{Store: d.st, Platform: platform, AllowPrivateNetworks: d.cfg.Admin.AllowPrivateNetworks,
		Node: host + "/" + strconv.Itoa(os.Getpid()) + "/" + token.RandomID()[:8], Logger: d.log, Registerer: d.metrics.Registerer()})
}

// portal is the admin portal, a client of api, on login hosts.
func (d *deployment) portal(api *admin.API) http.Handler {
	return api.Portal(admin.PortalOptions{CSRFKey: d.csrfKey, Brand: d.login.Brand, LoginURL: d.login.HostLoginURL,
		HostOrg: func(host string) (store.Org, bool) {
			o, ok := d.orgs.ByLoginHost(host)
			if !ok || host == strings.ToLower(d.pub.Hostname()) {
				return store.Org{}, false
			}
			return *o, true
		},
		SignInPreview: func(o *store.Org) string { return d.login.LoginURL(o.Slug, "", "") },
		TestSignIn:    d.login.BeginTest, Trace: d.login.Trace, SpendTrace: d.login.SpendTrace})
}

// adminAPI is the admin API; org changes it makes reach the directory
// (routing, sign-in) at once.
func (d *deployment) adminAPI() *admin.API {
	return admin.New(admin.Options{Store: d.st, Sessions: d.sessions, ClientIP: d.ips, ConfigFile: d.opts.ConfigFile, Logger: d.log,
		WebhooksAllowPrivate: d.cfg.Admin.AllowPrivateNetworks, PublicURL: d.pub, Clients: d.cfg.Clients,
		SessionLifetime: d.cfg.Session.Lifetime, SessionIdleTimeout: d.cfg.Session.IdleTimeout,
		TestConnection:  func(ctx context.Context, o store.Org) error { return d.conns.Test(ctx, &o) },
		InviteURL:       d.login.InviteURL,
		EmailInvitation: d.emailInvitation,
		TextInvitation:  d.textInvitation(),
		DomainsVerify:   d.cfg.Domains.Verify, CNAMETarget: d.cfg.Domains.CNAMETarget,
		ReservedHost: func(host string) bool {
			return host == strings.ToLower(d.pub.Hostname()) || d.router.ServesHost(host)
		},
		OrgsChanged: func(ctx context.Context) {
			if err := d.orgs.Reload(ctx); err != nil {
				d.log.Warn("admin: org directory reload failed; the periodic reload will catch up", "err", err)
			}
			d.clientsChanged(ctx) // a per-org app follows its org's slug
		},
		ClientsChanged: d.clientsChanged})
}

// emailInvitation queues an invitation's message (the org's invitation
// template) in the email outbox; nil without email.
func (d *deployment) emailInvitation(ctx context.Context, org store.Org, inv store.Invitation, link string) error {
	if d.mail == nil {
		return nil
	}
	m, err := d.login.Message(&org, notify.Invitation, notify.Fields{User: notify.User{Name: inv.Name, Email: inv.Email}, Link: link,
		Expires: humanDuration(inv.ExpiresAt.Sub(inv.SentAt))})
	if err != nil {
		return err
	}
	return d.queueMail(ctx, org.ID, string(notify.Invitation), inv.Email, m)
}

// textInvitation texts an invitation's link to its phone (the SMS part
// of the org's invitation message) through the SMS outbox; nil without
// sms.
func (d *deployment) textInvitation() func(ctx context.Context, org store.Org, inv store.Invitation, link string) error {
	if d.texts == nil {
		return nil
	}
	return func(ctx context.Context, org store.Org, inv store.Invitation, link string) error {
		m, err := d.login.Message(&org, notify.Invitation, notify.Fields{User: notify.User{Name: inv.Name, Email: inv.Email}, Link: link,
			Expires: humanDuration(inv.ExpiresAt.Sub(inv.SentAt))})
		if err != nil {
			return err
		}
		b, err := json.Marshal(sms.Message{To: inv.Phone, Text: m.SMS, Org: org.Slug, Kind: string(notify.Invitation)})
		if err != nil {
			return err
		}
		return d.texts.Add(ctx, outbox.Item{OrgID: org.ID, Budget: d.budget(org.ID, string(notify.Invitation)), Kind: string(notify.Invitation), To: inv.Phone, Payload: b})
	}
}

// budget is the sending budget an org's message counts against: its
// tree's top org's (sub-orgs, which org admins make at will, bring no
// budget of their own), one for what admins send (invitations) and one
// for what anyone can trigger (password resets, alerts), so that a flood
// of reset requests cannot stop an org's invitations.
func (d *deployment) budget(orgID, kind string) string {
	root := orgID
	for range 32 {
		o, ok := d.orgs.ByID(root)
		if !ok || o.ParentID == "" {
			break
		}
		root = o.ParentID
	}
	if kind == string(notify.Invitation) {
		return root + "/admins"
	}
	return root + "/people"
}

// queueMail puts a message in the email outbox.
func (d *deployment) queueMail(ctx context.Context, orgID, kind, to string, m notify.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return d.mail.Add(ctx, outbox.Item{OrgID: orgID, Budget: d.budget(orgID, kind), Kind: kind, To: to, Payload: b})
}

// humanDuration says d in days or hours, as a message does ("7 days").
func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	case d >= 2*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	}
	return strconv.Itoa(int(d/time.Minute)) + " minutes"
}

// clientsChanged loads the apps again after the admin API changed one.
func (d *deployment) clientsChanged(ctx context.Context) {
	if err := d.provider.Reload(ctx); err != nil {
		d.log.Warn("admin: app reload failed; the periodic reload will catch up", "err", err)
	}
}

// serveTLS sets up certificates: a local development CA, ACME, or files.
func (d *deployment) serveTLS(ctx context.Context) error {
	cfg, log := d.cfg, d.log
	if cfg.TLS == nil {
		return nil
	}
	// Handshakes for names not served: one line a minute, however many
	// scanners probe (the TLS listener's error log leaves them out).
	refusals := certs.NewRefusalLog(log, time.Minute)
	d.cleanup = append(d.cleanup, func() { refusals.Close() })
	switch {
	case cfg.TLS.LocalCA != "":
		ca, err := certs.NewLocalCA(cfg.TLS.LocalCA, decider(cfg, d.pub, d.orgs).Decide)
		if err != nil {
			return err
		}
		ca.Refusals = refusals
		log.Warn("gatehouse: serving certificates from a local development CA; clients must trust it", "ca", filepath.Join(cfg.TLS.LocalCA, certs.LocalCACert))
		d.tlsConf = ca.TLSConfig()
		d.plain = certs.RedirectToHTTPS(portOf(cfg.Listen), d.serves)
	case cfg.TLS.ACME != nil:
		am, err := newACME(cfg, d.st, d.pub, d.orgs, refusals, d.metrics, log)
		if err != nil {
			return err
		}
		// Renewals run through the drain and end before the store closes.
		renewals, stopRenewals := context.WithCancel(context.WithoutCancel(ctx))
		var renewing sync.WaitGroup
		renewing.Go(func() { am.Run(renewals) })
		d.cleanup = append(d.cleanup, am.Stop, renewing.Wait, stopRenewals)
		d.tlsConf = am.TLSConfig()
		d.plain = am.HTTPHandler(portOf(cfg.Listen))
	default:
		var err error
		if d.tlsConf, err = certs.StaticConfig(cfg.TLS.CertFile, cfg.TLS.KeyFile); err != nil {
			return err
		}
		d.plain = certs.RedirectToHTTPS(portOf(cfg.Listen), d.serves)
	}
	return nil
}

// listen binds the listeners (with their connection limits), starts the
// background loops, serves until ctx ends, and drains.
func (d *deployment) listen(ctx context.Context, ready func(proxyAddr, opsAddr string)) error {
	cfg, log := d.cfg, d.log
	srv := &http.Server{
		Handler:           d.handler,
		TLSConfig:         d.tlsConf,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		ReadTimeout:       cfg.Server.ReadTimeout,
		WriteTimeout:      cfg.Server.WriteTimeout,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    cfg.Server.MaxHeaderBytes,
		ErrorLog:          certs.TLSErrorLog(log),
	}
	var draining atomic.Bool
	ops := &http.Server{Handler: opsMux(d.st, d.metrics, &draining, d.login.NotificationsPreview(d.brand), cfg.Domains.CNAMETarget, cfg.Server.Pprof), ReadHeaderTimeout: 5 * time.Second}

	nofile := connlimit.RaiseFileLimit()
	maxConns := cfg.Server.MaxConnections
	if maxConns == 0 {
		maxConns = connlimit.DefaultMax(nofile)
	}
	log.Info("gatehouse: connection limits", "open_files", nofile, "max_connections", maxConns, "max_connections_per_client", cfg.Server.MaxConnectionsPerClient)
	connMetrics := connlimit.NewMetrics(d.metrics.Registerer())
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	limited := connMetrics.Limit(ln, "main", connlimit.Options{Max: maxConns, PerClient: cfg.Server.MaxConnectionsPerClient, Exempt: d.ips.IsTrusted})
	ln, srv.ConnState = limited, limited.ConnState
	opsLn, err := net.Listen("tcp", cfg.OpsListen)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: ops listen: %w", err)
	}
	// The ops listener has its own small budget: probes and scrapes keep
	// answering however many connections the main listener holds.
	opsLimited := connMetrics.Limit(opsLn, "ops", connlimit.Options{Max: opsMaxConnections})
	opsLn, ops.ConnState = opsLimited, opsLimited.ConnState
	var plainSrv *http.Server
	var plainLn net.Listener
	if d.plain != nil && cfg.TLS.HTTPListen != "" {
		if plainLn, err = net.Listen("tcp", cfg.TLS.HTTPListen); err != nil {
			ln.Close()
			opsLn.Close()
			return fmt.Errorf("server: http listen: %w", err)
		}
		plainSrv = &http.Server{Handler: d.plain, ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout, IdleTimeout: cfg.Server.IdleTimeout,
			MaxHeaderBytes: 16 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		pl := connMetrics.Limit(plainLn, "http", connlimit.Options{Max: max(maxConns/4, 64), PerClient: cfg.Server.MaxConnectionsPerClient, Exempt: d.ips.IsTrusted})
		plainLn, plainSrv.ConnState = pl, pl.ConnState
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	go d.keys.Run(bg, time.Minute)
	go d.sessions.Run(bg)
	go d.provider.Run(bg)
	if d.texts != nil {
		go d.texts.Run(bg)
	}
	if d.mail != nil {
		go d.mail.Run(bg)
	}
	if cfg.Domains.Verify {
		dc := certs.NewDomainChecker(certs.DomainCheckerOptions{Store: d.st, Orgs: d.orgs, Recheck: cfg.Domains.Recheck, Logger: log, Metrics: d.metrics,
			Verifier: &certs.Verifier{Server: cfg.Domains.Resolver, CNAMETarget: cfg.Domains.CNAMETarget}})
		go dc.Run(bg)
	}
	// One loop reloads the org directory, then the policies that read it:
	// periodically, and at once when another node changes an org (a
	// store that tells of changes: PostgreSQL).
	orgKick := make(chan struct{}, 1)
	go d.policies.run(bg, min(cfg.Policy.ReloadInterval, 10*time.Second), orgKick)
	if w, ok := d.st.(store.Watcher); ok {
		go w.Watch(bg, func(c store.Change) {
			d.sessions.Recheck(c)
			if c.Kind == "org" || c.Kind == "resync" {
				select {
				case orgKick <- struct{}{}:
				default:
				}
			}
			if c.Kind == "app" || c.Kind == "resync" {
				d.provider.AppsChanged()
			}
			if c.Kind == "key" || c.Kind == "resync" {
				d.keys.Changed()
			}
		})
	}
	go d.auditStream().Run(bg)

	errc := make(chan error, 3)
	if plainSrv != nil {
		go func() { errc <- plainSrv.Serve(plainLn) }()
	}
	go func() {
		var err error
		if d.tlsConf != nil {
			err = srv.ServeTLS(ln, "", "")
		} else {
			err = srv.Serve(ln)
		}
		errc <- err
	}()
	go func() { errc <- ops.Serve(opsLn) }()
	log.Info("gatehouse: serving", "listen", ln.Addr().String(), "ops", opsLn.Addr().String(),
		"public_url", cfg.PublicURL, "tls", d.tlsConf != nil, "routes", len(cfg.Routes), "orgs", len(cfg.Orgs))
	if ready != nil {
		ready(ln.Addr().String(), opsLn.Addr().String())
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

// opsMaxConnections bounds the ops listener (probes, scrapes, previews).
const opsMaxConnections = 256

func opsMux(st store.Store, m *telemetry.Metrics, draining *atomic.Bool, notifications http.Handler, cnameTarget string, profiles bool) http.Handler {
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
	mux.Handle("GET /audit/verify", auditVerifyHandler(st))
	if profiles {
		// For the on-call engineer: CPU, heap, goroutines of the running
		// node (server.pprof), on the private listener only.
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
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
	if cfg.Store.Postgres != nil {
		o.SharedBudget = st // several nodes share one budget per org
	}
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

// tokenPolicy reaches the policy engine, which is loaded after the
// sign-in side is built.
type tokenPolicy struct{ d *deployment }

func (t tokenPolicy) DecideToken(ctx context.Context, in *policy.TokenInput) policy.Decision {
	if t.d.rego == nil {
		return policy.Decision{Reasons: []string{"policies are not loaded yet"}}
	}
	return t.d.rego.DecideToken(ctx, in)
}
