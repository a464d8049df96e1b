// Package store defines Gatehouse's persistence contract. Every backend
// (Badger today, PostgreSQL later) implements Store and passes the
// conformance suite in store/storetest. Other packages reach data only
// through this interface.
package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Sentinel errors. Backends wrap them; callers test with errors.Is.
var (
	ErrNotFound      = errors.New("store: not found")
	ErrAlreadyExists = errors.New("store: already exists")
	// ErrHasChildren: an org with sub-orgs is not deleted (delete them
	// first: a cascade over a whole customer tree is never implicit).
	ErrHasChildren = errors.New("store: org has sub-orgs")
	// ErrClosed is returned by every call after Close.
	ErrClosed = errors.New("store: closed")
	// ErrUnavailable: the backend could not be reached, or did not answer
	// in time (a database restarting, unreachable or overloaded). Nothing
	// was decided; the same call may work a moment later. Callers answer
	// 503, not 500, and never read it as "not found".
	ErrUnavailable = errors.New("store: unavailable")
)

// Org is one business customer.
type Org struct {
	ID           string            `json:"id"`
	Slug         string            `json:"slug"`
	Name         string            `json:"name"`
	ParentID     string            `json:"parent_id,omitempty"`
	EmailDomains []string          `json:"email_domains,omitempty"`
	LoginDomain  string            `json:"login_domain,omitempty"`
	Connection   Connection        `json:"connection"`
	Attributes   map[string]string `json:"attributes,omitempty"`
	// TokenClaims map extra claims of the org's tokens to their sources
	// (config.ClaimSourceProblem).
	TokenClaims map[string]string `json:"token_claims,omitempty"`
	// Policy is the org's Rego policy (empty: none, or the parent's).
	Policy []PolicyModule `json:"policy,omitempty"`
	// Branding dresses the org's pages (nil: its parent's, or Gatehouse's).
	Branding *Branding `json:"branding,omitempty"`
	// Notifications are the org's message templates by kind.
	Notifications map[string]MessageTemplate `json:"notifications,omitempty"`
	// Domains are the org's claims on its login and email domains and
	// their verification (used when the deployment requires it).
	Domains []DomainClaim `json:"domains,omitempty"`
	// AuditWebhook streams the org's audit events to its SIEM (nil: none).
	AuditWebhook *AuditWebhook `json:"audit_webhook,omitempty"`
	// MFA and Session are the org's own rules (a sub-org's tighten its
	// parent's; idp.Directory.Rules gives the effective ones).
	MFA     MFARules     `json:"mfa,omitzero"`
	Session SessionRules `json:"session,omitzero"`
	// NewSignInAlert emails a person signing in to the org's password
	// pool from a browser and network not seen before (its sub-orgs too).
	NewSignInAlert bool `json:"new_sign_in_alert,omitempty"`
	// Declared: the org comes from the config file, which manages it.
	Declared  bool      `json:"declared,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// AuditWebhook is where an org's audit events are delivered, signed
// with Secret (Standard Webhooks: "whsec_" and base64 of the key).
type AuditWebhook struct {
	URL       string    `json:"url"`
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
}

// Branding is an org's look: asset names (content-addressed blobs under
// "branding/", served at /.gatehouse/assets/b/<name>) and texts.
type Branding struct {
	Logo    string `json:"logo,omitempty"`
	Favicon string `json:"favicon,omitempty"`
	// CSS is the org's stylesheet, composed of Colors, Font and CustomCSS
	// (apply.ComposeBrandCSS): what the pages link.
	CSS string `json:"css,omitempty"`
	// The parts CSS is made of: the font asset, the org's own CSS asset,
	// and its colors (#rrggbb).
	Font      string      `json:"font,omitempty"`
	CustomCSS string      `json:"custom_css,omitempty"`
	Colors    BrandColors `json:"colors,omitzero"`
	Heading   string      `json:"heading,omitempty"`
	Intro     string      `json:"intro,omitempty"`
	Footer    string      `json:"footer,omitempty"`
}

// BrandColors are an org's colors, #rrggbb ("" for the default).
type BrandColors struct {
	Primary    string `json:"primary,omitempty"`
	Background string `json:"background,omitempty"`
	Text       string `json:"text,omitempty"`
}

// MessageTemplate is one message's Go templates (idp/notify renders them).
type MessageTemplate struct {
	Subject string `json:"subject,omitempty"`
	Text    string `json:"text,omitempty"`
	HTML    string `json:"html,omitempty"`
	SMS     string `json:"sms,omitempty"`
}

// DomainClaim is an org's claim on a domain, proven by a DNS record.
type DomainClaim struct {
	Name string `json:"name"`
	// Kind is "login" (the org's login domain) or "email".
	Kind string `json:"kind"`
	// Token is the value the TXT record must carry; stable per claim.
	Token string `json:"token"`
	// Status: "pending" (never verified), "verified", or "suspended"
	// (verified once, failing now).
	Status     string    `json:"status"`
	CheckedAt  time.Time `json:"checked_at,omitzero"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	// Detail is why the last check failed.
	Detail string `json:"detail,omitempty"`
	// FirstVerifiedAt is when the claim was first verified (never reset:
	// it ranks contested claims).
	FirstVerifiedAt time.Time `json:"first_verified_at,omitzero"`
	// Failures counts a verified claim's consecutive checks that found
	// the record gone; FailingSince is when its checks started failing.
	Failures     int       `json:"failures,omitempty"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	// Retry asks for the next check at the short interval: the last one
	// was inconclusive (DNS did not answer) or found the record gone.
	Retry bool `json:"retry,omitempty"`
	// Method is the record that last proved the claim: "txt" or "cname"
	// ("" before its first proof).
	Method string `json:"method,omitempty"`
}

// Claim returns the org's claim of kind ("login" or "email") on name.
func (o Org) Claim(kind, name string) (DomainClaim, bool) {
	for _, c := range o.Domains {
		if c.Kind == kind && c.Name == name {
			return c, true
		}
	}
	return DomainClaim{}, false
}

// Uses reports whether c is a claim on one of o's current domains (a
// released org keeps claims it no longer uses, with their tokens, until
// another org takes them over).
func (o Org) Uses(c DomainClaim) bool {
	if c.Kind == "login" {
		return o.LoginDomain != "" && strings.EqualFold(o.LoginDomain, c.Name)
	}
	for _, d := range o.EmailDomains {
		if strings.EqualFold(d, c.Name) {
			return true
		}
	}
	return false
}

// Domain claim statuses.
const (
	DomainPending   = "pending"
	DomainVerified  = "verified"
	DomainSuspended = "suspended"
)

// PolicyModule is one Rego source file of an org policy.
type PolicyModule struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

// Connection says how an org's users sign in. Type is "password", "oidc"
// or "saml"; Config holds the protocol's own settings as JSON (its
// package owns their schema: idp/oidc.Config, idp/saml.Config).
type Connection struct {
	Type   string          `json:"type"`
	Config json.RawMessage `json:"config,omitempty"`
	// Provisioning says what a federated sign-in may create and change.
	Provisioning Provisioning `json:"provisioning"`
}

// Provisioning maps a federated identity onto a user and membership.
type Provisioning struct {
	// ExistingUsersOnly refuses people who are not members yet (no
	// just-in-time creation).
	ExistingUsersOnly bool `json:"existing_users_only,omitempty"`
	// AnyEmailDomain lets the IdP sign in addresses outside the org's
	// email domains. Off: an IdP cannot mint users of another org.
	AnyEmailDomain bool `json:"any_email_domain,omitempty"`
	// Claims names the claim (or SAML attribute) for each field; empty
	// means the protocol's usual name.
	Claims ClaimMapping `json:"claims"`
	// GroupRoles maps IdP groups to Gatehouse roles. When set, the IdP is
	// the source of truth: roles are recomputed at every sign-in.
	GroupRoles map[string][]string `json:"group_roles,omitempty"`
	// DefaultRoles every member gets (nil: ["member"]; empty: none, and
	// a person whose groups map to no role is refused).
	DefaultRoles []string `json:"default_roles"`
}

// ClaimMapping names where each user field comes from.
type ClaimMapping struct {
	Email  string `json:"email,omitempty"`
	Name   string `json:"name,omitempty"`
	Groups string `json:"groups,omitempty"`
	// Attributes maps a Gatehouse attribute name to a claim name.
	Attributes map[string]string `json:"attributes,omitempty"`
}

// User is a person. Email is unique across the deployment; what a user may
// do in an org lives on the Membership.
type User struct {
	ID       string `json:"id"`
	Email    string `json:"email"`
	Name     string `json:"name,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
	// PlatformAdmin: the SaaS team's admin, over every org (declared in
	// the config file's platform_admins).
	PlatformAdmin bool      `json:"platform_admin,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Membership ties a user to an org. PasswordHash is the org-scoped password
// pool credential (argon2id PHC string), empty for federated members.
type Membership struct {
	UserID       string   `json:"user_id"`
	OrgID        string   `json:"org_id"`
	Roles        []string `json:"roles,omitempty"`
	Groups       []string `json:"groups,omitempty"`
	PasswordHash string   `json:"password_hash,omitempty"`
	// Subject is the federated identity this membership is linked to
	// ("oidc:<issuer>#<sub>"), set at the first federated sign-in; a later
	// sign-in with the same email but another subject is refused.
	Subject string `json:"subject,omitempty"`
	// Attributes are mapped from the IdP at each sign-in.
	Attributes map[string]string `json:"attributes,omitempty"`
	// Disabled: an org admin suspended the person in this org (their
	// sessions there end; other orgs are not affected).
	Disabled bool `json:"disabled,omitempty"`
	// Declared: the membership comes from the config file, which
	// manages it.
	Declared bool `json:"declared,omitempty"`
	// Factors are the person's own second factors for the org's password
	// pool (nil: none).
	Factors   *Factors  `json:"factors,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Factors are a person's second factors in one org.
type Factors struct {
	TOTP     *TOTPFactor `json:"totp,omitempty"`
	Passkeys []Passkey   `json:"passkeys,omitempty"`
	// RecoveryCodes are the SHA-256 hashes (hex) of single-use codes,
	// shown once when made; a used one is removed.
	RecoveryCodes []string `json:"recovery_codes,omitempty"`
}

// TOTPFactor is an authenticator app (RFC 6238: SHA-1, 6 digits, 30 s).
type TOTPFactor struct {
	// Secret is the shared key, base32.
	Secret string `json:"secret"`
	// LastStep is the last time step a code was accepted for: a code is
	// good once, and never one of an earlier step.
	LastStep  int64     `json:"last_step,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Passkey is a WebAuthn credential (a passkey or a security key).
type Passkey struct {
	// ID is the credential ID; RPID the host (relying party ID) it was
	// registered on, where alone it works.
	ID   []byte `json:"id"`
	RPID string `json:"rp_id"`
	Name string `json:"name"`
	// Credential is the WebAuthn library's record (public key, counter,
	// flags), opaque here.
	Credential json.RawMessage `json:"credential"`
	CreatedAt  time.Time       `json:"created_at"`
	LastUsedAt time.Time       `json:"last_used_at,omitzero"`
}

// Has reports whether f holds any factor.
func (f *Factors) Has() bool { return f != nil && (f.TOTP != nil || len(f.Passkeys) > 0) }

// MFARules are an org's second-factor rules. A sub-org's rules only
// tighten its parent's.
type MFARules struct {
	// Require is "off" (or ""), "admins" (people with an admin or auditor
	// role) or "all".
	Require string `json:"require,omitempty"`
	// AfterIdP: a federated sign-in without the IdP's second factor goes
	// on to Gatehouse's own second step instead of being refused.
	AfterIdP bool `json:"after_idp,omitempty"`
	// Factors are the factors that count (FactorPasskey, FactorTOTP;
	// empty: any). Recovery codes always do.
	Factors []string `json:"factors,omitempty"`
	// RememberDevice lets a browser skip the second step this long after
	// one (0: the parent's, or none); NoRememberDevice turns it off here
	// and below.
	RememberDevice   time.Duration `json:"remember_device,omitempty"`
	NoRememberDevice bool          `json:"no_remember_device,omitempty"`
}

// Second factors an org may allow.
const (
	FactorPasskey = "passkey"
	FactorTOTP    = "totp"
	// FactorEmail is a code sent to the person's address: the weakest,
	// counted only where an org names it.
	FactorEmail = "email"
)

// MFA requirements, weakest first.
const (
	MFAOff    = "off"
	MFAAdmins = "admins"
	MFAAll    = "all"
)

// MFARequired reports whether a rule's require value asks a person with
// roles for a second factor.
func MFARequired(require string, roles []string) bool {
	switch require {
	case MFAAll:
		return true
	case MFAAdmins:
		return slices.ContainsFunc(roles, func(r string) bool { return r == RoleAdmin || r == RoleAuditor })
	}
	return false
}

// StricterMFA is the stricter of two require values.
func StricterMFA(a, b string) string {
	rank := func(s string) int { return map[string]int{MFAAdmins: 1, MFAAll: 2}[s] }
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// SessionRules are an org's limits on its sessions, each at most the
// deployment's (0: the deployment's).
type SessionRules struct {
	Lifetime    time.Duration `json:"lifetime,omitempty"`
	IdleTimeout time.Duration `json:"idle_timeout,omitempty"`
	// MaxPerPerson bounds a person's open sessions in the org: a new
	// sign-in ends the oldest past it (0: no bound).
	MaxPerPerson int `json:"max_per_person,omitempty"`
}

// Member is one org member: the user and their membership there.
type Member struct {
	User       User       `json:"user"`
	Membership Membership `json:"membership"`
}

// MemberQuery pages through an org's members in order of lowercased
// email, then user ID.
type MemberQuery struct {
	OrgID string
	// Search keeps members whose email or name contains it, ignoring
	// case ("" keeps all).
	Search string
	// AfterEmail and AfterID are the cursor: the lowercased email and user
	// ID of the last member of the previous page (empty: from the start).
	AfterEmail string
	AfterID    string
	Limit      int // 0: 100
}

// APIToken is a bearer credential for the admin API, scoped to one org
// (OrgID "" and Role RolePlatformAdmin: the whole deployment). The secret
// is shown once; only its hash is kept.
type APIToken struct {
	ID    string `json:"id"`
	OrgID string `json:"org_id,omitempty"`
	Role  string `json:"role"`
	Name  string `json:"name,omitempty"`
	// Hash is the hex SHA-256 of the secret part.
	Hash string `json:"hash"`
	// CreatedBy is the user who made the token ("" for one made by
	// `gatehouse admin bootstrap` or dev mode); the token lives only as
	// long as its maker keeps the rights it grants.
	CreatedBy string `json:"created_by,omitempty"`
	// ParentTokenID is the token this one was made with ("" for one made
	// by a person or the command line): it is good only while that one is.
	ParentTokenID string    `json:"parent_token_id,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	ExpiresAt     time.Time `json:"expires_at"`
	LastUsedAt    time.Time `json:"last_used_at,omitzero"`
	RevokedAt     time.Time `json:"revoked_at,omitzero"`
}

// OIDCClient is an app registered through the admin API (the config
// file's apps are not stored). OrgID, not a slug, ties a per-org app to
// its org: an org made later under the same slug is not it.
type OIDCClient struct {
	ID    string `json:"id"`
	OrgID string `json:"org_id,omitempty"` // "": a shared app
	// Settings are the provider's to read (idp/provider).
	Settings json.RawMessage `json:"settings"`
	// SecretHash is the SHA-256 of the secret Gatehouse made (none for a
	// public client or one that signs with its keys); OldSecretHash is the
	// previous one's, taken until OldSecretUntil, so that an app rolls
	// over to a new secret without an outage.
	SecretHash     []byte    `json:"secret_hash,omitempty"`
	OldSecretHash  []byte    `json:"old_secret_hash,omitempty"`
	OldSecretUntil time.Time `json:"old_secret_until,omitzero"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Invitation asks a person to join an org with roles. Its link carries a
// secret of which only the hash is kept; accepting it (once, before
// ExpiresAt) makes the person a member. At most one is pending per org
// and address.
type Invitation struct {
	ID    string   `json:"id"`
	OrgID string   `json:"org_id"`
	Email string   `json:"email"` // lowercased
	Name  string   `json:"name,omitempty"`
	Roles []string `json:"roles,omitempty"`
	// Phone (E.164), if given, also gets the invitation as a text.
	Phone string `json:"phone,omitempty"`
	// Hash is the hex SHA-256 of the link's secret.
	Hash string `json:"hash"`
	// CreatedBy is the user who invited ("" for a token made by the
	// command line): the invitation lives only as long as its maker.
	CreatedBy string `json:"created_by,omitempty"`
	// Scope is the org whose admin invited ("" for a platform admin): a
	// person who is already a member of an org outside it (another
	// customer's) joins only through a platform admin's invitation.
	Scope     string    `json:"scope,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	// SentAt is when the link was last made (created or resent).
	SentAt    time.Time `json:"sent_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RefreshFamily is the chain of refresh tokens one sign-in gave one
// OIDC client: each use rotates it to the next generation, and only the
// current generation works. An older one presented again means a token
// was stolen: the family is revoked (reuse detection).
type RefreshFamily struct {
	ID       string `json:"id"`
	ClientID string `json:"client_id"`
	UserID   string `json:"user_id"`
	OrgID    string `json:"org_id"`
	// SessionID binds the family to a sign-in: it dies with the session.
	// "" for offline access, which outlives it.
	SessionID  string    `json:"session_id,omitempty"`
	Scopes     []string  `json:"scopes"`
	Resource   string    `json:"resource,omitempty"`
	AuthTime   time.Time `json:"auth_time"`
	AMR        []string  `json:"amr,omitempty"`
	Generation uint64    `json:"generation"`
	CreatedAt  time.Time `json:"created_at"`
	UsedAt     time.Time `json:"used_at,omitzero"`
	ExpiresAt  time.Time `json:"expires_at"`
	RevokedAt  time.Time `json:"revoked_at,omitzero"`
}

// Admin roles: granted through a membership's roles (RoleAdmin,
// RoleAuditor) or, for the platform, the user's PlatformAdmin flag.
const (
	RolePlatformAdmin = "platform_admin"
	RoleAdmin         = "admin"
	RoleAuditor       = "auditor"
)

// Session is the server-side record behind every session cookie. Cookies
// carry only its ID (sealed); revoking the record ends every cookie.
type Session struct {
	ID         string `json:"id"`
	UserID     string `json:"user_id"`
	OrgID      string `json:"org_id"`
	Connection string `json:"connection"`
	// MFA reports whether the sign-in used a second factor (the IdP's amr).
	MFA bool `json:"mfa,omitempty"`
	// AMR are the sign-in's methods (RFC 8176): pwd, otp, mfa, ...
	AMR []string `json:"amr,omitempty"`
	// MFAAt is when the person last proved a second factor in this
	// session (its sign-in, or a later step-up); zero without one.
	MFAAt time.Time `json:"mfa_at,omitzero"`
	// Federation names the connection a federated sign-in went through
	// (its owner org and settings) and Subject the IdP identity; switching
	// org without signing in again needs both to match.
	Federation string `json:"federation,omitempty"`
	Subject    string `json:"subject,omitempty"`
	// LogoutHint is what the connection needs to end the IdP's session
	// too (SAML NameID and SessionIndex), opaque here.
	LogoutHint string    `json:"logout_hint,omitempty"`
	ClientAddr string    `json:"client_addr,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
	// RevokedAt is set (never cleared) by logout or an admin.
	RevokedAt time.Time `json:"revoked_at,omitzero"`
}

// Active reports whether s may still authenticate requests at now.
func (s Session) Active(now time.Time, idle time.Duration) bool {
	if !s.RevokedAt.IsZero() || !now.Before(s.ExpiresAt) {
		return false
	}
	return idle <= 0 || now.Sub(s.LastSeenAt) < idle
}

// SigningKey is a workspace key used for identity assertions and, later,
// tokens. PrivateKey is PKCS#8 DER.
type SigningKey struct {
	ID         string    `json:"id"`
	Algorithm  string    `json:"alg"`
	PrivateKey []byte    `json:"private_key"`
	CreatedAt  time.Time `json:"created_at"`
	// ActiveAt is when the key starts signing; it is published before.
	ActiveAt time.Time `json:"active_at"`
	// RetiredAt is when it stops signing; zero while current.
	RetiredAt time.Time `json:"retired_at,omitzero"`
	// DeleteAt is when the key may leave the JWKS: after every token it
	// signed has expired.
	DeleteAt time.Time `json:"delete_at,omitzero"`
}

// Blob is a stored opaque value.
type Blob struct {
	Value    []byte
	Modified time.Time
}

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// ValidBlobKey reports whether key is a usable blob key: slash-separated
// non-empty segments of printable characters, none "." or "..".
// UserBlobKey is the key of a blob about one person (parts joined by
// "/"): DeleteUser removes every blob under UserBlobKey(id), so a
// package keeping data about people there needs no cascade of its own.
func UserBlobKey(userID string, parts ...string) string {
	return strings.Join(append([]string{"users", userID}, parts...), "/")
}

func ValidBlobKey(key string) bool {
	if key == "" || len(key) > 1024 {
		return false
	}
	for _, seg := range strings.Split(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		for _, r := range seg {
			if r < 0x20 || r == 0x7f {
				return false
			}
		}
	}
	return true
}

// AuditEvent is one entry of the append-only audit trail.
type AuditEvent struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"`
	OrgID   string            `json:"org_id,omitempty"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Target  string            `json:"target,omitempty"`
	Outcome string            `json:"outcome,omitempty"`
	Details map[string]string `json:"details,omitempty"`
	// Each org's events (and the platform's, OrgID "") form a hash chain,
	// filled in by AppendAudit: Seq numbers them from 1, Prev is the Hash
	// of the one before ("" for the first), Hash is AuditHash of this one.
	// A changed, removed or inserted event breaks the chain (VerifyAudit).
	Seq  uint64 `json:"seq,omitempty"`
	Prev string `json:"prev,omitempty"`
	Hash string `json:"hash,omitempty"`
}

// AuditChainHead is the last event of one org's audit chain.
type AuditChainHead struct {
	OrgID string `json:"org_id"`
	Seq   uint64 `json:"seq"`
	Hash  string `json:"hash"`
}

// AuditQuery selects audit events, newest first: with OrgID set, in the
// org's chain order (last appended first), which is what the BeforeSeq
// cursor pages through; the walk stops at the first event older than
// Since. Without OrgID, by time across every org.
type AuditQuery struct {
	OrgID string // empty: every org
	Since time.Time
	// Until is exclusive (zero: no bound).
	Until time.Time
	// Action, Actor and Target keep only events equal to them ("": any).
	Action string
	Actor  string
	Target string
	// BeforeSeq, with OrgID set, keeps events of the org's chain before
	// that sequence number: the cursor of the next page.
	BeforeSeq uint64
	Limit     int // 0: backend default (100)
}

// Store is the persistence contract. Every method takes ctx first. Update
// methods are compare-and-swap: fn receives the current record and returns
// the new one; backends retry fn on a concurrent write, so fn must be pure.
// An error from fn aborts the update and is returned unchanged.
type Store interface {
	CreateOrg(ctx context.Context, o Org) error
	GetOrg(ctx context.Context, id string) (Org, error)
	GetOrgBySlug(ctx context.Context, slug string) (Org, error)
	ListOrgs(ctx context.Context) ([]Org, error)
	UpdateOrg(ctx context.Context, id string, fn func(Org) (Org, error)) (Org, error)
	// DeleteOrg deletes the org with its memberships (and their places in
	// the member lists), its members' sessions in it and its API tokens;
	// ErrHasChildren if it has sub-orgs, ErrNotFound if there is no such
	// org. Its audit chain is kept.
	//
	// The org itself goes at once: from the moment it is gone, GetOrg,
	// GetOrgBySlug and ListOrgs no longer show it, its slug is free, and
	// no membership or API token can be added to it. An org can have more
	// members than one transaction holds, so the rest may go after it, in
	// several transactions, but before DeleteOrg returns nil. Meanwhile a
	// backend that splits the work shows none of the leftovers (Badger:
	// memberships and tokens of an org being deleted are not found, new
	// sessions in it are refused) or, if it cannot hide one, documents
	// it; a session left in the org cannot be used anyway, since its org
	// is not found. If the process dies part way, the deletion is
	// finished when the store is next opened, and until then an org of
	// the same ID cannot be created (ErrAlreadyExists). An error after the
	// org itself is gone says so; DeleteOrg called again finishes the
	// deletion and answers ErrNotFound.
	DeleteOrg(ctx context.Context, id string) error

	CreateUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByEmail matches the email case-insensitively.
	GetUserByEmail(ctx context.Context, email string) (User, error)
	UpdateUser(ctx context.Context, id string, fn func(User) (User, error)) (User, error)
	// DeleteUser deletes the user with its memberships, sessions, refresh
	// token families, the blobs under UserBlobKey(id), and the API tokens
	// and invitations it made, in one transaction.
	DeleteUser(ctx context.Context, id string) error

	// CreateMembership stores m; its org must exist (ErrNotFound), so
	// that a membership never outlives a concurrent delete of the org.
	// Its user need not exist yet.
	CreateMembership(ctx context.Context, m Membership) error
	GetMembership(ctx context.Context, userID, orgID string) (Membership, error)
	ListMembershipsByUser(ctx context.Context, userID string) ([]Membership, error)
	ListMembershipsByOrg(ctx context.Context, orgID string) ([]Membership, error)
	// ListMembers returns one page of an org's members with their users
	// (see MemberQuery); it stays fast with 100,000 members.
	ListMembers(ctx context.Context, q MemberQuery) ([]Member, error)
	UpdateMembership(ctx context.Context, userID, orgID string, fn func(Membership) (Membership, error)) (Membership, error)
	// DeleteMembership deletes the membership and the user's sessions in
	// that org, in one transaction.
	DeleteMembership(ctx context.Context, userID, orgID string) error

	// CreateSession stores s; ErrNotFound if its org is being deleted
	// (see DeleteOrg). The org need not exist otherwise.
	CreateSession(ctx context.Context, s Session) error
	GetSession(ctx context.Context, id string) (Session, error)
	UpdateSession(ctx context.Context, id string, fn func(Session) (Session, error)) (Session, error)
	ListSessionsByUser(ctx context.Context, userID string) ([]Session, error)
	// DeleteExpiredSessions removes sessions that expired before t.
	DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error)

	CreateSigningKey(ctx context.Context, k SigningKey) error
	ListSigningKeys(ctx context.Context) ([]SigningKey, error)
	UpdateSigningKey(ctx context.Context, id string, fn func(SigningKey) (SigningKey, error)) (SigningKey, error)
	DeleteSigningKey(ctx context.Context, id string) error

	// CreateAPIToken stores t; its org (if any) and its maker (if any)
	// must exist, so that a token never outlives a concurrent delete of
	// either.
	CreateAPIToken(ctx context.Context, t APIToken) error
	GetAPIToken(ctx context.Context, id string) (APIToken, error)
	// ListAPITokens lists an org's tokens ("": the platform's), oldest
	// first.
	ListAPITokens(ctx context.Context, orgID string) ([]APIToken, error)
	UpdateAPIToken(ctx context.Context, id string, fn func(APIToken) (APIToken, error)) (APIToken, error)
	DeleteAPIToken(ctx context.Context, id string) error

	// CreateInvitation stores inv; its org and its maker (if any) must
	// exist. ErrAlreadyExists: the ID, the hash, or a pending invitation
	// of the same org and email is taken.
	CreateInvitation(ctx context.Context, inv Invitation) error
	GetInvitation(ctx context.Context, id string) (Invitation, error)
	// ListInvitations lists an org's invitations, oldest first.
	ListInvitations(ctx context.Context, orgID string) ([]Invitation, error)
	// UpdateInvitation may change everything but the ID, org, email and
	// maker (a resend changes the hash and the expiry).
	UpdateInvitation(ctx context.Context, id string, fn func(Invitation) (Invitation, error)) (Invitation, error)
	DeleteInvitation(ctx context.Context, id string) error
	// TakeInvitation deletes and returns the invitation whose hash is
	// hash, if it expires after now: one caller, once. ErrNotFound for an
	// unknown, used or expired one (an expired one is kept, for resending).
	TakeInvitation(ctx context.Context, hash string, now time.Time) (Invitation, error)
	// GetInvitationByHash reads without taking, for showing the link's page.
	GetInvitationByHash(ctx context.Context, hash string) (Invitation, error)

	// CreateOIDCClient stores c; its org, if it has one, must exist. An
	// app goes with its org.
	CreateOIDCClient(ctx context.Context, c OIDCClient) error
	GetOIDCClient(ctx context.Context, id string) (OIDCClient, error)
	// ListOIDCClients lists every registered app, by ID.
	ListOIDCClients(ctx context.Context) ([]OIDCClient, error)
	// UpdateOIDCClient may change everything but the ID and the org.
	UpdateOIDCClient(ctx context.Context, id string, fn func(OIDCClient) (OIDCClient, error)) (OIDCClient, error)
	DeleteOIDCClient(ctx context.Context, id string) error

	// CreateRefreshFamily stores f; its user and org must exist.
	CreateRefreshFamily(ctx context.Context, f RefreshFamily) error
	GetRefreshFamily(ctx context.Context, id string) (RefreshFamily, error)
	// UpdateRefreshFamily may change everything but the ID, client,
	// user, org, session and expiry.
	UpdateRefreshFamily(ctx context.Context, id string, fn func(RefreshFamily) (RefreshFamily, error)) (RefreshFamily, error)
	// ListRefreshFamiliesBySession lists a session's families.
	ListRefreshFamiliesBySession(ctx context.Context, sessionID string) ([]RefreshFamily, error)
	// DeleteExpiredRefreshFamilies removes families that expired before t.
	DeleteExpiredRefreshFamilies(ctx context.Context, before time.Time) (int, error)

	AppendAudit(ctx context.Context, e AuditEvent) error
	ListAudit(ctx context.Context, q AuditQuery) ([]AuditEvent, error)
	// AuditHeads lists the head of every org's audit chain.
	AuditHeads(ctx context.Context) ([]AuditChainHead, error)
	// WalkAudit calls fn with orgID's chained events after sequence
	// number after (0: all), oldest first.
	WalkAudit(ctx context.Context, orgID string, after uint64, fn func(AuditEvent) error) error

	// PutOnce stores a single-use value (login hand-off tickets, later SAML
	// request IDs and replay caches) under kind/id until expires.
	// ErrAlreadyExists if the id is taken.
	PutOnce(ctx context.Context, kind, id string, value []byte, expires time.Time) error
	// TakeOnce atomically reads and deletes it: a second Take, or a Take
	// after expiry, returns ErrNotFound.
	TakeOnce(ctx context.Context, kind, id string) ([]byte, error)
	// GetOnce reads it without taking it (ErrNotFound after expiry).
	GetOnce(ctx context.Context, kind, id string) ([]byte, error)
	// UpdateOnce replaces its value with fn's, atomically, keeping its
	// expiry (ErrNotFound if taken or expired; fn's error is returned).
	UpdateOnce(ctx context.Context, kind, id string, fn func([]byte) ([]byte, error)) error

	// PutBlob stores an opaque value under a slash-separated key
	// ("certificates/acme/login.acme.com/login.acme.com.crt"): certificates
	// and ACME accounts, kept with everything else. It overwrites.
	PutBlob(ctx context.Context, key string, value []byte) error
	// GetBlob returns the value and when it was last written; ErrNotFound.
	GetBlob(ctx context.Context, key string) (Blob, error)
	// DeleteBlobs removes key and every key under key + "/". Removing
	// nothing is not an error.
	DeleteBlobs(ctx context.Context, key string) error
	// ListBlobs returns key and every key under key + "/" (every key with
	// an empty key), in key order, without values.
	ListBlobs(ctx context.Context, key string) ([]BlobInfo, error)

	// AcquireLock takes the named lock for owner until ttl passes, or
	// extends it if owner holds it already. It reports false if another
	// owner holds it. Locks expire, so a holder that died blocks nobody
	// for longer than ttl.
	AcquireLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// ReleaseLock frees the lock if owner holds it.
	ReleaseLock(ctx context.Context, name, owner string) error

	// Secret returns the named deployment secret, storing value first if
	// none exists yet, so that every node converges on one value.
	Secret(ctx context.Context, name string, value []byte) ([]byte, error)

	// Ping reports whether the backend can serve (for /readyz).
	Ping(ctx context.Context) error
	Close() error
}

// EphemeralPrefix starts the kinds of single-use values that may be lost
// in a crash of the store without harm: a sign-in in progress (its flow,
// its hand-off ticket, its pending second factor), a budget's count. A
// backend may write them without waiting for its disk (PostgreSQL:
// synchronous_commit off). Nothing acknowledged depends on them alone:
// the synced write an outcome ends with (a session made, say) makes every
// earlier write durable too, on PostgreSQL whose log is one sequence. A
// value an acknowledged outcome rests on (a spent code, a revoked token,
// a replay marker, an emailed link) is never of an ephemeral kind.
const EphemeralPrefix = "tmp."

// Ephemeral reports whether kind's values may be written without waiting
// for the disk (EphemeralPrefix).
func Ephemeral(kind string) bool { return strings.HasPrefix(kind, EphemeralPrefix) }

// Change is a record that changed, as a Watcher tells it: Kind is
// "session", "user" (the person or one of their memberships), "org",
// "app" (an OIDC client registered at runtime), "key" (a signing key), or
// "resync" (notifications may have been missed: reread everything).
type Change struct {
	Kind string
	ID   string
}

// Watcher is a store that tells every node of changes as they commit
// (PostgreSQL's LISTEN/NOTIFY), so that a revocation reaches all nodes
// at once instead of at their next periodic reread. Watch calls fn for
// each change until ctx ends, reconnecting by itself (with a "resync"
// after each reconnection); the periodic rereads stay the fallback.
type Watcher interface {
	Watch(ctx context.Context, fn func(Change))
}

// Secret32 returns the deployment's 32-byte secret name, made at random
// the first time it is asked for and the same on every node after.
func Secret32(ctx context.Context, st Store, name string) ([]byte, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v, err := st.Secret(ctx, name, b)
	if err != nil {
		return nil, fmt.Errorf("store: secret %s: %w", name, err)
	}
	if len(v) != 32 {
		return nil, fmt.Errorf("store: secret %s has %d bytes, want 32", name, len(v))
	}
	return v, nil
}

// AuditTime is an event's time as stored and hashed: UTC, to the
// microsecond (what every backend keeps).
func AuditTime(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// AuditHash is the hash that chains e: SHA-256 over its JSON with Hash
// empty and its time as stored. Prev is in it, so each event vouches for
// the whole chain before it.
func AuditHash(e AuditEvent) string {
	e.Hash = ""
	e.Time = AuditTime(e.Time)
	b, _ := json.Marshal(e) // strings, numbers, a string map: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ChainAudit fills e's chain fields to follow head (the org's last event;
// the zero head for its first).
func ChainAudit(e *AuditEvent, head AuditChainHead) {
	e.Time = AuditTime(e.Time)
	e.Seq, e.Prev = head.Seq+1, head.Hash
	e.Hash = AuditHash(*e)
}

// VerifyAudit checks one org's chain against its head: every event in
// order, unchanged, none missing, none added, none removed from its end.
// It returns how many events it checked, and the first break it finds.
func VerifyAudit(ctx context.Context, st Store, head AuditChainHead) (uint64, error) {
	var n uint64
	prev := ""
	err := st.WalkAudit(ctx, head.OrgID, 0, func(e AuditEvent) error {
		switch {
		case e.Seq != n+1:
			return fmt.Errorf("event %s has sequence number %d after %d: events are missing or were added", e.ID, e.Seq, n)
		case e.Prev != prev:
			return fmt.Errorf("event %s (%d) does not link to the event before it: that one was changed or replaced", e.ID, e.Seq)
		case AuditHash(e) != e.Hash:
			return fmt.Errorf("event %s (%d) was changed after it was written", e.ID, e.Seq)
		}
		n, prev = e.Seq, e.Hash
		return nil
	})
	if err != nil {
		return n, err
	}
	if n != head.Seq || prev != head.Hash {
		return n, fmt.Errorf("the chain ends at event %d, but %d were written: events at its end were removed", n, head.Seq)
	}
	return n, nil
}
