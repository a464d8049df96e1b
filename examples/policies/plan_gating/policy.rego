# plan_gating: features by the organization's plan.
#
# The table in locked() maps a feature's path prefix to the plans that
# include it; paths no entry covers are open to every plan. Prefixes end
# in "/" and cover a tree ("/api/reports/" covers /api/reports and
# everything below it), compared lower-cased and without ";params", the
# way routes match paths. On allow the plan also goes upstream as the
# header X-Gatehouse-Plan, so the application need not look it up.
#
# Reads the org attribute `plan` (free, pro or enterprise; case and
# surrounding spaces ignored; an org without one is on "free") from
# input.org.attributes, or else data.gatehouse.orgs[<org slug>].attributes;
# also input.request.match_path.
package gatehouse.authz

# locked(p, plan): prefix → plans for the features covering path p (see
# path()) that plan does not include.
locked(p, plan) := {prefix: plans |
	some prefix, plans in {
		"/api/reports/": ["pro", "enterprise"],
		"/sso-settings/": ["enterprise"],
	}
	startswith(p, prefix)
	not plan in plans
}

default plan := "free"

plan := p if {
	p := lower(trim_space(org_attr("plan")))
	p != ""
}

# org_attr(name): the org attribute from the input, else from data, else "".
org_attr(name) := v if {
	v := input.org.attributes[name]
} else := v if {
	v := data.gatehouse.orgs[input.org.slug].attributes[name]
} else := ""

# route_path: the path as routes match it (input.request.match_path:
# ";params" removed, lower-cased), ending in "/" for prefix checks.
route_path := concat("", [input.request.match_path, "/"])

default allow := false

allow if count(locked(route_path, plan)) == 0

reasons contains msg if {
	not allow
	some prefix, plans in locked(route_path, plan)
	msg := sprintf("%s is not included in the %s plan; it needs the %s plan", [trim_suffix(prefix, "/"), plan, concat(" or ", plans)])
}

headers["X-Gatehouse-Plan"] := plan
