package e2e

import (
	"encoding/xml"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/gatehouse/gatehouse/internal/testidp"
)

// Two orgs onboarded before their IdPs exist: hooli's IdP does not listen
// yet; initech's answers 404, then an HTML page, then its metadata. globex
// signs in with passwords (its ACS is no SAML org's).
const onboardingConfig = preamble + `routes:
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
  - slug: initech
    name: Initech
    email_domains: [initech.example]
    connection:
      type: saml
      saml: { metadata_url: "{{IDP2}}" }
  - slug: globex
    name: Globex
    email_domains: [globex.example]
    connection: { type: password }
`

// Issue 9: docs/federation.md's onboarding order, as written: the SP
// metadata first, while the IdP's metadata URL is unreachable or 404;
// sign-ins wait with a clear page; then the IdP comes up and sign-in works.
func TestSAMLOnboardingOrder(t *testing.T) {
	up := newUpstream(t)
	// hooli's IdP will listen here, later.
	port1 := freePort(t)
	base1, _ := url.Parse("http://127.0.0.1:" + port1)
	// initech's IdP runs, but its metadata URL is not published yet.
	idp2 := testidp.NewSAML(t, testidp.SAMLUser{Name: "peter", Password: "peter-pw", Email: "peter@initech.example", GivenName: "Peter", Surname: "Gibbons"})
	var state2 atomic.Int32 // 0: 404, 1: HTML, 2: metadata
	var hits2 atomic.Int32
	meta2 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits2.Add(1)
		switch state2.Load() {
		case 0:
			http.NotFound(w, r)
		case 1:
			io.WriteString(w, "<!DOCTYPE html><html><body>Initech SSO portal</body></html>")
		default:
			idp2.IdP.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(meta2.Close)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{IDP1}}", base1.String()+"/metadata", "{{IDP2}}", meta2.URL+"/metadata").Replace(onboardingConfig)
	g := start(t, cfg)
	b := g.browser(t)
	metrics := func() string { return g.browser(t).get("http://" + g.ops + "/metrics").body }

	hooliMD := g.url("login.hooli.localhost", "/.gatehouse/saml/metadata")
	initechMD := g.url("auth.localhost", "/.gatehouse/saml/metadata/initech")
	spMetadata := map[string]string{}
	t.Run("1. SP metadata while the IdP metadata is unreachable or 404", func(t *testing.T) {
		for _, u := range []string{hooliMD, initechMD} {
			for i := range 3 { // asked again and again, always served
				p := b.get(u)
				if p.status != 200 || p.header.Get("Content-Type") != "application/samlmetadata+xml" {
					t.Fatalf("SP metadata %s (try %d): %d\n%s", u, i, p.status, p.body)
				}
				if i > 0 && p.body != spMetadata[u] {
					t.Fatalf("SP metadata %s changed between fetches", u)
				}
				spMetadata[u] = p.body
			}
			var md saml.EntityDescriptor
			if err := xml.Unmarshal([]byte(spMetadata[u]), &md); err != nil || md.EntityID != u || len(md.SPSSODescriptors) != 1 {
				t.Fatalf("SP metadata %s: %v\n%s", u, err, spMetadata[u])
			}
			// Item 10: valid past the next key rotation (a year by default).
			if !md.ValidUntil.After(time.Now().AddDate(1, 0, 0)) {
				t.Errorf("SP metadata %s expires %s: within a year", u, md.ValidUntil)
			}
			// Item 11: email address first, as the setup guides say.
			if f := md.SPSSODescriptors[0].NameIDFormats; len(f) == 0 || f[0] != saml.EmailAddressNameIDFormat {
				t.Errorf("SP metadata %s NameID formats %q, want emailAddress first", u, f)
			}
		}
		if n := hits2.Load(); n != 0 {
			t.Errorf("serving the SP metadata fetched the IdP's %d times", n)
		}
		if m := metrics(); strings.Contains(m, `gatehouse_logins_total{org="hooli"`) || strings.Contains(m, `gatehouse_logins_total{org="initech"`) {
			t.Errorf("SP metadata fetches counted as sign-ins:\n%s", grepLines(m, "gatehouse_logins_total"))
		}
	})

	// signIn starts a sign-in at the app and returns the page it ends on:
	// the IdP's login form, or Gatehouse's error page.
	signIn := func(b *browser, path, email string) page {
		p := b.follow(b.get(g.url("app.localhost", path)))
		form := hidden(p.body)
		form.Set("email", email)
		return b.follow(b.post(resolve(p.url, field(t, actionRE, p.body)), form))
	}
	notReady := func(p page) bool {
		return p.status == http.StatusServiceUnavailable && strings.Contains(p.body, "not ready yet") && strings.Contains(p.body, "Reference")
	}

	t.Run("2. a sign-in before the IdP's metadata: a clear page", func(t *testing.T) {
		for _, c := range []struct{ email, log string }{
			{"gavin@hooli.example", "connection refused"},
			{"peter@initech.example", "HTTP 404"},
		} {
			if p := signIn(g.browser(t), "/early", c.email); !notReady(p) {
				t.Fatalf("%s before the IdP: %d %s\n%s", c.email, p.status, p.url, p.body)
			}
			if !g.logged(c.log) {
				t.Errorf("log lacks %q", c.log)
			}
		}
		// The IdP's URL serves a page, not metadata: the same, said in the log.
		state2.Store(1)
		eventually(t, "the HTML page served for metadata in the log", func() error {
			if p := signIn(g.browser(t), "/early", "peter@initech.example"); !notReady(p) {
				t.Fatalf("initech with an HTML page for metadata: %d\n%s", p.status, p.body)
			}
			return holds(strings.Contains(g.Logs(), "HTML page"), "not logged")
		})
		m := metrics()
		for _, want := range []string{`gatehouse_logins_total{org="hooli",outcome="idp_not_ready"}`, `gatehouse_logins_total{org="initech",outcome="idp_not_ready"}`} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "gatehouse_logins_total"))
			}
		}
		if up.last("/early") != nil {
			t.Fatal("a sign-in reached the app without an IdP")
		}
	})

	t.Run("3. the IdPs come up; 4. sign-in works", func(t *testing.T) {
		// hooli's IdP starts on its URL; its admin uploads the SP metadata
		// fetched in step 1.
		idp1, _, _, err := testidp.NewSAMLServer(*base1, testidp.SAMLUser{Name: "gavin", Password: "gavin-pw", Email: "gavin@hooli.example", GivenName: "Gavin", Surname: "Belson"})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", base1.Host)
		if err != nil {
			t.Fatalf("hooli's IdP port was taken meanwhile: %v", err)
		}
		srv := &http.Server{Handler: idp1}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
		up1 := time.Now()
		(&testidp.SAML{URL: base1.String()}).AddSP(t, "gatehouse-hooli", []byte(spMetadata[hooliMD]))
		state2.Store(2)
		idp2.AddSP(t, "gatehouse-initech", []byte(spMetadata[initechMD]))

		for _, c := range []struct {
			email, user, path string
			idpURL            string
		}{
			{"gavin@hooli.example", "gavin", "/hooli-home", base1.String()},
			{"peter@initech.example", "peter", "/initech-home", idp2.URL},
		} {
			// At most the retry back-off (10s) after the IdP came up.
			eventually(t, c.email+": sign-in ready after the IdP came up", func() error {
				p := signIn(g.browser(t), c.path, c.email)
				return holds(!notReady(p), "still not ready %s after the IdP came up", time.Since(up1))
			})
			// A fresh browser (the probes' remember the org).
			br := g.browser(t)
			action, vals := br.samlSignIn(g.url("app.localhost", c.path), c.email, c.user, c.user+"-pw")
			p := br.follow(br.postResponse(action, vals, c.idpURL))
			if r := up.last(c.path); p.status != 200 || r == nil || r.Header.Get("X-Gatehouse-Email") != c.email {
				t.Fatalf("%s after the IdP came up: %d %s\n%s", c.email, p.status, p.url, p.body)
			}
		}
		if !g.logged("IdP metadata now available") {
			t.Error("log lacks the IdP metadata becoming available")
		}
		// The SP metadata the IdPs were given is still the one served.
		for u, want := range spMetadata {
			if p := b.get(u); p.status != 200 || p.body != want {
				t.Errorf("SP metadata %s changed after onboarding: %d", u, p.status)
			}
		}
	})
}

