package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/brandasset"
	"github.com/gatehouse/gatehouse/internal/mailer"
	"github.com/gatehouse/gatehouse/internal/webhooksig"
	"github.com/jackc/pgx/v5/pgconn"
)

// applyDefaults fills in every setting left unset (zero).
func (c *Config) applyDefaults() {
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setInt := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Listen, "127.0.0.1:8080")
	setStr(&c.OpsListen, "127.0.0.1:9090")

	setDur(&c.Session.Lifetime, 12*time.Hour)
	setDur(&c.Session.IdleTimeout, time.Hour)
	setStr(&c.Session.CookieName, "_gatehouse")
	setDur(&c.Session.RevocationCheck, 2*time.Second)

	setStr(&c.Signing.Algorithm, "ES256")
	setDur(&c.Signing.RotationPeriod, 720*time.Hour)
	setDur(&c.Signing.AssertionLifetime, 5*time.Minute)

	setInt(&c.Login.MaxFailures, 5)
	setDur(&c.Login.FailureWindow, 15*time.Minute)
	setInt(&c.Login.MaxFailuresPerAddress, 50)
	setDur(&c.Login.SAMLClockSkew, 3*time.Minute)
	setDur(&c.Login.SAMLKeyRotation, 8760*time.Hour)

	setDur(&c.Server.ReadHeaderTimeout, 10*time.Second)
	setDur(&c.Server.IdleTimeout, 120*time.Second)
	setDur(&c.Server.ShutdownTimeout, 30*time.Second)
	setInt(&c.Server.MaxHeaderBytes, 64<<10)
	setInt(&c.Server.MaxConnectionsPerClient, 1000)
	setInt(&c.Server.MinBodyRate, 512)

	setDur(&c.Domains.Recheck, time.Hour)
	setDur(&c.Policy.Timeout, 100*time.Millisecond)
	setDur(&c.Policy.ReloadInterval, 2*time.Second)
	if c.Policy.DecisionCacheTTL == nil {
		ttl := time.Second
		c.Policy.DecisionCacheTTL = &ttl
	}

	setStr(&c.Log.Level, "info")
	setStr(&c.Log.Format, "json")

	for i := range c.Routes {
		r := &c.Routes[i]
		setStr(&r.PathPrefix, "/")
		setStr(&r.Audience, r.Host)
	}
	c.clientDefaults()
}

const (
	maxRevocationCheck   = 5 * time.Second
	maxAssertionLifetime = 5 * time.Minute
)

var (
	routeIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	orgSlugRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
)

// validate reports every problem with a decoded, defaulted configuration
// through d, which knows where each path was in the file.
// OrgRulesProblems checks an org's MFA and session rules against the
// deployment's session limits; paths are under the org ("mfa.require").
func OrgRulesProblems(m OrgMFA, s OrgSession, lifetime, idle time.Duration) []Problem {
	var out []Problem
	switch m.Require {
	case "", "off", "admins", "all":
	default:
		out = append(out, Problem{Path: "mfa.require", Msg: fmt.Sprintf("unknown value %q: use off, admins or all", m.Require)})
	}
	for i, f := range m.Factors {
		if f != "passkey" && f != "totp" && f != "email" {
			out = append(out, Problem{Path: fmt.Sprintf("mfa.factors[%d]", i), Msg: fmt.Sprintf("unknown factor %q: use passkey, totp or email", f)})
		}
	}
	if _, _, err := ParseRememberDevice(m.RememberDevice); err != nil {
		out = append(out, Problem{Path: "mfa.remember_device", Msg: err.Error()})
	}
	if s.MaxPerPerson < 0 || s.MaxPerPerson > 1000 {
		out = append(out, Problem{Path: "session.max_per_person", Msg: "from 1 to 1000 (or 0: no bound)"})
	}
	for _, d := range []struct {
		path     string
		v, limit time.Duration
		setting  string
	}{{"session.lifetime", s.Lifetime, lifetime, "session.lifetime"}, {"session.idle_timeout", s.IdleTimeout, idle, "session.idle_timeout"}} {
		switch {
		case d.v == 0:
		case d.v < time.Minute:
			out = append(out, Problem{Path: d.path, Msg: "at least 1m (or leave it out for the deployment's)"})
		case d.limit > 0 && d.v > d.limit:
			out = append(out, Problem{Path: d.path, Msg: fmt.Sprintf("at most the deployment's %s (%s): an org only tightens it", d.setting, d.limit)})
		}
	}
	return out
}

