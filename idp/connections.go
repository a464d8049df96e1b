package idp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/store"
)

// Connections opens each org's connection once and keeps it until the
// org's connection settings change. A connection that failed to open
// (its IdP unreachable, say) is retried after retryOpen, not on every
// sign-in.
type Connections struct {
	factories map[string]connection.Factory
	deps      connection.Deps

	mu sync.Mutex
	m  map[string]*connEntry // by org ID
}

type connEntry struct {
	key   string
	ready chan struct{} // closed when conn/err are set
	conn  any
	err   error
	at    time.Time
}

const retryOpen = 10 * time.Second

// NewConnections uses factories by connection type; deps are passed to
// every Open with the org filled in (deps.SignInURL is the public URL).
func NewConnections(factories map[string]connection.Factory, deps connection.Deps) *Connections {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	return &Connections{factories: factories, deps: deps, m: map[string]*connEntry{}}
}

// Get returns the open connection of org (which must own the connection:
// see ownerOf), opening it if needed.
func (c *Connections) Get(ctx context.Context, org *store.Org) (any, error) {
	// The SP's entity ID and endpoints come from the slug and login
	// domain too.
	key := org.Connection.Type + "\x00" + string(org.Connection.Config) + "\x00" + org.Slug + "\x00" + org.LoginDomain + "\x00" + fmt.Sprint(org.Declared)
	now := c.deps.Now()
	c.mu.Lock()
	e := c.m[org.ID]
	if e != nil && e.key == key {
		select {
		case <-e.ready:
			if e.err == nil || now.Sub(e.at) < retryOpen {
				c.mu.Unlock()
				return e.conn, e.err
			}
		default:
			c.mu.Unlock()
			select {
			case <-e.ready:
				return e.conn, e.err
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
	}
	e = &connEntry{key: key, ready: make(chan struct{})}
	c.m[org.ID] = e
	c.mu.Unlock()

	// Others may be waiting on this open: the request that started it
	// going away must not fail theirs. Open bounds its own time.
	e.conn, e.err = c.open(context.WithoutCancel(ctx), org)
	e.at = c.deps.Now()
	close(e.ready)
	return e.conn, e.err
}

// SignInURL is where org signs in: its login domain, on the public URL's
// scheme and port, or the public URL itself.
// open opens org's connection (uncached).
func (c *Connections) open(ctx context.Context, org *store.Org) (any, error) {
	f := c.factories[org.Connection.Type]
	if f == nil {
		return nil, fmt.Errorf("idp: org %s: unknown connection type %q", org.Slug, org.Connection.Type)
	}
	return f(ctx, org.Connection.Config, c.depsOf(org))
}

// OpenDraft opens conn as org's connection would be, uncached: a
// connection an admin is testing before it goes into effect.
func (c *Connections) OpenDraft(ctx context.Context, org *store.Org, conn store.Connection) (any, error) {
	o := *org
	o.Connection = conn
	return c.open(ctx, &o)
}

// depsOf are the Deps org's connection opens with.
func (c *Connections) depsOf(org *store.Org) connection.Deps {
	deps := c.deps
	if !org.Declared && deps.PublicHTTPClient != nil {
		// Its admins chose its IdP's URLs: never into the operator's
		// network.
		deps.HTTPClient = deps.PublicHTTPClient
	}
	deps.OrgID, deps.OrgSlug = org.ID, org.Slug
	deps.SignInURL, deps.SharedHost = SignInURL(c.deps.SignInURL, org), org.LoginDomain == ""
	return deps
}

// Test opens org's connection afresh (discovery, keys, metadata), not
// from the cache, and reports why it cannot, for an admin testing it.
func (c *Connections) Test(ctx context.Context, org *store.Org) error {
	if org.Connection.Type == "" {
		return fmt.Errorf("org %s inherits its parent's connection: test the parent's", org.Slug)
	}
	_, err := c.open(ctx, org)
	return err
}

func SignInURL(public url.URL, org *store.Org) url.URL {
	u := url.URL{Scheme: public.Scheme, Host: public.Host}
	if org.LoginDomain != "" {
		u.Host = withPort(strings.ToLower(org.LoginDomain), public.Port())
	}
	return u
}

// ownerOf is the org whose connection org signs in with: its own, or,
// for a sub-org without one, its nearest ancestor's.
func (h *Handler) ownerOf(org *store.Org) (*store.Org, error) {
	// The org and its ancestors: maxOrgDepth orgs at most.
	o, err := h.o.Orgs.Nearest(org, maxOrgDepth-1, func(o *store.Org) bool { return o.Connection.Type != "" })
	var missing *MissingParentError
	switch {
	case err == nil:
		return o, nil
	case errors.Is(err, ErrNoParent):
		return nil, fmt.Errorf("idp: org %s has no connection and no parent with one", org.Slug)
	case errors.As(err, &missing):
		return nil, fmt.Errorf("idp: org %s: parent %s not found", org.Slug, missing.ID)
	}
	return nil, fmt.Errorf("idp: org %s: parent chain deeper than %d", org.Slug, maxOrgDepth)
}

// federation names owner's connection as it is now: a session records
// it, and only orgs signing in through the very same one are switchable.
func federation(owner *store.Org) string { return owner.ID + "/" + connKey(owner) }

func connKey(o *store.Org) string {
	sum := sha256.Sum256([]byte(o.Connection.Type + "\x00" + string(o.Connection.Config)))
	return hex.EncodeToString(sum[:8])
}

// sameOwner reports whether o signs in through owner's connection.
func (h *Handler) sameOwner(o, owner *store.Org) bool {
	oo, err := h.ownerOf(o)
	return err == nil && oo.ID == owner.ID
}
