// Package pgtest starts a throwaway PostgreSQL cluster for tests with
// Debian's binaries (initdb, pg_ctl) under a temporary folder, listening
// on a unix socket there and on a free loopback port, and hands each test
// a database of its own. Without PostgreSQL installed a test is skipped,
// except in CI (GATEHOUSE_REQUIRE_EXAMPLES), where it fails.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway cluster.
type Cluster struct {
	dir, bin string
	Port     int
	opts     string
	// asUser runs the server as the postgres system user when the tests
	// run as root (initdb refuses root).
	asUser string
	stop   func()
	mu     sync.Mutex
	n      int
}

var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
)

// binDir finds Debian's PostgreSQL binaries (the newest version).
func binDir() string {
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p)
		}
		return ""
	}
	best, bestV := "", 0
	for _, m := range matches {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(m))))
		if v >= bestV {
			best, bestV = filepath.Dir(m), v
		}
	}
	return best
}

// Start starts a cluster outside a test (bench/cmd/load); Close stops
// and removes it. A durable cluster syncs every commit to disk, as
// deployed; otherwise, as for tests, it trades durability for speed.
func Start(durable bool) (*Cluster, error) { return start(durable) }

// Close stops the cluster and removes its files.
func (c *Cluster) Close() { c.stop() }

// start starts a cluster: the test binary's shared one (stopped by Stop
// from TestMain), or a test's own.
func start(durable ...bool) (*Cluster, error) {
	bin := binDir()
	if bin == "" {
		return nil, errNoPostgres
	}
	reapOrphans(bin)
	dir, err := os.MkdirTemp("", "gatehouse-pg-")
	if err != nil {
		return nil, err
	}
	// The owner's PID: a cluster whose owner died (a killed test run) is
	// stopped and removed by the next start.
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("pgtest: running as root needs the postgres system user: %w", err)
		}
		c.asUser = "postgres"
		if out, err := exec.Command("chown", "postgres", dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("pgtest: chown: %v: %s", err, out)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %v: %s", err, out)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c.Port = l.Addr().(*net.TCPAddr).Port
	l.Close()
	c.opts = fmt.Sprintf("-h 127.0.0.1 -p %d -k %s -c max_connections=300 -c shared_buffers=128MB", c.Port, dir)
	if len(durable) == 0 || !durable[0] {
		// Speed over durability: the cluster dies with the tests.
		c.opts += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
	}
	if out, err := c.run(filepath.Join(bin, "pg_ctl"), "-D", data, "-o", c.opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "log"))
		return nil, fmt.Errorf("pgtest: pg_ctl start: %v: %s\n%s", err, out, log)
	}
	c.stop = func() {
		_, _ = c.run(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
		_ = os.RemoveAll(dir)
	}
	return c, nil
}

// reapOrphans stops and removes the clusters of test runs that died
// without stopping theirs.
func reapOrphans(bin string) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "gatehouse-pg-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		c := &Cluster{dir: dir, bin: bin}
		if os.Geteuid() == 0 {
			c.asUser = "postgres"
		}
		_, _ = c.run(filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(dir, "data"), "-m", "immediate", "-w", "stop")
		_ = os.RemoveAll(dir)
	}
}

// processAlive: signal 0 reaches the process.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscall.Signal(0)) == nil
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	if c.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", c.asUser, "--", name}, args...)...)
	}
	return cmd.CombinedOutput()
}

var errNoPostgres = fmt.Errorf("pgtest: PostgreSQL is not installed (apt install postgresql)")

// NewCluster starts a cluster of the test's own (for tests that stop
// and start the database), removed after the test.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := start()
	if errors.Is(err, errNoPostgres) && os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") == "" {
		t.Skip("PostgreSQL is not installed: skipped (CI installs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	return c
}

// NewDurableCluster is NewCluster as deployed: every commit synced to
// disk (benchmarks against Badger's synced writes).
func NewDurableCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := start(true)
	if errors.Is(err, errNoPostgres) && os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") == "" {
		t.Skip("PostgreSQL is not installed: skipped (CI installs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	return c
}

// Pause stops the server (fast shutdown: sessions are cut); Resume
// starts it again on the same port and data.
func (c *Cluster) Pause() error {
	out, err := c.run(filepath.Join(c.bin, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-m", "fast", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

func (c *Cluster) Resume() error {
	out, err := c.run(filepath.Join(c.bin, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-o", c.opts, "-l", filepath.Join(c.dir, "log"), "-w", "-t", "60", "start")
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// Stop stops the shared cluster; call it from TestMain after m.Run.
func Stop() {
	if shared != nil && shared.stop != nil {
		shared.stop()
	}
}

// Shared is the test binary's cluster, started on first use.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = start() })
	if sharedErr == errNoPostgres && os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") == "" {
		t.Skip("PostgreSQL is not installed: skipped (CI installs it)")
	}
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// DSN is the connection string of database db.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db)
}

// NewDatabase makes an empty database for one test (in the shared
// cluster) and drops it after.
func NewDatabase(t testing.TB) string {
	t.Helper()
	return Shared(t).NewDatabase(t)
}

// CreateDatabase makes an empty database and returns its DSN.
func (c *Cluster) CreateDatabase(name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return c.DSN(name), nil
}

// NewDatabase makes an empty database in c for one test.
func (c *Cluster) NewDatabase(t testing.TB) string {
	t.Helper()
	c.mu.Lock()
	c.n++
	name := fmt.Sprintf("t%d_%d", os.Getpid(), c.n)
	c.mu.Unlock()
	if _, err := c.CreateDatabase(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	})
	return c.DSN(name)
}
