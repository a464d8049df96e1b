package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp/signing"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

type noLogin struct{}

func (noLogin) ServeHTTP(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }
func (noLogin) LoginURL(org, rd, state string) string {
	return "http://auth.example.com/.gatehouse/login"
}

func (noLogin) StepUpURL(org, rd, state string) string {
	return "http://auth.example.com/.gatehouse/mfa/step-up?rd=" + url.QueryEscape(rd)
}

// cannedTransport answers every upstream request in memory, so the
// benchmark measures Gatehouse's own work and not the loopback network.
type cannedTransport struct{ last *http.Request }

func (c *cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.last = r
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2, Request: r}, nil
}

type fixture struct {
	h      *proxy.Handler
	cookie *http.Cookie
	tr     *cannedTransport
	o      proxy.Options
	st     store.Store
}

// opts returns the fixture's options changed by fn.
func (f *fixture) opts(fn func(*proxy.Options)) proxy.Options {
	o := f.o
	fn(&o)
	return o
}

func newFixture(tb testing.TB, engine policy.Engine) *fixture {
	tb.Helper()
	ctx := context.Background()
	st := badgertest.Open(tb)
	must(tb, st.CreateOrg(ctx, store.Org{ID: "org_1", Slug: "acme", Name: "Acme"}))
	must(tb, st.CreateUser(ctx, store.User{ID: "usr_1", Email: "alice@acme.example"}))
	must(tb, st.CreateMembership(ctx, store.Membership{UserID: "usr_1", OrgID: "org_1", Roles: []string{"admin"}}))
	sessions, err := session.New(st, []byte("0123456789abcdef0123456789abcdef"), session.Options{})
	must(tb, err)
	keys, err := signing.New(ctx, st, signing.Options{Logger: slog.New(slog.DiscardHandler)})
	must(tb, err)
	router, err := proxy.NewRouter([]config.Route{{ID: "app", Host: "app.example.com", PathPrefix: "/", Upstream: "http://upstream.internal", PublicPaths: []string{"/healthz"}}})
	must(tb, err)
	ips, _ := clientip.New(nil)
	tr := &cannedTransport{}
	o := proxy.Options{
		Router: router, Sessions: sessions, Policy: engine, Signer: keys, Login: noLogin{}, Orgs: func(string) (*store.Org, bool) { return nil, false },
		Issuer: "https://auth.example.com", IsLoginHost: func(string) bool { return false },
		WellKnown: http.NotFoundHandler(), ClientIP: ips, Metrics: telemetry.New(),
		Logger: slog.New(slog.DiscardHandler), Transport: tr,
	}
	h := proxy.New(o)
	s, err := sessions.Create(ctx, "usr_1", "org_1", "password", "", "")
	must(tb, err)
	rec := httptest.NewRecorder()
	must(tb, sessions.SetCookie(rec, httptest.NewRequest("GET", "http://app.example.com/", nil), s))
	return &fixture{h: h, cookie: rec.Result().Cookies()[0], tr: tr, o: o, st: st}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

func TestHandlerForwardsIdentity(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	req := httptest.NewRequest("GET", "http://app.example.com/x", nil)
	req.AddCookie(f.cookie)
	req.Header.Set("X_Gatehouse_Email", "evil@x")
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	out := f.tr.last.Header
	if out.Get("X-Gatehouse-Email") != "alice@acme.example" || out.Get("X-Gatehouse-Jwt-Assertion") == "" || len(out["X_Gatehouse_Email"]) != 0 {
		t.Fatalf("upstream headers: %v", out)
	}
	// The assertion is reused for the same session and audience.
	first := out.Get("X-Gatehouse-Jwt-Assertion")
	rec = httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if f.tr.last.Header.Get("X-Gatehouse-Jwt-Assertion") != first {
		t.Fatal("assertion re-signed on the hot path")
	}
}

// Gatehouse's own cookies (session, CSRF, state, sign-in flows) never
// reach the upstream; the app's own cookies do.
func TestOwnCookiesStripped(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	req := httptest.NewRequest("GET", "http://app.example.com/x", nil)
	req.AddCookie(f.cookie)
	for _, n := range []string{"_gatehouse_csrf", "gatehouse_flow_abcdefghijklmnop", "__Host-gatehouse_flow_abcdefghijklmnop", "_gatehouse_hrd", "app_session"} {
		req.AddCookie(&http.Cookie{Name: n, Value: "v"})
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
	got := f.tr.last.Header.Get("Cookie")
	if got != "app_session=v" {
		t.Fatalf("upstream Cookie = %q, want only the app's", got)
	}
}

type denyAll struct{}

func (denyAll) Decide(context.Context, *policy.Input) policy.Decision {
	return policy.Decision{Reasons: []string{"closed for maintenance"}}
}

func TestDenyRendersReasons(t *testing.T) {
	f := newFixture(t, denyAll{})
	req := httptest.NewRequest("GET", "http://app.example.com/x", nil)
	req.AddCookie(f.cookie)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "closed for maintenance") || f.tr.last != nil {
		t.Fatalf("deny: %d %s (upstream reached: %v)", rec.Code, rec.Body, f.tr.last != nil)
	}
}

// BenchmarkHotPath is one authenticated, allowed request through the whole
// handler: canonical path, route, session cache, policy, cached assertion,
// header rewrite, request log and metrics. The upstream is in memory.
func BenchmarkHotPath(b *testing.B) {
	f := newFixture(b, policy.RouteOrgs{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://app.example.com/api/items?page=2", nil)
		req.AddCookie(f.cookie)
		req.Header.Set("User-Agent", "bench")
		for pb.Next() {
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})
}

// BenchmarkBareReverseProxy is the baseline: httputil.ReverseProxy with the
// same in-memory upstream and nothing else.
func BenchmarkBareReverseProxy(b *testing.B) {
	tr := &cannedTransport{}
	rp := newBare(tr)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://app.example.com/api/items?page=2", nil)
		for pb.Next() {
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, req)
		}
	})
	_ = time.Second
}

