package e2e

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

// Two orgs federated to two different OpenID Providers (zitadel/oidc's
// example OP, one per org), plus a sub-org that signs in through its
// parent's IdP.
const federationConfig = preamble + `routes:
  - id: app
    host: app.localhost
    upstream: {{UPSTREAM}}
orgs:
  - slug: initech
    name: Initech
    email_domains: [initech.example]
    login_domain: login.initech.localhost
    connection:
      type: oidc
      oidc:
        issuer: {{IDP_A}}
        client_id: gatehouse-initech
        client_secret: "${INITECH_SECRET}"
      group_roles:
        initech-admins: [admin]
        engineering: [engineer]
      claims:
        attributes: { username: preferred_username }
  - slug: initech-eu
    name: Initech EU
    parent: initech
    email_domains: [eu.initech.example]
    login_domain: login.initech-eu.localhost
  - slug: umbrella
    name: Umbrella
    email_domains: [umbrella.example]
    connection:
      type: oidc
      oidc:
        issuer: {{IDP_B}}
        client_id: gatehouse-umbrella
        client_secret_file: {{SECRET_FILE}}
      group_roles:
        staff: [member]
      default_roles: []
    users:
      # Leo works at Labs and was also given access to the parent org.
      - { email: leo@labs.umbrella.example, roles: [viewer] }
  - slug: umbrella-labs
    name: Umbrella Labs
    parent: umbrella
    email_domains: [labs.umbrella.example]
`

type federation struct {
	g    *gatehouse
	up   *upstream
	idpA *testidp.OIDC
	idpB *testidp.OIDC
}

// startFederation starts Gatehouse with federationConfig plus extra
// config (appended).
func startFederation(t *testing.T, extra ...string) *federation {
	t.Helper()
	return startFederationWith(t, nil, extra...)
}