func (c *Config) validate(d *decoder) {
	// public_url
	publicHost := ""
	if c.PublicURL == "" {
		d.add("public_url", "required")
	} else if msg := publicURLProblem(c.PublicURL); msg != "" {
		d.add("public_url", "invalid URL %q: %s", c.PublicURL, msg)
	} else if u, err := url.Parse(c.PublicURL); err == nil {
		publicHost = u.Hostname()
	}

	// listeners
	if msg := listenProblem(c.Listen); msg != "" {
		d.add("listen", "invalid address %q: %s", c.Listen, msg)
	}
	if msg := listenProblem(c.OpsListen); msg != "" {
		d.add("ops_listen", "invalid address %q: %s", c.OpsListen, msg)
	} else if c.OpsListen == c.Listen && !strings.HasSuffix(c.Listen, ":0") {
		d.add("ops_listen", "must differ from listen (%s)", c.Listen)
	}

	// tls
	if c.TLS != nil {
		c.validateTLS(d)
	}
	if r := c.Domains.Resolver; r != "" {
		if _, _, err := net.SplitHostPort(r); err != nil {
			d.add("domains.resolver", "%q is not host:port", r)
		}
	}
	if c.Domains.Recheck < 0 || c.Domains.Recheck > 0 && c.Domains.Recheck < time.Second {
		d.add("domains.recheck", "must be at least 1s")
	}
	if t := c.Domains.CNAMETarget; t != "" {
		if msg := dnsNameProblem(strings.ToLower(t)); msg != "" {
			d.add("domains.cname_target", "invalid name %q: %s", t, msg)
		}
	}

	// admin
	seenAdmin := map[string]bool{}
	for i, e := range c.Admin.PlatformAdmins {
		p := fmt.Sprintf("admin.platform_admins[%d]", i)
		if msg := emailProblem(e); msg != "" {
			d.add(p, "invalid email %q: %s", e, msg)
		} else if seenAdmin[strings.ToLower(e)] {
			d.add(p, "%s is listed twice", e)
		}
		seenAdmin[strings.ToLower(e)] = true
	}
	if w := c.Admin.AuditWebhook; w != nil {
		if u, msg := absoluteURL(w.URL); msg != "" {
			d.add("admin.audit_webhook.url", "invalid URL %q: %s", w.URL, msg)
		} else if u.Scheme != "https" && !(u.Scheme == "http" && connection.Loopback(u.Hostname())) {
			d.add("admin.audit_webhook.url", "must be https:// (http:// only to this machine)")
		}
		if _, err := WebhookKey(w.Secret); err != nil {
			d.add("admin.audit_webhook.secret", "%v", err)
		}
	}

	// policy
	if c.Policy.Platform != "" {
		if msg := policyPathProblem(c.Policy.Platform); msg != "" {
			d.add("policy.platform", "%s", msg)
		}
	}
	if c.Policy.Timeout < 0 || c.Policy.Timeout > 5*time.Second {
		d.add("policy.timeout", "must be between 1ms and 5s")
	}
	if ttl := c.Policy.DecisionCacheTTL; ttl != nil && (*ttl < 0 || *ttl > time.Minute) {
		d.add("policy.decision_cache_ttl", "must be between 0s (off) and 1m")
	}
	if c.Policy.ReloadInterval < 0 {
		d.add("policy.reload_interval", "must be positive")
	}
	if f := c.Policy.DecisionLog.SampleAllows; f < 0 || f > 1 {
		d.add("policy.decision_log.sample_allows", "must be between 0 and 1 (a fraction of allows to log)")
	}
	for i := range c.Routes {
		if p := c.Routes[i].Policy; p != "" {
			if msg := policyPathProblem(p); msg != "" {
				d.add(fmt.Sprintf("routes[%d].policy", i), "%s", msg)
			}
		}
	}
	for i := range c.Orgs {
		for _, pr := range ClaimMapProblems(fmt.Sprintf("orgs[%d].token_claims", i), c.Orgs[i].TokenClaims) {
			d.add(pr.Path, "%s", pr.Msg)
		}
		for _, pr := range OrgRulesProblems(c.Orgs[i].MFA, c.Orgs[i].Session, c.Session.Lifetime, c.Session.IdleTimeout) {
			d.add(fmt.Sprintf("orgs[%d].%s", i, pr.Path), "%s", pr.Msg)
		}
		if p := c.Orgs[i].Policy; p != "" {
			if msg := policyPathProblem(p); msg != "" {
				d.add(fmt.Sprintf("orgs[%d].policy", i), "%s", msg)
			}
		}
	}

	// store: exactly one backend
	backends := 0
	if c.Store.Badger != nil {
		backends++
		if c.Store.Badger.Path == "" {
			d.add("store.badger.path", "required")
		}
	}
	if pg := c.Store.Postgres; pg != nil {
		backends++
		if pg.DSN == "" {
			d.add("store.postgres.dsn", "required (a connection string, through ${ENV}: it holds the password)")
		} else if _, err := pgconn.ParseConfig(pg.DSN); err != nil {
			d.add("store.postgres.dsn", "not a PostgreSQL connection string: %s", pgErrText(err))
		}
		if pg.MaxConns < 0 || pg.MaxConns > 1000 {
			d.add("store.postgres.max_conns", "from 1 to 1000 (0: 32)")
		}
		if pg.Timeout != 0 && (pg.Timeout < 100*time.Millisecond || pg.Timeout > 5*time.Minute) {
			d.add("store.postgres.timeout", "from 100ms to 5m (0: 10s)")
		}
		if pg.MinConns < 0 || (pg.MaxConns > 0 && pg.MinConns > pg.MaxConns) {
			d.add("store.postgres.min_conns", "from 0 to max_conns")
		}
	}
	switch {
	case backends == 0:
		d.add("store", "a store backend is required (store.badger.path or store.postgres.dsn)")
	case backends > 1:
		d.add("store", "one store backend: badger or postgres, not both")
	}

	if r := c.Login.SAMLKeyRotation; r > 0 && r < 24*time.Hour {
		d.add("login.saml_key_rotation", "at least 24h, got %s: IdP admins need time to load the next certificate", r)
	}
	if c.Signing.RotationPeriod > 0 && c.Signing.RotationPeriod < time.Minute {
		d.add("signing.rotation_period", "at least 1m, got %s", c.Signing.RotationPeriod)
	}
	if c.Login.SAMLClockSkew > 5*time.Minute {
		d.add("login.saml_clock_skew", "at most 5m, got %s: fix the clocks instead", c.Login.SAMLClockSkew)
	}

	// durations and limits
	for _, v := range []struct {
		path string
		d    time.Duration
	}{
		{"session.lifetime", c.Session.Lifetime},
		{"session.idle_timeout", c.Session.IdleTimeout},
		{"session.revocation_check", c.Session.RevocationCheck},
		{"signing.rotation_period", c.Signing.RotationPeriod},
		{"signing.assertion_lifetime", c.Signing.AssertionLifetime},
		{"login.failure_window", c.Login.FailureWindow},
		{"login.saml_clock_skew", c.Login.SAMLClockSkew},
		{"login.saml_key_rotation", c.Login.SAMLKeyRotation},
		{"server.read_header_timeout", c.Server.ReadHeaderTimeout},
		{"server.read_timeout", c.Server.ReadTimeout},
		{"server.write_timeout", c.Server.WriteTimeout},
		{"server.idle_timeout", c.Server.IdleTimeout},
		{"server.shutdown_timeout", c.Server.ShutdownTimeout},
	} {
		if v.d < 0 {
			d.add(v.path, "must be positive, got %s", v.d)
		}
	}
	for _, v := range []struct {
		path string
		n    int
	}{
		{"login.max_failures", c.Login.MaxFailures},
		{"login.max_failures_per_address", c.Login.MaxFailuresPerAddress},
		{"server.max_header_bytes", c.Server.MaxHeaderBytes},
		{"server.max_connections", c.Server.MaxConnections},
		{"server.max_connections_per_client", c.Server.MaxConnectionsPerClient},
		{"server.min_body_rate", map[bool]int{true: 0, false: c.Server.MinBodyRate}[c.Server.MinBodyRate == -1]},
	} {
		if v.n < 0 {
			d.add(v.path, "must be positive, got %d", v.n)
		}
	}
	if c.Session.RevocationCheck > maxRevocationCheck {
		d.add("session.revocation_check", "must be at most %s, got %s", maxRevocationCheck, c.Session.RevocationCheck)
	}
	if !isToken(c.Session.CookieName) {
		d.add("session.cookie_name", "invalid cookie name %q", c.Session.CookieName)
	}
	switch c.Signing.Algorithm {
	case "ES256", "RS256", "EdDSA":
	default:
		d.add("signing.algorithm", "unsupported algorithm %q (use ES256, RS256 or EdDSA)", c.Signing.Algorithm)
	}
	if c.Signing.AssertionLifetime > maxAssertionLifetime {
		d.add("signing.assertion_lifetime", "must be at most %s, got %s", maxAssertionLifetime, c.Signing.AssertionLifetime)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		d.add("log.level", "unknown level %q (use debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		d.add("log.format", "unknown format %q (use json or text)", c.Log.Format)
	}
	for i, cidr := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(cidr); err != nil {
			d.add(fmt.Sprintf("trusted_proxies[%d]", i), "invalid CIDR %q (write one address as 192.0.2.1/32)", cidr)
		}
	}

	// orgs first: routes refer to their slugs.
	slugs := c.validateOrgs(d, publicHost)
	c.validateRoutes(d, slugs)
	c.validateClients(d, slugs)
	if e := c.Email; e != nil {
		if msg := (mailer.Config{Host: e.SMTP.Host, Port: e.SMTP.Port, TLS: e.SMTP.TLS, From: e.From}).Problem(); msg != "" {
			d.add("email", "%s", msg)
		}
		if e.PerOrgHour < 0 {
			d.add("email.per_org_hour", "must be positive (messages an org may send in an hour)")
		}
		if e.PerOrgDay < 0 {
			d.add("email.per_org_day", "must be positive (messages an org may send in a day)")
		}
		if h, day := e.Limits(); h > day {
			d.add("email.per_org_hour", "is more than per_org_day (%d)", day)
		}
	}
	if s := c.SMS; s != nil {
		if u, err := url.Parse(s.Webhook.URL); s.Webhook.URL == "" || err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && connection.Loopback(u.Hostname()))) || u.Host == "" {
			d.add("sms.webhook.url", "must be an https URL (http only to this machine)")
		}
		if _, err := WebhookKey(s.Webhook.Secret); err != nil {
			d.add("sms.webhook.secret", "%s", err.Error())
		}
		if s.Webhook.Timeout < 0 || s.Webhook.Timeout > time.Minute {
			d.add("sms.webhook.timeout", "must be from 0 (10s) to 1m")
		}
		if s.PerOrgHour < 0 || s.PerOrgDay < 0 {
			d.add("sms", "per_org_hour and per_org_day must be positive")
		}
		if h, day := s.Limits(); h > day {
			d.add("sms.per_org_hour", "is more than per_org_day (%d)", day)
		}
	}
}