// realisticPolicy is the engine with the realistic policy pair: the
// roles-by-path example as the platform layer, plan gating as org_1's.
func realisticPolicy(b *testing.B) *policy.Rego {
	platform, err := policy.LoadModules("../examples/policies/roles_by_path")
	must(b, err)
	org, err := policy.LoadModules("../examples/policies/plan_gating")
	must(b, err)
	set, err := policy.Compile(context.Background(), policy.Sources{Platform: platform, Orgs: map[string][]policy.Module{"org_1": org}})
	must(b, err)
	r := policy.NewRego(10*time.Second, nil)
	r.Swap(set)
	return r
}

// BenchmarkHotPathRego is BenchmarkHotPath with a realistic policy set: the
// roles-by-path example as the platform layer and plan gating as the org's.
func BenchmarkHotPathRego(b *testing.B) {
	r := realisticPolicy(b)
	f := newFixture(b, policy.Chain{policy.RouteOrgs{}, r})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "http://app.example.com/api/items?page=2", nil)
		req.AddCookie(f.cookie)
		for pb.Next() {
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}

// BenchmarkDecisionPath is the whole handler with the realistic policy
// pair (roles by path, the org's plan) on varied inputs: REST paths with
// ids from a few thousand resources, some with a query string, against
// the same path again and again; with the per-session decision cache
// (as deployed) and without it. Varied inputs are the traffic APIs see.
func BenchmarkDecisionPath(b *testing.B) {
	r := realisticPolicy(b)
	prefixes := []string{"/api/projects/", "/api/items/", "/api/users/", "/api/orders/"}
	paths := make([]string, 4096)
	for i := range paths {
		paths[i] = prefixes[i%len(prefixes)] + strconv.Itoa(i*7919%2000)
		if i%4 == 0 {
			paths[i] += "?page=" + strconv.Itoa(i%20)
		}
	}
	for _, tc := range []struct {
		name   string
		varied bool
		ttl    time.Duration
		engine policy.Engine
	}{
		{"same-path/cache", false, time.Second, r}, {"varied/cache", true, time.Second, r}, {"varied/no-cache", true, 0, r},
		{"varied/no-policy", true, time.Second, nil}, // the baseline: the route's orgs alone
	} {
		b.Run(tc.name, func(b *testing.B) {
			chain := policy.Chain{policy.RouteOrgs{}}
			if tc.engine != nil {
				chain = append(chain, tc.engine)
			}
			f := newFixture(b, chain)
			h := proxy.New(f.opts(func(o *proxy.Options) { o.DecisionCacheTTL = tc.ttl }))
			var n atomic.Uint64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					path := "/api/items?page=2"
					if tc.varied {
						path = paths[n.Add(1)%uint64(len(paths))]
					}
					req := httptest.NewRequest("GET", "http://app.example.com"+path, nil)
					req.AddCookie(f.cookie)
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, req)
					if rec.Code != 200 {
						b.Fatalf("%s: status %d: %s", path, rec.Code, rec.Body)
					}
				}
			})
		})
	}
}

