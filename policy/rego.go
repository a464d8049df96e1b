package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/gatehouse/gatehouse/internal/orgtree"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Package is the Rego package of request policies; TokenPackage that of
// token policies (the OpenID Provider asks it before issuing any token).
// A layer's files may hold either or both.
const (
	Package      = "gatehouse.authz"
	TokenPackage = "gatehouse.token"
)

// query is a compiled query of one layer. Layers are evaluated with
// OPA's topdown evaluator directly: the rego package's per-evaluation
// set-up (metrics, result conversion to Go values) cost more than a
// small policy's evaluation.
type query struct {
	body ast.Body
	qc   ast.QueryCompiler
}

// Each layer answers two queries: allow (with headers, when the policy
// has a headers rule, in the same evaluation) on every request, and
// reasons only after a deny. Evaluating the package as a whole would
// compute every helper rule in it on every request.
const (
	queryAllow            = "x = data.gatehouse.authz.allow"
	queryAllowWithHeaders = "x = data.gatehouse.authz.allow; h = {k: v | x == true; some k, v in data.gatehouse.authz.headers}"
	queryReasons          = "x = data.gatehouse.authz.reasons"
	queryMFAMaxAge        = "x = data.gatehouse.authz.mfa_max_age"
	queryTokenAllow       = "x = data.gatehouse.token.allow"
	queryTokenReasons     = "x = data.gatehouse.token.reasons"
)

// Module is one Rego source file.
type Module struct {
	Name string // file name, for error messages
	Text string
}

// Sources are the policy layers. Routes and Orgs are keyed by route ID
// and org ID; an org without its own policy uses its parent's (OrgParent).
type Sources struct {
	Platform []Module
	Routes   map[string][]Module
	Orgs     map[string][]Module
	// Clients are token policies of OIDC clients, by client ID.
	Clients map[string][]Module
	// OrgParent maps org ID to parent org ID, for inheritance.
	OrgParent map[string]string
	// Data is exposed to every policy as `data` (e.g. data.gatehouse.orgs).
	Data map[string]any
}

// Set is a compiled, immutable policy set.
type Set struct {
	platform  *layer
	routes    map[string]*layer
	orgs      map[string]*layer
	clients   map[string]*layer
	orgParent map[string]string
	store     storage.Store
	// Version is a digest of every module and the data.
	Version string
}

type layer struct {
	name     string
	compiler *ast.Compiler
	// allow is nil for a layer without request rules (token rules only):
	// it does not decide requests.
	allow   *query
	reasons *query // nil: the policy has no reasons rule
	// mfaMaxAge: the policy may ask for a second factor this recent
	// (step-up); nil without an mfa_max_age rule.
	mfaMaxAge *query
	// tokenAllow (and tokenReasons) are its token rules, if any.
	tokenAllow, tokenReasons *query
	// broken, if set, is why this layer never compiled: it denies.
	broken error
	// reads is what its modules read of input.request (analyzeReads).
	reads Reads
	// sites are its rewritten path tests (analyzePathTests), by index.
	sites []*pathSite
}

