package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// Gatehouse on PostgreSQL (store.postgres): the config's orgs are
// applied, alice signs in and the upstream sees her; a person made
// through the admin API, her session and the audit trail survive a
// restart on the same database; the audit chain verifies.
func TestPostgresStore(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	t.Setenv("GATEHOUSE_TEST_DSN", pgtest.NewDatabase(t))
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
	if !g.logged(`"msg":"gatehouse: serving"`) {
		t.Fatal("no serving line")
	}
}
