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
	d, err := idp.NewDirectory(ctx, st, log)
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := d.ByLoginHost("login.acme.test"); !ok || o.Slug != "acme-corp" {
		t.Fatalf("login.acme.test belongs to %+v", o)
	}
	if o, ok := d.ByLoginHost("login.rt.test"); !ok || o.Slug != "runtime" {
		t.Fatalf("an org made at runtime lost its domain: %+v", o)
	}
}
