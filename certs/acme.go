package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
	"golang.org/x/net/idna"

	"github.com/gatehouse/gatehouse/internal/loop"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/store"
)

// ACMEOptions configure automatic certificates.
type ACMEOptions struct {
	// DirectoryURL is the ACME server (Let's Encrypt, its staging, ZeroSSL,
	// a private CA).
	DirectoryURL string
	// Roots, if set, are the CAs trusted for the ACME server's own HTTPS
	// (a private CA); nil means the system roots.
	Roots *x509.CertPool
	Email string
	// EAB is the External Account Binding some CAs require (ZeroSSL).
	EAB *acme.EAB
	// Which challenges to answer. TLS-ALPN-01 is answered on the TLS
	// listener (TLSPort), HTTP-01 on the plain listener (HTTPPort).
	HTTP01, TLSALPN01 bool
	TLSPort, HTTPPort int
	Storage           certmagic.Storage
	// Decide says whether name may have a certificate, and the org it is
	// for ("" for the operator's own hosts): its slug, which budgets are
	// kept by and log lines name. It must be fast: it runs on
	// handshakes for names with no certificate yet.
	Decide func(name string) (org string, ok bool)
	// MaxPerOrgPerHour bounds new certificates per org, so one customer
	// cannot spend the CA's rate limits for everyone (default 20).
	MaxPerOrgPerHour int
	// SharedBudget, if set, counts MaxPerOrgPerHour in this store, shared
	// by every node on it (several nodes on PostgreSQL); nil counts per
	// node. If the store cannot count, the node's own count stands in.
	SharedBudget store.Store
	// RenewCheckInterval is how often the certificates in memory are
	// checked for renewal (default certmagic's, 10 minutes).
	RenewCheckInterval time.Duration
	// Refusals, if set, counts handshakes refused for names not served.
	Refusals *RefusalLog
	// Metrics, if set, records certificate expiry, order outcomes and
	// ACME errors.
	Metrics *telemetry.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// ACME obtains and renews certificates on demand, at the first handshake
// for a name that Decide allows, and keeps them in Storage.
type ACME struct {
	cache  *certmagic.Cache
	cfg    *certmagic.Config
	issuer *certmagic.ACMEIssuer
	o      ACMEOptions

	mu     sync.Mutex
	budget map[string]*window // org → issuances this hour
	fails  map[string]backoff // name → when it may be tried again
	// renewFails backs off renewals that failed (the current certificate
	// keeps serving meanwhile), so a name the CA refuses does not spend
	// its failed-validation limits at every handshake and sweep.
	renewFails map[string]backoff
	// waiting are the handshakes holding for a name's certificate, to
	// end when its order fails (see getCertificate).
	waiting map[string]map[*int]context.CancelFunc
	// lives are the stored certificates' validity, as the renewal sweep
	// last read it (only the sweep's goroutine touches it).
	lives map[string]life
	// renewWait bounds one background renewal (90s).
	renewWait time.Duration
}

type life struct{ notBefore, notAfter time.Time }

// maxObtainWait bounds how long a handshake holds for a new certificate.
const maxObtainWait = 90 * time.Second

type window struct {
	start time.Time
	n     int
}

type backoff struct {
	until time.Time
	wait  time.Duration
}

// ErrNotAllowed is why a handshake for a name Gatehouse does not serve
// gets no certificate.
var ErrNotAllowed = errors.New("certs: no certificate for this name")

// NewACME sets up certmagic with Gatehouse's decision and storage.
func NewACME(o ACMEOptions) (*ACME, error) {
	if o.DirectoryURL == "" || o.Decide == nil || o.Storage == nil {
		return nil, errors.New("certs: ACME needs a directory URL, a decision function and storage")
	}
	if !o.HTTP01 && !o.TLSALPN01 {
		return nil, errors.New("certs: ACME needs at least one of the HTTP-01 and TLS-ALPN-01 challenges")
	}
	if o.MaxPerOrgPerHour <= 0 {
		o.MaxPerOrgPerHour = 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	a := &ACME{o: o, budget: map[string]*window{}, fails: map[string]backoff{}, renewFails: map[string]backoff{}, waiting: map[string]map[*int]context.CancelFunc{}, lives: map[string]life{}, renewWait: 90 * time.Second}
	var cfg *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return cfg, nil },
		RenewCheckInterval: o.RenewCheckInterval,
		Logger:             zap.NewNop(),
	})
	cfg = certmagic.New(cache, certmagic.Config{
		Storage:  o.Storage,
		Logger:   zap.NewNop(),
		OnDemand: &certmagic.OnDemandConfig{DecisionFunc: a.decide},
		OnEvent:  a.event,
	})
	a.issuer = certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA: o.DirectoryURL, Email: o.Email, Agreed: true, ExternalAccount: o.EAB, TrustedRoots: o.Roots,
		DisableHTTPChallenge: !o.HTTP01, DisableTLSALPNChallenge: !o.TLSALPN01,
		// The solvers would listen on these ports themselves; they are
		// Gatehouse's listeners, which answer the challenges.
		AltTLSALPNPort: o.TLSPort, AltHTTPPort: o.HTTPPort,
		Logger: zap.NewNop(),
	})
	cfg.Issuers = []certmagic.Issuer{a.issuer}
	a.cfg, a.cache = cfg, cache
	return a, nil
}

