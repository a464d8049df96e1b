package policy

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// reuseHead starts the policies of the path test tests.
const reuseHead = "package gatehouse.authz\n\ndefault allow := false\n\n"

// reusePolicies are policies asking questions of paths in many ways, and
// some using paths in ways the analysis does not follow (their decisions
// are then never reused across paths, which the property covers too).
var reusePolicies = map[string]string{
	"prefix":       `allow if startswith(input.request.path, "/public/")`,
	"equal":        `allow if input.request.path == "/health"`,
	"not equal":    `allow if input.request.match_path != "/admin"`,
	"glob":         `allow if glob.match("/api/*/items/*", ["/"], input.request.path)`,
	"regex":        `allow if regex.match("^/api/v[0-9]+/", input.request.path)`,
	"lower suffix": "allow if {\n\tp := lower(input.request.path)\n\tendswith(p, \".json\")\n}",
	"length":       `allow if count(input.request.path) < 12`,
	"index":        `allow if indexof(input.request.path, "/x") > 3`,
	"set":          `allow if input.request.path in {"/a", "/b"}`,
	"compare":      `allow if input.request.path < "/m"`,
	"contains":     `allow if contains(input.request.match_path, "items")`,
	"negated":      `allow if not startswith(input.request.path, "/admin")`,
	"sprintf":      "allow if endswith(sprintf(\"%s!\", [input.request.path]), \"/!\")",
	"trim":         `allow if trim_suffix(input.request.path, "/") == "/a"`,
	"from data":    "allow if {\n\tsome prefix in data.prefixes\n\tstartswith(input.request.path, prefix)\n}",
	"from roles":   "allow if {\n\tsome r in input.user.roles\n\tstartswith(input.request.match_path, concat(\"\", [\"/\", r, \"/\"]))\n}",
	"rule value":   "p := concat(\"\", [input.request.match_path, \"/\"])\n\nallow if startswith(p, \"/api/\")\n\nallow if p == \"/b/\"",
	"header":       "allow := true\n\nheaders[\"X-Gatehouse-Area\"] := a if {\n\tstartswith(input.request.path, \"/api/\")\n\ta := \"api\"\n} else := \"web\"",
	"reasons":      "allow if not startswith(input.request.path, \"/admin\")\n\nreasons contains \"no admin\" if startswith(input.request.path, \"/admin\")",
	"mfa":          "allow := true\n\nmfa_max_age := 300 if startswith(input.request.match_path, \"/admin/\")",
	"any prefix":   `allow if strings.any_prefix_match(input.request.path, ["/a", "/p"])`,
	// Not followed: read whole.
	"split":       `allow if split(input.request.path, "/")[1] == "api"`,
	"unified":     "allow if {\n\t{\"p\": x} = {\"p\": input.request.path}\n\tx == \"/a\"\n}",
	"index table": "t := {\"/a\": true}\n\nallow if t[input.request.path]",
	"two paths":   `allow if startswith(input.request.path, input.request.match_path)`,
	// Found in review: compared by OPA itself, so read whole.
	"repeated parameter": "f(x, x) if true\n\nallow if f(input.request.path, \"/a\")",
	"conflicting values": "p := input.request.path if startswith(input.request.path, \"/\")\n\np := \"/a\" if input.user.id == \"u1\"\n\nallow if count(p) >= 0",
	"failing test":       `allow if regex.match(input.request.path, "/a")`,
}

// reusePaths are the paths decisions are made for and reused across.
var reusePaths = []string{
	"", "/", "/a", "/a/", "/A", "/b", "/b/", "/m", "/health", "/health/", "/public/", "/public/x", "/publicx",
	"/admin", "/admin/", "/admin/x", "/ADMIN/x", "/administrators", "/billing/invoices/1", "/api/", "/api/items/42",
	"/api/v1/items/3", "/api/v12/x", "/api/reports/2", "/sso-settings/x", "/x.json", "/X.JSON", "/a/x/b",
	"/editor/x", "/viewer/", "/items", "/ä/ü", "/a;x/b", "/" + strings.Repeat("a", 40), "/a\xff", "/(",
}

