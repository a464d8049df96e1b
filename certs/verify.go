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
	// Resolver looks records up; nil is the system's. Tests point it at a
	// DNS server of their own.
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

// Check reports whether DNS proves the claim now, and if not, why.
func (v *Verifier) Check(ctx context.Context, c store.DomainClaim) (bool, string) {
	r := v.Resolver
	if r == nil {
		r = net.DefaultResolver
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
		return true, ""
	}
	detail := fmt.Sprintf("no TXT record %s %q", name, want)
	var dnsErr *net.DNSError
	if err != nil && (!errors.As(err, &dnsErr) || dnsErr.IsTimeout || dnsErr.IsTemporary) {
		// The DNS did not answer: say so, it is not the customer's record.
		detail = fmt.Sprintf("TXT lookup of %s failed: %v", name, err)
	} else if len(txts) > 0 {
		detail = fmt.Sprintf("TXT record %s has %q, want %q", name, txts, want)
	}
	if c.Kind == "login" && v.CNAMETarget != "" {
		cname, err := r.LookupCNAME(ctx, c.Name)
		target := strings.TrimSuffix(strings.ToLower(v.CNAMETarget), ".")
		if err == nil && strings.TrimSuffix(strings.ToLower(cname), ".") == target {
			return true, ""
		}
		detail += fmt.Sprintf("; and %s is not a CNAME to %s", c.Name, target)
	}
	return false, detail
}

// Next is a claim's status after a check at now: a pending claim that
// checks out is verified; a verified one that fails is suspended (not
// dropped: it comes back when its record does).
func Next(c store.DomainClaim, ok bool, detail string, now time.Time) store.DomainClaim {
	c.CheckedAt = now
	switch {
	case ok:
		if c.Status != store.DomainVerified {
			c.VerifiedAt = now
		}
		c.Status, c.Detail = store.DomainVerified, ""
	case c.Status == store.DomainVerified || c.Status == store.DomainSuspended:
		c.Status, c.Detail = store.DomainSuspended, detail
	default:
		c.Status, c.Detail = store.DomainPending, detail
	}
	return c
}
