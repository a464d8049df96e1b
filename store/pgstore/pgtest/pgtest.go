// Package pgtest starts a throwaway PostgreSQL cluster for tests with
// Debian's binaries (initdb, pg_ctl) under a temporary folder, listening
// on a unix socket there and on a free loopback port, and hands each test
// a database of its own. Without PostgreSQL installed a test is skipped,
// except in CI (GATEHOUSE_REQUIRE_EXAMPLES), where it fails.
package pgtest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
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
	// CA is the PEM file of the CA of a TLS cluster's certificate.
	CA   string
	opts string
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
func Start(durable bool) (*Cluster, error) { return start(options{durable: durable}) }

// Close stops the cluster and removes its files.
func (c *Cluster) Close() { c.stop() }

// options are a cluster's: durable syncs every commit; tls takes only
// TLS connections (hostssl), with a certificate for localhost from a CA
// of the cluster's own (Cluster.CA).
type options struct{ durable, tls bool }

// start starts a cluster: the test binary's shared one (stopped by Stop
// from TestMain), or a test's own.
func start(opts ...options) (*Cluster, error) {
	var o options
	if len(opts) > 0 {
		o = opts[0]
	}
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
	if o.tls {
		if err := c.serveTLS(data); err != nil {
			return nil, err
		}
	}
	if !o.durable {
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
	return newCluster(t, options{})
}

func newCluster(t testing.TB, o options) *Cluster {
	t.Helper()
	c, err := start(o)
	if errors.Is(err, errNoPostgres) && os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") == "" {
		t.Skip("PostgreSQL is not installed: skipped (CI installs it)")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.stop)
	return c
}

// NewTLSCluster is NewCluster taking TLS connections only: its
// certificate names localhost (not 127.0.0.1, a name to test refusals
// with) and is signed by c.CA.
func NewTLSCluster(t testing.TB) *Cluster {
	t.Helper()
	return newCluster(t, options{tls: true})
}

// serveTLS makes a CA and a server certificate, turns ssl on and lets
// clients in over TLS only.
func (c *Cluster) serveTLS(data string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgtest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	c.CA = filepath.Join(c.dir, "ca.pem")
	files := map[string][]byte{
		c.CA:                              pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		filepath.Join(data, "server.crt"): pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		filepath.Join(data, "server.key"): pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for path, b := range files {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return err
		}
		if c.asUser != "" {
			if out, err := exec.Command("chown", c.asUser, path).CombinedOutput(); err != nil {
				return fmt.Errorf("pgtest: chown: %v: %s", err, out)
			}
		}
	}
	if err := os.Chmod(c.CA, 0o644); err != nil {
		return err
	}
	// TCP clients over TLS only; the unix socket stays for pg_ctl.
	hba := "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	if c.asUser != "" {
		if out, err := exec.Command("chown", c.asUser, filepath.Join(data, "pg_hba.conf")).CombinedOutput(); err != nil {
			return fmt.Errorf("pgtest: chown: %v: %s", err, out)
		}
	}
	c.opts += " -c ssl=on"
	return nil
}

// NewDurableCluster is NewCluster as deployed: every commit synced to
// disk (benchmarks against Badger's synced writes).
func NewDurableCluster(t testing.TB) *Cluster {
	t.Helper()
	return newCluster(t, options{durable: true})
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

// Crash stops the server the way a power cut would (immediate shutdown:
// no checkpoint; the next start recovers from the log). Resume starts it.
func (c *Cluster) Crash() error {
	out, err := c.run(filepath.Join(c.bin, "pg_ctl"), "-D", filepath.Join(c.dir, "data"), "-m", "immediate", "-w", "stop")
	if err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop -m immediate: %v: %s", err, out)
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
	if c.CA != "" {
		return fmt.Sprintf("postgres://postgres@localhost:%d/%s?sslmode=verify-full&sslrootcert=%s", c.Port, db, c.CA)
	}
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
