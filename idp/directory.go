package idp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gatehouse/gatehouse/internal/orgtree"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Directory is a read-mostly snapshot of orgs indexed the ways sign-in
// needs: by login host, email domain, slug and ID. It is rebuilt whole
// and swapped, so readers never see half an update.
type Directory struct {
	// reload serializes Reload, so a slower, older read never replaces a
	// newer snapshot.
	reload sync.Mutex
	st     store.Store
	snap   atomic.Pointer[dirSnap]
	log    *slog.Logger
	// verified: only domains whose claim is verified count (login domain,
	// email domains); an org's other domains are as if it had none.
	verified atomic.Bool
	// conflicts are the last reload's contested domains (logged when they
	// change; guarded by reload).
	conflicts string
}

type dirSnap struct {
	byHost   map[string]*store.Org
	byDomain map[string]*store.Org
	bySlug   map[string]*store.Org
	byID     map[string]*store.Org
	// rules are each org's effective MFA and session rules.
	rules map[string]session.OrgRules
}

// NewDirectory loads the orgs from st.
func NewDirectory(ctx context.Context, st store.Store, log *slog.Logger) (*Directory, error) {
	d := &Directory{st: st, log: log}
	if err := d.Reload(ctx); err != nil {
		return nil, err
	}
	return d, nil
}

// Reload rebuilds the snapshot from the store.
func (d *Directory) Reload(ctx context.Context) error {
	d.reload.Lock()
	defer d.reload.Unlock()
	orgs, err := d.st.ListOrgs(ctx)
	if err != nil {
		return fmt.Errorf("idp: load orgs: %w", err)
	}
	s := &dirSnap{byHost: map[string]*store.Org{}, byDomain: map[string]*store.Org{}, bySlug: map[string]*store.Org{}, byID: map[string]*store.Org{}}
	verified := d.verified.Load()
	hosts, domains := map[string][]*store.Org{}, map[string][]*store.Org{}
	for i := range orgs {
		o := &orgs[i]
		if verified {
			onlyVerified(o)
		}
		s.bySlug[o.Slug] = o
		s.byID[o.ID] = o
		if o.LoginDomain != "" {
			h := strings.ToLower(o.LoginDomain)
			hosts[h] = append(hosts[h], o)
		}
		for _, dom := range o.EmailDomains {
			dom = strings.ToLower(dom)
			domains[dom] = append(domains[dom], o)
		}
	}
	var conflicts []string
	for h, claimants := range hosts {
		w := winner(claimants, h, "login", verified)
		s.byHost[h] = w
		for _, o := range claimants {
			if o != w {
				o.LoginDomain = "" // links and certificates follow the winner only
				conflicts = append(conflicts, fmt.Sprintf("login domain %s: %s, not %s", h, w.Slug, o.Slug))
			}
		}
	}
	for dom, claimants := range domains {
		w := winner(claimants, dom, "email", verified)
		s.byDomain[dom] = w
		for _, o := range claimants {
			if o != w {
				o.EmailDomains = slices.DeleteFunc(o.EmailDomains, func(e string) bool { return strings.EqualFold(e, dom) })
				conflicts = append(conflicts, fmt.Sprintf("email domain %s: %s, not %s", dom, w.Slug, o.Slug))
			}
		}
	}
	s.rules = make(map[string]session.OrgRules, len(s.byID))
	for id := range s.byID {
		s.rules[id] = effectiveRules(s.byID, id)
	}
	slices.Sort(conflicts)
	if c := strings.Join(conflicts, "; "); c != d.conflicts {
		d.conflicts = c
		if c != "" {
			d.log.Error("idp: domains claimed by more than one org go to the earliest claim; remove them from the others", "conflicts", c)
		}
	}
	d.snap.Store(s)
	return nil
}

// effectiveRules are org id's MFA and session rules tightened by every
// org above it: a sub-org may only ask for more. A chain that is broken
// or too long ends the walk; what was read still counts.
func effectiveRules(byID map[string]*store.Org, id string) (r session.OrgRules) {
	noRemember := false
	defer func() {
		if noRemember {
			r.RememberDevice = 0
		}
	}()
	tighter := func(cur, v time.Duration) time.Duration {
		if v > 0 && (cur == 0 || v < cur) {
			return v
		}
		return cur
	}
	for range maxOrgDepth {
		o, ok := byID[id]
		if !ok {
			break
		}
		r.RequireMFA = store.StricterMFA(r.RequireMFA, o.MFA.Require)
		r.MFAAfterIdP = r.MFAAfterIdP || o.MFA.AfterIdP
		r.NewSignInAlert = r.NewSignInAlert || o.NewSignInAlert
		if len(o.MFA.Factors) > 0 {
			if r.MFAFactors == nil {
				r.MFAFactors = slices.Clone(o.MFA.Factors)
			} else {
				// Both ask: only what both allow counts (possibly nothing:
				// then no factor of Gatehouse's does, and sign-ins needing
				// one fail closed).
				r.MFAFactors = slices.DeleteFunc(r.MFAFactors, func(f string) bool { return !slices.Contains(o.MFA.Factors, f) })
				if len(r.MFAFactors) == 0 {
					r.MFAFactors = []string{"none"}
				}
			}
		}
		if o.MFA.NoRememberDevice {
			noRemember = true
		}
		r.RememberDevice = tighter(r.RememberDevice, o.MFA.RememberDevice)
		if o.Session.MaxPerPerson > 0 && (r.MaxPerPerson == 0 || o.Session.MaxPerPerson < r.MaxPerPerson) {
			r.MaxPerPerson = o.Session.MaxPerPerson
		}
		r.Lifetime = tighter(r.Lifetime, o.Session.Lifetime)
		r.IdleTimeout = tighter(r.IdleTimeout, o.Session.IdleTimeout)
		if o.ParentID == "" {
			break
		}
		id = o.ParentID
	}
	return r
}