// countingRego is the Rego engine, counting its evaluations; its version
// and what it reads pass through.
type countingRego struct {
	*policy.Rego
	calls atomic.Int32
}

func (c *countingRego) Decide(ctx context.Context, in *policy.Input) policy.Decision {
	c.calls.Add(1)
	return c.Rego.Decide(ctx, in)
}

// A decision is reused only for requests equal in every field the policy
// reads: two requests that differ in a field it reads (method, path,
// path as matched, query, header, client address) are each evaluated,
// and the second denied; another person (other roles) never gets the
// first one's decision; a policy reading the time, or calling time.now_ns,
// is evaluated every time. Requests that differ only in what the policy
// does not read share one evaluation.
func TestDecisionReuseFollowsReads(t *testing.T) {
	head := "package gatehouse.authz\n\ndefault allow := false\n\n"
	type req struct{ method, target, ua, addr string }
	for _, tc := range []struct {
		name   string
		policy string
		a, b   req
		// bAllowed: b's answer; calls: evaluations for a, a again, b.
		bAllowed bool
		calls    int32
	}{
		{"method", "allow if input.request.method == \"GET\"", req{"GET", "/x", "", ""}, req{"POST", "/x", "", ""}, false, 2},
		{"path", "allow if input.request.path == \"/a\"", req{"GET", "/a", "", ""}, req{"GET", "/b", "", ""}, false, 2},
		{"path as matched", "allow if not startswith(input.request.match_path, \"/admin\")", req{"GET", "/x", "", ""}, req{"GET", "/ADMIN/x", "", ""}, false, 2},
		{"query", "allow if not input.request.query.debug", req{"GET", "/x?a=1", "", ""}, req{"GET", "/x?debug=1", "", ""}, false, 2},
		{"header", "allow if input.request.headers[\"user-agent\"] != \"bad\"", req{"GET", "/x", "good", ""}, req{"GET", "/x", "bad", ""}, false, 2},
		{"client address", "allow if input.request.client_addr == \"192.0.2.1\"", req{"GET", "/x", "", "192.0.2.1"}, req{"GET", "/x", "", "192.0.2.2"}, false, 2},
		{"the request's time", "allow if input.request.time_ns > 0", req{"GET", "/x", "", ""}, req{"GET", "/x", "", ""}, true, 3},
		{"time.now_ns", "allow if time.now_ns() > 0", req{"GET", "/x", "", ""}, req{"GET", "/x", "", ""}, true, 3},
		{"not read: path and query", "allow if input.request.method == \"GET\"", req{"GET", "/a?x=1", "", ""}, req{"GET", "/b?y=2", "", ""}, true, 1},
		{"not read: headers and address", "allow if startswith(input.request.path, \"/a\")", req{"GET", "/a", "one", "192.0.2.1"}, req{"GET", "/a", "two", "192.0.2.9"}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := policy.Compile(context.Background(), policy.Sources{Platform: []policy.Module{{Name: "p.rego", Text: head + tc.policy + "\n"}}})
			must(t, err)
			eng := &countingRego{Rego: policy.NewRego(time.Second, nil)}
			eng.Swap(set)
			f := newFixture(t, eng)
			h := proxy.New(f.opts(func(o *proxy.Options) { o.DecisionCacheTTL = time.Minute }))
			do := func(r req) int {
				hr := httptest.NewRequest(r.method, "http://app.example.com"+r.target, nil)
				hr.AddCookie(f.cookie)
				if r.ua != "" {
					hr.Header.Set("User-Agent", r.ua)
				}
				if r.addr != "" {
					hr.RemoteAddr = r.addr + ":40000"
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, hr)
				return rec.Code
			}
			if st := do(tc.a); st != 200 {
				t.Fatalf("a: %d", st)
			}
			do(tc.a)
			if st := do(tc.b); (st == 200) != tc.bAllowed {
				t.Fatalf("b: %d, want allowed %v", st, tc.bAllowed)
			}
			if n := eng.calls.Load(); n != tc.calls {
				t.Fatalf("%d evaluations, want %d", n, tc.calls)
			}
		})
	}

	// Another person of the same org, with other roles, on the same
	// request: evaluated for them, and denied.
	set, err := policy.Compile(context.Background(), policy.Sources{Platform: []policy.Module{{Name: "p.rego", Text: head + "allow if \"admin\" in input.user.roles\n"}}})
	must(t, err)
	eng := &countingRego{Rego: policy.NewRego(time.Second, nil)}
	eng.Swap(set)
	f := newFixture(t, eng)
	ctx := context.Background()
	must(t, f.st.CreateUser(ctx, store.User{ID: "usr_2", Email: "bob@acme.example"}))
	must(t, f.st.CreateMembership(ctx, store.Membership{UserID: "usr_2", OrgID: "org_1", Roles: []string{"member"}}))
	s2, err := f.o.Sessions.Create(ctx, "usr_2", "org_1", "password", "", "")
	must(t, err)
	rec := httptest.NewRecorder()
	must(t, f.o.Sessions.SetCookie(rec, httptest.NewRequest("GET", "http://app.example.com/", nil), s2))
	bob := rec.Result().Cookies()[0]
	h := proxy.New(f.opts(func(o *proxy.Options) { o.DecisionCacheTTL = time.Minute }))
	for i, c := range []*http.Cookie{f.cookie, f.cookie, bob} {
		hr := httptest.NewRequest("GET", "http://app.example.com/x", nil)
		hr.AddCookie(c)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, hr)
		if want := map[bool]int{true: 200, false: 403}[i < 2]; rec.Code != want {
			t.Fatalf("request %d: %d, want %d", i, rec.Code, want)
		}
	}
	if n := eng.calls.Load(); n != 2 {
		t.Fatalf("%d evaluations for alice twice and bob once, want 2", n)
	}
}

