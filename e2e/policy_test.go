package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

const platformPolicy = `package gatehouse.authz

# Platform: members with any role; the org's plan goes upstream.
default allow := false

allow if count(input.user.roles) > 0

reasons contains "you have no role in your organization" if count(input.user.roles) == 0

headers["X-Gatehouse-Plan"] := plan if plan := input.org.attributes.plan
`

const acmePolicy = `package gatehouse.authz

# Acme narrows: /admin for Acme admins only.
default allow := false

allow if not startswith(input.request.path, "/admin")

allow if "admin" in input.user.roles

reasons contains "Acme: /admin is for administrators" if {
	startswith(input.request.path, "/admin")
	not "admin" in input.user.roles
}
`

func TestPolicyLayersAndHotReload(t *testing.T) {
	dir := t.TempDir()
	platformDir := filepath.Join(dir, "platform")
	must(t, os.MkdirAll(platformDir, 0o755))
	must(t, os.WriteFile(filepath.Join(platformDir, "platform.rego"), []byte(platformPolicy), 0o644))
	acmeFile := filepath.Join(dir, "acme.rego")
	must(t, os.WriteFile(acmeFile, []byte(acmePolicy), 0o644))
	decisions := filepath.Join(dir, "decisions.jsonl")

	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "login:\n", "policy:\n  platform: "+platformDir+"\n  reload_interval: 200ms\n  timeout: 5s\n  decision_log: { file: "+decisions+" }\nlogin:\n", 1)
	cfg = strings.Replace(cfg, "    login_domain: login.acme.localhost\n", "    login_domain: login.acme.localhost\n    policy: "+acmeFile+"\n    attributes: { plan: enterprise }\n", 1)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")

	alice, bob, carol := g.browser(t), g.browser(t), g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	bob.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	carol.login(g.url("app.localhost", "/"), "carol@globex.example", "carol-pw-456")

	// Same path, two orgs: Acme's policy narrows (bob is a member, not an
	// admin); Globex has none, so the platform policy alone decides.
	p := bob.get(g.url("app.localhost", "/admin/users"))
	if p.status != http.StatusForbidden || !strings.Contains(p.body, "Acme: /admin is for administrators") {
		t.Fatalf("bob on /admin: %d %s", p.status, p.body)
	}
	if p := carol.get(g.url("app.localhost", "/admin/users")); p.status != 200 {
		t.Fatalf("carol on /admin: %d", p.status)
	}
	if p := alice.get(g.url("app.localhost", "/admin/users")); p.status != 200 {
		t.Fatalf("alice on /admin: %d", p.status)
	}
	if r := up.last("/admin/users"); r.Header.Get("X-Gatehouse-Email") != "alice@acme.example" || r.Header.Get("X-Gatehouse-Plan") != "enterprise" {
		t.Fatalf("upstream: %s plan %q", r.Header.Get("X-Gatehouse-Email"), r.Header.Get("X-Gatehouse-Plan"))
	}
	if p := bob.get(g.url("app.localhost", "/reports")); p.status != 200 {
		t.Fatalf("bob on /reports: %d", p.status)
	}

	// The deny is in the decision log, under the reference the page shows.
	ref := field(t, refRE, p.body)
	eventually(t, "decision "+ref+" in the decision log", func() error {
		return holds(decisionLogged(t, decisions, ref), "not there")
	})

	// A changed policy file takes effect without a restart.
	must(t, os.WriteFile(acmeFile, []byte("package gatehouse.authz\ndefault allow := false\nreasons contains \"Acme is in maintenance\"\n"), 0o644))
	eventually(t, "changed policy in force", func() error {
		p := alice.get(g.url("app.localhost", "/reports"))
		return holds(p.status == http.StatusForbidden && strings.Contains(p.body, "Acme is in maintenance"), "alice on /reports: %d", p.status)
	})
	// A broken replacement leaves the last good policy in force.
	must(t, os.WriteFile(acmeFile, []byte("package gatehouse.authz\nallow if {\n"), 0o644))
	eventually(t, "broken policy reported", func() error {
		return holds(strings.Contains(g.Logs(), "org policy not loaded"), "logs:\n%s", g.Logs())
	})
	if p := alice.get(g.url("app.localhost", "/reports")); p.status != http.StatusForbidden || !strings.Contains(p.body, "Acme is in maintenance") {
		t.Fatalf("after a broken replacement: %d", p.status)
	}
	if p := carol.get(g.url("app.localhost", "/reports")); p.status != 200 {
		t.Fatalf("globex affected by acme's broken policy: %d", p.status)
	}
	// Fixing it restores access.
	must(t, os.WriteFile(acmeFile, []byte(acmePolicy), 0o644))
	eventually(t, "fixed policy in force", func() error {
		st := alice.get(g.url("app.localhost", "/reports")).status
		return holds(st == 200, "alice on /reports: %d", st)
	})
	// Metrics count decisions per route and outcome.
	m := g.browser(t).get("http://" + g.ops + "/metrics")
	if !strings.Contains(m.body, `gatehouse_policy_decisions_total{outcome="deny",route="app"}`) {
		t.Fatal("no policy decision metrics")
	}
}

