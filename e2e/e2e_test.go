package e2e

import (
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse/gatehouse/store"
)

// upstream records what it receives.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs map[string][]*http.Request
	// moreEvents, closed by a test, lets /events go on after its first
	// event: the test sees that event while the upstream still holds the
	// stream open, whatever the machine's speed.
	moreEvents chan struct{}
	// slowArrived has a value once /slow is being answered.
	slowArrived chan struct{}
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{reqs: map[string][]*http.Request{}, moreEvents: make(chan struct{}), slowArrived: make(chan struct{}, 1)}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.reqs[r.URL.Path] = append(u.reqs[r.URL.Path], r.Clone(context.Background()))
		u.mu.Unlock()
		switch r.URL.Path {
		case "/ws":
			c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil {
					return
				}
				_ = c.Write(r.Context(), typ, append([]byte("echo: "), msg...))
			}
		case "/events":
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: tick %d\n\n", i)
				w.(http.Flusher).Flush()
				select {
				case <-u.moreEvents:
				case <-time.After(60 * time.Second):
				case <-r.Context().Done():
					return
				}
			}
		case "/slow":
			select {
			case u.slowArrived <- struct{}{}:
			default:
			}
			time.Sleep(1500 * time.Millisecond)
			fmt.Fprint(w, "slow done")
		default:
			fmt.Fprintf(w, "upstream %s for %s", r.URL.Path, r.Header.Get("X-Gatehouse-Email"))
		}
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(path string) *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	rs := u.reqs[path]
	if len(rs) == 0 {
		return nil
	}
	return rs[len(rs)-1]
}

func (u *upstream) paths() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []string
	for p := range u.reqs {
		out = append(out, p)
	}
	return out
}

const testConfig = preamble + `session:
  lifetime: 12h
  idle_timeout: 1h
  revocation_check: 2s
login:
  max_failures: 3
  max_failures_per_address: 6
routes:
  - id: app
    host: app.localhost
    upstream: {{UPSTREAM}}
    public_paths: [/healthz]
  - id: globex-only
    host: globex-app.localhost
    upstream: {{UPSTREAM}}
    orgs: [globex]
orgs:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    login_domain: login.acme.localhost
    connection: { type: password }
    users:
      - { email: alice@acme.example, password: "${ALICE_PASSWORD}", roles: [admin] }
      - { email: bob@acme.example, password_hash: "{{BOBHASH}}", roles: [member] }
  - slug: globex
    name: Globex
    email_domains: [globex.example]
    login_domain: login.globex.localhost
    connection: { type: password }
    users:
      - { email: carol@globex.example, password: "${CAROL_PASSWORD}", roles: [admin] }
`

// bob's hash is of "bob-example-password" (config/testdata/example.yaml).
const bobHash = "BOBHASH"

func startCore(t *testing.T) (*gatehouse, *upstream) {
	up := newUpstream(t)
	hash := readBobHash(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", hash).Replace(testConfig)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	return g, up
}

func readBobHash(t *testing.T) string {
	b, err := os.ReadFile("../config/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if i := strings.Index(line, `password_hash: "`); i >= 0 {
			rest := line[i+len(`password_hash: "`):]
			return rest[:strings.IndexByte(rest, '"')]
		}
	}
	t.Fatal("no password_hash in example.yaml")
	return ""
}

