// Package policy decides whether an authenticated request may pass.
//
// Two engines stack: RouteOrgs (a route's `orgs` list, always applied) and
// Rego, Open Policy Agent policies in layers (platform, route, org) of
// which every one that applies must allow. Both fail closed: no answer,
// an error, a panic or a timeout is a deny.
package policy

import (
	"context"
	"slices"
	"time"
)

// Decision is the outcome. Reasons are shown on the 403 page and logged;
// Headers are extra headers a policy asks to send upstream.
type Decision struct {
	Allow   bool
	Reasons []string
	Headers map[string]string
	// MFAMaxAge, when set, allows only if the person proved a second
	// factor at most this long ago (a policy's mfa_max_age): else they are
	// asked for one (step-up) and come back.
	MFAMaxAge time.Duration
	// Version identifies the policy set that decided ("" for RouteOrgs).
	Version string
	// ID names the decision in the decision log.
	ID string
	// Err is why no layer could decide (the request was denied).
	Err error
	// PathTests are the questions the policies asked of the request's
	// path: the decision holds for another path with the same answers
	// (see Reads.Tested).
	PathTests PathTests
}

// Engine decides. Implementations must fail closed: any error is a deny.
type Engine interface {
	Decide(ctx context.Context, in *Input) Decision
}

// RouteOrgs is the built-in engine: an authenticated user with an org is
// allowed unless the route lists orgs and the user's org is not one.
type RouteOrgs struct{}

var _ Engine = RouteOrgs{}

func (RouteOrgs) Decide(_ context.Context, in *Input) Decision {
	switch {
	case in.User.ID == "" || in.Org.ID == "":
		return Decision{Reasons: []string{"no authenticated user"}}
	case len(in.Route.Orgs) > 0 && !slices.Contains(in.Route.Orgs, in.Org.Slug):
		return Decision{Reasons: []string{"your organization does not have access to this application"}}
	}
	return Decision{Allow: true}
}

// Trivial: RouteOrgs needs only the identity and the route.
func (RouteOrgs) Trivial() bool { return true }

// Chain asks each engine in turn; the first deny wins.
type Chain []Engine

func (c Chain) Decide(ctx context.Context, in *Input) Decision {
	var last Decision
	var tests PathTests
	for _, e := range c {
		d := e.Decide(ctx, in)
		if !d.Allow {
			return d
		}
		tests = tests.and(d.PathTests)
		if len(d.Headers) > 0 || d.Version != "" {
			last = d
		}
	}
	last.Allow = true
	last.PathTests = tests
	return last
}

// Versioned engines report the version of the policies in force, so that
// callers caching decisions know when to drop them.
type Versioned interface {
	Version() string
}

// Version of a chain: its versioned members' versions, joined. With one
// such member, as in a deployment, that is its version as is: no string
// is built on the request path.
func (c Chain) Version() string {
	v, n := "", 0
	for _, e := range c {
		if ve, ok := e.(Versioned); ok {
			if n > 0 {
				v += ";"
			}
			v += ve.Version()
			n++
		}
	}
	return v
}

// Trivial engines decide from the user, org and route alone (no Rego
// policy is loaded), so callers can skip building the full input and
// caching decisions.
type Trivial interface {
	Trivial() bool
}

// Trivial reports whether every member is trivial.
func (c Chain) Trivial() bool {
	for _, e := range c {
		switch t := e.(type) {
		case Trivial:
			if !t.Trivial() {
				return false
			}
		default:
			return false
		}
	}
	return true
}
