# roles_by_path: which roles may open which part of an application.
#
# The table in unmet() maps a path prefix to the roles that open it: the
# user needs at least one of them. Prefixes end in "/" and cover a tree:
# "/admin/" covers /admin and everything below it, never /administrators.
# Every entry that covers the request must be satisfied, so "/" (which
# covers everything) holds the roles needed anywhere, and a nested entry
# can narrow access but never widen it.
#
# Paths are compared lower-cased and without ";params", the way routes
# match them, so /ADMIN or /admin;x/users cannot slip past an entry.
#
# Reads: input.user.roles, input.request.match_path.
# Deny reasons name the missing role, e.g. "/admin requires the admin role".
package gatehouse.authz

# unmet(p): prefix → roles for the entries covering path p (see path())
# of which the user has none of the roles.
unmet(p) := {prefix: roles |
	some prefix, roles in {
		"/": ["admin", "billing", "editor", "member", "viewer"],
		"/admin/": ["admin"],
		"/billing/": ["admin", "billing"],
	}
	startswith(p, prefix)
	not has_one_of(roles)
}

has_one_of(roles) if {
	some role in input.user.roles
	role in roles
}

# route_path: the path as routes match it (input.request.match_path:
# ";params" removed, lower-cased), ending in "/" for prefix checks.
route_path := concat("", [input.request.match_path, "/"])

default allow := false

allow if count(unmet(route_path)) == 0

reasons contains reason(prefix, roles) if {
	not allow
	some prefix, roles in unmet(route_path)
}

reason("/", roles) := sprintf("this application requires %s", [role_phrase(roles)])

reason(prefix, roles) := sprintf("%s requires %s", [trim_suffix(prefix, "/"), role_phrase(roles)]) if prefix != "/"

role_phrase(roles) := sprintf("the %s role", [roles[0]]) if count(roles) == 1

role_phrase(roles) := sprintf("one of the roles %s", [concat(", ", roles)]) if count(roles) > 1