func (c *Config) validateRoutes(d *decoder, slugs map[string]int) {
	ids := map[string]int{}
	served := map[string]int{} // host + " " + path prefix → route index
	for i := range c.Routes {
		r := &c.Routes[i]
		p := fmt.Sprintf("routes[%d]", i)
		switch j, dup := ids[r.ID]; {
		case r.ID == "":
			d.add(p+".id", "required")
		case !routeIDRE.MatchString(r.ID):
			d.add(p+".id", "invalid route id %q: use up to 63 lowercase letters, digits, \"-\" and \"_\", starting with a letter or digit", r.ID)
		case dup:
			d.add(p+".id", "duplicate route id %q (also routes[%d])", r.ID, j)
		default:
			ids[r.ID] = i
		}

		hostOK := false
		if r.Host == "" {
			d.add(p+".host", "required")
		} else if msg := hostPatternProblem(r.Host); msg != "" {
			d.add(p+".host", "invalid host %q: %s", r.Host, msg)
		} else {
			hostOK = true
		}
		prefixOK := false
		if msg := pathProblem(r.PathPrefix); msg != "" {
			d.add(p+".path_prefix", "invalid path %q: %s", r.PathPrefix, msg)
		} else {
			prefixOK = true
		}
		if hostOK && prefixOK {
			key := r.Host + " " + strings.TrimSuffix(r.PathPrefix, "/")
			if j, dup := served[key]; dup {
				d.add(p, "routes[%d] already serves host %q with path_prefix %q", j, r.Host, r.PathPrefix)
			} else {
				served[key] = i
			}
		}

		if r.Upstream == "" {
			d.add(p+".upstream", "required")
		} else if msg := upstreamProblem(r.Upstream); msg != "" {
			d.add(p+".upstream", "invalid URL %q: %s", r.Upstream, msg)
		}
		for j, pp := range r.PublicPaths {
			if msg := pathProblem(pp); msg != "" {
				d.add(fmt.Sprintf("%s.public_paths[%d]", p, j), "invalid path %q: %s", pp, msg)
			}
		}
		for j, slug := range r.Orgs {
			if _, ok := slugs[slug]; !ok {
				d.add(fmt.Sprintf("%s.orgs[%d]", p, j), "no org has slug %q", slug)
			}
		}
		if r.Org != "" {
			if _, ok := slugs[r.Org]; !ok {
				d.add(p+".org", "no org has slug %q", r.Org)
			} else if len(r.Orgs) > 0 && !contains(r.Orgs, r.Org) {
				d.add(p+".org", "org %q is not one of this route's orgs", r.Org)
			}
		}
		headers := map[string]int{}
		for j, h := range r.IdentityHeaders {
			hp := fmt.Sprintf("%s.identity_headers[%d]", p, j)
			if !isToken(h) {
				d.add(hp, "invalid header name %q", h)
			} else if k, dup := headers[strings.ToLower(h)]; dup {
				d.add(hp, "duplicate header %q (also identity_headers[%d])", h, k)
			} else {
				headers[strings.ToLower(h)] = j
			}
		}
		for j, h := range r.PassClientHeaders {
			hp := fmt.Sprintf("%s.pass_client_headers[%d]", p, j)
			if !slices.ContainsFunc(ClientHeaders, func(c string) bool { return strings.EqualFold(c, h) }) {
				msg := "%q is not one of the client headers Gatehouse removes (docs/upstream.md, Client headers); other headers pass anyway"
				if s := suggest(h, ClientHeaders); s != "" {
					msg += "; did you mean " + strconv.Quote(s) + "?"
				}
				d.add(hp, msg, h)
			}
		}
		for j, u := range r.Upgrades {
			if !isToken(u) {
				d.add(fmt.Sprintf("%s.upgrades[%d]", p, j), "invalid protocol %q: a token such as websocket", u)
			}
		}
	}
}

