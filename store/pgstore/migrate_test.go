package pgstore

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Stop()
	os.Exit(code)
}

func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Nodes starting together migrate once; a schema newer than the
// binary's is refused; migrations must be numbered without gaps.
func TestMigrate(t *testing.T) {
	pool := testPool(t)
	ctx := context.Background()
	ms := []migration{
		{1, "001_a.sql", "CREATE TABLE a (x int)"},
		{2, "002_b.sql", "CREATE TABLE b (x int); INSERT INTO a VALUES (1)"},
	}
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = migrate(ctx, pool, ms) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n, v int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM a").Scan(&n); err != nil || n != 1 {
		t.Fatalf("migration 2 ran %d times: %v", n, err)
	}
	if err := pool.QueryRow(ctx, "SELECT max(version) FROM gatehouse_schema").Scan(&v); err != nil || v != 2 {
		t.Fatalf("version %d: %v", v, err)
	}
	if err := migrate(ctx, pool, ms[:1]); !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("an older binary: %v", err)
	}
	// A failing migration leaves nothing half done.
	bad := append(ms, migration{3, "003_c.sql", "CREATE TABLE c (x int); SELECT nope"})
	if err := migrate(ctx, pool, bad); err == nil {
		t.Fatal("a broken migration applied")
	}
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'c'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the broken migration left table c: %d %v", n, err)
	}
	for _, tc := range []fstest.MapFS{
		{"migrations/001_a.sql": {Data: []byte("x")}, "migrations/003_c.sql": {Data: []byte("x")}},
		{"migrations/a.sql": {Data: []byte("x")}},
	} {
		if _, err := loadMigrations(tc); err == nil {
			t.Errorf("%v accepted", tc)
		}
	}
	if _, err := loadMigrations(migrationFS); err != nil {
		t.Fatalf("the embedded migrations: %v", err)
	}
}

// The sweeper removes single-use values and locks long expired, and
// keeps the rest.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, q := range []string{
		"INSERT INTO once VALUES ('k', 'old', 'x', now() - interval '1 hour'), ('k', 'recent', 'x', now() - interval '1 minute'), ('k', 'live', 'x', now() + interval '1 hour')",
		"INSERT INTO locks VALUES ('old', 'n1', now() - interval '1 hour'), ('live', 'n1', now() + interval '1 minute')",
	} {
		if _, err := st.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	sctx, cancel := context.WithCancel(ctx)
	s2 := &Store{pool: st.pool, swept: make(chan struct{})}
	go s2.sweep(sctx, 10*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	cancel()
	<-s2.swept
	var ids []string
	rows, _ := st.pool.Query(ctx, "SELECT id FROM once UNION ALL SELECT name FROM locks ORDER BY 1")
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		ids = append(ids, id)
	}
	if strings.Join(ids, ",") != "live,live,recent" {
		t.Fatalf("left after sweeping: %v", ids)
	}
}

// Watch reports what can end or alter a session elsewhere, as it
// commits; a session's LastSeenAt touch stays silent.
func TestWatch(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	got := make(chan store.Change, 100)
	go st.Watch(wctx, func(c store.Change) { got <- c })
	next := func() store.Change {
		t.Helper()
		select {
		case c := <-got:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("no notification")
		}
		return store.Change{}
	}
	if c := next(); c.Kind != "resync" {
		t.Fatalf("first: %+v", c)
	}
	now := time.Now()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "o1"}))
	if c := next(); c != (store.Change{Kind: "org", ID: "o1"}) {
		t.Fatalf("org: %+v", c)
	}
	must(st.CreateUser(ctx, store.User{ID: "u1", Email: "u1@example.com"}))
	must(st.CreateMembership(ctx, store.Membership{UserID: "u1", OrgID: "o1"}))
	must(st.CreateSession(ctx, store.Session{ID: "s1", UserID: "u1", OrgID: "o1", ExpiresAt: now.Add(time.Hour)}))
	_, err = st.UpdateSession(ctx, "s1", func(s store.Session) (store.Session, error) { s.LastSeenAt = now; return s, nil })
	must(err)
	_, err = st.UpdateSession(ctx, "s1", func(s store.Session) (store.Session, error) { s.RevokedAt = now; return s, nil })
	must(err)
	if c := next(); c != (store.Change{Kind: "session", ID: "s1"}) {
		t.Fatalf("revocation: %+v (a touch must say nothing)", c)
	}
	_, err = st.UpdateMembership(ctx, "u1", "o1", func(m store.Membership) (store.Membership, error) { m.Disabled = true; return m, nil })
	must(err)
	if c := next(); c != (store.Change{Kind: "user", ID: "u1"}) {
		t.Fatalf("membership: %+v", c)
	}
	// Apps registered at runtime and signing keys (migration 003).
	must(st.CreateOIDCClient(ctx, store.OIDCClient{ID: "app_1", OrgID: "o1"}))
	if c := next(); c != (store.Change{Kind: "app", ID: "app_1"}) {
		t.Fatalf("app: %+v", c)
	}
	must(st.CreateSigningKey(ctx, store.SigningKey{ID: "ES256-1", Algorithm: "ES256", PrivateKey: []byte{1}, ActiveAt: now}))
	if c := next(); c != (store.Change{Kind: "key", ID: "ES256-1"}) {
		t.Fatalf("key: %+v", c)
	}
}

