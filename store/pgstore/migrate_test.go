package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

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
