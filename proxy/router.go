package proxy

import (
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/config"
)

// Route is a compiled config route.
type Route struct {
	ID          string
	Host        string
	PathPrefix  string
	Upstream    *url.URL
	PublicPaths []string
	Orgs        []string
	Org         string
	Audience    string
	// PreserveHost forwards the client's Host header.
	PreserveHost bool
	// identity holds lowercased header names (with "_" as "-") stripped
	// from client requests besides X-Gatehouse-*.
	identity map[string]bool
	// passClient holds the config.ClientHeaders (normalized as identity)
	// this route's upstream receives as sent.
	passClient map[string]bool
	// upgrades are the lowercased protocols a connection may switch to.
	upgrades []string
}

// IsPublic reports whether a canonical path is served without a session.
func (rt *Route) IsPublic(path string) bool {
	for _, p := range rt.PublicPaths {
		if HasPathPrefix(path, p) {
			return true
		}
	}
	return false
}

// Router finds the route for a host and canonical path: exact hosts
// first, then a one-label wildcard; within a host, the longest prefix.
type Router struct {
	exact    map[string][]*Route
	wildcard map[string][]*Route // key: ".example.com"
}

// NewRouter compiles routes.
func NewRouter(routes []config.Route) (*Router, error) {
	r := &Router{exact: map[string][]*Route{}, wildcard: map[string][]*Route{}}
	for _, c := range routes {
		up, err := url.Parse(c.Upstream)
		if err != nil || up.Host == "" {
			return nil, fmt.Errorf("proxy: route %s: bad upstream %q", c.ID, c.Upstream)
		}
		rt := &Route{
			ID: c.ID, Host: strings.ToLower(c.Host), PathPrefix: c.PathPrefix, Upstream: up,
			PublicPaths: c.PublicPaths, Orgs: c.Orgs, Org: c.Org, Audience: c.Audience,
			PreserveHost: c.PreserveHost, identity: map[string]bool{},
		}
		if rt.PathPrefix == "" {
			rt.PathPrefix = "/"
		}
		if rt.Audience == "" {
			rt.Audience = rt.Host
		}
		if rt.Org != "" && len(rt.Orgs) == 0 {
			rt.Orgs = []string{rt.Org}
		}
		for _, h := range c.IdentityHeaders {
			rt.identity[normHeader(h)] = true
		}
		for _, h := range c.PassClientHeaders {
			if rt.passClient == nil {
				rt.passClient = map[string]bool{}
			}
			rt.passClient[normHeader(h)] = true
		}
		rt.upgrades = []string{"websocket"}
		if c.Upgrades != nil {
			rt.upgrades = make([]string, len(c.Upgrades))
			for i, u := range c.Upgrades {
				rt.upgrades[i] = strings.ToLower(u)
			}
		}
		if suffix, ok := strings.CutPrefix(rt.Host, "*"); ok {
			r.wildcard[suffix] = append(r.wildcard[suffix], rt)
		} else {
			r.exact[rt.Host] = append(r.exact[rt.Host], rt)
		}
	}
	for _, m := range []map[string][]*Route{r.exact, r.wildcard} {
		for _, rs := range m {
			sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].PathPrefix) > len(rs[j].PathPrefix) })
		}
	}
	return r, nil
}

// Match returns the route for host (lowercase, no port) and canonical path.
func (r *Router) Match(host, path string) *Route {
	rs, ok := r.exact[host]
	if !ok {
		if i := strings.IndexByte(host, '.'); i > 0 {
			rs = r.wildcard[host[i:]]
		}
	}
	for _, rt := range rs {
		if hasPathPrefixFold(path, rt.PathPrefix) {
			return rt
		}
	}
	return nil
}

// hasPathPrefixFold is HasPathPrefix ignoring ASCII case. Route selection
// ignores case so that "/ADMIN" reaches the "/admin" route's stricter
// rules on upstreams that ignore case, and a 404 on those that do not.
// (public_paths stay case-sensitive: a case difference only ever asks for
// more sign-in there.)
func hasPathPrefixFold(path, prefix string) bool {
	if prefix == "/" {
		return true
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if len(path) < len(prefix) || !strings.EqualFold(path[:len(prefix)], prefix) {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/'
}

// ServesHost reports whether any route is on host.
func (r *Router) ServesHost(host string) bool {
	if _, ok := r.exact[host]; ok {
		return true
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		_, ok := r.wildcard[host[i:]]
		return ok
	}
	return false
}

// normHeader is h lowercased, with every character other than a letter
// or digit as "-" (see headerNameIs).
func normHeader(h string) string {
	b := []byte(h)
	for i := range b {
		b[i] = headerFold(b[i])
	}
	return string(b)
}