// validateOrgs checks orgs and returns the index of each declared slug.
func (c *Config) validateOrgs(d *decoder, publicHost string) map[string]int {
	slugs := map[string]int{}
	for i, o := range c.Orgs {
		p := fmt.Sprintf("orgs[%d].slug", i)
		switch j, dup := slugs[o.Slug]; {
		case o.Slug == "":
			d.add(p, "required")
		case !orgSlugRE.MatchString(o.Slug):
			d.add(p, "invalid slug %q: use up to 63 lowercase letters, digits and \"-\", starting with a letter or digit", o.Slug)
		case dup:
			d.add(p, "duplicate slug %q (also orgs[%d])", o.Slug, j)
		default:
			slugs[o.Slug] = i
		}
	}

	emailDomains := map[string]int{} // domain → org index
	loginDomains := map[string]int{}
	for i := range c.Orgs {
		o := &c.Orgs[i]
		p := fmt.Sprintf("orgs[%d]", i)
		if o.Name == "" {
			d.add(p+".name", "required")
		}
		if o.Parent != "" {
			if o.Parent == o.Slug {
				d.add(p+".parent", "an org cannot be its own parent")
			} else if _, ok := slugs[o.Parent]; !ok {
				d.add(p+".parent", "no org has slug %q", o.Parent)
			} else if cycle := c.parentCycle(i, slugs); cycle != nil {
				d.add(p+".parent", "parent cycle: %s", strings.Join(cycle, " → "))
			}
		}

		for j, dom := range o.EmailDomains {
			dp := fmt.Sprintf("%s.email_domains[%d]", p, j)
			if msg := dnsNameProblem(dom); msg != "" {
				d.add(dp, "invalid email domain %q: %s", dom, msg)
			} else if k, dup := emailDomains[dom]; dup && k == i {
				d.add(dp, "duplicate email domain %q", dom)
			} else if dup {
				d.add(dp, "email domain %q already belongs to org %q (orgs[%d]); a domain can belong to one org only", dom, c.Orgs[k].Slug, k)
			} else {
				emailDomains[dom] = i
			}
		}

		if ld := o.LoginDomain; ld != "" {
			lp := p + ".login_domain"
			if msg := dnsNameProblem(ld); msg != "" {
				d.add(lp, "invalid login domain %q: %s", ld, msg)
			} else if k, dup := loginDomains[ld]; dup {
				d.add(lp, "login domain %q is already used by org %q (orgs[%d])", ld, c.Orgs[k].Slug, k)
			} else {
				loginDomains[ld] = i
				if ld == publicHost {
					d.add(lp, "login domain %q is the public_url host", ld)
				}
				for k, r := range c.Routes {
					if r.Host == ld {
						d.add(lp, "login domain %q is also the host of routes[%d]", ld, k)
					} else if matchesWildcard(r.Host, ld) {
						d.add(lp, "login domain %q is matched by the host %q of routes[%d]", ld, r.Host, k)
					}
				}
			}
		}

		c.validateConnection(d, o, p)
		if o.Branding != nil {
			validateBranding(d, o.Branding, p+".branding")
		}
		for kind, n := range o.Notifications {
			if !slices.Contains(notify.Kinds, notify.Kind(kind)) {
				d.add(p+".notifications."+kind, "unknown message %q (invitation, password_reset, mfa_code or new_sign_in)", kind)
				continue
			}
			// Rendered once with sample fields: a template that does not
			// parse or run is refused here, not when a message is sent.
			f := notify.Sample(o.Name, o.Slug, c.PublicURL+"/.gatehouse/login")
			f.Org.Hosts = []string{publicHost, o.LoginDomain}
			if _, err := notify.Render(notify.Kind(kind), notify.Template(n), f); err != nil {
				d.add(p+".notifications."+kind, "%v", err)
			} else if n.HTML != "" {
				// What the sanitizer takes out is never sent: say so now.
				if gone, _ := notify.Removed(notify.Kind(kind), notify.Template(n), f); gone != "" {
					d.warn(p+".notifications."+kind+".html", "%s is removed when the message is sent (HTML parts keep formatting, https links to the org's own hosts and Gatehouse's images only)", gone)
				}
			}
		}

		for k := range o.Attributes {
			if k == "" {
				d.add(p+".attributes", "attribute names must not be empty")
			}
		}

		c.validateUsers(d, o, p)
	}
	return slugs
}

