// Package proxy is Gatehouse's request path: canonicalize, route, check
// the session, ask policy, and forward with a signed identity.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Identity headers sent upstream. Any client-sent header with the
// X-Gatehouse- prefix (or "_" spellings of it) is removed first.
const (
	HeaderAssertion = "X-Gatehouse-Jwt-Assertion"
	HeaderUser      = "X-Gatehouse-User"
	HeaderEmail     = "X-Gatehouse-Email"
	HeaderOrg       = "X-Gatehouse-Org"
	HeaderOrgSlug   = "X-Gatehouse-Org-Slug"
	HeaderRoles     = "X-Gatehouse-Roles"
)

// Signer signs assertion claims with the workspace's current key.
type Signer interface {
	Sign(claims any) (string, error)
}

// Login is the sign-in side the proxy hands browsers to.
type Login interface {
	http.Handler
	// LoginURL is where to sign in for a route of org orgSlug (or any org),
	// returning to rd; state is the browser's hand-off state (see
	// session.NewState).
	LoginURL(orgSlug, rd, state string) string
	// StepUpURL is where the person of org orgSlug proves a second factor
	// again (step-up), returning to rd.
	StepUpURL(orgSlug, rd, state string) string
}

// Options wire a Handler.
type Options struct {
	// BrandAssets reads orgs' branding assets (nil: none served).
	BrandAssets web.BlobSource
	Router      *Router
	Sessions    *session.Manager
	Policy      policy.Engine
	// Orgs looks orgs up for policy input.
	Orgs OrgLookup
	// DecisionCacheTTL lets an allow be reused for identical requests of
	// one session for this long (0: evaluate every request).
	DecisionCacheTTL time.Duration
	Signer           Signer
	Login            Login
	// Issuer is the workspace issuer URL (assertion "iss").
	Issuer string
	// IsLoginHost reports whether a host is the public URL's or an org's
	// login domain: it serves sign-in pages but no routes.
	IsLoginHost func(host string) bool
	// WellKnown serves /.well-known/* on login hosts.
	WellKnown http.Handler
	// OIDC is the OpenID Provider, under /.gatehouse/oidc/ (nil: none).
	OIDC http.Handler
	// Portal serves the admin portal (/.gatehouse/admin/) on login hosts
	// (nil: none).
	Portal http.Handler
	// API serves the admin API (/api/v1) on login hosts (nil: none).
	API               http.Handler
	ClientIP          *clientip.Resolver
	Metrics           *telemetry.Metrics
	Logger            *slog.Logger
	Now               func() time.Time
	AssertionLifetime time.Duration
	Transport         http.RoundTripper
	// MinBodyRate is the lowest average rate, in bytes a second, at which
	// a request body must arrive once BodyGrace has passed since its
	// headers (0: none).
	MinBodyRate int
	BodyGrace   time.Duration
}

// Handler is the proxy's http.Handler.
type Handler struct {
	o       Options
	buffers httputil.BufferPool
	proxies map[*Route]*httputil.ReverseProxy
	assets  http.Handler
	// cookieMarkers: every Gatehouse cookie name holds one of these.
	cookieMarkers []string
}

type ctxKey struct{}

// partsKey keys a session's cached policy input parts.
type partsKey struct {
	route *Route
	org   *store.Org
}

// forward carries what Rewrite needs from ServeHTTP.
type forward struct {
	route     *Route
	ident     *session.Identity
	assertion string
	trusted   bool
	// client is the client's address (after trusted proxies).
	client string
	// authority is the request's validated, normalized Host (with port).
	authority string
	// body records a failure to read the client's request body.
	body *bodyReader
	// extra are headers a policy asked to send (never identity headers).
	extra map[string]string
}

// New builds the proxy.
func New(o Options) *Handler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.AssertionLifetime <= 0 || o.AssertionLifetime > 5*time.Minute {
		o.AssertionLifetime = 5 * time.Minute
	}
	if o.Transport == nil {
		o.Transport = DefaultTransport()
	}
	h := &Handler{o: o, proxies: map[*Route]*httputil.ReverseProxy{}, assets: web.Assets(o.BrandAssets), buffers: NewBufferPool(),
		cookieMarkers: o.Sessions.CookieMarkers()}
	for _, rs := range []map[string][]*Route{o.Router.exact, o.Router.wildcard} {
		for _, routes := range rs {
			for _, rt := range routes {
				h.proxies[rt] = h.reverseProxy(rt)
			}
		}
	}
	return h
}

