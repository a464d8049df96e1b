package policy

import (
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Input is the document every policy is evaluated over: `input` in Rego.
// Its JSON form is the contract policy authors write against; docs/policies.md
// documents it and `gatehouse policy input` prints it.
type Input struct {
	User    User    `json:"user"`
	Org     Org     `json:"org"`
	Request Request `json:"request"`
	Route   Route   `json:"route"`
	Session Session `json:"session"`

	// parts, if set, holds user, org, session and route already built as
	// OPA values (see Prebuild): they change per session, not per request.
	parts *Parts
}

// Parts are the per-session, per-route parts of an input as OPA values.
type Parts struct {
	user, org, route, session *ast.Term
}

// Prebuild converts the parts of in that do not change between requests
// of one session on one route. Callers cache the result and pass it back
// with UseParts while the session's identity, org and route are the same.
func (in *Input) Prebuild() *Parts {
	return &Parts{user: in.userTerm(), org: in.orgTerm(), route: in.routeTerm(), session: in.sessionTerm()}
}

// UseParts makes value() reuse p for user, org, route and session.
func (in *Input) UseParts(p *Parts) { in.parts = p }

type User struct {
	ID         string            `json:"id"`
	Email      string            `json:"email"`
	Name       string            `json:"name"`
	Roles      []string          `json:"roles"`
	Groups     []string          `json:"groups"`
	Attributes map[string]string `json:"attributes"`
	// MFA reports whether the session's sign-in used a second factor.
	MFA bool `json:"mfa"`
	// AuthTime is when the user signed in (RFC 3339).
	AuthTime   string `json:"auth_time"`
	Connection string `json:"connection"`
	// AMR are how the session signed in (RFC 8176: pwd, otp, hwk, swk,
	// mfa, ...); MFATime is when the person last proved a second factor
	// (RFC 3339; "" never).
	AMR     []string `json:"amr"`
	MFATime string   `json:"mfa_time"`
}

type Org struct {
	ID     string `json:"id"`
	Slug   string `json:"slug"`
	Name   string `json:"name"`
	Parent string `json:"parent"` // parent org slug, "" for none
	// Attributes are the org's own string attributes (plan, timezone, …).
	Attributes map[string]string `json:"attributes"`
	// Domains are the org's email domains.
	Domains     []string `json:"domains"`
	LoginDomain string   `json:"login_domain"`
}

type Request struct {
	Method string `json:"method"`
	Host   string `json:"host"`
	// Path is the canonical path (see docs/security.md).
	Path string `json:"path"`
	// MatchPath is Path as routes match it: ";params" removed, lowercased.
	// Prefix checks should use it: upstreams such as Tomcat read
	// "/admin;x/users" as /admin/users, and some ignore case.
	MatchPath string              `json:"match_path"`
	Query     map[string][]string `json:"query"`
	// Headers holds selected request headers, lowercased names; never
	// cookies or credentials.
	Headers    map[string]string `json:"headers"`
	ClientAddr string            `json:"client_addr"`
	// Time is the request time (RFC 3339); TimeNS the same in Unix
	// nanoseconds, as OPA's time.* functions take it.
	Time   string    `json:"time"`
	TimeNS int64     `json:"time_ns"`
	At     time.Time `json:"-"`
}

type Route struct {
	ID         string   `json:"id"`
	Host       string   `json:"host"`
	PathPrefix string   `json:"path_prefix"`
	Orgs       []string `json:"orgs"`
	Org        string   `json:"org"`
}

type Session struct {
	// ID is a digest of the session ID, stable per session, useless as a
	// credential.
	ID        string `json:"id"`
	CreatedAt string `json:"created_at"`
	ExpiresAt string `json:"expires_at"`
}

// SelectedHeaders are the request headers copied into input.request.headers,
// under the lowercased names in SelectedHeaderKeys (same order).
var (
	SelectedHeaders    = []string{"Accept", "Accept-Language", "Content-Type", "Origin", "Referer", "User-Agent", "X-Requested-With"}
	SelectedHeaderKeys = func() []string {
		keys := make([]string, len(SelectedHeaders))
		for i, h := range SelectedHeaders {
			keys[i] = strings.ToLower(h)
		}
		return keys
	}()
)

// value builds the input as an OPA value directly: converting through
// JSON would cost more than the evaluation of a typical policy.
func (in *Input) value() ast.Value {
	p := in.parts
	if p == nil {
		p = in.Prebuild()
	}
	return ast.NewObject(
		item("user", p.user),
		item("org", p.org),
		item("request", ast.ObjectTerm(
			item("method", method(in.Request.Method)), item("host", str(in.Request.Host)), item("path", str(in.Request.Path)),
			item("match_path", str(in.Request.MatchPath)),
			item("query", multiMap(in.Request.Query)), item("headers", headerMap(in.Request.Headers)),
			item("client_addr", str(in.Request.ClientAddr)), item("time", str(in.Request.Time)),
			item("time_ns", ast.IntNumberTerm(int(in.Request.TimeNS))),
		)),
		item("route", p.route),
		item("session", p.session),
	)
}

func (in *Input) userTerm() *ast.Term {
	return ast.ObjectTerm(
		item("id", str(in.User.ID)), item("email", str(in.User.Email)), item("name", str(in.User.Name)),
		item("roles", strs(in.User.Roles)), item("groups", strs(in.User.Groups)),
		item("attributes", strMap(in.User.Attributes)), item("mfa", ast.BooleanTerm(in.User.MFA)),
		item("auth_time", str(in.User.AuthTime)), item("connection", str(in.User.Connection)),
		item("amr", strs(in.User.AMR)), item("mfa_time", str(in.User.MFATime)),
	)
}

func (in *Input) orgTerm() *ast.Term {
	return ast.ObjectTerm(
		item("id", str(in.Org.ID)), item("slug", str(in.Org.Slug)), item("name", str(in.Org.Name)),
		item("parent", str(in.Org.Parent)), item("attributes", strMap(in.Org.Attributes)),
		item("domains", strs(in.Org.Domains)), item("login_domain", str(in.Org.LoginDomain)),
	)
}

func (in *Input) routeTerm() *ast.Term {
	return ast.ObjectTerm(
		item("id", str(in.Route.ID)), item("host", str(in.Route.Host)), item("path_prefix", str(in.Route.PathPrefix)),
		item("orgs", strs(in.Route.Orgs)), item("org", str(in.Route.Org)),
	)
}

func (in *Input) sessionTerm() *ast.Term {
	return ast.ObjectTerm(
		item("id", str(in.Session.ID)), item("created_at", str(in.Session.CreatedAt)), item("expires_at", str(in.Session.ExpiresAt)),
	)
}

// Fill sets the derived time fields from At.
func (r *Request) Fill() {
	if r.At.IsZero() {
		return
	}
	r.Time = r.At.UTC().Format(time.RFC3339Nano)
	r.TimeNS = r.At.UnixNano()
}

// keyTerms are the input's field names as shared, immutable terms (OPA
// shares interned terms the same way), so building an input does not
// allocate its keys again on every request.
var keyTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"user", "org", "request", "route", "session", "id", "email", "name", "roles", "groups",
		"attributes", "mfa", "auth_time", "connection", "amr", "mfa_time", "slug", "parent", "domains", "login_domain", "method", "host",
		"path", "match_path", "query", "headers", "client_addr", "time", "time_ns", "path_prefix", "orgs", "created_at", "expires_at"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

// methodTerms are the common methods' terms, shared like keyTerms.
var methodTerms = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, k := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		m[k] = ast.StringTerm(k)
	}
	return m
}()

