// Package admin is Gatehouse's control plane: the admin API under
// /api/v1 (JSON, described by openapi.yaml, RFC 9457 errors), its one
// authorization function, API tokens, and the audit events every admin
// action leaves.
//
// Who may do what is decided in one place, authorize (authz.go), from a
// principal (a session or an API token) and the org an endpoint acts on.
// Another org's objects answer 404, never 403, so that existence does not
// leak; a right missing inside one's own scope answers 403.
package admin

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Prefix is where the API is served, on the public host and on org login
// domains.
const Prefix = "/api/v1"

// Options wire an API.
type Options struct {
	Store    store.Store
	Sessions *session.Manager
	ClientIP *clientip.Resolver
	// ConfigFile names the file that manages declared objects (in 409
	// answers).
	ConfigFile string
	// OrgsChanged is called after an org is created, changed or deleted,
	// so that routing and sign-in see it without waiting for a reload.
	OrgsChanged func(ctx context.Context)
	// Clients are the apps the config file declares (shown read-only);
	// ClientsChanged is called after the API registers, changes or
	// removes one, so that the OpenID Provider sees it at once.
	Clients        []config.Client
	ClientsChanged func(ctx context.Context)
	// SessionLifetime and SessionIdleTimeout are the deployment's session
	// limits, which an org's rules may only tighten (0: no bound here).
	SessionLifetime, SessionIdleTimeout time.Duration
	// DomainsVerify: orgs' domains must be proven by DNS (domains.verify);
	// off, only platform admins add domains. CNAMETarget is the
	// deployment's domains.cname_target.
	DomainsVerify bool
	CNAMETarget   string
	// ReservedHost reports whether a host is the deployment's own (the
	// public host, a route's host): no org may claim it.
	ReservedHost func(host string) bool
	// PublicURL is the deployment's (the connections' endpoints are on it
	// or on the org's login domain).
	PublicURL *url.URL
	// TestConnection opens an org's connection afresh, reporting what
	// fails (nil: connection tests are not offered).
	TestConnection func(ctx context.Context, org store.Org) error
	// InviteURL is the link of an invitation to org with secret.
	InviteURL func(org *store.Org, secret string) (string, error)
	// EmailInvitation queues an invitation's message with its link (nil:
	// the deployment sends no email).
	EmailInvitation func(ctx context.Context, org store.Org, inv store.Invitation, link string) error
	// TextInvitation queues an invitation's text to its phone (nil: the
	// deployment sends no text messages).
	TextInvitation func(ctx context.Context, org store.Org, inv store.Invitation, link string) error
	// WebhooksAllowPrivate lets orgs register audit webhooks on loopback
	// and private addresses.
	WebhooksAllowPrivate bool
	Logger               *slog.Logger
	Now                  func() time.Time
}

// API is the admin API's http.Handler.
type API struct {
	o      Options
	mux    *http.ServeMux
	routes []Route
	cop    *http.CrossOriginProtection
	// used remembers when each token's last use was stored, so that a
	// busy token costs one write a minute, not one a request.
	usedMu sync.Mutex
	used   map[string]time.Time
}

//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPI is the API's OpenAPI 3.1 document as JSON.
var OpenAPI = func() []byte {
	var doc any
	if err := yaml.Unmarshal(openapiYAML, &doc); err != nil {
		panic("admin: openapi.yaml: " + err.Error()) // checked in; tests load it
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic("admin: openapi.yaml: " + err.Error())
	}
	return b
}()

// New builds the API.
func New(o Options) *API {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OrgsChanged == nil {
		o.OrgsChanged = func(context.Context) {}
	}
	if o.ClientsChanged == nil {
		o.ClientsChanged = func(context.Context) {}
	}
	if o.ClientIP == nil {
		o.ClientIP, _ = clientip.New(nil) // no trusted proxies: cannot fail
	}
	if o.ConfigFile == "" {
		o.ConfigFile = "the config file"
	}
	a := &API{o: o, mux: http.NewServeMux(), cop: http.NewCrossOriginProtection(), used: map[string]time.Time{}}
	a.routes = a.table()
	for _, rt := range a.routes {
		a.mux.Handle(rt.Method+" "+Prefix+rt.Path, a.wrap(rt))
	}
	return a
}

// Route is one endpoint: its OpenAPI operation and the right it needs.
type Route struct {
	Method, Path string
	// Operation is its operationId in openapi.yaml.
	Operation string
	Need      Need
	handle    func(*call) error
}

// Routes lists the endpoints (for tests: each must be in openapi.yaml).
func (a *API) Routes() []Route { return a.routes }

// maxBody bounds a request body; branding uploads have their own bound.
const maxBody = 1 << 20

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	rid := token.RandomID()[:16]
	w.Header().Set("X-Request-Id", rid)
	r = r.WithContext(context.WithValue(r.Context(), ridKey{}, rid))
	if _, pattern := a.mux.Handler(r); pattern == "" {
		// Not an endpoint with this method: 405 if another method has it.
		for _, m := range []string{"GET", "POST", "PATCH", "PUT", "DELETE"} {
			if m == r.Method {
				continue
			}
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, p := a.mux.Handler(r2); p != "" {
				writeProblem(w, r, &Problem{Status: http.StatusMethodNotAllowed, Code: "method-not-allowed", Detail: r.Method + " is not served at this path."})
				return
			}
		}
		writeProblem(w, r, &Problem{Status: http.StatusNotFound, Code: "not-found", Detail: "No such endpoint."})
		return
	}
	a.mux.ServeHTTP(w, r)
}

