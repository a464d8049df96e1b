package certs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// TXTPrefix names the TXT record that proves a domain claim:
// _gatehouse.<domain> carrying "gatehouse-verification=<token>".
const (
	TXTPrefix   = "_gatehouse."
	TXTValuePfx = "gatehouse-verification="
)

// Verifier checks domain claims in DNS.
type Verifier struct {
	// Server is the DNS server to ask (host:port, domains.resolver); ""
	// is the system's resolver.
	Server string
	// Resolver, if set, looks records up instead of one asking Server
	// (tests wrap it); errors still name Server.
	Resolver *net.Resolver
	// CNAMETarget, if set, also verifies a login domain whose CNAME is it
	// (the customer points the domain at Gatehouse).
	CNAMETarget string
	// Timeout bounds one check (default 5s).
	Timeout time.Duration
}

// NewResolver returns a resolver that asks the DNS server at addr
// (host:port) only; "" is the system's.
func NewResolver(addr string) *net.Resolver {
	if addr == "" {
		return net.DefaultResolver
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, addr)
	}}
}

// Record is the DNS record that proves c: its name and TXT value.
func Record(c store.DomainClaim) (name, value string) {
	return TXTPrefix + c.Name, TXTValuePfx + c.Token
}

// Outcome is what one check found.
type Outcome int

const (
	// Proven: the TXT record (or the CNAME) is there.
	Proven Outcome = iota
	// Disproven: DNS answered, without the record.
	Disproven
	// Unknown: DNS did not answer (timeout, SERVFAIL, refused); a
	// claim's status is kept, since the customer's record may be fine.
	Unknown
)

// SuspendAfter is how many consecutive checks must find a verified
// domain's record gone, over at least the grace Next is given, before it
// is suspended: one odd answer (a DNS migration, a lagging secondary, a
// negative answer cached by the resolver) does not take it offline.
const SuspendAfter = 3

// UnknownLimit is how long a verified domain's DNS may fail to answer
// before it is suspended (broken DNSSEC, a lame delegation): an outage
// keeps it serving, a domain whose DNS is gone for good does not.
const UnknownLimit = 7 * 24 * time.Hour

// Verification methods: the record that proved a claim.
const (
	MethodTXT   = "txt"
	MethodCNAME = "cname"
)

// Result is what one check found.
type Result struct {
	Outcome Outcome
	// Method is the record that proved the claim (MethodTXT or
	// MethodCNAME); "" unless Proven.
	Method string
	// Detail is why the claim is not proven.
	Detail string
}

// Check reports what DNS says about the claim now, and why when it is
// not proven.
func (v *Verifier) Check(ctx context.Context, c store.DomainClaim) Result {
	r := v.Resolver
	if r == nil {
		r = NewResolver(v.Server)
	}
	timeout := v.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name, want := Record(c)
	txts, err := r.LookupTXT(ctx, name)
	if err == nil && slices.Contains(txts, want) {
		return Result{Outcome: Proven, Method: MethodTXT}
	}
	outcome, detail := Disproven, fmt.Sprintf("no TXT record %s %q", name, want)
	if err != nil && !answered(err) {
		// The DNS did not answer: say so, it is not the customer's record.
		outcome, detail = Unknown, fmt.Sprintf("TXT lookup of %s failed: %v", name, v.named(err))
	} else if len(txts) > 0 {
		detail = fmt.Sprintf("TXT record %s has %q, want %q", name, txts, want)
	}
	if c.Kind == "login" && v.CNAMETarget != "" {
		target := canonical(v.CNAMETarget)
		cname, err := r.LookupCNAME(ctx, c.Name)
		if err == nil && canonical(cname) == target {
			return Result{Outcome: Proven, Method: MethodCNAME}
		}
		if err != nil && !answered(err) && outcome == Unknown {
			return Result{Outcome: Unknown, Detail: detail + fmt.Sprintf("; and the CNAME lookup of %s failed: %v", c.Name, v.named(err))}
		}
		detail += fmt.Sprintf("; and %s is not a CNAME to %s", c.Name, target)
	}
	return Result{Outcome: outcome, Detail: detail}
}

