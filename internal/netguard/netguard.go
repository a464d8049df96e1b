// Package netguard keeps requests that a customer's admin can aim (their
// IdP's URLs, their SIEM webhook) from reaching the operator's own
// network: the address a connection is made to must be public.
package netguard

import (
	"fmt"
	"net/netip"
	"syscall"
)

// Not public either: shared address space (RFC 6598); IPv6 prefixes that
// carry (or tunnel to) an IPv4 address, judged by that address (NAT64's
// well-known prefix, 6to4) or refused (local-use NAT64, Teredo).
var (
	cgnat       = netip.MustParsePrefix("100.64.0.0/10")
	nat64       = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local  = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour   = netip.MustParsePrefix("2002::/16")
	teredo      = netip.MustParsePrefix("2001::/32")
	documenting = netip.MustParsePrefix("2001:db8::/32")
)

// Public reports whether a is a public unicast address: not loopback,
// private, link-local, shared (CGNAT), unspecified or multicast, in
// either IP version (an IPv4-mapped IPv6 address is judged as IPv4).
func Public(a netip.Addr) bool {
	a = a.Unmap()
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			return Public(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(a):
			return Public(netip.AddrFrom4([4]byte(b[2:6])))
		case nat64Local.Contains(a), teredo.Contains(a), documenting.Contains(a):
			return false
		}
	}
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