// Compile prepares every layer. Any error fails the whole set, so a
// broken file never replaces a working set.
func Compile(ctx context.Context, src Sources) (*Set, error) {
	h := sha256.New()
	s := &Set{routes: map[string]*layer{}, orgs: map[string]*layer{}, clients: map[string]*layer{}, orgParent: src.OrgParent}
	data := src.Data
	if data == nil {
		data = map[string]any{}
	}
	store := inmem.NewFromObject(data)
	s.store = store
	// Canonical JSON (sorted keys) and the sorted parent map: the version
	// changes exactly when what decides changes.
	dj, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("policy: data: %w", err)
	}
	fmt.Fprintf(h, "data:%s\n", dj)
	parents := make([]string, 0, len(src.OrgParent))
	for k, v := range src.OrgParent {
		parents = append(parents, k+">"+v)
	}
	sort.Strings(parents)
	fmt.Fprintf(h, "parents:%s\n", strings.Join(parents, ","))
	if len(src.Platform) > 0 {
		if s.platform, err = prepare(ctx, "platform", src.Platform, store, h); err != nil {
			return nil, err
		}
	}
	for _, id := range sortedIDs(src.Routes) {
		if s.routes[id], err = prepare(ctx, "route "+id, src.Routes[id], store, h); err != nil {
			return nil, err
		}
	}
	for _, id := range sortedIDs(src.Orgs) {
		if s.orgs[id], err = prepare(ctx, "org "+id, src.Orgs[id], store, h); err != nil {
			return nil, err
		}
	}
	for _, id := range sortedIDs(src.Clients) {
		if s.clients[id], err = prepare(ctx, "client "+id, src.Clients[id], store, h); err != nil {
			return nil, err
		}
		if s.clients[id].tokenAllow == nil {
			return nil, fmt.Errorf("policy: client %s: no package %s with an allow rule (a client's policy decides its tokens)", id, TokenPackage)
		}
	}
	s.Version = hex.EncodeToString(h.Sum(nil))[:16]
	return s, nil
}

// CompileIsolated is Compile for running deployments, where org policies
// come from the store and one org's broken policy must not hold back
// everyone else's updates: an org layer that fails to compile keeps its
// version from prev, or, with none, denies that org's requests with the
// compile error. It returns the set and each org layer's error. Platform
// and route layers (the operator's files) still fail the whole set.
func CompileIsolated(ctx context.Context, src Sources, prev *Set) (*Set, map[string]error, error) {
	good := src
	good.Orgs = map[string][]Module{}
	broken := map[string]error{}
	for id, mods := range src.Orgs {
		// Each org layer is checked alone first (cheap next to a request's
		// worth of evaluations, and only on change).
		if _, err := Compile(ctx, Sources{Orgs: map[string][]Module{id: mods}, Data: src.Data}); err != nil {
			broken[id] = err
			continue
		}
		good.Orgs[id] = mods
	}
	s, err := Compile(ctx, good)
	if err != nil {
		return nil, nil, err
	}
	if len(broken) == 0 {
		return s, nil, nil
	}
	h := sha256.New()
	h.Write([]byte(s.Version))
	for _, id := range sortedIDs(src.Orgs) {
		err, ok := broken[id]
		if !ok {
			continue
		}
		if prev != nil && prev.orgs[id] != nil {
			s.orgs[id] = prev.orgs[id] // last good version, on its own data
			fmt.Fprintf(h, "kept:%s:%s\n", id, prev.Version)
		} else {
			s.orgs[id] = &layer{name: "org " + id, broken: err, reads: Reads{Never: true}}
			fmt.Fprintf(h, "broken:%s\n", id)
		}
	}
	s.Version = hex.EncodeToString(h.Sum(nil))[:16]
	return s, broken, nil
}

func prepare(ctx context.Context, name string, mods []Module, store storage.Store, h io.Writer) (*layer, error) {
	var parsed []*ast.Module
	for _, m := range mods {
		pm, err := ast.ParseModuleWithOpts(m.Name, m.Text, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("policy: %s: %w", name, err)
		}
		if got := strings.TrimPrefix(pm.Package.Path.String(), "data."); got != Package && got != TokenPackage {
			return nil, fmt.Errorf("policy: %s: %s: package is %s, want package %s (or %s for tokens)", name, m.Name, got, Package, TokenPackage)
		}
		parsed = append(parsed, pm)
		fmt.Fprintf(h, "%s\n%s\n%s\n", name, m.Name, m.Text)
	}
	return compileLayer(name, ast.NewCompiler().WithCapabilities(capabilities), parsed)
}