// A slow database fails calls after Options.Timeout instead of holding
// them: here a table another session locks.
func TestTimeout(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	st, err := Open(ctx, dsn, Options{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "o1"}); err != nil {
		t.Fatal(err)
	}
	// Another session holds the orgs table.
	tx, err := st.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "LOCK TABLE orgs IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = st.GetOrg(ctx, "o1") }()
	}
	wg.Wait()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("calls waited %s", d)
	}
	for _, err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("a call on a locked table: %v", err)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetOrg(ctx, "o1"); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
}

// A database that went away answers ErrUnavailable (503 upstream), not a
// bare error (500) nor ErrNotFound (which reads as "no such session").
func TestUnavailable(t *testing.T) {
	ctx := context.Background()
	c := pgtest.NewCluster(t)
	st, err := Open(ctx, c.NewDatabase(t), Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "o1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"read":  func() error { _, err := st.GetOrg(ctx, "o1"); return err },
		"write": func() error { return st.PutOnce(ctx, "t", "x", nil, time.Now().Add(time.Minute)) },
		"tx":    func() error { return st.CreateOrg(ctx, store.Org{ID: "o2", Slug: "o2"}) },
	} {
		if err := call(); !errors.Is(err, store.ErrUnavailable) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s with the database down: %v", name, err)
		}
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetOrg(ctx, "o1"); err != nil {
		t.Fatalf("after the database came back: %v", err)
	}
}

func TestUnavailableClasses(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "40001"}, true},
		{&pgconn.PgError{Code: "23505"}, false},
		{&pgconn.PgError{Code: "42P01"}, false},
		{&pgconn.PgError{Code: "22021"}, false},
		{context.DeadlineExceeded, true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{errors.New("pgstore: encode: bad"), false},
	} {
		if got := unavailable(tc.err); got != tc.want {
			t.Errorf("unavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TLS to the database is the DSN's sslmode: with verify-full against the
// cluster's CA the connection is encrypted and the server's name checked;
// a server whose certificate another CA signed, or a name it does not
// carry, is refused; and a server that takes TLS only refuses plaintext.
func TestTLS(t *testing.T) {
	ctx := context.Background()
	c := pgtest.NewTLSCluster(t)
	dsn := c.NewDatabase(t)
	st, err := Open(ctx, dsn, Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("verify-full against the cluster's CA: %v", err)
	}
	defer st.Close()
	var tls bool
	if err := st.pool.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&tls); err != nil || !tls {
		t.Fatalf("the connection is not TLS: %v %v", tls, err)
	}
	if err := st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "o1"}); err != nil {
		t.Fatal(err)
	}

	other := filepath.Join(t.TempDir(), "other-ca.pem")
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "another CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err := os.WriteFile(other, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dsn, why string }{
		{"another CA", strings.Replace(dsn, "sslrootcert="+c.CA, "sslrootcert="+other, 1), "unknown authority"},
		{"a name not on it", strings.Replace(dsn, "@localhost:", "@127.0.0.1:", 1), "cannot validate certificate for 127.0.0.1"},
		{"no TLS", strings.Replace(strings.Replace(dsn, "sslmode=verify-full", "sslmode=disable", 1), "&sslrootcert="+c.CA, "", 1), "no encryption"},
	} {
		st, err := Open(ctx, tc.dsn, Options{Timeout: 5 * time.Second})
		if err == nil {
			st.Close()
			t.Errorf("%s: connected", tc.name)
		} else if !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: refused, but not for that: %v", tc.name, err)
		}
	}
}

// A migration some database has applied is never edited: that database
// would never run the edit, and two deployments on the same version would
// differ. A change is a new migration. Add each new file's SHA-256 here
// when it ships.
func TestMigrationsAreNeverEdited(t *testing.T) {
	pinned := map[string]string{
		"migrations/001_init.sql":             "ecd1cb4698ea3e145a9c50d5c01383d3e7df7e28d358b7b31df806ab2ed709be",
		"migrations/002_notify.sql":           "ef486313bdcd9a9dab7420494a131a99a62374d939e255d69892675d60e4450e",
		"migrations/003_notify_apps_keys.sql": "2fdb7be65998d462396ce3d5b3b0297ebe8658459a1d195f169b37453cd70a7e",
	}
	files, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := fs.ReadFile(migrationFS, f)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		switch want, ok := pinned[f]; {
		case !ok:
			t.Errorf("%s is not pinned: add %q: %q to this test", f, f, hex.EncodeToString(sum[:]))
		case want != hex.EncodeToString(sum[:]):
			t.Errorf("%s changed after it shipped (sha256 %x): put the change in a new migration", f, sum)
		}
	}
	if len(files) != len(pinned) {
		t.Errorf("%d migrations embedded, %d pinned: a shipped migration is gone", len(files), len(pinned))
	}
}

