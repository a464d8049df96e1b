package certs

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/testdns"
	"github.com/gatehouse/gatehouse/store"
)

func TestVerifier(t *testing.T) {
	dns, addr := testdns.Start(t)
	v := &Verifier{Resolver: NewResolver(addr), CNAMETarget: "edge.saas.test"}
	claim := store.DomainClaim{Name: "login.acme.test", Kind: "login", Token: "tok123", Status: store.DomainPending}
	name, value := Record(claim)
	if name != "_gatehouse.login.acme.test" || value != "gatehouse-verification=tok123" {
		t.Fatalf("record %s %s", name, value)
	}
	ctx := context.Background()
	check := func() (Outcome, string) { r := v.Check(ctx, claim); return r.Outcome, r.Detail }
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
	if r := v.Check(ctx, email); r.Outcome == Proven {
		t.Fatal("a CNAME verified an email domain")
	}
	// Only a CNAME to the target itself counts: when the target is an
	// alias (of a shared load balancer, say), ending where it ends would
	// let anyone behind that balancer verify any domain.
	dns.AddDNSCNAMERecord("edge.saas.test", "lb-123.cloud.test.")
	dns.DeleteDNSCNAMERecord("login.acme.test")
	dns.AddDNSCNAMERecord("login.acme.test", "lb-123.cloud.test.")
	if o, _ := check(); o != Disproven {
		t.Fatal("a CNAME to where the target ends verified the domain")
	}
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
	if r := down.Check(ctx, claim); r.Outcome != Unknown || !strings.Contains(r.Detail, "lookup") {
		t.Fatalf("DNS down: %v %q", r.Outcome, r.Detail)
	}
}

func TestNextStatus(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	const grace = 10 * time.Minute
	c := store.DomainClaim{Name: "a.test", Status: store.DomainPending}
	steps := []struct {
		at       time.Duration // since t0
		o        Outcome
		want     string
		failures int
	}{
		{0, Disproven, store.DomainPending, 0},
		{1 * time.Minute, Unknown, store.DomainPending, 0},
		{2 * time.Minute, Proven, store.DomainVerified, 0},
		{3 * time.Minute, Unknown, store.DomainVerified, 0}, // DNS down: still verified
		{4 * time.Minute, Disproven, store.DomainVerified, 1},
		{5 * time.Minute, Disproven, store.DomainVerified, 2},
		{6 * time.Minute, Proven, store.DomainVerified, 0}, // back: the count starts over
		{7 * time.Minute, Disproven, store.DomainVerified, 1},
		{8 * time.Minute, Disproven, store.DomainVerified, 2},
		{9 * time.Minute, Disproven, store.DomainVerified, 3}, // three, but within the grace
		{16 * time.Minute, Disproven, store.DomainVerified, 4},
		{17 * time.Minute, Disproven, store.DomainSuspended, 5}, // ten minutes failing
		{18 * time.Minute, Unknown, store.DomainSuspended, 5},
		{19 * time.Minute, Proven, store.DomainVerified, 0},
	}
	for i, s := range steps {
		c = Next(c, Result{Outcome: s.o, Detail: "why"}, t0.Add(s.at), grace)
		if c.Status != s.want || c.Failures != s.failures || c.Retry != (s.o != Proven) || !c.CheckedAt.Equal(t0.Add(s.at)) ||
			s.o == Proven && c.Detail != "" || s.o != Proven && !strings.HasPrefix(c.Detail, "why") {
			t.Fatalf("step %d: %+v, want %s with %d failures", i, c, s.want, s.failures)
		}
	}
	if !c.VerifiedAt.Equal(t0.Add(19*time.Minute)) || !c.FirstVerifiedAt.Equal(t0.Add(2*time.Minute)) {
		t.Fatalf("verified at %v, first at %v", c.VerifiedAt, c.FirstVerifiedAt)
	}

	// A claim verified before FirstVerifiedAt existed keeps its rank.
	old := store.DomainClaim{Name: "c.test", Status: store.DomainVerified, VerifiedAt: t0.Add(-365 * 24 * time.Hour)}
	if old = Next(old, Result{Outcome: Proven}, t0, grace); !old.FirstVerifiedAt.Equal(t0.Add(-365 * 24 * time.Hour)) {
		t.Fatalf("first verified at %v", old.FirstVerifiedAt)
	}

	// DNS that never answers suspends a verified domain only after
	// UnknownLimit.
	v := store.DomainClaim{Name: "b.test", Status: store.DomainVerified}
	v = Next(v, Result{Outcome: Unknown, Detail: "SERVFAIL"}, t0, grace)
	v = Next(v, Result{Outcome: Unknown, Detail: "SERVFAIL"}, t0.Add(UnknownLimit-time.Minute), grace)
	if v.Status != store.DomainVerified {
		t.Fatalf("suspended before the limit: %+v", v)
	}
	v = Next(v, Result{Outcome: Unknown, Detail: "SERVFAIL"}, t0.Add(UnknownLimit), grace)
	if v.Status != store.DomainSuspended || !strings.Contains(v.Detail, "SERVFAIL") {
		t.Fatalf("after the limit: %+v", v)
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

// Lookup failures name the DNS server Gatehouse asked (domains.resolver),
// not the system's nameserver, which Go's resolver reports by default.
func TestVerifierErrorsNameTheConfiguredResolver(t *testing.T) {
	dns, addr := testdns.Start(t)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	ctx := context.Background()
	login := store.DomainClaim{Name: "login.acme.test", Kind: "login", Token: "tok", Status: store.DomainVerified}
	email := store.DomainClaim{Name: "acme.test", Kind: "email", Token: "tok", Status: store.DomainVerified}
	dns.AddDNSServFailRecord("_gatehouse.login.acme.test")
	dns.AddDNSServFailRecord("login.acme.test")
	dns.AddDNSServFailRecord("_gatehouse.acme.test")
	for _, tc := range []struct {
		name   string
		v      *Verifier
		claim  store.DomainClaim
		server string
		parts  int // lookups named in the detail
	}{
		{"SERVFAIL, TXT", &Verifier{Server: addr}, email, addr, 1},
		{"SERVFAIL, TXT and CNAME", &Verifier{Server: addr, CNAMETarget: "edge.saas.test"}, login, addr, 2},
		{"through a resolver of the caller's", &Verifier{Server: addr, Resolver: NewResolver(addr)}, email, addr, 1},
		{"no answer", &Verifier{Server: dead, Timeout: 2 * time.Second, CNAMETarget: "edge.saas.test"}, login, dead, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.v.Check(ctx, tc.claim)
			if r.Outcome != Unknown || strings.Count(r.Detail, " on "+tc.server+":") != tc.parts {
				t.Fatalf("%v %q: want %d lookups named on %s", r.Outcome, r.Detail, tc.parts, tc.server)
			}
		})
	}
}
