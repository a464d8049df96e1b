package e2e

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

// Two orgs on two SAML IdPs (crewjam/saml's samlidp): hooli on its own
// login domain, piedpiper on the shared sign-in host.
const samlConfig = preamble + `routes:
  - id: app
    host: app.localhost
    upstream: {{UPSTREAM}}
orgs:
  - slug: hooli
    name: Hooli
    email_domains: [hooli.example]
    login_domain: login.hooli.localhost
    connection:
      type: saml
      saml: { metadata_url: "{{IDP1}}" }
      claims: { groups: eduPersonAffiliation }
      group_roles: { admins: [admin] }
  - slug: piedpiper
    name: Pied Piper
    email_domains: [piedpiper.example]
    connection:
      type: saml
      saml: { metadata_url: "{{IDP2}}" }
  # Also on the shared host and on IdP 2, taking IdP-initiated sign-ins.
  - slug: raviga
    name: Raviga
    email_domains: [raviga.example]
    connection:
      type: saml
      saml:
        metadata_url: "{{IDP2}}"
        allow_idp_initiated: true
        idp_initiated_url: "http://app.localhost:{{PORT}}/raviga-home"
`

type samlFed struct {
	g          *gatehouse
	up         *upstream
	idp1, idp2 *testidp.SAML
}

// startSAML starts Gatehouse with samlConfig plus extra config (appended).
func startSAML(t *testing.T, extra ...string) *samlFed {
	t.Helper()
	up := newUpstream(t)
	idp1 := testidp.NewSAML(t,
		testidp.SAMLUser{Name: "gavin", Password: "gavin-pw", Email: "gavin@hooli.example", GivenName: "Gavin", Surname: "Belson", Groups: []string{"admins"}},
		testidp.SAMLUser{Name: "richard", Password: "richard-pw", Email: "richard@piedpiper.example", GivenName: "Richard", Surname: "H"})
	idp2 := testidp.NewSAML(t,
		testidp.SAMLUser{Name: "jared", Password: "jared-pw", Email: "jared@piedpiper.example", GivenName: "Jared", Surname: "Dunn"},
		testidp.SAMLUser{Name: "rita", Password: "rita-pw", Email: "rita@raviga.example", GivenName: "Rita", Surname: "R"},
		testidp.SAMLUser{Name: "laurie", Password: "laurie-pw", Email: "laurie@raviga.example", GivenName: "Laurie", Surname: "B"})
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{IDP1}}", idp1.MetadataURL, "{{IDP2}}", idp2.MetadataURL).Replace(samlConfig) + strings.Join(extra, "")
	g := start(t, cfg, "PORTAL_SECRET="+portalSecret)
	b := g.browser(t)
	// Each customer's IT admin uploads its org's SP metadata to its IdP.
	idp1.AddSPFrom(t, b.client, "gatehouse-hooli", g.url("login.hooli.localhost", "/.gatehouse/saml/metadata"))
	idp2.AddSPFrom(t, b.client, "gatehouse-piedpiper", g.url("auth.localhost", "/.gatehouse/saml/metadata/piedpiper"))
	idp2.AddSPFrom(t, b.client, "gatehouse-raviga", g.url("auth.localhost", "/.gatehouse/saml/metadata/raviga"))
	idp2.AddShortcut(t, "raviga", g.url("auth.localhost", "/.gatehouse/saml/metadata/raviga"))
	return &samlFed{g: g, up: up, idp1: idp1, idp2: idp2}
}

// samlSignIn goes from an app URL to the IdP, signs in there, and returns
// the IdP's auto-submitting form (not yet posted) and its action.
func (b *browser) samlSignIn(appURL, email, user, pw string) (string, url.Values) {
	b.t.Helper()
	p := b.follow(b.get(appURL))
	form := hidden(p.body)
	form.Set("email", email)
	p = b.follow(b.post(resolve(p.url, field(b.t, actionRE, p.body)), form))
	if p.status == 200 && strings.Contains(p.body, "SAMLResponse") {
		return testidp.Form(p.body) // already signed in at the IdP
	}
	if p.status != 200 || !strings.Contains(p.body, `name="password"`) || !strings.Contains(p.body, "SAMLRequest") {
		b.t.Fatalf("want the IdP's login form, got %d %s\n%s", p.status, p.url, p.body)
	}
	// samlidp's own form re-posts the request without the redirect
	// binding's signature, which it then refuses for a signing SP; so sign
	// in at the IdP first (POST /login), then follow the signed request
	// again, as a person already signed in at their IdP does.
	ssoURL := p.url
	login := url.Values{"user": {user}, "password": {pw}}
	lu, _ := url.Parse(ssoURL)
	lu.Path, lu.RawQuery = "/login", ""
	if lp := b.post(lu.String(), login); lp.status != 200 {
		b.t.Fatalf("IdP login: %d\n%s", lp.status, lp.body)
	}
	p = b.get(ssoURL)
	if p.status != 200 || !strings.Contains(p.body, "SAMLResponse") {
		b.t.Fatalf("IdP sign-in: %d\n%s", p.status, p.body)
	}
	return testidp.Form(p.body)
}

