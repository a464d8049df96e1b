// Package clientip finds a request's client address, believing
// X-Forwarded-For only from configured trusted proxies.
package clientip

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

type Resolver struct {
	trusted []netip.Prefix
}

// New parses trusted proxy CIDRs (or single addresses).
func New(cidrs []string) (*Resolver, error) {
	r := &Resolver{}
	for _, c := range cidrs {
		if !strings.Contains(c, "/") {
			a, err := netip.ParseAddr(c)
			if err != nil {
				return nil, fmt.Errorf("clientip: %q: %w", c, err)
			}
			r.trusted = append(r.trusted, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return nil, fmt.Errorf("clientip: %q: %w", c, err)
		}
		r.trusted = append(r.trusted, p.Masked())
	}
	return r, nil
}

// IsTrusted reports whether a peer address is a trusted proxy.
func (r *Resolver) IsTrusted(a netip.Addr) bool { return r.isTrusted(a.Unmap()) }

func (r *Resolver) isTrusted(a netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Addr walks X-Forwarded-For from the right, skipping trusted proxies; the
// first untrusted hop is the client.
func (r *Resolver) Addr(req *http.Request) string {
	a, _ := r.Resolve(req)
	return a
}

// Resolve is Addr, also reporting whether the request came through a
// trusted proxy (so its X-Forwarded-For may be passed on).
func (r *Resolver) Resolve(req *http.Request) (addr string, viaTrusted bool) {
	host, _, err := net.SplitHostPort(req.RemoteAddr)
	if err != nil {
		host = req.RemoteAddr
	}
	peer, err := netip.ParseAddr(host)
	if err != nil {
		return host, false
	}
	peer = peer.Unmap()
	if len(r.trusted) == 0 || !r.isTrusted(peer) {
		return peer.String(), false
	}
	hops := strings.Split(strings.Join(req.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := parseHop(strings.TrimSpace(hops[i]))
		if err != nil {
			return peer.String(), true
		}
		a = a.Unmap()
		if !r.isTrusted(a) {
			return a.String(), true
		}
		peer = a
	}
	return peer.String(), true
}

// parseHop reads an X-Forwarded-For entry: an address, or address:port as
// some proxies write it.
func parseHop(s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a, nil
	}
	ap, err := netip.ParseAddrPort(s)
	return ap.Addr(), err
}