func TestLoginForwardsVerifiableIdentity(t *testing.T) {
	g, up := startCore(t)
	b := g.browser(t)

	p := b.login(g.url("app.localhost", "/dashboard?tab=2"), "alice@acme.example", "alice-pw-123")
	if p.status != 200 || p.body != "upstream /dashboard for alice@acme.example" {
		t.Fatalf("after login: %d %s\n%s", p.status, p.url, p.body)
	}
	if !strings.Contains(p.url, "/dashboard?tab=2") {
		t.Fatalf("landed on %s, want the original URL", p.url)
	}
	r := up.last("/dashboard")
	if r.URL.RawQuery != "tab=2" {
		t.Errorf("query = %q", r.URL.RawQuery)
	}
	for h, want := range map[string]string{
		"X-Gatehouse-Email": "alice@acme.example", "X-Gatehouse-Org-Slug": "acme", "X-Gatehouse-Roles": "admin",
	} {
		if got := r.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}

	// The assertion verifies with go-oidc against the published JWKS.
	ctx := oidc.ClientContext(t.Context(), b.client)
	issuer := "http://auth.localhost:" + g.port
	ks := oidc.NewRemoteKeySet(ctx, issuer+"/.well-known/jwks.json")
	v := oidc.NewVerifier(issuer, ks, &oidc.Config{ClientID: "app.localhost", SupportedSigningAlgs: []string{oidc.ES256}})
	tok, err := v.Verify(ctx, r.Header.Get("X-Gatehouse-Jwt-Assertion"))
	if err != nil {
		t.Fatalf("assertion does not verify: %v", err)
	}
	var claims struct {
		Email   string   `json:"email"`
		OrgID   string   `json:"org_id"`
		OrgSlug string   `json:"org_slug"`
		Roles   []string `json:"roles"`
		JTI     string   `json:"jti"`
		IAT     int64    `json:"iat"`
		EXP     int64    `json:"exp"`
	}
	if err := tok.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.OrgID != r.Header.Get("X-Gatehouse-Org") || !strings.HasPrefix(claims.OrgID, "org_") || claims.OrgSlug != "acme" ||
		!slices.Equal(claims.Roles, []string{"admin"}) || tok.Subject != r.Header.Get("X-Gatehouse-User") ||
		claims.JTI == "" || claims.EXP-claims.IAT > 300 || claims.EXP <= claims.IAT {
		t.Fatalf("claims = %+v sub=%s", claims, tok.Subject)
	}
	// An assertion for this route is rejected by a verifier for another audience.
	v2 := oidc.NewVerifier(issuer, ks, &oidc.Config{ClientID: "globex-app.localhost", SupportedSigningAlgs: []string{oidc.ES256}})
	if _, err := v2.Verify(ctx, r.Header.Get("X-Gatehouse-Jwt-Assertion")); err == nil {
		t.Fatal("assertion accepted for another audience")
	}
	// Discovery names the JWKS.
	d := b.get(issuer + "/.well-known/openid-configuration")
	if d.status != 200 || !strings.Contains(d.body, `"jwks_uri":"`+issuer+`/.well-known/jwks.json"`) {
		t.Fatalf("discovery: %d %s", d.status, d.body)
	}

	// Metrics count the login and the allowed request.
	m := b.get("http://" + g.ops + "/metrics")
	for _, want := range []string{
		`gatehouse_logins_total{org="acme",outcome="success"} 1`,
		`gatehouse_requests_total{decision="allow",route="app",status="200"}`,
		`gatehouse_request_duration_seconds_bucket`,
	} {
		if !strings.Contains(m.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Logs carry the request line without the cookie or the password.
	// Request lines are buffered for up to 100ms.
	var logs string
	for range 200 {
		if logs = g.Logs(); strings.Contains(logs, `"decision":"allow"`) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(logs, `"decision":"allow"`) || !strings.Contains(logs, `"org":"acme"`) ||
		strings.Contains(logs, "alice-pw-123") || strings.Contains(logs, "v1.") {
		t.Errorf("request log missing or leaking secrets:\n%s", logs)
	}
}

func TestSpoofedIdentityHeadersNeverReachUpstream(t *testing.T) {
	g, up := startCore(t)
	b := g.browser(t)
	b.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")

	for _, path := range []string{"/spoof", "/healthz"} { // authenticated and public paths
		req, _ := http.NewRequest("GET", g.url("app.localhost", path), nil)
		req.Header.Set("X-Gatehouse-Email", "ceo@acme.example")
		req.Header.Set("X-Gatehouse-Roles", "admin,owner")
		req.Header.Set("x-gatehouse-org", "org_evil")
		req.Header["X_Gatehouse_Email"] = []string{"ceo@acme.example"}
		req.Header["X-GATEHOUSE-USER"] = []string{"usr_evil"}
		req.Header["X-Gatehouse-Jwt-Assertion"] = []string{"forged"}
		req.Header.Set("X-Gatehouse-Whatever", "x")
		req.Header.Set("Connection", "X-Gatehouse-Email, X-Gatehouse-Jwt-Assertion")
		p := b.do(req)
		if p.status != 200 {
			t.Fatalf("%s: %d %s", path, p.status, p.body)
		}
		r := up.last(path)
		for k, vs := range r.Header {
			if !strings.HasPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "x-gatehouse-") {
				continue
			}
			for _, v := range vs {
				if strings.Contains(v, "evil") || strings.Contains(v, "ceo@") || v == "forged" || v == "x" || strings.Contains(v, "owner") {
					t.Errorf("%s: spoofed %s: %s reached the upstream", path, k, v)
				}
			}
		}
		if path == "/spoof" && (r.Header.Get("X-Gatehouse-Email") != "bob@acme.example" || r.Header.Get("X-Gatehouse-Jwt-Assertion") == "") {
			t.Errorf("real identity missing: %v", r.Header)
		}
		if path == "/healthz" && len(r.Header.Values("X-Gatehouse-Email")) != 0 {
			t.Errorf("public path got an identity: %v", r.Header)
		}
	}
}

func TestPublicPathsAreNoWayPastLogin(t *testing.T) {
	g, up := startCore(t)
	b := g.browser(t)
	if p := b.get(g.url("app.localhost", "/healthz")); p.status != 200 {
		t.Fatalf("public path: %d", p.status)
	}
	for _, path := range []string{
		"/healthz/../secret", "/healthz/%2e%2e/secret", "/healthz/%2E%2E/secret", "/healthz/.%2e/secret",
		"/healthz%2f..%2fsecret", "/healthz%2F..%2Fsecret", "/healthz/..;/secret", "/healthz%5c..%5csecret",
		"/healthz;/../secret", "//healthz/../secret", "/HEALTHZ/../secret", "/healthz/..%3b/secret",
		"/healthzsecret", "/healthz%00/../secret",
	} {
		raw := "http://app.localhost:" + g.port + path
		req, err := http.NewRequest("GET", raw, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = "//app.localhost:" + g.port + path // send the path byte for byte
		p := b.do(req)
		if p.status == 200 {
			t.Errorf("%s: served without login: %s", path, p.body)
		}
		if p.status != http.StatusFound && p.status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 302 to login or 400", path, p.status)
		}
	}
	for _, seen := range up.paths() {
		if seen != "/healthz" {
			t.Errorf("upstream saw %q without login", seen)
		}
	}
}

func TestLogoutAndRevocation(t *testing.T) {
	g, _ := startCore(t)
	b := g.browser(t)
	b.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	appURL, _ := url.Parse(g.url("app.localhost", "/"))
	appCookies := b.jar.Cookies(appURL)
	if len(appCookies) == 0 {
		t.Fatal("no app cookie")
	}
	if p := b.get(g.url("app.localhost", "/before")); p.status != 200 {
		t.Fatalf("before logout: %d", p.status)
	}

	// Logging out on the org's sign-in host revokes the session: the
	// app host's own cookie for it must stop working within 5 seconds.
	lp := b.get(g.url("login.acme.localhost", "/.gatehouse/logout"))
	if lp.status != 200 || !strings.Contains(lp.body, "Sign out") {
		t.Fatalf("logout page: %d %s", lp.status, lp.body)
	}
	out := b.post(g.url("login.acme.localhost", "/.gatehouse/logout"), url.Values{"csrf": {field(t, csrfRE, lp.body)}})
	if out.status != 200 || !strings.Contains(out.body, "signed out") {
		t.Fatalf("logout: %d %s", out.status, out.body)
	}
	eventually(t, "revoked session refused", func() error {
		fresh := g.browser(t)
		fresh.jar.SetCookies(appURL, appCookies)
		p := fresh.get(g.url("app.localhost", "/after"))
		return holds(p.status == http.StatusFound, "still served: %d", p.status)
	})
	// API clients get a 401, not a redirect.
	fresh := g.browser(t)
	fresh.jar.SetCookies(appURL, appCookies)
	req, _ := http.NewRequest("GET", g.url("app.localhost", "/api"), nil)
	req.Header.Set("Accept", "application/json")
	if p := fresh.do(req); p.status != http.StatusUnauthorized {
		t.Fatalf("API call with revoked cookie: %d", p.status)
	}

	// The audit trail recorded the sign-in and the sign-out.
	g.stop()
	st := g.openStore(t)
	events, err := st.ListAudit(t.Context(), store.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range events {
		if e.Action == "policy.load" && e.OrgID == "" && e.Actor == "gatehouse" {
			continue // the platform's: the policy set in force at start
		}
		got = append(got, e.Action+"/"+e.Outcome)
		if e.OrgID == "" || e.Actor == "" {
			t.Errorf("audit event without org or actor: %+v", e)
		}
	}
	if !slices.Equal(got, []string{"logout/success", "login/success"}) {
		t.Fatalf("audit = %v", got)
	}
}

func TestLogoutNeedsCSRFToken(t *testing.T) {
	g, _ := startCore(t)
	b := g.browser(t)
	b.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	if p := b.post(g.url("app.localhost", "/.gatehouse/logout"), url.Values{"csrf": {"forged"}}); p.status != http.StatusForbidden {
		t.Fatalf("logout with forged token: %d", p.status)
	}
	if p := b.get(g.url("app.localhost", "/still")); p.status != 200 {
		t.Fatalf("session ended by a forged logout: %d", p.status)
	}
}

func TestCookieIsBoundToItsHost(t *testing.T) {
	g, up := startCore(t)
	b := g.browser(t)
	b.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	acmeLogin, _ := url.Parse(g.url("login.acme.localhost", "/"))
	appURL, _ := url.Parse(g.url("app.localhost", "/"))
	for _, c := range []*http.Cookie{b.jar.Cookies(acmeLogin)[0], b.jar.Cookies(appURL)[0]} {
		if c.Name != "_gatehouse" {
			continue
		}
		for _, target := range []string{"login.globex.localhost", "globex-app.localhost"} {
			req, _ := http.NewRequest("GET", g.url(target, "/.gatehouse/login?rd="+url.QueryEscape(g.url("globex-app.localhost", "/x"))), nil)
			if target == "globex-app.localhost" {
				req, _ = http.NewRequest("GET", g.url(target, "/x"), nil)
			}
			req.Header.Set("Cookie", c.Name+"="+c.Value)
			p := g.browser(t).do(req)
			if target == "globex-app.localhost" && p.status != http.StatusFound {
				t.Errorf("acme cookie on %s: %d, want redirect to login", target, p.status)
			}
			if target == "login.globex.localhost" && (p.status != 200 || !strings.Contains(p.body, "Globex")) {
				t.Errorf("acme cookie on %s: %d, want Globex's sign-in form", target, p.status)
			}
		}
	}
	if up.last("/x") != nil {
		t.Fatal("upstream reached with a cookie from another host")
	}
}

func TestRouteOrgsDenyOtherOrgs(t *testing.T) {
	g, up := startCore(t)
	b := g.browser(t)
	p := b.login(g.url("globex-app.localhost", "/x"), "alice@acme.example", "alice-pw-123")
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "does not have access") {
		t.Fatalf("acme user on globex-only route: %d %s", p.status, p.body)
	}
	if up.last("/x") != nil {
		t.Fatal("denied request reached the upstream")
	}
	c := g.browser(t)
	if p := c.login(g.url("globex-app.localhost", "/x"), "carol@globex.example", "carol-pw-456"); p.status != 200 {
		t.Fatalf("globex user: %d %s", p.status, p.body)
	}
}

func TestWebsocketAndStreaming(t *testing.T) {
	g, up := startCore(t)
	b := g.browser(t)
	b.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, g.url("app.localhost", "/ws"), &websocket.DialOptions{HTTPClient: b.client})
	if err != nil {
		t.Fatalf("websocket dial: %v (%v)", err, resp)
	}
	defer c.CloseNow()
	for _, msg := range []string{"hello", "again"} {
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo: "+msg {
			t.Fatalf("websocket echo = %q, %v", got, err)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")

	// Server-sent events arrive one by one, not when the stream ends: the
	// first is read while the upstream holds the rest back.
	req, _ := http.NewRequestWithContext(ctx, "GET", g.url("app.localhost", "/events"), nil)
	r, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	type chunk struct {
		data string
		err  error
	}
	first := make(chan chunk, 1)
	go func() {
		buf := make([]byte, 64)
		n, err := r.Body.Read(buf)
		first <- chunk{string(buf[:n]), err}
	}()
	select {
	case c := <-first:
		if c.err != nil || !strings.Contains(c.data, "tick 0") {
			t.Fatalf("first event = %q, %v", c.data, c.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("first event not delivered while the upstream holds the stream: buffered")
	}
	close(up.moreEvents)
	rest, _ := io.ReadAll(r.Body)
	if !strings.Contains(string(rest), "tick 2") {
		t.Fatalf("rest of stream = %q", rest)
	}
}

func TestLoginErrorsAndThrottling(t *testing.T) {
	g, _ := startCore(t)
	b := g.browser(t)
	form := b.follow(b.get(g.url("login.acme.localhost", "/.gatehouse/login")))
	try := func(email, pw string) page {
		p := b.get(g.url("login.acme.localhost", "/.gatehouse/login"))
		return b.post(g.url("login.acme.localhost", "/.gatehouse/login"), url.Values{
			"csrf": {field(t, csrfRE, p.body)}, "step": {"password"}, "email": {email}, "password": {pw},
		})
	}
	_ = form
	if p := try("alice@acme.example", "wrong"); p.status != 401 || !strings.Contains(p.body, "Incorrect email or password") {
		t.Fatalf("wrong password: %d %s", p.status, p.body)
	}
	// An unknown user gets the same answer (no account enumeration).
	if p := try("nobody@acme.example", "wrong"); p.status != 401 || !strings.Contains(p.body, "Incorrect email or password") {
		t.Fatalf("unknown user: %d", p.status)
	}
	try("alice@acme.example", "wrong")
	try("alice@acme.example", "wrong")
	p := try("alice@acme.example", "alice-pw-123")
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "Too many failed sign-ins for this account") || p.header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %d %s", p.status, p.body)
	}
	// Another account from the same address is not locked by alice's failures.
	if p := try("bob@acme.example", "bob-example-password"); p.status != http.StatusSeeOther && p.status != 200 {
		t.Fatalf("bob after alice's lockout: %d %s", p.status, p.body)
	}

	// Failures across accounts from one address add up (bob, who just
	// signed in here, has a budget of his own at this address now).
	try("nobody1@acme.example", "wrong")
	try("nobody2@acme.example", "wrong")
	p = try("nobody3@acme.example", "wrong")
	if p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "Too many failed sign-ins from your network") {
		t.Fatalf("after 6 failures from one address: %d %s", p.status, p.body)
	}

	// A post without the CSRF token is refused.
	np := b.post(g.url("login.acme.localhost", "/.gatehouse/login"), url.Values{"step": {"password"}, "email": {"bob@acme.example"}, "password": {"bob-example-password"}})
	if np.status != http.StatusForbidden {
		t.Fatalf("post without csrf: %d", np.status)
	}
	// A cross-origin post is refused even with a token.
	p = b.get(g.url("login.acme.localhost", "/.gatehouse/login"))
	req, _ := http.NewRequest("POST", g.url("login.acme.localhost", "/.gatehouse/login"), strings.NewReader(url.Values{
		"csrf": {field(t, csrfRE, p.body)}, "step": {"password"}, "email": {"bob@acme.example"}, "password": {"bob-example-password"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if p := b.do(req); p.status != http.StatusForbidden {
		t.Fatalf("cross-site post: %d", p.status)
	}
	// Discovery of an unknown domain says so plainly.
	p = b.get(g.url("auth.localhost", "/.gatehouse/login"))
	p = b.post(g.url("auth.localhost", "/.gatehouse/login"), url.Values{"csrf": {field(t, csrfRE, p.body)}, "step": {"discover"}, "email": {"x@unknown.example"}})
	if p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "No organization signs in with unknown.example") {
		t.Fatalf("unknown domain: %d %s", p.status, p.body)
	}
	p = b.get(g.url("auth.localhost", "/.gatehouse/login"))
	p = b.post(g.url("auth.localhost", "/.gatehouse/login"), url.Values{"csrf": {field(t, csrfRE, p.body)}, "step": {"discover"}, "email": {"a@evil.com@acme.example"}})
	if p.status != http.StatusUnprocessableEntity {
		t.Fatalf("a@evil.com@acme.example discovered an org: %d", p.status)
	}
}

func TestOpenRedirectsRefused(t *testing.T) {
	g, _ := startCore(t)
	b := g.browser(t)
	for _, rd := range []string{"https://evil.com/", "//evil.com", "/\\evil.com", "https:evil.com", "javascript:alert(1)",
		"http://app.localhost.evil.com/", "http://evil.com@app.localhost/", "/%09/evil.com"} {
		p := b.get(g.url("auth.localhost", "/.gatehouse/login?rd="+url.QueryEscape(rd)))
		if p.status != http.StatusBadRequest {
			t.Errorf("rd=%q: %d, want 400", rd, p.status)
		}
	}
	// An absolute target must keep the public URL's scheme and port.
	for _, rd := range []string{"https://app.localhost:" + g.port + "/", "http://app.localhost:1/"} {
		if p := b.get(g.url("auth.localhost", "/.gatehouse/login?rd="+url.QueryEscape(rd))); p.status != http.StatusBadRequest {
			t.Errorf("rd=%q: %d, want 400", rd, p.status)
		}
	}
	// A refused target is logged without its query string or fragment
	// (they may carry tokens), in any spelling.
	for _, rd := range []string{"https://evil.com/cb?token=SECRET1", "https://evil.com/cb#access_token=SECRET2", "//evil.com/?code=SECRET3", "javascript:x?SECRET4",
		"https://user:SECRET5@evil.com/", "//SECRET6@evil.com/x", "https://evil.com/cb;token=SECRET7", "https://a@b:SECRET8@evil.com"} {
		b.get(g.url("auth.localhost", "/.gatehouse/login?rd="+url.QueryEscape(rd)))
	}
	if !g.logged("https://evil.com/cb?…") {
		t.Error("refused redirect not logged")
	}
	if logs := g.Logs(); strings.Contains(logs, "SECRET") {
		t.Errorf("a refused redirect's query reached the log:\n%s", logs)
	}
}

// The cross-host hand-off only ever lands in the browser that started the
// sign-in, and only on hosts that belong to the operator or to the
// session's own org.
func TestHandoffIsBoundToBrowserAndOrg(t *testing.T) {
	g, up := startCore(t)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")

	// Opening a second app: the shared sign-in remembers alice's org and
	// sends her to its sign-in, where her session hands her on without a
	// form. (globex-app then refuses acme: a 403 from policy.)
	p := alice.follow(alice.get(g.url("globex-app.localhost", "/x")))
	if p.status != http.StatusForbidden || !strings.Contains(p.url, "globex-app.localhost") {
		t.Fatalf("hand-off to a second app host: %d %s", p.status, p.url)
	}
	// "Use a different email" on the org's page reaches the shared form.
	p = alice.get(g.url("login.acme.localhost", "/.gatehouse/login"))
	back := html.UnescapeString(field(t, regexp.MustCompile(`<a href="([^"]+)">Use a different email</a>`), p.body))
	if p = alice.get(back); p.status != 200 || !strings.Contains(p.body, "Work email") {
		t.Fatalf("switch to the shared sign-in: %d %s", p.status, back)
	}

	// A sign-in link made elsewhere (no state from this browser) mints no
	// hand-off ticket: the browser is sent to the app, whose proxy brings
	// it back for a bound hand-off.
	p = alice.get(g.url("login.acme.localhost", "/.gatehouse/login?rd="+url.QueryEscape(g.url("app.localhost", "/next"))))
	if p.status != http.StatusSeeOther || p.header.Get("Location") != g.url("app.localhost", "/next") {
		t.Fatalf("signed-in sign-in link without state: %d %s", p.status, p.header.Get("Location"))
	}
	alice.jar.SetCookies(mustURL(g.url("app.localhost", "/")), []*http.Cookie{{Name: "_gatehouse", Value: "", MaxAge: -1}})
	loc := alice.ticketFor(g.url("app.localhost", "/next"))
	if p = alice.follow(alice.get(loc)); p.status != 200 || !strings.Contains(p.body, "upstream /next") {
		t.Fatalf("bound hand-off: %d %s", p.status, p.body)
	}
	// A ticket works once.
	if p := g.browser(t).get(loc); p.status != http.StatusBadRequest {
		t.Fatalf("replayed ticket: %d", p.status)
	}

	// Login CSRF: carol makes a ticket for herself (bound to her own
	// browser) and plants it in alice's browser. Alice's browser has no
	// matching state: refused, and alice stays alice.
	carol := g.browser(t)
	carol.login(g.url("globex-app.localhost", "/"), "carol@globex.example", "carol-pw-456")
	planted := carol.ticketFor(g.url("app.localhost", "/planted"))
	victim := g.browser(t)
	victim.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	victim.get(g.url("app.localhost", "/start")) // ordinary browsing
	if p := victim.get(planted); p.status != http.StatusBadRequest {
		t.Fatalf("planted ticket: %d", p.status)
	}
	victim.get(g.url("app.localhost", "/after-plant"))
	if r := up.last("/after-plant"); r == nil || r.Header.Get("X-Gatehouse-Email") != "bob@acme.example" {
		t.Fatalf("victim's identity changed by a planted ticket: %v", r)
	}

	// A session is never handed to another org's login domain (its DNS is
	// that customer's, not the operator's).
	p = alice.get(g.url("login.acme.localhost", "/.gatehouse/login?rd="+url.QueryEscape(g.url("login.globex.localhost", "/"))))
	if p.status != http.StatusForbidden || strings.Contains(p.header.Get("Location"), "ticket=") {
		t.Fatalf("hand-off to another org's domain: %d %s", p.status, p.header.Get("Location"))
	}
	// And a session of org A is not reused on org B's sign-in page.
	globexLogin := alice.get(g.url("login.globex.localhost", "/.gatehouse/login?rd="+url.QueryEscape(g.url("app.localhost", "/"))))
	if globexLogin.status != 200 || !strings.Contains(globexLogin.body, "Globex") {
		t.Fatalf("acme session on globex's sign-in: %d", globexLogin.status)
	}

	// Gatehouse's own cookies never reach the upstream.
	req, _ := http.NewRequest("GET", g.url("app.localhost", "/cookies"), nil)
	req.Header.Set("Cookie", "app_pref=dark")
	alice.do(req)
	r := up.last("/cookies")
	if c := r.Header.Get("Cookie"); strings.Contains(c, "gatehouse") || !strings.Contains(c, "app_pref=dark") {
		t.Fatalf("upstream cookies: %q", c)
	}
}

// ticketFor opens appURL without a session there and follows redirects
// until the sign-in hands a ticket back; it returns that hand-off URL,
// not yet visited.
func (b *browser) ticketFor(appURL string) string {
	b.t.Helper()
	p := b.get(appURL)
	for i := 0; i < 6 && p.status >= 300 && p.status < 400; i++ {
		loc := resolve(p.url, p.header.Get("Location"))
		if strings.Contains(loc, "/.gatehouse/handoff?ticket=") {
			return loc
		}
		p = b.get(loc)
	}
	b.t.Fatalf("no hand-off ticket on the way from %s: %d %s", appURL, p.status, p.url)
	return ""
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// Guesses sent in parallel cannot get past the per-account limit.
func TestParallelGuessesAreThrottled(t *testing.T) {
	g, _ := startCore(t) // max_failures: 3
	b := g.browser(t)
	p := b.get(g.url("login.acme.localhost", "/.gatehouse/login"))
	form := hidden(p.body)
	form.Set("email", "alice@acme.example")
	form.Set("password", "wrong")
	var mu sync.Mutex
	counts := map[int]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			p := b.post(g.url("login.acme.localhost", "/.gatehouse/login"), form)
			mu.Lock()
			counts[p.status]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if counts[http.StatusUnauthorized] > 3 || counts[http.StatusTooManyRequests] < 17 {
		t.Fatalf("20 parallel wrong guesses: %v, want at most 3 checked", counts)
	}
}

func TestGracefulShutdownDrains(t *testing.T) {
	g, up := startCore(t)
	b := g.browser(t)
	b.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := b.client.Get(g.url("app.localhost", "/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(body), err}
	}()
	select { // stop once the request is in flight at the upstream
	case <-up.slowArrived:
	case <-time.After(10 * time.Second):
		t.Fatal("/slow never reached the upstream")
	}
	g.stop()
	select {
	case r := <-done:
		if r.err != nil || r.status != 200 || r.body != "slow done" {
			t.Fatalf("in-flight request during shutdown: %d %q %v", r.status, r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("in-flight request never finished")
	}
	if g.exitErr != nil {
		t.Fatalf("exit: %v", g.exitErr)
	}
	if _, err := net.DialTimeout("tcp", g.addr, time.Second); err == nil {
		t.Fatal("still listening after shutdown")
	}
}

func TestCLI(t *testing.T) {
	out, err := exec.Command(binary, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "gatehouse ") {
		t.Fatalf("version: %s %v", out, err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("public_url: http://auth.localhost\nstore:\n  badger: { path: x }\nroutes:\n  - id: app\n    hots: app.localhost\n    upstream: http://127.0.0.1:1\n"), 0o600)
	out, err = exec.Command(binary, "config", "validate", bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad.yaml:6:5: routes[0].hots: unknown key") || !strings.Contains(string(out), `did you mean "host"`) {
		t.Fatalf("config validate: %v\n%s", err, out)
	}
	cmd := exec.Command(binary, "config", "validate", "../config/testdata/example.yaml")
	cmd.Env = append(os.Environ(), "ALICE_PASSWORD=x", "CAROL_PASSWORD=y")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("validate example: %v\n%s", err, out)
	}
	cmd = exec.Command(binary, "config", "validate", "../examples/federation/gatehouse.yaml")
	cmd.Env = append(os.Environ(), "INITECH_OIDC_SECRET=x")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("validate federation example: %v\n%s", err, out)
	}
	// The vanity-domains example, from its folder as its guide says.
	cmd = exec.Command(binary, "config", "validate", "gatehouse.yaml")
	cmd.Dir = "../examples/vanity-domains"
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "gatehouse.yaml: ok\n" {
		t.Fatalf("validate vanity-domains example: %v\n%s", err, out)
	}
	cmd = exec.Command(binary, "notify", "preview", "--config", "gatehouse.yaml", "--org", "acme-labs", "--kind", "mfa_code", "--part", "sms")
	cmd.Dir = "../examples/vanity-domains"
	if out, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "428193 is your Acme Labs sign-in code.") {
		t.Fatalf("preview in the vanity-domains example: %v\n%s", err, out)
	}
}

func TestTrustedProxyTLSTermination(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t),
		"public_url: http://auth.localhost:{{PORT}}", "public_url: https://auth.localhost:{{PORT}}\ntrusted_proxies: [127.0.0.1/32]").Replace(testConfig)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	b := g.browser(t)
	// The load balancer in front terminated TLS and says so.
	req, _ := http.NewRequest("GET", g.url("login.acme.localhost", "/.gatehouse/login"), nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	p := b.do(req)
	sc := p.header.Get("Set-Cookie")
	if p.status != 200 || !strings.HasPrefix(sc, "__Host-gatehouse_csrf=") || !strings.Contains(sc, "Secure") {
		t.Fatalf("behind a TLS-terminating proxy: %d Set-Cookie %q", p.status, sc)
	}
	// Without the header (plain HTTP at the proxy) cookies are not Secure.
	p = g.browser(t).get(g.url("login.acme.localhost", "/.gatehouse/login"))
	if sc := p.header.Get("Set-Cookie"); strings.Contains(sc, "Secure") || strings.HasPrefix(sc, "__Host-") {
		t.Fatalf("plain request got %q", sc)
	}
	// The upstream is told the original scheme and client.
	req, _ = http.NewRequest("GET", g.url("app.localhost", "/healthz"), nil)
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	b.do(req)
	r := up.last("/healthz")
	if r.Header.Get("X-Forwarded-Proto") != "https" || r.Header.Get("X-Forwarded-For") != "203.0.113.9, 127.0.0.1" {
		t.Fatalf("upstream got proto %q for %q", r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-For"))
	}
}

// The core issue's configuration works as written: only its addresses
// and data folder are moved so the test can run beside others.
func TestIssueConfigAsWritten(t *testing.T) {
	up := newUpstream(t)
	b, err := os.ReadFile("../config/testdata/issue-example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.NewReplacer(":8080", ":{{PORT}}", "127.0.0.1:9090", "{{OPS}}", "./gatehouse-data", "{{DATA}}",
		"http://127.0.0.1:9000", up.URL).Replace(string(b))
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	if p := g.browser(t).login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123"); p.status != 200 {
		t.Fatalf("alice: %d", p.status)
	}
	if p := g.browser(t).login(g.url("app.localhost", "/"), "carol@globex.example", "carol-pw-456"); p.status != 200 {
		t.Fatalf("carol: %d", p.status)
	}
	var logs string
	for range 200 {
		if logs = g.Logs(); strings.Contains(logs, "password sign-in is disabled for this user") {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no warning about bob's placeholder hash:\n%s", logs)
}