// Rules are org id's effective MFA and session rules (none for an org
// the directory does not know).
func (d *Directory) Rules(id string) session.OrgRules { return d.snap.Load().rules[id] }

// winner is the org a domain claimed by several belongs to: the one
// whose claim was verified first (with verification), else the oldest
// org; the ID breaks ties. The incumbent keeps its domain, so a later
// claim can never take a customer's domain over, and the choice never
// depends on the order orgs are listed in.
func winner(claimants []*store.Org, domain, kind string, verified bool) *store.Org {
	if len(claimants) == 1 {
		return claimants[0]
	}
	since := func(o *store.Org) time.Time {
		if verified {
			for _, c := range o.Domains {
				if c.Kind == kind && strings.EqualFold(c.Name, domain) {
					if !c.FirstVerifiedAt.IsZero() {
						return c.FirstVerifiedAt // a brief suspension does not lose the rank
					}
					return c.VerifiedAt
				}
			}
		}
		return o.CreatedAt
	}
	return slices.MinFunc(claimants, func(a, b *store.Org) int {
		if c := since(a).Compare(since(b)); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// RequireVerified makes only verified domain claims count, from the next
// Reload on.
func (d *Directory) RequireVerified() { d.verified.Store(true) }

// onlyVerified clears o's login domain and drops email domains whose
// claims are not verified.
func onlyVerified(o *store.Org) {
	ok := func(name, kind string) bool {
		for _, c := range o.Domains {
			if c.Kind == kind && strings.EqualFold(c.Name, name) {
				return c.Status == store.DomainVerified
			}
		}
		return false
	}
	if o.LoginDomain != "" && !ok(o.LoginDomain, "login") {
		o.LoginDomain = ""
	}
	var kept []string
	for _, d := range o.EmailDomains {
		if ok(d, "email") {
			kept = append(kept, d)
		}
	}
	o.EmailDomains = kept
}

func (d *Directory) ByLoginHost(host string) (*store.Org, bool) {
	o, ok := d.snap.Load().byHost[host]
	return o, ok
}

func (d *Directory) ByEmailDomain(domain string) (*store.Org, bool) {
	o, ok := d.snap.Load().byDomain[domain]
	return o, ok
}

func (d *Directory) BySlug(slug string) (*store.Org, bool) {
	o, ok := d.snap.Load().bySlug[slug]
	return o, ok
}

func (d *Directory) ByID(id string) (*store.Org, bool) {
	o, ok := d.snap.Load().byID[id]
	return o, ok
}

// All returns every org in the snapshot (shared; do not modify).
func (d *Directory) All() []*store.Org {
	s := d.snap.Load()
	out := make([]*store.Org, 0, len(s.byID))
	for _, o := range s.byID {
		out = append(out, o)
	}
	return out
}

// maxOrgDepth bounds parent chains (loops included).
const maxOrgDepth = 16

// Why Nearest found no org.
var (
	// ErrNoParent: the walk reached an org without a parent.
	ErrNoParent = errors.New("idp: no org up the parent chain")
	// ErrChainTooLong: the chain goes on past the bound, or loops (and
	// would go on forever).
	ErrChainTooLong = errors.New("idp: parent chain too long or looping")
)

// MissingParentError is a parent on the way that is not in the directory.
type MissingParentError struct{ ID string }

func (e *MissingParentError) Error() string { return "idp: parent " + e.ID + " not found" }

// Nearest walks from org up through its parents and returns the first
// org for which ok holds: org itself, or one of at most steps ancestors,
// nearest first (ok sees the directory's orgs: do not modify them). It is
// the one walk of the org tree: bounded, and ended by a cycle as by a
// chain past the bound. Each parent is looked up before the bound is
// checked, so a missing one is reported as missing even just past it.
// Without a match the error says why the walk ended: ErrNoParent, a
// *MissingParentError, or ErrChainTooLong.
func (d *Directory) Nearest(org *store.Org, steps int, ok func(*store.Org) bool) (*store.Org, error) {
	// The walk starts at org as given (it may be a snapshot the directory
	// has not loaded yet), then follows the directory.
	lookup := func(id string) (*store.Org, bool) {
		if id == org.ID {
			return org, true
		}
		return d.ByID(id)
	}
	id, err := orgtree.Nearest(org.ID, steps, func(id string) (string, bool) {
		o, found := lookup(id)
		if !found {
			return "", false
		}
		return o.ParentID, true
	}, func(id string) bool {
		o, _ := lookup(id)
		return ok(o)
	})
	var missing *orgtree.MissingError
	switch {
	case errors.As(err, &missing):
		return nil, &MissingParentError{ID: missing.ID}
	case errors.Is(err, orgtree.ErrNoParent):
		return nil, ErrNoParent
	case errors.Is(err, orgtree.ErrTooLong):
		return nil, ErrChainTooLong
	case err != nil:
		return nil, err
	}
	o, _ := lookup(id)
	return o, nil
}
