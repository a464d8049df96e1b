package certs

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/loop"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/store"
)

// DomainCheckerOptions configure a DomainChecker.
type DomainCheckerOptions struct {
	Store store.Store
	// Orgs is reloaded when a claim's status changes: routing and
	// certificates read it, not the store.
	Orgs     Reloader
	Verifier *Verifier
	Recheck  time.Duration
	Logger   *slog.Logger
	// Metrics, if set, gets the claims' states after each sweep.
	Metrics *telemetry.Metrics
}

// Reloader reloads what it holds from the store.
type Reloader interface {
	Reload(ctx context.Context) error
}

// NewDomainChecker checks the orgs' domain claims (see DomainChecker).
func NewDomainChecker(o DomainCheckerOptions) *DomainChecker {
	return &DomainChecker{st: o.Store, orgs: o.Orgs, v: o.Verifier, recheck: o.Recheck, log: o.Logger, now: time.Now, metrics: o.Metrics}
}

// DomainChecker verifies the orgs' domain claims in DNS: pending claims
// at every tick (so a customer who adds the record sees it take effect
// within one), verified and suspended ones every recheck.
type DomainChecker struct {
	st      store.Store
	orgs    Reloader
	v       *Verifier
	recheck time.Duration
	log     *slog.Logger
	now     func() time.Time
	// metrics, if set, gets the claims' states after each sweep.
	metrics *telemetry.Metrics
}

// grace is how long a verified domain's record must be seen gone before
// it is suspended: recheck, at most an hour (longer than most negative
// DNS caching).
func (c *DomainChecker) grace() time.Duration { return min(c.recheck, time.Hour) }

// tick is how often pending claims are looked up.
func (c *DomainChecker) tick() time.Duration { return min(c.recheck, 30*time.Second) }

// Run checks until ctx ends.
func (c *DomainChecker) Run(ctx context.Context) {
	c.checkAll(ctx)
	loop.Every(ctx, c.tick(), c.checkAll)
}

func (c *DomainChecker) checkAll(ctx context.Context) {
	orgs, err := c.st.ListOrgs(ctx)
	if err != nil {
		c.log.Error("domains: list orgs", "err", err)
		return
	}
	// Routing and certificates read the org directory, not the store: a
	// status change takes effect when the directory is reloaded (besides
	// the periodic reload). Reload after the first change at once, then at
	// most every second (or four times the last reload's duration, for
	// very many orgs) while the sweep goes on, and once at its end.
	var (
		changed    bool
		nextReload time.Time
		reload     = func() {
			start := time.Now()
			if err := c.orgs.Reload(ctx); err != nil {
				c.log.Error("domains: reload orgs", "err", err)
			} else {
				changed = false // a failed reload is tried again, at the latest at the end
			}
			nextReload = time.Now().Add(max(time.Second, 4*time.Since(start)))
		}
	)
	counts := map[[2]string]int{} // kind, state → claims, as the sweep leaves them
	count := func(o store.Org) {
		for _, cl := range o.Domains {
			state := cl.Status
			if !o.Uses(cl) {
				state = "released"
			}
			counts[[2]string{cl.Kind, state}]++
		}
	}
	for _, o := range orgs {
		results := map[string]store.DomainClaim{}
		for _, cl := range o.Domains {
			if !o.Uses(cl) || !Due(cl, c.now(), c.recheck) {
				// (a released org's kept claim is not checked)
				continue
			}
			r := c.v.Check(ctx, cl)
			if ctx.Err() != nil {
				return // shutting down: a canceled lookup proves nothing
			}
			results[cl.Kind+"/"+cl.Name] = Next(cl, r, c.now(), c.grace())
		}
		if len(results) == 0 {
			count(o)
			continue
		}
		type transition struct{ from, to store.DomainClaim }
		var transitions []transition
		saved, err := c.st.UpdateOrg(ctx, o.ID, func(cur store.Org) (store.Org, error) {
			transitions = transitions[:0]
			for i, cl := range cur.Domains {
				next, ok := results[cl.Kind+"/"+cl.Name]
				if !ok || next.Token != cl.Token {
					continue // re-claimed meanwhile: checked next time
				}
				if next.Status != cl.Status || next.Detail != cl.Detail && next.Status != store.DomainPending {
					transitions = append(transitions, transition{cl, next})
				}
				cur.Domains[i] = next
			}
			return cur, nil
		})
		if err != nil {
			c.log.Error("domains: save checks", "org", o.Slug, "err", err)
			count(o)
			continue
		}
		count(saved)
		for _, tr := range transitions {
			t := tr.to
			typ, name, value := c.v.Proof(t)
			switch {
			case t.Status != tr.from.Status:
				changed = true
				switch t.Status {
				case store.DomainVerified:
					c.log.Info("domains: verified", "org", o.Slug, "domain", t.Name, "kind", t.Kind, "method", t.Method)
				case store.DomainSuspended:
					// Name the record that proved it (a CNAME-verified
					// domain lost its CNAME, not a TXT record).
					c.log.Warn("domains: suspended: its DNS record no longer verifies", "org", o.Slug, "domain", t.Name, "kind", t.Kind,
						"reason", t.Detail, "record_type", typ, "record", name, "value", value)
				}
			case t.Detail != "":
				// Still serving; the operator should know before it stops.
				c.log.Warn("domains: check failed", "org", o.Slug, "domain", t.Name, "kind", t.Kind, "status", t.Status, "reason", t.Detail)
			}
		}
		if changed && !time.Now().Before(nextReload) {
			reload()
		}
		for _, cl := range results {
			if cl.Status == store.DomainPending && pendingFirstSeen(o, cl) {
				name, value := Record(cl)
				attrs := []any{"org", o.Slug, "domain", cl.Name, "kind", cl.Kind, "create_txt_record", name, "value", value}
				if cl.Kind == "login" && c.v.CNAMETarget != "" {
					attrs = append(attrs, "or_cname_to", c.v.CNAMETarget)
				}
				c.log.Info("domains: waiting for verification", append(attrs, "reason", cl.Detail)...)
			}
		}
	}
	if changed {
		reload()
	}
	if c.metrics != nil {
		for _, kind := range []string{"login", "email"} {
			for _, state := range []string{store.DomainPending, store.DomainVerified, store.DomainSuspended, "released"} {
				c.metrics.DomainClaims.WithLabelValues(kind, state).Set(float64(counts[[2]string{kind, state}]))
			}
		}
	}
}

