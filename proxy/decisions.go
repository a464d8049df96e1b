package proxy

import (
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/policy"
)

// decisionCache holds one session's recent allow decisions for one route,
// keyed by everything in the input that varies per request except the
// time: method, host (wildcard routes serve many), path, query, client
// address and the selected headers.
// Denies are never cached (each is evaluated and logged). An entry is
// used only while the policy version it was made under is in force.
type decisionCache struct {
	mu sync.Mutex
	m  map[string]cachedDecision
}

type cachedDecision struct {
	d       policy.Decision
	version string
	expires time.Time
}

const maxCachedDecisions = 256

// decisionKey is a SHA-256 of the per-request input fields, so that a
// cached decision costs 32 bytes however long the path, query and headers.
func decisionKey(in *policy.Input, rawQuery string) string {
	var b strings.Builder
	b.Grow(len(in.Request.Method) + len(in.Request.Host) + len(in.Request.Path) + len(rawQuery) + len(in.Request.ClientAddr) + 64)
	b.WriteString(in.Request.Method)
	b.WriteByte(0)
	b.WriteString(in.Request.Host)
	b.WriteByte(0)
	b.WriteString(in.Request.Path)
	b.WriteByte(0)
	b.WriteString(rawQuery)
	b.WriteByte(0)
	b.WriteString(in.Request.ClientAddr)
	for _, k := range policy.SelectedHeaderKeys {
		b.WriteByte(0)
		b.WriteString(in.Request.Headers[k])
	}
	sum := sha256.Sum256([]byte(b.String()))
	return string(sum[:])
}

func (c *decisionCache) get(key, version string, now time.Time) (policy.Decision, bool) {
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if !ok || e.version != version || !now.Before(e.expires) {
		return policy.Decision{}, false
	}
	return e.d, true
}

func (c *decisionCache) put(key, version string, d policy.Decision, exp time.Time) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedDecisions {
		c.m = make(map[string]cachedDecision, 16)
	}
	c.m[key] = cachedDecision{d: d, version: version, expires: exp}
	c.mu.Unlock()
}
