package gatehouse.authz

req(path) := {"user": {"id": "usr_1", "mfa": false}, "request": {"method": "GET", "path": path}}

test_admin_asks_for_a_recent_factor if {
	mfa_max_age == 600 with input as req("/admin")
	mfa_max_age == 600 with input as req("/admin/users")
}

test_admin_case_and_params_ask_too if {
	mfa_max_age == 600 with input as req("/ADMIN/Users")
	mfa_max_age == 600 with input as req("/admin;x=1/users")
}

test_other_paths_ask_nothing if {
	not mfa_max_age with input as req("/")
	not mfa_max_age with input as req("/reports/admin")
}

test_administrators_is_not_admin if {
	not mfa_max_age with input as req("/administrators")
}

test_everyone_is_allowed if {
	allow with input as req("/admin/users")
	allow with input as req("/")
}
