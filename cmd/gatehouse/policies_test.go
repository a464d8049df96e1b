package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

func decide(t *testing.T, r *policy.Rego, orgID, slug string) policy.Decision {
	t.Helper()
	return r.Decide(context.Background(), &policy.Input{User: policy.User{ID: "u", Roles: []string{"member"}}, Org: policy.Org{ID: orgID, Slug: slug}, Route: policy.Route{ID: "app"}})
}

// Org policies reload from the store (where other nodes and, later, org
// admins write them) as well as from files.
func TestPolicyLoaderReloadsFromStoreAndFiles(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	for _, o := range []store.Org{{ID: "org_a", Slug: "a", Name: "A"}, {ID: "org_b", Slug: "b", Name: "B", ParentID: "org_a"}, {ID: "org_c", Slug: "c", Name: "C"}} {
		if err := st.CreateOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cFile := filepath.Join(dir, "c.rego")
	if err := os.WriteFile(cFile, []byte("package gatehouse.authz\nallow := true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	orgs, err := idp.NewDirectory(ctx, st, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	engine := policy.NewRego(10*time.Second, nil)
	l := &policyLoader{cfg: &config.Config{Orgs: []config.Org{{Slug: "c", Policy: cFile}}}, st: st, orgs: orgs, engine: engine, log: slog.New(slog.DiscardHandler)}
	if err := l.reload(ctx, true); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, engine, "org_a", "a"); !d.Allow {
		t.Fatalf("no policy for a: %v", d.Reasons)
	}
	// Org c's file was stored for other nodes to see.
	if c, _ := st.GetOrg(ctx, "org_c"); len(c.Policy) != 1 || c.Policy[0].Text == "" {
		t.Fatalf("org c's policy not in the store: %+v", c.Policy)
	}

	// Another node (or an admin) writes a policy for org a into the store.
	_, err = st.UpdateOrg(ctx, "org_a", func(o store.Org) (store.Org, error) {
		o.Policy = []store.PolicyModule{{Name: "a.rego", Text: "package gatehouse.authz\ndefault allow := false\nreasons contains \"a is closed\"\n"}}
		return o, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := orgs.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	_ = l.reload(ctx, false) // a changed file is read once it has settled
	if err := l.reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, engine, "org_a", "a"); d.Allow || d.Reasons[0] != "a is closed" {
		t.Fatalf("store policy for a not in force: %+v", d)
	}
	// b has no policy of its own: its parent's applies.
	if d := decide(t, engine, "org_b", "b"); d.Allow {
		t.Fatal("sub-org did not inherit its parent's policy")
	}

	// A broken policy in the store does not replace org a's working one,
	// and does not hold back others' updates.
	_, _ = st.UpdateOrg(ctx, "org_a", func(o store.Org) (store.Org, error) {
		o.Policy = []store.PolicyModule{{Name: "a.rego", Text: "package gatehouse.authz\nallow if {"}}
		return o, nil
	})
	_, _ = st.UpdateOrg(ctx, "org_c", func(o store.Org) (store.Org, error) { return o, nil })
	if err := os.WriteFile(cFile, []byte("package gatehouse.authz\ndefault allow := false\nreasons contains \"c changed\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = orgs.Reload(ctx)
	_ = l.reload(ctx, false) // a changed file is read once it has settled
	if err := l.reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, engine, "org_a", "a"); d.Allow || d.Reasons[0] != "a is closed" {
		t.Fatalf("org a after its policy broke: %+v", d)
	}
	if d := decide(t, engine, "org_c", "c"); d.Allow || d.Reasons[0] != "c changed" {
		t.Fatalf("org c's update held back by org a's broken policy: %+v", d)
	}
	// A fresh node that never had a good version of org a denies org a,
	// and starts: one tenant's broken policy cannot stop a restart.
	engine2 := policy.NewRego(10*time.Second, nil)
	l2 := &policyLoader{cfg: l.cfg, st: st, orgs: orgs, engine: engine2, log: l.log}
	if err := l2.reload(ctx, true); err != nil {
		t.Fatalf("start with one org's broken policy: %v", err)
	}
	if d := decide(t, engine2, "org_a", "a"); d.Allow || d.Err == nil || !strings.Contains(d.Err.Error(), "does not compile") {
		t.Fatalf("org a with a broken policy and no good version: %+v", d)
	}
	if d := decide(t, engine2, "org_b", "b"); d.Allow {
		t.Fatal("sub-org of a broken org allowed")
	}
}

// A policy file that changes between two checks (caught mid-write) is not
// compiled until it settles.
func TestReloadWaitsForFilesToSettle(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	orgs, _ := idp.NewDirectory(ctx, st, slog.Default())
	f := filepath.Join(t.TempDir(), "p.rego")
	write := func(text string) {
		if err := os.WriteFile(f, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("package gatehouse.authz\ndefault allow := false\n")
	engine := policy.NewRego(10*time.Second, nil)
	l := &policyLoader{cfg: &config.Config{Policy: config.Policy{Platform: f}}, st: st, orgs: orgs, engine: engine, log: slog.New(slog.DiscardHandler)}
	if err := l.reload(ctx, true); err != nil {
		t.Fatal(err)
	}
	v1 := engine.Version()
	// Half written: the first check sees a change and waits.
	write("package gatehouse.authz\nallow := true\n")
	_ = l.reload(ctx, false)
	if engine.Version() != v1 {
		t.Fatal("a file that just changed was compiled before it settled")
	}
	_ = l.reload(ctx, false)
	if engine.Version() == v1 {
		t.Fatal("a settled change was not loaded")
	}
}
