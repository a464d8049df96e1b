// Package policy decides whether an authenticated request may pass. This
// is the decision seam that OPA/Rego plugs into; today's Engine admits
// every authenticated member, narrowed by a route's org list.
package policy

import (
	"context"
	"slices"
	"time"
)

// Input is the document a decision is made over. Its shape is the
// contract Rego policies will be written against.
type Input struct {
	User    User    `json:"user"`
	Org     Org     `json:"org"`
	Request Request `json:"request"`
	Route   Route   `json:"route"`
}

type User struct {
	ID     string   `json:"id"`
	Email  string   `json:"email"`
	Name   string   `json:"name,omitempty"`
	Roles  []string `json:"roles"`
	Groups []string `json:"groups"`
}

type Org struct {
	ID   string `json:"id"`
	Slug string `json:"slug"`
}

type Request struct {
	Method     string    `json:"method"`
	Host       string    `json:"host"`
	Path       string    `json:"path"`
	ClientAddr string    `json:"client_addr"`
	Time       time.Time `json:"time"`
}

type Route struct {
	ID string `json:"id"`
	// Orgs admits only these org slugs; empty admits every org.
	Orgs []string `json:"orgs,omitempty"`
}

// Decision is the outcome. Reasons are shown on the 403 page and logged.
type Decision struct {
	Allow   bool
	Reasons []string
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
