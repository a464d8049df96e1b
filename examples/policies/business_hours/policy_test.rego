package gatehouse.authz

req(roles, tz, at) := {
	"user": {"id": "usr_1", "roles": roles},
	"org": {"id": "org_acme", "slug": "acme", "attributes": {"timezone": tz}},
	"request": {"method": "GET", "path": "/", "time_ns": time.parse_rfc3339_ns(at)},
}

# 2026-03-02 is a Monday; New York is on EST (UTC-5) until 2026-03-08.
test_weekday_in_hours_utc if {
	allow with input as req(["member"], "UTC", "2026-03-02T08:00:00Z")
	allow with input as req(["member"], "UTC", "2026-03-06T17:59:59Z")
	count(reasons) == 0 with input as req(["member"], "UTC", "2026-03-04T12:00:00Z")
}

test_outside_hours_utc if {
	not allow with input as req(["member"], "UTC", "2026-03-02T07:59:59Z")
	not allow with input as req(["member"], "UTC", "2026-03-02T18:00:00Z")
	reasons == {"this application is available Monday to Friday, 08:00 to 18:00 (UTC); it is now Monday 18:00 there"} with input as req(["member"], "UTC", "2026-03-02T18:00:00Z")
}

test_weekend_closed if {
	not allow with input as req(["member"], "UTC", "2026-03-07T12:00:00Z")
	reasons == {"this application is available Monday to Friday, 08:00 to 18:00 (UTC); it is now Sunday 12:05 there"} with input as req(["member"], "UTC", "2026-03-08T12:05:00Z")
}

test_org_time_zone if {
	# 13:30 UTC is 08:30 in New York; 12:30 UTC is 07:30 there.
	allow with input as req(["member"], "America/New_York", "2026-03-02T13:30:00Z")
	not allow with input as req(["member"], "America/New_York", "2026-03-02T12:30:00Z")
	reasons == {"this application is available Monday to Friday, 08:00 to 18:00 (America/New_York); it is now Monday 07:30 there"} with input as req(["member"], "America/New_York", "2026-03-02T12:30:00Z")

	# Sunday 23:30 UTC is Monday 08:30 in Tokyo; Friday 23:30 UTC is Saturday there.
	allow with input as req(["member"], "Asia/Tokyo", "2026-03-08T23:30:00Z")
	not allow with input as req(["member"], "Asia/Tokyo", "2026-03-06T23:30:00Z")
}

test_default_time_zone_is_utc if {
	inp := {"user": {"roles": ["member"]}, "org": {"slug": "acme", "attributes": {}}, "request": {"time_ns": time.parse_rfc3339_ns("2026-03-02T07:30:00Z")}}
	not allow with input as inp
	reasons == {"this application is available Monday to Friday, 08:00 to 18:00 (UTC); it is now Monday 07:30 there"} with input as inp
	allow with input as req(["member"], "", "2026-03-02T08:30:00Z")
}

test_time_zone_from_data if {
	inp := {"user": {"roles": ["member"]}, "org": {"slug": "acme", "attributes": {}}, "request": {"time_ns": time.parse_rfc3339_ns("2026-03-02T13:30:00Z")}}
	allow with input as inp with data.gatehouse.orgs as {"acme": {"attributes": {"timezone": "America/New_York"}}}
	not allow with input as inp with data.gatehouse.orgs as {"acme": {"attributes": {"timezone": "Asia/Tokyo"}}}
}

test_admins_exempt if {
	allow with input as req(["admin"], "UTC", "2026-03-07T03:00:00Z")
	count(reasons) == 0 with input as req(["admin"], "UTC", "2026-03-07T03:00:00Z")

	# Even with a time zone Go does not know.
	allow with input as req(["admin"], "Mars/Olympus_Mons", "2026-03-07T03:00:00Z")
}