// countingEngine allows everything but /deny, counting evaluations.
type countingEngine struct {
	calls   int
	version string
}

func (c *countingEngine) Decide(_ context.Context, in *policy.Input) policy.Decision {
	c.calls++
	if in.Request.Path == "/deny" {
		return policy.Decision{Reasons: []string{"no"}}
	}
	return policy.Decision{Allow: true}
}

func (c *countingEngine) Version() string { return c.version }

func TestDecisionCache(t *testing.T) {
	eng := &countingEngine{version: "v1"}
	f := newFixture(t, eng)
	h := proxy.New(f.opts(func(o *proxy.Options) { o.DecisionCacheTTL = time.Minute }))
	get := func(path string) int {
		req := httptest.NewRequest("GET", "http://app.example.com"+path, nil)
		req.AddCookie(f.cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for range 3 {
		if get("/a?x=1") != 200 {
			t.Fatal("allow")
		}
	}
	if eng.calls != 1 {
		t.Fatalf("3 identical requests evaluated %d times, want 1", eng.calls)
	}
	get("/a?x=2")
	if eng.calls != 2 {
		t.Fatalf("another query reused the decision: %d", eng.calls)
	}
	get("/deny")
	get("/deny")
	if eng.calls != 4 {
		t.Fatalf("denies cached: %d calls", eng.calls)
	}
	eng.version = "v2" // a new policy set invalidates cached allows
	get("/a?x=1")
	if eng.calls != 5 {
		t.Fatalf("decision survived a policy change: %d calls", eng.calls)
	}
}
