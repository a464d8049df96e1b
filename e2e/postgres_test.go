package e2e

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// Gatehouse on PostgreSQL (store.postgres) over TLS (sslmode=verify-full
// against the database's CA; the server takes no plaintext): the config's
// orgs are applied, alice signs in and the upstream sees her; a person
// made through the admin API, her session and the audit trail survive a
// restart on the same database; the audit chain verifies.
func TestPostgresStore(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	db := pgtest.NewTLSCluster(t)
	t.Setenv("GATEHOUSE_TEST_DSN", db.NewDatabase(t))
	if !strings.Contains(os.Getenv("GATEHOUSE_TEST_DSN"), "sslmode=verify-full") {
		t.Fatal("not a TLS DSN")
	}
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t),
		"  badger: { path: {{DATA}} }\n", "  postgres: { dsn: \"${GATEHOUSE_TEST_DSN}\" }\n").Replace(testConfig)
	if !strings.Contains(cfg, "postgres:") {
		t.Fatal("the config does not name PostgreSQL")
	}
	g := start(t, cfg)
	alice := g.browser(t)
	if p := alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123"); !strings.Contains(p.body, "upstream / for alice@acme.example") {
		t.Fatalf("alice on PostgreSQL: %d %s", p.status, p.body)
	}
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	alice.mustAPI("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme/users"), map[string]any{"email": "dave@acme.example", "password": "dave-long-password"}, same...)

	// Restart on the same database: nothing is lost.
	g = g.restart(t)
	if p := alice.get(g.url("app.localhost", "/")); p.status != 200 || p.body != "upstream / for alice@acme.example" {
		t.Fatalf("alice's session after a restart: %d %s", p.status, p.body)
	}
	if p := g.browser(t).login(g.url("app.localhost", "/"), "dave@acme.example", "dave-long-password"); !strings.Contains(p.body, "upstream / for dave@acme.example") {
		t.Fatalf("dave after a restart: %d %s", p.status, p.body)
	}
	out, err := exec.Command(binary, "audit", "verify", "--ops", "http://"+g.ops).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "acme: ") || strings.Contains(string(out), "BROKEN") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	// The pool, the statements and the listener are measured.
	m := g.browser(t).get("http://" + g.ops + "/metrics").body
	for _, want := range []string{"gatehouse_store_pool_connections_max 32", `gatehouse_store_query_seconds_count{outcome="ok",verb="select"}`,
		"gatehouse_store_listening 1", "gatehouse_store_pool_acquire_waits_total"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// nodesBrowser is a browser that reaches every node: a *.localhost name
// is dialed at 127.0.0.1 on the URL's port (each node listens on its own).
func nodesBrowser(t *testing.T, g *gatehouse) *browser {
	b := g.browser(t)
	b.client.Transport = &http.Transport{DisableCompression: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if h, port, _ := net.SplitHostPort(addr); strings.HasSuffix(h, "localhost") {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	}}
	return b
}

// Two nodes on one PostgreSQL: a session made on node 1 works on node 2;
// signing out on node 1, or disabling the person there, is refused on
// node 2 within a second, far inside revocation_check (5s here, its maximum): the
// store's notifications reach the other node at once. Failed sign-ins
// count against one budget on both nodes.
func TestPostgresNodesRevocation(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	t.Setenv("GATEHOUSE_TEST_DSN", pgtest.NewDatabase(t))
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t),
		"  badger: { path: {{DATA}} }\n", "  postgres: { dsn: \"${GATEHOUSE_TEST_DSN}\" }\n",
		"revocation_check: 2s", "revocation_check: 5s").Replace(testConfig)
	n1 := start(t, cfg)
	n2 := start(t, cfg)
	b := nodesBrowser(t, n1)
	if p := b.login(n1.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123"); !strings.Contains(p.body, "upstream / for alice@acme.example") {
		t.Fatalf("sign-in on node 1: %d %s", p.status, p.body)
	}
	onNode2 := func() page { return b.get(n2.url("app.localhost", "/x")) }
	if p := onNode2(); p.status != 200 || p.body != "upstream /x for alice@acme.example" {
		t.Fatalf("the session on node 2: %d %s", p.status, p.body)
	}
	// dave, made on node 1 by alice, signs in on node 2.
	same := []string{"Origin", "http://login.acme.localhost:" + n1.port, "Sec-Fetch-Site", "same-origin"}
	dave := b.mustAPI("POST", n1.url("login.acme.localhost", "/api/v1/orgs/acme/users"), map[string]any{"email": "dave@acme.example", "password": "dave-long-password"}, same...)
	db := nodesBrowser(t, n2)
	if p := db.login(n2.url("app.localhost", "/"), "dave@acme.example", "dave-long-password"); !strings.Contains(p.body, "upstream / for dave@acme.example") {
		t.Fatalf("dave on node 2: %d %s", p.status, p.body)
	}
	// alice disables dave on node 1: node 2 refuses him within a second.
	_, hdr, _ := b.api("GET", n1.url("login.acme.localhost", "/api/v1/orgs/acme/users/"+dave["id"].(string)), nil)
	b.mustAPI("PATCH", n1.url("login.acme.localhost", "/api/v1/orgs/acme/users/"+dave["id"].(string)), map[string]any{"disabled": true}, append(same, "If-Match", hdr.Get("ETag"))...)
	disabled := time.Now()
	eventuallyWithin(t, time.Second, "node 2 refuses the disabled person", func() error {
		p := db.get(n2.url("app.localhost", "/"))
		return holds(p.status != 200, "still %d %s", p.status, p.body)
	})
	t.Logf("a disabled person refused on the other node after %s", time.Since(disabled).Round(time.Millisecond))
	// alice signs out on node 1: node 2 refuses her session within a second.
	lp := b.get(n1.url("login.acme.localhost", "/.gatehouse/logout"))
	form := url.Values{"csrf": {field(t, csrfRE, lp.body)}}
	b.post(n1.url("login.acme.localhost", "/.gatehouse/logout"), form)
	// Her app-host session is the one to check (the hand-off made it).
	out := time.Now()
	eventuallyWithin(t, time.Second, "node 2 refuses the signed-out session", func() error {
		p := onNode2()
		return holds(p.status != 200, "still %d %s", p.status, p.body)
	})
	t.Logf("a sign-out seen on the other node after %s", time.Since(out).Round(time.Millisecond))

	// Failed sign-ins count across nodes (max_failures: 3): two on node 1
	// and one on node 2 use bob's budget up on both.
	g1, g2 := nodesBrowser(t, n1), nodesBrowser(t, n2)
	for i, gb := range []*browser{g1, g1, g2} {
		if p := gb.tryPassword("bob@acme.example", "wrong"); p.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i+1, p.status)
		}
	}
	for _, gb := range []*browser{g2, g1} {
		if p := gb.tryPassword("bob@acme.example", "bob-example-password"); p.status != http.StatusTooManyRequests {
			t.Fatalf("after three failures on two nodes, on %s: %d", gb.g.port, p.status)
		}
	}
}