// matchPath is the path as routes match it (";params" removed, lowered).
func matchPath(p string) string {
	var b strings.Builder
	for i, seg := range strings.Split(p, "/") {
		if i > 0 {
			b.WriteByte('/')
		}
		seg, _, _ = strings.Cut(seg, ";")
		b.WriteString(seg)
	}
	return strings.ToLower(b.String())
}

func reuseInput(path string, roles []string, plan string) *Input {
	return &Input{
		User:    User{ID: "u1", Email: "u@acme.example", Roles: roles},
		Org:     Org{ID: "o1", Slug: "acme", Attributes: map[string]string{"plan": plan}},
		Request: Request{Method: "GET", Host: "app.example.com", Path: path, MatchPath: matchPath(path)},
		Route:   Route{ID: "app"},
	}
}

func sameDecision(a, b Decision) bool {
	return a.Allow == b.Allow && maps.Equal(a.Headers, b.Headers) && a.MFAMaxAge == b.MFAMaxAge &&
		slices.Equal(a.Reasons, b.Reasons) && (a.Err == nil) == (b.Err == nil)
}

// A decision is reused for a path only where the policies, asked afresh,
// decide the same: for every policy above and the examples, every person
// and every pair of paths, whenever the first path's decision holds for
// the second (its path tests give the same answers), the second's own
// decision is the same. Reuse does happen where a policy only tests
// paths, and never where it reads them in another way.
func TestPathTestReuseIsSound(t *testing.T) {
	ctx := context.Background()
	type layerSrc struct {
		name string
		mods []Module
	}
	var layers []layerSrc
	for _, name := range slices.Sorted(maps.Keys(reusePolicies)) {
		layers = append(layers, layerSrc{name, []Module{{Name: "p.rego", Text: reuseHead + reusePolicies[name] + "\n"}}})
	}
	for _, dir := range []string{"roles_by_path", "plan_gating", "readonly_role", "admin_mfa", "step_up_admin", "ip_allowlist"} {
		mods, err := LoadModules("../examples/policies/" + dir)
		if err != nil {
			t.Fatal(err)
		}
		layers = append(layers, layerSrc{dir, mods})
	}
	people := []struct {
		roles []string
		plan  string
	}{{[]string{"admin"}, "enterprise"}, {[]string{"member"}, "free"}, {[]string{"billing", "viewer"}, "pro"}, {nil, ""}}
	reused := map[string]int{}
	for _, l := range layers {
		set, err := Compile(ctx, Sources{Platform: l.mods, Data: map[string]any{"prefixes": []any{"/p", "/items"}}})
		if err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		r := NewRego(time.Second, nil)
		r.Swap(set)
		for _, who := range people {
			for _, p1 := range reusePaths {
				in1 := reuseInput(p1, who.roles, who.plan)
				d1 := r.Decide(ctx, in1)
				if !d1.PathTests.Reusable() {
					continue
				}
				tested := r.RequestReads(in1).Tested
				for _, p2 := range reusePaths {
					in2 := reuseInput(p2, who.roles, who.plan)
					if len(tested) == 0 && (in1.Request.Path != in2.Request.Path || in1.Request.MatchPath != in2.Request.MatchPath) {
						continue // paths are keyed as they are: no question of reuse
					}
					if !d1.PathTests.Hold(ctx, &in2.Request) {
						continue
					}
					if d2 := r.Decide(ctx, in2); !sameDecision(d1, d2) {
						t.Errorf("%s, roles %v: decision for %q (%+v) reused for %q, which decides %+v", l.name, who.roles, p1, d1, p2, d2)
					}
					if p1 != p2 {
						reused[l.name]++
					}
				}
			}
		}
	}
	for _, name := range []string{"prefix", "equal", "trim", "glob", "regex", "from data", "from roles", "rule value", "header", "mfa", "roles_by_path", "plan_gating"} {
		if reused[name] == 0 {
			t.Errorf("%s: no decision reused across paths", name)
		}
	}
	for _, name := range []string{"split", "unified", "index table", "two paths", "repeated parameter", "conflicting values"} {
		if reused[name] != 0 {
			t.Errorf("%s reads paths whole, yet %d decisions were reused across paths", name, reused[name])
		}
	}
}

