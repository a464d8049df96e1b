// Package config is Gatehouse's deployment configuration: the YAML schema,
// strict loading (unknown keys are errors with their key path and line),
// ${ENV} substitution and validation that reports every problem at once.
package config

import (
	"fmt"
	"time"
)

// Config is one deployment. Field docs are the config reference; keep
// docs/configuration.md's table in step with them.
type Config struct {
	// PublicURL is the workspace issuer URL and the shared login host.
	PublicURL string `yaml:"public_url"`
	// Listen is the proxy's address: plain HTTP unless TLS is set.
	Listen string `yaml:"listen"`
	// OpsListen serves /healthz, /readyz and /metrics.
	OpsListen string  `yaml:"ops_listen"`
	TLS       *TLS    `yaml:"tls"`
	Store     Store   `yaml:"store"`
	Session   Session `yaml:"session"`
	Signing   Signing `yaml:"signing"`
	Login     Login   `yaml:"login"`
	Server    Server  `yaml:"server"`
	Log       Log     `yaml:"log"`
	Policy    Policy  `yaml:"policy"`
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed when
	// finding the client address (throttling, logs). Empty: none.
	TrustedProxies []string `yaml:"trusted_proxies"`
	Routes         []Route  `yaml:"routes"`
	Orgs           []Org    `yaml:"orgs"`
	// Clients get tokens from the OpenID Provider (docs/apps.md).
	Clients []Client `yaml:"clients"`
	Domains Domains  `yaml:"domains"`
	Admin   Admin    `yaml:"admin"`
	// Email sends people the orgs' messages (nil: no email; the factors
	// and messages that need it are not offered).
	Email *Email `yaml:"email"`
	SMS   *SMS   `yaml:"sms"`

	// Warnings are problems that do not stop Gatehouse (set by Parse).
	Warnings []Problem `yaml:"-"`
}

// TLS serves HTTPS (and HTTP/2): from static certificate files, or with
// certificates obtained automatically (ACME) for every host Gatehouse
// serves. Exactly one of the two.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	ACME     *ACME  `yaml:"acme"`
	// LocalCA is a folder for a CA Gatehouse runs itself (made there if
	// missing): certificates for every served name, trusted by whoever
	// trusts its ca.pem. For development (serve --dev --https), not
	// production.
	LocalCA string `yaml:"local_ca"`
	// HTTPListen serves plain HTTP: ACME HTTP-01 challenges, and a
	// redirect to HTTPS for everything else (e.g. ":80").
	HTTPListen string `yaml:"http_listen"`
}

// ACME obtains certificates on demand at the first handshake for a name,
// and renews them.
type ACME struct {
	// DirectoryURL (default Let's Encrypt's production directory).
	DirectoryURL string `yaml:"directory_url"`
	// CARoot is a PEM file of CAs trusted for the ACME server's own HTTPS
	// (a private CA); default the system roots.
	CARoot string `yaml:"ca_root"`
	Email  string `yaml:"email"`
	// EAB is External Account Binding, for CAs that require it (ZeroSSL).
	EAB *EAB `yaml:"eab"`
	// Challenges: tls-alpn-01 (on listen) and/or http-01 (on
	// tls.http_listen). Default: both when http_listen is set, else
	// tls-alpn-01.
	Challenges []string `yaml:"challenges"`
	// MaxCertsPerOrgPerHour bounds new certificates per org (default 20).
	MaxCertsPerOrgPerHour int `yaml:"max_certs_per_org_per_hour"`
	// RenewCheckInterval is how often certificates are checked for
	// renewal (default 10m, certmagic's).
	RenewCheckInterval time.Duration `yaml:"renew_check_interval"`
}

type EAB struct {
	KeyID  string `yaml:"key_id"`
	MACKey string `yaml:"mac_key"`
}

// Store selects the backend. Exactly one must be set.
type Store struct {
	Badger   *BadgerStore   `yaml:"badger"`
	Postgres *PostgresStore `yaml:"postgres"`
}