// compileLayer compiles one layer's modules with c and its queries.
func compileLayer(name string, c *ast.Compiler, parsed []*ast.Module) (*layer, error) {
	// The rules each package defines.
	rules := map[string]map[string]bool{Package: nil, TokenPackage: nil}
	compiled := make(map[string]*ast.Module, len(parsed))
	for i, pm := range parsed {
		pkg := strings.TrimPrefix(pm.Package.Path.String(), "data.")
		if rules[pkg] == nil {
			rules[pkg] = map[string]bool{}
		}
		for _, r := range pm.Rules {
			rules[pkg][r.Head.Name.String()] = true
			if len(r.Head.Reference) > 0 {
				rules[pkg][r.Head.Reference[0].String()] = true
			}
		}
		// Keys only need to be unique; two files may share a base name.
		compiled[fmt.Sprintf("%d/%s", i, pm.Package.Location.File)] = pm
	}
	authz, tokens := rules[Package], rules[TokenPackage]
	if authz != nil && !authz["allow"] || authz == nil && tokens == nil {
		return nil, fmt.Errorf("policy: %s: no allow rule (every policy needs `default allow := false` and an allow rule)", name)
	}
	if tokens != nil && !tokens["allow"] {
		return nil, fmt.Errorf("policy: %s: package %s has no allow rule (it needs `default allow := false` and an allow rule)", name, TokenPackage)
	}
	// Path tests are found and rewritten once the modules are checked,
	// before OPA indexes rules: an index on a path field would decide
	// without the test being recorded.
	var sites []*pathSite
	pathTested := false
	c = c.WithStageAfter(string(ast.StageCheckDeprecatedBuiltins), ast.CompilerStageDefinition{
		Name: "GatehousePathTests", MetricName: "compile_stage_gatehouse_path_tests",
		Stage: func(c *ast.Compiler) *ast.Error {
			sites, pathTested = analyzePathTests(c)
			return nil
		},
	})
	if c.Compile(compiled); c.Failed() {
		return nil, fmt.Errorf("policy: %s: %w", name, c.Errors)
	}
	prep := func(q string) (query, error) {
		qc := c.QueryCompiler()
		body, err := qc.Compile(ast.MustParseBody(q))
		if err != nil {
			return query{}, fmt.Errorf("policy: %s: %w", name, err)
		}
		return query{body: body, qc: qc}, nil
	}
	l := &layer{name: name, compiler: c, reads: analyzeReads(c), sites: sites}
	if pathTested {
		l.reads = l.reads.tested(pathFields)
	}
	optional := func(q string) (*query, error) {
		pq, err := prep(q)
		return &pq, err
	}
	var err error
	if authz != nil {
		q := queryAllow
		if authz["headers"] {
			q = queryAllowWithHeaders
		}
		if l.allow, err = optional(q); err != nil {
			return nil, err
		}
		if authz["reasons"] {
			if l.reasons, err = optional(queryReasons); err != nil {
				return nil, err
			}
		}
		if authz["mfa_max_age"] {
			if l.mfaMaxAge, err = optional(queryMFAMaxAge); err != nil {
				return nil, err
			}
		}
	}
	if tokens != nil {
		if l.tokenAllow, err = optional(queryTokenAllow); err != nil {
			return nil, err
		}
		if tokens["reasons"] {
			if l.tokenReasons, err = optional(queryTokenReasons); err != nil {
				return nil, err
			}
		}
	}
	return l, nil
}

// capabilities are OPA's built-ins minus those that reach the network or
// the process: a policy decides over its input and data, nothing else.
var capabilities = func() *ast.Capabilities {
	c := ast.CapabilitiesForThisVersion()
	kept := c.Builtins[:0]
	for _, b := range c.Builtins {
		switch {
		case b.Name == "http.send", b.Name == "opa.runtime", strings.HasPrefix(b.Name, "net.lookup"):
			continue
		}
		kept = append(kept, b)
	}
	c.Builtins = kept
	return c
}()

// Empty reports whether the set has no layer at all.
func (s *Set) Empty() bool {
	return s == nil || s.platform == nil && len(s.routes) == 0 && len(s.orgs) == 0 && len(s.clients) == 0
}

// layers returns the layers that apply to in, in order.
// maxOrgDepth bounds parent chains (loops included).
const maxOrgDepth = 16

