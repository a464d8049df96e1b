package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// decisionCache holds one session's recent allow decisions for one route,
// keyed by the request fields the policies in force read (policy.Reads):
// of method, host, path (as matched), query, client address and the
// selected headers, only those a policy reads, so that requests differing
// in nothing a policy can see share one decision. Paths the policies only
// ask questions of (Reads.Tested: does it start with "/admin/"?) are not
// in the key: each decision under a key carries the questions and
// answers of its evaluation (policy.PathTests), and is reused for a path
// that answers them the same. A policy that reads the request's time, or
// calls a built-in whose result changes between calls, has no decision
// reused. Denies are never cached (each is evaluated and logged). An
// entry is used only while the policy version it was made under is in
// force.
type decisionCache struct {
	mu sync.Mutex
	m  map[string][]cachedDecision
	n  int // entries in m
	// reads is what the policy version readsVersion reads, for this
	// session's org on this route.
	reads        policy.Reads
	readsVersion string
	readsKnown   bool
}

type cachedDecision struct {
	d       policy.Decision
	version string
	expires time.Time
}

// maxCachedDecisions bounds a cache's entries; maxPerKey those under one
// key (decisions for paths that answered the policies differently).
const (
	maxCachedDecisions = 256
	maxPerKey          = 16
)

// readsFor is what the policies of version read, asked of the engine
// once per version.
func (c *decisionCache) readsFor(version string, ask func() policy.Reads) policy.Reads {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.readsKnown || c.readsVersion != version {
		c.reads, c.readsVersion, c.readsKnown = ask(), version, true
	}
	return c.reads
}

// decisionKey is a SHA-256 of the request fields r names, so that a
// cached decision costs 32 bytes however long the path, query and headers.
// Each field is written as its name and its length-prefixed value: no
// value, whatever bytes it holds, can pass for another field or shift a
// boundary. Headers are those of the input (policy.SelectedHeaders), read
// from hr; the query is hr's, as sent. With no field read the key is "".
func decisionKey(req *policy.Request, hr *http.Request, r policy.Reads) string {
	if !r.All && len(r.Fields) == 0 {
		return ""
	}
	rawQuery := hr.URL.RawQuery
	b := make([]byte, 0, len(req.Method)+len(req.Host)+len(req.Path)+len(req.MatchPath)+len(rawQuery)+len(req.ClientAddr)+160)
	field := func(name, v string) {
		b = append(b, name...)
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	if r.Has("method") {
		field("method", req.Method)
	}
	if r.Has("host") {
		field("host", req.Host)
	}
	if r.Has("path") {
		field("path", req.Path)
	}
	if r.Has("match_path") {
		field("match_path", req.MatchPath)
	}
	if r.Has("query") {
		field("query", rawQuery)
	}
	if r.Has("client_addr") {
		field("client_addr", req.ClientAddr)
	}
	if r.Has("headers") {
		for i, h := range policy.SelectedHeaders {
			field(policy.SelectedHeaderKeys[i], hr.Header.Get(h))
		}
	}
	sum := sha256.Sum256(b)
	return string(sum[:])
}

// get returns a decision under key that holds for in.
func (c *decisionCache) get(ctx context.Context, key, version string, req *policy.Request, now time.Time) (policy.Decision, bool) {
	c.mu.Lock()
	es := c.m[key] // never modified in place: put replaces the slice
	c.mu.Unlock()
	for i := range es {
		e := &es[i]
		if e.version == version && now.Before(e.expires) && e.d.PathTests.Hold(ctx, req) {
			return e.d, true
		}
	}
	return policy.Decision{}, false
}

func (c *decisionCache) put(key, version string, d policy.Decision, exp time.Time) {
	if !d.PathTests.Reusable() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || c.n >= maxCachedDecisions {
		c.m, c.n = make(map[string][]cachedDecision, 16), 0
	}
	old := c.m[key]
	es := make([]cachedDecision, 0, len(old)+1)
	es = append(es, cachedDecision{d: d, version: version, expires: exp})
	for _, e := range old {
		// Newest first; stale and surplus entries go.
		if e.version == version && len(es) < maxPerKey {
			es = append(es, e)
		}
	}
	c.n += len(es) - len(old)
	c.m[key] = es
}
