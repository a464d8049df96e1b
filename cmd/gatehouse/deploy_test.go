package main

import (
	"context"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/apply"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// The certificate decision names an org's login domain by the org's
// slug (certs: lines then say org=acme, as domains: lines do).
func TestDeciderNamesOrgsBySlug(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	quiet := slog.New(slog.DiscardHandler)
	decl := []config.Org{
		{Slug: "acme", Name: "Acme", LoginDomain: "login.acme.test", Connection: config.Connection{Type: "password"}},
		{Slug: "globex-eu", Name: "Globex", LoginDomain: "sso.globex.test", Connection: config.Connection{Type: "password"}},
	}
	if err := apply.Orgs(ctx, st, decl, time.Now(), quiet); err != nil {
		t.Fatal(err)
	}
	orgs, err := idp.NewDirectory(ctx, st, quiet)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := url.Parse("https://auth.saas.test")
	d := decider(&config.Config{Routes: []config.Route{{Host: "app.saas.test"}}}, pub, orgs)
	for _, tc := range []struct {
		name, org string
		ok        bool
	}{
		{"login.acme.test", "acme", true},
		{"sso.globex.test", "globex-eu", true},
		{"auth.saas.test", "", true},
		{"app.saas.test", "", true},
		{"other.test", "", false},
	} {
		if org, ok := d.Decide(tc.name); org != tc.org || ok != tc.ok {
			t.Errorf("Decide(%s) = %q, %v; want %q, %v", tc.name, org, ok, tc.org, tc.ok)
		}
	}
}
