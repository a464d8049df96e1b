package server

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
)

// An org dropped from the config releases its domains (a renamed slug
// takes them over at once); an org that was never declared there (made
// at runtime) is left alone.
func TestSeedReleasesDomainsOfOrgsDroppedFromConfig(t *testing.T) {
	ctx := context.Background()
	st, err := badgerstore.Open("", badgerstore.WithInMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runtime := store.Org{ID: "org_rt", Slug: "runtime", Name: "Runtime", LoginDomain: "login.rt.test", EmailDomains: []string{"rt.test"}}
	if err := st.CreateOrg(ctx, runtime); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	now := time.Unix(1_800_000_000, 0)
	acme := config.Org{Slug: "acme", Name: "Acme", LoginDomain: "login.acme.test", EmailDomains: []string{"acme.test"}, Connection: config.Connection{Type: "password"}}
	if err := seed(ctx, st, []config.Org{acme}, now, log); err != nil {
		t.Fatal(err)
	}
	// The customer verified the domain under the old slug.
	before, _ := st.GetOrgBySlug(ctx, "acme")
	if _, err := st.UpdateOrg(ctx, before.ID, func(o store.Org) (store.Org, error) {
		for i := range o.Domains {
			o.Domains[i].Status, o.Domains[i].VerifiedAt = store.DomainVerified, now
		}
		return o, nil
	}); err != nil {
		t.Fatal(err)
	}
	renamed := acme
	renamed.Slug = "acme-corp"
	if err := seed(ctx, st, []config.Org{renamed}, now.Add(time.Hour), log); err != nil {
		t.Fatal(err)
	}
	old, err := st.GetOrgBySlug(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if old.LoginDomain != "" || len(old.EmailDomains) != 0 || len(old.Domains) != 0 || old.Declared {
		t.Fatalf("dropped org kept its domains: %+v", old)
	}
	// The renamed org took the claims over: same tokens, still verified,
	// so the customer publishes nothing new.
	taker, _ := st.GetOrgBySlug(ctx, "acme-corp")
	if len(taker.Domains) != 2 {
		t.Fatalf("claims: %+v", taker.Domains)
	}
	for _, c := range taker.Domains {
		was := before.Domains[0]
		if c.Kind == "email" {
			was = before.Domains[1]
		}
		if c.Token != was.Token || c.Status != store.DomainVerified {
			t.Errorf("claim %s: %+v, was %+v", c.Name, c, was)
		}
	}
	// A rename shipped as two deploys: the org goes (keeping its claims),
	// then comes back under another slug and takes them over.
	if err := seed(ctx, st, nil, now.Add(2*time.Hour), log); err != nil {
		t.Fatal(err)
	}
	kept, _ := st.GetOrgBySlug(ctx, "acme-corp")
	if len(kept.Domains) != 2 || kept.LoginDomain != "" {
		t.Fatalf("a released org keeps its claims (and nothing else): %+v", kept)
	}
	again := acme
	again.Slug = "acme-inc"
	if err := seed(ctx, st, []config.Org{again}, now.Add(3*time.Hour), log); err != nil {
		t.Fatal(err)
	}
	inc, _ := st.GetOrgBySlug(ctx, "acme-inc")
	corp, _ := st.GetOrgBySlug(ctx, "acme-corp")
	if len(inc.Domains) != 2 || inc.Domains[0].Token != before.Domains[0].Token || inc.Domains[0].Status != store.DomainVerified || len(corp.Domains) != 0 {
		t.Fatalf("second deploy: taker %+v, old holder %+v", inc.Domains, corp.Domains)
	}
	renamed = again

	d, err := idp.NewDirectory(ctx, st, log)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := d.ByLoginHost("login.acme.test"); !ok || o.Slug != renamed.Slug {
		t.Fatalf("login.acme.test belongs to %+v", o)
	}
	if o, ok := d.ByLoginHost("login.rt.test"); !ok || o.Slug != "runtime" {
		t.Fatalf("an org made at runtime lost its domain: %+v", o)
	}
}
