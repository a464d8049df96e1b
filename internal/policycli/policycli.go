// Package policycli implements `gatehouse policy test|eval|input`: Rego
// policies tested and tried offline, with the input document the proxy
// builds.
package policycli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Test runs the *_test.rego tests of each policy directory under the
// given paths. A directory holding .rego files is one policy (as
// Gatehouse loads it), so policies in sibling directories may all use
// package gatehouse.authz without clashing.
func Test(ctx context.Context, paths []string, stdout, stderr io.Writer) int {
	if len(paths) == 0 {
		fmt.Fprintln(stderr, "usage: gatehouse policy test DIR...")
		return 2
	}
	var dirs []string
	for _, p := range paths {
		found, err := policyDirs(p)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		dirs = append(dirs, found...)
	}
	pass, fail := 0, 0
	for _, dir := range dirs {
		results, err := tester.Run(ctx, dir)
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", dir, err)
			fail++
			continue
		}
		for _, r := range results {
			switch {
			case r.Skip:
				fmt.Fprintf(stdout, "SKIP %s: %s.%s\n", dir, r.Package, r.Name)
			case r.Pass():
				pass++
				fmt.Fprintf(stdout, "PASS %s: %s.%s (%s)\n", dir, r.Package, r.Name, r.Duration.Round(time.Microsecond))
			default:
				fail++
				msg := "failed"
				if r.Error != nil {
					msg = r.Error.Error()
				}
				loc := ""
				if r.Location != nil {
					loc = fmt.Sprintf(" at %s:%d", r.Location.File, r.Location.Row)
				}
				fmt.Fprintf(stdout, "FAIL %s: %s.%s%s: %s\n", dir, r.Package, r.Name, loc, msg)
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed, in %d policy directories\n", pass, fail, len(dirs))
	if fail > 0 || pass == 0 {
		return 1
	}
	return 0
}

// policyDirs lists the directories under root that directly hold .rego
// files (root itself if it does).
func policyDirs(root string) ([]string, error) {
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".rego") {
			seen[filepath.Dir(p)] = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy test: %w", err)
	}
	var dirs []string
	for d := range seen {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	if len(dirs) == 0 {
		return nil, fmt.Errorf("policy test: no .rego files under %s", root)
	}
	// A directory inside another policy directory belongs to it.
	var out []string
	for _, d := range dirs {
		nested := false
		for _, o := range out {
			if strings.HasPrefix(d, o+string(filepath.Separator)) {
				nested = true
			}
		}
		if !nested {
			out = append(out, d)
		}
	}
	return out, nil
}

// Eval evaluates policies over an input document offline, printing the
// decision as JSON. Exit status: 0 allow, 3 deny, 1 error (including a
// policy that fails to evaluate, which the proxy treats as a deny).
func Eval(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	platform := fs.String("platform", "", "platform policy: .rego file or directory")
	route := fs.String("route", "", "route policy: .rego file or directory")
	org := fs.String("org", "", "org policy: .rego file or directory")
	data := fs.String("data", "", "JSON file exposed as data (e.g. {\"gatehouse\":{\"orgs\":{...}}})")
	inputPath := fs.String("input", "-", "input document (JSON, as `gatehouse policy input` prints); - for stdin")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *platform == "" && *route == "" && *org == "" {
		fmt.Fprintln(stderr, "policy eval: give at least one of --platform, --route, --org")
		return 2
	}
	var raw []byte
	var err error
	if *inputPath == "-" {
		raw, err = io.ReadAll(io.LimitReader(stdin, 1<<20))
	} else {
		raw, err = os.ReadFile(*inputPath)
	}
	if err != nil {
		fmt.Fprintln(stderr, "policy eval:", err)
		return 1
	}
	var in policy.Input
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		fmt.Fprintln(stderr, "policy eval: input:", err)
		return 1
	}
	if dec.More() {
		fmt.Fprintln(stderr, "policy eval: input: more than one JSON document")
		return 1
	}
	if *route != "" && in.Route.ID == "" || *org != "" && in.Org.ID == "" {
		fmt.Fprintln(stderr, "policy eval: --route needs input.route.id and --org needs input.org.id (the layer applies to them)")
		return 1
	}
	src := policy.Sources{Routes: map[string][]policy.Module{}, Orgs: map[string][]policy.Module{}}
	load := func(path string) []policy.Module {
		if path == "" || err != nil {
			return nil
		}
		var m []policy.Module
		m, err = policy.LoadModules(path)
		return m
	}
	src.Platform = load(*platform)
	if mods := load(*route); mods != nil {
		src.Routes[in.Route.ID] = mods
	}
	if mods := load(*org); mods != nil {
		src.Orgs[in.Org.ID] = mods
	}
	if *data != "" && err == nil {
		var b []byte
		if b, err = os.ReadFile(*data); err == nil {
			err = json.Unmarshal(b, &src.Data)
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "policy eval:", err)
		return 1
	}
	set, err := policy.Compile(ctx, src)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	r := policy.NewRego(time.Second, nil)
	r.Swap(set)
	start := time.Now()
	d := r.Decide(ctx, &in)
	out := map[string]any{"allow": d.Allow, "reasons": d.Reasons, "headers": d.Headers, "policy_version": d.Version,
		"latency_us": time.Since(start).Microseconds()}
	// What the proxy's decision cache may reuse this decision for (see
	// docs/policies.md, Performance).
	rd := r.RequestReads(&in)
	reuse := map[string]any{"keyed_fields": orEmpty(rd.Fields), "tested_fields": orEmpty(rd.Tested), "path_tests": orEmpty(d.PathTests.Describe()),
		"never": rd.Never || !d.PathTests.Reusable(), "whole_request": rd.All}
	out["decision_reuse"] = reuse
	if d.Err != nil {
		out["error"] = d.Err.Error()
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	switch {
	case d.Err != nil:
		return 1 // the policy failed (which the proxy treats as a deny)
	case !d.Allow:
		return 3
	}
	return 0
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Input prints the input document the proxy would build for a user of
// the config (an org member declared in it) making a request.
func Input(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policy input", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "gatehouse config file")
	email := fs.String("user", "", "email of a user declared in the config")
	orgSlug := fs.String("org", "", "org slug (default: the user's only org)")
	method := fs.String("method", "GET", "request method")
	rawURL := fs.String("url", "", "request URL, e.g. https://app.example.com/admin?x=1")
	client := fs.String("client", "203.0.113.10", "client address")
	var headers headerFlags
	fs.Var(&headers, "header", "request header \"Name: value\" (repeatable)")
	mfa := fs.Bool("mfa", false, "the sign-in used MFA")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || *email == "" || *rawURL == "" {
		fmt.Fprintln(stderr, "usage: gatehouse policy input --config FILE --user EMAIL --url URL [--org SLUG] [--method M] [--header 'K: V'] [--client ADDR] [--mfa]")
		return 2
	}
	in, err := buildInput(*cfgPath, *email, *orgSlug, *method, *rawURL, *client, headers, *mfa)
	if err != nil {
		fmt.Fprintln(stderr, "policy input:", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(in)
	return 0
}

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

func buildInput(cfgPath, email, orgSlug, method, rawURL, client string, headers []string, mfa bool) (*policy.Input, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want an absolute URL", rawURL)
	}
	r, err := http.NewRequest(method, rawURL, nil)
	if err != nil {
		return nil, err
	}
	for _, h := range headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return nil, fmt.Errorf("--header %q: want \"Name: value\"", h)
		}
		r.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	host := request.Host(r)
	path, _, err := proxy.CanonicalPath(u.EscapedPath())
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	router, err := proxy.NewRouter(cfg.Routes)
	if err != nil {
		return nil, err
	}
	rt := router.Match(host, proxy.StripParams(path))
	if rt == nil {
		return nil, fmt.Errorf("no route serves %s%s", host, path)
	}
	// Orgs get stable placeholder IDs offline ("org_<slug>"); the running
	// deployment's IDs are in its store.
	orgs := map[string]*store.Org{}
	for _, co := range cfg.Orgs {
		orgs["org_"+co.Slug] = &store.Org{ID: "org_" + co.Slug, Slug: co.Slug, Name: co.Name, EmailDomains: co.EmailDomains,
			LoginDomain: co.LoginDomain, Attributes: co.Attributes}
	}
	for _, co := range cfg.Orgs {
		if co.Parent != "" {
			orgs["org_"+co.Slug].ParentID = "org_" + co.Parent
		}
	}
	var member *config.User
	var memberOrg string
	for _, co := range cfg.Orgs {
		if orgSlug != "" && co.Slug != orgSlug {
			continue
		}
		for i := range co.Users {
			if strings.EqualFold(co.Users[i].Email, email) {
				if member != nil {
					return nil, fmt.Errorf("%s is in several orgs: choose one with --org", email)
				}
				member, memberOrg = &co.Users[i], co.Slug
			}
		}
	}
	if member == nil {
		return nil, errors.New("no user " + email + " in the config" + map[bool]string{true: " in org " + orgSlug, false: ""}[orgSlug != ""])
	}
	now := time.Now()
	id := &session.Identity{
		SessionID: "offline", UserID: "usr_offline", Email: strings.ToLower(member.Email), Name: member.Name,
		OrgID: "org_" + memberOrg, OrgSlug: memberOrg, Roles: member.Roles, Groups: member.Groups,
		Connection: "password", AuthTime: now, ExpiresAt: now.Add(cfg.Session.Lifetime),
	}
	in := proxy.PolicyInput(r, host, path, client, rt, id, func(id string) (*store.Org, bool) {
		o, ok := orgs[id]
		return o, ok
	}, now)
	in.User.MFA = mfa
	in.Normalize()
	return in, nil
}

// CheckConfig compiles every policy file a config names, as `serve` would
// at start, so that `config validate` catches a broken policy in CI.
func CheckConfig(ctx context.Context, cfg *config.Config) error {
	src := policy.Sources{Routes: map[string][]policy.Module{}, Orgs: map[string][]policy.Module{}, OrgParent: map[string]string{}}
	var errs []error
	load := func(what, path string) []policy.Module {
		mods, err := policy.LoadModules(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
		return mods
	}
	if cfg.Policy.Platform != "" {
		src.Platform = load("policy.platform", cfg.Policy.Platform)
	}
	for i, r := range cfg.Routes {
		if r.Policy != "" {
			src.Routes[r.ID] = load(fmt.Sprintf("routes[%d].policy", i), r.Policy)
		}
	}
	for i, o := range cfg.Orgs {
		if o.Policy != "" {
			src.Orgs["org_"+o.Slug] = load(fmt.Sprintf("orgs[%d].policy", i), o.Policy)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	_, err := policy.Compile(ctx, src)
	return err
}