func (s *Set) layers(in *Input) ([]*layer, error) {
	var out []*layer
	if s.platform != nil {
		out = append(out, s.platform)
	}
	if l := s.routes[in.Route.ID]; l != nil {
		out = append(out, l)
	}
	// The org's own policy, or its nearest ancestor's. With the org tree
	// known (the server always passes it), an org or parent the set does
	// not know, or a chain too deep, is an error: skipping would drop a
	// layer that may apply.
	if in.Org.ID == "" {
		return out, nil
	}
	if s.orgParent == nil {
		// No org tree (tests, offline evaluation): the org's own layer.
		if l := s.orgs[in.Org.ID]; l != nil {
			out = append(out, l)
		}
		return out, nil
	}
	id, err := orgtree.Nearest(in.Org.ID, maxOrgDepth-1, func(id string) (string, bool) {
		p, known := s.orgParent[id]
		// An org with a layer of its own ends the walk: its parent is
		// never needed.
		return p, known || s.orgs[id] != nil
	}, func(id string) bool { return s.orgs[id] != nil })
	var missing *orgtree.MissingError
	switch {
	case err == nil:
		out = append(out, s.orgs[id])
	case errors.Is(err, orgtree.ErrNoParent):
		// No org up the chain has a policy of its own.
	case errors.As(err, &missing):
		return nil, fmt.Errorf("policy: org %s is not known to policy version %s yet", missing.ID, s.Version)
	default:
		return nil, fmt.Errorf("policy: org %s: parent chain deeper than %d", in.Org.ID, maxOrgDepth)
	}
	return out, nil
}

// Rego is the OPA engine. Its Set is swapped atomically on reload; a
// request in flight finishes on the set it started with.
type Rego struct {
	set     atomic.Pointer[Set]
	timeout time.Duration
	log     *DecisionLog
}

// NewRego returns an engine with no policies loaded (it allows, leaving
// decisions to the engines chained before it) until Swap.
func NewRego(timeout time.Duration, log *DecisionLog) *Rego {
	if timeout <= 0 {
		timeout = 100 * time.Millisecond
	}
	return &Rego{timeout: timeout, log: log}
}

// Swap installs a compiled set.
func (r *Rego) Swap(s *Set) { r.set.Store(s) }

// Version is the version of the set in force ("" with none).
func (r *Rego) Version() string {
	if s := r.set.Load(); s != nil {
		return s.Version
	}
	return ""
}

// Trivial reports whether no policy is loaded (Decide then allows).
func (r *Rego) Trivial() bool { return r.set.Load().Empty() }

// Current is the set in force (nil before the first Swap).
func (r *Rego) Current() *Set { return r.set.Load() }