// Proof is the DNS record that proves c, as the customer must keep it:
// the CNAME to CNAMETarget for a claim a CNAME verified, else the TXT
// record (see Record).
func (v *Verifier) Proof(c store.DomainClaim) (typ, name, value string) {
	if c.Method == MethodCNAME && v.CNAMETarget != "" {
		return "CNAME", c.Name, canonical(v.CNAMETarget)
	}
	name, value = Record(c)
	return "TXT", name, value
}

// named makes a lookup error name the server actually asked: Go's
// resolver names the first nameserver of resolv.conf even when its Dial
// sends the query to Server.
func (v *Verifier) named(err error) error {
	var dnsErr *net.DNSError
	if v.Server == "" || !errors.As(err, &dnsErr) {
		return err
	}
	e := *dnsErr
	e.Server = v.Server
	return &e
}

func canonical(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// answered: the lookup failed with an answer from DNS (no such name, no
// such record, an empty answer), not for want of one (a timeout, a
// refused connection, SERVFAIL or another error code).
func answered(err error) bool {
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		return false
	}
	return dnsErr.IsNotFound || !dnsErr.IsTimeout && !dnsErr.IsTemporary && dnsErr.Err != "server misbehaving"
}

// Next is a claim's status after a check at now: a claim that checks out
// is verified (by the method the check found); a verified one is suspended once SuspendAfter checks in a
// row, spanning at least grace, find its record gone (not dropped: it
// comes back with its record); a check DNS did not answer changes no
// status unless that lasts UnknownLimit.
func Next(c store.DomainClaim, r Result, now time.Time, grace time.Duration) store.DomainClaim {
	o, detail := r.Outcome, r.Detail
	c.CheckedAt = now
	if o == Proven {
		if c.FirstVerifiedAt.IsZero() {
			// A claim verified before this field existed keeps its rank.
			c.FirstVerifiedAt = now
			if c.Status == store.DomainVerified && !c.VerifiedAt.IsZero() {
				c.FirstVerifiedAt = c.VerifiedAt
			}
		}
		if c.Status != store.DomainVerified {
			c.VerifiedAt = now
		}
		c.Status, c.Detail, c.Failures, c.FailingSince, c.Retry = store.DomainVerified, "", 0, time.Time{}, false
		c.Method = r.Method
		return c
	}
	c.Retry = true
	if c.Status == store.DomainVerified && c.FailingSince.IsZero() {
		c.FailingSince = now
	}
	failing := now.Sub(c.FailingSince)
	switch {
	case c.Status == store.DomainSuspended:
		c.Detail = detail
	case c.Status != store.DomainVerified:
		c.Status, c.Detail = store.DomainPending, detail
	case o == Unknown && failing >= UnknownLimit:
		c.Status, c.Detail = store.DomainSuspended, fmt.Sprintf("%s (for %s)", detail, failing.Round(time.Minute))
	case o == Unknown:
		c.Detail = detail + " (status kept; retrying)"
	default:
		c.Failures++
		if c.Failures >= SuspendAfter && failing >= grace {
			c.Status, c.Detail = store.DomainSuspended, detail
		} else {
			c.Detail = fmt.Sprintf("%s (check %d; suspended after %d over %s)", detail, c.Failures, SuspendAfter, grace)
		}
	}
	return c
}

// Due reports whether a claim should be checked at now: pending claims,
// and claims whose last check was inconclusive or failing, at every
// tick; suspended ones every min(recheck, 5m), so a restored record
// takes effect soon; verified ones every recheck.
func Due(c store.DomainClaim, now time.Time, recheck time.Duration) bool {
	since := now.Sub(c.CheckedAt)
	switch {
	case c.Status == store.DomainPending:
		return true
	case c.Status == store.DomainSuspended:
		return since >= min(recheck, 5*time.Minute)
	case c.Retry:
		return true
	}
	return since >= recheck
}