// A node whose clock is off from the database's says so in its log and
// in gatehouse_store_clock_skew_seconds; one in step does not.
func TestClockSkew(t *testing.T) {
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	st, err := Open(t.Context(), pgtest.NewDatabase(t), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	skew := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "gatehouse_store_clock_skew_seconds" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no gatehouse_store_clock_skew_seconds")
		return 0
	}
	if s := skew(); s > 0.5 || s < -0.5 || strings.Contains(logs.String(), "clock is off") {
		t.Fatalf("in step: skew %v, log %s", s, logs.String())
	}
	st.now = func() time.Time { return time.Now().Add(5 * time.Second) }
	st.checkClock(t.Context())
	if s := skew(); s < 4.5 || s > 5.5 || !strings.Contains(logs.String(), "clock is off") {
		t.Fatalf("5s ahead: skew %v, log %s", s, logs.String())
	}
}

// Ephemeral single-use values go through a pool whose sessions do not
// wait for the log's flush; the rest, and every record, through the one
// that does. Both behave the same to readers.
func TestEphemeralKinds(t *testing.T) {
	ctx := context.Background()
	// A cluster that syncs commits, as deployed (the shared test one does not).
	st, err := Open(ctx, pgtest.NewDurableCluster(t).NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	setting := func(p *pgxpool.Pool) string {
		var v string
		if err := p.QueryRow(ctx, "SHOW synchronous_commit").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if st.poolFor("tmp.flow") != st.lazy || st.poolFor("saml-assertion") != st.pool || setting(st.lazy) != "off" || setting(st.pool) != "on" {
		t.Fatalf("pools: lazy %s, main %s", setting(st.lazy), setting(st.pool))
	}
	exp := time.Now().Add(time.Minute)
	if err := st.PutOnce(ctx, "tmp.flow", "f1", []byte("v"), exp); err != nil {
		t.Fatal(err)
	}
	if err := st.PutOnce(ctx, "tmp.flow", "f1", []byte("w"), exp); !errors.Is(err, store.ErrAlreadyExists) {
		t.Fatalf("second put: %v", err)
	}
	if err := st.UpdateOnce(ctx, "tmp.flow", "f1", func([]byte) ([]byte, error) { return []byte("u"), nil }); err != nil {
		t.Fatal(err)
	}
	if v, err := st.GetOnce(ctx, "tmp.flow", "f1"); err != nil || string(v) != "u" {
		t.Fatalf("get: %q %v", v, err)
	}
	if v, err := st.TakeOnce(ctx, "tmp.flow", "f1"); err != nil || string(v) != "u" {
		t.Fatalf("take: %q %v", v, err)
	}
	if _, err := st.TakeOnce(ctx, "tmp.flow", "f1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second take: %v", err)
	}
}

// Two nodes' audit writers, each committing batches over several orgs,
// append to the same chains at once: no deadlock (heads are locked in one
// order), no fork, every event there once.
func TestAuditWritersOnTwoNodes(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewDatabase(t)
	var nodes []*Store
	for range 2 {
		st, err := Open(ctx, dsn, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		nodes = append(nodes, st)
	}
	orgs := []string{"o3", "o1", "o2"}
	const per = 40
	var wg sync.WaitGroup
	for n, st := range nodes {
		for w := range 8 {
			wg.Go(func() {
				for i := range per {
					org := orgs[(i+w+n)%len(orgs)]
					if err := st.AppendAudit(ctx, store.AuditEvent{OrgID: org, Actor: fmt.Sprintf("n%d/w%d", n, w), Action: "a"}); err != nil {
						t.Error(err)
					}
				}
			})
		}
	}
	wg.Wait()
	heads, err := nodes[0].AuditHeads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total uint64
	for _, h := range heads {
		n, err := store.VerifyAudit(ctx, nodes[1], h)
		if err != nil || n != h.Seq {
			t.Errorf("chain %s: %d events verified of %d: %v", h.OrgID, n, h.Seq, err)
		}
		total += h.Seq
	}
	if total != 2*8*per {
		t.Fatalf("%d events in the chains, want %d", total, 2*8*per)
	}
}