// PostgresStore is a PostgreSQL database (pgstore): the store of a
// deployment of several nodes.
type PostgresStore struct {
	// DSN is a libpq connection string or URL; give it through ${ENV}
	// (it holds the password). TLS as the DSN's sslmode says.
	DSN string `yaml:"dsn"`
	// MaxConns and MinConns size each node's pool (defaults 32 and 2).
	MaxConns int32 `yaml:"max_conns"`
	MinConns int32 `yaml:"min_conns"`
	// Timeout bounds each store call, waiting for a connection included
	// (default 10s): a slow database fails calls, never piles them up.
	Timeout time.Duration `yaml:"timeout"`
}

type BadgerStore struct {
	Path string `yaml:"path"`
}

type Session struct {
	// Lifetime is the absolute session length (default 12h).
	Lifetime time.Duration `yaml:"lifetime"`
	// IdleTimeout ends a session unused this long (default 1h; 0 keeps the default).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// CookieName (default "_gatehouse").
	CookieName string `yaml:"cookie_name"`
	// RevocationCheck bounds how stale a node's view of a session may be
	// (default 2s, at most 5s).
	RevocationCheck time.Duration `yaml:"revocation_check"`
}

type Signing struct {
	// Algorithm of new keys: ES256 (default), RS256 or EdDSA.
	Algorithm string `yaml:"algorithm"`
	// RotationPeriod: a new key becomes current this often (default 720h).
	RotationPeriod time.Duration `yaml:"rotation_period"`
	// AssertionLifetime of X-Gatehouse-Jwt-Assertion (default 5m, at most 5m).
	AssertionLifetime time.Duration `yaml:"assertion_lifetime"`
}

type Login struct {
	// MaxFailures per account and per client address within FailureWindow
	// before sign-in is refused for the rest of the window (defaults 5, 15m).
	MaxFailures   int           `yaml:"max_failures"`
	FailureWindow time.Duration `yaml:"failure_window"`
	// MaxFailuresPerAddress allows more for one address, since offices share
	// one (default 50).
	MaxFailuresPerAddress int `yaml:"max_failures_per_address"`
	// SAMLClockSkew is how far a SAML assertion's times may be off
	// (default 3m, at most 5m).
	SAMLClockSkew time.Duration `yaml:"saml_clock_skew"`
	// SAMLKeyRotation: each org's SAML SP key signs this long, with the
	// next one in the SP metadata a whole period ahead (default 8760h).
	SAMLKeyRotation time.Duration `yaml:"saml_key_rotation"`
}

// Server timeouts protect against slow clients.
type Server struct {
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"` // default 10s
	ReadTimeout       time.Duration `yaml:"read_timeout"`        // default 0: streaming uploads allowed
	WriteTimeout      time.Duration `yaml:"write_timeout"`       // default 0: streaming responses allowed
	IdleTimeout       time.Duration `yaml:"idle_timeout"`        // default 120s
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`    // default 30s
	MaxHeaderBytes    int           `yaml:"max_header_bytes"`    // default 64 KiB
	// MaxConnections held at once on the listener (default: half the
	// process's open-file limit, at most 100,000); over it, the connection
	// idle the longest is closed, or the new one if none is idle.
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerClient from one client address, IPv6 by /64
	// (default 1000); trusted proxies are exempt.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client"`
	// MinBodyRate is the lowest average rate (bytes a second) at which a
	// request body must arrive, once read_header_timeout has passed since
	// its headers (default 512; -1 for none).
	MinBodyRate int `yaml:"min_body_rate"`
	// Pprof serves Go's profiles (net/http/pprof) on the ops listener
	// under /debug/pprof/ (default false).
	Pprof bool `yaml:"pprof"`
}