// Decide evaluates every layer that applies; the first that does not
// allow decides. Errors, panics, undefined results and timeouts deny.
func (r *Rego) Decide(ctx context.Context, in *Input) Decision {
	start := time.Now()
	s := r.set.Load()
	if s.Empty() {
		return Decision{Allow: true}
	}
	d := Decision{Allow: true, Version: s.Version}
	// One cancel flag, one timer and one read transaction for every query
	// of this decision; a context with a deadline would cost a timer, a
	// goroutine hand-off and allocations per query.
	stop := topdown.NewCancel()
	timer := time.AfterFunc(r.timeout, stop.Cancel)
	defer timer.Stop()
	txn, err := s.store.NewTransaction(ctx)
	if err != nil {
		d = Decision{Version: s.Version, Reasons: []string{"access could not be decided"}, Err: err}
		r.log.Record(ctx, in, &d, time.Since(start))
		return d
	}
	defer s.store.Abort(ctx, txn)
	env := evalEnv{store: s.store, txn: txn, cancel: stop, input: ast.NewTerm(in.value()), at: in.Request.At, timeout: r.timeout}
	// The path tests of this decision, recorded as the layers run.
	rec := &recorder{}
	ctx = context.WithValue(ctx, recorderKey{}, rec)
	layers, err := s.layers(in)
	if err != nil {
		d = Decision{Version: s.Version, Reasons: []string{"access could not be decided"}, Err: err}
		r.log.Error(ctx, "org", err)
		r.log.Record(ctx, in, &d, time.Since(start))
		return d
	}
	for _, l := range layers {
		rec.layer = l
		res, err := safeEval(ctx, l, &env)
		if err != nil {
			d = Decision{Version: s.Version, Reasons: []string{"access could not be decided"}, Err: err}
			r.log.Error(ctx, l.name, err)
			break
		}
		var conflict error
		for k, v := range res.Headers {
			if d.Headers == nil {
				d.Headers = map[string]string{}
			}
			if old, ok := d.Headers[k]; ok && old != v {
				// A later layer may not change what an earlier one set.
				conflict = fmt.Errorf("policy: %s: header %s is already set to another value by an earlier layer", l.name, k)
			}
			d.Headers[k] = v
		}
		if conflict != nil {
			d = Decision{Version: s.Version, Reasons: []string{"access could not be decided"}, Err: conflict}
			r.log.Error(ctx, l.name, conflict)
			break
		}
		if res.MFAMaxAge > 0 && (d.MFAMaxAge == 0 || res.MFAMaxAge < d.MFAMaxAge) {
			d.MFAMaxAge = res.MFAMaxAge // the strictest layer's
		}
		if !res.Allow {
			d.Allow, d.Headers, d.MFAMaxAge = false, nil, 0
			d.Reasons = res.Reasons
			if len(d.Reasons) == 0 {
				d.Reasons = []string{"denied by the " + l.name + " policy"}
			}
			break
		}
	}
	d.PathTests = PathTests{tests: rec.tests, unusable: rec.overflow || d.Err != nil}
	r.log.Record(ctx, in, &d, time.Since(start))
	return d
}

type result struct {
	Allow   bool
	Reasons []string
	Headers map[string]string
	// MFAMaxAge: the layer asks for a second factor at most this old.
	MFAMaxAge time.Duration
}

// evalEnv is what every query of one decision shares.
type evalEnv struct {
	store   storage.Store
	txn     storage.Transaction
	cancel  topdown.Cancel
	input   *ast.Term
	at      time.Time
	timeout time.Duration
}

// noMetrics: topdown would otherwise allocate a metrics set per query.
var noMetrics = metrics.NoOp()

// run evaluates q and returns the first result's bindings (nil when
// undefined).
func (l *layer) run(ctx context.Context, q query, env *evalEnv) (topdown.QueryResult, error) {
	tq := topdown.NewQuery(q.body).
		WithQueryCompiler(q.qc).
		WithCompiler(l.compiler).
		WithStore(env.store).
		WithTransaction(env.txn).
		WithInput(env.input).
		WithCancel(env.cancel).
		WithStrictBuiltinErrors(true).
		WithBuiltins(testBuiltins).
		WithMetrics(noMetrics)
	if !env.at.IsZero() {
		// time.now_ns() is the request's time, as input.request.time_ns.
		tq = tq.WithTime(env.at)
	}
	var first topdown.QueryResult
	err := tq.Iter(ctx, func(qr topdown.QueryResult) error {
		if first == nil {
			first = qr
		}
		return nil
	})
	var cerr *topdown.Error
	if errors.As(err, &cerr) && cerr.Code == topdown.CancelErr {
		return nil, fmt.Errorf("evaluation took longer than %v: %w", env.timeout, context.DeadlineExceeded)
	}
	return first, err
}