// postResponse posts a SAMLResponse form cross-site, as the browser does
// for the IdP's auto-submitting page.
func (b *browser) postResponse(action string, vals url.Values, idpOrigin string) page {
	b.t.Helper()
	req, _ := http.NewRequest("POST", action, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", idpOrigin)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	return b.do(req)
}

func TestFederatedSAMLSignIn(t *testing.T) {
	f := startSAML(t)
	g, up := f.g, f.up

	t.Run("SP metadata names the org's entity, ACS and key", func(t *testing.T) {
		p := g.browser(t).get(g.url("login.hooli.localhost", "/.gatehouse/saml/metadata"))
		for _, want := range []string{`entityID="http://login.hooli.localhost:` + g.port + `/.gatehouse/saml/metadata"`,
			`Location="http://login.hooli.localhost:` + g.port + `/.gatehouse/saml/acs"`, `AuthnRequestsSigned="true"`, "X509Certificate"} {
			if !strings.Contains(p.body, want) {
				t.Errorf("metadata lacks %s:\n%s", want, p.body)
			}
		}
		if p := g.browser(t).get(g.url("auth.localhost", "/.gatehouse/saml/metadata/hooli")); p.status != 404 {
			t.Errorf("hooli's SP on the shared host: %d", p.status)
		}
	})

	var hooliResponse url.Values
	var hooliACS string
	t.Run("SP-initiated sign-in: JIT user, roles from groups, right org", func(t *testing.T) {
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/whoami"), "gavin@hooli.example", "gavin", "gavin-pw")
		if action != g.url("login.hooli.localhost", "/.gatehouse/saml/acs") {
			t.Fatalf("IdP posts to %s", action)
		}
		hooliResponse, hooliACS = vals, action
		// The IdP encrypted the assertion to the key in our SP metadata.
		if raw, _ := base64.StdEncoding.DecodeString(vals.Get("SAMLResponse")); !strings.Contains(string(raw), "EncryptedAssertion") {
			t.Errorf("the IdP sent a clear assertion; want it encrypted to the SP's key:\n%s", raw)
		}
		p := b.follow(b.postResponse(action, vals, f.idp1.URL))
		if p.status != 200 || p.body != "upstream /whoami for gavin@hooli.example" {
			t.Fatalf("after SAML sign-in: %d %s\n%s", p.status, p.url, p.body)
		}
		r := up.last("/whoami")
		for h, want := range map[string]string{"X-Gatehouse-Org-Slug": "hooli", "X-Gatehouse-Roles": "admin,member", "X-Gatehouse-Email": "gavin@hooli.example"} {
			if got := r.Header.Get(h); got != want {
				t.Errorf("%s = %q, want %q", h, got, want)
			}
		}
		// A just-in-time user in the right org, in the signed assertion too.
		if !strings.HasPrefix(r.Header.Get("X-Gatehouse-User"), "usr_") || !strings.HasPrefix(r.Header.Get("X-Gatehouse-Org"), "org_") {
			t.Errorf("user %q org %q", r.Header.Get("X-Gatehouse-User"), r.Header.Get("X-Gatehouse-Org"))
		}
		claims := assertionClaims(t, g, b, r.Header.Get("X-Gatehouse-Jwt-Assertion"))
		if claims["org_id"] != r.Header.Get("X-Gatehouse-Org") || claims["sub"] != r.Header.Get("X-Gatehouse-User") || claims["name"] != "Gavin Belson" {
			t.Errorf("assertion claims %v", claims)
		}
	})

	t.Run("single logout at the IdP too", func(t *testing.T) {
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/slo"), "gavin@hooli.example", "gavin", "gavin-pw")
		b.follow(b.postResponse(action, vals, f.idp1.URL))
		if r := up.last("/slo"); r == nil {
			t.Fatal("not signed in")
		}
		p := b.get(g.url("app.localhost", "/.gatehouse/logout"))
		p = b.post(g.url("app.localhost", "/.gatehouse/logout"), hidden(p.body))
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), f.idp1.URL+"/slo?SAMLRequest=") {
			t.Fatalf("logout: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
		}
		// The IdP ends its session and answers our SLO endpoint.
		p = b.get(p.header.Get("Location"))
		for i := 0; i < 3 && p.status == 200 && strings.Contains(p.body, "SAMLResponse"); i++ {
			action, vals := testidp.Form(p.body)
			p = b.postResponse(resolve(p.url, action), vals, f.idp1.URL)
		}
		p = b.follow(p)
		if p.status != 200 || !strings.Contains(p.body, "and at your organization") {
			t.Fatalf("after the IdP's logout: %d %s\n%s", p.status, p.url, p.body)
		}
		// A logout answer nobody asked for, or the same one again: refused.
		forged := url.Values{"SAMLResponse": {"PHg+"}, "RelayState": {"forgedforgedforgedforged"}}
		if p := b.postResponse(g.url("login.hooli.localhost", "/.gatehouse/saml/slo"), forged, f.idp1.URL); p.status != http.StatusBadRequest {
			t.Fatalf("forged logout response: %d", p.status)
		}
		// Signed out here: the app sends the browser to sign in again.
		if p := b.get(g.url("app.localhost", "/slo-after")); p.status != http.StatusFound {
			t.Fatalf("after logout: %d", p.status)
		}
	})

	t.Run("single logout started at the IdP", func(t *testing.T) {
		// Two browsers signed in as the same person: two IdP sessions.
		b, other := g.browser(t), g.browser(t)
		for _, br := range []*browser{b, other} {
			action, vals := br.samlSignIn(g.url("app.localhost", "/idp-slo"), "gavin@hooli.example", "gavin", "gavin-pw")
			if p := br.follow(br.postResponse(action, vals, f.idp1.URL)); p.status != 200 {
				t.Fatalf("sign-in: %d %s", p.status, p.url)
			}
		}
		// The person signs out at the IdP, which sends the browser to
		// Gatehouse with a signed LogoutRequest (redirect or POST binding).
		p := b.get(f.idp1.URL + "/logout")
		var slo *http.Request
		switch {
		case p.status == http.StatusFound || p.status == http.StatusSeeOther:
			slo, _ = http.NewRequest("GET", p.header.Get("Location"), nil)
		case p.status == 200 && strings.Contains(p.body, "SAMLRequest"):
			action, vals := testidp.Form(p.body)
			slo, _ = http.NewRequest("POST", resolve(p.url, action), strings.NewReader(vals.Encode()))
			slo.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			slo.Header.Set("Origin", f.idp1.URL)
			slo.Header.Set("Sec-Fetch-Site", "cross-site")
		default:
			t.Fatalf("IdP logout: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
		}
		if !strings.HasPrefix(slo.URL.String(), g.url("login.hooli.localhost", "/.gatehouse/saml/slo")) {
			t.Fatalf("the IdP sent the logout to %s", slo.URL)
		}
		var body []byte
		if slo.Body != nil {
			body, _ = io.ReadAll(slo.Body)
		}
		send := func() page {
			req := slo.Clone(context.Background())
			if body != nil {
				req.Body = io.NopCloser(bytes.NewReader(body))
			}
			return b.do(req)
		}
		// Gatehouse revokes the session and answers the IdP, signed.
		p = send()
		if p.status != http.StatusFound || !strings.HasPrefix(p.header.Get("Location"), f.idp1.URL+"/slo?SAMLResponse=") {
			t.Fatalf("Gatehouse's answer: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
		}
		if p = b.follow(b.get(p.header.Get("Location"))); p.status != 200 || !strings.Contains(strings.ToLower(p.body), "logged out") {
			t.Fatalf("the IdP after our answer: %d %s\n%s", p.status, p.url, p.body)
		}
		if !g.logged(`"sessions_revoked":1`) {
			t.Errorf("log: want one session revoked\n%s", g.Logs())
		}
		if p := b.get(g.url("app.localhost", "/idp-slo-after")); p.status != http.StatusFound {
			t.Fatalf("the browser signed out at the IdP still reaches the app: %d", p.status)
		}
		// The other IdP session, and its Gatehouse session, go on.
		if p := other.get(g.url("app.localhost", "/idp-slo-other")); p.status != 200 {
			t.Fatalf("another session of the same person was signed out: %d", p.status)
		}
		// The same request again: refused (single use), nothing happens.
		if p := send(); p.status != http.StatusBadRequest || !g.logged("logout request from the IdP refused") {
			t.Fatalf("replayed logout request: %d\n%s", p.status, p.body)
		}
		// A forged one: refused.
		forged := url.Values{"SAMLRequest": {base64.StdEncoding.EncodeToString([]byte(`<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" ID="x" Version="2.0"/>`))}}
		if p := other.postResponse(g.url("login.hooli.localhost", "/.gatehouse/saml/slo"), forged, f.idp1.URL); p.status != http.StatusBadRequest {
			t.Fatalf("forged logout request: %d", p.status)
		}
		if p := other.get(g.url("app.localhost", "/idp-slo-other2")); p.status != 200 {
			t.Fatalf("a refused logout request signed someone out: %d", p.status)
		}
	})

	t.Run("deflate bomb at the SLO endpoint", func(t *testing.T) {
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/bomb"), "gavin@hooli.example", "gavin", "gavin-pw")
		b.follow(b.postResponse(action, vals, f.idp1.URL))
		p := b.get(g.url("app.localhost", "/.gatehouse/logout"))
		p = b.post(g.url("app.localhost", "/.gatehouse/logout"), hidden(p.body))
		loc, _ := url.Parse(p.header.Get("Location"))
		relay := loc.Query().Get("RelayState")
		// 20 MB of zeros, deflated to some 20 KB: the redirect binding's
		// inflate is capped, so this costs a bounded read, not 20 MB.
		var z bytes.Buffer
		fw, _ := flate.NewWriter(&z, flate.BestCompression)
		fw.Write(make([]byte, 20<<20))
		fw.Close()
		q := url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(z.Bytes())}, "RelayState": {relay}}
		p = b.get(g.url("login.hooli.localhost", "/.gatehouse/saml/slo?"+q.Encode()))
		if p.status != 200 || !strings.Contains(p.body, "did not confirm") {
			t.Fatalf("bomb: %d\n%s", p.status, p.body)
		}
		if !g.logged("single logout not confirmed") {
			t.Error("log lacks the refusal")
		}
	})

	t.Run("a captured response is refused everywhere", func(t *testing.T) {
		// Replayed at the same ACS, by another browser and by the same one.
		for _, b := range []*browser{g.browser(t), g.browser(t)} {
			if p := b.postResponse(hooliACS, hooliResponse, f.idp1.URL); p.status < 400 {
				t.Fatalf("replayed response: %d\n%s", p.status, p.body)
			}
		}
		// At the other org's ACS, with and without its RelayState.
		other := g.url("auth.localhost", "/.gatehouse/saml/acs/piedpiper")
		for _, v := range []url.Values{hooliResponse, {"SAMLResponse": hooliResponse["SAMLResponse"]}} {
			if p := g.browser(t).postResponse(other, v, f.idp1.URL); p.status < 400 {
				t.Fatalf("hooli's response at piedpiper's ACS: %d\n%s", p.status, p.body)
			}
		}
	})

	t.Run("IdP 1 cannot sign in a user of org B", func(t *testing.T) {
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/x"), "gavin@hooli.example", "richard", "richard-pw")
		p := b.follow(b.postResponse(action, vals, f.idp1.URL))
		if p.status != http.StatusForbidden || !strings.Contains(p.body, "email address this organization does not use") {
			t.Fatalf("richard via hooli's IdP: %d\n%s", p.status, p.body)
		}
	})

	t.Run("second org on the shared host", func(t *testing.T) {
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/pp"), "jared@piedpiper.example", "jared", "jared-pw")
		if action != g.url("auth.localhost", "/.gatehouse/saml/acs/piedpiper") {
			t.Fatalf("IdP 2 posts to %s", action)
		}
		// Posting org B's fresh response to org A's ACS: refused.
		if p := g.browser(t).postResponse(hooliACS, vals, f.idp2.URL); p.status < 400 {
			t.Fatalf("piedpiper's response at hooli's ACS: %d", p.status)
		}
		p := b.follow(b.postResponse(action, vals, f.idp2.URL))
		r := up.last("/pp")
		if p.status != 200 || r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "piedpiper" || r.Header.Get("X-Gatehouse-Roles") != "member" {
			t.Fatalf("piedpiper sign-in: %d %s; upstream %v", p.status, p.body, r)
		}
	})

	t.Run("org B's response at org A's ACS in the same browser", func(t *testing.T) {
		// One browser, both orgs on the shared host: the flow cookie is
		// there, so the flow is found, and refused for the other org.
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/pp2"), "jared@piedpiper.example", "jared", "jared-pw")
		p := b.postResponse(strings.Replace(action, "/piedpiper", "/raviga", 1), vals, f.idp2.URL)
		if p.status != http.StatusBadRequest || !g.logged("posted to org raviga's ACS") {
			t.Fatalf("piedpiper's response at raviga's ACS: %d\n%s", p.status, p.body)
		}
		// And without its RelayState, where raviga takes IdP-initiated
		// sign-ins: raviga's SP refuses a response addressed to another SP.
		_, vals = b.samlSignIn(g.url("app.localhost", "/pp3"), "jared@piedpiper.example", "jared", "jared-pw")
		vals.Del("RelayState")
		p = b.postResponse(g.url("auth.localhost", "/.gatehouse/saml/acs/raviga"), vals, f.idp2.URL)
		if p.status != http.StatusBadRequest || !g.logged("`Destination` does not match") {
			t.Fatalf("piedpiper's response as unsolicited at raviga: %d\n%s", p.status, p.body)
		}
		if up.last("/pp2") != nil || up.last("/pp3") != nil {
			t.Fatal("a cross-org response reached the upstream")
		}
	})

	t.Run("IdP-initiated sign-in where allowed lands on the fixed page", func(t *testing.T) {
		b := g.browser(t)
		// Sign in at the IdP, then open Raviga's tile there.
		lu, _ := url.Parse(f.idp2.URL + "/login")
		if p := b.post(lu.String(), url.Values{"user": {"rita"}, "password": {"rita-pw"}}); p.status != 200 {
			t.Fatalf("IdP login: %d %s", p.status, p.body)
		}
		p := b.get(f.idp2.URL + "/login/raviga")
		if p.status != 200 || !strings.Contains(p.body, "SAMLResponse") {
			t.Fatalf("IdP-initiated: %d\n%s", p.status, p.body)
		}
		action, vals := testidp.Form(p.body)
		p = b.follow(b.postResponse(action, vals, f.idp2.URL))
		if r := up.last("/raviga-home"); p.status != 200 || r == nil || r.Header.Get("X-Gatehouse-Org-Slug") != "raviga" {
			t.Fatalf("IdP-initiated landing: %d %s; upstream %v", p.status, p.url, r)
		}
	})

	t.Run("IdP-initiated sign-in asks before replacing another person's session", func(t *testing.T) {
		b := g.browser(t)
		idpInitiated := func(user string) page {
			t.Helper()
			if p := b.post(f.idp2.URL+"/login", url.Values{"user": {user}, "password": {user + "-pw"}}); p.status != 200 {
				t.Fatalf("IdP login: %d %s", p.status, p.body)
			}
			p := b.get(f.idp2.URL + "/login/raviga")
			action, vals := testidp.Form(p.body)
			p = b.postResponse(action, vals, f.idp2.URL)
			// Held, then continued by a same-site GET that sees cookies.
			if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/.gatehouse/saml/continue?t=") {
				t.Fatalf("ACS: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
			}
			return p
		}
		whoami := func(path string) string {
			t.Helper()
			p := b.get(g.url("app.localhost", path))
			r := up.last(path)
			if p.status != 200 || r == nil {
				t.Fatalf("%s: %d", path, p.status)
			}
			return r.Header.Get("X-Gatehouse-Email")
		}
		// Not signed in here: no question.
		p := b.follow(idpInitiated("rita"))
		if p.status != 200 || whoami("/as-rita") != "rita@raviga.example" {
			t.Fatalf("first IdP-initiated sign-in: %d %s", p.status, p.url)
		}
		// Another person through the same browser: asked first.
		held := idpInitiated("laurie")
		// The held sign-in belongs to this browser only.
		if p := g.browser(t).get(resolve(g.url("auth.localhost", "/"), held.header.Get("Location"))); p.status != http.StatusBadRequest {
			t.Fatalf("another browser took the held sign-in: %d", p.status)
		}
		p = b.follow(held)
		if p.status != 200 || !strings.Contains(p.body, "Switch account?") || !strings.Contains(p.body, "laurie@raviga.example") {
			t.Fatalf("want the question: %d %s\n%s", p.status, p.url, p.body)
		}
		form := hidden(p.body)
		cont := resolve(p.url, "/.gatehouse/saml/continue")
		noCSRF := url.Values{"t": {form.Get("t")}, "choice": {"continue"}}
		if p := b.post(cont, noCSRF); p.status != http.StatusBadRequest {
			t.Fatalf("choice without the CSRF token: %d", p.status)
		}
		stay := hidden(p.body)
		stay.Set("choice", "stay")
		b.follow(b.post(cont, stay))
		if got := whoami("/after-stay"); got != "rita@raviga.example" {
			t.Fatalf("after staying: %s", got)
		}
		// Asked again; this time the person continues.
		p = b.follow(idpInitiated("laurie"))
		if !strings.Contains(p.body, "Switch account?") {
			t.Fatalf("want the question again: %d %s", p.status, p.url)
		}
		choice := hidden(p.body)
		choice.Set("choice", "continue")
		b.follow(b.post(resolve(p.url, "/.gatehouse/saml/continue"), choice))
		if got := whoami("/after-continue"); got != "laurie@raviga.example" {
			t.Fatalf("after continuing: %s", got)
		}
	})

	t.Run("unsolicited response refused while IdP-initiated is off", func(t *testing.T) {
		b := g.browser(t)
		action, vals := b.samlSignIn(g.url("app.localhost", "/u"), "gavin@hooli.example", "gavin", "gavin-pw")
		vals.Del("RelayState")
		p := b.postResponse(action, vals, f.idp1.URL)
		if p.status != http.StatusBadRequest || !strings.Contains(p.body, "Reference") {
			t.Fatalf("unsolicited: %d\n%s", p.status, p.body)
		}
		if !g.logged("IdP-initiated sign-in is off") {
			t.Error("log lacks the reason")
		}
	})

	t.Run("responses by the redirect binding are not taken (no deflate)", func(t *testing.T) {
		// A deflate bomb in a GET SAMLResponse (crewjam/saml's advisory) never
		// reaches an inflater: the ACS takes HTTP-POST only.
		bomb := url.QueryEscape(base64.StdEncoding.EncodeToString(make([]byte, 64)))
		if p := g.browser(t).get(g.url("login.hooli.localhost", "/.gatehouse/saml/acs?SAMLResponse="+bomb)); p.status != http.StatusMethodNotAllowed {
			t.Fatalf("GET at the ACS: %d", p.status)
		}
	})

	t.Run("oversized response", func(t *testing.T) {
		big := url.Values{"SAMLResponse": {strings.Repeat("A", 300<<10)}, "RelayState": {"x"}}
		if p := g.browser(t).postResponse(hooliACS, big, f.idp1.URL); p.status != http.StatusBadRequest {
			t.Fatalf("300 KiB response: %d", p.status)
		}
		if !g.logged("request body too large") {
			t.Error("log lacks the reason for the oversized response")
		}
	})

	if up.last("/x") != nil || up.last("/u") != nil {
		t.Fatal("a refused response reached the upstream")
	}
}

// assertionClaims verifies the identity assertion against Gatehouse's JWKS
// and returns its claims.
func assertionClaims(t *testing.T, g *gatehouse, b *browser, tok string) map[string]any {
	t.Helper()
	ctx := oidc.ClientContext(t.Context(), b.client)
	issuer := "http://auth.localhost:" + g.port
	v := oidc.NewVerifier(issuer, oidc.NewRemoteKeySet(ctx, issuer+"/.well-known/jwks.json"), &oidc.Config{ClientID: "app.localhost", SupportedSigningAlgs: []string{oidc.ES256}})
	it, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	var c map[string]any
	if err := it.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}
