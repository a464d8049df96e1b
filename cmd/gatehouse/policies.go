package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/loop"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// policyLoader gathers policy sources (files named in the config, org
// policies in the store), compiles them when anything changed, and swaps
// the result in. A set that does not compile never replaces a working one.
type policyLoader struct {
	cfg    *config.Config
	st     store.Store
	orgs   *idp.Directory
	engine *policy.Rego
	log    *slog.Logger
	loader *policy.Loader
}

// paths are the policy files the config names.
func (p *policyLoader) paths() []string {
	paths := []string{p.cfg.Policy.Platform}
	for _, r := range p.cfg.Routes {
		paths = append(paths, r.Policy)
	}
	for _, o := range p.cfg.Orgs {
		paths = append(paths, o.Policy)
	}
	for _, c := range p.cfg.Clients {
		paths = append(paths, c.Policy)
	}
	return paths
}

// load builds the sources; files of orgs declared with `policy:` are
// written to the store (after the whole set compiled), so every node and
// the admin tools see the org's policy in one place.
func (p *policyLoader) sources() (policy.Sources, map[string][]policy.Module, error) {
	src := policy.Sources{Routes: map[string][]policy.Module{}, Orgs: map[string][]policy.Module{}, OrgParent: map[string]string{}}
	var err error
	if f := p.cfg.Policy.Platform; f != "" {
		if src.Platform, err = policy.LoadModules(f); err != nil {
			return src, nil, err
		}
	}
	for _, r := range p.cfg.Routes {
		if r.Policy != "" {
			if src.Routes[r.ID], err = policy.LoadModules(r.Policy); err != nil {
				return src, nil, err
			}
		}
	}
	for _, c := range p.cfg.Clients {
		if c.Policy != "" {
			if src.Clients == nil {
				src.Clients = map[string][]policy.Module{}
			}
			if src.Clients[c.ID], err = policy.LoadModules(c.Policy); err != nil {
				return src, nil, err
			}
		}
	}
	fromFiles := map[string][]policy.Module{} // org ID → modules read from its file
	for _, co := range p.cfg.Orgs {
		if co.Policy == "" {
			continue
		}
		o, ok := p.orgs.BySlug(co.Slug)
		if !ok {
			continue
		}
		mods, err := policy.LoadModules(co.Policy)
		if err != nil {
			return src, nil, err
		}
		fromFiles[o.ID] = mods
	}
	orgData := map[string]any{}
	for _, o := range p.orgs.All() {
		src.OrgParent[o.ID] = o.ParentID
		attrs := map[string]any{}
		for k, v := range o.Attributes {
			attrs[k] = v
		}
		orgData[o.Slug] = map[string]any{"id": o.ID, "name": o.Name, "attributes": attrs}
		if mods, ok := fromFiles[o.ID]; ok {
			src.Orgs[o.ID] = mods
		} else if len(o.Policy) > 0 {
			for _, m := range o.Policy {
				src.Orgs[o.ID] = append(src.Orgs[o.ID], policy.Module{Name: "store:" + o.Slug + "/" + m.Name, Text: m.Text})
			}
		}
	}
	src.Data = map[string]any{"gatehouse": map[string]any{"orgs": orgData}}
	return src, fromFiles, nil
}

// reload compiles and swaps if anything changed, then writes the org
// policies read from files to the store. first makes a failure fatal
// (Gatehouse does not start without its policies).
func (p *policyLoader) reload(ctx context.Context, first bool) error {
	if p.loader == nil {
		p.loader = policy.NewLoader(p.engine, p.log)
	}
	if !p.loader.Settled(p.paths(), first) {
		return nil // files are changing: look again at the next interval
	}
	src, fromFiles, err := p.sources()
	applied, broken, err := p.loader.Apply(ctx, src, err, first)
	if err != nil {
		return fmt.Errorf("server: policies: %w", err)
	}
	if !applied {
		return nil
	}
	// A policy set coming into force, and an org policy refused, are in
	// the audit trail (the platform's chain, and the org's).
	version := ""
	if s := p.engine.Current(); s != nil {
		version = s.Version
	}
	p.audit(ctx, store.AuditEvent{Actor: "gatehouse", Action: "policy.load", Outcome: "success", Details: map[string]string{"version": version}})
	for orgID, err := range broken {
		p.audit(ctx, store.AuditEvent{OrgID: orgID, Actor: "gatehouse", Action: "policy.load", Outcome: "failure", Details: map[string]string{"version": version, "reason": err.Error()}})
	}
	for orgID := range broken {
		delete(fromFiles, orgID)
	}
	for orgID, mods := range fromFiles {
		want := make([]store.PolicyModule, len(mods))
		for i, m := range mods {
			want[i] = store.PolicyModule{Name: m.Name, Text: m.Text}
		}
		if cur, ok := p.orgs.ByID(orgID); ok && slices.Equal(cur.Policy, want) {
			continue // already stored: no write
		}
		if _, err := p.st.UpdateOrg(ctx, orgID, func(o store.Org) (store.Org, error) {
			if !slices.Equal(o.Policy, want) {
				o.Policy, o.UpdatedAt = want, time.Now()
			}
			return o, nil
		}); err != nil {
			p.log.Error("policy: saving org policy to the store failed", "org", orgID, "err", err)
		}
	}
	return nil
}

// run reloads every interval until ctx ends.
func (p *policyLoader) run(ctx context.Context, every time.Duration, kick <-chan struct{}) {
	loop.EveryOrKick(ctx, every, kick, func(ctx context.Context) {
		if err := p.orgs.Reload(ctx); err != nil {
			p.log.Error("policy: org reload failed", "err", err)
			return
		}
		_ = p.reload(ctx, false)
	})
}

// audit records e; a failure is logged, never fatal to a reload.
func (p *policyLoader) audit(ctx context.Context, e store.AuditEvent) {
	e.Time = time.Now()
	if err := p.st.AppendAudit(ctx, e); err != nil {
		p.log.Error("policy: audit write failed", "action", e.Action, "err", err)
	}
}
