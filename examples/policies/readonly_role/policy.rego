# readonly_role: viewers may read but not write.
#
# A user whose roles include "viewer" and neither "admin" nor "editor"
# may only use the safe methods GET, HEAD and OPTIONS. Users without the
# viewer role, or with admin or editor as well, are not restricted by
# this policy (combine it with roles_by_path to require a role at all).
#
# Reads: input.user.roles, input.request.method.
package gatehouse.authz

default allow := false

allow if input.request.method in {"GET", "HEAD", "OPTIONS"}

allow if not "viewer" in input.user.roles

allow if {
	some role in input.user.roles
	role in {"admin", "editor"}
}

reasons contains msg if {
	not allow
	msg := sprintf("your viewer role is read-only: %s requests are not allowed (only GET, HEAD and OPTIONS)", [input.request.method])
}
