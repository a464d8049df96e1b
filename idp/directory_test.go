package idp

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// A domain claimed by two orgs (one left in the store by an old config,
// or claimed later by another customer) belongs to the earliest claim,
// never to whichever org happens to be listed last; the other org loses
// it entirely, and the conflict is logged once.
func TestDirectoryContestedDomains(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	t0 := time.Unix(1_800_000_000, 0)
	claims := func(verifiedAt time.Time) []store.DomainClaim {
		return []store.DomainClaim{
			{Name: "login.x.test", Kind: "login", Token: "t", Status: store.DomainVerified, VerifiedAt: verifiedAt},
			{Name: "x.test", Kind: "email", Token: "t", Status: store.DomainVerified, VerifiedAt: verifiedAt},
		}
	}
	// "old" is the older org; "new" verified its claims first.
	for _, o := range []store.Org{
		{ID: "org_z", Slug: "old", Name: "Old", LoginDomain: "login.x.test", EmailDomains: []string{"x.test", "old.test"}, Domains: claims(t0.Add(5 * time.Hour)), CreatedAt: t0},
		{ID: "org_a", Slug: "new", Name: "New", LoginDomain: "LOGIN.X.TEST", EmailDomains: []string{"X.test"}, Domains: claims(t0.Add(2 * time.Hour)), CreatedAt: t0.Add(time.Hour)},
	} {
		if err := st.CreateOrg(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	d, err := NewDirectory(ctx, st, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	check := func(want, other string) {
		t.Helper()
		if o, ok := d.ByLoginHost("login.x.test"); !ok || o.Slug != want {
			t.Fatalf("login host belongs to %v, want %s", o, want)
		}
		if o, ok := d.ByEmailDomain("x.test"); !ok || o.Slug != want {
			t.Fatalf("email domain belongs to %v, want %s", o, want)
		}
		loser, _ := d.BySlug(other)
		for _, e := range loser.EmailDomains {
			if strings.EqualFold(e, "x.test") {
				t.Fatalf("%s kept the contested email domain: %v", other, loser.EmailDomains)
			}
		}
		if loser.LoginDomain != "" {
			t.Fatalf("%s kept the contested login domain %q", other, loser.LoginDomain)
		}
	}
	// Without verification the older org keeps them, whatever the order.
	for range 5 {
		if err := d.Reload(ctx); err != nil {
			t.Fatal(err)
		}
		check("old", "new")
	}
	if o, ok := d.ByEmailDomain("old.test"); !ok || o.Slug != "old" {
		t.Fatal("an uncontested domain was lost")
	}
	if n := strings.Count(logs.String(), "claimed by more than one org"); n != 1 {
		t.Fatalf("conflict logged %d times, want once:\n%s", n, logs.String())
	}
	// With verification the first verified claim wins.
	d.RequireVerified()
	if err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	check("new", "old")
	if !strings.Contains(logs.String(), "login domain login.x.test: new, not old") {
		t.Fatalf("log: %s", logs.String())
	}
	// A brief suspension and re-verification does not lose the rank:
	// it follows when the claim was first verified.
	if _, err := st.UpdateOrg(ctx, "org_a", func(o store.Org) (store.Org, error) {
		for i := range o.Domains {
			o.Domains[i].FirstVerifiedAt = o.Domains[i].VerifiedAt
			o.Domains[i].VerifiedAt = t0.Add(10 * time.Hour)
		}
		return o, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	check("new", "old")
}
