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
	check := func() (Outcome, string) { return v.Check(ctx, claim) }
	if o, detail := check(); o != Disproven || !strings.Contains(detail, "no TXT record") {
		t.Fatalf("no record: %v %q", o, detail)
	}
	dns.AddDNSTXTRecord(name, "gatehouse-verification=other")
	if o, detail := check(); o != Disproven || !strings.Contains(detail, `want "gatehouse-verification=tok123"`) {
		t.Fatalf("wrong record: %v %q", o, detail)
	}
	dns.AddDNSTXTRecord(name, value)
	if o, _ := check(); o != Proven {
		t.Fatal("right record not accepted")
	}
	dns.DeleteDNSTXTRecord(name)
	dns.AddDNSCNAMERecord("login.acme.test", "edge.saas.test.")
	if o, detail := check(); o != Proven {
		t.Fatalf("CNAME to the target: %q", detail)
	}
	email := claim
	email.Kind = "email"
	if o, _ := v.Check(ctx, email); o == Proven {
		t.Fatal("a CNAME verified an email domain")
	}
	// The target is itself an alias (of a load balancer): a domain
	// pointing at it ends where the target does.
	dns.AddDNSCNAMERecord("edge.saas.test", "lb-123.cloud.test.")
	if o, detail := check(); o != Proven {
		t.Fatalf("CNAME to a target that is an alias: %q", detail)
	}
	// Pointing at the load balancer directly is not pointing at Gatehouse's
	// target... but it ends at the same place, which is what serving needs;
	// a CNAME elsewhere is refused.
	dns.DeleteDNSCNAMERecord("login.acme.test")
	dns.AddDNSCNAMERecord("login.acme.test", "elsewhere.test.")
	if o, _ := check(); o != Disproven {
		t.Fatal("a CNAME elsewhere verified the domain")
	}

	// A DNS server that does not answer proves nothing either way.
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l2.Addr().String()
	l2.Close()
	down := &Verifier{Resolver: NewResolver(dead), CNAMETarget: "edge.saas.test", Timeout: 2 * time.Second}
	if o, detail := down.Check(ctx, claim); o != Unknown || !strings.Contains(detail, "lookup") {
		t.Fatalf("DNS down: %v %q", o, detail)
	}
}

func TestNextStatus(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := store.DomainClaim{Name: "a.test", Status: store.DomainPending}
	steps := []struct {
		o        Outcome
		want     string
		failures int
		retry    bool
	}{
		{Disproven, store.DomainPending, 0, true},
		{Unknown, store.DomainPending, 0, true},
		{Proven, store.DomainVerified, 0, false},
		{Unknown, store.DomainVerified, 0, true}, // DNS down: still verified
		{Disproven, store.DomainVerified, 1, true},
		{Disproven, store.DomainVerified, 2, true},
		{Proven, store.DomainVerified, 0, false}, // back: the count starts over
		{Disproven, store.DomainVerified, 1, true},
		{Unknown, store.DomainVerified, 1, true},
		{Disproven, store.DomainVerified, 2, true},
		{Disproven, store.DomainSuspended, 3, true},
		{Disproven, store.DomainSuspended, 3, true},
		{Unknown, store.DomainSuspended, 3, true},
		{Proven, store.DomainVerified, 0, false},
	}
	for i, s := range steps {
		c = Next(c, s.o, "why", now.Add(time.Duration(i)*time.Minute))
		if c.Status != s.want || c.Failures != s.failures || c.Retry != s.retry || c.CheckedAt.IsZero() ||
			s.o == Proven && c.Detail != "" || s.o != Proven && !strings.HasPrefix(c.Detail, "why") {
			t.Fatalf("step %d: %+v, want %s, %d failures, retry %v", i, c, s.want, s.failures, s.retry)
		}
	}
	if !c.VerifiedAt.Equal(now.Add(13 * time.Minute)) {
		t.Fatalf("verified at %v: it is when it last became verified", c.VerifiedAt)
	}
}

func TestDue(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	recheck := time.Hour
	for _, tc := range []struct {
		c    store.DomainClaim
		want bool
	}{
		{store.DomainClaim{Status: store.DomainPending, CheckedAt: now}, true},
		{store.DomainClaim{Status: store.DomainVerified, CheckedAt: now.Add(-time.Minute)}, false},
		{store.DomainClaim{Status: store.DomainVerified, CheckedAt: now.Add(-time.Hour)}, true},
		{store.DomainClaim{Status: store.DomainVerified, CheckedAt: now, Retry: true}, true},
		{store.DomainClaim{Status: store.DomainSuspended, CheckedAt: now.Add(-time.Minute), Retry: true}, false},
		{store.DomainClaim{Status: store.DomainSuspended, CheckedAt: now.Add(-5 * time.Minute)}, true},
	} {
		if got := Due(tc.c, now, recheck); got != tc.want {
			t.Errorf("%+v: due %v, want %v", tc.c, got, tc.want)
		}
	}
}
