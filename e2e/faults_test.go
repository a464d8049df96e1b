package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// hit is one request of a steady load.
type hit struct {
	worker string
	start  time.Time
	took   time.Duration
	status int    // 0: no answer
	err    string // the transport's error, if no answer
}

func (h hit) end() time.Time { return h.start.Add(h.took) }

// steady runs workers in a loop until halt, recording every request.
type steady struct {
	mu   sync.Mutex
	hits []hit
	stop chan struct{}
	wg   sync.WaitGroup
}

func newSteady() *steady { return &steady{stop: make(chan struct{})} }

// run starts a worker; do makes one request and returns its status (0
// and an error when nothing came back).
func (s *steady) run(worker string, do func() (int, error)) {
	s.wg.Go(func() {
		for {
			select {
			case <-s.stop:
				return
			default:
			}
			start := time.Now()
			st, err := do()
			h := hit{worker: worker, start: start, took: time.Since(start), status: st}
			if err != nil {
				h.status, h.err = 0, err.Error()
			}
			s.mu.Lock()
			s.hits = append(s.hits, h)
			s.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
}

func (s *steady) halt() {
	close(s.stop)
	s.wg.Wait()
}

// where returns the hits f picks.
func (s *steady) where(f func(hit) bool) []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []hit
	for _, h := range s.hits {
		if f(h) {
			out = append(out, h)
		}
	}
	return out
}

// send makes one request with client and drains the answer.
func send(client *http.Client, method, u string, body []byte, hdr ...string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// slowProxy is a TCP proxy to PostgreSQL that can hold back every chunk
// the database sends by a delay: a slow (overloaded, far away) database.
type slowProxy struct {
	l     net.Listener
	to    string
	delay atomic.Int64 // nanoseconds
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newSlowProxy(t *testing.T, to string) *slowProxy {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{l: l, to: to}
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *slowProxy) serve(c net.Conn) {
	defer c.Close()
	up, err := net.DialTimeout("tcp", p.to, 2*time.Second)
	if err != nil {
		return
	}
	defer up.Close()
	p.mu.Lock()
	p.conns = append(p.conns, c, up)
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := up.Read(buf)
			if n > 0 {
				time.Sleep(time.Duration(p.delay.Load()))
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
}

// goroutines reads go_goroutines from a node's /metrics.
func goroutines(g *gatehouse) (int, error) {
	resp, err := http.Get("http://" + g.ops + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no go_goroutines in /metrics")
	}
	var n int
	fmt.Sscan(string(m[1]), &n)
	return n, nil
}

// Three nodes on one PostgreSQL behind the balancer, under a steady load
// of authenticated requests, meet three faults in turn:
//
//   - kill -9 of one node: only requests in flight on that node fail
//     (through the balancer, at most one per client); the other nodes
//     never miss a request, and the balancer's clients go on at once;
//   - PostgreSQL restarted (fast shutdown) while people are added through
//     the admin API: every answer is 200, 201 or 503, 503 only while the
//     database is down; every node serves again by itself; every person
//     whose creation was answered 201 is there afterwards;
//   - a slow database (every reply held back 2s, store.postgres.timeout
//     1s): requests end in bounded time with 503 instead of waiting, the
//     goroutines stay bounded, and sign-ins work again once it is fast.
func TestNodesUnderFaults(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	db := pgtest.NewCluster(t)
	dsn := db.NewDatabase(t)
	proxy := newSlowProxy(t, fmt.Sprintf("127.0.0.1:%d", db.Port))
	_, proxyPort, _ := net.SplitHostPort(proxy.l.Addr().String())
	t.Setenv("GATEHOUSE_TEST_DSN", strings.Replace(dsn, fmt.Sprintf(":%d/", db.Port), ":"+proxyPort+"/", 1))
	up := newUpstream(t)
	lb := newBalancer(t)
	cfg := onPostgres(strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig), lb)
	cfg = strings.Replace(cfg, `dsn: "${GATEHOUSE_TEST_DSN}" }`, `dsn: "${GATEHOUSE_TEST_DSN}", timeout: 1s }`, 1)
	nodes := startNodes(t, lb, 3, cfg)
	front := lb.front(t)

	alice := pinTo(front.browser(t), lb.addr)
	if p := alice.login(front.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123"); p.status != 200 {
		t.Fatalf("sign-in: %d %s", p.status, p.body)
	}
	app := front.url("app.localhost", "/load")
	read := func(addr string) func() (int, error) {
		c := pinTo(alice, addr).client
		return func() (int, error) { st, _, err := send(c, "GET", app, nil); return st, err }
	}

	// --- kill -9 one node ---
	load := newSteady()
	for i, n := range nodes {
		load.run(fmt.Sprintf("node%d", i+1), read(n.addr))
	}
	for i := range 3 {
		load.run(fmt.Sprintf("lb%d", i+1), read(lb.addr))
	}
	time.Sleep(time.Second)
	if err := nodes[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-nodes[0].done
	// Until the kernel has reaped it, the dead node's listening socket
	// still takes connections (and then resets them): those requests were
	// on the killed node too.
	dead := time.Now()
	time.Sleep(2 * time.Second)
	load.halt()
	for _, w := range []string{"node2", "node3"} {
		hs := load.where(func(h hit) bool { return h.worker == w })
		if bad := load.where(func(h hit) bool { return h.worker == w && h.status != 200 }); len(bad) > 0 || len(hs) < 10 {
			t.Errorf("%s, another node than the killed one: %d of %d requests failed: %+v", w, len(bad), len(hs), bad)
		}
	}
	lbFailed := load.where(func(h hit) bool { return strings.HasPrefix(h.worker, "lb") && h.status != 200 })
	for _, h := range lbFailed {
		if h.start.After(dead) || h.end().Before(killed) {
			t.Errorf("a request through the balancer that was not on the killed node failed: %+v (killed %s, reaped %s)", h, killed.Format(time.StampMicro), dead.Format(time.StampMicro))
		}
	}
	if after := load.where(func(h hit) bool {
		return strings.HasPrefix(h.worker, "lb") && h.start.After(killed) && h.status == 200
	}); len(after) < 10 {
		t.Errorf("through the balancer, only %d requests served after the kill", len(after))
	}
	t.Logf("kill -9: %d requests through the balancer failed, all on the killed node (reaped %s after the kill)", len(lbFailed), dead.Sub(killed).Round(time.Microsecond))

	// The killed node comes back (same address, same database).
	nodes[0] = nodes[0].restart(t)

	// --- PostgreSQL restarts while people are added ---
	same := []string{"Origin", front.url("login.acme.localhost", ""), "Sec-Fetch-Site", "same-origin", "Content-Type", "application/json", "Accept", "application/json"}
	users := front.url("login.acme.localhost", "/api/v1/orgs/acme/users")
	var createdMu sync.Mutex
	var created []string
	write := func(worker string) func() (int, error) {
		c := pinTo(alice, lb.addr).client
		var n atomic.Int64
		return func() (int, error) {
			body, _ := json.Marshal(map[string]any{"email": fmt.Sprintf("%s-%d@acme.example", worker, n.Add(1)), "password": "a-long-enough-password"})
			st, out, err := send(c, "POST", users, body, same...)
			if st == http.StatusCreated {
				var u struct{ ID string }
				if json.Unmarshal(out, &u) != nil || u.ID == "" {
					return 0, fmt.Errorf("201 without an id: %s", out)
				}
				createdMu.Lock()
				created = append(created, u.ID)
				createdMu.Unlock()
			}
			return st, err
		}
	}
	load = newSteady()
	for i, n := range nodes {
		load.run(fmt.Sprintf("node%d", i+1), read(n.addr))
	}
	load.run("writer1", write("writer1"))
	load.run("writer2", write("writer2"))
	time.Sleep(time.Second)
	down := time.Now() // going down: pg_ctl's fast shutdown cuts sessions at once
	if err := db.Pause(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := db.Resume(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	// Every node serves reads and writes again by itself.
	var recovered time.Time
	eventuallyWithin(t, 20*time.Second, "every node serves again after the database restart", func() error {
		for _, n := range nodes {
			c := pinTo(alice, n.addr).client
			if st, _, err := send(c, "GET", app, nil); st != 200 {
				return holds(false, "%s: %d %v", n.addr, st, err)
			}
			if st, _, err := send(c, "GET", users+"?limit=1", nil, same...); st != 200 {
				return holds(false, "%s API: %d %v", n.addr, st, err)
			}
		}
		recovered = time.Now()
		return nil
	})
	time.Sleep(2 * time.Second)
	load.halt()
	t.Logf("database down for %s; every node served again %s after it came back", back.Sub(down).Round(time.Millisecond), recovered.Sub(back).Round(time.Millisecond))
	for _, h := range load.where(func(h hit) bool { return !slices.Contains([]int{200, 201, 503}, h.status) }) {
		t.Errorf("during the database restart, %s got %d %s", h.worker, h.status, h.err)
	}
	for _, h := range load.where(func(h hit) bool { return h.status == 503 && (h.end().Before(down) || h.start.After(recovered)) }) {
		t.Errorf("a 503 while the database was up: %+v", h)
	}
	if n := len(load.where(func(h hit) bool { return h.status == 503 })); n == 0 {
		t.Error("no 503 at all: the database restart was not felt, so this test tests nothing")
	}
	if n := len(load.where(func(h hit) bool { return h.status == 201 && h.start.After(recovered) })); n == 0 {
		t.Error("no person added after the database came back")
	}
	// No committed write lost: every 201 is there, on every node.
	createdMu.Lock()
	ids := slices.Clone(created)
	createdMu.Unlock()
	for i, id := range ids {
		c := pinTo(alice, nodes[i%len(nodes)].addr).client
		if st, body, err := send(c, "GET", users+"/"+url.PathEscape(id), nil, same...); st != 200 {
			t.Errorf("person %s, created with 201, afterwards: %d %s %v", id, st, body, err)
		}
	}
	t.Logf("%d people created with 201 during the restart, all there afterwards", len(ids))

	// --- a slow database ---
	base := map[string]int{}
	for _, n := range nodes {
		g, err := goroutines(n)
		if err != nil {
			t.Fatal(err)
		}
		base[n.addr] = g
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	// signIn answers 200 with a session cookie when it signed in (there
	// is no app to return to: Gatehouse's own page says so), 401 for a
	// wrong password.
	signIn := func(addr, email, pw string) (int, error) {
		jar, _ := cookiejar.New(nil)
		b := pinTo(&browser{t: t, g: front, jar: jar, client: &http.Client{Jar: jar, Timeout: 15 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, addr)
		u := front.url("login.acme.localhost", "/.gatehouse/login")
		st, page, err := send(b.client, "GET", u, nil)
		if err != nil || st != 200 {
			return st, err
		}
		m := csrf.FindSubmatch(page)
		if m == nil {
			return 0, fmt.Errorf("no csrf on the sign-in page")
		}
		form := url.Values{"csrf": {string(m[1])}, "step": {"password"}, "email": {email}, "password": {pw}}
		st, _, err = send(b.client, "POST", u, []byte(form.Encode()), "Content-Type", "application/x-www-form-urlencoded",
			"Origin", front.url("login.acme.localhost", ""), "Sec-Fetch-Site", "same-origin")
		if st == 200 && !slices.ContainsFunc(jar.Cookies(mustURL(u)), func(c *http.Cookie) bool { return c.Name == "_gatehouse" }) {
			return 0, fmt.Errorf("200 without a session")
		}
		return st, err
	}
	load = newSteady()
	for i := range 4 {
		load.run(fmt.Sprintf("signin%d", i+1), func() (int, error) { return signIn(lb.addr, "bob@acme.example", "bob-example-password") })
	}
	for i := range 4 {
		load.run(fmt.Sprintf("api%d", i+1), func() (int, error) {
			st, _, err := send(pinTo(alice, lb.addr).client, "GET", users+"?limit=5", nil, same...)
			return st, err
		})
	}
	time.Sleep(time.Second)
	if ok := load.where(func(h hit) bool { return h.status == 200 }); len(ok) < 8 {
		t.Fatalf("before the database slowed down, only %d requests worked: %+v", len(ok), load.where(func(hit) bool { return true }))
	}
	proxy.delay.Store(int64(2 * time.Second))
	slow := time.Now()
	peak := map[string]int{}
	for range 8 {
		time.Sleep(500 * time.Millisecond)
		for _, n := range nodes {
			if g, err := goroutines(n); err == nil && g > peak[n.addr] {
				peak[n.addr] = g
			}
		}
	}
	proxy.delay.Store(0)
	fast := time.Now()
	load.halt()
	// The requests that started once the slow replies were felt.
	during := load.where(func(h hit) bool { return h.start.After(slow.Add(500*time.Millisecond)) && h.start.Before(fast) })
	if len(during) == 0 {
		t.Fatal("no request ran while the database was slow")
	}
	var longest time.Duration
	unavailable := 0
	for _, h := range during {
		longest = max(longest, h.took)
		if h.status == 503 {
			unavailable++
		}
		if h.status == 0 {
			t.Errorf("no answer while the database was slow: %+v", h)
		}
	}
	// A sign-in makes at most five store calls in turn (its budgets taken
	// and given back, the person read), each cut at 1s; without the
	// timeout each would wait at least the database's 2s.
	if longest > 6*time.Second || unavailable == 0 {
		t.Errorf("while the database was slow: longest request %s, %d of %d answered 503", longest, unavailable, len(during))
	}
	for _, n := range nodes {
		// 8 clients at most: a few goroutines each (connection, request,
		// store call), not one per timed-out call left behind.
		if peak[n.addr] > base[n.addr]+100 {
			t.Errorf("node %s: %d goroutines while the database was slow, %d before", n.addr, peak[n.addr], base[n.addr])
		}
	}
	t.Logf("slow database: %d requests, %d answered 503, longest %s; goroutines before/peak %v/%v", len(during), unavailable, longest.Round(time.Millisecond), base, peak)
	eventuallyWithin(t, 15*time.Second, "sign-ins work once the database is fast again", func() error {
		st, err := signIn(lb.addr, "alice@acme.example", "alice-pw-123")
		return holds(st == 200 && err == nil, "%d %v", st, err)
	})
	eventuallyWithin(t, 15*time.Second, "goroutines back down", func() error {
		for _, n := range nodes {
			if g, err := goroutines(n); err != nil || g > base[n.addr]+20 {
				return holds(false, "%s: %d goroutines (%d before) %v", n.addr, g, base[n.addr], err)
			}
		}
		return nil
	})
}
