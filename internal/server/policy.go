package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
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
	cfg     *config.Config
	st      store.Store
	orgs    *idp.Directory
	engine  *policy.Rego
	log     *slog.Logger
	lastKey string
	// badKey and badErr remember the last failure, so a broken file is
	// reported once, not at every interval.
	badKey, badErr string
	// files is the fingerprint of the policy files at the last check.
	files string
}

// filesSettled reports whether the policy files look the same as at the
// previous check (always true at start, when nothing is being edited
// under a running Gatehouse).
func (p *policyLoader) filesSettled(first bool) bool {
	var b strings.Builder
	paths := []string{p.cfg.Policy.Platform}
	for _, r := range p.cfg.Routes {
		paths = append(paths, r.Policy)
	}
	for _, o := range p.cfg.Orgs {
		paths = append(paths, o.Policy)
	}
	for _, path := range paths {
		if path == "" {
			continue
		}
		fp, err := policy.Fingerprint(path)
		if err != nil {
			fp = "error:" + err.Error()
		}
		b.WriteString(fp)
		b.WriteByte('|')
	}
	prev := p.files
	p.files = b.String()
	return first || prev == p.files
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

func sourcesKey(src policy.Sources) string {
	h := sha256.New()
	// Canonical forms only: a key that changed on every call would
	// recompile and swap the set at every interval.
	dj, _ := json.Marshal(src.Data)
	h.Write(dj)
	write := func(layer string, mods []policy.Module) {
		for _, m := range mods {
			fmt.Fprintf(h, "%s\x00%s\x00%s\x00", layer, m.Name, m.Text)
		}
	}
	write("platform", src.Platform)
	for _, m := range []map[string][]policy.Module{src.Routes, src.Orgs} {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			write(k, m[k])
		}
	}
	parents := make([]string, 0, len(src.OrgParent))
	for k, v := range src.OrgParent {
		parents = append(parents, k+">"+v)
	}
	slices.Sort(parents)
	fmt.Fprintf(h, "%v", parents)
	return hex.EncodeToString(h.Sum(nil))
}

// reload compiles and swaps if anything changed. first makes a failure
// fatal (Gatehouse does not start without its policies).
func (p *policyLoader) reload(ctx context.Context, first bool) error {
	if !p.filesSettled(first) {
		return nil // files are changing: look again at the next interval
	}
	src, fromFiles, err := p.sources()
	if err != nil {
		return p.fail(first, "", err)
	}
	key := sourcesKey(src)
	if key == p.lastKey || key == p.badKey {
		return nil
	}
	set, broken, err := policy.CompileIsolated(ctx, src, p.engine.Current())
	if err != nil {
		return p.fail(first, key, err)
	}
	p.badKey, p.badErr = "", ""
	for orgID, err := range broken {
		// One org's policy does not hold back the others; that org keeps
		// its last good policy, or is denied if it never had one.
		p.log.Error("policy: org policy not loaded; its last good version stays in force (or, with none, the org is denied)",
			"org", orgID, "err", err)
		delete(fromFiles, orgID)
	}
	p.engine.Swap(set)
	p.lastKey = key
	p.log.Info("policy: loaded", "version", set.Version, "platform", len(src.Platform) > 0, "routes", len(src.Routes), "orgs", len(src.Orgs))
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

func (p *policyLoader) fail(first bool, key string, err error) error {
	if first {
		return fmt.Errorf("server: policies: %w", err)
	}
	if err.Error() == p.badErr {
		return nil
	}
	p.badKey, p.badErr = key, err.Error()
	version := ""
	if s := p.engine.Current(); s != nil {
		version = s.Version
	}
	p.log.Error("policy: new policies not loaded; the last good set stays in force", "version", version, "err", err)
	return nil
}

// run reloads every interval until ctx ends.
func (p *policyLoader) run(ctx context.Context, every time.Duration) {
	loop.Every(ctx, every, func(ctx context.Context) {
		if err := p.orgs.Reload(ctx); err != nil {
			p.log.Error("policy: org reload failed", "err", err)
			return
		}
		_ = p.reload(ctx, false)
	})
}
