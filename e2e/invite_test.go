package e2e

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// Invitations to a password org end to end: acme's admin invites a person
// through the API; the link opens acme's branded page on its login
// domain, refuses a weak or mistyped password, then makes the person a
// member with the invited role and signs them in; the upstream sees
// them. The link works once, not on another host, and a revoked one not
// at all.
func TestInvitationToPasswordOrg(t *testing.T) {
	g, up := startCore(t)
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	acmeAPI := func(path string) string { return g.url("login.acme.localhost", "/api/v1/orgs/acme"+path) }

	st, _, inv := alice.api("POST", acmeAPI("/invitations"), map[string]any{"email": "Erin@acme.example", "name": "Erin", "roles": []string{"viewer"}}, same...)
	if st != 201 || inv["email"] != "erin@acme.example" || inv["status"] != "pending" {
		t.Fatalf("invite erin: %d %v", st, inv)
	}
	link, _ := inv["url"].(string)
	lu, err := url.Parse(link)
	if err != nil || lu.Hostname() != "login.acme.localhost" || lu.Path != "/.gatehouse/invite" {
		t.Fatalf("link %q", link)
	}
	// The link is shown once: neither the listing nor the object has it.
	st, _, list := alice.api("GET", acmeAPI("/invitations"), nil)
	if st != 200 || len(list["items"].([]any)) != 1 || strings.Contains(mustJSON(list), lu.Query().Get("token")) {
		t.Fatalf("listing: %d %v", st, list)
	}
	// A second invitation for the same address is refused.
	if st, _, p := alice.api("POST", acmeAPI("/invitations"), map[string]any{"email": "erin@acme.example"}, same...); st != 409 || p["type"] != "urn:gatehouse:problem:pending" {
		t.Fatalf("second invitation: %d %v", st, p)
	}

	// The link on another host is refused; a mangled one too.
	erin := g.browser(t)
	other := *lu
	other.Host = "auth.localhost:" + g.port
	if p := erin.get(other.String()); p.status != http.StatusNotFound {
		t.Fatalf("link on another host: %d", p.status)
	}
	if p := erin.get(link[:len(link)-1]); p.status != http.StatusNotFound {
		t.Fatalf("truncated link: %d", p.status)
	}
	p := erin.get(link)
	if p.status != 200 || !strings.Contains(p.body, "erin@acme.example") || !strings.Contains(p.body, `autocomplete="new-password"`) {
		t.Fatalf("invitation page: %d\n%s", p.status, p.body)
	}
	send := func(pw, pw2 string) page {
		form := hidden(p.body)
		form.Set("name", "Erin Example")
		form.Set("password", pw)
		form.Set("password2", pw2)
		return erin.post(resolve(p.url, field(t, actionRE, p.body)), form)
	}
	if r := send("short", "short"); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "at least 12 characters") {
		t.Fatalf("short password: %d\n%s", r.status, r.body)
	}
	if r := send("erin-long-password", "erin-long-passw0rd"); r.status != http.StatusUnprocessableEntity || !strings.Contains(r.body, "differ") {
		t.Fatalf("mistyped password: %d\n%s", r.status, r.body)
	}
	if r := send("erin-long-password", "erin-long-password"); r.status != 200 || !strings.Contains(r.body, "signed in") {
		t.Fatalf("accept: %d\n%s", r.status, r.body)
	}
	// Signed in: the shared app asks only who she is (home-realm
	// discovery), then opens without a password, as the invited role.
	r := erin.follow(erin.get(g.url("app.localhost", "/welcome")))
	form := hidden(r.body)
	form.Set("email", "erin@acme.example")
	if r = erin.follow(erin.post(resolve(r.url, field(t, actionRE, r.body)), form)); r.status != 200 || strings.Contains(r.body, `name="password"`) {
		t.Fatalf("app after accepting: %d %s\n%s", r.status, r.url, r.body)
	}
	if r := up.last("/welcome"); r == nil || r.Header.Get("X-Gatehouse-Email") != "erin@acme.example" || r.Header.Get("X-Gatehouse-Roles") != "viewer" {
		t.Fatalf("upstream saw %v", r)
	}
	// Once only.
	if r := erin.get(link); r.status != http.StatusGone {
		t.Fatalf("link used again: %d", r.status)
	}
	if st, _, list := alice.api("GET", acmeAPI("/invitations"), nil); st != 200 || len(list["items"].([]any)) != 0 {
		t.Fatalf("after acceptance: %d %v", st, list)
	}
	// Erin's password works from a fresh browser.
	if r := g.browser(t).login(g.url("app.localhost", "/again"), "erin@acme.example", "erin-long-password"); r.status != 200 {
		t.Fatalf("erin signs in: %d", r.status)
	}
	st, _, audit := alice.api("GET", acmeAPI("/audit?action=invitation.accept"), nil)
	if st != 200 || len(audit["items"].([]any)) != 1 {
		t.Fatalf("audit of the acceptance: %d %v", st, audit)
	}

	// A revoked invitation's link is dead; a resent one's old link too.
	_, _, fay := alice.api("POST", acmeAPI("/invitations"), map[string]any{"email": "fay@acme.example"}, same...)
	_, _, again := alice.api("POST", acmeAPI("/invitations/"+fay["id"].(string)+"/resend"), nil, same...)
	if again["url"] == fay["url"] || again["url"] == nil {
		t.Fatalf("resend gave the same link: %v", again)
	}
	if r := erin.get(fay["url"].(string)); r.status != http.StatusGone {
		t.Fatalf("link replaced by a resend: %d", r.status)
	}
	if st, _, _ := alice.api("DELETE", acmeAPI("/invitations/"+fay["id"].(string)), nil, same...); st != 204 {
		t.Fatalf("revoke: %d", st)
	}
	if r := erin.get(again["url"].(string)); r.status != http.StatusGone {
		t.Fatalf("revoked link: %d", r.status)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
