// Package connection is the contract between sign-in (package idp) and
// the protocols an org signs in with: oidc, saml, password. As in Dex, a
// connection is any value; what it can do is a set of small role
// interfaces the sign-in flow type-switches on, and each protocol package
// has the same shape: a Config and an Open function, registered in a
// factory map by the server, so that idp imports no protocol by name.
package connection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// Identity is what a connection learned about the person signing in.
type Identity struct {
	// UserID is set by connections that check existing members
	// (password); federated identities are provisioned by the caller.
	UserID string
	// Issuer and Subject name the person at the IdP (OIDC iss and sub,
	// SAML entity ID and NameID).
	Issuer, Subject string
	Email           string
	EmailVerified   bool
	Name            string
	Groups          []string
	Attributes      map[string]string
	// MFA reports a second factor at the IdP (OIDC amr, SAML AuthnContext).
	MFA bool
	// AMR are further methods of the sign-in (RFC 8176), such as otp for
	// Gatehouse's own second step.
	AMR []string
	// Passwordless: a passkey alone signed the person in (no password).
	Passwordless bool
	// MFAAt is when the second factor was proved, if not now (a
	// remembered device's).
	MFAAt time.Time
	// Claims are every claim (or SAML attribute) as strings, for the
	// org's claim mapping.
	Claims map[string][]string
	// LogoutHint is kept with the session for Logout (opaque).
	LogoutHint string
}

// BeginRequest starts a redirect sign-in.
type BeginRequest struct {
	// State is the single-use flow ID to send to the IdP (OIDC state, SAML
	// RelayState); the caller binds it to the browser.
	State string
	// CallbackURL is where the IdP must send the browser back.
	CallbackURL string
	// LoginHint is the email the person typed, if any.
	LoginHint string
	// RequireMFA: the org requires a second factor; the connection asks
	// the IdP for one as its settings say (OIDC acr_values, SAML
	// RequestedAuthnContext).
	RequireMFA bool
	// Fresh asks the IdP to sign the person in again, not to reuse its
	// own session (OIDC prompt=login and max_age=0, SAML ForceAuthn): a
	// step-up, or an app's prompt=login.
	Fresh bool
}

// Redirect connections send the browser to an IdP and finish at a callback.
type Redirect interface {
	// Begin returns the IdP URL to send the browser to, and flow data the
	// caller stores with the flow and hands back to Finish.
	Begin(ctx context.Context, req BeginRequest) (redirect string, flow []byte, err error)
	// Finish verifies the IdP's response to the flow that Begin started.
	Finish(ctx context.Context, r *http.Request, req BeginRequest, flow []byte) (Identity, error)
}

// Tracer connections describe an IdP's answer for the login tracer (an
// admin's test sign-in): each part as it arrived, and the answer decoded
// (raw, "" if it has no text form). verified says whether Finish
// accepted it: what only the SP's keys open (an encrypted assertion) is
// shown only then, so a test flow never decrypts someone else's
// captured response.
type Tracer interface {
	Trace(r *http.Request, verified bool) (items []TraceItem, raw string)
}

// TraceItem is one labeled part of what arrived.
type TraceItem struct {
	Label string `json:"label"`
	Value string `json:"value"`
}

// Metadata connections publish a document for the IdP's administrator
// (SAML SP metadata).
type Metadata interface {
	Metadata(ctx context.Context) ([]byte, error)
}

// PostBinding connections get the IdP's answer as a cross-site form POST
// to the org's ACS (SAML's HTTP-POST binding), not as a redirect to the
// callback: the flow cookie must reach such a POST, and answers arrive
// only at the ACS.
type PostBinding interface {
	AnswersByPost()
}

// Unsolicited connections may accept a sign-in the IdP started (SAML
// IdP-initiated), if the org allows it; landing is the only page such a
// sign-in may go to.
type Unsolicited interface {
	FinishUnsolicited(ctx context.Context, r *http.Request) (id Identity, landing string, err error)
}

// Logout connections end the IdP's session too (SAML single logout).
type Logout interface {
	// LogoutURL is where to send the browser to sign out at the IdP, and
	// the request's ID to match its answer; "" if the IdP offers none.
	LogoutURL(ctx context.Context, hint, relayState string) (to, requestID string, err error)
	// FinishLogout checks the IdP's answer to the request requestID.
	FinishLogout(ctx context.Context, r *http.Request, requestID string) error
}

