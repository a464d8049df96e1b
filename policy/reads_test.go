package policy

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// What each policy reads of input.request, found in its compiled modules.
func TestAnalyzeReads(t *testing.T) {
	head := "package gatehouse.authz\n\ndefault allow := false\n\n"
	for _, tc := range []struct {
		name string
		src  string // a module, or "dir:" and an example's folder
		want Reads
	}{
		{"roles by path", "dir:../examples/policies/roles_by_path", Reads{Tested: []string{"match_path"}}},
		{"plan gating", "dir:../examples/policies/plan_gating", Reads{Tested: []string{"match_path"}}},
		{"ip allowlist", "dir:../examples/policies/ip_allowlist", Reads{Fields: []string{"client_addr"}}},
		{"readonly role", "dir:../examples/policies/readonly_role", Reads{Fields: []string{"method"}}},
		{"business hours (the request's time)", "dir:../examples/policies/business_hours", Reads{Never: true, Fields: []string{"time_ns"}}},
		{"no request field", head + "allow if input.user.roles[_] == \"admin\"\n", Reads{}},
		{"a header", head + "allow if input.request.headers[\"x-api\"] == \"1\"\n", Reads{Fields: []string{"headers"}}},
		{"two fields", head + "allow if {\n\tinput.request.method == \"GET\"\n\tstartswith(input.request.path, \"/a\")\n}\n", Reads{Fields: []string{"method"}, Tested: []string{"path"}}},
		// Paths used in ways path tests do not follow are read whole.
		{"path split", head + "allow if split(input.request.path, \"/\")[1] == \"api\"\n", Reads{Fields: []string{"path"}}},
		{"path compared by unification", head + "allow if {\n\tp := input.request.path\n\tp = \"/a\"\n}\n", Reads{Tested: []string{"path"}}},
		{"path unified in an object", head + "allow if {\n\t{\"p\": x} = {\"p\": input.request.path}\n\tx == \"/a\"\n}\n", Reads{Fields: []string{"path"}}},
		{"path to a constant parameter", head + "allow if f(input.request.path)\n\nf(\"/a\")\n", Reads{Fields: []string{"path"}}},
		{"path as a header", head + "allow := true\n\nheaders[\"X-Gatehouse-P\"] := input.request.path\n", Reads{Fields: []string{"path"}}},
		{"path as a rule key", head + "allow if count(seen) > 0\n\nseen contains input.request.path\n", Reads{Fields: []string{"path"}}},
		{"two paths in one call", head + "allow if startswith(input.request.path, input.request.match_path)\n", Reads{Fields: []string{"match_path", "path"}}},
		{"path in every", head + "allow if every s in [\"/a\"] { not startswith(input.request.path, s) }\n", Reads{Fields: []string{"path"}}},
		{"a with", head + "allow if f with input.request.path as \"/a\"\n\nf if startswith(input.request.path, \"/a\")\n", Reads{Fields: []string{"path"}}},
		{"path as an index", head + "t := {\"/a\": true}\n\nallow if t[input.request.path]\n", Reads{Fields: []string{"path"}}},
		{"path through lower and concat", head + "allow if {\n\tp := concat(\"\", [lower(input.request.path), \"/\"])\n\tstartswith(p, \"/a/\")\n}\n", Reads{Tested: []string{"path"}}},
		{"path through a function", head + "allow if f(input.request.match_path)\n\nf(p) if glob.match(\"/api/*\", [\"/\"], p)\n", Reads{Tested: []string{"match_path"}}},
		{"path in a set", head + "allow if input.request.path in {\"/a\", \"/b\"}\n", Reads{Tested: []string{"path"}}},
		{"the request whole", head + "allow if count(input.request) > 0\n", Reads{All: true}},
		{"a field named at run time", head + "k := \"path\"\n\nallow if input.request[k] == \"/\"\n", Reads{All: true}},
		{"input whole", head + "allow if f(input)\n\nf(x) if x.request.path == \"/\"\n", Reads{All: true}},
		{"iterating input", head + "allow if {\n\tsome k, v in input\n\tk == \"request\"\n\tv.path == \"/\"\n}\n", Reads{All: true}},
		{"an import", "package gatehouse.authz\n\nimport input.request as req\n\ndefault allow := false\n\nallow if req.path == \"/\"\n", Reads{Tested: []string{"path"}}},
		{"time.now_ns", head + "allow if time.now_ns() > 0\n", Reads{Never: true}},
		{"time.now_ns in an expression", head + "allow if {\n\tt := time.now_ns()\n\tt > 0\n}\n", Reads{Never: true}},
		{"rand.intn", head + "allow if rand.intn(\"x\", 10) < 5\n", Reads{Never: true}},
		{"uuid", head + "allow if uuid.rfc4122(\"x\") != \"\"\n", Reads{Never: true}},
		{"a function's argument", head + "allow if ok(input.request.host)\n\nok(h) if h == \"a\"\n", Reads{Fields: []string{"host"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mods []Module
			if dir, ok := strings.CutPrefix(tc.src, "dir:"); ok {
				var err error
				if mods, err = LoadModules(dir); err != nil {
					t.Fatal(err)
				}
			} else {
				mods = []Module{{Name: "p.rego", Text: tc.src}}
			}
			set, err := Compile(context.Background(), Sources{Platform: mods})
			if err != nil {
				t.Fatal(err)
			}
			got := set.platform.reads
			if got.All != tc.want.All || got.Never != tc.want.Never || !slices.Equal(got.Fields, tc.want.Fields) || !slices.Equal(got.Tested, tc.want.Tested) {
				t.Fatalf("reads %+v, want %+v", got, tc.want)
			}
		})
	}
}

// A set's reads are those of the layers that apply: the platform's, the
// route's and the org's (or its nearest ancestor's), not another org's.
func TestRequestReadsOfLayers(t *testing.T) {
	// A field used as an index is read whole (a path is not tested).
	mod := func(field string) []Module {
		return []Module{{Name: field + ".rego", Text: "package gatehouse.authz\n\ndefault allow := false\n\nallow if not {\"\": true}[input.request." + field + "]\n"}}
	}
	set, err := Compile(context.Background(), Sources{Platform: mod("method"), Routes: map[string][]Module{"app": mod("host")},
		Orgs: map[string][]Module{"o1": mod("path"), "o2": mod("client_addr")}, OrgParent: map[string]string{"o1": "", "o2": "", "o3": "o1"}})
	if err != nil {
		t.Fatal(err)
	}
	r := NewRego(0, nil)
	r.Swap(set)
	for _, tc := range []struct {
		route, org string
		want       []string
	}{
		{"app", "o1", []string{"host", "method", "path"}},
		{"other", "o2", []string{"client_addr", "method"}},
		{"other", "o3", []string{"method", "path"}}, // o1's, inherited
	} {
		got := r.RequestReads(&Input{Route: Route{ID: tc.route}, Org: Org{ID: tc.org}})
		if got.All || got.Never || !slices.Equal(got.Fields, tc.want) {
			t.Errorf("route %s org %s: %+v, want %v", tc.route, tc.org, got, tc.want)
		}
	}
	// An org the set does not know: nothing may be reused.
	if got := r.RequestReads(&Input{Route: Route{ID: "app"}, Org: Org{ID: "o9"}}); !got.Never {
		t.Errorf("unknown org: %+v", got)
	}
	if got := (Chain{RouteOrgs{}, r}).RequestReads(&Input{Org: Org{ID: "o1"}}); !slices.Equal(got.Fields, []string{"method", "path"}) {
		t.Errorf("chain: %+v", got)
	}
}