// DefaultTransport is tuned for many concurrent requests to few upstreams.
func DefaultTransport() *http.Transport {
	return &http.Transport{
		Proxy:                 nil, // never route upstream traffic through env proxies
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ForceAttemptHTTP2:     true,
	}
}

func (h *Handler) reverseProxy(rt *Route) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Transport:  h.o.Transport,
		BufferPool: h.buffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			f, _ := pr.In.Context().Value(ctxKey{}).(*forward)
			pr.SetURL(rt.Upstream)
			if rt.PreserveHost && f != nil {
				pr.Out.Host = f.authority
			}
			stripIdentity(pr.Out.Header, rt.identity)
			stripClientHeaders(pr.Out.Header, rt.passClient)
			stripCookies(pr.Out.Header, h.o.Sessions.IsGatehouseCookie, h.cookieMarkers)
			if f != nil && f.trusted {
				pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			}
			pr.SetXForwarded()
			if f != nil {
				// The Host as validated and normalized, not as sent.
				pr.Out.Header.Set("X-Forwarded-Host", f.authority)
			}
			if request.IsSecure(pr.In) {
				pr.Out.Header.Set("X-Forwarded-Proto", "https")
			}
			if f != nil && f.client != "" && !rt.passClient["x-real-ip"] {
				pr.Out.Header["X-Real-Ip"] = []string{f.client}
			}
			if f == nil || f.ident == nil {
				return
			}
			id := f.ident
			hd := pr.Out.Header
			hd[HeaderAssertion] = []string{f.assertion}
			hd[HeaderUser] = []string{id.UserID}
			hd[HeaderEmail] = []string{id.Email}
			hd[HeaderOrg] = []string{id.OrgID}
			hd[HeaderOrgSlug] = []string{id.OrgSlug}
			hd[HeaderRoles] = []string{strings.Join(id.Roles, ",")}
			for k, v := range f.extra {
				hd[k] = []string{v}
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// The body's failure first: cutting a slow body off also
			// cancels the request's context.
			if f, _ := r.Context().Value(ctxKey{}).(*forward); f != nil && f.body != nil && f.body.tooSlow() {
				h.o.Logger.Info("proxy: request body too slow", "route", rt.ID, "bytes", f.body.n, "min_rate", f.body.rate)
				web.Error(w, http.StatusRequestTimeout, "The request body arrived too slowly.", "")
				return
			}
			if errors.Is(err, context.Canceled) {
				w.WriteHeader(499) // client went away; nothing to show
				return
			}
			if f, _ := r.Context().Value(ctxKey{}).(*forward); f != nil && f.body != nil && f.body.err != nil {
				// The client's body could not be read (malformed chunking,
				// cut short): the client's error, not the upstream's.
				h.o.Logger.Info("proxy: request body refused", "route", rt.ID, "err", f.body.err)
				web.Error(w, http.StatusBadRequest, "The request body is malformed or incomplete.", "")
				return
			}
			ref := token.RandomID()[:12]
			h.o.Logger.Error("proxy: upstream failed", "ref", ref, "route", rt.ID, "upstream", rt.Upstream.Host, "err", err)
			web.Error(w, http.StatusBadGateway, "The application is not responding right now. Try again in a moment.", ref)
		},
	}
}

// stripIdentity removes every header a client could use to pose as
// someone: X-Gatehouse-* in any case, with "_" for "-", plus the route's
// own identity headers.
func stripIdentity(hd http.Header, extra map[string]bool) {
	for k := range hd {
		if len(k) >= 12 && headerNameIs(k[:12], "x-gatehouse-") {
			delete(hd, k)
			continue
		}
		if len(extra) > 0 && extra[normHeader(k)] {
			delete(hd, k)
		}
	}
}

// clientHeaders is config.ClientHeaders lowercased, by length.
var clientHeaders = func() map[int][]string {
	m := map[int][]string{}
	for _, h := range config.ClientHeaders {
		m[len(h)] = append(m[len(h)], strings.ToLower(h))
	}
	return m
}()

