package certs

import (
	"context"
	"io"
	"log"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"

	"github.com/gatehouse/gatehouse/store"
)

func TestVerifier(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	dns, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{addr}, Log: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	go dns.Run()
	defer dns.Shutdown()
	time.Sleep(100 * time.Millisecond)
	v := &Verifier{Resolver: NewResolver(addr), CNAMETarget: "edge.saas.test"}
	claim := store.DomainClaim{Name: "login.acme.test", Kind: "login", Token: "tok123", Status: store.DomainPending}
	name, value := Record(claim)
	if name != "_gatehouse.login.acme.test" || value != "gatehouse-verification=tok123" {
		t.Fatalf("record %s %s", name, value)
	}
	ctx := context.Background()
	check := func() (bool, string) { return v.Check(ctx, claim) }
	if ok, detail := check(); ok || !strings.Contains(detail, "no TXT record") {
		t.Fatalf("no record: %v %q", ok, detail)
	}
	dns.AddDNSTXTRecord(name, "gatehouse-verification=other")
	if ok, detail := check(); ok || !strings.Contains(detail, `want "gatehouse-verification=tok123"`) {
		t.Fatalf("wrong record: %v %q", ok, detail)
	}
	dns.AddDNSTXTRecord(name, value)
	if ok, _ := check(); !ok {
		t.Fatal("right record not accepted")
	}
	dns.DeleteDNSTXTRecord(name)
	dns.AddDNSCNAMERecord("login.acme.test", "edge.saas.test.")
	if ok, detail := check(); !ok {
		t.Fatalf("CNAME to the target: %q", detail)
	}
	email := claim
	email.Kind = "email"
	if ok, _ := v.Check(ctx, email); ok {
		t.Fatal("a CNAME verified an email domain")
	}
}

func TestNextStatus(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := store.DomainClaim{Name: "a.test", Status: store.DomainPending}
	steps := []struct {
		ok   bool
		want string
	}{
		{false, store.DomainPending},
		{true, store.DomainVerified},
		{true, store.DomainVerified},
		{false, store.DomainSuspended},
		{false, store.DomainSuspended},
		{true, store.DomainVerified},
	}
	for i, s := range steps {
		c = Next(c, s.ok, "why", now.Add(time.Duration(i)*time.Minute))
		if c.Status != s.want || c.CheckedAt.IsZero() || s.ok && c.Detail != "" || !s.ok && c.Detail != "why" {
			t.Fatalf("step %d: %+v, want %s", i, c, s.want)
		}
	}
	if !c.VerifiedAt.Equal(now.Add(5 * time.Minute)) {
		t.Fatalf("verified at %v: it is when it last became verified", c.VerifiedAt)
	}
}