// Policy configures Rego policies (see docs/policies.md).
type Policy struct {
	// Platform is a .rego file or a directory of them: the SaaS team's
	// policy, applied to every route.
	Platform string `yaml:"platform"`
	// Timeout bounds one decision (default 100ms); past it, deny.
	Timeout time.Duration `yaml:"timeout"`
	// ReloadInterval is how often policy files and org policies in the
	// store are checked for changes (default 2s).
	ReloadInterval time.Duration `yaml:"reload_interval"`
	// DecisionCacheTTL lets an allow be reused for the same session and
	// route, for a request equal in the fields the policies read and whose
	// paths answer the policies' questions of paths the same (never for a
	// policy that reads the time), for this long. Default 1s; "0s" turns
	// it off.
	DecisionCacheTTL *time.Duration `yaml:"decision_cache_ttl"`
	DecisionLog      DecisionLog    `yaml:"decision_log"`
}

type DecisionLog struct {
	// SampleAllows is the fraction (0..1) of allows logged; every deny is.
	SampleAllows float64 `yaml:"sample_allows"`
	// File receives the decision log as JSON Lines, besides the log.
	File string `yaml:"file"`
}

type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // json (default) or text
}

// Admin configures the admin API (/api/v1).
type Admin struct {
	// PlatformAdmins are the SaaS team's admins, by email: every org,
	// from a session in any org they sign in to. The file manages the
	// list: an address removed from it loses the right at the next start.
	PlatformAdmins []string `yaml:"platform_admins"`
	// AuditWebhook receives every org's audit events (and the platform's),
	// signed, from the audit chains (nil: none).
	AuditWebhook *Webhook `yaml:"audit_webhook"`
	// AllowPrivateNetworks lets what orgs' admins configure (audit
	// webhooks, the IdP URLs of connections set through the admin API)
	// reach loopback and private addresses (default off: an org admin
	// cannot make Gatehouse call into the operator's network).
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`
}

// Webhook is a signed HTTP destination.
type Webhook struct {
	URL string `yaml:"url"`
	// Secret is "whsec_" and the base64 of 24 to 64 random bytes (Standard
	// Webhooks); give it through ${ENV}.
	Secret string `yaml:"secret"`
}

// Domains configures the verification of orgs' login and email domains.
type Domains struct {
	// Verify requires each org domain to be proven by a DNS record before
	// it routes, gets a certificate or takes part in home-realm discovery.
	// Off, domains in this file are trusted as the operator's.
	Verify bool `yaml:"verify"`
	// Resolver is the DNS server to ask (host:port); default the system's.
	Resolver string `yaml:"resolver"`
	// Recheck is how often every claim is checked again (default 1h).
	Recheck time.Duration `yaml:"recheck"`
	// CNAMETarget, if set, also verifies a login domain that is a CNAME to
	// it (e.g. "edge.saas.example").
	CNAMETarget string `yaml:"cname_target"`
}

// Route is proxied: host + path prefix → upstream.
type Route struct {
	ID string `yaml:"id"`
	// Host is exact ("app.example.com") or a wildcard of one label
	// ("*.example.com").
	Host       string `yaml:"host"`
	PathPrefix string `yaml:"path_prefix"` // default "/"
	Upstream   string `yaml:"upstream"`
	// PublicPaths are path prefixes served without a session, matched on
	// the canonical path at segment boundaries.
	PublicPaths []string `yaml:"public_paths"`
	// Orgs admits only members of these org slugs (empty: every org).
	Orgs []string `yaml:"orgs"`
	// Org makes this a per-org app: its login goes straight to that org.
	Org string `yaml:"org"`
	// Audience of the assertion (default the route host).
	Audience string `yaml:"audience"`
	// PreserveHost sends the client's Host upstream instead of the upstream's.
	PreserveHost bool `yaml:"preserve_host"`
	// IdentityHeaders are extra header names the upstream trusts as
	// identity; they are stripped from client requests like X-Gatehouse-*.
	IdentityHeaders []string `yaml:"identity_headers"`
	// PassClientHeaders names headers of ClientHeaders that this route's
	// upstream receives as the client sent them (all others are removed).
	PassClientHeaders []string `yaml:"pass_client_headers"`
	// Upgrades are the protocols a client may switch this route's
	// connection to (default [websocket]; [] for none).
	Upgrades []string `yaml:"upgrades"`
	// Policy is a .rego file or directory applied to this route only.
	Policy string `yaml:"policy"`
}

// ClientHeaders are request headers that upstreams and their frameworks
// trust to say who the client is or which URL and method it asked for.
// A client could write them; Gatehouse removes them (in any case, "_" for
// "-") unless a route lists them in pass_client_headers, and sets
// X-Real-IP and the X-Forwarded-* family itself.
var ClientHeaders = []string{
	// Client address and the original scheme, host and port.
	"X-Real-IP", "True-Client-IP", "X-Client-IP", "Client-IP", "CF-Connecting-IP", "Fastly-Client-IP",
	"X-Cluster-Client-IP", "X-Original-Forwarded-For", "X-Forwarded", "Forwarded-For", "Forwarded",
	"X-ProxyUser-IP", "X-Originating-IP", "X-Remote-IP", "X-Remote-Addr", "Proxy-Client-IP", "WL-Proxy-Client-IP",
	"X-Envoy-External-Address", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Scheme", "X-Forwarded-Ssl",
	"X-Url-Scheme", "Front-End-Https", "X-Original-Host", "X-Host",
	// Client certificates, as TLS-terminating proxies pass them on
	// (Envoy, nginx, Tomcat's SSLValve, F5).
	"X-Forwarded-Client-Cert", "Ssl-Client-Cert", "X-Ssl-Client-Cert", "X-Client-Cert", "X-Ssl-Client-Verify",
	"X-Client-Verify", "X-Ssl-Client-Dn", "X-Client-Dn", "X-Ssl-Client-S-Dn",
	// The original URL, path or prefix (IIS, Symfony, Spring, Envoy, nginx).
	"X-Original-URL", "X-Rewrite-URL", "X-Original-URI", "X-Forwarded-Uri", "X-Forwarded-Path",
	"X-Forwarded-Prefix", "X-Envoy-Original-Path", "X-Original-Path",
	// The method.
	"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override",
}

type Org struct {
	Slug         string            `yaml:"slug"`
	Name         string            `yaml:"name"`
	Parent       string            `yaml:"parent"`
	EmailDomains []string          `yaml:"email_domains"`
	LoginDomain  string            `yaml:"login_domain"`
	Connection   Connection        `yaml:"connection"`
	Attributes   map[string]string `yaml:"attributes"`
	// TokenClaims are extra claims in the OpenID Provider's tokens of
	// this org's people, and where each comes from (as clients[].claims).
	TokenClaims map[string]string `yaml:"token_claims"`
	// Policy is a .rego file or directory for this org (and sub-orgs
	// without their own); it can only narrow the platform policy.
	Policy string `yaml:"policy"`
	// Branding dresses the org's pages (sub-orgs without their own use
	// it).
	Branding *Branding `yaml:"branding"`
	// Notifications are the org's message templates by kind
	// (invitation, password_reset, mfa_code, new_sign_in); parts left out
	// use the parent's, then Gatehouse's defaults.
	// They are sent to people, so ${...} in them is not expanded from the
	// environment (it is refused; "$${" is a literal "${").
	Notifications map[string]Notification `yaml:"notifications" noenv:"a message template is sent to people"`
	Users         []User                  `yaml:"users"`
	// MFA is the org's second-factor rule (docs/mfa.md); a sub-org's
	// only tightens its parent's.
	MFA OrgMFA `yaml:"mfa"`
	// Session limits the org's sessions, each at most the deployment's
	// (session.lifetime, session.idle_timeout).
	Session OrgSession `yaml:"session"`
	// NewSignInAlert emails a person who signs in to the org's password
	// pool from a browser and network not seen before (the new_sign_in
	// message; needs email).
	NewSignInAlert bool `yaml:"new_sign_in_alert"`
}

// SMS is how Gatehouse sends text messages: signed requests to the
// operator's webhook (internal/sms).
type SMS struct {
	Webhook SMSWebhook `yaml:"webhook"`
	// PerOrgHour and PerOrgDay: as Email's (defaults 500 and 5000).
	PerOrgHour int `yaml:"per_org_hour"`
	PerOrgDay  int `yaml:"per_org_day"`
}

// SMSWebhook is the receiver of texts.
type SMSWebhook struct {
	URL string `yaml:"url"`
	// Secret ("whsec_…") signs each request (Standard Webhooks).
	Secret  string        `yaml:"secret"`
	Timeout time.Duration `yaml:"timeout"`
}

// Limits are the per-org sending limits in force.
func (s *SMS) Limits() (hour, day int) {
	return (&Email{PerOrgHour: s.PerOrgHour, PerOrgDay: s.PerOrgDay}).Limits()
}

// Email is how Gatehouse sends email.
type Email struct {
	// From is the sender: "Name <address>" or an address.
	From string `yaml:"from"`
	SMTP SMTP   `yaml:"smtp"`
	// PerOrgHour and PerOrgDay bound the messages one org's people and
	// admins make Gatehouse queue (invitations, password resets, alerts),
	// defaults 500 and 5000.
	PerOrgHour int `yaml:"per_org_hour"`
	PerOrgDay  int `yaml:"per_org_day"`
}

// Sending limits per org, by default.
const (
	DefaultPerOrgHour = 500
	DefaultPerOrgDay  = 5000
)

// Limits are the per-org sending limits in force.
func (e *Email) Limits() (hour, day int) {
	hour, day = e.PerOrgHour, e.PerOrgDay
	if hour == 0 {
		hour = DefaultPerOrgHour
	}
	if day == 0 {
		day = DefaultPerOrgDay
	}
	return hour, day
}

// SMTP is the server email goes through.
type SMTP struct {
	Host string `yaml:"host"`
	// Port: default 587 (starttls), 465 (implicit), 25 (none).
	Port     int    `yaml:"port"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// TLS: starttls (default, required), implicit, or none (a relay on
	// this machine only).
	TLS string `yaml:"tls"`
	// CAFile is a PEM file of the CAs that verify the server (default:
	// the system's), for a relay with a private CA.
	CAFile string `yaml:"ca_file"`
}