// stripClientHeaders removes the headers upstreams trust for the client's
// address or the URL and method it asked for (config.ClientHeaders), in
// any case and with "_" for "-" (CGI and WSGI read both as one), except
// those the route passes.
func stripClientHeaders(hd http.Header, pass map[string]bool) {
	for k := range hd {
		for _, name := range clientHeaders[len(k)] {
			if headerNameIs(k, name) {
				if len(pass) == 0 || !pass[name] {
					delete(hd, k)
				}
				break
			}
		}
	}
}

// headerNameIs compares a header name with a lowercase one, ignoring
// ASCII case and reading any other character than a letter or digit as
// "-" (CGI, WSGI and lighttpd map "_", "." and "-" alike to "_"), without
// allocating.
func headerNameIs(k, lower string) bool {
	if len(k) != len(lower) {
		return false
	}
	for i := 0; i < len(k); i++ {
		if headerFold(k[i]) != lower[i] {
			return false
		}
	}
	return true
}

func headerFold(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return c
	}
	return '-'
}

// allowUpgrade removes a protocol upgrade the route does not allow (h2c,
// or anything but websocket by default), so the request goes upstream as
// a plain one: after a switch, bytes would pass unmediated. RFC 9110 lets
// a server ignore Upgrade. It reports what was refused, if anything.
func allowUpgrade(r *http.Request, rt *Route) string {
	up := r.Header.Values("Upgrade")
	if len(up) == 0 {
		return ""
	}
	if len(up) == 1 && !strings.Contains(up[0], ",") {
		for _, u := range rt.upgrades {
			if strings.EqualFold(strings.TrimSpace(up[0]), u) {
				return ""
			}
		}
	}
	r.Header.Del("Upgrade")
	r.Header.Del("Http2-Settings")
	// Connection: upgrade without an Upgrade header means nothing to
	// ReverseProxy; the hop-by-hop headers are dropped either way.
	return strings.Join(up, ",")
}

