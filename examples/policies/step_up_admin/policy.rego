# step_up_admin: the admin area needs a second factor proved in the last
# 10 minutes. Gatehouse asks for one (a step-up: the passkey, the
# authenticator app, or setting one up) and brings the person back to the
# page; everyone may reach it that way. Other paths ask nothing more.
#
# mfa_max_age is in seconds (60 to 86400); the strictest layer's counts.
# Paths under the prefixes (/admin and everything below it, never
# /administrators) are compared lower-cased and without ";params", the way
# routes match paths.
#
# Reads: input.request.path.
package gatehouse.authz

default allow := false

allow := true

mfa_max_age := 600 if {
	p := path(input.request.path)
	some prefix in ["/admin/"]
	startswith(p, prefix)
}

# path(p): p lower-cased, without ";params", ending in "/".
path(p) := concat("", [lower(regex.replace(p, `;[^/]*`, "")), "/"]) if {
	contains(p, ";")
} else := concat("", [lower(p), "/"])
