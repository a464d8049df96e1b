package certs

// Decider says which names Gatehouse may get certificates for: the public
// host, exact route hosts, and the login domains of orgs (looked up by
// OrgOf, which answers only for verified, active domains). Everything else
// fails the handshake before any storage read or ACME order: random SNI,
// IP literals, no SNI, trailing dots, look-alikes of real names, domains
// since removed. Wildcard route hosts get no on-demand certificates: any
// name under them would be allowed, so anyone could spend the CA's limits.
type Decider struct {
	Public string
	// Routes are the exact (not wildcard) route hosts.
	Routes map[string]bool
	// OrgOf returns the org (its slug) whose login domain host is.
	OrgOf func(host string) (org string, ok bool)
}

// Decide returns the org a name is for ("" for the operator's hosts) and
// whether it may have a certificate. It does not allocate.
func (d *Decider) Decide(name string) (string, bool) {
	if !plainHostname(name) {
		return "", false
	}
	if name == d.Public || d.Routes[name] {
		return "", true
	}
	if d.OrgOf != nil {
		return d.OrgOf(name)
	}
	return "", false
}

// plainHostname: a lowercase DNS name of two or more labels, letters,
// digits and inner hyphens only, no trailing dot, and not all digits (an
// IPv4 literal).
func plainHostname(s string) bool {
	if len(s) < 3 || len(s) > 253 {
		return false
	}
	labels, labelLen, letters := 1, 0, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if labelLen == 0 || s[i-1] == '-' {
				return false
			}
			labels, labelLen = labels+1, 0
			continue
		case c == '-':
			if labelLen == 0 {
				return false
			}
		case c >= 'a' && c <= 'z':
			letters = true
		case c >= '0' && c <= '9':
		default:
			return false
		}
		labelLen++
		if labelLen > 63 {
			return false
		}
	}
	return labels >= 2 && labelLen > 0 && s[len(s)-1] != '-' && letters
}