// Stop ends certmagic's maintenance goroutine.
func (a *ACME) Stop() { a.cache.Stop() }

// Run renews certificates in the background until ctx ends, every
// RenewCheckInterval. It reads the stored certificates at once, to
// publish their expiry; the first renewals wait for the first interval,
// so a process restarting in a loop never spends the CA's limits.
func (a *ACME) Run(ctx context.Context) {
	interval := a.o.RenewCheckInterval
	if interval <= 0 {
		interval = 10 * time.Minute
	}
	a.sweep(ctx, false)
	loop.Every(ctx, interval, a.RenewDue)
}

// RenewDue renews the stored certificates that are in their renewal
// window (the last third of their life) for names still served.
// certmagic renews on-demand certificates only at handshakes (its
// maintenance skips them), so without this a name nobody visits for a
// month would expire and its next visitor would wait for a new order.
// Every node sweeps; certmagic's lock, and its re-check under the lock,
// keep a certificate from being renewed twice. A name no longer served
// is not renewed. A handshake still renews earlier when the CA's renewal
// information (ARI) asks for it.
func (a *ACME) RenewDue(ctx context.Context) { a.sweep(ctx, true) }

// sweep reads the stored certificates' lives (publishing their expiry)
// and, with renew, renews those due.
func (a *ACME) sweep(ctx context.Context, renew bool) {
	prefix := certmagic.StorageKeys.CertsPrefix(a.issuer.IssuerKey())
	sites, err := a.o.Storage.List(ctx, prefix, false)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	if err != nil {
		a.o.Logger.Error("certs: renewal sweep: list certificates", "err", err)
		return
	}
	now := a.o.Now()
	seen := map[string]bool{}
	for _, site := range sites {
		if ctx.Err() != nil {
			return
		}
		name := path.Base(site)
		seen[name] = true
		org, ok := a.o.Decide(name)
		if !ok {
			// (forgotten too: read again, and published, if it comes back)
			delete(a.lives, name)
			a.dropExpiry(name)
			continue
		}
		if a.renewalBackingOff(name) {
			continue
		}
		l, known := a.lives[name]
		if known && !l.due(now) {
			continue
		}
		// Unknown, or due by what was read before: read it again (another
		// node may have renewed it meanwhile).
		if l, err = a.readLife(ctx, name); err != nil {
			a.o.Logger.Warn("certs: renewal sweep: read certificate", "name", name, "err", err)
			continue
		}
		a.lives[name] = l
		a.setExpiry(name, l.notAfter)
		if !renew || !l.due(now) {
			continue
		}
		// Async is certmagic's non-interactive mode (Sync may prompt for an
		// email on stdin). A failure backs renewals of the name off, and
		// event refuses the retry with ErrNoRetry: one attempt per sweep;
		// the deadline is a backstop.
		rctx, cancel := context.WithTimeout(ctx, a.renewWait)
		err = a.cfg.RenewCertAsync(rctx, name, false)
		cancel()
		if err != nil {
			a.o.Logger.Warn("certs: background renewal failed; retried at the next sweep", "name", name, "org", org, "expires", l.notAfter, "err", err)
			continue
		}
		delete(a.lives, name) // read the new one next time
	}
	for name := range a.lives {
		if !seen[name] {
			delete(a.lives, name)
			a.dropExpiry(name)
		}
	}
}

func (l life) due(now time.Time) bool {
	return !now.Before(l.notAfter.Add(-l.notAfter.Sub(l.notBefore) / 3))
}

func (a *ACME) readLife(ctx context.Context, name string) (life, error) {
	b, err := a.o.Storage.Load(ctx, certmagic.StorageKeys.SiteCert(a.issuer.IssuerKey(), name))
	if err != nil {
		return life{}, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return life{}, errors.New("no PEM certificate")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return life{}, err
	}
	return life{leaf.NotBefore, leaf.NotAfter}, nil
}

