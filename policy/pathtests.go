package policy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/builtins"
	"github.com/open-policy-agent/opa/v1/types"
)

// Path tests: a decision reused across request paths.
//
// An API's paths carry ids (/api/items/42), so nearly every request has a
// path no decision was made for, yet a policy such as roles_by_path only
// asks a few questions of it: does it start with "/admin/"? with
// "/billing/"? Two paths with the same answers get the same decision.
//
// When a layer is compiled, analyzePathTests follows the values of
// input.request.path and input.request.match_path through its rules:
// into locals, rule values and function arguments, through string
// builtins that make another string of them (concat with constants,
// lower, trim_suffix, ...; a "derivation"), up to the builtins that ask
// something of them (startswith, ==, glob.match, regex.match, ...; a
// "test"). Each test's call is rewritten to a wrapper that calls the same
// builtin and, during a decision, records its operands and result. A
// decision made so is reused for another path only if every recorded test
// gives the same result on that path's value (derived the same way): the
// evaluation can only have gone differently at one of them. If a path
// value reaches anything else (an index, a rule's key, a `with`, an
// unknown builtin, a comparison by unification, the whole input), the
// analysis gives up and the fields are keyed exactly, as before.

// pathFields are the request fields followed.
var pathFields = []string{"match_path", "path"}

// derivations are builtins that make a string of a string and constants:
// their result stays a path value (and is re-derived on replay).
var derivations = map[string]bool{
	"concat": true, "sprintf": true, "lower": true, "upper": true, "trim": true, "trim_left": true,
	"trim_right": true, "trim_prefix": true, "trim_suffix": true, "trim_space": true, "replace": true,
}

// testOps are builtins whose result on a path value is recorded. Each is
// deterministic and reads only its operands.
var testOps = map[string]bool{
	"startswith": true, "endswith": true, "contains": true, "equal": true, "neq": true,
	"lt": true, "gt": true, "lte": true, "gte": true, "count": true, "indexof": true,
	"glob.match": true, "regex.match": true, "strings.any_prefix_match": true,
	"strings.any_suffix_match": true, "internal.member_2": true,
}

// step is one derivation: builtin name called with args, the value at
// hole (inside the array at args[hole] when inArray >= 0).
type step struct {
	name    string
	args    []*ast.Term
	hole    int
	inArray int
	// native is the step in Go, where it is exactly OPA's (strings.Join,
	// ToLower, ...); nil: replayed through the builtin.
	native func(string) string
}

// withNative sets s.native where the builtin is a plain Go string
// function of constants.
func (s step) withNative() step {
	str := func(i int) (string, bool) {
		v, ok := s.args[i].Value.(ast.String)
		return string(v), ok
	}
	switch {
	case s.name == "lower" && s.hole == 0:
		s.native = strings.ToLower
	case s.name == "upper" && s.hole == 0:
		s.native = strings.ToUpper
	case s.name == "trim_prefix" && s.hole == 0:
		if p, ok := str(1); ok {
			s.native = func(v string) string { return strings.TrimPrefix(v, p) }
		}
	case s.name == "trim_suffix" && s.hole == 0:
		if p, ok := str(1); ok {
			s.native = func(v string) string { return strings.TrimSuffix(v, p) }
		}
	case s.name == "concat" && s.hole == 1 && s.inArray >= 0:
		sep, ok := str(0)
		arr := s.args[1].Value.(*ast.Array)
		parts := make([]string, arr.Len())
		for j := range parts {
			if j == s.inArray {
				continue
			}
			e, isStr := arr.Elem(j).Value.(ast.String)
			if !isStr {
				return s
			}
			parts[j] = string(e)
		}
		if ok {
			pre := strings.Join(parts[:s.inArray], sep)
			post := strings.Join(parts[s.inArray+1:], sep)
			if s.inArray > 0 {
				pre += sep
			}
			if s.inArray < len(parts)-1 {
				post = sep + post
			}
			s.native = func(v string) string { return pre + v + post }
		}
	}
	return s
}