func (c *Config) validateConnection(d *decoder, o *Org, orgPath string) {
	p := orgPath + ".connection"
	cn := &o.Connection
	proto, known := protocol(cn.Type)
	switch {
	case cn.Type == "":
		if o.Parent == "" {
			d.add(p+".type", "required: %s (only sub-orgs may leave it out, to use their parent's)", protocolList())
		}
	case !known:
		d.add(p+".type", "unknown connection type %q (%s)", cn.Type, protocolList())
	case cn.SettingsKey != "" && cn.SettingsKey != cn.Type:
		// reported below
	case proto.NewSettings() != nil && cn.Settings == nil:
		msg := "required with type " + cn.Type
		if r, ok := proto.(Required); ok {
			msg += " (" + r.Required() + ")"
		}
		d.add(p+"."+cn.Type, "%s", msg)
	case cn.Settings != nil:
		for _, err := range proto.Problems(cn.Settings) {
			// A problem of one key is reported at that key's path and line.
			if fe, ok := errors.AsType[*connection.FieldError](err); ok {
				d.add(p+"."+cn.Type+"."+fe.Key, "%v", fe.Err)
			} else {
				d.add(p+"."+cn.Type, "%v", err)
			}
		}
	}
	if cn.SettingsKey != "" && cn.SettingsKey != cn.Type {
		d.add(p+"."+cn.SettingsKey, "%s settings need type: %s", cn.SettingsKey, cn.SettingsKey)
	}
	if cn.Type == "password" && (cn.ExistingUsersOnly || cn.AnyEmailDomain || len(cn.GroupRoles) > 0 || cn.DefaultRoles != nil) {
		d.add(p, "existing_users_only, any_email_domain, group_roles and default_roles apply to federated connections, not password")
	}
	roleProblem := func(path, role string) {
		switch msg := RoleProblem(role); {
		case msg == "":
		case strings.TrimSpace(role) == "":
			d.add(path, "%s", msg)
		default:
			d.add(path, "%q: %s", role, msg)
		}
	}
	for g, roles := range cn.GroupRoles {
		if g == "" {
			d.add(p+".group_roles", "group names must not be empty")
		}
		for k, r := range roles {
			roleProblem(fmt.Sprintf("%s.group_roles.%s[%d]", p, g, k), r)
		}
	}
	if cn.DefaultRoles != nil {
		for k, r := range *cn.DefaultRoles {
			roleProblem(fmt.Sprintf("%s.default_roles[%d]", p, k), r)
		}
	}
	for a, claim := range cn.Claims.Attributes {
		if a == "" || claim == "" {
			d.add(p+".claims.attributes", "attribute and claim names must not be empty")
		}
	}
	if (cn.Type == "oidc" || cn.Type == "saml") && o.Parent == "" && len(o.EmailDomains) == 0 && !cn.AnyEmailDomain {
		d.add(orgPath+".email_domains", "a federated org needs email_domains (its IdP may only sign in those addresses) or connection.any_email_domain: true")
	}
}

func (c *Config) validateUsers(d *decoder, o *Org, orgPath string) {
	federated := o.Connection.Type == "oidc" || o.Connection.Type == "saml"
	emails := map[string]int{}
	for j := range o.Users {
		u := &o.Users[j]
		p := fmt.Sprintf("%s.users[%d]", orgPath, j)
		if u.Email == "" {
			d.add(p+".email", "required")
		} else if msg := emailProblem(u.Email); msg != "" {
			d.add(p+".email", "invalid email address %q: %s", u.Email, msg)
		} else if k, dup := emails[strings.ToLower(u.Email)]; dup {
			d.add(p+".email", "duplicate user %q (also users[%d])", u.Email, k)
		} else {
			emails[strings.ToLower(u.Email)] = j
		}

		switch {
		case federated && (u.Password != "" || u.PasswordHash != ""):
			d.add(p, "org %s signs in through its IdP: its users have no password here", o.Slug)
		case federated:
			// Declared members of a federated org sign in at the IdP.
		case u.Password != "" && u.PasswordHash != "":
			d.add(p, "set only one of password and password_hash")
		case u.Password == "" && u.PasswordHash == "":
			// Point at a key that is there but empty (often an empty
			// ${VAR}) rather than at the user.
			if _, ok := d.pos[p+".password"]; ok {
				d.add(p+".password", "must not be empty")
			} else if _, ok := d.pos[p+".password_hash"]; ok {
				d.add(p+".password_hash", "must not be empty")
			} else {
				d.add(p, "one of password or password_hash is required")
			}
		case u.PasswordHash != "":
			if !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
				d.add(p+".password_hash", "must be an argon2id PHC string starting with \"$argon2id$\"")
			} else if msg := argon2idProblem(u.PasswordHash); msg != "" {
				// An incomplete hash (like the "$argon2id$v=19$..."
				// placeholder in docs) cannot match any password: the user
				// just cannot sign in with one. Say so, but start.
				d.warn(p+".password_hash", "%s; password sign-in is disabled for this user until it is replaced", msg)
				u.PasswordHash = ""
			}
		}
		for k, role := range u.Roles {
			if strings.TrimSpace(role) == "" {
				d.add(fmt.Sprintf("%s.roles[%d]", p, k), "must not be empty")
			} else if strings.ContainsAny(role, ", \t") {
				// X-Gatehouse-Roles joins roles with commas.
				d.add(fmt.Sprintf("%s.roles[%d]", p, k), "%q: must not contain commas or whitespace", role)
			}
		}
		for k, g := range u.Groups {
			if strings.TrimSpace(g) == "" {
				d.add(fmt.Sprintf("%s.groups[%d]", p, k), "must not be empty")
			}
		}
	}
}

