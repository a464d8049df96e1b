# business_hours: access only during the organization's business hours.
#
# Users are allowed Monday to Friday from 08:00 to 18:00 (18:00 itself is
# closed) in the org's time zone; users with the admin role are allowed
# at any time. The time is input.request.time_ns, when the request reached
# Gatehouse. To change the hours, change allow and the reason together.
#
# Reads the org attribute `timezone`, an IANA name such as
# "Europe/Berlin" (default "UTC"), from input.org.attributes, or else
# data.gatehouse.orgs[<org slug>].attributes; also input.user.roles and
# input.request.time_ns. A time zone Go does not know makes evaluation
# fail, which Gatehouse logs and treats as a deny, for the org's
# non-admin users.
package gatehouse.authz

default allow := false

allow if "admin" in input.user.roles

allow if {
	# The time is worked out for non-admins only, so that a bad time zone
	# never locks admins out.
	not "admin" in input.user.roles
	now := [input.request.time_ns, timezone(org_attr("timezone"))]
	time.weekday(now) in {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}
	[hour, _, _] := time.clock(now)
	hour >= 8
	hour < 18
}

reasons contains msg if {
	not allow
	tz := timezone(org_attr("timezone"))
	now := [input.request.time_ns, tz]
	[hour, minute, _] := time.clock(now)
	msg := sprintf("this application is available Monday to Friday, 08:00 to 18:00 (%s); it is now %s %02d:%02d there", [tz, time.weekday(now), hour, minute])
}

# timezone(attr): the attribute's time zone, "UTC" if it is empty.
timezone(attr) := tz if {
	tz := trim_space(attr)
	tz != ""
} else := "UTC"

# org_attr(name): the org attribute from the input, else from data, else "".
org_attr(name) := v if {
	v := input.org.attributes[name]
} else := v if {
	v := data.gatehouse.orgs[input.org.slug].attributes[name]
} else := ""