// IdPLogout connections accept a single logout the IdP starts (a SAML
// LogoutRequest sent through the browser), and answer it.
type IdPLogout interface {
	// AcceptLogout validates the IdP's request (signature, destination,
	// issuer, time, single use).
	AcceptLogout(ctx context.Context, r *http.Request) (LogoutRequest, error)
	// AnswerLogout is where to send the browser with the signed answer to
	// the request requestID (success, or failure when done is false); ""
	// if the IdP offers no such endpoint.
	AnswerLogout(ctx context.Context, requestID, relayState string, done bool) (string, error)
}

// LogoutRequest is an IdP's validated request to end sessions.
type LogoutRequest struct {
	ID string
	// Matches reports whether a session, by its LogoutHint, is one the
	// request ends.
	Matches func(logoutHint string) bool
}

// Password connections check an email and password themselves.
type Password interface {
	// CheckPassword returns the member, or an *Error of KindBadCredentials.
	CheckPassword(ctx context.Context, orgID, email, password string) (Identity, error)
}

// Deps are what Open functions may use. Protocol code takes its clock and
// HTTP client from here, never from globals.
type Deps struct {
	// OrgID and OrgSlug name the org the connection belongs to.
	OrgID, OrgSlug string
	// SignInURL is the scheme, host and port the org signs in on (its
	// login domain, or the shared sign-in host, then SharedHost is set).
	SignInURL  url.URL
	SharedHost bool
	Store      store.Store
	HTTPClient *http.Client
	// PublicHTTPClient reaches public addresses only: for the connections
	// of orgs the admin API manages (their admins choose the URLs); nil:
	// HTTPClient.
	PublicHTTPClient *http.Client
	Logger           *slog.Logger
	Now              func() time.Time
	// KeyRotation is how long a connection's own key (the SAML SP key)
	// signs before the next one takes over (0: a year).
	KeyRotation time.Duration
}

// Factory opens one org's connection from its stored JSON config.
type Factory func(ctx context.Context, config json.RawMessage, deps Deps) (any, error)

// Kind classifies a sign-in failure by what the person can do about it.
type Kind int

const (
	// KindInternal: a fault on Gatehouse's side.
	KindInternal Kind = iota
	// KindUnreachable: the IdP did not answer (or not usefully).
	KindUnreachable
	// KindInvalid: a forged, tampered, replayed or malformed response.
	KindInvalid
	// KindExpired: the response or flow is too old or not yet valid
	// (often a clock difference between the IdP and Gatehouse).
	KindExpired
	// KindCanceled: the person or the IdP ended the sign-in at the IdP.
	KindCanceled
	// KindUnknownUser: no such member and the org creates none.
	KindUnknownUser
	// KindWrongDomain: the email is not one of the org's domains.
	KindWrongDomain
	// KindDenied: the org's mapping or settings refuse this person.
	KindDenied
	// KindBadCredentials: wrong password (or no such member).
	KindBadCredentials
	// KindNotReady: the IdP's side of the connection is not there yet
	// (SAML: its metadata is missing, unreachable or not metadata), as
	// while a customer is still setting up single sign-on.
	KindNotReady
)

// Error is a sign-in failure: Kind picks the page the person sees; the
// message is for the log only.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string { return e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an *Error; a %w verb in format wraps its operand.
func Errorf(kind Kind, format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return &Error{Kind: kind, Msg: err.Error(), Err: errors.Unwrap(err)}
}

// KindOf is err's Kind (KindInternal when err is not an *Error).
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindInternal
}

// Loopback reports whether a URL's host is this machine: "localhost" or
// a loopback address (127.0.0.0/8, ::1). Only such hosts may be reached
// over plain HTTP; "127.example.com" is a name like any other.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// The SAML service provider's endpoints on every sign-in host (on the
// shared host, each ends in "/<org slug>"): the SAML connection makes its
// metadata with them, the sign-in flow routes them.
const (
	SAMLACSPath      = "/.gatehouse/saml/acs"
	SAMLMetadataPath = "/.gatehouse/saml/metadata"
	SAMLSLOPath      = "/.gatehouse/saml/slo"
)

// FieldError is a problem with one setting of a protocol's block, named by
// its key (relative to the block), so that config validation reports it at
// the key's own path and line.
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }
