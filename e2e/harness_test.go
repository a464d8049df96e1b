// Package e2e builds the gatehouse binary, starts it with a real config in
// front of a test upstream, and drives it over HTTP like a browser would.
package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/pgstore"
	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gatehouse")
	if b := os.Getenv("GATEHOUSE_E2E_BINARY"); b != "" {
		// The pass on PostgreSQL (TestSuiteOnPostgres): the binary is built.
		binary = b
		code := m.Run()
		pgtest.Stop()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	args := []string{"build", "-o", binary}
	if os.Getenv("GATEHOUSE_E2E_RACE") != "" {
		// The binary under the race detector: a race it sees fails the
		// test that ran it (see run's cleanup).
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/gatehouse")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build gatehouse:", err)
		os.Exit(1)
	}
	code := m.Run()
	pgtest.Stop()
	os.RemoveAll(dir)
	os.Exit(code)
}

// onPostgresSuite: GATEHOUSE_E2E_STORE=postgres runs every test's
// Gatehouse on PostgreSQL instead of its embedded store (.ci/run does
// both).
func onPostgresSuite() bool { return os.Getenv("GATEHOUSE_E2E_STORE") == "postgres" }

// badgerOnly skips a test about the embedded store itself on the
// PostgreSQL pass.
func badgerOnly(t *testing.T, why string) {
	t.Helper()
	if onPostgresSuite() {
		t.Skip("about the embedded store (" + why + "); this pass runs on PostgreSQL")
	}
}

