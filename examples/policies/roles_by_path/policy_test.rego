package gatehouse.authz

# req(roles, path) is an input with only what this policy reads.
req(roles, path) := {
	"user": {"id": "usr_1", "roles": roles},
	"request": {"method": "GET", "path": path, "match_path": lower(regex.replace(path, `;[^/]*`, ""))},
}

test_admin_opens_admin if {
	allow with input as req(["admin"], "/admin/users")
}

test_member_denied_admin if {
	not allow with input as req(["member"], "/admin/users")
	reasons == {"/admin requires the admin role"} with input as req(["member"], "/admin/users")
}

test_admin_prefix_itself if {
	not allow with input as req(["member"], "/admin")
	allow with input as req(["admin"], "/admin/")
}

test_case_and_params_do_not_bypass if {
	not allow with input as req(["member"], "/ADMIN/users")
	not allow with input as req(["member"], "/Admin;jsessionid=1/users")
	not allow with input as req(["member"], "/admin;x")
}

test_segment_boundary if {
	# /administrators is not under /admin: it needs only a default role.
	allow with input as req(["member"], "/administrators")
	allow with input as req(["member"], "/billingreport")
}

test_billing_opens_billing if {
	allow with input as req(["billing"], "/billing/invoices")
	allow with input as req(["admin"], "/billing")
}

test_member_denied_billing if {
	not allow with input as req(["member", "viewer"], "/billing/invoices")
	reasons == {"/billing requires one of the roles admin, billing"} with input as req(["member", "viewer"], "/billing/invoices")
}

test_default_roles if {
	allow with input as req(["member"], "/")
	allow with input as req(["viewer"], "/dashboard")
	count(reasons) == 0 with input as req(["member"], "/dashboard")
}

test_no_role_denied_everywhere if {
	not allow with input as req([], "/")
	reasons == {"this application requires one of the roles admin, billing, editor, member, viewer"} with input as req([], "/")
	not allow with input as req(["guest"], "/dashboard")
}

test_every_covering_entry_counts if {
	# "/" and "/admin/" both cover /admin/users: a user with neither
	# role set is told about both.
	reasons == {
		"/admin requires the admin role",
		"this application requires one of the roles admin, billing, editor, member, viewer",
	} with input as req(["guest"], "/admin/users")
	reasons == {"/admin requires the admin role"} with input as req(["billing"], "/admin/users")
}

test_missing_roles_field_denies if {
	not allow with input as {"user": {"id": "usr_1"}, "request": {"method": "GET", "path": "/"}}
}
