package e2e

import (
	"crypto/x509"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testidp"
	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// onPostgres turns one of the tests' configs into a node's config for a
// deployment behind lb: the store is the database in
// $GATEHOUSE_TEST_DSN, and the public URL is the balancer's.
func onPostgres(cfg string, lb *balancer) string {
	return strings.NewReplacer(
		"  badger: { path: {{DATA}} }\n", "  postgres: { dsn: \"${GATEHOUSE_TEST_DSN}\" }\n",
		"public_url: http://auth.localhost:{{PORT}}", "public_url: http://auth.localhost:"+lb.port,
		"public_url: https://auth.saas.test:{{PORT}}", "public_url: https://auth.saas.test:"+lb.port,
	).Replace(cfg)
}

// startNodes starts n nodes of cfg and puts them behind lb.
func startNodes(t *testing.T, lb *balancer, n int, cfg string) []*gatehouse {
	t.Helper()
	if !strings.Contains(cfg, "postgres:") || !strings.Contains(cfg, ":"+lb.port+"\n") {
		t.Fatalf("not a config for nodes behind the balancer:\n%s", cfg)
	}
	var nodes []*gatehouse
	var addrs []string
	for range n {
		g := start(t, cfg)
		nodes = append(nodes, g)
		addrs = append(addrs, g.addr)
	}
	lb.set(addrs...)
	return nodes
}

// hooli signs in through a SAML IdP (crewjam/saml's) on the shared host,
// and takes IdP-initiated sign-ins too.
const hooliSAML = `  - slug: hooli
    name: Hooli
    email_domains: [hooli.example]
    connection:
      type: saml
      saml:
        metadata_url: "{{IDP}}"
        allow_idp_initiated: true
        idp_initiated_url: "http://app.localhost:{{LBPORT}}/hooli-home"
`

// Three nodes on one PostgreSQL behind a round-robin balancer. A session
// made on node 1 works on nodes 2 and 3 and through the balancer; signed
// out on node 3, it is refused on all three within a second. Failed
// sign-ins count against one budget on all three. A SAML sign-in started
// on one node completes on another, and its response, replayed to any
// node, is refused; so is a replayed IdP-initiated response, which no
// flow record guards (only the shared replay cache).
func TestThreeNodes(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	t.Setenv("GATEHOUSE_TEST_DSN", pgtest.NewDatabase(t))
	up := newUpstream(t)
	idp := testidp.NewSAML(t,
		testidp.SAMLUser{Name: "gavin", Password: "gavin-pw", Email: "gavin@hooli.example", GivenName: "Gavin", Surname: "Belson"},
		testidp.SAMLUser{Name: "rita", Password: "rita-pw", Email: "rita@hooli.example", GivenName: "Rita", Surname: "R"})
	lb := newBalancer(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t), "revocation_check: 2s", "revocation_check: 5s").Replace(testConfig) +
		strings.NewReplacer("{{IDP}}", idp.MetadataURL, "{{LBPORT}}", lb.port).Replace(hooliSAML) +
		// The periodic rereads (10s at most) are not what brings changes
		// within the second asked below: the database's notifications are.
		"policy:\n  reload_interval: 10s\n"
	nodes := startNodes(t, lb, 3, onPostgres(cfg, lb))
	front := lb.front(t)
	on := func(b *browser, i int) *browser { return pinTo(b, nodes[i].addr) }

	// alice signs in on node 1 and goes on through nodes 2 and 3.
	alice := on(front.browser(t), 0)
	if p := alice.login(front.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123"); p.status != 200 || p.body != "upstream / for alice@acme.example" {
		t.Fatalf("sign-in on node 1: %d %s", p.status, p.body)
	}
	for i := range nodes {
		if p := on(alice, i).get(front.url("app.localhost", "/n")); p.status != 200 || p.body != "upstream /n for alice@acme.example" {
			t.Fatalf("alice's session on node %d: %d %s", i+1, p.status, p.body)
		}
	}
	// And through the balancer: one request per connection, so every
	// node serves some.
	rr := pinTo(alice, lb.addr)
	before := make([]int, len(nodes))
	for i, n := range nodes {
		before[i] = lb.count(n.addr)
	}
	for range 6 {
		if p := rr.get(front.url("app.localhost", "/rr")); p.status != 200 || p.body != "upstream /rr for alice@acme.example" {
			t.Fatalf("through the balancer: %d %s", p.status, p.body)
		}
	}
	for i, n := range nodes {
		if got := lb.count(n.addr) - before[i]; got != 2 {
			t.Errorf("node %d served %d of 6 connections, want 2", i+1, got)
		}
	}

	// Failed sign-ins (max_failures: 3) count across nodes: one on each
	// uses bob's budget up on all three.
	for i := range nodes {
		if p := on(front.browser(t), i).tryPassword("bob@acme.example", "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("failure on node %d: %d", i+1, p.status)
		}
	}
	for i := range nodes {
		if p := on(front.browser(t), i).tryPassword("bob@acme.example", "bob-example-password"); p.status != http.StatusTooManyRequests {
			t.Fatalf("after one failure on each node, the right password on node %d: %d", i+1, p.status)
		}
	}

	// SAML: the IdP's admin loads hooli's SP metadata (any node serves the
	// same: its keys are in the store).
	meta := front.url("auth.localhost", "/.gatehouse/saml/metadata/hooli")
	idp.AddSPFrom(t, on(front.browser(t), 1).client, "gatehouse-hooli", meta)
	idp.AddShortcut(t, "hooli", meta)
	// gavin starts on node 1; the balancer sends the IdP's POST to node 2.
	gavin := on(front.browser(t), 0)
	action, resp := gavin.samlSignIn(front.url("app.localhost", "/g"), "gavin@hooli.example", "gavin", "gavin-pw")
	if p := on(gavin, 1).follow(on(gavin, 1).postResponse(action, resp, idp.URL)); p.status != 200 || p.body != "upstream /g for gavin@hooli.example" {
		t.Fatalf("a SAML sign-in started on node 1, completed on node 2: %d %s", p.status, p.body)
	}
	// Replayed, by another browser or by gavin's, on any node: refused.
	for i := range nodes {
		for _, b := range []*browser{on(front.browser(t), i), on(gavin, i)} {
			if p := b.postResponse(action, resp, idp.URL); p.status < 400 {
				t.Fatalf("gavin's response replayed on node %d: %d %s", i+1, p.status, p.body)
			}
		}
	}
	// An IdP-initiated response, accepted on node 3, replayed on 1 and 2.
	rita := on(front.browser(t), 2)
	if p := rita.post(idp.URL+"/login", url.Values{"user": {"rita"}, "password": {"rita-pw"}}); p.status != 200 {
		t.Fatalf("IdP login: %d %s", p.status, p.body)
	}
	p := rita.get(idp.URL + "/login/hooli")
	if p.status != 200 || !strings.Contains(p.body, "SAMLResponse") {
		t.Fatalf("IdP-initiated: %d\n%s", p.status, p.body)
	}
	action, resp = testidp.Form(p.body)
	if p := rita.follow(rita.postResponse(action, resp, idp.URL)); p.status != 200 || p.body != "upstream /hooli-home for rita@hooli.example" {
		t.Fatalf("IdP-initiated sign-in on node 3: %d %s", p.status, p.body)
	}
	for i := range 2 {
		if p := on(front.browser(t), i).postResponse(action, resp, idp.URL); p.status < 400 {
			t.Fatalf("rita's IdP-initiated response replayed on node %d: %d %s", i+1, p.status, p.body)
		}
	}

	// alice signs out on node 3: all three refuse her within a second.
	b3 := on(alice, 2)
	lp := b3.get(front.url("login.acme.localhost", "/.gatehouse/logout"))
	b3.post(front.url("login.acme.localhost", "/.gatehouse/logout"), url.Values{"csrf": {field(t, csrfRE, lp.body)}})
	out := time.Now()
	eventuallyWithin(t, time.Second, "every node refuses the signed-out session", func() error {
		for i := range nodes {
			if p := on(alice, i).get(front.url("app.localhost", "/")); p.status == 200 {
				return holds(false, "node %d still serves it", i+1)
			}
		}
		return nil
	})
	t.Logf("a sign-out on node 3 refused by all three after %s", time.Since(out).Round(time.Millisecond))

	// An app registered through node 1 gets tokens from node 2 within
	// seconds (not at node 2's next periodic reload, 10s); deleted through
	// node 1, it gets none from node 3 as fast.
	boot, err := exec.Command(binary, "admin", "bootstrap", "--config", nodes[0].cfgPath, "--name", "e2e").CombinedOutput()
	platform := tokenRE.FindString(string(boot))
	if err != nil || platform == "" {
		t.Fatalf("admin bootstrap on PostgreSQL, nodes running: %v\n%s", err, boot)
	}
	ops := on(front.browser(t), 0)
	auth := []string{"Authorization", "Bearer " + platform}
	app := ops.mustAPI("POST", front.url("auth.localhost", "/api/v1/clients"), map[string]any{"name": "Sync", "type": "machine", "org": "acme"}, auth...)
	appID, secret := app["id"].(string), app["client_secret"].(string)
	token := func(i int) int {
		req, _ := http.NewRequest("POST", front.url("auth.localhost", "/.gatehouse/oidc/token"), strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(appID, secret)
		resp, err := on(front.browser(t), i).client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	eventuallyWithin(t, 3*time.Second, "node 2 knows the app registered on node 1", func() error {
		st := token(1)
		return holds(st == 200, "%d", st)
	})
	ops.mustAPI("DELETE", front.url("auth.localhost", "/api/v1/clients/"+appID), nil, auth...)
	eventuallyWithin(t, 3*time.Second, "node 3 forgets the app deleted on node 1", func() error {
		st := token(2)
		return holds(st == http.StatusUnauthorized, "%d", st)
	})
}

// Three nodes with automatic certificates behind a TCP balancer, the way
// the ACME CA (Pebble) reaches them too: a new name asked of all three at
// once is one order and one certificate, which all three serve. A
// challenge is answered by whichever node the CA's connection lands on,
// from the store, even when it is not the node that ordered. The nodes
// share one ACME account.
func TestThreeNodesACME(t *testing.T) {
	t.Setenv("GATEHOUSE_TEST_DSN", pgtest.NewDatabase(t))
	lb := newBalancer(t)
	tlsPort, _ := strconv.Atoi(lb.port)
	p := startPebble(t, 0, tlsPort, nil)
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{DIR}}", p.dir, "{{CAROOT}}", p.caRoot, "{{UPSTREAM}}", up.URL).Replace(acmeConfig)
	nodes := startNodes(t, lb, 3, onPostgres(cfg, lb))

	// All three get a handshake for the login domain at the same moment.
	certs := make([]*x509.Certificate, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { certs[i], errs[i] = handshakeWithin(n, p, "login.acme.test", 60*time.Second) })
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d's handshake: %v", i+1, errs[i])
		}
		if certs[i].VerifyHostname("login.acme.test") != nil || certs[i].SerialNumber.Cmp(certs[0].SerialNumber) != 0 {
			t.Fatalf("node %d serves %v (serial %v), node 1 serial %v", i+1, certs[i].DNSNames, certs[i].SerialNumber, certs[0].SerialNumber)
		}
	}
	if n := p.orders.Load(); n != 1 {
		t.Fatalf("%d ACME orders for one name asked of three nodes, want 1", n)
	}

	// Node 1 is out of the balancer (its health check failing, say) but
	// gets a handshake for a new name: the CA's challenge connection lands
	// on node 2 or 3, which answer it from the store.
	lb.set(nodes[1].addr, nodes[2].addr)
	toNode1 := lb.count(nodes[0].addr)
	cert, err := handshakeWithin(nodes[0], p, "app.saas.test", 60*time.Second)
	if err != nil {
		t.Fatalf("a name ordered by a node the CA cannot reach: %v", err)
	}
	if cert.VerifyHostname("app.saas.test") != nil || p.orders.Load() != 2 {
		t.Fatalf("certificate for %v; %d orders", cert.DNSNames, p.orders.Load())
	}
	if lb.count(nodes[0].addr) != toNode1 {
		t.Fatal("the balancer sent the CA to node 1")
	}

	// Through the balancer, every node serves the login page over it.
	lb.set(nodes[0].addr, nodes[1].addr, nodes[2].addr)
	client := acmeClient(lb.front(t), p)
	client.Transport.(*http.Transport).DisableKeepAlives = true
	for range 3 {
		resp, err := client.Get("https://login.acme.test:" + lb.port + "/.gatehouse/login")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("login page through the balancer: %d", resp.StatusCode)
		}
	}
	for i, n := range nodes {
		if lb.count(n.addr) == 0 {
			t.Errorf("node %d served nothing through the balancer", i+1)
		}
	}
	if n := p.accounts.Load(); n != 1 {
		t.Errorf("%d ACME accounts made by three nodes, want 1", n)
	}
}
