// Command load measures Gatehouse against its baselines in one run on one
// machine: the upstream directly, a bare httputil.ReverseProxy, Gatehouse
// with a valid session, and (if its binary is given) oauth2-proxy with a
// cookie session. Each target gets the same wrk load; the table reports
// requests/second, p50 and p99, and ratios against the bare proxy.
//
// bench/load.sh builds the binaries and runs this; see docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

type result struct {
	name     string
	rps      float64
	p50, p99 time.Duration
	// idle: p50 and p99 with one connection, where latency is the
	// request's own processing and not queueing.
	idle50, idle99 time.Duration
}

func main() {
	var (
		gatehouseBin = flag.String("gatehouse", "", "gatehouse binary")
		upstreamBin  = flag.String("upstream", "", "bench upstream binary")
		bareBin      = flag.String("bareproxy", "", "bare reverse proxy binary")
		o2pBin       = flag.String("oauth2-proxy", "", "oauth2-proxy binary (optional)")
		policies     = flag.String("policies", "", "examples/policies: also measure Gatehouse with a realistic Rego policy")
		duration     = flag.Duration("duration", 10*time.Second, "measured duration per target")
		warmup       = flag.Duration("warmup", 2*time.Second, "unmeasured warm-up per target")
		conns        = flag.Int("connections", 64, "concurrent connections")
		threads      = flag.Int("threads", 2, "wrk threads")
		runs         = flag.Int("runs", 3, "rounds over every target; the table shows each figure's median")
		workload     = flag.String("workload", "same-path", "same-path: one user requests one path again and again; realistic: 24 people in 4 orgs requesting a few thousand resources with a mix of methods (see realistic.go)")
		postgres     = flag.Bool("postgres", false, "also measure Gatehouse on PostgreSQL (a throwaway cluster that syncs every commit, from Debian's postgresql), and revocation across two nodes")
	)
	flag.Parse()
	if *workload != "same-path" && *workload != "realistic" {
		fatal("load: -workload is same-path or realistic")
	}
	realistic := *workload == "realistic"
	if *gatehouseBin == "" || *upstreamBin == "" || *bareBin == "" {
		fatal("load: -gatehouse, -upstream and -bareproxy are required")
	}
	dir, err := os.MkdirTemp("", "gatehouse-load-")
	if err != nil {
		fatal(err)
	}
	var procs []*exec.Cmd
	atExit(func() {
		for _, p := range procs {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
		os.RemoveAll(dir)
	})
	defer runExits()
	startProc := func(logName, bin string, args ...string) *exec.Cmd {
		cmd := exec.Command(bin, args...)
		f, err := os.Create(filepath.Join(dir, logName))
		if err != nil {
			fatal(err)
		}
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Start(); err != nil {
			fatalf("load: start %s: %v", bin, err)
		}
		procs = append(procs, cmd)
		return cmd
	}
	stopProc := func(cmd *exec.Cmd) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}

	var pg *pgtest.Cluster
	if *postgres {
		pg, err = pgtest.Start(true)
		if err != nil {
			fatalf("load: PostgreSQL: %v", err)
		}
		atExit(pg.Close)
	}
	dbs := 0
	// storeFor is a new, empty store for one Gatehouse: a Badger folder,
	// or a PostgreSQL database.
	storeFor := func(name string, onPG bool) string {
		if !onPG {
			return "  badger: { path: " + filepath.Join(dir, name+"-data") + " }"
		}
		dbs++
		dsn, err := pg.CreateDatabase(fmt.Sprintf("load%d", dbs))
		must(err)
		return "  postgres: { dsn: \"" + dsn + "\" }"
	}

	upAddr, bareAddr, o2pAddr := freeAddr(), freeAddr(), freeAddr()
	startProc("upstream.log", *upstreamBin, "-listen", upAddr)
	startProc("bare.log", *bareBin, "-listen", bareAddr, "-upstream", "http://"+upAddr)

	// gatehouseConfig is one instance's config; storeCfg is its store
	// line, policyCfg and orgPolicy extra config lines.
	gatehouseConfig := func(addr, ops, publicPort, storeCfg, policyCfg, orgPolicy string, realistic bool) string {
		cfg := fmt.Sprintf(`public_url: http://auth.localhost:%[1]s
listen: %[2]s
ops_listen: %[3]s
store:
%[4]s
%[6]s
routes:
  - id: app
    host: app.localhost
    upstream: http://%[5]s
`, publicPort, addr, ops, storeCfg, upAddr, policyCfg)
		if realistic {
			return cfg + realisticOrgsYAML(orgPolicy)
		}
		return cfg + `orgs:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    connection: { type: password }
    attributes: { plan: enterprise }
` + orgPolicy + `
    users:
      - { email: alice@acme.example, password: load-test-pw, roles: [admin, member] }
`
	}
	// startGatehouse runs one instance.
	startGatehouse := func(name string, onPG bool, policyCfg, orgPolicy string) (url string, headers []string, stop func()) {
		addr, ops := freeAddr(), freeAddr()
		_, port, _ := net.SplitHostPort(addr)
		cfg := gatehouseConfig(addr, ops, port, storeFor(name, onPG), policyCfg, orgPolicy, realistic)
		cfgPath := filepath.Join(dir, name+".yaml")
		must(os.WriteFile(cfgPath, []byte(cfg), 0o600))
		cmd := startProc(name+".log", *gatehouseBin, "serve", "--config", cfgPath)
		waitHTTP("http://" + ops + "/readyz")
		if realistic {
			// Everyone signs in through the real flow; the script sends
			// each request as one of them.
			var users []scriptUser
			for _, u := range realisticUsers() {
				users = append(users, scriptUser{cookie: gatehouseLoginAs(addr, port, u.email, "load-test-pw"), prefixes: u.prefixes})
			}
			script := realisticScript(dir, name, "app.localhost:"+port, users)
			return "http://" + addr + "/api/items", []string{"Host: app.localhost:" + port, "Cookie: " + users[0].cookie, script}, func() { stopProc(cmd) }
		}
		cookie := gatehouseLogin(addr, port)
		return "http://" + addr + "/api/items", []string{"Host: app.localhost:" + port, "Cookie: " + cookie}, func() { stopProc(cmd) }
	}
	waitHTTP("http://" + bareAddr + "/")

	// Each target is started just before it is measured and stopped after,
	// so idle instances take nothing from the one under load.
	type target struct {
		name  string
		start func() (url string, headers []string, stop func())
	}
	// anyone is the realistic workload's paths without cookies (for the
	// targets that check none).
	anyone := func(name, cookie string) []string {
		if !realistic {
			return nil
		}
		var prefixes []string
		for _, u := range realisticUsers() {
			for _, p := range u.prefixes {
				if !slices.Contains(prefixes, p) {
					prefixes = append(prefixes, p)
				}
			}
		}
		return []string{realisticScript(dir, name, "app.localhost", []scriptUser{{cookie: cookie, prefixes: prefixes}})}
	}
	running := func(name, url string) func() (string, []string, func()) {
		return func() (string, []string, func()) { return url, anyone(name, ""), func() {} }
	}
	targets := []target{
		{"upstream direct", running("upstream", "http://"+upAddr+"/api/items")},
		{"bare httputil.ReverseProxy", running("bare", "http://"+bareAddr+"/api/items")},
		{"Gatehouse (valid session)", func() (string, []string, func()) { return startGatehouse("gatehouse", false, "", "") }},
	}
	if *postgres {
		targets = append(targets, target{"Gatehouse on PostgreSQL (valid session)", func() (string, []string, func()) {
			return startGatehouse("gatehouse-pg", true, "", "")
		}})
	}
	if *policies != "" {
		abs, err := filepath.Abs(*policies)
		must(err)
		for _, v := range []struct{ name, ttl string }{
			{"Gatehouse + Rego (roles by path, org plan)", "1s"},
			{"Gatehouse + Rego, every request evaluated", "0s"},
		} {
			targets = append(targets, target{v.name, func() (string, []string, func()) {
				return startGatehouse("gatehouse-rego-"+v.ttl, false,
					"policy:\n  platform: "+filepath.Join(abs, "roles_by_path")+"\n  decision_cache_ttl: "+v.ttl,
					"    policy: "+filepath.Join(abs, "plan_gating"))
			}})
		}
	}
	if *o2pBin != "" {
		targets = append(targets, target{"oauth2-proxy (cookie session)", func() (string, []string, func()) {
			cmd, cookie := startOAuth2Proxy(startProc, *o2pBin, dir, o2pAddr, upAddr)
			return "http://" + o2pAddr + "/api/items", append([]string{"Cookie: " + cookie}, anyone("oauth2-proxy", cookie)...), func() { stopProc(cmd) }
		}})
	}

	// Rounds over all targets, so that drift on a shared machine falls on
	// every target alike; each figure is the median over the rounds.
	all := make([][]result, len(targets))
	for round := 1; round <= *runs; round++ {
		for i, t := range targets {
			url, headers, stop := t.start()
			// Every target must answer 200 through its auth before it is measured.
			checkOK(url, headers)
			_ = wrk(url, headers, *warmup, *conns, *threads)
			r := wrk(url, headers, *duration, *conns, *threads)
			r.name = t.name
			one := wrk(url, headers, *duration/2, 1, 1)
			stop()
			r.idle50, r.idle99 = one.p50, one.p99
			all[i] = append(all[i], r)
			fmt.Fprintf(os.Stderr, "round %d: %-44s %8.0f req/s  p50 %-9v p99 %-9v  1 conn: p50 %v p99 %v\n", round, r.name, r.rps, r.p50, r.p99, r.idle50, r.idle99)
		}
	}
	// Ratios to the bare proxy are taken round by round (paired), then
	// the median: the machine's drift between rounds cancels out.
	ratios := make([]float64, len(targets))
	for i := range all {
		var rr []result
		for round := range all[i] {
			rr = append(rr, result{rps: all[i][round].rps / all[1][round].rps})
		}
		ratios[i] = median(rr, func(r result) float64 { return r.rps })
	}
	results := make([]result, len(targets))
	for i, rs := range all {
		results[i] = result{name: rs[0].name,
			rps:    median(rs, func(r result) float64 { return r.rps }),
			p50:    time.Duration(median(rs, func(r result) float64 { return float64(r.p50) })),
			p99:    time.Duration(median(rs, func(r result) float64 { return float64(r.p99) })),
			idle50: time.Duration(median(rs, func(r result) float64 { return float64(r.idle50) })),
			idle99: time.Duration(median(rs, func(r result) float64 { return float64(r.idle99) })),
		}
	}
	fmt.Printf("\nWorkload: %s.\n", *workload)
	printTable(results, ratios, *duration, *conns, *threads, *runs)
	if *postgres {
		// PostgreSQL against Badger, paired by round like the ratios above.
		var pgVsBadger []result
		for round := range all[2] {
			pgVsBadger = append(pgVsBadger, result{rps: all[3][round].rps / all[2][round].rps})
		}
		fmt.Printf("\nGatehouse on PostgreSQL vs on Badger, per round:")
		for _, r := range pgVsBadger {
			fmt.Printf(" %.0f%%", 100*r.rps)
		}
		fmt.Printf(" (median %.0f%%)\n", 100*median(pgVsBadger, func(r result) float64 { return r.rps }))

		// Revocation across nodes: two nodes on one database; a sign-out
		// on node 1, then node 2 asked every millisecond until it refuses.
		node := func(name, db string) (addr string, stop func()) {
			addr, ops := freeAddr(), freeAddr()
			cfgPath := filepath.Join(dir, name+".yaml")
			must(os.WriteFile(cfgPath, []byte(gatehouseConfig(addr, ops, "80", db, "", "", false)), 0o600))
			cmd := startProc(name+".log", *gatehouseBin, "serve", "--config", cfgPath)
			waitHTTP("http://" + ops + "/readyz")
			return addr, func() { stopProc(cmd) }
		}
		db := storeFor("revocation", true)
		n1, stop1 := node("node1", db)
		n2, stop2 := node("node2", db)
		lat := revocations(n1, n2, 50)
		stop1()
		stop2()
		fmt.Printf("\nRevocation across two nodes on PostgreSQL, %d sign-outs on node 1 until node 2 refuses the session: p50 %s, p90 %s, max %s\n",
			len(lat), fmtDur(lat[len(lat)/2]), fmtDur(lat[len(lat)*9/10]), fmtDur(lat[len(lat)-1]))
	}
}

