package e2e

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// An acknowledged sign-in survives a crash: sign-ins answered with a
// session, then at once kill -9 of Gatehouse (on Badger, whose writes are
// synced), or kill -9 of Gatehouse and an immediate shutdown of
// PostgreSQL (no checkpoint: recovery from the log, where the session's
// commit waited for its flush, the sign-in's ephemeral values did not).
// After the restart every session still works.
func TestSignInSurvivesCrash(t *testing.T) {
	for _, onPG := range []bool{false, true} {
		name := "badger"
		if onPG {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			t.Setenv("ALICE_PASSWORD", "alice-pw-123")
			t.Setenv("CAROL_PASSWORD", "carol-pw-456")
			up := newUpstream(t)
			cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
			var db *pgtest.Cluster
			if onPG {
				// A cluster that syncs commits, as deployed.
				db = pgtest.NewDurableCluster(t)
				t.Setenv("GATEHOUSE_TEST_DSN", db.NewDatabase(t))
				cfg = strings.Replace(cfg, "  badger: { path: {{DATA}} }\n", "  postgres: { dsn: \"${GATEHOUSE_TEST_DSN}\" }\n", 1)
			} else {
				badgerOnly(t, "the Badger half")
			}
			g := start(t, cfg)
			people := []struct{ email, pw, host string }{
				{"alice@acme.example", "alice-pw-123", "app.localhost"},
				{"bob@acme.example", "bob-example-password", "app.localhost"},
				{"carol@globex.example", "carol-pw-456", "globex-app.localhost"},
			}
			var signedIn []*browser
			for _, p := range people {
				b := g.browser(t)
				if pg := b.login(g.url(p.host, "/"), p.email, p.pw); pg.status != 200 {
					t.Fatalf("%s: %d %s", p.email, pg.status, pg.body)
				}
				signedIn = append(signedIn, b)
			}
			// The crash, right after the last acknowledgment.
			if err := g.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			<-g.done
			if db != nil {
				if err := db.Crash(); err != nil {
					t.Fatal(err)
				}
				if err := db.Resume(); err != nil {
					t.Fatal(err)
				}
			}
			g = g.restart(t)
			for i, b := range signedIn {
				b.g = g
				p := b.get(g.url(people[i].host, "/after"))
				if p.status != http.StatusOK || !strings.Contains(p.body, people[i].email) {
					t.Errorf("%s's session after the crash: %d %s", people[i].email, p.status, p.body)
				}
			}
		})
	}
}