// taint is how a value is made of a request field: field, then steps.
type taint struct {
	field string
	steps []step
	key   string // canonical, for comparing taints
}

func (t taint) then(s step) taint {
	out := taint{field: t.field, steps: append(t.steps[:len(t.steps):len(t.steps)], s)}
	var b strings.Builder
	b.WriteString(t.key)
	fmt.Fprintf(&b, "|%s/%d/%d", s.name, s.hole, s.inArray)
	for _, a := range s.args {
		if a != nil {
			b.WriteString("," + a.String())
		}
	}
	out.key = b.String()
	return out
}

// pathSite is a rewritten test: builtin op, with the path value (derived
// by taint) at operand pos.
type pathSite struct {
	op    string
	pos   int
	taint taint
}

// errUnsupported: a path value goes somewhere the analysis does not follow.
var errUnsupported = errors.New("path value used in a way not followed")

// pathAnalysis is the state of one layer's analysis.
type pathAnalysis struct {
	c      *ast.Compiler
	rules  map[string]taint         // complete rules whose value is a path value
	params map[string]map[int]taint // functions' parameters that receive one
	// constant: complete rules with a definition whose value is not a
	// path value (OPA compares definitions' values: untracked)
	constant map[string]bool
	collect  bool // final pass: record sites
	sites    []*pathSite
	exprs    []*ast.Expr // the expressions of sites, same order
	bodies   []*ast.Body // the bodies holding them
	cur      *ast.Body   // the body being walked
}

// analyzePathTests finds the path tests of c's modules and rewrites them,
// returning the sites (by index) and whether the path fields can be
// reused by tests; false leaves c as it was.
func analyzePathTests(c *ast.Compiler) ([]*pathSite, bool) {
	a := &pathAnalysis{c: c, rules: map[string]taint{}, params: map[string]map[int]taint{}, constant: map[string]bool{}}
	for _, m := range c.Modules {
		if usesWith(m) {
			return nil, false
		}
	}
	// Rule values and parameters found tainted feed other rules: walk
	// until nothing new is found.
	stable := false
	for range 32 {
		before := a.fingerprint()
		if err := a.pass(); err != nil {
			return nil, false
		}
		if a.fingerprint() == before {
			stable = true
			break
		}
	}
	for k := range a.rules {
		if a.constant[k] {
			return nil, false
		}
	}
	if !stable || a.queriesTouchTainted() {
		return nil, false
	}
	a.collect = true
	if err := a.pass(); err != nil {
		return nil, false
	}
	// Builtins take values: a ref operand (left by `x = ref`, which
	// evaluates it) is bound to a new local just before.
	before := map[*ast.Expr][]*ast.Expr{}
	for i, e := range a.exprs {
		terms := e.Terms.([]*ast.Term)
		ops := slices.Clone(terms[1:])
		for j, op := range ops {
			if _, isRef := op.Value.(ast.Ref); isRef {
				v := ast.VarTerm(fmt.Sprintf("__gatehouse_path%d_%d__", i, j))
				bind := ast.Equality.Expr(v, op)
				bind.Location = e.Location
				before[e] = append(before[e], bind)
				ops[j] = v
			}
		}
		n := ast.BuiltinMap[a.sites[i].op].Decl.Arity()
		nt := make([]*ast.Term, 0, len(terms)+2)
		nt = append(nt, ast.NewTerm(testBuiltinRef(n)), ast.StringTerm(a.sites[i].op), ast.IntNumberTerm(i))
		nt = append(nt, ops...)
		e.Terms = nt
	}
	done := map[*ast.Body]bool{}
	for _, b := range a.bodies {
		if done[b] {
			continue
		}
		done[b] = true
		var out ast.Body
		for _, e := range *b {
			out = append(out, before[e]...)
			out = append(out, e)
		}
		for i, e := range out {
			e.Index = i
		}
		*b = out
	}
	return a.sites, true
}