// Moving a deployment from the embedded store to PostgreSQL: with
// Gatehouse stopped, `store copy` copies and verifies everything; on
// PostgreSQL the same people sign in, alice's open session goes on (its
// key is in the store), dave made through the API is there, and the
// audit trail verifies. A second copy into the now-full database is
// refused.
func TestStoreCopyToPostgres(t *testing.T) {
	badgerOnly(t, "copied from Badger")
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	g, _ := startCore(t)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	alice.mustAPI("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme/users"), map[string]any{"email": "dave@acme.example", "password": "dave-long-password"}, same...)
	g.stop()

	dsn := pgtest.NewDatabase(t)
	out, err := exec.Command(binary, "store", "copy", "--from", "badger:"+g.data, "--to", "postgres:"+dsn).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verified: every record, index and audit chain") || strings.Contains(string(out), dsn) {
		t.Fatalf("store copy: %v\n%s", err, out)
	}
	if out, err := exec.Command(binary, "store", "copy", "--from", "badger:"+g.data, "--to", "postgres:"+dsn).CombinedOutput(); err == nil || !strings.Contains(string(out), "not empty") {
		t.Fatalf("a second copy: %v\n%s", err, out)
	}
	// The same deployment, now on PostgreSQL.
	cfg, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEHOUSE_TEST_DSN", dsn)
	moved := strings.Replace(string(cfg), "badger: { path: "+g.data+" }", "postgres: { dsn: \"${GATEHOUSE_TEST_DSN}\" }", 1)
	if moved == string(cfg) {
		t.Fatalf("the config names no Badger folder:\n%s", cfg)
	}
	if err := os.WriteFile(g.cfgPath, []byte(moved), 0o600); err != nil {
		t.Fatal(err)
	}
	g = g.restart(t)
	if p := alice.get(g.url("app.localhost", "/")); p.status != 200 || p.body != "upstream / for alice@acme.example" {
		t.Fatalf("alice's session on PostgreSQL: %d %s", p.status, p.body)
	}
	if p := g.browser(t).login(g.url("app.localhost", "/"), "dave@acme.example", "dave-long-password"); !strings.Contains(p.body, "upstream / for dave@acme.example") {
		t.Fatalf("dave on PostgreSQL: %d %s", p.status, p.body)
	}
	out, err = exec.Command(binary, "audit", "verify", "--ops", "http://"+g.ops).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "acme: ") || strings.Contains(string(out), "BROKEN") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