// stripCookies keeps Gatehouse's own cookies (session, CSRF, state) from
// upstreams: a session cookie is a bearer credential the app never needs.
// Every part is checked by its name as the most lenient parser reads it,
// whatever the configured names are; lines that cannot hold one of them
// (none of markers in them) are left as they are.
func stripCookies(hd http.Header, ours func(string) bool, markers []string) {
	lines := hd["Cookie"]
	if len(lines) == 0 {
		return
	}
	found := false
	for _, l := range lines {
		for _, m := range markers {
			if strings.Contains(l, m) {
				found = true
				break
			}
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, l := range lines {
		for part := range strings.SplitSeq(l, ";") {
			if name := request.CookieName(part); name != "" && !ours(name) {
				kept = append(kept, strings.Trim(part, " \t"))
			}
		}
	}
	if len(kept) == 0 {
		delete(hd, "Cookie")
		return
	}
	hd["Cookie"] = []string{strings.Join(kept, "; ")}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack (streaming,
// server-sent events, websockets).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// reqLog is filled while serving and logged once at the end.
type reqLog struct {
	route, decision, org, user, client string
}

func (h *Handler) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	start := h.o.Now()
	w := &statusWriter{ResponseWriter: rw}
	var lg reqLog
	// X-Forwarded-For is passed on only from a trusted proxy.
	var trusted bool
	lg.client, trusted = h.o.ClientIP.Resolve(r)
	if trusted && r.TLS == nil && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		r = request.WithSecure(r)
	}
	host, port, hostOK := request.Authority(r)
	path, escaped, err := CanonicalPath(r.URL.EscapedPath())
	defer func() {
		h.finish(w, r, host, path, &lg, start)
	}()
	body := h.watchBody(w, r, start)
	if r.Method == http.MethodConnect || r.Method == http.MethodTrace {
		// Gatehouse is no forward proxy, and TRACE would echo the
		// identity it adds back to the client.
		lg.decision = "error"
		w.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		web.Error(w, http.StatusMethodNotAllowed, "This method is not served here.", "")
		return
	}
	if !hostOK {
		lg.decision = "error"
		h.o.Logger.Warn("proxy: Host refused", "raw_host", truncate(r.Host, 256))
		web.Error(w, http.StatusBadRequest, "This address is not valid: its host name is malformed.", "")
		return
	}
	if sni, ok := misdirected(r, host); ok {
		// The connection's certificate was chosen for another name
		// (HTTP/2 coalescing, or a client sending Host and SNI apart):
		// RFC 9110 asks for 421, so the client retries on a connection of
		// its own instead of being served this Host's route.
		lg.decision = "misdirected"
		h.o.Logger.Info("proxy: misdirected request", "host", host, "sni", truncate(sni, 256))
		web.Error(w, http.StatusMisdirectedRequest, "This connection was made for another address. Try again.", "")
		return
	}
	if err == nil && strings.IndexByte(r.RequestURI, '#') >= 0 {
		err = ErrBadPath // a literal "#" (Go reads it as "%23"; others end the path there)
	}
	if err != nil {
		lg.decision = "error"
		h.o.Logger.Warn("proxy: request path refused", "host", host, "raw_path", truncate(r.URL.EscapedPath(), 256), "err", err)
		web.Error(w, http.StatusBadRequest, "This address is not valid: it contains characters Gatehouse does not accept in a path.", "")
		return
	}
	r.URL.Path, r.URL.RawPath = path, escaped
	if r.URL.Fragment != "" {
		r.URL.Fragment = ""
	}

	if strings.HasPrefix(path, "/.gatehouse/") {
		lg.decision = "gatehouse"
		// Only on hosts Gatehouse serves: not on a name that merely
		// resolves here (an unverified or suspended login domain, say).
		if !h.o.IsLoginHost(host) && !h.o.Router.ServesHost(host) {
			web.Error(w, http.StatusNotFound, "Nothing is served at this address.", "")
			return
		}
		if strings.HasPrefix(path, web.AssetsPrefix) {
			h.assets.ServeHTTP(w, r)
			return
		}
		if h.o.OIDC != nil && strings.HasPrefix(path, "/.gatehouse/oidc/") {
			h.o.OIDC.ServeHTTP(w, r)
			return
		}
		if path == "/.gatehouse/admin" || strings.HasPrefix(path, "/.gatehouse/admin/") {
			if h.o.Portal == nil || !h.o.IsLoginHost(host) {
				web.Error(w, http.StatusNotFound, "Nothing is served at this address.", "")
				return
			}
			h.o.Portal.ServeHTTP(w, r)
			return
		}
		h.o.Login.ServeHTTP(w, r)
		return
	}

	if h.o.API != nil && (path == "/api/v1" || strings.HasPrefix(path, "/api/v1/")) && h.o.IsLoginHost(host) {
		lg.decision = "gatehouse"
		h.o.API.ServeHTTP(w, r)
		return
	}

	// The workspace's keys are served on login hosts even if a route
	// covers "/" there.
	if (path == "/.well-known/jwks.json" || path == "/.well-known/openid-configuration") && h.o.IsLoginHost(host) {
		lg.decision = "gatehouse"
		h.o.WellKnown.ServeHTTP(w, r)
		return
	}

	// Routes and public paths match the path without ";params", the way
	// Tomcat, Jetty and Spring read it; the upstream gets the path as sent.
	match := StripParams(path)
	rt := h.o.Router.Match(host, match)
	if rt == nil {
		lg.decision = "gatehouse"
		if h.o.IsLoginHost(host) {
			if path == "/" {
				http.Redirect(w, r, "/.gatehouse/login", http.StatusFound)
				return
			}
		}
		web.Error(w, http.StatusNotFound, "Nothing is served at this address.", "")
		return
	}
	lg.route = rt.ID
	if refused := allowUpgrade(r, rt); refused != "" {
		h.o.Logger.Info("proxy: protocol upgrade refused; forwarded without it", "route", rt.ID, "upgrade", truncate(refused, 64))
	}

	if rt.IsPublic(match) {
		lg.decision = "public"
		f := &forward{route: rt, trusted: trusted, client: lg.client, authority: request.HostPort(host, port)}
		f.body = body
		h.proxies[rt].ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, f)))
		return
	}

	e, err := h.o.Sessions.Authenticate(r)
	if err != nil {
		lg.decision = "login"
		h.unauthenticated(w, r, rt, host, err)
		return
	}
	id := e.Identity()
	lg.org, lg.user = id.OrgSlug, id.UserID

	var d policy.Decision
	if t, ok := h.o.Policy.(policy.Trivial); ok && t.Trivial() {
		// No Rego policy loaded: the route's org list decides, from the
		// identity alone; no input document, no cache.
		d = h.o.Policy.Decide(r.Context(), &policy.Input{
			User: policy.User{ID: id.UserID}, Org: policy.Org{ID: id.OrgID, Slug: id.OrgSlug}, Route: policy.Route{ID: rt.ID, Orgs: rt.Orgs}})
	} else {
		// One org snapshot for the whole decision. The input's user, org,
		// route and session parts (as Go values and as OPA values) are
		// built once per identity, route and org snapshot, not per
		// request.
		org, _ := h.o.Orgs(id.OrgID)
		base := e.Memo(id, partsKey{rt, org}, func() any {
			in := identityInput(rt, id, orgSnapshot(h.o.Orgs, org))
			in.UseParts(in.Prebuild())
			return in
		}).(*policy.Input)
		d = h.decide(r, e, id, base, requestInput(r, host, path, lg.client, start), rt, org, start)
	}
	if !d.Allow {
		if d.ID == "" {
			d.ID = token.RandomID()[:12] // e.g. a route's orgs list denied: still give a reference
		}
		lg.decision = "deny"
		h.o.Logger.Info("proxy: denied", "route", rt.ID, "org", id.OrgSlug, "user", id.UserID, "reasons", d.Reasons, "decision_id", d.ID)
		web.Render(w, http.StatusForbidden, "error", web.Page{Title: "Access denied",
			Error: "You are signed in as " + id.Email + ", but you do not have access to this page.", Reasons: d.Reasons,
			Reference: d.ID, Back: "/.gatehouse/logout", BackText: "Sign out to use another account",
			Link: "/.gatehouse/orgs?rd=" + url.QueryEscape(r.URL.RequestURI()), LinkText: "Use another of your organizations"})
		return
	}
	if d.MFAMaxAge > 0 && (!id.MFA || start.Sub(id.MFAAt) > d.MFAMaxAge) {
		lg.decision = "step_up"
		h.stepUp(w, r, host, id, d.MFAMaxAge)
		return
	}
	lg.decision = "allow"

	tok, err := h.assertion(e, id, rt.Audience, start)
	if err != nil {
		// No signed identity means no forwarding: fail closed.
		lg.decision = "error"
		ref := token.RandomID()[:12]
		h.o.Logger.Error("proxy: signing assertion failed", "ref", ref, "route", rt.ID, "err", err)
		web.Failure(w, err, "Gatehouse could not sign your identity for this application. Try again shortly.", ref)
		return
	}
	f := &forward{route: rt, ident: id, assertion: tok, trusted: trusted, client: lg.client, authority: request.HostPort(host, port), extra: d.Headers}
	f.body = body
	h.proxies[rt].ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, f)))
}

