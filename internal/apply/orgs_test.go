package apply

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/certs"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// An org dropped from the config releases its domains (a renamed slug
// takes them over at once); an org that was never declared there (made
// at runtime) is left alone.
func TestSeedReleasesDomainsOfOrgsDroppedFromConfig(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	runtime := store.Org{ID: "org_rt", Slug: "runtime", Name: "Runtime", LoginDomain: "login.rt.test", EmailDomains: []string{"rt.test"}}
	if err := st.CreateOrg(ctx, runtime); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	now := time.Unix(1_800_000_000, 0)
	acme := config.Org{Slug: "acme", Name: "Acme", LoginDomain: "login.acme.test", EmailDomains: []string{"acme.test"}, Connection: config.Connection{Type: "password"}}
	if err := Orgs(ctx, st, []config.Org{acme}, now, log); err != nil {
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
	if err := Orgs(ctx, st, []config.Org{renamed}, now.Add(time.Hour), log); err != nil {
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
	if err := Orgs(ctx, st, nil, now.Add(2*time.Hour), log); err != nil {
		t.Fatal(err)
	}
	kept, _ := st.GetOrgBySlug(ctx, "acme-corp")
	if len(kept.Domains) != 2 || kept.LoginDomain != "" {
		t.Fatalf("a released org keeps its claims (and nothing else): %+v", kept)
	}
	again := acme
	again.Slug = "acme-inc"
	if err := Orgs(ctx, st, []config.Org{again}, now.Add(3*time.Hour), log); err != nil {
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

// verifyAll marks every claim of org slug verified at t, as a check that
// found its record would.
func verifyAll(t *testing.T, st store.Store, slug string, at time.Time) store.Org {
	t.Helper()
	ctx := context.Background()
	o, err := st.GetOrgBySlug(ctx, slug)
	if err != nil {
		t.Fatal(err)
	}
	o, err = st.UpdateOrg(ctx, o.ID, func(o store.Org) (store.Org, error) {
		for i := range o.Domains {
			c := &o.Domains[i]
			c.Status, c.VerifiedAt, c.FirstVerifiedAt, c.CheckedAt = store.DomainVerified, at, at, at
		}
		return o, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// A verified domain removed from the config and put back (a rollback,
// over one or more deploys and restarts) keeps its token and its
// verification: it routes again at once, with no pending window, and is
// checked at the next tick rather than after the recheck interval.
func TestSeedDomainRemovedAndRestoredKeepsTokenAndVerification(t *testing.T) {
	acme := config.Org{Slug: "acme", Name: "Acme", LoginDomain: "login.acme.test", EmailDomains: []string{"acme.test", "acme-corp.test"}, Connection: config.Connection{Type: "password"}}
	without := func(f func(*config.Org)) []config.Org {
		o := acme
		o.EmailDomains = append([]string{}, acme.EmailDomains...)
		f(&o)
		return []config.Org{o}
	}
	for _, tc := range []struct {
		name string
		// the deploys between the first and the restoring one
		removed [][]config.Org
	}{
		{"login domain", [][]config.Org{without(func(o *config.Org) { o.LoginDomain = "" })}},
		{"email domain", [][]config.Org{without(func(o *config.Org) { o.EmailDomains = o.EmailDomains[1:] })}},
		{"every domain", [][]config.Org{without(func(o *config.Org) { o.LoginDomain, o.EmailDomains = "", nil })}},
		{"login domain renamed, then back", [][]config.Org{without(func(o *config.Org) { o.LoginDomain = "sso.acme.test" })}},
		{"over several deploys", [][]config.Org{
			without(func(o *config.Org) { o.LoginDomain = "" }),
			without(func(o *config.Org) { o.LoginDomain, o.EmailDomains = "", o.EmailDomains[1:] }),
			without(func(o *config.Org) { o.LoginDomain = "" }),
		}},
		{"org dropped from the config", [][]config.Org{nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			quiet := slog.New(slog.DiscardHandler)
			now := time.Unix(1_800_000_000, 0)
			// Every deploy is a restart: the store is opened again.
			deploy := func(orgs []config.Org) store.Store {
				t.Helper()
				st, err := badgerstore.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				now = now.Add(time.Hour)
				if err := Orgs(ctx, st, orgs, now, quiet); err != nil {
					t.Fatal(err)
				}
				return st
			}
			st := deploy([]config.Org{acme})
			before := verifyAll(t, st, "acme", now)
			st.Close()
			gone := map[string]bool{} // claims unused in some deploy
			for _, orgs := range tc.removed {
				st = deploy(orgs)
				o, err := st.GetOrgBySlug(ctx, "acme")
				if err != nil {
					t.Fatal(err)
				}
				for _, was := range before.Domains {
					c, ok := o.Claim(was.Kind, was.Name)
					if !ok || c.Token != was.Token || c.Status != store.DomainVerified {
						t.Fatalf("claim %s/%s kept: %+v (found %v)", was.Kind, was.Name, c, ok)
					}
					if !o.Uses(c) {
						gone[was.Kind+"/"+was.Name] = true
					}
				}
				d, err := idp.NewDirectory(ctx, st, quiet)
				if err != nil {
					t.Fatal(err)
				}
				d.RequireVerified()
				if err := d.Reload(ctx); err != nil {
					t.Fatal(err)
				}
				if lc, _ := o.Claim("login", "login.acme.test"); !o.Uses(lc) {
					if _, ok := d.ByLoginHost("login.acme.test"); ok {
						t.Fatal("a removed login domain routes")
					}
				}
				st.Close()
			}
			st = deploy([]config.Org{acme})
			after, err := st.GetOrgBySlug(ctx, "acme")
			if err != nil {
				t.Fatal(err)
			}
			if after.ID != before.ID || len(after.Domains) < len(before.Domains) {
				t.Fatalf("claims after the rollback: %+v", after.Domains)
			}
			for _, was := range before.Domains {
				c, ok := after.Claim(was.Kind, was.Name)
				if !ok || !after.Uses(c) || c.Token != was.Token || c.Status != store.DomainVerified || !c.FirstVerifiedAt.Equal(was.FirstVerifiedAt) {
					t.Errorf("claim %s/%s after the rollback: %+v, was %+v", was.Kind, was.Name, c, was)
				}
				// Back from being unused: checked at the next tick.
				if g := gone[was.Kind+"/"+was.Name]; g != certs.Due(c, now, 24*time.Hour) {
					t.Errorf("claim %s/%s due at once: %v, want %v", was.Kind, was.Name, !g, g)
				}
			}
			d, err := idp.NewDirectory(ctx, st, quiet)
			if err != nil {
				t.Fatal(err)
			}
			d.RequireVerified()
			if err := d.Reload(ctx); err != nil {
				t.Fatal(err)
			}
			if o, ok := d.ByLoginHost("login.acme.test"); !ok || o.Slug != "acme" {
				t.Fatal("the restored login domain does not route at once")
			}
			for _, e := range acme.EmailDomains {
				if o, ok := d.ByEmailDomain(e); !ok || o.Slug != "acme" {
					t.Fatalf("the restored email domain %s does not route at once", e)
				}
			}
		})
	}
}

// Tokens are derived per (org, domain): an org whose claim record is lost
// gets the same token again; another org claiming the same name gets
// another one, and so does the same org in another deployment.
func TestSeedDomainTokensPerOrgAndDomain(t *testing.T) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	now := time.Unix(1_800_000_000, 0)
	open := func() store.Store {
		st := badgertest.Open(t)
		return st
	}
	org := func(slug, login string, email ...string) config.Org {
		return config.Org{Slug: slug, Name: slug, LoginDomain: login, EmailDomains: email, Connection: config.Connection{Type: "password"}}
	}
	st := open()
	if err := Orgs(ctx, st, []config.Org{org("acme", "login.acme.test", "acme.test", "login.acme.test")}, now, quiet); err != nil {
		t.Fatal(err)
	}
	first, _ := st.GetOrgBySlug(ctx, "acme")
	if len(first.Domains) != 3 {
		t.Fatalf("claims: %+v", first.Domains)
	}
	login, _ := first.Claim("login", "login.acme.test")
	email, _ := first.Claim("email", "acme.test")
	same, _ := first.Claim("email", "login.acme.test")
	if login.Token == email.Token || login.Token != same.Token || len(login.Token) != 26 {
		t.Fatalf("tokens: login %q, email %q, email on the login name %q", login.Token, email.Token, same.Token)
	}

	// The claims are lost (an operator's repair, a store copied without
	// them): made again, they carry the same tokens.
	if _, err := st.UpdateOrg(ctx, first.ID, func(o store.Org) (store.Org, error) {
		o.Domains = nil
		return o, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := Orgs(ctx, st, []config.Org{org("acme", "login.acme.test", "acme.test", "login.acme.test")}, now, quiet); err != nil {
		t.Fatal(err)
	}
	again, _ := st.GetOrgBySlug(ctx, "acme")
	for _, was := range first.Domains {
		if c, ok := again.Claim(was.Kind, was.Name); !ok || c.Token != was.Token || c.Status != store.DomainPending {
			t.Errorf("claim %s/%s made again: %+v, was %+v", was.Kind, was.Name, c, was)
		}
	}

	// Another org declaring the same names (alongside, or after acme drops
	// them) gets tokens of its own: acme's record proves nothing for it.
	for _, orgs := range [][]config.Org{
		{org("acme", "login.acme.test", "acme.test"), org("globex", "login.acme.test", "acme.test")},
		{org("acme", ""), org("globex", "login.acme.test", "acme.test")},
	} {
		if err := Orgs(ctx, st, orgs, now, quiet); err != nil {
			t.Fatal(err)
		}
		globex, _ := st.GetOrgBySlug(ctx, "globex")
		for _, k := range [][2]string{{"login", "login.acme.test"}, {"email", "acme.test"}} {
			g, _ := globex.Claim(k[0], k[1])
			a, _ := first.Claim(k[0], k[1])
			if g.Token == "" || g.Token == a.Token {
				t.Errorf("%s: globex's token %q, acme's %q", k, g.Token, a.Token)
			}
		}
	}

	// Another deployment (another secret) gives the same org and name
	// another token.
	other := open()
	if _, err := other.Secret(ctx, domainTokenKey, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	if err := other.CreateOrg(ctx, store.Org{ID: first.ID, Slug: "acme", Name: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := Orgs(ctx, other, []config.Org{org("acme", "login.acme.test")}, now, quiet); err != nil {
		t.Fatal(err)
	}
	o, _ := other.GetOrgBySlug(ctx, "acme")
	if c, _ := o.Claim("login", "login.acme.test"); c.Token == login.Token || c.Token != domainToken(make([]byte, 32), first.ID, "login.acme.test") {
		t.Errorf("token in another deployment: %q (this one's %q)", c.Token, login.Token)
	}
}