// pendingFirstSeen: a pending claim not checked before (log the record to
// create once, not at every tick).
func pendingFirstSeen(o store.Org, cl store.DomainClaim) bool {
	for _, old := range o.Domains {
		if old.Name == cl.Name && old.Kind == cl.Kind {
			return old.CheckedAt.IsZero()
		}
	}
	return false
}

// DomainsHandler lists every claim with its status and the record that
// proves it (ops listener: the operator's view; org admins get theirs
// with delegated administration).
func DomainsHandler(st store.Store, cnameTarget string) http.HandlerFunc {
	type row struct {
		Org    string `json:"org"`
		Domain string `json:"domain"`
		Kind   string `json:"kind"`
		Status string `json:"status"`
		// Method is the record that proved the claim: "txt" or "cname".
		Method string `json:"method,omitempty"`
		Record string `json:"txt_record"`
		Value  string `json:"txt_value"`
		// CNAMETarget: a login domain may instead be a CNAME to it.
		CNAMETarget string    `json:"cname_target,omitempty"`
		CheckedAt   time.Time `json:"checked_at,omitzero"`
		VerifiedAt  time.Time `json:"verified_at,omitzero"`
		Detail      string    `json:"detail,omitempty"`
		Failures    int       `json:"failures,omitempty"`
		// Released: a claim an org keeps for a domain it no longer has.
		Released bool `json:"released,omitempty"`
	}
	return func(w http.ResponseWriter, r *http.Request) {
		orgs, err := st.ListOrgs(r.Context())
		if err != nil {
			http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		out := []row{}
		for _, o := range orgs {
			for _, c := range o.Domains {
				name, value := Record(c)
				r := row{Org: o.Slug, Domain: c.Name, Kind: c.Kind, Status: c.Status, Method: c.Method, Record: name, Value: value,
					CheckedAt: c.CheckedAt, VerifiedAt: c.VerifiedAt, Detail: c.Detail, Failures: c.Failures, Released: !o.Uses(c)}
				if c.Kind == "login" {
					r.CNAMETarget = cnameTarget
				}
				out = append(out, r)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	}
}