// fingerprint is what is known, to see when a pass finds nothing new.
func (a *pathAnalysis) fingerprint() string {
	var parts []string
	for k, t := range a.rules {
		parts = append(parts, k+"="+t.key)
	}
	for k, m := range a.params {
		for i, t := range m {
			parts = append(parts, fmt.Sprintf("%s#%d=%s", k, i, t.key))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, ";")
}

// usesWith: a `with` replaces input or functions for part of an
// evaluation; its effect on path values is not followed.
func usesWith(m *ast.Module) bool {
	found := false
	ast.WalkExprs(m, func(e *ast.Expr) bool {
		if len(e.With) > 0 {
			found = true
		}
		return found
	})
	return found
}

// ruleRef is the full path of r's document (data.<package>.<rule ref>).
func ruleRef(r *ast.Rule) ast.Ref {
	ref := r.Ref()
	if ref[0].Equal(ast.DefaultRootDocument) {
		return ref // already in full, as some compiler stages leave it
	}
	out := r.Module.Package.Path.Copy()
	if v, ok := ref[0].Value.(ast.Var); ok {
		out = append(out, ast.StringTerm(string(v)))
	} else {
		out = append(out, ref[0])
	}
	return append(out, ref[1:]...)
}

// scope is what one body's walk knows: the path values bound to locals,
// and the locals bound so far.
type scope struct {
	env  map[ast.Var]taint
	seen map[ast.Var]bool
}

func (s scope) child() scope {
	c := scope{env: make(map[ast.Var]taint, len(s.env)), seen: make(map[ast.Var]bool, len(s.seen))}
	for k, v := range s.env {
		c.env[k] = v
	}
	for k, v := range s.seen {
		c.seen[k] = v
	}
	return c
}

func (s scope) markVars(x any) {
	ast.WalkVars(x, func(v ast.Var) bool {
		s.seen[v] = true
		return false
	})
}

// pass walks every rule once with what is known.
func (a *pathAnalysis) pass() error {
	for _, m := range a.c.Modules {
		for _, r := range m.Rules {
			for rr := r; rr != nil; rr = rr.Else {
				if err := a.rule(rr); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (a *pathAnalysis) rule(r *ast.Rule) error {
	path := ruleRef(r)
	key := path.String()
	s := scope{env: map[ast.Var]taint{}, seen: map[ast.Var]bool{}}
	isFunc := len(r.Head.Args) > 0
	if isFunc {
		params := a.params[key]
		for i, arg := range r.Head.Args {
			if t, ok := params[i]; ok {
				v, isVar := arg.Value.(ast.Var)
				if !isVar || occurrences(r.Head.Args, v) != 1 {
					// A constant, or a variable also in another
					// parameter: compared by unification, untracked.
					return errUnsupported
				}
				s.env[v] = t
			}
			s.markVars(arg)
		}
	}
	if err := a.body(&r.Body, s); err != nil {
		return err
	}
	// The head: only a complete rule's value may be a path value.
	for _, t := range []*ast.Term{r.Head.Key} {
		if t != nil && a.mentions(t, s) {
			return errUnsupported
		}
	}
	for i, t := range r.Head.Reference {
		if i > 0 && a.mentions(t, s) {
			return errUnsupported
		}
	}
	if v := r.Head.Value; v != nil && a.mentions(v, s) {
		tv, ok := a.taintOf(v, s)
		if !ok || isFunc || r.Head.Key != nil || len(r.Head.Reference) > 1 || r.Head.RuleKind() != ast.SingleValue {
			return errUnsupported
		}
		if old, known := a.rules[key]; known && old.key != tv.key {
			return errUnsupported
		}
		a.rules[key] = tv
	} else if r.Head.Value != nil && !r.Default && !isFunc && r.Head.Key == nil {
		a.constant[key] = true
	}
	return nil
}

// occurrences counts v in args.
func occurrences(args ast.Args, v ast.Var) int {
	n := 0
	for _, a := range args {
		ast.WalkVars(a, func(w ast.Var) bool {
			if w == v {
				n++
			}
			return false
		})
	}
	return n
}

// body walks the expressions of b in order.
func (a *pathAnalysis) body(b *ast.Body, s scope) error {
	for _, e := range *b {
		a.cur = b
		if err := a.expr(e, s); err != nil {
			return err
		}
		s.markVars(e)
	}
	return nil
}

func (a *pathAnalysis) expr(e *ast.Expr, s scope) error {
	switch t := e.Terms.(type) {
	case *ast.Term:
		if err := a.comprehensions(t, s); err != nil {
			return err
		}
		if a.mentions(t, s) {
			return errUnsupported
		}
		return nil
	case []*ast.Term:
		return a.call(e, t, s)
	default: // some, every
		if a.mentionsAny(e, s) {
			return errUnsupported
		}
		return nil
	}
}

// comprehensions walks the bodies of the comprehensions in t, which see
// s; their heads may not hold a path value.
func (a *pathAnalysis) comprehensions(t *ast.Term, s scope) error {
	var err error
	ast.WalkTerms(t, func(x *ast.Term) bool {
		if err != nil {
			return true
		}
		var body *ast.Body
		var heads []*ast.Term
		switch c := x.Value.(type) {
		case *ast.ArrayComprehension:
			body, heads = &c.Body, []*ast.Term{c.Term}
		case *ast.SetComprehension:
			body, heads = &c.Body, []*ast.Term{c.Term}
		case *ast.ObjectComprehension:
			body, heads = &c.Body, []*ast.Term{c.Key, c.Value}
		default:
			return false
		}
		cs := s.child()
		outer := a.cur
		err = a.body(body, cs)
		a.cur = outer
		if err != nil {
			return true
		}
		for _, h := range heads {
			if a.mentions(h, cs) {
				err = errUnsupported
			}
		}
		return true // the body was walked here
	})
	return err
}

func (a *pathAnalysis) call(e *ast.Expr, terms []*ast.Term, s scope) error {
	for _, t := range terms[1:] {
		if err := a.comprehensions(t, s); err != nil {
			return err
		}
	}
	op := e.Operator()
	operands := terms[1:]
	tainted := -1
	for i, t := range operands {
		if a.mentions(t, s) {
			if tainted >= 0 {
				return errUnsupported // two path values in one call
			}
			tainted = i
		}
	}
	if tainted < 0 {
		return nil
	}
	if e.IsEquality() {
		// Binding a fresh local (x = <path value>), or comparing with a
		// value bound already (OPA turns most `==` into this): a test
		// like `equal`.
		other, val := operands[1-tainted], operands[tainted]
		tv, plain := a.taintOf(val, s)
		if len(operands) != 2 || !plain {
			return errUnsupported
		}
		if v, ok := other.Value.(ast.Var); ok && !s.seen[v] {
			if e.Negated {
				return errUnsupported
			}
			s.env[v] = tv
			return nil
		}
		if !bound(other, s) {
			return errUnsupported
		}
		a.site(e, "equal", tainted, tv)
		return nil
	}
	if op.HasPrefix(ast.DefaultRootRef) {
		return a.funcCall(op, operands, tainted, s)
	}
	name := op.String()
	decl, ok := ast.BuiltinMap[name]
	if !ok {
		return errUnsupported
	}
	arity := decl.Decl.Arity()
	if tainted >= arity {
		return errUnsupported // compared with a captured result
	}
	switch {
	case derivations[name]:
		return a.derive(e, name, operands, arity, tainted, s)
	case testOps[name]:
		tv, plain := a.taintOf(operands[tainted], s)
		if !plain {
			return errUnsupported
		}
		a.site(e, name, tainted, tv)
		return nil
	}
	return errUnsupported
}

// site notes e as a test of op with the path value tv at operand pos.
func (a *pathAnalysis) site(e *ast.Expr, op string, pos int, tv taint) {
	if a.collect {
		a.sites = append(a.sites, &pathSite{op: op, pos: pos, taint: tv})
		a.exprs = append(a.exprs, e)
		a.bodies = append(a.bodies, a.cur)
	}
}

// bound: every local in t is bound already (t is a value when reached).
func bound(t *ast.Term, s scope) bool {
	ok := true
	ast.WalkVars(t, func(v ast.Var) bool {
		if !s.seen[v] && v != ast.DefaultRootDocument.Value && v != ast.InputRootDocument.Value {
			ok = false
		}
		return !ok
	})
	return ok
}

// derive follows a derivation: its output (a fresh local) is a path value.
func (a *pathAnalysis) derive(e *ast.Expr, name string, operands []*ast.Term, arity, tainted int, s scope) error {
	if len(operands) != arity+1 || e.Negated {
		return errUnsupported
	}
	out, ok := operands[arity].Value.(ast.Var)
	if !ok || s.seen[out] {
		return errUnsupported
	}
	st := step{name: name, args: make([]*ast.Term, arity), hole: tainted, inArray: -1}
	for i := range arity {
		if i != tainted {
			if !ast.IsConstant(operands[i].Value) {
				return errUnsupported
			}
			st.args[i] = operands[i]
		}
	}
	base, plain := a.taintOf(operands[tainted], s)
	if !plain {
		// concat(sep, [..., v, ...]) and sprintf(f, [..., v, ...]): one
		// element, the rest constants.
		arr, isArr := operands[tainted].Value.(*ast.Array)
		if !isArr || (name != "concat" || tainted != 1) && (name != "sprintf" || tainted != 1) {
			return errUnsupported
		}
		elems := make([]*ast.Term, arr.Len())
		for j := range arr.Len() {
			el := arr.Elem(j)
			if tv, ok := a.taintOf(el, s); ok {
				if st.inArray >= 0 {
					return errUnsupported
				}
				base, st.inArray = tv, j
				continue
			}
			if !ast.IsConstant(el.Value) {
				return errUnsupported
			}
			elems[j] = el
		}
		if st.inArray >= 0 {
			elems[st.inArray] = ast.NullTerm() // replaced on replay
		}
		if st.inArray < 0 {
			return errUnsupported
		}
		st.args[tainted] = ast.ArrayTerm(elems...)
	}
	s.env[out] = base.then(st.withNative())
	return nil
}

// funcCall passes a path value to a function defined in the layer.
func (a *pathAnalysis) funcCall(op ast.Ref, operands []*ast.Term, tainted int, s scope) error {
	rules := a.c.GetRulesExact(op)
	if len(rules) == 0 {
		return errUnsupported
	}
	arity := len(rules[0].Head.Args)
	tv, plain := a.taintOf(operands[tainted], s)
	if tainted >= arity || !plain {
		return errUnsupported
	}
	key := op.String()
	if a.params[key] == nil {
		a.params[key] = map[int]taint{}
	}
	if old, ok := a.params[key][tainted]; ok && old.key != tv.key {
		return errUnsupported
	}
	a.params[key][tainted] = tv
	return nil
}

// taintOf is the taint of a term that is a path value itself (a local, a
// path field, a tainted rule); ok is false for anything else.
func (a *pathAnalysis) taintOf(t *ast.Term, s scope) (taint, bool) {
	switch v := t.Value.(type) {
	case ast.Var:
		tv, ok := s.env[v]
		return tv, ok
	case ast.Ref:
		if f, ok := pathFieldRef(v); ok {
			return taint{field: f, key: f}, true
		}
		tv, ok := a.rules[v.String()]
		return tv, ok
	}
	return taint{}, false
}

// pathFieldRef: input.request.path or input.request.match_path exactly.
func pathFieldRef(r ast.Ref) (string, bool) {
	if len(r) != 3 || !r[0].Equal(ast.InputRootDocument) {
		return "", false
	}
	if s, ok := r[1].Value.(ast.String); !ok || s != "request" {
		return "", false
	}
	f, ok := r[2].Value.(ast.String)
	if !ok || f != "path" && f != "match_path" {
		return "", false
	}
	return string(f), true
}

// mentions reports whether t holds, or may reach, a path value: a tainted
// local, a path field (or input above it), or a tainted rule (or a ref
// that may reach one).
func (a *pathAnalysis) mentions(t *ast.Term, s scope) bool {
	found := false
	ast.WalkTerms(t, func(x *ast.Term) bool {
		if found {
			return true
		}
		switch v := x.Value.(type) {
		case ast.Var:
			_, found = s.env[v]
		case ast.Ref:
			// Else its terms (indexes that may be locals) are walked.
			found = a.refReaches(v)
		case *ast.ArrayComprehension, *ast.SetComprehension, *ast.ObjectComprehension:
			// Bodies are walked by comprehensions(); only heads count
			// here, and they are checked there.
			return true
		}
		return found
	})
	return found
}

func (a *pathAnalysis) mentionsAny(x any, s scope) bool {
	found := false
	ast.WalkTerms(x, func(t *ast.Term) bool {
		if !found && a.mentions(t, s) {
			found = true
		}
		return found
	})
	return found
}

// refReaches reports whether ref r may denote a path field, or a tainted
// rule's value, or something holding one.
func (a *pathAnalysis) refReaches(r ast.Ref) bool {
	if r[0].Equal(ast.InputRootDocument) {
		for _, f := range pathFields {
			if overlaps(r, ast.MustParseRef("input.request."+f)) {
				return true
			}
		}
		return false
	}
	if !r[0].Equal(ast.DefaultRootDocument) {
		return false
	}
	for k := range a.rules {
		if overlaps(r, ast.MustParseRef(k)) {
			return true
		}
	}
	return false
}

// overlaps: one of r and p is a prefix of the other, variables matching
// anything.
func overlaps(r, p ast.Ref) bool {
	n := min(len(r), len(p))
	for i := range n {
		if i > 0 && !r[i].IsGround() {
			continue
		}
		if !r[i].Equal(p[i]) {
			return false
		}
	}
	return true
}

// queriesTouchTainted: a query Gatehouse asks reads a tainted rule.
func (a *pathAnalysis) queriesTouchTainted() bool {
	for _, q := range []string{"data.gatehouse.authz.allow", "data.gatehouse.authz.headers", "data.gatehouse.authz.reasons",
		"data.gatehouse.authz.mfa_max_age", "data.gatehouse.token.allow", "data.gatehouse.token.reasons", "data.gatehouse.token.claims"} {
		if a.refReaches(ast.MustParseRef(q)) {
			return true
		}
	}
	return false
}

// The wrappers that rewritten tests call: internal.gatehouse_path_test_N
// (op, site, operands of op...), N the arity of op. They are given to
// the evaluator per query, never to the compiler: a policy cannot call
// them.
func testBuiltinRef(n int) ast.Ref {
	return ast.Ref{ast.VarTerm(testBuiltinName(n))}
}

func testBuiltinName(n int) string { return "internal.gatehouse_path_test_" + strconv.Itoa(n) }

var testBuiltins = func() map[string]*topdown.Builtin {
	m := map[string]*topdown.Builtin{}
	for n := 1; n <= 3; n++ {
		args := []types.Type{types.S, types.N}
		for range n {
			args = append(args, types.A)
		}
		name := testBuiltinName(n)
		m[name] = &topdown.Builtin{
			Decl: &ast.Builtin{Name: name, Decl: types.NewFunction(args, types.A)},
			Func: runTest,
		}
	}
	return m
}()

// builtinFuncs are the implementations of testOps and derivations.
var builtinFuncs = func() map[string]topdown.BuiltinFunc {
	m := map[string]topdown.BuiltinFunc{}
	for _, set := range []map[string]bool{testOps, derivations} {
		for name := range set {
			if f := topdown.GetBuiltin(name); f != nil {
				m[name] = f
			}
		}
	}
	return m
}()

// recorder collects the tests of one decision.
type recorder struct {
	layer    *layer
	tests    []pathTest
	overflow bool
}

type recorderKey struct{}

// maxPathTests bounds the tests a reusable decision may depend on.
const maxPathTests = 64

func runTest(bctx topdown.BuiltinContext, operands []*ast.Term, iter func(*ast.Term) error) error {
	op, _ := operands[0].Value.(ast.String)
	f := builtinFuncs[string(op)]
	if f == nil {
		return fmt.Errorf("policy: unknown path test %s", op)
	}
	var res *ast.Term
	err := f(bctx, operands[2:], func(t *ast.Term) error { res = t; return nil })
	var empty topdown.BuiltinEmpty
	if errors.As(err, &empty) {
		// Undefined: a result like any other, recorded as nil.
		res, err = nil, nil
	}
	if err != nil {
		// A test that fails fails the decision; it is not reusable.
		if bctx.Context != nil {
			if rec, ok := bctx.Context.Value(recorderKey{}).(*recorder); ok {
				rec.overflow = true
			}
		}
		var oe builtins.ErrOperand
		if errors.As(err, &oe) {
			// As OPA reports it for op itself.
			return &topdown.Error{Code: topdown.TypeErr, Message: fmt.Sprintf("%s: %v", op, err), Location: bctx.Location}
		}
		return err
	}
	if bctx.Context != nil {
		if rec, ok := bctx.Context.Value(recorderKey{}).(*recorder); ok {
			rec.add(operands[1], operands[2:], res)
		}
	}
	if res == nil {
		return nil
	}
	return iter(res)
}

func (r *recorder) add(siteTerm *ast.Term, operands []*ast.Term, res *ast.Term) {
	if r.overflow || r.layer == nil {
		return
	}
	n, ok := siteTerm.Value.(ast.Number)
	i, isInt := n.Int()
	if !ok || !isInt || i < 0 || i >= len(r.layer.sites) || len(r.tests) >= maxPathTests {
		r.overflow = true
		return
	}
	site := r.layer.sites[i]
	args := make([]*ast.Term, len(operands))
	copy(args, operands)
	args[site.pos] = nil
	r.tests = append(r.tests, pathTest{site: site, args: args, result: res})
}

// pathTest is one recorded test: its site, the other operands, the result
// (nil: undefined).
type pathTest struct {
	site   *pathSite
	args   []*ast.Term
	result *ast.Term
}

// PathTests are the tests of path values a decision made. The zero value
// (no test made) holds for every path.
type PathTests struct {
	tests []pathTest
	// unusable: too many tests, or one that could not be recorded.
	unusable bool
}

// Reusable reports whether the decision may be reused for other paths
// for which Hold is true.
func (p PathTests) Reusable() bool { return !p.unusable }

// Len is the number of tests.
func (p PathTests) Len() int { return len(p.tests) }

// Hold reports whether every test gives the same result on req's paths:
// then the policies, asked of an input that differs from the decision's
// only in req's paths, decide as they did.
func (p PathTests) Hold(ctx context.Context, req *Request) bool {
	if p.unusable {
		return false
	}
	bctx := topdown.BuiltinContext{Context: ctx}
	var lastTaint string
	var lastVal *ast.Term
	var lastStr string
	lastOK := false
	for _, t := range p.tests {
		// Most tests are startswith or == of a string made of the path
		// and constants: answered in Go, without building OPA terms.
		if t.site.taint.key != lastTaint || !lastOK {
			lastTaint, lastVal = t.site.taint.key, nil
			lastStr, lastOK = deriveNative(t.site.taint, req)
		}
		if lastOK {
			if got, ok := nativeTest(t, lastStr); ok {
				if !got {
					return false
				}
				continue
			}
		}
		v := lastVal
		if v == nil {
			var ok bool
			if v, ok = derive(bctx, t.site.taint, req); !ok {
				return false
			}
			lastVal = v
		}
		ops := make([]*ast.Term, len(t.args))
		copy(ops, t.args)
		ops[t.site.pos] = v
		got, ok := call(bctx, t.site.op, ops)
		if !ok || (got == nil) != (t.result == nil) || got != nil && ast.Compare(got.Value, t.result.Value) != 0 {
			return false
		}
	}
	return true
}

// deriveNative is derive in Go, if every step has a native form.
func deriveNative(t taint, req *Request) (string, bool) {
	v := req.MatchPath
	if t.field == "path" {
		v = req.Path
	}
	for _, s := range t.steps {
		if s.native == nil {
			return "", false
		}
		v = s.native(v)
	}
	return v, true
}

// nativeTest answers t on the string v in Go: whether its answer is the
// recorded one. ok is false where the test has no native form.
func nativeTest(t pathTest, v string) (same, ok bool) {
	if t.result == nil || len(t.args) != 2 {
		return false, false
	}
	want, isBool := t.result.Value.(ast.Boolean)
	if !isBool {
		return false, false
	}
	other, isStr := t.args[1-t.site.pos].Value.(ast.String)
	if !isStr {
		return false, false
	}
	a, b := v, string(other)
	if t.site.pos == 1 {
		a, b = b, a
	}
	var got bool
	switch t.site.op {
	case "startswith":
		got = strings.HasPrefix(a, b)
	case "endswith":
		got = strings.HasSuffix(a, b)
	case "contains":
		got = strings.Contains(a, b)
	case "equal":
		got = a == b
	case "neq":
		got = a != b
	default:
		return false, false
	}
	return got == bool(want), true
}

// derive computes a path value of in as taint says.
func derive(bctx topdown.BuiltinContext, t taint, req *Request) (*ast.Term, bool) {
	var v *ast.Term
	switch t.field {
	case "path":
		v = ast.StringTerm(req.Path)
	case "match_path":
		v = ast.StringTerm(req.MatchPath)
	default:
		return nil, false
	}
	for _, s := range t.steps {
		ops := make([]*ast.Term, len(s.args))
		copy(ops, s.args)
		if s.inArray >= 0 {
			arr := s.args[s.hole].Value.(*ast.Array)
			elems := make([]*ast.Term, arr.Len())
			for j := range elems {
				elems[j] = arr.Elem(j)
			}
			elems[s.inArray] = v
			ops[s.hole] = ast.ArrayTerm(elems...)
		} else {
			ops[s.hole] = v
		}
		out, ok := call(bctx, s.name, ops)
		if !ok || out == nil {
			return nil, false
		}
		v = out
	}
	return v, true
}

// call runs builtin name; ok is false on an error.
func call(bctx topdown.BuiltinContext, name string, ops []*ast.Term) (*ast.Term, bool) {
	f := builtinFuncs[name]
	if f == nil {
		return nil, false
	}
	var res *ast.Term
	err := f(bctx, ops, func(t *ast.Term) error { res = t; return nil })
	var empty topdown.BuiltinEmpty
	if errors.As(err, &empty) {
		return nil, true
	}
	return res, err == nil
}

// and is the tests of both p and o.
func (p PathTests) and(o PathTests) PathTests {
	if len(o.tests) == 0 && !o.unusable {
		return p
	}
	return PathTests{tests: append(p.tests[:len(p.tests):len(p.tests)], o.tests...), unusable: p.unusable || o.unusable}
}

// Describe writes each test as Rego with its answer, for policy authors
// (`gatehouse policy eval`): `startswith(concat("", [input.request.match_path, "/"]), "/admin/") == false`.
func (p PathTests) Describe() []string {
	out := make([]string, 0, len(p.tests))
	for _, t := range p.tests {
		v := "input.request." + t.site.taint.field
		for _, s := range t.site.taint.steps {
			v = s.name + "(" + operands(s.args, s.hole, s.inArray, v) + ")"
		}
		res := "undefined"
		if t.result != nil {
			res = t.result.String()
		}
		out = append(out, t.site.op+"("+operands(t.args, t.site.pos, -1, v)+") == "+res)
	}
	return out
}

// operands writes args with v at hole (inside the array there when
// inArray >= 0).
func operands(args []*ast.Term, hole, inArray int, v string) string {
	parts := make([]string, len(args))
	for i, a := range args {
		switch {
		case i == hole && inArray >= 0:
			arr := a.Value.(*ast.Array)
			elems := make([]string, arr.Len())
			for j := range elems {
				elems[j] = arr.Elem(j).String()
			}
			elems[inArray] = v
			parts[i] = "[" + strings.Join(elems, ", ") + "]"
		case i == hole:
			parts[i] = v
		default:
			parts[i] = a.String()
		}
	}
	return strings.Join(parts, ", ")
}
