package gatehouse.authz

req(mfa, path) := {
	"user": {"id": "usr_1", "roles": ["admin"], "mfa": mfa},
	"request": {"method": "GET", "path": path},
}

mfa_reason := "this page requires multi-factor authentication: sign out, then sign in again with your second factor (MFA)"

test_admin_with_mfa if {
	allow with input as req(true, "/admin/users")
	allow with input as req(true, "/admin")
}

test_admin_without_mfa if {
	not allow with input as req(false, "/admin/users")
	reasons == {mfa_reason} with input as req(false, "/admin/users")
}

test_other_paths_need_no_mfa if {
	allow with input as req(false, "/")
	allow with input as req(false, "/administrators")
	count(reasons) == 0 with input as req(false, "/reports")
}

test_case_and_params_do_not_bypass if {
	not allow with input as req(false, "/ADMIN")
	not allow with input as req(false, "/Admin/users")
	not allow with input as req(false, "/admin;jsessionid=1/users")
}

test_mfa_must_be_true if {
	# Only the boolean true counts; a string or a missing field does not.
	not allow with input as req("true", "/admin")
	not allow with input as {"user": {"id": "usr_1"}, "request": {"method": "GET", "path": "/admin"}}
	reasons == {mfa_reason} with input as {"user": {"id": "usr_1"}, "request": {"method": "GET", "path": "/admin"}}
}
