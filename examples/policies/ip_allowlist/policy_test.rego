package gatehouse.authz

req(cidrs, addr) := {
	"user": {"id": "usr_1", "roles": ["member"]},
	"org": {"id": "org_acme", "slug": "acme", "name": "Acme", "attributes": {"allowed_cidrs": cidrs}},
	"request": {"method": "GET", "path": "/", "client_addr": addr},
}

test_address_in_list if {
	allow with input as req("203.0.113.0/24", "203.0.113.7")
	allow with input as req("10.0.0.0/8, 203.0.113.0/24", "203.0.113.7")
	allow with input as req("10.0.0.0/8,2001:db8::/32", "2001:db8::1")
}

test_address_not_in_list if {
	not allow with input as req("203.0.113.0/24", "198.51.100.9")
	reasons == {"your address 198.51.100.9 is not allowed for the Acme organization"} with input as req("203.0.113.0/24", "198.51.100.9")
	not allow with input as req("2001:db8::/32", "2001:db9::1")
}

test_families_do_not_mix if {
	not allow with input as req("0.0.0.0/0", "::1")
	not allow with input as req("::/0", "127.0.0.1")
}

test_bare_address_is_one_host if {
	allow with input as req("198.51.100.9", "198.51.100.9")
	not allow with input as req("198.51.100.9", "198.51.100.10")
	allow with input as req("2001:db8::7", "2001:db8::7")
	not allow with input as req("2001:db8::7", "2001:db8::8")
}

test_no_attribute_allows if {
	allow with input as {"org": {"slug": "acme", "attributes": {}}, "request": {"client_addr": "198.51.100.9"}}
	allow with input as req("", "198.51.100.9")
	allow with input as req("  ", "198.51.100.9")
	count(reasons) == 0 with input as req("", "198.51.100.9")
}

test_invalid_entries_ignored if {
	allow with input as req("not-a-cidr, 10.0.0.0/33, 203.0.113.0/24", "203.0.113.7")
	not allow with input as req("not-a-cidr", "203.0.113.7")
	not allow with input as req(",,", "203.0.113.7")
}

test_unparsable_client_address_denied if {
	not allow with input as req("0.0.0.0/0", "")
	reasons == {"your address (unknown) is not allowed for the Acme organization"} with input as req("0.0.0.0/0", "")
	not allow with input as req("0.0.0.0/0", "localhost")
	not allow with input as req("::/0", "fe80::1%eth0")
	not allow with input as req("0.0.0.0/0", "10.0.0.0/8")
}

test_org_label_falls_back_to_slug if {
	inp := {"org": {"slug": "acme", "attributes": {"allowed_cidrs": "10.0.0.0/8"}}, "request": {"client_addr": "192.0.2.1"}}
	reasons == {"your address 192.0.2.1 is not allowed for the acme organization"} with input as inp
}

test_allowlist_from_data if {
	inp := {"org": {"slug": "acme", "name": "Acme", "attributes": {}}, "request": {"client_addr": "192.0.2.1"}}
	not allow with input as inp with data.gatehouse.orgs as {"acme": {"attributes": {"allowed_cidrs": "10.0.0.0/8"}}}
	allow with input as inp with data.gatehouse.orgs as {"acme": {"attributes": {"allowed_cidrs": "192.0.2.0/24"}}}
	allow with input as inp with data.gatehouse.orgs as {"globex": {"attributes": {"allowed_cidrs": "10.0.0.0/8"}}}
}