// safeEval turns a panic inside OPA into an error, like Pomerium does.
func safeEval(ctx context.Context, l *layer, env *evalEnv) (res result, err error) {
	if l.broken != nil {
		return res, fmt.Errorf("policy: %s does not compile: %w", l.name, l.broken)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("policy: %s: panic in evaluation: %v", l.name, p)
		}
	}()
	if l.allow == nil { // token rules only: not a request policy
		res.Allow = true
		return res, nil
	}
	qr, err := l.run(ctx, *l.allow, env)
	if err != nil {
		return res, fmt.Errorf("policy: %s: %w", l.name, err)
	}
	var hv ast.Value
	if qr != nil {
		// Anything but true is a deny.
		if b, ok := qr[ast.Var("x")].Value.(ast.Boolean); ok && bool(b) {
			res.Allow = true
		}
		if t := qr[ast.Var("h")]; t != nil {
			hv = t.Value
		}
	}
	if res.Allow && l.mfaMaxAge != nil {
		qr, err := l.run(ctx, *l.mfaMaxAge, env)
		if err != nil {
			return res, fmt.Errorf("policy: %s: mfa_max_age: %w", l.name, err)
		}
		if qr != nil {
			// Seconds, a whole number from a minute (a step-up holds at
			// least that long, or the person would be asked again and
			// again) to a day; anything else fails the decision closed.
			n, ok := qr[ast.Var("x")].Value.(ast.Number)
			secs, isInt := n.Int64()
			if !ok || !isInt || secs < 60 || secs > 86400 {
				return res, fmt.Errorf("policy: %s: mfa_max_age must be a whole number of seconds from 60 to 86400, got %v", l.name, qr[ast.Var("x")])
			}
			res.MFAMaxAge = time.Duration(secs) * time.Second
		}
	}
	if !res.Allow {
		if l.reasons != nil {
			qr, err := l.run(ctx, *l.reasons, env)
			if err != nil {
				return res, fmt.Errorf("policy: %s: reasons: %w", l.name, err)
			}
			if qr != nil {
				res.Reasons = stringList(qr[ast.Var("x")].Value)
			}
		}
		return res, nil
	}
	if hv == nil {
		return res, nil
	}
	hs, ok := hv.(ast.Object)
	if !ok {
		return result{}, fmt.Errorf("policy: %s: headers is not an object", l.name)
	}
	err = hs.Iter(func(kt, vt *ast.Term) error {
		k, kok := kt.Value.(ast.String)
		sv, vok := vt.Value.(ast.String)
		if !kok || !vok || !allowedHeader(string(k)) || !httpguts.ValidHeaderFieldValue(string(sv)) {
			return fmt.Errorf("policy: %s: header %v may not be set by a policy (names must be X-Gatehouse-*, not an identity header; values plain text)", l.name, kt)
		}
		if res.Headers == nil {
			res.Headers = map[string]string{}
		}
		ck := http.CanonicalHeaderKey(string(k))
		if _, dup := res.Headers[ck]; dup {
			return fmt.Errorf("policy: %s: header %s set twice", l.name, ck)
		}
		res.Headers[ck] = string(sv)
		return nil
	})
	if err != nil {
		return result{}, err
	}
	return res, nil
}

// stringList reads `reasons`, a set or an array of strings (or one string).
func stringList(v ast.Value) []string {
	var out []string
	add := func(t *ast.Term) {
		if s, ok := t.Value.(ast.String); ok {
			out = append(out, string(s))
		}
	}
	switch t := v.(type) {
	case ast.Set:
		t.Foreach(add)
	case *ast.Array:
		t.Foreach(add)
	case ast.String:
		out = append(out, string(t))
	}
	sort.Strings(out)
	return out
}

// allowedHeader: policies may add X-Gatehouse-* headers (which Gatehouse
// strips from every client request, so the upstream knows they came from a
// policy), never the identity headers Gatehouse signs.
func allowedHeader(name string) bool {
	if len(name) <= len("X-Gatehouse-") || len(name) > 64 || !strings.EqualFold(name[:len("X-Gatehouse-")], "X-Gatehouse-") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	switch strings.ToLower(name) {
	case "x-gatehouse-jwt-assertion", "x-gatehouse-user", "x-gatehouse-email", "x-gatehouse-org",
		"x-gatehouse-org-slug", "x-gatehouse-roles", "host", "connection", "cookie", "authorization",
		"content-length", "transfer-encoding", "upgrade", "te", "trailer", "keep-alive", "proxy-authorization",
		"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded":
		return false
	}
	return true
}

func sortedIDs(m map[string][]Module) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
