package policy

import (
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Reads says which fields of input.request a decision can depend on: the
// fields the policies that make it read. The rest of the input (user,
// org, route, session) is the same for every request of one session on
// one route, so an allow may be reused for another request of that
// session and route whose read fields are equal: a request that differs
// only in what no policy reads gets the same decision.
type Reads struct {
	// All: a policy reads input.request as a whole, a field named at run
	// time (input.request[x]), or input itself: every field counts.
	All bool
	// Never: no decision may be reused: a policy reads the request's time
	// or calls a built-in whose result changes from call to call
	// (time.now_ns, rand.intn, uuid.rfc4122, ...), or what applies could
	// not be told.
	Never bool
	// Fields are the names under input.request read (sorted).
	Fields []string
	// Tested are fields (path, match_path) that the policies only ask
	// questions of, all recorded in a decision's PathTests: a decision
	// holds for a request whose value differs if PathTests.Hold. A field
	// both read and tested is in Fields only.
	Tested []string
}

// Has reports whether field's value counts for a decision as is.
func (r Reads) Has(field string) bool { return r.All || slices.Contains(r.Fields, field) }

// Union is what either of r and o reads.
func (r Reads) Union(o Reads) Reads {
	out := Reads{All: r.All || o.All, Never: r.Never || o.Never}
	out.Fields = append(slices.Clone(r.Fields), o.Fields...)
	slices.Sort(out.Fields)
	out.Fields = slices.Compact(out.Fields)
	for _, f := range append(slices.Clone(r.Tested), o.Tested...) {
		if !slices.Contains(out.Fields, f) && !slices.Contains(out.Tested, f) {
			out.Tested = append(out.Tested, f)
		}
	}
	slices.Sort(out.Tested)
	return out
}

// tested moves fields from Fields to Tested.
func (r Reads) tested(fields []string) Reads {
	out := Reads{All: r.All, Never: r.Never}
	for _, f := range r.Fields {
		if slices.Contains(fields, f) {
			out.Tested = append(out.Tested, f)
		} else {
			out.Fields = append(out.Fields, f)
		}
	}
	return out
}

// ReadsReporter is an engine that can say what its decision for in reads
// (for the policy version in force).
type ReadsReporter interface {
	RequestReads(in *Input) Reads
}

// RequestReads: the route's orgs and the person's org, nothing of the
// request.
func (RouteOrgs) RequestReads(*Input) Reads { return Reads{} }

// RequestReads of a chain: what any member reads; a member that cannot
// say reads everything.
func (c Chain) RequestReads(in *Input) Reads {
	var out Reads
	for _, e := range c {
		rr, ok := e.(ReadsReporter)
		if !ok {
			return Reads{All: true}
		}
		out = out.Union(rr.RequestReads(in))
	}
	return out
}

// RequestReads: what the layers that apply to in read.
func (r *Rego) RequestReads(in *Input) Reads {
	s := r.set.Load()
	if s.Empty() {
		return Reads{}
	}
	layers, err := s.layers(in)
	if err != nil {
		return Reads{Never: true}
	}
	var out Reads
	for _, l := range layers {
		out = out.Union(l.reads)
	}
	return out
}

// analyzeReads finds what the compiled modules of a layer read of
// input.request. Every module the layer's compiler holds is walked, not
// only the rules the queries reach: a superset, so never too little.
func analyzeReads(c *ast.Compiler) Reads {
	var out Reads
	fields := map[string]bool{}
	for _, m := range c.Modules {
		ast.WalkRefs(m, func(ref ast.Ref) bool {
			if !ref[0].Equal(ast.InputRootDocument) {
				return false
			}
			if len(ref) < 2 {
				out.All = true // input as a whole
				return false
			}
			top, ok := ref[1].Value.(ast.String)
			switch {
			case !ok:
				out.All = true // input[x]
			case top != "request":
				// user, org, route, session: fixed for a session on a route.
			case len(ref) < 3:
				out.All = true // input.request as a whole
			default:
				f, ok := ref[2].Value.(ast.String)
				if !ok {
					out.All = true // input.request[x]
					break
				}
				fields[string(f)] = true
				if f == "time" || f == "time_ns" {
					out.Never = true
				}
			}
			return false
		})
		ast.WalkTerms(m, func(t *ast.Term) bool {
			call, ok := t.Value.(ast.Call)
			if !ok || len(call) == 0 {
				return false
			}
			if op, ok := call[0].Value.(ast.Ref); ok {
				if b, ok := ast.BuiltinMap[op.String()]; ok && b.Nondeterministic {
					out.Never = true
				}
			}
			return false
		})
		// Built-ins called as expressions (`time.now_ns(t)`) are terms
		// too; WalkTerms reaches their operator terms through the exprs.
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				if b, ok := ast.BuiltinMap[e.Operator().String()]; ok && b.Nondeterministic {
					out.Never = true
				}
			}
			return false
		})
	}
	for f := range fields {
		out.Fields = append(out.Fields, f)
	}
	slices.Sort(out.Fields)
	return out
}