// misdirected reports whether a TLS request's Host is not the name the
// client asked for in the handshake (SNI), returning the SNI.
func misdirected(r *http.Request, host string) (string, bool) {
	if r.TLS == nil || r.TLS.ServerName == "" {
		return "", false
	}
	sni := r.TLS.ServerName
	if len(sni) > 0 && sni[len(sni)-1] == '.' {
		sni = sni[:len(sni)-1]
	}
	return r.TLS.ServerName, !strings.EqualFold(sni, host)
}

// bodyReader watches a request body: it remembers the first error other
// than its end (so a failed forward is blamed on the right side), and
// holds the client to a minimum average rate after a grace period, so
// that a body trickled in a byte at a time cannot keep a connection (and
// an upstream connection) busy for ever. Connections in a request are
// never reclaimed by the connection limit; this bounds how long one is.
type bodyReader struct {
	io.ReadCloser
	err  error
	ctl  *http.ResponseController
	rate int64 // bytes per second; 0: no minimum
	// due is when the deadline for the first byte falls (start + grace).
	due time.Time
	n   int64
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.rate > 0 {
		// By the deadline, the client must have sent n bytes more than
		// rate × (time since the grace started) allows it to be behind.
		_ = b.ctl.SetReadDeadline(b.due.Add(time.Duration(float64(b.n) / float64(b.rate) * float64(time.Second))))
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF && b.rate > 0 {
		// The whole body is in: no deadline after it. On any other end
		// (the upstream answered early, the body was closed) the
		// deadline stays, so the server's own read of what is left
		// (before it reuses the connection) is bounded too.
		_ = b.ctl.SetReadDeadline(time.Time{})
	}
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

// tooSlow reports whether the body failed by missing its rate.
func (b *bodyReader) tooSlow() bool { return errors.Is(b.err, os.ErrDeadlineExceeded) }

// watchBody wraps r's body (if any) in a bodyReader.
func (h *Handler) watchBody(w http.ResponseWriter, r *http.Request, start time.Time) *bodyReader {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &bodyReader{ReadCloser: r.Body, rate: int64(h.o.MinBodyRate)}
	if b.rate > 0 {
		// A deadline from the start: a body nobody reads (a denied
		// request, an early answer) is still read by the server before
		// it reuses the connection, and must not trickle in for ever.
		b.ctl, b.due = http.NewResponseController(w), start.Add(h.o.BodyGrace)
		_ = b.ctl.SetReadDeadline(b.due)
	}
	r.Body = b
	return b
}

// decide asks the policy engine, through the session's cache of recent
// allow decisions when DecisionCacheTTL is set.
// base is the input's identity part, req its request part: the whole
// input is only put together for an evaluation.
func (h *Handler) decide(r *http.Request, e *session.Entry, id *session.Identity, base *policy.Input, req policy.Request, rt *Route, org *store.Org, now time.Time) policy.Decision {
	evaluate := func() policy.Decision {
		in := new(policy.Input)
		*in = *base
		in.Request = req
		completeInput(in, r)
		return h.o.Policy.Decide(r.Context(), in)
	}
	ve, ok := h.o.Policy.(policy.Versioned)
	if h.o.DecisionCacheTTL <= 0 || !ok {
		return evaluate()
	}
	cache := e.Memo(id, cacheKey{rt, org}, func() any { return &decisionCache{} }).(*decisionCache)
	version := ve.Version()
	reads := policy.Reads{All: true}
	if rr, ok := h.o.Policy.(policy.ReadsReporter); ok {
		reads = cache.readsFor(version, func() policy.Reads { return rr.RequestReads(base) })
	}
	if reads.Never {
		return evaluate()
	}
	key := decisionKey(&req, r, reads)
	if d, ok := cache.get(r.Context(), key, version, &req, now); ok {
		return d
	}
	d := evaluate()
	if d.Allow && d.Err == nil {
		cache.put(key, version, d, now.Add(h.o.DecisionCacheTTL))
	}
	return d
}

// cacheKey keys a session's decision cache.
type cacheKey partsKey

// orgSnapshot answers lookups of org from one snapshot, and of its
// parent from orgs.
func orgSnapshot(orgs OrgLookup, org *store.Org) OrgLookup {
	return func(id string) (*store.Org, bool) {
		if org != nil && id == org.ID {
			return org, true
		}
		return orgs(id)
	}
}

// assertion returns the cached signed identity for the session and
// audience, signing a new one when less than half its lifetime remains.
func (h *Handler) assertion(e *session.Entry, id *session.Identity, aud string, now time.Time) (string, error) {
	if tok, ok := e.Assertion(aud, now, h.o.AssertionLifetime/2); ok {
		return tok, nil
	}
	exp := now.Add(h.o.AssertionLifetime)
	if id.ExpiresAt.Before(exp) {
		exp = id.ExpiresAt
	}
	roles, groups := id.Roles, id.Groups
	if roles == nil {
		roles = []string{}
	}
	if groups == nil {
		groups = []string{}
	}
	tok, err := h.o.Signer.Sign(Claims{
		Issuer: h.o.Issuer, Audience: aud, Subject: id.UserID, Email: id.Email, Name: id.Name,
		OrgID: id.OrgID, OrgSlug: id.OrgSlug, Roles: roles, Groups: groups, AMR: id.AMR, AuthTime: id.AuthTime.Unix(),
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: exp.Unix(), ID: token.RandomID()[:22],
	})
	if err != nil {
		return "", err
	}
	e.StoreAssertion(aud, tok, exp, id)
	return tok, nil
}

// Claims of X-Gatehouse-Jwt-Assertion.
type Claims struct {
	Issuer   string   `json:"iss"`
	Audience string   `json:"aud"`
	Subject  string   `json:"sub"`
	Email    string   `json:"email"`
	Name     string   `json:"name,omitempty"`
	OrgID    string   `json:"org_id"`
	OrgSlug  string   `json:"org_slug"`
	Roles    []string `json:"roles"`
	Groups   []string `json:"groups"`
	// AMR are how the person signed in (RFC 8176: pwd, otp, mfa, ...);
	// AuthTime is when.
	AMR       []string `json:"amr,omitempty"`
	AuthTime  int64    `json:"auth_time"`
	IssuedAt  int64    `json:"iat"`
	NotBefore int64    `json:"nbf"`
	Expiry    int64    `json:"exp"`
	ID        string   `json:"jti"`
}

func (h *Handler) unauthenticated(w http.ResponseWriter, r *http.Request, rt *Route, host string, err error) {
	switch {
	case errors.Is(err, session.ErrUnavailable):
		ref := token.RandomID()[:12]
		h.o.Logger.Error("proxy: session check failed", "ref", ref, "route", rt.ID, "err", err)
		w.Header().Set("Retry-After", "5")
		web.Error(w, http.StatusServiceUnavailable, "Gatehouse cannot check your session right now. Try again in a few seconds.", ref)
		return
	case !errors.Is(err, session.ErrNoCookie):
		h.o.Logger.Info("proxy: session refused", "route", rt.ID, "reason", err.Error())
		h.o.Sessions.ClearCookie(w, r)
	}
	// Browsers navigating get the login page; API calls get a 401 they can
	// act on instead of an HTML redirect.
	if sendBrowser(w, r, host, func(orig, state string) string { return h.o.Login.LoginURL(rt.Org, orig, state) }) {
		return
	}
	w.Header().Set("WWW-Authenticate", `Cookie realm="gatehouse"`)
	web.Error(w, http.StatusUnauthorized, "Sign in to continue.", "")
}

// stepUp asks for a second factor the policy wants more recent than the
// session's: a browser goes to prove one and comes back; an API call gets
// 401 insufficient_user_authentication with the max_age (as RFC 9470
// says for bearer tokens).
func (h *Handler) stepUp(w http.ResponseWriter, r *http.Request, host string, id *session.Identity, maxAge time.Duration) {
	h.o.Logger.Info("proxy: step-up required", "org", id.OrgSlug, "user", id.UserID, "max_age", maxAge.String(), "mfa_at", id.MFAAt)
	if sendBrowser(w, r, host, func(orig, state string) string { return h.o.Login.StepUpURL(id.OrgSlug, orig, state) }) {
		return
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Cookie realm="gatehouse", error="insufficient_user_authentication", error_description="a more recent second factor is required", max_age=%d`, int(maxAge.Seconds())))
	web.Error(w, http.StatusUnauthorized, "This page needs a more recent second factor: open it in your browser to confirm it's you.", "")
}

// sendBrowser redirects a browser navigating (a GET or HEAD that takes
// HTML) to the page to(orig, state) names, with the request's URL to come
// back to and a new hand-off state; it reports whether it did.
func sendBrowser(w http.ResponseWriter, r *http.Request, host string, to func(orig, state string) string) bool {
	if (r.Method != http.MethodGet && r.Method != http.MethodHead) || !acceptsHTML(r) {
		return false
	}
	scheme := "http"
	if request.IsSecure(r) {
		scheme = "https"
	}
	// Built from the normalized host, so the sign-in page accepts it.
	if _, port, err := net.SplitHostPort(r.Host); err == nil {
		host = net.JoinHostPort(host, port)
	}
	orig := url.URL{Scheme: scheme, Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	http.Redirect(w, r, to(orig.String(), session.NewState(w, r)), http.StatusFound)
	return true
}

func acceptsHTML(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return a == "" || strings.Contains(a, "text/html") || strings.Contains(a, "*/*")
}

func (h *Handler) finish(w *statusWriter, r *http.Request, host, path string, lg *reqLog, start time.Time) {
	status := w.status
	if status == 0 {
		status = http.StatusOK // hijacked (websocket) or nothing written
		if r.Header.Get("Upgrade") != "" {
			status = http.StatusSwitchingProtocols
		}
	}
	el := h.o.Now().Sub(start)
	route := lg.route
	if route == "" {
		route = "-"
	}
	h.o.Metrics.Requests.WithLabelValues(route, strconv.Itoa(status), lg.decision).Inc()
	h.o.Metrics.Latency.WithLabelValues(route, lg.decision).Observe(el.Seconds())
	h.o.Logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("method", r.Method), slog.String("host", host), slog.String("path", truncate(path, 256)),
		slog.String("route", route), slog.String("org", lg.org), slog.String("user", lg.user),
		slog.String("decision", lg.decision), slog.Int("status", status),
		slog.Float64("latency_ms", float64(el.Microseconds())/1000), slog.String("client", lg.client))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
