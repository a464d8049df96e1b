# admin_mfa: the admin area needs a sign-in with a second factor.
#
# Paths under the prefixes listed in allow (/admin and everything below
# it, never /administrators; compared lower-cased and without ";params",
# the way routes match paths) are allowed only when the session's sign-in
# used multi-factor authentication. Every other path is allowed.
#
# Reads: input.user.mfa (true only when the sign-in used a second
# factor), input.request.path.
package gatehouse.authz

default allow := false

allow if input.user.mfa == true

allow if {
	p := path(input.request.path)
	every prefix in ["/admin/"] {
		not startswith(p, prefix)
	}
}

# path(p): p lower-cased, without ";params", ending in "/".
path(p) := concat("", [lower(regex.replace(p, `;[^/]*`, "")), "/"]) if {
	contains(p, ";")
} else := concat("", [lower(p), "/"])

reasons contains "this page requires multi-factor authentication: sign out, then sign in again with your second factor (MFA)" if not allow
