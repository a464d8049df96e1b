package policies_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy"
)

// policies are the example policies, one directory each.
var policies = []string{"admin_mfa", "business_hours", "ip_allowlist", "plan_gating", "readonly_role", "roles_by_path", "step_up_admin"}

// How many OPA unit tests the policies hold at least, in all and each, so
// a test file that stops loading (or loses its tests) is noticed.
const (
	minRegoTests          = 45
	minRegoTestsPerPolicy = 5
)

// monday10 is Monday 2 March 2026, 10:00 in Berlin (09:00 UTC).
var monday10 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// alice is a realistic input every example policy allows: a member of the
// Acme org (plan pro, Berlin, an office network), signed in with MFA,
// reading a page during business hours from the office.
func alice() *policy.Input {
	in := &policy.Input{
		User: policy.User{ID: "usr_1", Email: "alice@acme.example", Name: "Alice", Roles: []string{"member"},
			Groups: []string{"engineering"}, MFA: true, AuthTime: "2026-03-02T08:30:00Z", Connection: "google"},
		Org: policy.Org{ID: "org_acme", Slug: "acme", Name: "Acme", Domains: []string{"acme.example"},
			Attributes: acmeAttrs()},
		Request: policy.Request{Method: "GET", Host: "app.example.com", Path: "/dashboard", MatchPath: "/dashboard", ClientAddr: "203.0.113.7",
			Headers: map[string]string{"accept": "text/html", "user-agent": "Mozilla/5.0"}, At: monday10},
		Route:   policy.Route{ID: "app", Host: "app.example.com", PathPrefix: "/"},
		Session: policy.Session{ID: "5f3a9c", CreatedAt: "2026-03-02T08:30:00Z", ExpiresAt: "2026-03-02T20:30:00Z"},
	}
	in.Request.Fill()
	return in
}

func acmeAttrs() map[string]string {
	return map[string]string{"plan": "pro", "timezone": "Europe/Berlin", "allowed_cidrs": "203.0.113.0/24, 2001:db8::/32"}
}

// orgData is data.gatehouse.orgs as the server passes it.
func orgData(attrs map[string]string) map[string]any {
	a := map[string]any{}
	for k, v := range attrs {
		a[k] = v
	}
	return map[string]any{"gatehouse": map[string]any{"orgs": map[string]any{"acme": map[string]any{"attributes": a}}}}
}

func load(t testing.TB, dir string) []policy.Module {
	t.Helper()
	mods, err := policy.LoadModules(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		if strings.HasSuffix(m.Name, "_test.rego") {
			t.Fatalf("LoadModules returned the test file %s", m.Name)
		}
	}
	return mods
}

