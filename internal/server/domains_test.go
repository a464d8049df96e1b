package server

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/certs"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/testdns"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
)

// A domain verified early in a sweep routes before the sweep has checked
// every other org: the directory is reloaded after the first change, not
// only at the end.
func TestDomainCheckReloadsDirectoryDuringSweep(t *testing.T) {
	ctx := context.Background()
	st, err := badgerstore.Open("", badgerstore.WithInMemory())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	quiet := slog.New(slog.DiscardHandler)
	now := time.Now()
	// Orgs are swept in ID order; acme's is the lower.
	var decl []config.Org
	for _, slug := range []string{"acme", "globex"} {
		decl = append(decl, config.Org{Slug: slug, Name: slug, LoginDomain: "login." + slug + ".test", Connection: config.Connection{Type: "password"}})
	}
	if err := seed(ctx, st, decl, now, quiet); err != nil {
		t.Fatal(err)
	}
	orgs, err := idp.NewDirectory(ctx, st, quiet)
	if err != nil {
		t.Fatal(err)
	}
	orgs.RequireVerified()
	if err := orgs.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := st.ListOrgs(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("orgs: %v %v", list, err)
	}
	first, second := list[0], list[1]

	dns, addr := testdns.Start(t)
	name, value := certs.Record(first.Domains[0])
	dns.AddDNSTXTRecord(name, value)

	// Every lookup notes whether the first org's domain routes yet.
	var mu sync.Mutex
	var routed []bool
	inner := certs.NewResolver(addr)
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
		_, ok := orgs.ByLoginHost(first.LoginDomain)
		mu.Lock()
		routed = append(routed, ok)
		mu.Unlock()
		return inner.Dial(ctx, network, a)
	}}
	c := &domainChecker{st: st, orgs: orgs, recheck: time.Hour, log: quiet, now: time.Now,
		v: &certs.Verifier{Resolver: resolver}}
	c.checkAll(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(routed) == 0 || routed[0] || !routed[len(routed)-1] {
		t.Fatalf("first org's domain routing at each lookup of the sweep: %v; want false at its own check and true by the second org's", routed)
	}
	if _, ok := orgs.ByLoginHost(second.LoginDomain); ok {
		t.Fatal("the unproven domain routes")
	}
	got, _ := st.GetOrg(ctx, first.ID)
	if got.Domains[0].Status != store.DomainVerified {
		t.Fatalf("first org's claim: %+v", got.Domains[0])
	}
}
