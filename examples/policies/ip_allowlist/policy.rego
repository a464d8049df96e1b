# ip_allowlist: per-organization client address allowlist.
#
# An org with the attribute `allowed_cidrs` admits requests only from the
# client addresses it lists; an org without it (or with it empty) is not
# restricted. The attribute is a comma-separated list of IPv4 and IPv6
# CIDRs, such as "203.0.113.0/24, 2001:db8::/32"; a bare address counts as
# one host (/32 or /128). Entries that are not valid CIDRs are ignored, so
# a list with no valid entry admits nobody (fail closed).
#
# input.request.client_addr is the address Gatehouse resolved for the
# client: the peer, or the first untrusted X-Forwarded-For hop when the
# peer is a trusted proxy. An address that does not parse is never allowed.
#
# Reads the org attribute `allowed_cidrs` from input.org.attributes, or
# else data.gatehouse.orgs[<org slug>].attributes; also
# input.request.client_addr, and input.org.name or input.org.slug for the
# deny reason.
package gatehouse.authz

default allow := false

allow if trim_space(org_attr("allowed_cidrs")) == ""

allow if {
	addr := input.request.client_addr

	# Checked first: net.cidr_contains fails on anything but an address,
	# and Gatehouse treats a failing builtin as an evaluation error.
	net.cidr_is_valid(concat("", [addr, "/32"]))
	some entry in split(org_attr("allowed_cidrs"), ",")
	cidr := as_cidr(trim_space(entry))
	net.cidr_is_valid(cidr)
	net.cidr_contains(cidr, addr)
}

# as_cidr(e): e, or the single-host CIDR for a bare address.
as_cidr(e) := e if {
	contains(e, "/")
} else := concat("", [e, "/128"]) if {
	contains(e, ":")
} else := concat("", [e, "/32"])

# org_attr(name): the org attribute from the input, else from data, else "".
org_attr(name) := v if {
	v := input.org.attributes[name]
} else := v if {
	v := data.gatehouse.orgs[input.org.slug].attributes[name]
} else := ""

reasons contains msg if {
	not allow
	msg := sprintf("your address %s is not allowed for %s", [or_unknown(input.request.client_addr), org_phrase(input.org)])
}

or_unknown(s) := s if {
	s != ""
} else := "(unknown)"

org_phrase(org) := sprintf("the %s organization", [org.name]) if {
	org.name != ""
} else := sprintf("the %s organization", [org.slug]) if {
	org.slug != ""
} else := "this organization"