// decide is certmagic's on-demand permission: Gatehouse's hosts only, a
// bounded number of new certificates per org, and a back-off after
// failures. A name not served is refused before any storage read or ACME
// order. A name with a certificate in storage is never held back by the
// budget or a back-off: certmagic asks here before loading a stored
// certificate and before renewing one, and a refusal would drop a
// certificate that is still valid.
func (a *ACME) decide(ctx context.Context, name string) error {
	org, ok := a.o.Decide(name)
	if !ok {
		return ErrNotAllowed
	}
	if a.o.Storage.Exists(ctx, certmagic.StorageKeys.SiteCert(a.issuer.IssuerKey(), name)) {
		return nil
	}
	now := a.o.Now()
	if a.o.SharedBudget != nil {
		// Outside a.mu: a slow store holds this handshake, not every one.
		sctx, cancel := context.WithTimeout(ctx, budgetWait)
		n, err := store.BudgetUsed(sctx, a.o.SharedBudget, budgetKind, org)
		cancel()
		if err == nil && n >= a.o.MaxPerOrgPerHour {
			return fmt.Errorf("certs: org %q reached %d new certificates this hour", org, a.o.MaxPerOrgPerHour)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if b, ok := a.fails[name]; ok && now.Before(b.until) {
		return fmt.Errorf("certs: %s failed recently; next try after %s", name, b.until.UTC().Format(time.RFC3339))
	}
	if w := a.budget[org]; w != nil && now.Sub(w.start) < time.Hour && w.n >= a.o.MaxPerOrgPerHour {
		return fmt.Errorf("certs: org %q reached %d new certificates this hour", org, a.o.MaxPerOrgPerHour)
	}
	return nil
}

// budgetWait bounds a shared budget's store call.
const budgetWait = 2 * time.Second

// budgetKind is the store's single-use records that count each org's new
// certificates this hour (ACMEOptions.SharedBudget).
const budgetKind = store.EphemeralPrefix + "acme-budget"

// takeBudget counts a new certificate for org: in the store when the
// budget is shared (without a.mu), else (or if the store cannot count)
// in the node's own window.
func (a *ACME) takeBudget(ctx context.Context, org string, now time.Time) bool {
	if a.o.SharedBudget != nil {
		sctx, cancel := context.WithTimeout(ctx, budgetWait)
		ok, _, err := store.TakeBudget(sctx, a.o.SharedBudget, budgetKind, org, a.o.MaxPerOrgPerHour, time.Hour, now)
		cancel()
		if err == nil {
			return ok
		}
		a.o.Logger.Warn("certs: shared issuance budget unavailable; counting on this node", "org", org, "err", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.budget[org]
	if w == nil || now.Sub(w.start) >= time.Hour {
		w = &window{start: now}
		a.budget[org] = w
	}
	if w.n >= a.o.MaxPerOrgPerHour {
		return false
	}
	w.n++
	return true
}

// event counts new certificates against their org's budget (checked and
// counted at once, so concurrent first handshakes cannot overrun it),
// and failed new certificates against the name's back-off (1 minute,
// doubling up to 1 hour). Renewals are not counted against the budget;
// a failed renewal backs the name's renewals off (10 minutes, doubling up
// to 6 hours) while the current certificate keeps serving. Refusing an
// attempt here (rather than in decide) aborts it without certmagic
// dropping the certificate, and ErrNoRetry stops its retry loop.
func (a *ACME) event(ctx context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		org, _ := a.o.Decide(name)
		now := a.o.Now()
		if renewal {
			a.mu.Lock()
			b, ok := a.renewFails[name]
			a.mu.Unlock()
			if ok && now.Before(b.until) {
				return certmagic.ErrNoRetry{Err: fmt.Errorf("certs: renewing %s failed recently; next try after %s", name, b.until.UTC().Format(time.RFC3339))}
			}
			a.o.Logger.Info("certs: renewing a certificate", "name", name, "org", org)
			return nil
		}
		if !a.takeBudget(ctx, org, now) {
			a.countIssuance(false, "budget_exceeded")
			a.o.Logger.Warn("certs: issuance budget spent", "name", name, "org", org, "max_per_hour", a.o.MaxPerOrgPerHour)
			// No retry: the handshake fails now, the next ones at decide.
			return certmagic.ErrNoRetry{Err: fmt.Errorf("certs: org %q reached %d new certificates this hour", org, a.o.MaxPerOrgPerHour)}
		}
		a.o.Logger.Info("certs: obtaining a certificate", "name", name, "org", org)
	case "cert_obtained":
		org, _ := a.o.Decide(name)
		a.mu.Lock()
		delete(a.fails, name)
		delete(a.renewFails, name)
		a.mu.Unlock()
		a.countIssuance(renewal, "success")
		if l, err := a.readLife(ctx, name); err == nil {
			a.setExpiry(name, l.notAfter)
		}
		a.o.Logger.Info("certs: certificate obtained", "name", name, "org", org, "renewal", renewal)
	case "cert_failed":
		org, _ := a.o.Decide(name)
		a.countIssuance(renewal, "failure")
		a.countError(data["error"])
		a.mu.Lock()
		defer a.mu.Unlock()
		if renewal {
			b := a.renewFails[name]
			longest := 6 * time.Hour
			if left, ok := data["remaining"].(time.Duration); ok && left < 7*24*time.Hour {
				longest = 30 * time.Minute // close to (or past) expiry: try more often
			}
			b.wait = min(max(2*b.wait, 10*time.Minute), longest)
			b.until = a.o.Now().Add(b.wait)
			a.renewFails[name] = b
			a.o.Logger.Warn("certs: renewing a certificate failed; the current one keeps serving", "name", name, "org", org, "retry_after", b.wait.String(), "err", fmt.Sprint(data["error"]))
			return nil
		}
		b := a.fails[name]
		b.wait = min(max(2*b.wait, time.Minute), time.Hour)
		b.until = a.o.Now().Add(b.wait)
		a.fails[name] = b
		// certmagic would retry this order within the handshake for
		// minutes; the handshake fails now instead, and the back-off
		// refuses the next ones at once.
		for _, cancel := range a.waiting[name] {
			cancel()
		}
		a.o.Logger.Warn("certs: obtaining a certificate failed", "name", name, "org", org, "retry_after", b.wait.String(), "err", fmt.Sprint(data["error"]))
	}
	return nil
}

// TLSConfig serves certificates on demand, with HTTP/2 and the ACME
// TLS-ALPN-01 protocol.
func (a *ACME) TLSConfig() *tls.Config {
	t := a.cfg.TLSConfig()
	t.GetCertificate = a.getCertificate
	t.MinVersion = tls.VersionTLS12
	t.NextProtos = append([]string{"h2", "http/1.1"}, t.NextProtos...)
	return t
}

// getCertificate is certmagic's, with a context the failure of the
// name's order ends (certmagic retries a failed on-demand order with
// back-off inside the handshake, holding the client for up to three
// minutes) and bounded by maxObtainWait.
func (a *ACME) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ctx, cancel := context.WithTimeout(hello.Context(), maxObtainWait)
	defer cancel()
	// The name as certmagic's events carry it.
	name, err := idna.Lookup.ToASCII(strings.TrimSpace(hello.ServerName))
	if err != nil {
		name = hello.ServerName
	}
	name = strings.ToLower(name)
	// A name no longer served (a suspended or removed domain) gets no
	// handshake even while certmagic still holds its certificate in
	// memory: a cache hit never asks the decision function.
	if _, ok := a.o.Decide(name); !ok {
		a.o.Refusals.Refused(name)
		return nil, ErrNotAllowed
	}
	// While the name's renewals back off, serve its valid certificate
	// without certmagic's handshake maintenance, which would start (and
	// have refused) a renewal, with its store reads and writes, at every
	// handshake.
	if a.renewalBackingOff(name) {
		for _, c := range a.cache.AllMatchingCertificates(name) {
			if c.Leaf != nil && a.o.Now().Before(c.Leaf.NotAfter) {
				return &c.Certificate, nil
			}
		}
	}
	id := new(int)
	a.mu.Lock()
	w := a.waiting[name]
	if w == nil {
		w = map[*int]context.CancelFunc{}
		a.waiting[name] = w
	}
	w[id] = cancel
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(w, id)
		if len(w) == 0 {
			delete(a.waiting, name)
		}
		a.mu.Unlock()
	}()
	return a.cfg.GetCertificateWithContext(ctx, hello)
}

// renewalBackingOff reports whether name's renewals are held back after
// a failure.
func (a *ACME) renewalBackingOff(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	b, ok := a.renewFails[name]
	return ok && a.o.Now().Before(b.until)
}

// HTTPHandler answers HTTP-01 challenges on the plain-HTTP listener and
// sends every other request to HTTPS on the same host.
func (a *ACME) HTTPHandler(httpsPort int) http.Handler {
	served := func(host string) bool { _, ok := a.o.Decide(host); return ok }
	return a.issuer.HTTPChallengeHandler(RedirectToHTTPS(httpsPort, served))
}