// What roles_by_path's decisions for a member record: three questions
// (does the path start with "/", "/admin/", "/billing/"?), so the member's
// decision for one item holds for any other path outside /admin and
// /billing, and for none inside.
func TestPathTestsOfRolesByPath(t *testing.T) {
	ctx := context.Background()
	mods, err := LoadModules("../examples/policies/roles_by_path")
	if err != nil {
		t.Fatal(err)
	}
	set, err := Compile(ctx, Sources{Platform: mods})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRego(time.Second, nil)
	r.Swap(set)
	d := r.Decide(ctx, reuseInput("/api/items/1", []string{"member"}, ""))
	if !d.Allow || d.PathTests.Len() != 3 {
		t.Fatalf("decision %+v with %d tests", d, d.PathTests.Len())
	}
	for path, holds := range map[string]bool{"/api/items/2": true, "/": true, "/api/admin/x": true, "/administrators": true,
		"/admin": false, "/admin/users/1": false, "/billing": false, "/billing/invoices/9": false} {
		if got := d.PathTests.Hold(ctx, &reuseInput(path, []string{"member"}, "").Request); got != holds {
			t.Errorf("%s: holds %v, want %v", path, got, holds)
		}
	}
}

// FuzzPathTestReuse: for any two paths, a decision that holds for the
// second is the second's own decision (policies as in
// TestPathTestReuseIsSound, several layers at once).
func FuzzPathTestReuse(f *testing.F) {
	for _, p := range reusePaths {
		f.Add(p, "/api/items/1")
	}
	ctx := context.Background()
	route := reuseHead + `p := concat("", [lower(input.request.path), "/"])

allow if glob.match("/api/*/items/*", ["/"], input.request.path)

allow if regex.match("^/api/v[0-9]+/", input.request.match_path)

allow if {
	endswith(p, ".json/")
	count(input.request.path) < 30
}

allow if startswith(p, "/api/")

allow if input.request.path < "/b"

headers["X-Gatehouse-Area"] := "api" if startswith(p, "/api/")

mfa_max_age := 300 if contains(input.request.match_path, "admin")
`
	rbp, err := LoadModules("../examples/policies/roles_by_path")
	if err != nil {
		f.Fatal(err)
	}
	pg, err := LoadModules("../examples/policies/plan_gating")
	if err != nil {
		f.Fatal(err)
	}
	set, err := Compile(ctx, Sources{Platform: rbp, Orgs: map[string][]Module{"o1": pg}, Routes: map[string][]Module{"app": {{Name: "route.rego", Text: route}}}})
	if err != nil {
		f.Fatal(err)
	}
	if rd := set.routes["app"].reads; len(rd.Tested) != 2 {
		f.Fatalf("route layer reads %+v, want both paths tested", rd)
	}
	r := NewRego(time.Second, nil)
	r.Swap(set)
	f.Fuzz(func(t *testing.T, p1, p2 string) {
		for _, roles := range [][]string{{"admin"}, {"member"}} {
			d1 := r.Decide(ctx, reuseInput(p1, roles, "pro"))
			in2 := reuseInput(p2, roles, "pro")
			if d1.PathTests.Hold(ctx, &in2.Request) {
				if d2 := r.Decide(ctx, in2); !sameDecision(d1, d2) {
					t.Fatalf("roles %v: decision for %q (%+v) holds for %q, which decides %+v", roles, p1, d1, p2, d2)
				}
			}
		}
	})
}

// A comparison next to a comprehension, its ref bound to a local in the
// right body: the policy still decides as written.
func TestPathTestRewriteKeepsBodies(t *testing.T) {
	ctx := context.Background()
	src := reuseHead + "allow if {\n\tn := count([x | some x in [1, 2]; x > 1])\n\tinput.request.path == \"/a\"\n\tn == 1\n}\n"
	set, err := Compile(ctx, Sources{Platform: []Module{{Name: "p.rego", Text: src}}})
	if err != nil {
		t.Fatal(err)
	}
	if rd := set.platform.reads; !slices.Equal(rd.Tested, []string{"path"}) {
		t.Fatalf("reads %+v", rd)
	}
	r := NewRego(time.Second, nil)
	r.Swap(set)
	for path, want := range map[string]bool{"/a": true, "/b": false} {
		if d := r.Decide(ctx, reuseInput(path, nil, "")); d.Allow != want || d.Err != nil {
			t.Errorf("%s: %+v", path, d)
		}
	}
}
