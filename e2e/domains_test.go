package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

const domainsConfig = preamble + `domains:
  verify: true
  resolver: {{DNS}}
  recheck: 1s
routes:
  - id: app
    host: app.localhost
    upstream: {{UPSTREAM}}
orgs:
  - slug: acme
    name: Acme Corp
    email_domains: [acme.example]
    login_domain: login.acme.localhost
    connection: { type: password }
    users:
      - { email: alice@acme.example, password: "alice-pw-123", roles: [admin] }
`

type domainRow struct {
	Org, Domain, Kind, Status, Detail string
	Record                            string `json:"txt_record"`
	Value                             string `json:"txt_value"`
	Released                          bool
}

func domains(t *testing.T, g *gatehouse) map[string]domainRow {
	t.Helper()
	resp, err := http.Get("http://" + g.ops + "/domains")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []domainRow
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]domainRow{}
	for _, r := range rows {
		out[r.Domain] = r
	}
	return out
}

func waitStatus(t *testing.T, g *gatehouse, domain, status string) domainRow {
	t.Helper()
	return waitDomain(t, g, domain, status, func(r domainRow) bool { return r.Status == status })
}

// waitDomain polls /domains until domain's row satisfies ok, for at most
// 15 seconds (checks run every second; each is a DNS lookup and a synced
// store write, slow on a loaded machine).
func waitDomain(t *testing.T, g *gatehouse, domain, want string, ok func(domainRow) bool) domainRow {
	t.Helper()
	var r domainRow
	for range 150 {
		if r = domains(t, g)[domain]; ok(r) {
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s stayed %q (%s), want %s", domain, r.Status, r.Detail, want)
	return r
}

// Org domains count only once a DNS record proves them; a domain whose
// record goes away is suspended, not dropped.
func TestDomainVerification(t *testing.T) {
	dns, dnsAddr := startDNS(t)
	up := newUpstream(t)
	g := start(t, strings.NewReplacer("{{DNS}}", dnsAddr, "{{UPSTREAM}}", up.URL).Replace(domainsConfig))

	// The first check runs after /readyz: wait for its result, not the
	// seeded claim.
	checked := func(r domainRow) bool { return r.Status == "pending" && strings.Contains(r.Detail, "no TXT record") }
	login := waitDomain(t, g, "login.acme.localhost", "pending, checked", checked)
	email := waitDomain(t, g, "acme.example", "pending, checked", checked)
	if login.Record != "_gatehouse.login.acme.localhost" || !strings.HasPrefix(login.Value, "gatehouse-verification=") || !strings.Contains(login.Detail, "no TXT record") {
		t.Fatalf("pending login domain: %+v", login)
	}
	// Unproven: the login domain serves nothing, and the email domain
	// leads to no org.
	b := g.browser(t)
	if p := b.get(g.url("login.acme.localhost", "/.gatehouse/login")); p.status != http.StatusNotFound {
		t.Fatalf("unverified login domain: %d", p.status)
	}
	p := b.follow(b.get(g.url("app.localhost", "/")))
	form := hidden(p.body)
	form.Set("email", "alice@acme.example")
	if p := b.post(resolve(p.url, field(t, actionRE, p.body)), form); p.status != http.StatusUnprocessableEntity || !strings.Contains(p.body, "No organization signs in with acme.example") {
		t.Fatalf("discovery with an unverified email domain: %d", p.status)
	}

	// A wrong record does not do; the right ones verify both.
	dns.AddDNSTXTRecord(login.Record, "gatehouse-verification=wrong")
	waitDomain(t, g, "login.acme.localhost", "pending, wrong record", func(r domainRow) bool {
		if r.Status != "pending" {
			t.Fatalf("wrong record: %+v", r)
		}
		return strings.Contains(r.Detail, "want")
	})
	dns.DeleteDNSTXTRecord(login.Record)
	dns.AddDNSTXTRecord(login.Record, login.Value)
	dns.AddDNSTXTRecord(email.Record, email.Value)
	waitStatus(t, g, "login.acme.localhost", "verified")
	waitStatus(t, g, "acme.example", "verified")
	eventually(t, "verified domains routing", func() error {
		b := g.browser(t)
		p := b.follow(b.get(g.url("app.localhost", "/")))
		form := hidden(p.body)
		form.Set("email", "alice@acme.example")
		if p := b.post(resolve(p.url, field(t, actionRE, p.body)), form); p.status/100 != 3 { // on to the org
			return fmt.Errorf("discovery: %d", p.status)
		}
		if p := b.get(g.url("login.acme.localhost", "/.gatehouse/login")); p.status != http.StatusOK {
			return fmt.Errorf("login domain: %d", p.status)
		}
		return nil
	})
	if p := b.login(g.url("app.localhost", "/in"), "alice@acme.example", "alice-pw-123"); p.status != 200 {
		t.Fatalf("sign-in through the verified domains: %d %s", p.status, p.url)
	}

	// The DNS server fails (SERVFAIL) for a while: that proves nothing
	// about the customer's record, so the domain stays verified and keeps
	// serving; the check is retried at every tick and logged.
	dns.AddDNSServFailRecord(login.Record)
	for range 150 {
		if r := domains(t, g)["login.acme.localhost"]; strings.Contains(r.Detail, "status kept") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(4 * time.Second) // four more failing checks
	if r := domains(t, g)["login.acme.localhost"]; r.Status != "verified" || !strings.Contains(r.Detail, "status kept") || !g.logged("domains: check failed") {
		t.Fatalf("DNS failing: %+v", r)
	}
	if p := g.browser(t).get(g.url("login.acme.localhost", "/.gatehouse/login")); p.status != 200 {
		t.Fatalf("verified login domain during a DNS failure: %d", p.status)
	}
	dns.DeleteDNSServFailRecord(login.Record)
	for range 150 {
		if r := domains(t, g)["login.acme.localhost"]; r.Detail == "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The record goes away: after three checks in a row find it gone,
	// suspended, with a log line, and the domain stops serving; it comes
	// back with the record.
	dns.DeleteDNSTXTRecord(login.Record)
	r := waitStatus(t, g, "login.acme.localhost", "suspended")
	if !strings.Contains(r.Detail, "no TXT record") || !g.logged("domains: suspended") {
		t.Fatalf("suspension: %+v", r)
	}
	for range 150 {
		if p := g.browser(t).get(g.url("login.acme.localhost", "/.gatehouse/login")); p.status == http.StatusNotFound {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p := g.browser(t).get(g.url("login.acme.localhost", "/.gatehouse/login")); p.status != http.StatusNotFound {
		t.Fatalf("suspended login domain still serves: %d", p.status)
	}
	dns.AddDNSTXTRecord(login.Record, login.Value)
	waitStatus(t, g, "login.acme.localhost", "verified")
}

// rewrite edits the running instance's config file (for its next start).
func (g *gatehouse) rewrite(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(g.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config has no %q", old)
	}
	if err := os.WriteFile(g.cfgPath, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A config rollback: verified domains removed from the config and put
// back (each a restart) keep their tokens and stay verified, so the
// customer's records still prove them and the domains serve at once.
func TestDomainRemovedAndRestoredStaysVerified(t *testing.T) {
	dns, dnsAddr := startDNS(t)
	up := newUpstream(t)
	g := start(t, strings.NewReplacer("{{DNS}}", dnsAddr, "{{UPSTREAM}}", up.URL).Replace(domainsConfig))
	login := waitStatus(t, g, "login.acme.localhost", "pending")
	email := waitStatus(t, g, "acme.example", "pending")
	dns.AddDNSTXTRecord(login.Record, login.Value)
	dns.AddDNSTXTRecord(email.Record, email.Value)
	waitStatus(t, g, "login.acme.localhost", "verified")
	waitStatus(t, g, "acme.example", "verified")

	const loginLine, emailLine = "    login_domain: login.acme.localhost\n", "    email_domains: [acme.example]\n"
	g.rewrite(t, loginLine, "")
	g.rewrite(t, emailLine, "")
	g = g.restart(t)
	rows := domains(t, g)
	for _, was := range []domainRow{login, email} {
		if r := rows[was.Domain]; !r.Released || r.Value != was.Value || r.Status != "verified" {
			t.Fatalf("%s while removed: %+v", was.Domain, r)
		}
	}
	if p := g.browser(t).get(g.url("login.acme.localhost", "/.gatehouse/login")); p.status != http.StatusNotFound {
		t.Fatalf("removed login domain: %d", p.status)
	}

	// Put back: verified at once, the same values, serving before any check.
	g.rewrite(t, "    connection: { type: password }\n", loginLine+emailLine+"    connection: { type: password }\n")
	g = g.restart(t)
	rows = domains(t, g)
	for _, was := range []domainRow{login, email} {
		if r := rows[was.Domain]; r.Released || r.Value != was.Value || r.Status != "verified" {
			t.Fatalf("%s put back: %+v, was %+v", was.Domain, r, was)
		}
	}
	if p := g.browser(t).get(g.url("login.acme.localhost", "/.gatehouse/login")); p.status != http.StatusOK {
		t.Fatalf("restored login domain: %d", p.status)
	}
	// The next checks find the records and keep it so.
	time.Sleep(3 * time.Second)
	if r := domains(t, g)["login.acme.localhost"]; r.Status != "verified" || r.Detail != "" {
		t.Fatalf("after checks: %+v", r)
	}
	if strings.Contains(g.Logs(), "domains: waiting for verification") {
		t.Error("a restored domain was pending")
	}
}