// engine compiles the policy in dir as the given layer ("platform",
// "route" for alice's route, or "org" for her org), and org, if set, as
// her org's layer, into a fresh Rego engine.
func engine(t testing.TB, dir, layer, org string, data map[string]any) *policy.Rego {
	t.Helper()
	src := policy.Sources{Data: data}
	switch layer {
	case "platform":
		src.Platform = load(t, dir)
	case "route":
		src.Routes = map[string][]policy.Module{"app": load(t, dir)}
	case "org":
		src.Orgs = map[string][]policy.Module{"org_acme": load(t, dir)}
	default:
		t.Fatalf("layer %q", layer)
	}
	if org != "" {
		src.Orgs = map[string][]policy.Module{"org_acme": load(t, org)}
	}
	set, err := policy.Compile(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	r := policy.NewRego(10*time.Second, nil)
	r.Swap(set)
	return r
}

func TestPolicies(t *testing.T) {
	tests := []struct {
		name    string
		policy  string // the policy directory
		org     string // if set, the policy is the platform layer and this one org_acme's
		data    map[string]any
		in      func(*policy.Input)
		allow   bool
		reasons []string
		headers map[string]string
		err     string // the evaluation error must mention this
		// mfaMaxAge is the step-up the decision asks for (0: none).
		mfaMaxAge time.Duration
	}{
		// step_up_admin
		{name: "admin area asks for a factor of the last 10 minutes", policy: "step_up_admin", in: path("/admin/users"), allow: true, mfaMaxAge: 10 * time.Minute},
		{name: "Admin;params asks too", policy: "step_up_admin", in: path("/Admin;x=1/users"), allow: true, mfaMaxAge: 10 * time.Minute},
		{name: "other pages ask nothing", policy: "step_up_admin", in: path("/dashboard"), allow: true},
		{name: "/administrators asks nothing", policy: "step_up_admin", in: path("/administrators"), allow: true},
		// roles_by_path
		{name: "member reads the app", policy: "roles_by_path", allow: true},
		{name: "member denied /admin", policy: "roles_by_path", in: path("/admin/users"),
			reasons: []string{"/admin requires the admin role"}},
		{name: "admin opens /admin", policy: "roles_by_path", in: func(in *policy.Input) {
			in.Request.Path, in.Request.MatchPath = "/admin/users", matchPath("/admin/users")
			in.User.Roles = []string{"admin"}
		}, allow: true},
		{name: "case and ;params do not open /admin", policy: "roles_by_path", in: path("/Admin;jsessionid=1/users"),
			reasons: []string{"/admin requires the admin role"}},
		{name: "/administrators is not under /admin", policy: "roles_by_path", in: path("/administrators"), allow: true},
		{name: "billing role opens /billing", policy: "roles_by_path", in: func(in *policy.Input) {
			in.Request.Path, in.Request.MatchPath = "/billing", matchPath("/billing")
			in.User.Roles = []string{"billing"}
		}, allow: true},
		{name: "member denied /billing", policy: "roles_by_path", in: path("/billing/invoices"),
			reasons: []string{"/billing requires one of the roles admin, billing"}},
		{name: "no role denied", policy: "roles_by_path", in: roles(),
			reasons: []string{"this application requires one of the roles admin, billing, editor, member, viewer"}},
		{name: "unknown role denied", policy: "roles_by_path", in: roles("guest"),
			reasons: []string{"this application requires one of the roles admin, billing, editor, member, viewer"}},

		// plan_gating
		{name: "pro uses reports", policy: "plan_gating", in: path("/api/reports/monthly"), allow: true,
			headers: map[string]string{"X-Gatehouse-Plan": "pro"}},
		{name: "pro denied sso settings", policy: "plan_gating", in: path("/sso-settings"),
			reasons: []string{"/sso-settings is not included in the pro plan; it needs the enterprise plan"}},
		{name: "free denied reports", policy: "plan_gating", in: plan("free", "/api/reports"),
			reasons: []string{"/api/reports is not included in the free plan; it needs the pro or enterprise plan"}},
		{name: "free reads ungated pages", policy: "plan_gating", in: plan("free", "/dashboard"), allow: true,
			headers: map[string]string{"X-Gatehouse-Plan": "free"}},
		{name: "enterprise configures sso", policy: "plan_gating", in: plan("Enterprise", "/sso-settings/saml"), allow: true,
			headers: map[string]string{"X-Gatehouse-Plan": "enterprise"}},
		{name: "no plan is free", policy: "plan_gating", in: func(in *policy.Input) {
			in.Org.Attributes = nil
			in.Request.Path, in.Request.MatchPath = "/api/reports", matchPath("/api/reports")
		},
			reasons: []string{"/api/reports is not included in the free plan; it needs the pro or enterprise plan"}},
		{name: "plan from data", policy: "plan_gating", data: orgData(map[string]string{"plan": "enterprise"}),
			in: func(in *policy.Input) {
				in.Org.Attributes = nil
				in.Request.Path, in.Request.MatchPath = "/sso-settings", matchPath("/sso-settings")
			}, allow: true,
			headers: map[string]string{"X-Gatehouse-Plan": "enterprise"}},

		// admin_mfa
		{name: "admin area with mfa", policy: "admin_mfa", in: path("/admin/users"), allow: true},
		{name: "admin area without mfa", policy: "admin_mfa", in: func(in *policy.Input) {
			in.Request.Path, in.Request.MatchPath = "/admin/users", matchPath("/admin/users")
			in.User.MFA = false
		},
			reasons: []string{"this page requires multi-factor authentication: sign out, then sign in again with your second factor (MFA)"}},
		{name: "ADMIN without mfa", policy: "admin_mfa", in: func(in *policy.Input) {
			in.Request.Path, in.Request.MatchPath = "/ADMIN", matchPath("/ADMIN")
			in.User.MFA = false
		},
			reasons: []string{"this page requires multi-factor authentication: sign out, then sign in again with your second factor (MFA)"}},
		{name: "other pages without mfa", policy: "admin_mfa", in: func(in *policy.Input) { in.User.MFA = false }, allow: true},
		{name: "/administrators without mfa", policy: "admin_mfa", in: func(in *policy.Input) {
			in.Request.Path, in.Request.MatchPath = "/administrators", matchPath("/administrators")
			in.User.MFA = false
		}, allow: true},
		{name: "admin;params without mfa", policy: "admin_mfa", in: func(in *policy.Input) {
			in.Request.Path, in.Request.MatchPath = "/admin;x=1/users", matchPath("/admin;x=1/users")
			in.User.MFA = false
		},
			reasons: []string{"this page requires multi-factor authentication: sign out, then sign in again with your second factor (MFA)"}},

		// ip_allowlist
		{name: "office address", policy: "ip_allowlist", allow: true},
		{name: "office IPv6 address", policy: "ip_allowlist", in: addr("2001:db8::42"), allow: true},
		{name: "home address", policy: "ip_allowlist", in: addr("198.51.100.9"),
			reasons: []string{"your address 198.51.100.9 is not allowed for the Acme organization"}},
		{name: "no allowlist", policy: "ip_allowlist", in: func(in *policy.Input) { in.Org.Attributes = nil; in.Request.ClientAddr = "198.51.100.9" }, allow: true},
		{name: "allowlist from data", policy: "ip_allowlist", data: orgData(map[string]string{"allowed_cidrs": "10.0.0.0/8"}),
			in:      func(in *policy.Input) { in.Org.Attributes = nil },
			reasons: []string{"your address 203.0.113.7 is not allowed for the Acme organization"}},
		{name: "unparsable address", policy: "ip_allowlist", in: addr("fe80::1%eth0"),
			reasons: []string{"your address fe80::1%eth0 is not allowed for the Acme organization"}},
		{name: "only invalid entries admit nobody", policy: "ip_allowlist", in: attr("allowed_cidrs", "office"),
			reasons: []string{"your address 203.0.113.7 is not allowed for the Acme organization"}},

		// business_hours
		{name: "Monday 10:00 in Berlin", policy: "business_hours", allow: true},
		{name: "Monday 07:30 in Berlin", policy: "business_hours", in: at("2026-03-02T06:30:00Z"),
			reasons: []string{"this application is available Monday to Friday, 08:00 to 18:00 (Europe/Berlin); it is now Monday 07:30 there"}},
		{name: "Saturday", policy: "business_hours", in: at("2026-03-07T10:00:00Z"),
			reasons: []string{"this application is available Monday to Friday, 08:00 to 18:00 (Europe/Berlin); it is now Saturday 11:00 there"}},
		{name: "UTC by default", policy: "business_hours", in: func(in *policy.Input) { in.Org.Attributes = nil; at("2026-03-02T18:00:00Z")(in) },
			reasons: []string{"this application is available Monday to Friday, 08:00 to 18:00 (UTC); it is now Monday 18:00 there"}},
		{name: "time zone from data", policy: "business_hours", data: orgData(map[string]string{"timezone": "America/Los_Angeles"}),
			in:      func(in *policy.Input) { in.Org.Attributes = nil },
			reasons: []string{"this application is available Monday to Friday, 08:00 to 18:00 (America/Los_Angeles); it is now Monday 01:00 there"}},
		{name: "admin at night", policy: "business_hours", in: func(in *policy.Input) { in.User.Roles = []string{"admin"}; at("2026-03-07T02:00:00Z")(in) }, allow: true},
		{name: "unknown time zone fails closed", policy: "business_hours", in: attr("timezone", "Mars/Olympus_Mons"),
			reasons: []string{"access could not be decided"}, err: "unknown time zone"},
		{name: "unknown time zone spares admins", policy: "business_hours", in: func(in *policy.Input) { in.User.Roles = []string{"admin"}; attr("timezone", "Mars/Olympus_Mons")(in) }, allow: true},

		// readonly_role
		{name: "viewer reads", policy: "readonly_role", in: roles("viewer"), allow: true},
		{name: "viewer cannot post", policy: "readonly_role", in: func(in *policy.Input) { in.User.Roles = []string{"viewer"}; in.Request.Method = "POST" },
			reasons: []string{"your viewer role is read-only: POST requests are not allowed (only GET, HEAD and OPTIONS)"}},
		{name: "viewer and editor posts", policy: "readonly_role", in: func(in *policy.Input) { in.User.Roles = []string{"viewer", "editor"}; in.Request.Method = "POST" }, allow: true},
		{name: "member deletes", policy: "readonly_role", in: method("DELETE"), allow: true},
		{name: "viewer asks OPTIONS", policy: "readonly_role", in: func(in *policy.Input) { in.User.Roles = []string{"viewer"}; in.Request.Method = "OPTIONS" }, allow: true},
		{name: "viewer and member cannot delete", policy: "readonly_role", in: func(in *policy.Input) { in.User.Roles = []string{"member", "viewer"}; in.Request.Method = "DELETE" },
			reasons: []string{"your viewer role is read-only: DELETE requests are not allowed (only GET, HEAD and OPTIONS)"}},

		// Layers: roles_by_path for everyone, plan_gating for Acme.
		{name: "layers: member uses reports on pro", policy: "roles_by_path", org: "plan_gating", in: path("/api/reports"), allow: true,
			headers: map[string]string{"X-Gatehouse-Plan": "pro"}},
		{name: "layers: platform denies first", policy: "roles_by_path", org: "plan_gating", in: path("/admin/sso-settings"),
			reasons: []string{"/admin requires the admin role"}},
		{name: "layers: org layer denies", policy: "roles_by_path", org: "plan_gating", in: plan("free", "/api/reports"),
			reasons: []string{"/api/reports is not included in the free plan; it needs the pro or enterprise plan"}},
		{name: "layers: org layer only for its org", policy: "roles_by_path", org: "plan_gating",
			in: func(in *policy.Input) {
				in.Org.ID, in.Org.Slug = "org_globex", "globex"
				plan("free", "/api/reports")(in)
			}, allow: true},
	}
	for _, tt := range tests {
		// A policy alone must decide the same in any layer.
		layers := []string{"platform", "route", "org"}
		if tt.org != "" {
			layers = []string{"platform"}
		}
		for _, layer := range layers {
			t.Run(tt.policy+"/"+layer+"/"+tt.name, func(t *testing.T) {
				r := engine(t, tt.policy, layer, tt.org, tt.data)
				in := alice()
				if tt.in != nil {
					tt.in(in)
				}
				d := r.Decide(context.Background(), in)
				if d.Allow != tt.allow || !slices.Equal(d.Reasons, tt.reasons) {
					t.Fatalf("Decide = %v %q (err %v), want %v %q", d.Allow, d.Reasons, d.Err, tt.allow, tt.reasons)
				}
				if !maps.Equal(d.Headers, tt.headers) {
					t.Fatalf("headers = %v, want %v", d.Headers, tt.headers)
				}
				if d.MFAMaxAge != tt.mfaMaxAge {
					t.Fatalf("mfa_max_age = %v, want %v", d.MFAMaxAge, tt.mfaMaxAge)
				}
				switch {
				case tt.err == "" && d.Err != nil:
					t.Fatalf("err = %v", d.Err)
				case tt.err != "" && (d.Err == nil || !strings.Contains(d.Err.Error(), tt.err)):
					t.Fatalf("err = %v, want it to mention %q", d.Err, tt.err)
				}
			})
		}
	}
}

func path(p string) func(*policy.Input) {
	return func(in *policy.Input) { in.Request.Path, in.Request.MatchPath = p, matchPath(p) }
}

// matchPath is what the proxy puts in input.request.match_path.
func matchPath(p string) string { return strings.ToLower(proxy.StripParams(p)) }

func method(m string) func(*policy.Input) { return func(in *policy.Input) { in.Request.Method = m } }

func roles(rs ...string) func(*policy.Input) { return func(in *policy.Input) { in.User.Roles = rs } }

func addr(a string) func(*policy.Input) { return func(in *policy.Input) { in.Request.ClientAddr = a } }

func attr(k, v string) func(*policy.Input) {
	return func(in *policy.Input) { in.Org.Attributes[k] = v }
}

func plan(p, reqPath string) func(*policy.Input) {
	return func(in *policy.Input) {
		in.Org.Attributes["plan"] = p
		in.Request.Path, in.Request.MatchPath = reqPath, matchPath(reqPath)
	}
}

func at(rfc3339 string) func(*policy.Input) {
	return func(in *policy.Input) {
		t, err := time.Parse(time.RFC3339, rfc3339)
		if err != nil {
			panic(err)
		}
		in.Request.At = t
		in.Request.Fill()
	}
}

// TestRegoUnitTests runs each policy's OPA unit tests (policy_test.rego)
// one directory at a time, as `gatehouse policy test <dir>` does: every
// policy declares package gatehouse.authz and its own `default allow`, so
// two directories loaded together would conflict. The tests run twice:
// as tester.Run runs them, and with builtin errors raised, as Gatehouse
// evaluates policies (rego.StrictBuiltinErrors).
func TestRegoUnitTests(t *testing.T) {
	if got := policyDirs(t); !slices.Equal(got, policies) {
		t.Fatalf("policy directories %v, want %v (update the list and the tests)", got, policies)
	}
	ctx := context.Background()
	total := 0
	for _, dir := range policies {
		t.Run(dir, func(t *testing.T) {
			results, err := tester.Run(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			checkResults(t, results)
			strict := runStrict(t, dir)
			checkResults(t, strict)
			if len(strict) != len(results) {
				t.Errorf("%d tests ran strict, %d not", len(strict), len(results))
			}
			if len(results) < minRegoTestsPerPolicy {
				t.Errorf("%d tests ran, want at least %d", len(results), minRegoTestsPerPolicy)
			}
			t.Logf("%d tests passed", len(results))
			total += len(results)
		})
	}
	if total < minRegoTests {
		t.Errorf("%d tests ran, want at least %d", total, minRegoTests)
	}
	t.Logf("%d tests passed in all", total)
}

func runStrict(t *testing.T, dir string) []*tester.Result {
	t.Helper()
	modules, store, err := tester.Load([]string{dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := tester.NewRunner().SetStore(store).RaiseBuiltinErrors(true).Run(context.Background(), modules)
	if err != nil {
		t.Fatal(err)
	}
	var results []*tester.Result
	for r := range ch {
		results = append(results, r)
	}
	return results
}

func checkResults(t *testing.T, results []*tester.Result) {
	t.Helper()
	for _, r := range results {
		switch {
		case r.Error != nil:
			t.Errorf("%s: error: %v", r.Name, r.Error)
		case r.Fail:
			t.Errorf("%s (%v): FAIL", r.Name, r.Location)
		}
	}
}

// TestRegoFormatted: every .rego file is as `opa fmt` writes it.
func TestRegoFormatted(t *testing.T) {
	files, err := filepath.Glob("*/*.rego")
	if err != nil || len(files) < 2*len(policies) {
		t.Fatalf("rego files %v (%v)", files, err)
	}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out, err := format.SourceWithOpts(f, src, format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if !bytes.Equal(out, src) {
			t.Errorf("%s is not formatted (opa fmt -w %s)", f, f)
		}
	}
}

// policyDirs lists the subdirectories here.
func policyDirs(t testing.TB) []string {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	return dirs
}

// BenchmarkPolicy times one decision per example policy with a realistic
// input it allows, and "realistic": roles_by_path as the platform layer
// with plan_gating as the org's layer. "baseline" is a policy that is only
// `allow := true`: the cost of the engine itself (building the input,
// evaluating, reading the result). p50-ns and p99-ns are percentiles of
// the single decisions.
func BenchmarkPolicy(b *testing.B) {
	benches := []struct {
		name, policy, org string
		in                func(*policy.Input)
	}{
		{name: "baseline"},
		{name: "roles_by_path", policy: "roles_by_path", in: func(in *policy.Input) {
			in.User.Roles = []string{"billing"}
			in.Request.Path, in.Request.MatchPath = "/billing/invoices", matchPath("/billing/invoices")
		}},
		{name: "plan_gating", policy: "plan_gating", in: path("/api/reports/monthly")},
		// Without MFA, so that the path is checked.
		{name: "admin_mfa", policy: "admin_mfa", in: func(in *policy.Input) {
			in.User.MFA = false
			in.Request.Path, in.Request.MatchPath = "/projects/42", matchPath("/projects/42")
		}},
		{name: "ip_allowlist", policy: "ip_allowlist"},
		{name: "business_hours", policy: "business_hours"},
		{name: "readonly_role", policy: "readonly_role", in: roles("viewer")},
		{name: "realistic", policy: "roles_by_path", org: "plan_gating", in: path("/api/reports/monthly")},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			var r *policy.Rego
			if bb.policy == "" {
				set, err := policy.Compile(context.Background(), policy.Sources{
					Platform: []policy.Module{{Name: "baseline.rego", Text: "package gatehouse.authz\nallow := true\n"}}})
				if err != nil {
					b.Fatal(err)
				}
				r = policy.NewRego(10*time.Second, nil)
				r.Swap(set)
			} else {
				r = engine(b, bb.policy, "platform", bb.org, orgData(acmeAttrs()))
			}
			in := alice()
			if bb.in != nil {
				bb.in(in)
			}
			// As the proxy does: user, org, route and session are built
			// once per session and route.
			in.UseParts(in.Prebuild())
			ctx := context.Background()
			if d := r.Decide(ctx, in); !d.Allow {
				b.Fatalf("denied: %q (err %v)", d.Reasons, d.Err)
			}
			took := make([]time.Duration, 0, max(b.N, 1))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				d := r.Decide(ctx, in)
				took = append(took, time.Since(start))
				if !d.Allow {
					b.Fatal("denied")
				}
			}
			b.StopTimer()
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(took[len(took)*99/100].Nanoseconds()), "p99-ns")
		})
	}
}