// OrgMFA is an org's second-factor rule.
type OrgMFA struct {
	// Require: off (default), admins (people with the admin or auditor
	// role) or all.
	Require string `yaml:"require"`
	// AfterIdP: a sign-in at the org's IdP that did not report a second
	// factor goes on to Gatehouse's own (passkey, authenticator app)
	// instead of being refused.
	AfterIdP bool `yaml:"after_idp"`
	// Factors that count: passkey, totp (default: both).
	Factors []string `yaml:"factors"`
	// RememberDevice lets a browser skip the second step this long after
	// one (a duration from 1h to 2160h), "off" for none here and below;
	// default: the parent's, or none.
	RememberDevice string `yaml:"remember_device"`
}

// ParseRememberDevice reads an org's remember_device: the window, and whether
// it is turned off.
func ParseRememberDevice(s string) (time.Duration, bool, error) {
	switch s {
	case "":
		return 0, false, nil
	case "off":
		return 0, true, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Hour || d > 2160*time.Hour {
		return 0, false, fmt.Errorf("must be a duration from 1h to 2160h, or off")
	}
	return d, false, nil
}

// OrgSession are an org's session limits (0: the deployment's).
type OrgSession struct {
	Lifetime    time.Duration `yaml:"lifetime"`
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxPerPerson bounds a person's open sessions in the org; a new
	// sign-in ends the oldest (0: no bound).
	MaxPerPerson int `yaml:"max_per_person"`
}

// Notification is one message's Go templates (see docs/branding.md).
type Notification struct {
	Subject string `yaml:"subject"`
	Text    string `yaml:"text"`
	HTML    string `yaml:"html"`
	SMS     string `yaml:"sms"`
}

// Branding is an org's look: files served by Gatehouse itself (never a
// third-party CDN), colors, a font and texts. Files are checked by their
// content, not only their names (internal/brandasset), and relative file
// names are relative to the config file's folder.
type Branding struct {
	// Logo: .svg, .png, .jpg, .gif or .webp, at most 256 KiB.
	Logo string `yaml:"logo"`
	// Favicon: .svg, .png or .ico, at most 64 KiB.
	Favicon string `yaml:"favicon"`
	// Font: .woff2, .woff, .ttf or .otf, at most 512 KiB, used for the
	// whole page.
	Font string `yaml:"font"`
	// CSS: more CSS (a UTF-8 file without HTML, at most 64 KiB), after
	// the org's colors.
	CSS    string      `yaml:"css"`
	Colors BrandColors `yaml:"colors"`
	// Texts are shown on public pages: ${...} in them is refused, never
	// read from the environment.
	Texts BrandTexts `yaml:"texts" noenv:"this text is shown on public pages"`
}

// BrandColors are #rrggbb.
type BrandColors struct {
	// Primary: buttons and links (white text on it).
	Primary    string `yaml:"primary"`
	Background string `yaml:"background"`
	// Text on the card.
	Text string `yaml:"text"`
}

// BrandTexts replace the sign-in page's heading and add an introduction
// and a footer line.
type BrandTexts struct {
	Heading string `yaml:"heading"`
	Intro   string `yaml:"intro"`
	Footer  string `yaml:"footer"`
}

// Connection is how an org's people sign in: "password" (the org's
// password pool: users below), "oidc" (the org's own OpenID Provider) or
// "saml" (its SAML 2.0 IdP). A sub-org without one uses its parent's.
type Connection struct {
	Type string `yaml:"type"`
	// Settings are the protocol's own: the block named after Type
	// (oidc:, saml:), decoded into the struct its package registered
	// (see RegisterProtocol); nil for a protocol without one.
	Settings any `yaml:"-"`
	// SettingsKey is the block's key as written (validation refuses one
	// that is not Type's).
	SettingsKey string `yaml:"-"`
	// What federated sign-ins (oidc, saml) may create and change:
	// ExistingUsersOnly refuses people not already members (no just-in-time
	// provisioning).
	ExistingUsersOnly bool `yaml:"existing_users_only"`
	// AnyEmailDomain accepts addresses outside the org's email_domains.
	AnyEmailDomain bool `yaml:"any_email_domain"`
	// Claims overrides where email, name, groups and attributes come from.
	Claims Claims `yaml:"claims"`
	// GroupRoles maps IdP group names to roles; when set, roles follow the
	// IdP's groups at every sign-in.
	GroupRoles map[string][]string `yaml:"group_roles"`
	// DefaultRoles every member gets (default [member]; [] refuses people
	// whose groups map to no role).
	DefaultRoles *[]string `yaml:"default_roles"`
}

// Claims names claims (or SAML attributes) for user fields.
type Claims struct {
	Email  string `yaml:"email"`
	Name   string `yaml:"name"`
	Groups string `yaml:"groups"`
	// Attributes: Gatehouse attribute name → claim name.
	Attributes map[string]string `yaml:"attributes"`
}

type User struct {
	Email string `yaml:"email"`
	Name  string `yaml:"name"`
	// Password (plain, use ${ENV}) or PasswordHash (argon2id PHC string).
	Password     string   `yaml:"password"`
	PasswordHash string   `yaml:"password_hash"`
	Roles        []string `yaml:"roles"`
	Groups       []string `yaml:"groups"`
}
