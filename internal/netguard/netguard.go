// Package netguard keeps requests that a customer's admin can aim (their
// IdP's URLs, their SIEM webhook) from reaching the operator's own
// network: the address a connection is made to must be public.
package netguard

import (
	"fmt"
	"net/netip"
	"syscall"
)

// cgnat is shared address space (RFC 6598), not public either.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// Public reports whether a is a public unicast address: not loopback,
// private, link-local, shared (CGNAT), unspecified or multicast, in
// either IP version (an IPv4-mapped IPv6 address is judged as IPv4).
func Public(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() && !a.IsLinkLocalUnicast() &&
		!cgnat.Contains(a)
}

// Control is a net.Dialer Control function refusing connections to
// addresses that are not public. It runs on the address connected to,
// after name resolution, so a name that resolves (or re-resolves) into
// a private network is refused too.
func Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	if !Public(ap.Addr()) {
		return fmt.Errorf("%s is not a public address", ap.Addr())
	}
	return nil
}