type ridKey struct{}

func requestID(r *http.Request) string {
	s, _ := r.Context().Value(ridKey{}).(string)
	return s
}

// call is one request being served.
type call struct {
	a  *API
	w  http.ResponseWriter
	r  *http.Request
	p  *Principal
	rt Route
	// org is the org the path names, once authorized.
	org *store.Org
	// audited: the handler recorded the outcome itself.
	audited bool
}

func (c *call) ctx() context.Context { return c.r.Context() }

// wrap authenticates, checks the right the route needs on the org its
// path names, and turns errors into problem details.
func (a *API) wrap(rt Route) http.Handler {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{a: a, w: w, r: r, rt: rt}
		err := a.serve(c)
		if err == nil {
			return
		}
		var p *Problem
		if !errors.As(err, &p) {
			ref := requestID(r)
			a.o.Logger.Error("admin: request failed", "operation", rt.Operation, "request_id", ref, "err", err)
			p = &Problem{Status: http.StatusInternalServerError, Code: "internal", Detail: "Gatehouse could not complete the request; the log has the details under its request id."}
			if errors.Is(err, store.ErrUnavailable) {
				// Nothing was decided: the same request may work shortly.
				w.Header().Set("Retry-After", "5")
				p = &Problem{Status: http.StatusServiceUnavailable, Code: "unavailable", Detail: "Gatehouse's database is not answering. Nothing was changed; try again in a few seconds."}
			}
		} else if p.Status >= 500 {
			a.o.Logger.Error("admin: request failed", "operation", rt.Operation, "request_id", requestID(r), "err", p.cause)
		} else {
			a.o.Logger.Info("admin: request refused", "operation", rt.Operation, "status", p.Status, "code", p.Code, "detail", p.Detail, "principal", c.p.String(), "request_id", requestID(r))
		}
		if c.p != nil && !c.audited && rt.Method != http.MethodGet && p.Status != http.StatusUnauthorized {
			a.auditFailure(c, p)
		}
		writeProblem(w, r, p)
	})
	return h
}

func (a *API) serve(c *call) error {
	if c.rt.Need != NeedNone {
		p, viaCookie, err := a.authenticate(c.r)
		if err != nil {
			return err
		}
		c.p = p
		if viaCookie {
			// A session cookie is ambient: refuse cross-origin writes.
			if err := a.cop.Check(c.r); err != nil {
				return &Problem{Status: http.StatusForbidden, Code: "cross-origin",
					Detail: "Cross-origin requests with a session cookie are refused: call the API from the same origin, or with an API token."}
			}
		}
		if slug := c.r.PathValue("org"); slug != "" {
			org, err := a.resolveOrg(c.ctx(), slug)
			if err != nil {
				return err
			}
			if err := a.authorize(c.ctx(), p, c.rt.Need, &org); err != nil {
				return err
			}
			c.org = &org
		} else if err := a.authorize(c.ctx(), p, c.rt.Need, nil); err != nil {
			return err
		}
	}
	return c.rt.handle(c)
}

// resolveOrg finds the org a path names by ID or slug; 404 if none.
func (a *API) resolveOrg(ctx context.Context, ref string) (store.Org, error) {
	var (
		o   store.Org
		err error
	)
	if strings.HasPrefix(ref, "org_") {
		o, err = a.o.Store.GetOrg(ctx, ref)
	} else {
		o, err = a.o.Store.GetOrgBySlug(ctx, ref)
	}
	if errors.Is(err, store.ErrNotFound) {
		return o, notFound("org")
	}
	if err != nil {
		return o, fmt.Errorf("admin: read org %s: %w", ref, err)
	}
	return o, nil
}

// --- responses ---

// reply writes v as JSON with status.
func (c *call) reply(status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("admin: encode response: %w", err)
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	_, _ = c.w.Write(append(b, '\n'))
	return nil
}

// replyETag writes v with its ETag.
func (c *call) replyETag(status int, v any, etag string) error {
	c.w.Header().Set("ETag", etag)
	return c.reply(status, v)
}

// etagOf is a strong ETag over the stored records an object is made of:
// any change to them changes it.
func etagOf(parts ...any) string {
	h := sha256.New()
	for _, p := range parts {
		b, _ := json.Marshal(p)
		h.Write(b)
		h.Write([]byte{0})
	}
	return `"` + hex.EncodeToString(h.Sum(nil)[:12]) + `"`
}

// precondition checks If-Match against the object's current ETag: a write
// without one is refused (428), one made against another version fails
// (412), so that two admins never overwrite each other silently.
func (c *call) precondition(current string) error {
	im := c.r.Header.Get("If-Match")
	if im == "" {
		return &Problem{Status: http.StatusPreconditionRequired, Code: "if-match-required",
			Detail: "Send If-Match with the ETag from your last read of this object, so that a change made meanwhile is not overwritten."}
	}
	for part := range strings.SplitSeq(im, ",") {
		part = strings.TrimSpace(part)
		if part == "*" || part == current {
			return nil
		}
	}
	return &Problem{Status: http.StatusPreconditionFailed, Code: "changed",
		Detail: "The object changed since you read it: read it again, then apply your change to the new version."}
}
