package gatehouse.authz

req(roles, method) := {
	"user": {"id": "usr_1", "roles": roles},
	"request": {"method": method, "path": "/documents/1"},
}

test_viewer_reads if {
	allow with input as req(["viewer"], "GET")
	allow with input as req(["viewer"], "HEAD")
	allow with input as req(["viewer"], "OPTIONS")
}

test_viewer_cannot_write if {
	not allow with input as req(["viewer"], "POST")
	not allow with input as req(["viewer"], "PUT")
	not allow with input as req(["viewer", "member"], "DELETE")
	reasons == {"your viewer role is read-only: PATCH requests are not allowed (only GET, HEAD and OPTIONS)"} with input as req(["viewer"], "PATCH")
}

test_methods_are_case_sensitive if {
	# HTTP methods are case-sensitive: "get" is not GET.
	not allow with input as req(["viewer"], "get")
}

test_writer_role_lifts_restriction if {
	allow with input as req(["viewer", "editor"], "POST")
	allow with input as req(["admin", "viewer"], "DELETE")
	count(reasons) == 0 with input as req(["viewer", "editor"], "POST")
}

test_non_viewers_unrestricted if {
	allow with input as req(["member"], "POST")
	allow with input as req([], "DELETE")
}