// parentCycle returns the cycle of slugs reached by following parents
// from org i, if org i is on it and is the first of the cycle's orgs in
// the file (so each cycle is reported once).
func (c *Config) parentCycle(i int, slugs map[string]int) []string {
	path := []string{c.Orgs[i].Slug}
	cur := i
	for range len(c.Orgs) {
		next, ok := slugs[c.Orgs[cur].Parent]
		if !ok || c.Orgs[cur].Parent == "" {
			return nil
		}
		if next < i {
			return nil // reported from the earlier org, or not a cycle through i
		}
		path = append(path, c.Orgs[next].Slug)
		if next == i {
			return path
		}
		cur = next
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// publicURLProblem explains why s is not a usable public_url: an absolute
// http or https URL of a host's root.
func publicURLProblem(s string) string {
	u, msg := absoluteURL(s)
	switch {
	case msg != "":
		return msg
	case u.Path != "" && u.Path != "/":
		return "must not have a path (Gatehouse is served at the root of its host)"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not have a query"
	}
	return ""
}

// upstreamProblem explains why s is not a usable upstream URL.
func upstreamProblem(s string) string {
	u, msg := absoluteURL(s)
	switch {
	case msg != "":
		return msg
	case u.RawQuery != "" || u.ForceQuery:
		return "must not have a query"
	}
	return ""
}

// absoluteURL parses an http or https URL with a valid host and optional
// port, no user info and no fragment.
func absoluteURL(s string) (*url.URL, string) {
	if !strings.Contains(s, "://") {
		return nil, "must be an absolute http:// or https:// URL"
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err.Error()
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "must be an absolute http:// or https:// URL"
	case u.Opaque != "" || u.Host == "":
		return nil, "must have a host"
	case u.User != nil:
		return nil, "must not contain user info"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, "must not have a fragment"
	}
	host := u.Hostname()
	if _, err := netip.ParseAddr(host); err != nil {
		if msg := dnsNameProblem(host); msg != "" {
			return nil, "host " + msg
		}
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if msg := portProblem(port); msg != "" {
			return nil, msg
		}
	}
	return u, ""
}

// listenProblem explains why s is not a host:port listen address. The
// host may be empty (all interfaces), an IP address or a host name.
func listenProblem(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "must be host:port, such as 127.0.0.1:8080"
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			if msg := dnsNameProblem(host); msg != "" {
				return "host " + msg
			}
		}
	}
	return portProblem(port)
}

func portProblem(port string) string {
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return fmt.Sprintf("invalid port %q", port)
	}
	return ""
}

func fileProblem(name string) string {
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("file %q does not exist", name)
	case err != nil:
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Sprintf("cannot use %q: %v", name, err)
	case fi.IsDir():
		return fmt.Sprintf("%q is a directory", name)
	}
	return ""
}

// policyPathProblem checks that a policy path is a .rego file or a
// directory (its contents are compiled at start and on reload).
func policyPathProblem(name string) string {
	fi, err := os.Stat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("%q does not exist", name)
	case err != nil:
		return fmt.Sprintf("cannot use %q: %v", name, err)
	case !fi.IsDir() && !strings.HasSuffix(name, ".rego"):
		return fmt.Sprintf("%q is not a .rego file or a directory", name)
	}
	return ""
}

// dnsNameProblem explains why s is not a lowercase DNS host name such as
// "app.example.com" or "localhost", or returns "".
func dnsNameProblem(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if _, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return "must be a DNS name, not an IP address"
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return "must not include a port"
	}
	if strings.ToLower(s) != s {
		return "must be lowercase"
	}
	if strings.HasSuffix(s, ".") {
		return "must not end with \".\""
	}
	if len(s) > 253 {
		return "is longer than 253 characters"
	}
	labels := strings.Split(s, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return "must not have an empty label"
		case len(l) > 63:
			return "has a label longer than 63 characters"
		case l[0] == '-' || l[len(l)-1] == '-':
			return "labels must not start or end with \"-\""
		}
		for _, r := range l {
			if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-') {
				return fmt.Sprintf("must not contain %q (use letters, digits, \"-\" and \".\")", r)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "the last label must not be all digits"
	}
	return ""
}

// hostPatternProblem is dnsNameProblem, also allowing a wildcard first
// label: "*.example.com".
func hostPatternProblem(s string) string {
	if rest, ok := strings.CutPrefix(s, "*."); ok {
		if strings.Contains(rest, "*") {
			return "a wildcard must be the whole first label, as in \"*.example.com\""
		}
		return dnsNameProblem(rest)
	}
	if strings.Contains(s, "*") {
		return "a wildcard must be the whole first label, as in \"*.example.com\""
	}
	return dnsNameProblem(s)
}