// Issue 12: a SAML response posted to an address of no org (or of the
// wrong org) says so, and is counted by its reason, not as org="".
func TestSAMLWrongACS(t *testing.T) {
	up := newUpstream(t)
	idp := testidp.NewSAML(t, testidp.SAMLUser{Name: "peter", Password: "peter-pw", Email: "peter@initech.example"})
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{IDP1}}", idp.MetadataURL, "{{IDP2}}", idp.MetadataURL).Replace(onboardingConfig)
	g := start(t, cfg)
	b := g.browser(t)
	idp.AddSPFrom(t, b.client, "gatehouse-initech", g.url("auth.localhost", "/.gatehouse/saml/metadata/initech"))
	// A genuine response of the IdP, as its browser posts it.
	action, vals := b.samlSignIn(g.url("app.localhost", "/x"), "peter@initech.example", "peter", "peter-pw")
	if action != g.url("auth.localhost", "/.gatehouse/saml/acs/initech") {
		t.Fatalf("the IdP posts to %s", action)
	}
	for _, tt := range []struct {
		name, url, org, outcome, log string
		status                       int
	}{
		{"mistyped slug", g.url("auth.localhost", "/.gatehouse/saml/acs/initeck"), "", "unknown_endpoint", `no org with slug \"initeck\"`, 404},
		{"no slug on the shared host", g.url("auth.localhost", "/.gatehouse/saml/acs"), "", "unknown_endpoint", "no org slug", 404},
		{"an app's host", g.url("app.localhost", "/.gatehouse/saml/acs"), "", "unknown_endpoint", "is no org's sign-in host", 404},
		{"a slug on a login domain", g.url("login.hooli.localhost", "/.gatehouse/saml/acs/initech"), "hooli", "unknown_endpoint", "takes no org slug", 404},
		{"the shared host for an org with a login domain", g.url("auth.localhost", "/.gatehouse/saml/acs/hooli"), "hooli", "unknown_endpoint", "signs in on its login domain", 404},
		{"an org without SAML", g.url("auth.localhost", "/.gatehouse/saml/acs/globex"), "globex", "wrong_endpoint", "no SAML connection of its own", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := g.browser(t).postResponse(tt.url, vals, idp.URL)
			if p.status != tt.status || !strings.Contains(p.body, "Wrong sign-in address") || !strings.Contains(p.body, "ACS URL") ||
				strings.Contains(p.body, "another browser") || !strings.Contains(p.body, "Reference") {
				t.Fatalf("%s: %d\n%s", tt.url, p.status, p.body)
			}
			if tt.outcome == "unknown_endpoint" && !strings.Contains(p.body, "belongs to no organization") {
				t.Errorf("page does not say the address belongs to no organization:\n%s", p.body)
			}
			if !g.logged(tt.log) {
				t.Errorf("log lacks %q", tt.log)
			}
		})
	}
	// A logout message at an address of no org: the same page, about the
	// single logout URL, and not a sign-in.
	if p := g.browser(t).postResponse(g.url("auth.localhost", "/.gatehouse/saml/slo/initeck"), vals, idp.URL); p.status != 404 || !strings.Contains(p.body, "single logout URL") {
		t.Fatalf("SLO at no org: %d\n%s", p.status, p.body)
	}
	m := g.browser(t).get("http://" + g.ops + "/metrics").body
	for _, want := range []string{
		`gatehouse_logins_total{org="",outcome="unknown_endpoint"} 3`,
		`gatehouse_logins_total{org="hooli",outcome="unknown_endpoint"} 2`,
		`gatehouse_logins_total{org="globex",outcome="wrong_endpoint"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "gatehouse_logins_total"))
		}
	}
	if strings.Contains(m, `gatehouse_logins_total{org="",outcome="invalid"}`) {
		t.Errorf("a wrong address counted as org=\"\", outcome=invalid:\n%s", grepLines(m, "gatehouse_logins_total"))
	}
	// The response itself was not spent: at the right ACS it signs in.
	if p := b.follow(b.postResponse(action, vals, idp.URL)); p.status != 200 || up.last("/x") == nil {
		t.Fatalf("the response at its own ACS after the wrong ones: %d\n%s", p.status, p.body)
	}
}

// Issue 12: metadata_xml that is not XML metadata is named with its key
// path at config validate and at load (serve), never just "EOF".
func TestSAMLMetadataXMLNotXML(t *testing.T) {
	for _, tt := range []struct{ name, value, want string }{
		{"a URL", `"https://idp.initech.example/metadata"`, "it is a URL; put it in metadata_url"},
		{"text", `"paste here"`, `it starts with "paste here"`},
		{"an HTML page", `"<html><body>Sign in</body></html>"`, "HTML page"},
		{"cut off", `"<EntityDescriptor xmlns='urn:oasis:names:tc:SAML:2.0:metadata'>"`, "malformed or cut off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := strings.Replace(onboardingConfig, `saml: { metadata_url: "{{IDP2}}" }`, "saml: { metadata_xml: "+tt.value+" }", 1)
			cfg = strings.NewReplacer("{{UPSTREAM}}", "http://127.0.0.1:1", "{{IDP1}}", "https://idp.invalid/metadata", "{{PORT}}", "8080", "{{OPS}}", "127.0.0.1:9090", "{{DATA}}", t.TempDir()).Replace(cfg)
			path := filepath.Join(t.TempDir(), "gatehouse.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"config", "validate", path}, {"serve", "--config", path}} {
				out, err := exec.Command(binary, args...).CombinedOutput()
				re := regexp.MustCompile(`gatehouse\.yaml:\d+:\d+: orgs\[1\]\.connection\.saml\.metadata_xml: not (XML|SAML) metadata: `)
				if err == nil || !re.Match(out) || !strings.Contains(string(out), tt.want) || strings.Contains(string(out), ": EOF") {
					t.Fatalf("gatehouse %s: %v\n%s", args[0], err, out)
				}
			}
		})
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