// revocations signs alice in on node 1 n times, signs her out there, and
// measures how long node 2 still serves her session; sorted.
func revocations(n1, n2 string, n int) []time.Duration {
	var out []time.Duration
	hiddenRE := regexp.MustCompile(`<input type="hidden" name="csrf" value="([^"]*)">`)
	for range n {
		cookie := gatehouseLogin(n1, "80")
		var set []*http.Cookie // the logout form's CSRF cookie
		get := func(addr, path string) (int, []byte) {
			req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
			req.Host = "app.localhost:80"
			req.Header.Set("Cookie", cookie)
			resp, err := noRedirect.Do(req)
			must(err)
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			set = resp.Cookies()
			return resp.StatusCode, b
		}
		if st, _ := get(n2, "/api/items"); st != 200 {
			fatalf("load: node 2 does not serve the session made on node 1: %d", st)
		}
		st, page := get(n1, "/.gatehouse/logout")
		formCookies := cookie
		for _, c := range set {
			formCookies += "; " + c.Name + "=" + c.Value
		}
		m := hiddenRE.FindSubmatch(page)
		if st != 200 || m == nil {
			fatalf("load: logout page: %d\n%s", st, page)
		}
		req, _ := http.NewRequest("POST", "http://"+n1+"/.gatehouse/logout", strings.NewReader(url.Values{"csrf": {html.UnescapeString(string(m[1]))}}.Encode()))
		req.Host = "app.localhost:80"
		req.Header.Set("Cookie", formCookies)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://app.localhost:80")
		resp, err := noRedirect.Do(req)
		must(err)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			fatalf("load: logout: %d", resp.StatusCode)
		}
		out1 := time.Now()
		for {
			if st, _ := get(n2, "/api/items"); st != 200 {
				break
			}
			if time.Since(out1) > 30*time.Second {
				fatal("load: node 2 served a signed-out session for 30s")
			}
			time.Sleep(time.Millisecond)
		}
		out = append(out, time.Since(out1))
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func printTable(rs []result, ratios []float64, d time.Duration, conns, threads, runs int) {
	bare, direct := rs[1], rs[0]
	fmt.Printf("\n%s, %d CPUs, median of %d rounds. Throughput: wrk -t%d -c%d -d%s. Latency alone: wrk -t1 -c1 -d%s.\n\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runs, threads, conns, d, d/2)
	fmt.Println("| target | req/s | vs bare proxy (median of per-round ratios) | p50 / p99 under load | p50 / p99, 1 connection | p50 added vs bare proxy | vs upstream |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	for i, r := range rs {
		fmt.Printf("| %s | %.0f | %.0f%% | %s / %s | %s / %s | %s | %s |\n", r.name, r.rps, 100*ratios[i],
			fmtDur(r.p50), fmtDur(r.p99), fmtDur(r.idle50), fmtDur(r.idle99), fmtDur(r.idle50-bare.idle50), fmtDur(r.idle50-direct.idle50))
	}
}

func fmtDur(d time.Duration) string {
	if d < time.Millisecond && d > -time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
}

var (
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRE = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
	errRE = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

func wrk(u string, headers []string, d time.Duration, conns, threads int) result {
	args := []string{"-t" + strconv.Itoa(threads), "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency"}
	for _, h := range headers {
		if script, ok := strings.CutPrefix(h, "@"); ok {
			args = append(args, "-s", script) // the script makes each request
			continue
		}
		args = append(args, "-H", h)
	}
	args = append(args, u)
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		fatalf("load: wrk %s: %v\n%s", u, err, out)
	}
	if m := errRE.FindSubmatch(out); m != nil {
		fatalf("load: %s answered %s non-2xx responses: the measurement is void\n%s", u, m[1], out)
	}
	var r result
	if m := rpsRE.FindSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	for _, m := range pctRE.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		unit := map[string]float64{"us": 1e3, "ms": 1e6, "s": 1e9}[string(m[3])]
		d := time.Duration(v * unit)
		if string(m[1]) == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	if r.rps == 0 {
		fatalf("load: could not parse wrk output:\n%s", out)
	}
	return r
}

func checkOK(u string, headers []string) {
	req, _ := http.NewRequest("GET", u, nil)
	for _, h := range headers {
		if strings.HasPrefix(h, "@") {
			continue // a wrk script
		}
		k, v, _ := strings.Cut(h, ": ")
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fatalf("load: %s: %v", u, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"ok":true`) {
		fatalf("load: %s answered %d %s: not authenticated through to the upstream", u, resp.StatusCode, body)
	}
}

// gatehouseLogin signs alice in through the real flow (app → shared
// sign-in → discovery → password → hand-off) and returns the app host's
// session cookie.
func gatehouseLogin(addr, port string) string {
	return gatehouseLoginAs(addr, port, "alice@acme.example", "load-test-pw")
}

// gatehouseLoginAs signs email in and returns the app host's session cookie.
func gatehouseLoginAs(addr, port, email, password string) string {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{}
	c := &http.Client{Jar: jar, Transport: &http.Transport{DialContext: func(ctx context.Context, n, _ string) (net.Conn, error) {
		return d.DialContext(ctx, n, addr)
	}}}
	app := "http://app.localhost:" + port + "/"
	hiddenRE := regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	post := func(resp *http.Response, extra url.Values) *http.Response {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		form := url.Values{}
		for _, m := range hiddenRE.FindAllSubmatch(body, -1) {
			form.Set(string(m[1]), html.UnescapeString(string(m[2])))
		}
		if form.Get("csrf") == "" {
			fatalf("load: no sign-in form at %s:\n%s", resp.Request.URL, body)
		}
		for k, v := range extra {
			form[k] = v
		}
		target := resp.Request.URL.Scheme + "://" + resp.Request.URL.Host + "/.gatehouse/login"
		req, _ := http.NewRequest("POST", target, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", resp.Request.URL.Scheme+"://"+resp.Request.URL.Host)
		next, err := c.Do(req)
		must(err)
		return next
	}
	resp, err := c.Get(app)
	must(err)
	resp = post(resp, url.Values{"email": {email}})
	resp = post(resp, url.Values{"email": {email}, "password": {password}})
	resp.Body.Close()
	u, _ := url.Parse(app)
	for _, ck := range jar.Cookies(u) {
		if ck.Name == "_gatehouse" {
			return ck.Name + "=" + ck.Value
		}
	}
	fatalf("load: no session cookie for app.localhost after sign-in (status %d at %s)", resp.StatusCode, resp.Request.URL)
	return ""
}

// startOAuth2Proxy runs oauth2-proxy with an htpasswd user and a cookie
// session (no external IdP needed), signs in, and returns the cookie.
func startOAuth2Proxy(startProc func(string, string, ...string) *exec.Cmd, bin, dir, addr, upAddr string) (*exec.Cmd, string) {
	hash, err := bcrypt.GenerateFromPassword([]byte("load-test-pw"), bcrypt.MinCost)
	must(err)
	htpasswd := filepath.Join(dir, "htpasswd")
	must(os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600))
	cmd := startProc("oauth2-proxy.log", bin,
		"--http-address="+addr, "--upstream=http://"+upAddr+"/",
		"--provider=google", "--client-id=load", "--client-secret=load",
		"--cookie-secret=0123456789abcdef0123456789abcdef", "--cookie-secure=false",
		"--htpasswd-file="+htpasswd, "--email-domain=*", "--skip-provider-button=false",
		"--redirect-url=http://"+addr+"/oauth2/callback", "--request-logging=true")
	waitHTTP("http://" + addr + "/ping")
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm("http://"+addr+"/oauth2/sign_in", url.Values{"username": {"alice"}, "password": {"load-test-pw"}, "rd": {"/"}})
	must(err)
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "_oauth2_proxy" {
			return cmd, ck.Name + "=" + ck.Value
		}
	}
	fatalf("load: oauth2-proxy sign-in gave no cookie (status %d)", resp.StatusCode)
	return nil, ""
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().String()
}

func waitHTTP(u string) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	fatalf("load: %s never answered", u)
}

func must(err error) {
	if err != nil {
		fatal(err)
	}
}

// exits run at the end, and before a fatal error's exit: no process or
// database cluster outlives the run.
var exits []func()

func atExit(f func()) { exits = append(exits, f) }

func runExits() {
	for i := len(exits) - 1; i >= 0; i-- {
		exits[i]()
	}
	exits = nil
}

func fatalf(format string, args ...any) {
	log.Printf(format, args...)
	runExits()
	os.Exit(1)
}

func fatal(args ...any) {
	log.Print(args...)
	runExits()
	os.Exit(1)
}