func method(m string) *ast.Term {
	if t, ok := methodTerms[m]; ok {
		return t
	}
	return ast.StringTerm(m)
}

// sortedHeaderKeys are SelectedHeaderKeys in the order OPA sorts object
// keys, each with its shared term.
var sortedHeaderKeys = func() []string {
	keys := slices.Clone(SelectedHeaderKeys)
	sort.Strings(keys)
	for _, k := range keys {
		keyTerms[k] = ast.StringTerm(k)
	}
	return keys
}()

// headerMap builds input.request.headers, whose keys are always among
// SelectedHeaderKeys: no sorting, no key allocations.
func headerMap(h map[string]string) *ast.Term {
	if len(h) == 0 {
		return ast.ObjectTerm()
	}
	items := make([][2]*ast.Term, 0, len(h))
	n := 0
	for _, k := range sortedHeaderKeys {
		if v, ok := h[k]; ok {
			items = append(items, [2]*ast.Term{keyTerms[k], str(v)})
			n++
		}
	}
	if n != len(h) {
		return strMap(h) // a caller put in a header outside the selection
	}
	return ast.ObjectTerm(items...)
}

func item(k string, v *ast.Term) [2]*ast.Term {
	if t, ok := keyTerms[k]; ok {
		return [2]*ast.Term{t, v}
	}
	return ast.Item(ast.StringTerm(k), v)
}
func str(s string) *ast.Term { return ast.StringTerm(s) }

func strs(ss []string) *ast.Term {
	ts := make([]*ast.Term, len(ss))
	for i, s := range ss {
		ts[i] = ast.StringTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

func strMap(m map[string]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	for _, k := range sortedKeys(m) {
		items = append(items, item(k, str(m[k])))
	}
	return ast.ObjectTerm(items...)
}

func multiMap(m map[string][]string) *ast.Term {
	items := make([][2]*ast.Term, 0, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		items = append(items, item(k, strs(m[k])))
	}
	return ast.ObjectTerm(items...)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Normalize replaces nil lists and maps with empty ones, so the JSON form
// shows what policies see: `[]` and `{}`, never null.
func (in *Input) Normalize() {
	for _, p := range []*[]string{&in.User.Roles, &in.User.Groups, &in.Org.Domains, &in.Route.Orgs} {
		if *p == nil {
			*p = []string{}
		}
	}
	for _, m := range []*map[string]string{&in.User.Attributes, &in.Org.Attributes, &in.Request.Headers} {
		if *m == nil {
			*m = map[string]string{}
		}
	}
	if in.Request.Query == nil {
		in.Request.Query = map[string][]string{}
	}
}
