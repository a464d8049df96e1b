package policy

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/prometheus/client_golang/prometheus"
)

func alice() *Input {
	in := &Input{
		User:    User{ID: "usr_1", Email: "alice@acme.example", Roles: []string{"admin"}},
		Org:     Org{ID: "org_acme", Slug: "acme", Attributes: map[string]string{"plan": "enterprise"}},
		Request: Request{Method: "GET", Host: "app.example.com", Path: "/admin/users", At: time.Unix(1_800_000_000, 0)},
		Route:   Route{ID: "app"},
	}
	in.Request.Fill()
	return in
}

func mod(text string) []Module {
	return []Module{{Name: "p.rego", Text: "package gatehouse.authz\n" + text}}
}

func TestRegoDecisions(t *testing.T) {
	tests := []struct {
		name        string
		src         Sources
		in          func(*Input)
		allow       bool
		reasons     string
		headers     map[string]string
		errContains string
		timeout     time.Duration // 10s unless set: only the deadline case depends on it
	}{
		{name: "allow", src: Sources{Platform: mod(`default allow := false
allow if "admin" in input.user.roles`)}, allow: true},
		{name: "deny with reasons", src: Sources{Platform: mod(`default allow := false
reasons contains "admins only" if not "admin" in input.user.roles`)}, in: func(in *Input) { in.User.Roles = nil }, reasons: "admins only"},
		{name: "deny without reasons names the layer", src: Sources{Platform: mod(`default allow := false`)}, reasons: "denied by the platform policy"},
		{name: "headers from allow", src: Sources{Platform: mod(`allow := true
headers["X-Gatehouse-Plan"] := input.org.attributes.plan`)}, allow: true, headers: map[string]string{"X-Gatehouse-Plan": "enterprise"}},
		{name: "org narrows platform", src: Sources{Platform: mod(`allow := true`), Orgs: map[string][]Module{"org_acme": mod(`default allow := false
reasons contains "acme: read-only" if input.request.method != "GET"`)}}, in: func(in *Input) { in.Request.Method = "POST" }, reasons: "acme: read-only"},
		{name: "org cannot widen platform", src: Sources{Platform: mod(`default allow := false`), Orgs: map[string][]Module{"org_acme": mod(`allow := true`)}}, reasons: "denied by the platform policy"},
		{name: "route layer applies to its route only", src: Sources{Routes: map[string][]Module{"other": mod(`default allow := false`)}}, allow: true},
		{name: "sub-org inherits parent's policy", src: Sources{Orgs: map[string][]Module{"org_parent": mod(`default allow := false`)}, OrgParent: map[string]string{"org_acme": "org_parent"}}, reasons: "denied by the org org_parent policy"},
		{name: "data holds org attributes", src: Sources{Platform: mod(`allow if data.gatehouse.orgs[input.org.slug].attributes.plan == "enterprise"`), Data: map[string]any{"gatehouse": map[string]any{"orgs": map[string]any{"acme": map[string]any{"attributes": map[string]any{"plan": "enterprise"}}}}}}, allow: true},
		{name: "time.now_ns is the request time", src: Sources{Platform: mod(`allow if time.now_ns() == input.request.time_ns`)}, allow: true},
		// Fail closed.
		{name: "undefined allow", src: Sources{Platform: mod(`allow if input.user.id == "nobody"`)}, reasons: "denied by the platform policy"},
		{name: "allow not a boolean", src: Sources{Platform: mod(`allow := "yes"`)}, reasons: "denied by the platform policy"},
		{name: "runtime error", src: Sources{Platform: mod(`allow if to_number(input.user.email) > 0`)}, reasons: "access could not be decided", errContains: "to_number"},
		{name: "conflicting values", src: Sources{Platform: mod(`allow := true if true
allow := false if input.user.id != ""`)}, reasons: "access could not be decided", errContains: "conflict"},
		{name: "forbidden header", src: Sources{Platform: mod(`allow := true
headers["X-Gatehouse-Email"] := "ceo@acme.example"`)}, reasons: "access could not be decided", errContains: "may not be set"},
		{name: "header with newline", src: Sources{Platform: mod(`allow := true
headers["X-Gatehouse-Plan"] := "a\nb"`)}, reasons: "access could not be decided", errContains: "may not be set"},
		{name: "header not X-Gatehouse-*", src: Sources{Platform: mod(`allow := true
headers["X-Remote-User"] := "admin"`)}, reasons: "access could not be decided", errContains: "may not be set"},
		{name: "org changes a platform header", src: Sources{Platform: mod(`allow := true
headers["X-Gatehouse-Plan"] := "free"`), Orgs: map[string][]Module{"org_acme": mod(`allow := true
headers["X-Gatehouse-Plan"] := "enterprise"`)}}, reasons: "access could not be decided", errContains: "already set"},
		{name: "org repeats a platform header", src: Sources{Platform: mod(`allow := true
headers["X-Gatehouse-Plan"] := "free"`), Orgs: map[string][]Module{"org_acme": mod(`allow := true
headers["X-Gatehouse-Plan"] := "free"`)}}, allow: true, headers: map[string]string{"X-Gatehouse-Plan": "free"}},
		{name: "org unknown to the set", src: Sources{Platform: mod(`allow := true`), OrgParent: map[string]string{"org_other": ""}}, reasons: "access could not be decided", errContains: "not known"},
		{name: "broken parent chain", src: Sources{Platform: mod(`allow := true`), OrgParent: map[string]string{"org_acme": "org_gone"}}, reasons: "access could not be decided", errContains: "not known"},
		{name: "parent loop", src: Sources{Platform: mod(`allow := true`), OrgParent: map[string]string{"org_acme": "org_x", "org_x": "org_acme"}}, reasons: "access could not be decided", errContains: "deeper"},
		{name: "no network built-ins", src: Sources{Platform: mod(`allow := true`)}, allow: true},
		{name: "deadline", src: Sources{Platform: mod(`allow if count([x | some x in numbers.range(1, 100000000)]) > 0`)}, reasons: "access could not be decided", errContains: "took longer than", timeout: 50 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Compile(context.Background(), tt.src)
			if err != nil {
				t.Fatal(err)
			}
			var logbuf bytes.Buffer
			timeout := cmp.Or(tt.timeout, 10*time.Second)
			r := NewRego(timeout, NewDecisionLog(slog.New(slog.NewJSONHandler(&logbuf, nil)), nil, 0, prometheus.NewRegistry()))
			r.Swap(set)
			in := alice()
			if tt.in != nil {
				tt.in(in)
			}
			d := r.Decide(context.Background(), in)
			if d.Allow != tt.allow || strings.Join(d.Reasons, ";") != tt.reasons {
				t.Fatalf("Decide = %v %q (err %v), want %v %q", d.Allow, d.Reasons, d.Err, tt.allow, tt.reasons)
			}
			if tt.headers != nil && !equalMaps(d.Headers, tt.headers) {
				t.Fatalf("headers = %v, want %v", d.Headers, tt.headers)
			}
			if tt.errContains != "" && (d.Err == nil || !strings.Contains(d.Err.Error(), tt.errContains)) {
				t.Fatalf("err = %v, want it to mention %q", d.Err, tt.errContains)
			}
			if !d.Allow && !strings.Contains(logbuf.String(), `"policy: decision"`) {
				t.Fatalf("deny not in the decision log: %s", logbuf.String())
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCompileRefusesBrokenPolicies(t *testing.T) {
	for name, src := range map[string]Sources{
		"http.send":     {Platform: mod(`allow if http.send({"method": "GET", "url": "http://127.0.0.1:1/"}).status_code == 200`)},
		"net.lookup":    {Platform: mod(`allow if count(net.lookup_ip_addr("example.com")) > 0`)},
		"syntax":        {Platform: mod(`allow := `)},
		"wrong package": {Platform: []Module{{Name: "x.rego", Text: "package other\nallow := true"}}},
		"unsafe var":    {Orgs: map[string][]Module{"o": mod(`allow if x > 1`)}},
		"bad route":     {Routes: map[string][]Module{"r": mod(`allow if input.user.roles[_] ==`)}},
		"no allow rule": {Platform: mod(`reasons contains "x" if true`)},
	} {
		if _, err := Compile(context.Background(), src); err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}

func TestNoPoliciesLeavesDecisionToChain(t *testing.T) {
	r := NewRego(10*time.Second, nil)
	if d := (Chain{RouteOrgs{}, r}).Decide(context.Background(), alice()); !d.Allow {
		t.Fatal("empty policy set denied")
	}
	in := alice()
	in.Route.Orgs = []string{"globex"}
	if d := (Chain{RouteOrgs{}, r}).Decide(context.Background(), in); d.Allow {
		t.Fatal("route org list ignored")
	}
}

func TestDecisionLogRedactsAndSamples(t *testing.T) {
	set, _ := Compile(context.Background(), Sources{Platform: mod(`allow := true`)})
	var logbuf, file bytes.Buffer
	r := NewRego(10*time.Second, NewDecisionLog(slog.New(slog.NewJSONHandler(&logbuf, nil)), &file, 1, nil))
	r.Swap(set)
	in := alice()
	in.Request.Headers = map[string]string{"user-agent": "test"}
	d := r.Decide(context.Background(), in)
	if !d.Allow || d.ID == "" || d.Version != set.Version {
		t.Fatalf("decision %+v", d)
	}
	var e map[string]any
	if err := json.Unmarshal(file.Bytes(), &e); err != nil {
		t.Fatalf("decision file: %v: %q", err, file.String())
	}
	if e["decision_id"] != d.ID || e["policy_version"] != set.Version || e["allow"] != true {
		t.Fatalf("entry = %v", e)
	}
}

// A panic inside evaluation (here in a custom built-in, standing in for a
// bug in OPA) denies instead of crashing the proxy.
func TestPanicInEvaluationDenies(t *testing.T) {
	decl := &ast.Builtin{Name: "test.boom", Decl: types.NewFunction(types.Args(types.S), types.B)}
	topdown.RegisterBuiltinFunc(decl.Name, func(topdown.BuiltinContext, []*ast.Term, func(*ast.Term) error) error { panic("boom") })
	pm := ast.MustParseModule("package gatehouse.authz\nallow if test.boom(input.user.id)\n")
	l, err := compileLayer("platform", ast.NewCompiler().WithBuiltins(map[string]*ast.Builtin{decl.Name: decl}), []*ast.Module{pm})
	if err != nil {
		t.Fatal(err)
	}
	set := &Set{platform: l, store: inmem.New(), Version: "test"}
	r := NewRego(10*time.Second, nil)
	r.Swap(set)
	d := r.Decide(context.Background(), alice())
	if d.Allow || d.Err == nil || !strings.Contains(d.Err.Error(), "boom") {
		t.Fatalf("decision after a panic: %+v", d)
	}
	t.Log(d.Err)
}

func TestDecisionLogRedactsQueryAndReferer(t *testing.T) {
	set, _ := Compile(context.Background(), Sources{Platform: mod(`default allow := false`)})
	var logbuf, file bytes.Buffer
	r := NewRego(10*time.Second, NewDecisionLog(slog.New(slog.NewJSONHandler(&logbuf, nil)), &file, 0, nil))
	r.Swap(set)
	in := alice()
	in.Request.Query = map[string][]string{"access_token": {"SECRET-TOKEN"}}
	in.Request.Headers = map[string]string{"referer": "https://app.example.com/reset?code=SECRET-CODE#frag"}
	r.Decide(context.Background(), in)
	for name, out := range map[string]string{"log": logbuf.String(), "file": file.String()} {
		if strings.Contains(out, "SECRET") || !strings.Contains(out, "access_token") || !strings.Contains(out, "https://app.example.com/reset") {
			t.Fatalf("%s: %s", name, out)
		}
	}
	if in.Request.Query["access_token"][0] != "SECRET-TOKEN" {
		t.Fatal("redaction changed the decision's own input")
	}
}

func TestLoadModulesSkipsTestsAndDotfiles(t *testing.T) {
	dir := t.TempDir()
	for name, text := range map[string]string{
		"a.rego": "package gatehouse.authz\nallow := true\n", "a_test.rego": "package gatehouse.authz\ntest_x if allow\n",
		".#a.rego": "garbage", "README.md": "not rego",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mods, err := LoadModules(dir)
	if err != nil || len(mods) != 1 || filepath.Base(mods[0].Name) != "a.rego" {
		t.Fatalf("LoadModules = %v, %v", mods, err)
	}
	if _, err := LoadModules(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing path accepted")
	}
}

func TestTrivial(t *testing.T) {
	r := NewRego(10*time.Second, nil)
	if !(Chain{RouteOrgs{}, r}).Trivial() {
		t.Fatal("chain with no policy loaded is not trivial")
	}
	set, _ := Compile(context.Background(), Sources{Platform: mod(`allow := true`)})
	r.Swap(set)
	if (Chain{RouteOrgs{}, r}).Trivial() {
		t.Fatal("chain with a policy loaded is trivial")
	}
}

// mfa_max_age: the strictest allowing layer's counts; a deny clears it;
// anything but a whole number of seconds from 60 to 86400 denies.
func TestMFAMaxAge(t *testing.T) {
	allowAll := "default allow := false\nallow := true\n"
	for _, tt := range []struct {
		name  string
		src   Sources
		allow bool
		want  time.Duration
		err   string
	}{
		{"one layer", Sources{Platform: mod(allowAll + "mfa_max_age := 600")}, true, 10 * time.Minute, ""},
		{"undefined asks nothing", Sources{Platform: mod(allowAll + `mfa_max_age := 600 if input.request.path == "/x"`)}, true, 0, ""},
		{"the strictest layer", Sources{Platform: mod(allowAll + "mfa_max_age := 900"), Routes: map[string][]Module{"app": mod(allowAll + "mfa_max_age := 120")},
			Orgs: map[string][]Module{"org_acme": mod(allowAll + "mfa_max_age := 600")}}, true, 2 * time.Minute, ""},
		{"a deny clears it", Sources{Platform: mod(allowAll + "mfa_max_age := 900"), Routes: map[string][]Module{"app": mod("default allow := false")}}, false, 0, ""},
		{"a string", Sources{Platform: mod(allowAll + `mfa_max_age := "10m"`)}, false, 0, "whole number of seconds"},
		{"a fraction", Sources{Platform: mod(allowAll + "mfa_max_age := 90.5")}, false, 0, "whole number of seconds"},
		{"under a minute", Sources{Platform: mod(allowAll + "mfa_max_age := 30")}, false, 0, "from 60"},
		{"over a day", Sources{Platform: mod(allowAll + "mfa_max_age := 100000")}, false, 0, "to 86400"},
		{"negative", Sources{Platform: mod(allowAll + "mfa_max_age := -1")}, false, 0, "whole number"},
		{"conflicting values", Sources{Platform: mod(allowAll + "mfa_max_age := 60 if true\nmfa_max_age := 120 if true")}, false, 0, "mfa_max_age"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Compile(context.Background(), tt.src)
			if err != nil {
				t.Fatal(err)
			}
			r := NewRego(10*time.Second, nil)
			r.Swap(set)
			d := r.Decide(context.Background(), alice())
			if d.Allow != tt.allow || d.MFAMaxAge != tt.want {
				t.Fatalf("Decide = %v %v (err %v), want %v %v", d.Allow, d.MFAMaxAge, d.Err, tt.allow, tt.want)
			}
			if tt.err != "" && (d.Err == nil || !strings.Contains(d.Err.Error(), tt.err)) {
				t.Fatalf("err %v, want it to mention %q", d.Err, tt.err)
			}
		})
	}
}