var refRE = regexp.MustCompile(`Reference: <code>([^<]+)</code>`)

func decisionLogged(t *testing.T, path, id string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e struct {
			ID      string   `json:"decision_id"`
			Allow   bool     `json:"allow"`
			Reasons []string `json:"reasons"`
			Input   struct {
				User struct {
					Email string `json:"email"`
				} `json:"user"`
			} `json:"input"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.ID == id {
			if e.Allow || e.Input.User.Email != "bob@acme.example" || len(e.Reasons) == 0 {
				t.Fatalf("decision log entry: %+v", e)
			}
			return true
		}
	}
	return false
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Gatehouse does not start with a policy that does not compile.
func TestBrokenPolicyStopsStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.rego")
	must(t, os.WriteFile(bad, []byte("package gatehouse.authz\nallow if {\n"), 0o644))
	cfg := strings.NewReplacer("{{UPSTREAM}}", "http://127.0.0.1:1", "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "login:\n", "policy:\n  platform: "+bad+"\nlogin:\n", 1)
	cfg = strings.NewReplacer("{{PORT}}", freePort(t), "{{OPS}}", "127.0.0.1:"+freePort(t), "{{DATA}}", filepath.Join(dir, "data")).Replace(cfg)
	path := filepath.Join(dir, "gatehouse.yaml")
	must(t, os.WriteFile(path, []byte(cfg), 0o600))
	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Env = append(os.Environ(), "ALICE_PASSWORD=a", "CAROL_PASSWORD=c")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "server: policies: policy: platform") {
		t.Fatalf("started with a broken policy: %v\n%s", err, out)
	}
}

// CI runs the policy library's Rego tests through the binary, as a
// security team would.
func TestPolicyCLI(t *testing.T) {
	out, err := exec.Command(binary, "policy", "test", "../examples/policies").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 0 failed, in 7 policy directories") {
		t.Fatalf("policy test: %v\n%s", err, out)
	}
	// A failing test fails the command.
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "p.rego"), []byte("package gatehouse.authz\nallow := false\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "p_test.rego"), []byte("package gatehouse.authz\ntest_allows if allow\n"), 0o644))
	if out, err := exec.Command(binary, "policy", "test", dir).CombinedOutput(); err == nil || !strings.Contains(string(out), "FAIL") {
		t.Fatalf("failing policy test passed: %s", out)
	}

	// policy input → policy eval, offline, with the example config.
	cmd := exec.Command(binary, "policy", "input", "--config", "../config/testdata/example.yaml", "--user", "bob@acme.example",
		"--url", "http://app.localhost:8080/admin/users?x=1", "--header", "User-Agent: e2e")
	cmd.Env = append(os.Environ(), "ALICE_PASSWORD=a", "CAROL_PASSWORD=c")
	input, err := cmd.Output()
	if err != nil {
		t.Fatalf("policy input: %v", err)
	}
	var in struct {
		User struct {
			Email string   `json:"email"`
			Roles []string `json:"roles"`
		} `json:"user"`
		Request struct {
			Path    string              `json:"path"`
			Query   map[string][]string `json:"query"`
			Headers map[string]string   `json:"headers"`
		} `json:"request"`
		Org struct {
			Slug string `json:"slug"`
		} `json:"org"`
	}
	if err := json.Unmarshal(input, &in); err != nil || in.User.Email != "bob@acme.example" || in.Org.Slug != "acme" ||
		in.Request.Path != "/admin/users" || in.Request.Query["x"][0] != "1" || in.Request.Headers["user-agent"] != "e2e" {
		t.Fatalf("policy input: %v\n%s", err, input)
	}
	inputFile := filepath.Join(dir, "input.json")
	must(t, os.WriteFile(inputFile, input, 0o644))
	ev := exec.Command(binary, "policy", "eval", "--platform", "../examples/policies/roles_by_path", "--input", inputFile)
	out, err = ev.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 || !strings.Contains(string(out), `"allow": false`) {
		t.Fatalf("bob (member) on /admin should be denied (exit 3): %v\n%s", err, out)
	}
	// Allowed elsewhere, eval says what the decision may be reused for:
	// any path that answers the policy's three questions the same.
	cmd = exec.Command(binary, "policy", "input", "--config", "../config/testdata/example.yaml", "--user", "bob@acme.example",
		"--url", "http://app.localhost:8080/reports/7")
	cmd.Env = append(os.Environ(), "ALICE_PASSWORD=a", "CAROL_PASSWORD=c")
	if input, err = cmd.Output(); err != nil {
		t.Fatalf("policy input: %v", err)
	}
	must(t, os.WriteFile(inputFile, input, 0o644))
	out, err = exec.Command(binary, "policy", "eval", "--platform", "../examples/policies/roles_by_path", "--input", inputFile).Output()
	var res struct {
		Allow bool `json:"allow"`
		Reuse struct {
			Keyed  []string `json:"keyed_fields"`
			Tested []string `json:"tested_fields"`
			Tests  []string `json:"path_tests"`
			Never  bool     `json:"never"`
		} `json:"decision_reuse"`
	}
	if err != nil || json.Unmarshal(out, &res) != nil || !res.Allow || res.Reuse.Never || len(res.Reuse.Keyed) != 0 ||
		!slices.Equal(res.Reuse.Tested, []string{"match_path"}) || len(res.Reuse.Tests) != 3 ||
		res.Reuse.Tests[1] != `startswith(concat("", [input.request.match_path, "/"]), "/admin/") == false` {
		t.Fatalf("bob on /reports/7: %v\n%s", err, out)
	}
}

// config validate compiles the policies a config names, so CI catches a
// broken policy before a deployment does.
func TestConfigValidateCompilesPolicies(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.rego")
	must(t, os.WriteFile(bad, []byte("package gatehouse.authz\nallow if {\n"), 0o644))
	src, err := os.ReadFile("../config/testdata/example.yaml")
	must(t, err)
	cfg := filepath.Join(dir, "c.yaml")
	must(t, os.WriteFile(cfg, []byte(strings.Replace(string(src), "session:", "policy: { platform: "+bad+" }\nsession:", 1)), 0o600))
	cmd := exec.Command(binary, "config", "validate", cfg)
	cmd.Env = append(os.Environ(), "ALICE_PASSWORD=a", "CAROL_PASSWORD=c")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad.rego:3: rego_parse_error") {
		t.Fatalf("config validate with a broken policy: %v\n%s", err, out)
	}
}

// Decisions reused across paths, through the binary: with roles_by_path
// as the platform's policy and plan_gating as Acme's (on the free plan),
// a member's many item paths share decisions (far fewer evaluations than
// requests), while every path the policies answer differently for
// (/admin, /billing, /api/reports, spelled any way) is evaluated and
// denied, however often it comes between allowed ones; an admin's
// decisions are their own.
func TestDecisionsReusedAcrossPaths(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg = strings.Replace(cfg, "login:\n", "policy:\n  platform: ../examples/policies/roles_by_path\n  decision_cache_ttl: 1m\nlogin:\n", 1)
	cfg = strings.Replace(cfg, "    login_domain: login.acme.localhost\n", "    login_domain: login.acme.localhost\n    policy: ../examples/policies/plan_gating\n    attributes: { plan: free }\n", 1)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	bob, alice := g.browser(t), g.browser(t)
	bob.login(g.url("app.localhost", "/"), "bob@acme.example", "bob-example-password")
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")

	evals := func() float64 {
		n := 0.0
		for k, v := range metrics(t, g) {
			if strings.HasPrefix(k, "gatehouse_policy_eval_seconds_count") {
				n += v
			}
		}
		return n
	}
	before := evals()
	denied := []string{"/admin/users/%d", "/billing/invoices/%d", "/ADMIN/users/%d", "/admin;x/users/%d", "/Billing;y/%d", "/api/reports/%d", "/API/Reports/%d"}
	requests := 0
	for i := range 60 {
		path := fmt.Sprintf("/api/items/%d", i)
		if i%3 == 0 {
			path += "?page=2"
		}
		if p := bob.get(g.url("app.localhost", path)); p.status != 200 {
			t.Fatalf("bob %s: %d", path, p.status)
		}
		requests++
		if r := up.last(strings.SplitN(path, "?", 2)[0]); r.Header.Get("X-Gatehouse-Plan") != "free" {
			t.Fatalf("bob %s upstream: plan %q", path, r.Header.Get("X-Gatehouse-Plan"))
		}
		if i%4 == 0 {
			d := fmt.Sprintf(denied[(i/4)%len(denied)], i)
			if p := bob.get(g.url("app.localhost", d)); p.status != http.StatusForbidden {
				t.Fatalf("bob %s after %s: %d, want 403", d, path, p.status)
			}
			requests++
		}
	}
	// Every deny is evaluated; the 60 allowed item paths need a handful.
	if n := evals() - before; n >= float64(requests)/2 {
		t.Errorf("%d requests, %v evaluations: decisions not reused across paths", requests, n)
	}
	// Alice (admin) on /admin: allowed, by her own decision; /api/reports
	// stays closed to her org's plan.
	if p := alice.get(g.url("app.localhost", "/admin/users/7")); p.status != 200 {
		t.Fatalf("alice /admin/users/7: %d", p.status)
	}
	if p := alice.get(g.url("app.localhost", "/api/reports/7")); p.status != http.StatusForbidden || !strings.Contains(p.body, "free plan") {
		t.Fatalf("alice /api/reports/7: %d %s", p.status, p.body)
	}
	if p := bob.get(g.url("app.localhost", "/admin/users/7")); p.status != http.StatusForbidden {
		t.Fatalf("bob /admin/users/7 after alice: %d", p.status)
	}
}

// server.pprof serves Go's profiles on the ops listener, and only there;
// off, they are not served.
func TestOpsProfiles(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	off := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	if p := off.browser(t).get("http://" + off.ops + "/debug/pprof/"); p.status != http.StatusNotFound {
		t.Fatalf("pprof off: %d", p.status)
	}
	on := start(t, strings.Replace(cfg, "login:\n", "server:\n  pprof: true\nlogin:\n", 1), "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	b := on.browser(t)
	if p := b.get("http://" + on.ops + "/debug/pprof/"); p.status != 200 || !strings.Contains(p.body, "goroutine") {
		t.Fatalf("pprof index: %d %s", p.status, p.body)
	}
	if p := b.get("http://" + on.ops + "/debug/pprof/goroutine?debug=1"); p.status != 200 || !strings.Contains(p.body, "goroutine profile:") {
		t.Fatalf("goroutines: %d", p.status)
	}
	if p := b.get(on.url("app.localhost", "/debug/pprof/")); p.status == 200 && strings.Contains(p.body, "goroutine profile") {
		t.Fatal("profiles on the proxy listener")
	}
}