// The database goes away and comes back: meanwhile Gatehouse answers
// 503 (and /readyz says not ready) without losing what was committed;
// afterwards it serves again by itself, sessions, sign-ins and the
// listener included, with no restart.
func TestPostgresOutage(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	db := pgtest.NewCluster(t)
	t.Setenv("GATEHOUSE_TEST_DSN", db.NewDatabase(t))
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t),
		"  badger: { path: {{DATA}} }\n", "  postgres: { dsn: \"${GATEHOUSE_TEST_DSN}\" }\n").Replace(testConfig)
	g := start(t, cfg)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	alice.mustAPI("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme/users"), map[string]any{"email": "dave@acme.example", "password": "dave-long-password"}, same...)
	ready := func() int { return g.browser(t).get("http://" + g.ops + "/readyz").status }

	if err := db.Pause(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	// Cached sessions serve for revocation_check (2s) + 5s at most, then 503.
	eventuallyWithin(t, 15*time.Second, "503 while the database is down", func() error {
		p := alice.get(g.url("app.localhost", "/"))
		return holds(p.status == http.StatusServiceUnavailable, "%d", p.status)
	})
	if d := time.Since(down); d > 2*time.Second+5*time.Second+2*time.Second {
		t.Errorf("a cached session served for %s after the database went away", d)
	}
	if st := ready(); st != http.StatusServiceUnavailable {
		t.Errorf("/readyz while the database is down: %d", st)
	}
	if err := db.Resume(); err != nil {
		t.Fatal(err)
	}
	eventuallyWithin(t, 20*time.Second, "alice served again", func() error {
		p := alice.get(g.url("app.localhost", "/"))
		return holds(p.status == 200 && p.body == "upstream / for alice@acme.example", "%d %s", p.status, p.body)
	})
	if st := ready(); st != 200 {
		t.Errorf("/readyz after the database came back: %d", st)
	}
	// What was committed before the outage is there.
	if p := g.browser(t).login(g.url("app.localhost", "/"), "dave@acme.example", "dave-long-password"); !strings.Contains(p.body, "upstream / for dave@acme.example") {
		t.Fatalf("dave after the outage: %d %s", p.status, p.body)
	}
	// The node listens for other nodes' changes again.
	eventuallyWithin(t, 15*time.Second, "listening again", func() error {
		m := g.browser(t).get("http://" + g.ops + "/metrics").body
		return holds(strings.Contains(m, "gatehouse_store_listening 1"), "not listening")
	})
}