// openStore opens g's store (g stopped, for Badger).
func (g *gatehouse) openStore(t *testing.T) store.Store {
	t.Helper()
	var st store.Store
	var err error
	if g.dsn != "" {
		st, err = pgstore.Open(t.Context(), g.dsn, pgstore.Options{})
	} else {
		st, err = badgerstore.Open(g.data)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// handedOut remembers every port freePort returned: the kernel may give a
// just-closed ephemeral port out again, and two listeners of one test (the
// proxy and ops addresses) picked back to back then collide.
var (
	handedOutMu sync.Mutex
	handedOut   = map[string]bool{}
)

func freePort(t testing.TB) string {
	t.Helper()
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		l.Close()
		if !handedOut[port] {
			handedOut[port] = true
			return port
		}
	}
	t.Fatal("freePort: no unused port in 100 tries")
	return ""
}

// gatehouse is a running binary.
type gatehouse struct {
	t       testing.TB
	cmd     *exec.Cmd
	addr    string // proxy listen address
	ops     string
	port    string
	data    string // badger folder
	dsn     string // the PostgreSQL database instead (GATEHOUSE_E2E_STORE=postgres)
	cfgPath string
	logMu   sync.Mutex
	logs    strings.Builder
	done    chan struct{}
	exitErr error
}

// start writes cfg (with {{PORT}}, {{OPS}}, {{DATA}} filled) and runs
// `gatehouse serve --config`, waiting until /readyz answers.
func start(t testing.TB, cfg string, env ...string) *gatehouse {
	t.Helper()
	for attempt := 1; ; attempt++ {
		g, err := tryStartAt(t, freePort(t), cfg, env...)
		if err == nil {
			return g
		}
		if !g.lost(err, g.addr, g.ops) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again on other ports", attempt, err)
	}
}

// startAt is start on a port chosen beforehand (to register Gatehouse's
// callback URL at an IdP started first): only the ops port can change.
func startAt(t testing.TB, port, cfg string, env ...string) *gatehouse {
	t.Helper()
	for attempt := 1; ; attempt++ {
		g, err := tryStartAt(t, port, cfg, env...)
		if err == nil {
			return g
		}
		if !g.lost(err, g.ops) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v; again on another ops port", attempt, err)
	}
}

// errPortTaken: between freePort and the binary's bind, something else
// took the port (another test's server binding port 0 can get it).
var errPortTaken = errors.New("a chosen port was taken meanwhile")

// lost reports whether err is the binary failing to bind one of addrs,
// ports the harness chose and can choose again.
func (g *gatehouse) lost(err error, addrs ...string) bool {
	if !errors.Is(err, errPortTaken) {
		return false
	}
	for _, a := range addrs {
		if strings.Contains(g.Logs(), "listen tcp "+a+": bind: address already in use") {
			return true
		}
	}
	return false
}

func tryStartAt(t testing.TB, port, cfg string, env ...string) (*gatehouse, error) {
	t.Helper()
	g := &gatehouse{t: t, port: port, done: make(chan struct{})}
	g.addr = "127.0.0.1:" + g.port
	g.ops = "127.0.0.1:" + freePort(t)
	dir := t.TempDir()
	g.data = filepath.Join(dir, "data")
	if onPostgresSuite() && strings.Contains(cfg, "  badger: { path: {{DATA}} }\n") {
		// The whole suite on PostgreSQL: each instance's embedded store
		// becomes a database of its own on the shared throwaway cluster.
		g.dsn = pgtest.NewDatabase(t)
		cfg = strings.Replace(cfg, "  badger: { path: {{DATA}} }\n", "  postgres: { dsn: \""+g.dsn+"\" }\n", 1)
	}
	cfg = strings.NewReplacer("{{PORT}}", g.port, "{{OPS}}", g.ops, "{{DATA}}", g.data).Replace(cfg)
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.cfgPath = path
	return g, g.run(t, env, "serve", "--config", path)
}

// restart stops the binary and starts it again on the same config, port
// and data.
func (g *gatehouse) restart(t testing.TB) *gatehouse {
	t.Helper()
	g.stop()
	n := &gatehouse{t: t, port: g.port, addr: g.addr, ops: g.ops, data: g.data, dsn: g.dsn, cfgPath: g.cfgPath, done: make(chan struct{})}
	if err := n.run(t, nil, "serve", "--config", g.cfgPath); err != nil {
		t.Fatal(err)
	}
	return n
}

// run starts the binary and waits until /readyz answers.
func (g *gatehouse) run(t testing.TB, env []string, args ...string) error {
	g.cmd = exec.Command(binary, args...)
	g.cmd.Env = append(os.Environ(), env...)
	stderr, _ := g.cmd.StderrPipe()
	g.cmd.Stdout = io.Discard
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			g.logMu.Lock()
			g.logs.WriteString(sc.Text() + "\n")
			g.logMu.Unlock()
		}
		g.exitErr = g.cmd.Wait()
		close(g.done)
	}()
	t.Cleanup(func() {
		g.stop()
		if strings.Contains(g.Logs(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a data race in gatehouse (%s)", g.addr)
		}
		if t.Failed() {
			t.Logf("gatehouse logs (%s):\n%s", g.addr, g.Logs())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + g.ops + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-g.done:
			if logs := g.Logs(); strings.Contains(logs, "bind: address already in use") {
				return fmt.Errorf("%w: %s", errPortTaken, logs)
			}
			return fmt.Errorf("gatehouse exited at start: %v\n%s", g.exitErr, g.Logs())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gatehouse not ready: %v\n%s", err, g.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (g *gatehouse) Logs() string {
	g.logMu.Lock()
	defer g.logMu.Unlock()
	return g.logs.String()
}

// logged waits up to 10s for s in the logs (lines are buffered for up to
// 100ms) and reports whether it came.
func (g *gatehouse) logged(s string) bool {
	for range 200 {
		if strings.Contains(g.Logs(), s) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func (g *gatehouse) stop() {
	select {
	case <-g.done:
		return
	default:
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
		_ = g.cmd.Process.Kill()
		<-g.done
	}
}

// url builds a URL on a *.localhost host served by this instance.
func (g *gatehouse) url(host, path string) string {
	return "http://" + host + ":" + g.port + path
}

// browser is a cookie-jar client that dials every *.localhost name at the
// gatehouse listener and does not follow redirects on its own, so tests
// see each hop.
type browser struct {
	t      testing.TB
	g      *gatehouse
	client *http.Client
	jar    *cookiejar.Jar
}

func (g *gatehouse) browser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{DialContext: g.dial, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{t: t, g: g, jar: jar, client: &http.Client{
		Jar:       jar,
		Transport: tr,
		Timeout:   15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// dial connects every *.localhost name to the gatehouse listener.
func (g *gatehouse) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if h, _, _ := net.SplitHostPort(addr); strings.HasSuffix(h, "localhost") {
		addr = g.addr
	}
	return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
}

type page struct {
	status int
	header http.Header
	body   string
	url    string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "text/html")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, header: resp.Header, body: string(body), url: req.URL.String()}
}

func (b *browser) get(u string) page {
	b.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	return b.do(req)
}

func (b *browser) post(u string, form url.Values) page {
	b.t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	// Same-origin form post, as a browser sends it.
	pu, _ := url.Parse(u)
	req.Header.Set("Origin", pu.Scheme+"://"+pu.Host)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	return b.do(req)
}

// follow GETs Location headers until a non-redirect, returning it.
func (b *browser) follow(p page) page {
	b.t.Helper()
	for i := 0; i < 10 && p.status >= 300 && p.status < 400; i++ {
		loc, err := url.Parse(p.header.Get("Location"))
		if err != nil {
			b.t.Fatal(err)
		}
		base, _ := url.Parse(p.url)
		p = b.get(base.ResolveReference(loc).String())
	}
	return p
}

var (
	csrfRE   = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	rdRE     = regexp.MustCompile(`name="rd" value="([^"]*)"`)
	actionRE = regexp.MustCompile(`<form method="post" action="([^"]+)"`)
)

func field(t testing.TB, re *regexp.Regexp, body string) string {
	t.Helper()
	m := re.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("%s not found in page:\n%s", re, body)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

// login walks the whole flow from an app URL: redirect to sign-in,
// home-realm discovery, password, hand-off back to the app. It returns
// the final page (the upstream's answer).
func (b *browser) login(appURL, email, password string) page {
	b.t.Helper()
	p := b.get(appURL)
	if p.status != http.StatusFound || !strings.Contains(p.header.Get("Location"), "/.gatehouse/login") {
		b.t.Fatalf("anonymous request: %d %s, want redirect to sign-in", p.status, p.header.Get("Location"))
	}
	p = b.follow(p)
	if p.status != 200 || !strings.Contains(p.body, "Work email") {
		b.t.Fatalf("sign-in page: %d\n%s", p.status, p.body)
	}
	// Step 1: home-realm discovery.
	loginURL := p.url
	form := hidden(p.body)
	form.Set("email", email)
	p = b.post(resolve(loginURL, field(b.t, actionRE, p.body)), form)
	p = b.follow(p)
	if p.status != 200 || !strings.Contains(p.body, `name="password"`) {
		b.t.Fatalf("after discovery: %d %s\n%s", p.status, p.url, p.body)
	}
	// Step 2: password on the org's sign-in page.
	form = hidden(p.body)
	form.Set("email", email)
	form.Set("password", password)
	p = b.post(resolve(p.url, field(b.t, actionRE, p.body)), form)
	if p.status != http.StatusSeeOther {
		b.t.Fatalf("password post: %d\n%s", p.status, p.body)
	}
	return b.follow(p)
}

var hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// hidden returns a page's hidden form fields, as a browser would send them.
func hidden(body string) url.Values {
	v := url.Values{}
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func resolve(base, ref string) string {
	b, _ := url.Parse(base)
	r, _ := url.Parse(ref)
	return b.ResolveReference(r).String()
}

// listenPreamble is what every e2e deployment's config starts with: the
// listeners and the store, which the harness fills in ({{PORT}}, {{OPS}},
// {{DATA}}). Tests join their own YAML to it.
const listenPreamble = `listen: 127.0.0.1:{{PORT}}
ops_listen: {{OPS}}
store:
  badger: { path: {{DATA}} }
`

// preamble is listenPreamble for a deployment on *.localhost over HTTP.
const preamble = "public_url: http://auth.localhost:{{PORT}}\n" + listenPreamble

// eventually polls try every 100ms for at most 15 seconds, until it
// returns nil, and fails the test with what and try's last error if it
// never does. Routing, policies and the org directory change a moment
// after what caused the change.
func eventually(t testing.TB, what string, try func() error) {
	t.Helper()
	eventuallyWithin(t, 15*time.Second, what, try)
}

// eventuallyWithin is eventually with another limit than 15 seconds.
func eventuallyWithin(t testing.TB, d time.Duration, what string, try func() error) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		if err = try(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, d, err)
		}
	}
}

// holds is try's answer for a condition: nil if ok, else an error saying
// what was seen.
func holds(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}