// matchesWildcard reports whether host pattern "*.example.com" matches
// name, which must have exactly one more label.
func matchesWildcard(pattern, name string) bool {
	suffix, ok := strings.CutPrefix(pattern, "*")
	if !ok {
		return false
	}
	first, found := strings.CutSuffix(name, suffix)
	return found && first != "" && !strings.Contains(first, ".")
}

// pathProblem explains why p is not a canonical URL path prefix: it must
// start with "/" and contain no "//", "." or ".." segments, percent
// escapes, ";", "\", "?", "#", spaces, control or non-ASCII characters.
func pathProblem(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "must start with \"/\""
	}
	if strings.Contains(p, "//") {
		return "must not contain \"//\""
	}
	for _, r := range p {
		switch {
		case r == '%':
			return "must not contain \"%\" (write the path unescaped)"
		case r == ';' || r == '\\' || r == '?' || r == '#':
			return fmt.Sprintf("must not contain %q", r)
		case r <= ' ' || r == 0x7f:
			return "must not contain spaces or control characters"
		case r >= 0x80:
			return "must be ASCII"
		}
	}
	for _, seg := range strings.Split(p[1:], "/") {
		if seg == "." || seg == ".." {
			return "must not contain \".\" or \"..\" segments"
		}
	}
	return ""
}

// emailProblem explains why s is not a plain email address
// ("alice@example.com", no display name or angle brackets).
func emailProblem(s string) string {
	if strings.Count(s, "@") != 1 {
		return "must contain exactly one \"@\""
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "must be a plain address such as alice@example.com"
	}
	_, domain, _ := strings.Cut(s, "@")
	if msg := dnsNameProblem(strings.ToLower(domain)); msg != "" {
		return "domain " + msg
	}
	return ""
}

// isToken reports whether s is an HTTP token (RFC 9110), as header and
// cookie names must be.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return true
}

var phcParamsRE = regexp.MustCompile(`^m=[0-9]+,t=[0-9]+,p=[0-9]+$`)

// argon2idProblem checks the shape of an argon2id PHC string,
// "$argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>", without echoing it.
func argon2idProblem(h string) string {
	if !strings.HasPrefix(h, "$argon2id$") {
		return "must be an argon2id PHC string starting with \"$argon2id$\""
	}
	parts := strings.Split(h, "$")
	ok := len(parts) == 6 && parts[2] == "v=19" && phcParamsRE.MatchString(parts[3])
	if ok {
		for _, b64 := range parts[4:] {
			if b, err := base64.RawStdEncoding.DecodeString(b64); err != nil || len(b) == 0 {
				ok = false
			}
		}
	}
	if !ok {
		return "malformed argon2id PHC string (want $argon2id$v=19$m=<KiB>,t=<passes>,p=<threads>$<salt>$<hash>)"
	}
	return ""
}

// LetsEncrypt is the default ACME directory.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

func (c *Config) validateTLS(d *decoder) {
	t := c.TLS
	if t.LocalCA != "" {
		if t.ACME != nil || t.CertFile != "" || t.KeyFile != "" {
			d.add("tls.local_ca", "set one of cert_file and key_file, acme, or local_ca")
		}
		if fi, err := os.Stat(t.LocalCA); err == nil && !fi.IsDir() {
			d.add("tls.local_ca", "%q is a file; give a folder", t.LocalCA)
		}
	} else if t.ACME != nil {
		if t.CertFile != "" || t.KeyFile != "" {
			d.add("tls", "set cert_file and key_file, or acme, not both")
		}
		a := t.ACME
		if a.DirectoryURL == "" {
			a.DirectoryURL = LetsEncrypt
		}
		if u, err := url.Parse(a.DirectoryURL); err != nil || u.Scheme != "https" || u.Host == "" {
			d.add("tls.acme.directory_url", "%q must be an https URL", a.DirectoryURL)
		}
		if a.CARoot != "" {
			if msg := fileProblem(a.CARoot); msg != "" {
				d.add("tls.acme.ca_root", "%s", msg)
			}
		}
		if a.Email != "" {
			if msg := emailProblem(a.Email); msg != "" {
				d.add("tls.acme.email", "invalid email address %q: %s", a.Email, msg)
			}
		}
		if a.EAB != nil && (a.EAB.KeyID == "" || a.EAB.MACKey == "") {
			d.add("tls.acme.eab", "key_id and mac_key are both required")
		}
		if len(a.Challenges) == 0 {
			a.Challenges = []string{"tls-alpn-01"}
			if t.HTTPListen != "" {
				a.Challenges = append(a.Challenges, "http-01")
			}
		}
		for i, ch := range a.Challenges {
			switch ch {
			case "tls-alpn-01":
			case "http-01":
				if t.HTTPListen == "" {
					d.add(fmt.Sprintf("tls.acme.challenges[%d]", i), "http-01 needs tls.http_listen (the plain-HTTP listener that answers it)")
				}
			default:
				d.add(fmt.Sprintf("tls.acme.challenges[%d]", i), "unknown challenge %q (tls-alpn-01 or http-01)", ch)
			}
		}
		if a.MaxCertsPerOrgPerHour < 0 {
			d.add("tls.acme.max_certs_per_org_per_hour", "must be positive")
		} else if a.MaxCertsPerOrgPerHour == 0 {
			a.MaxCertsPerOrgPerHour = 20
		}
		switch {
		case a.RenewCheckInterval == 0:
			a.RenewCheckInterval = 10 * time.Minute
		case a.RenewCheckInterval < time.Second || a.RenewCheckInterval > 24*time.Hour:
			d.add("tls.acme.renew_check_interval", "must be between 1s and 24h")
		}
	} else {
		for _, f := range []struct{ path, name string }{
			{"tls.cert_file", t.CertFile},
			{"tls.key_file", t.KeyFile},
		} {
			if f.name == "" {
				d.add(f.path, "required (or tls.acme for automatic certificates)")
			} else if msg := fileProblem(f.name); msg != "" {
				d.add(f.path, "%s", msg)
			}
		}
	}
	if t.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(t.HTTPListen); err != nil {
			d.add("tls.http_listen", "%q is not host:port", t.HTTPListen)
		} else if t.HTTPListen == c.Listen || t.HTTPListen == c.OpsListen {
			d.add("tls.http_listen", "must differ from listen and ops_listen")
		}
	}
}

