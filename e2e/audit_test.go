package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"
)

// Sign-ins, failed sign-ins and policy loads are chained per org; `gatehouse audit
// verify` finds the chains intact, and a changed event breaks its org's
// chain, named.
func TestAuditVerify(t *testing.T) {
	g, _ := startCore(t)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	g.browser(t).tryPassword("alice@acme.example", "wrong")
	g.browser(t).tryPassword("bob@acme.example", "wrong")
	verify := func(args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"audit", "verify", "--config", g.cfgPath}, args...)...)
		cmd.Env = append(os.Environ(), "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// While Gatehouse runs, the embedded store is its alone: said plainly,
	// and the running deployment verifies through its ops listener. A
	// database is shared: it verifies.
	if out, err := verify(); onPostgresSuite() {
		if err != nil || !strings.Contains(out, "acme: 3 events, chain intact") {
			t.Fatalf("audit verify --config on PostgreSQL, Gatehouse running: %v\n%s", err, out)
		}
	} else if err == nil || !strings.Contains(out, "allows one process") || !strings.Contains(out, "--ops") {
		t.Fatalf("audit verify --config against a running deployment: %v\n%s", err, out)
	}
	remote := func(args ...string) (string, error) {
		out, err := exec.Command(binary, append([]string{"audit", "verify", "--ops", "http://" + g.ops}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := remote(); err != nil || !strings.Contains(out, "acme: 3 events, chain intact") || !strings.Contains(out, "(platform): 1 events, chain intact") {
		t.Fatalf("audit verify --ops: %v\n%s", err, out)
	}
	if out, err := remote("--org", "nobody"); err == nil || !strings.Contains(out, "404") {
		t.Fatalf("audit verify --ops --org nobody: %v\n%s", err, out)
	}
	if p := g.browser(t).get("http://" + g.ops + "/audit/verify?org=acme"); p.status != 200 || !strings.Contains(p.body, `"intact": true`) || strings.Contains(p.body, "alice") {
		t.Fatalf("/audit/verify: %d %s", p.status, p.body)
	}
	g.stop()
	out, err := verify()
	// acme: the sign-in and two failures; the platform: the policy set
	// that came into force at start.
	if err != nil || !strings.Contains(out, "acme: 3 events, chain intact") || !strings.Contains(out, "(platform): 1 events, chain intact") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	if out, err := verify("--org", "globex"); err != nil || !strings.Contains(out, "globex: 0 events, chain intact") {
		t.Fatalf("audit verify --org globex: %v\n%s", err, out)
	}

	// Change one event's outcome in place, as someone with the data
	// folder (or the database) could.
	changed := false
	if onPostgresSuite() {
		conn, cerr := pgx.Connect(t.Context(), g.dsn)
		if cerr != nil {
			t.Fatal(cerr)
		}
		tag, uerr := conn.Exec(t.Context(), `UPDATE gatehouse.audit_events SET doc = replace(doc::text, '"outcome":"failure"', '"outcome":"success"')::json
			WHERE ctid = (SELECT ctid FROM gatehouse.audit_events WHERE doc::text LIKE '%"outcome":"failure"%' LIMIT 1)`)
		conn.Close(t.Context())
		err, changed = uerr, tag.RowsAffected() == 1
	} else {
		var db *badger.DB
		db, err = badger.Open(badger.DefaultOptions(g.data).WithLogger(nil))
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(txn *badger.Txn) error {
			o := badger.DefaultIteratorOptions
			o.Prefix = []byte("audit/all/")
			it := txn.NewIterator(o)
			defer it.Close()
			for it.Rewind(); it.Valid() && !changed; it.Next() {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				if bytes.Contains(v, []byte(`"outcome":"failure"`)) {
					changed = true
					return txn.Set(it.Item().KeyCopy(nil), bytes.Replace(v, []byte(`"outcome":"failure"`), []byte(`"outcome":"success"`), 1))
				}
			}
			return nil
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil || !changed {
		t.Fatalf("tampering: %v (changed %v)", err, changed)
	}
	out, err = verify()
	if err == nil || !strings.Contains(out, "acme: BROKEN") || !strings.Contains(out, "was changed after it was written") {
		t.Fatalf("audit verify after tampering: %v\n%s", err, out)
	}
}
