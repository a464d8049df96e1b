package gatehouse.authz

req(attrs, path) := {
	"user": {"id": "usr_1", "roles": ["member"]},
	"org": {"id": "org_acme", "slug": "acme", "attributes": attrs},
	"request": {"method": "GET", "path": path, "match_path": lower(regex.replace(path, `;[^/]*`, ""))},
}

test_free_plan_gets_ungated_paths if {
	allow with input as req({"plan": "free"}, "/dashboard")
	headers == {"X-Gatehouse-Plan": "free"} with input as req({"plan": "free"}, "/dashboard")
}

test_free_plan_denied_reports if {
	not allow with input as req({"plan": "free"}, "/api/reports/monthly")
	reasons == {"/api/reports is not included in the free plan; it needs the pro or enterprise plan"} with input as req({"plan": "free"}, "/api/reports/monthly")
}

test_pro_plan_gets_reports_not_sso if {
	allow with input as req({"plan": "pro"}, "/api/reports")
	not allow with input as req({"plan": "pro"}, "/sso-settings")
	reasons == {"/sso-settings is not included in the pro plan; it needs the enterprise plan"} with input as req({"plan": "pro"}, "/sso-settings")
}

test_enterprise_gets_everything if {
	allow with input as req({"plan": "enterprise"}, "/api/reports/x")
	allow with input as req({"plan": "enterprise"}, "/sso-settings/saml")
	headers == {"X-Gatehouse-Plan": "enterprise"} with input as req({"plan": "enterprise"}, "/sso-settings")
}

test_plan_is_normalized if {
	allow with input as req({"plan": " Enterprise "}, "/sso-settings")
	headers == {"X-Gatehouse-Plan": "enterprise"} with input as req({"plan": " Enterprise "}, "/sso-settings")
}

test_no_plan_is_free if {
	not allow with input as req({}, "/api/reports")
	headers == {"X-Gatehouse-Plan": "free"} with input as req({}, "/")
	not allow with input as req({"plan": ""}, "/api/reports")
}

test_unknown_plan_gets_no_feature if {
	not allow with input as req({"plan": "platinum"}, "/api/reports")
	allow with input as req({"plan": "platinum"}, "/")
}

test_case_and_params_do_not_bypass if {
	not allow with input as req({"plan": "free"}, "/API/Reports")
	not allow with input as req({"plan": "free"}, "/api;x/reports")
	allow with input as req({"plan": "free"}, "/api/reportsarchive")
}

test_plan_from_data if {
	orgs := {"acme": {"attributes": {"plan": "enterprise"}}}
	allow with input as req({}, "/sso-settings") with data.gatehouse.orgs as orgs
	headers == {"X-Gatehouse-Plan": "enterprise"} with input as req({}, "/") with data.gatehouse.orgs as orgs
}

test_input_attribute_wins_over_data if {
	orgs := {"acme": {"attributes": {"plan": "enterprise"}}}
	not allow with input as req({"plan": "pro"}, "/sso-settings") with data.gatehouse.orgs as orgs
}