// brandFiles: where each branding file is in a Branding.
var brandFiles = map[string]func(*Branding) string{
	"logo":    func(b *Branding) string { return b.Logo },
	"favicon": func(b *Branding) string { return b.Favicon },
	"font":    func(b *Branding) string { return b.Font },
	"css":     func(b *Branding) string { return b.CSS },
}

var hexColor = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

func validateBranding(d *decoder, b *Branding, p string) {
	for _, f := range brandasset.Files {
		name := brandFiles[f.Key](b)
		if name == "" {
			continue
		}
		// Name and size first, so a wrong or huge file is not read.
		if !slices.Contains(f.Exts, strings.ToLower(filepath.Ext(name))) {
			d.add(p+"."+f.Key, "%q: must be one of %s", name, strings.Join(f.Exts, ", "))
		} else if fi, err := os.Stat(name); err != nil || fi.IsDir() {
			d.add(p+"."+f.Key, "file %q does not exist", name)
		} else if fi.Size() > f.Max {
			d.add(p+"."+f.Key, "%q is %d bytes, at most %d", name, fi.Size(), f.Max)
		} else if body, err := brandasset.ReadFile(f.Key, name); err != nil {
			d.add(p+"."+f.Key, "%v", err)
		} else if err := brandasset.Check(f.Key, name, body); err != nil {
			// The bytes decide: the server stores what it checks the
			// same way (see internal/apply branding).
			d.add(p+"."+f.Key, "%v", err)
		}
	}
	cs := map[string]string{"primary": b.Colors.Primary, "background": b.Colors.Background, "text": b.Colors.Text}
	for _, k := range []string{"primary", "background", "text"} {
		if v := cs[k]; v != "" && !hexColor.MatchString(v) {
			d.add(p+".colors."+k, "%q: use #rrggbb", v)
			cs[k] = ""
		}
	}
	// WCAG 2.x AA asks 4.5:1 for normal text: report, do not refuse (the
	// customer's brand may already be what it is).
	pair := func(key, fg, bg, what string) {
		if fg == "" || bg == "" {
			return
		}
		if r := ContrastRatio(fg, bg); r < 4.5 {
			d.warn(p+".colors."+key, "%s has a contrast of %.2f:1, below WCAG AA's 4.5:1", what, r)
		}
	}
	pair("text", cs["text"], "#ffffff", "text on the white card")
	pair("primary", "#ffffff", cs["primary"], "white button text on primary")
	pair("primary", cs["primary"], "#ffffff", "primary (links) on the white card")
	for k, v := range map[string]string{"heading": b.Texts.Heading, "intro": b.Texts.Intro, "footer": b.Texts.Footer} {
		if len(v) > 500 {
			d.add(p+".texts."+k, "at most 500 characters")
		}
	}
}

// ContrastRatio is the WCAG 2.x contrast ratio of two #rrggbb colors.
func ContrastRatio(a, b string) float64 {
	la, lb := luminance(a), luminance(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}

func luminance(hex string) float64 {
	ch := func(i int) float64 {
		v, _ := strconv.ParseUint(hex[i:i+2], 16, 8)
		c := float64(v) / 255
		if c <= 0.03928 {
			return c / 12.92
		}
		return math.Pow((c+0.055)/1.055, 2.4)
	}
	return 0.2126*ch(1) + 0.7152*ch(3) + 0.0722*ch(5)
}

// SlugProblem says what is wrong with an org slug ("" if nothing): the
// admin API checks slugs as the file does.
func SlugProblem(s string) string {
	if !orgSlugRE.MatchString(s) {
		return "use up to 63 lowercase letters, digits and \"-\", starting with a letter or digit"
	}
	return ""
}

// EmailProblem says what is wrong with an email address ("" if nothing).
func EmailProblem(s string) string { return emailProblem(s) }

// TextProblem says what is wrong with a display text ("" if nothing):
// valid UTF-8, no control characters (they rewrite terminals and logs),
// at most max bytes.
func TextProblem(s string, max int) string {
	switch {
	case len(s) > max:
		return fmt.Sprintf("at most %d bytes", max)
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) }):
		return "must not contain control characters"
	}
	return ""
}

// RoleProblem says what is wrong with a role name ("" if nothing): it
// travels in the comma-separated X-Gatehouse-Roles header.
func RoleProblem(s string) string {
	switch {
	case strings.TrimSpace(s) == "":
		return "must not be empty"
	case strings.ContainsAny(s, ", \t\r\n"):
		return "must not contain commas or whitespace"
	case len(s) > 64:
		return "must be at most 64 characters"
	}
	return ""
}

// WebhookKey decodes a Standard Webhooks secret: "whsec_" and the base64
// of 24 to 64 bytes (the file's audit webhook and the admin API's check
// it alike; the signer uses the key).
func WebhookKey(secret string) ([]byte, error) { return webhooksig.ParseSecret(secret) }

// DomainProblem says what is wrong with a DNS name for an org's login or
// email domain ("" if nothing).
func DomainProblem(s string) string { return dnsNameProblem(s) }

// pgErrText is a DSN parse error without the DSN itself (it may hold a
// password).
func pgErrText(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return "invalid"
}