// startFederationWith is startFederation with federationConfig changed by
// tweak first.
func startFederationWith(t *testing.T, tweak func(string) string, extra ...string) *federation {
	t.Helper()
	extraEnv := []string{"PORTAL_SECRET=" + portalSecret}
	port := freePort(t)
	up := newUpstream(t)
	idpA := testidp.NewOIDC(t, "gatehouse-initech", "initech-secret", []string{"http://login.initech.localhost:" + port + "/.gatehouse/callback"},
		testidp.User{ID: "a-ann", Username: "ann", Password: "ann-pw", Email: "ann@initech.example", EmailVerified: true, First: "Ann", Last: "Admin", Groups: []string{"initech-admins", "engineering"}},
		testidp.User{ID: "a-mal", Username: "mallory", Password: "mal-pw", Email: "mallory@umbrella.example", EmailVerified: true, First: "Mal", Last: "Lory"},
		testidp.User{ID: "a-unv", Username: "unverified", Password: "unv-pw", Email: "unverified@initech.example", EmailVerified: false},
		testidp.User{ID: "a-eva", Username: "eva", Password: "eva-pw", Email: "eva@eu.initech.example", EmailVerified: true, First: "Eva", Last: "EU"})
	idpB := testidp.NewOIDC(t, "gatehouse-umbrella", "umbrella-secret", []string{"http://auth.localhost:" + port + "/.gatehouse/callback"},
		testidp.User{ID: "b-bea", Username: "bea", Password: "bea-pw", Email: "bea@umbrella.example", EmailVerified: true, First: "Bea", Last: "Staff", Groups: []string{"staff"}},
		testidp.User{ID: "b-nog", Username: "nogroup", Password: "nog-pw", Email: "nogroup@umbrella.example", EmailVerified: true},
		testidp.User{ID: "b-leo", Username: "leo", Password: "leo-pw", Email: "leo@labs.umbrella.example", EmailVerified: true, First: "Leo", Last: "Lab", Groups: []string{"staff"}})
	secretFile := t.TempDir() + "/umbrella-secret"
	if err := os.WriteFile(secretFile, []byte("umbrella-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := federationConfig
	if tweak != nil {
		base = tweak(base)
	}
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{IDP_A}}", idpA.Issuer, "{{IDP_B}}", idpB.Issuer, "{{SECRET_FILE}}", secretFile).Replace(base) + strings.Join(extra, "")
	g := startAt(t, port, cfg, append([]string{"INITECH_SECRET=initech-secret"}, extraEnv...)...)
	return &federation{g: g, up: up, idpA: idpA, idpB: idpB}
}

// toIdP walks from an app URL through home-realm discovery to the IdP's
// login page, returning it.
func (b *browser) toIdP(appURL, email string) page {
	b.t.Helper()
	p := b.follow(b.get(appURL))
	if p.status != 200 || !strings.Contains(p.body, "Work email") {
		b.t.Fatalf("sign-in page: %d %s\n%s", p.status, p.url, p.body)
	}
	form := hidden(p.body)
	form.Set("email", email)
	p = b.follow(b.post(resolve(p.url, field(b.t, actionRE, p.body)), form))
	if p.status != 200 || !strings.Contains(p.body, `name="username"`) {
		b.t.Fatalf("want the IdP's login page, got %d %s\n%s", p.status, p.url, p.body)
	}
	return p
}

// atIdP signs in at the IdP's login page and returns the IdP's redirect
// back towards Gatehouse (not yet followed).
func (b *browser) atIdP(p page, user, pw string) page {
	b.t.Helper()
	resp, err := testidp.Login(b.client.Do, p.url, p.body, user, pw)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	p = page{status: resp.StatusCode, header: resp.Header, body: string(body), url: resp.Request.URL.String()}
	// The OP's own hop (/auth/callback) before it redirects to Gatehouse.
	for i := 0; i < 5 && p.status >= 300 && p.status < 400 && !strings.Contains(p.header.Get("Location"), "/.gatehouse/callback"); i++ {
		p = b.get(resolve(p.url, p.header.Get("Location")))
	}
	if !strings.Contains(p.header.Get("Location"), "/.gatehouse/callback") {
		b.t.Fatalf("IdP did not send the browser back: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
	}
	return p
}

func TestFederatedOIDCSignIn(t *testing.T) {
	f := startFederation(t)
	g, up := f.g, f.up

	t.Run("JIT user with roles from groups in the right org", func(t *testing.T) {
		b := g.browser(t)
		p := b.toIdP(g.url("app.localhost", "/whoami"), "ann@initech.example")
		if !strings.HasPrefix(p.url, f.idpA.Issuer) {
			t.Fatalf("initech's sign-in went to %s, want IdP A", p.url)
		}
		p = b.follow(b.atIdP(p, "ann", "ann-pw"))
		if p.status != 200 || p.body != "upstream /whoami for ann@initech.example" {
			t.Fatalf("after federated sign-in: %d %s\n%s", p.status, p.url, p.body)
		}
		r := up.last("/whoami")
		for h, want := range map[string]string{"X-Gatehouse-Email": "ann@initech.example", "X-Gatehouse-Org-Slug": "initech", "X-Gatehouse-Roles": "admin,engineer,member"} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		ctx := oidc.ClientContext(t.Context(), b.client)
		issuer := "http://auth.localhost:" + g.port
		v := oidc.NewVerifier(issuer, oidc.NewRemoteKeySet(ctx, issuer+"/.well-known/jwks.json"), &oidc.Config{ClientID: "app.localhost", SupportedSigningAlgs: []string{oidc.ES256}})
		tok, err := v.Verify(ctx, r.Header.Get("X-Gatehouse-Jwt-Assertion"))
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			OrgID  string   `json:"org_id"`
			Name   string   `json:"name"`
			Groups []string `json:"groups"`
		}
		_ = tok.Claims(&c)
		if c.OrgID != r.Header.Get("X-Gatehouse-Org") || !strings.HasPrefix(c.OrgID, "org_") || c.Name != "Ann Admin" || !slices.Equal(c.Groups, []string{"initech-admins", "engineering"}) {
			t.Fatalf("assertion claims %+v", c)
		}
		// The second sign-in updates the same user; no second account.
		b2 := g.browser(t)
		b2.follow(b2.atIdP(b2.toIdP(g.url("app.localhost", "/again"), "ann@initech.example"), "ann", "ann-pw"))
		if r2 := up.last("/again"); r2 == nil || r2.Header.Get("X-Gatehouse-User") != r.Header.Get("X-Gatehouse-User") {
			t.Fatalf("second sign-in is another user: %v", r2)
		}
	})

	t.Run("second org, second IdP, secret from a file", func(t *testing.T) {
		b := g.browser(t)
		p := b.toIdP(g.url("app.localhost", "/b"), "bea@umbrella.example")
		if !strings.HasPrefix(p.url, f.idpB.Issuer) {
			t.Fatalf("umbrella's sign-in went to %s, want IdP B", p.url)
		}
		p = b.follow(b.atIdP(p, "bea", "bea-pw"))
		r := up.last("/b")
		if p.status != 200 || r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "umbrella" || r.Header.Get("X-Gatehouse-Roles") != "member" {
			t.Fatalf("umbrella sign-in: %d %s; upstream %v", p.status, p.body, r)
		}
	})

	t.Run("sub-org signs in through its parent's IdP", func(t *testing.T) {
		b := g.browser(t)
		p := b.toIdP(g.url("app.localhost", "/labs"), "leo@labs.umbrella.example")
		if !strings.HasPrefix(p.url, f.idpB.Issuer) {
			t.Fatalf("umbrella-labs' sign-in went to %s, want its parent's IdP", p.url)
		}
		b.follow(b.atIdP(p, "leo", "leo-pw"))
		if r := up.last("/labs"); r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "umbrella-labs" {
			t.Fatalf("sub-org sign-in landed in %v", r)
		}
	})

	t.Run("switch to another org of the same sign-in", func(t *testing.T) {
		b := g.browser(t)
		b.follow(b.atIdP(b.toIdP(g.url("app.localhost", "/labs2"), "leo@labs.umbrella.example"), "leo", "leo-pw"))
		if r := up.last("/labs2"); r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "umbrella-labs" {
			t.Fatalf("leo's sign-in: %v", r)
		}
		p := b.get(g.url("app.localhost", "/.gatehouse/orgs?rd=/parent"))
		if p.status != 200 || !strings.Contains(p.body, "Switch to Umbrella") || !strings.Contains(p.body, "<strong>Umbrella Labs</strong> (current)") {
			t.Fatalf("org chooser: %d\n%s", p.status, p.body)
		}
		form := hidden(p.body)
		p = b.follow(b.post(g.url("app.localhost", "/.gatehouse/orgs"), form))
		r := up.last("/parent")
		if p.status != 200 || r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "umbrella" || r.Header.Get("X-Gatehouse-Roles") != "viewer" {
			t.Fatalf("after the switch: %d %s; upstream %v", p.status, p.body, r)
		}
		// Ann (initech, another IdP) cannot switch into umbrella.
		a := g.browser(t)
		a.follow(a.atIdP(a.toIdP(g.url("app.localhost", "/ann"), "ann@initech.example"), "ann", "ann-pw"))
		p = a.get(g.url("app.localhost", "/.gatehouse/orgs"))
		if strings.Contains(p.body, "Switch to") {
			t.Fatalf("ann offered a switch:\n%s", p.body)
		}
		form = hidden(p.body)
		form.Set("org", "umbrella")
		if p := a.post(g.url("app.localhost", "/.gatehouse/orgs"), form); p.status != http.StatusForbidden {
			t.Fatalf("forged switch: %d", p.status)
		}
	})

	t.Run("sub-org with its own login domain signs in through its parent's IdP", func(t *testing.T) {
		b := g.browser(t)
		p := b.toIdP(g.url("app.localhost", "/eu"), "eva@eu.initech.example")
		if !strings.HasPrefix(p.url, f.idpA.Issuer) {
			t.Fatalf("initech-eu's sign-in went to %s, want its parent's IdP", p.url)
		}
		b.follow(b.atIdP(p, "eva", "eva-pw"))
		if r := up.last("/eu"); r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "initech-eu" {
			t.Fatalf("sub-org sign-in landed in %v", r)
		}
	})

	refused := []struct {
		name, email, user, pw, want string
	}{
		{"IdP A cannot mint a user of org B's domain", "ann@initech.example", "mallory", "mal-pw", "email address this organization does not use"},
		{"unverified email", "unverified@initech.example", "unverified", "unv-pw", "do not give your account access"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			b := g.browser(t)
			p := b.follow(b.atIdP(b.toIdP(g.url("app.localhost", "/x"), tt.email), tt.user, tt.pw))
			if p.status != http.StatusForbidden || !strings.Contains(p.body, tt.want) || !strings.Contains(p.body, "Reference") {
				t.Fatalf("got %d\n%s", p.status, p.body)
			}
		})
	}
	t.Run("groups that map to no role", func(t *testing.T) {
		b := g.browser(t)
		p := b.follow(b.atIdP(b.toIdP(g.url("app.localhost", "/x"), "nogroup@umbrella.example"), "nogroup", "nog-pw"))
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "assign you a group or role") {
			t.Fatalf("got %d\n%s", p.status, p.body)
		}
	})

	t.Run("a sign-in opened on another host starts on the org's sign-in host", func(t *testing.T) {
		b := g.browser(t)
		p := b.get(g.url("app.localhost", "/.gatehouse/login?org=umbrella"))
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), g.url("auth.localhost", "/.gatehouse/login?")) {
			t.Fatalf("got %d %s", p.status, p.header.Get("Location"))
		}
		p = b.get(p.header.Get("Location"))
		loc, _ := url.Parse(p.header.Get("Location"))
		if p.status != http.StatusSeeOther || loc.Query().Get("redirect_uri") != g.url("auth.localhost", "/.gatehouse/callback") {
			t.Fatalf("IdP redirect: %d %s", p.status, loc)
		}
	})

	t.Run("callback replayed, from another browser, or at another org's host", func(t *testing.T) {
		b := g.browser(t)
		cb := b.atIdP(b.toIdP(g.url("app.localhost", "/y"), "ann@initech.example"), "ann", "ann-pw")
		loc := resolve(cb.url, cb.header.Get("Location"))
		// Another browser (no flow cookie) presenting the response: refused.
		other := g.browser(t)
		if p := other.get(loc); p.status != http.StatusBadRequest || !strings.Contains(p.body, "started in another browser") {
			t.Fatalf("stolen callback: %d\n%s", p.status, p.body)
		}
		// Even with a made-up flow cookie of the right name.
		lu, _ := url.Parse(loc)
		other.jar.SetCookies(lu, []*http.Cookie{{Name: "gatehouse_flow_" + lu.Query().Get("state")[:16], Value: "guessed"}})
		if p := other.get(loc); p.status != http.StatusBadRequest {
			t.Fatalf("stolen callback with a forged flow cookie: %d\n%s", p.status, p.body)
		}
		// The theft did not spend the sign-in of the person it belongs to.
		if p := b.follow(b.get(loc)); p.status != 200 {
			t.Fatalf("own callback after a stolen copy was refused: %d\n%s", p.status, p.body)
		}
		if p := b.get(loc); p.status != http.StatusBadRequest {
			t.Fatalf("callback replayed after the flow was spent: %d\n%s", p.status, p.body)
		}
		// A fresh response for initech, taken to umbrella's callback host.
		b2 := g.browser(t)
		cb = b2.atIdP(b2.toIdP(g.url("app.localhost", "/z"), "ann@initech.example"), "ann", "ann-pw")
		u, _ := url.Parse(resolve(cb.url, cb.header.Get("Location")))
		u.Host = "auth.localhost:" + g.port
		if p := b2.get(u.String()); p.status != http.StatusBadRequest {
			t.Fatalf("initech's response at the shared host: %d\n%s", p.status, p.body)
		}
		// A forged state.
		if p := b2.get(g.url("auth.localhost", "/.gatehouse/callback?state=forgedforgedforged1234&code=x")); p.status != http.StatusBadRequest {
			t.Fatalf("forged state: %d", p.status)
		}
		if up.last("/z") != nil {
			t.Fatal("a refused callback reached the upstream")
		}
	})

	t.Run("IdP down: clear error, existing sessions keep working", func(t *testing.T) {
		b := g.browser(t)
		b.follow(b.atIdP(b.toIdP(g.url("app.localhost", "/before"), "bea@umbrella.example"), "bea", "bea-pw"))
		// Someone else is back from the IdP when it goes down: Gatehouse
		// cannot exchange the code.
		nb := g.browser(t)
		cb := nb.atIdP(nb.toIdP(g.url("app.localhost", "/new"), "bea@umbrella.example"), "bea", "bea-pw")
		f.idpB.Server.Close()
		p := nb.follow(cb)
		if p.status != http.StatusBadGateway || !strings.Contains(p.body, "identity provider is not answering") || !strings.Contains(p.body, "Reference") {
			t.Fatalf("callback with the IdP down: %d\n%s", p.status, p.body)
		}
		if p := b.get(g.url("app.localhost", "/after")); p.status != 200 {
			t.Fatalf("existing session with the IdP down: %d", p.status)
		}
		if up.last("/new") != nil {
			t.Fatal("a failed sign-in reached the upstream")
		}
	})

	// Audit and metrics name the outcomes.
	m := g.browser(t).get("http://" + g.ops + "/metrics")
	for _, want := range []string{`gatehouse_logins_total{org="initech",outcome="success"}`, `gatehouse_logins_total{org="initech",outcome="wrong_domain"} 1`, `outcome="denied"`} {
		if !strings.Contains(m.body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	g.logged("is not one of org initech's email domains") // flushed within 100ms
	logs := g.Logs()
	if !strings.Contains(logs, "is not one of org initech's email domains") || !strings.Contains(logs, `"ref":`) {
		t.Errorf("logs lack the exact refusal reason:\n%s", logs)
	}
	if strings.Contains(logs, "initech-secret") || strings.Contains(logs, "umbrella-secret") {
		t.Error("client secret in the logs")
	}
}
