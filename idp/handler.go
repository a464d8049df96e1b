package idp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Reserved paths this package serves on every host.
const (
	LoginPath   = "/.gatehouse/login"
	LogoutPath  = "/.gatehouse/logout"
	HandoffPath = "/.gatehouse/handoff"
)

// Options wire a Handler.
type Options struct {
	Store    store.Store
	Sessions *session.Manager
	Orgs     *Directory
	// Connections opens each org's sign-in connection.
	Connections *Connections
	PublicURL   *url.URL
	// Serves reports whether Gatehouse serves a hostname (post-login
	// redirects go nowhere else).
	Serves func(host string) bool
	// RouteHost reports whether a hostname is a route's. Sessions are handed
	// off only to route hosts, the public host and the session's own org's
	// login domain: never to another org's domain, whose DNS that org runs.
	RouteHost func(host string) bool
	ClientIP  *clientip.Resolver
	Metrics   *telemetry.Metrics
	Logger    *slog.Logger
	Now       func() time.Time
	// LogoutReturn resolves the handle an app's logout request left (the
	// OpenID Provider's end_session) to where the browser goes after
	// signing out ("" if none).
	LogoutReturn func(ctx context.Context, handle string) string
	// CSRFKey is 32 bytes shared by every node.
	CSRFKey []byte
	// Mail sends a message to a person's address (nil: no email, and the
	// email factor is not offered).
	Mail func(ctx context.Context, to string, m notify.Message) error
	// Queue sends a message through the durable email outbox (nil: no
	// email, and password reset is not offered).
	Queue func(ctx context.Context, orgID, kind, to string, m notify.Message) error
	// SetupMetadata makes the SAML SP metadata of an org that does not
	// sign in with SAML yet, for its admin setting single sign-on up (nil:
	// served only for SAML orgs).
	SetupMetadata func(ctx context.Context, deps connection.Deps) ([]byte, error)
	// SharedThrottles counts sign-in budgets in the store, shared by
	// every node (a store several nodes use); off, each node counts its
	// own, with no store write per attempt.
	SharedThrottles       bool
	MaxFailures           int
	FailureWindow         time.Duration
	MaxFailuresPerAddress int
}

// Handler serves the sign-in paths.
type Handler struct {
	o         Options
	byAccount limiter
	byAddr    limiter
	// flowStarts bounds the sign-in flows one client address opens: each
	// is a store record and, for SAML, an RSA signature.
	flowStarts limiter
	resets     limiter
	mux        *http.ServeMux
	// known and deviceKey recognize clients that signed in before (known.go).
	known     knownAddrs
	deviceKey []byte
}

// New builds the sign-in handler.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	budget := func(name string, max int, window time.Duration) limiter {
		if o.SharedThrottles {
			return newSharedThrottle(o.Store, name, max, window, o.Logger)
		}
		return newThrottle(max, window)
	}
	h := &Handler{
		o:         o,
		byAccount: budget("account", o.MaxFailures, o.FailureWindow),
		byAddr:    budget("address", o.MaxFailuresPerAddress, o.FailureWindow),
		// About one a second sustained: an office behind one address signs
		// in comfortably; a script gets 600 records, not millions.
		flowStarts: budget("flows", 600, 10*time.Minute),
		// Reset requests: 5 an hour per account, and per address.
		resets: budget("resets", 5, time.Hour),
	}
	dk := hmac.New(sha256.New, o.CSRFKey)
	dk.Write([]byte("gatehouse known-device cookie"))
	h.deviceKey = dk.Sum(nil)
	cop := http.NewCrossOriginProtection()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+LoginPath, h.loginPage)
	mux.Handle("POST "+LoginPath, cop.Handler(http.HandlerFunc(h.loginSubmit)))
	mux.HandleFunc("GET "+HandoffPath, h.handoff)
	mux.HandleFunc("GET "+CallbackPath, h.callback)
	mux.HandleFunc("GET "+OrgsPath, h.orgsPage)
	mux.Handle("POST "+OrgsPath, cop.Handler(http.HandlerFunc(h.orgsSwitch)))
	mux.HandleFunc("GET "+samlMetadataPath, h.samlMetadata)
	mux.HandleFunc("GET "+samlMetadataPath+"/{org}", h.samlMetadata)
	// The IdP posts from its own origin: no cross-origin protection here;
	// the response is bound to the flow (RelayState), the browser and the
	// org's SP instead.
	mux.HandleFunc("GET "+samlSLOPath, h.samlSLO)
	mux.HandleFunc("GET "+samlSLOPath+"/{org}", h.samlSLO)
	mux.HandleFunc("POST "+samlSLOPath, h.samlSLO)
	mux.HandleFunc("POST "+samlSLOPath+"/{org}", h.samlSLO)
	mux.HandleFunc("GET "+unsolicitedPath, h.unsolicitedContinue)
	mux.HandleFunc("POST "+unsolicitedPath, h.unsolicitedContinue)
	mux.HandleFunc("POST "+samlACSPath, h.samlACS)
	mux.HandleFunc("POST "+samlACSPath+"/{org}", h.samlACS)
	mux.HandleFunc("GET "+InvitePath, h.inviteShow)
	mux.Handle("POST "+InvitePath, cop.Handler(http.HandlerFunc(h.inviteSubmit)))
	mux.HandleFunc("GET "+MFAPath, h.mfaShow)
	mux.Handle("POST "+MFAPath, cop.Handler(http.HandlerFunc(h.mfaSubmit)))
	mux.HandleFunc("GET "+mfaQRPath, h.mfaQR)
	mux.HandleFunc("GET "+StepUpPath, h.stepUp)
	mux.Handle("POST "+mfaContinuePath, cop.Handler(http.HandlerFunc(h.mfaContinue)))
	mux.Handle("POST "+PasskeyPath, cop.Handler(http.HandlerFunc(h.passkeySignIn)))
	mux.HandleFunc("GET "+AccountPath, h.accountPage)
	mux.Handle("POST "+AccountPath, cop.Handler(http.HandlerFunc(h.accountSubmit)))
	mux.HandleFunc("GET "+ResetPath, h.resetShow)
	mux.Handle("POST "+ResetPath, cop.Handler(http.HandlerFunc(h.resetSubmit)))
	mux.HandleFunc("GET "+LogoutPath, h.logoutPage)
	mux.Handle("POST "+LogoutPath, cop.Handler(http.HandlerFunc(h.logoutSubmit)))
	h.mux = mux
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }
