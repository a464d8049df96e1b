package certs

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/apply"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/internal/testdns"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// A domain verified early in a sweep routes before the sweep has checked
// every other org: the directory is reloaded after the first change, not
// only at the end.
func TestDomainCheckReloadsDirectoryDuringSweep(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	quiet := slog.New(slog.DiscardHandler)
	now := time.Now()
	// Orgs are swept in ID order; acme's is the lower.
	var decl []config.Org
	for _, slug := range []string{"acme", "globex"} {
		decl = append(decl, config.Org{Slug: slug, Name: slug, LoginDomain: "login." + slug + ".test", Connection: config.Connection{Type: "password"}})
	}
	if err := apply.Orgs(ctx, st, decl, now, quiet); err != nil {
		t.Fatal(err)
	}
	orgs, err := idp.NewDirectory(ctx, st, quiet)
	if err != nil {
		t.Fatal(err)
	}
	orgs.RequireVerified()
	if err := orgs.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := st.ListOrgs(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("orgs: %v %v", list, err)
	}
	first, second := list[0], list[1]

	dns, addr := testdns.Start(t)
	name, value := Record(first.Domains[0])
	dns.AddDNSTXTRecord(name, value)

	// Every lookup notes whether the first org's domain routes yet.
	var mu sync.Mutex
	var routed []bool
	inner := NewResolver(addr)
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, a string) (net.Conn, error) {
		_, ok := orgs.ByLoginHost(first.LoginDomain)
		mu.Lock()
		routed = append(routed, ok)
		mu.Unlock()
		return inner.Dial(ctx, network, a)
	}}
	c := &DomainChecker{st: st, orgs: orgs, recheck: time.Hour, log: quiet, now: time.Now,
		v: &Verifier{Resolver: resolver}}
	c.checkAll(ctx)
	mu.Lock()
	defer mu.Unlock()
	if len(routed) == 0 || routed[0] || !routed[len(routed)-1] {
		t.Fatalf("first org's domain routing at each lookup of the sweep: %v; want false at its own check and true by the second org's", routed)
	}
	if _, ok := orgs.ByLoginHost(second.LoginDomain); ok {
		t.Fatal("the unproven domain routes")
	}
	got, _ := st.GetOrg(ctx, first.ID)
	if got.Domains[0].Status != store.DomainVerified {
		t.Fatalf("first org's claim: %+v", got.Domains[0])
	}
}

// logLines are the JSON log lines a test's logger wrote (from timers too), parsed.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// with returns the lines whose msg starts with msg.
func (l *logLines) with(t *testing.T, msg string) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if s, _ := m["msg"].(string); strings.HasPrefix(s, msg) {
			out = append(out, m)
		}
	}
	return out
}

// /domains says how each claim was proven, and a suspended domain's
// warning names the record that proved it: the CNAME for a domain a
// CNAME verified, the TXT record otherwise.
func TestDomainMethodInStatusAndSuspension(t *testing.T) {
	const target = "edge.saas.test"
	for _, tc := range []struct {
		name, kind, domain string
		cname              bool // proven by a CNAME (else a TXT record)
		wantType, wantName string
		wantValue          func(store.DomainClaim) string
	}{
		{"login domain by CNAME", "login", "login.acme.test", true, "CNAME", "login.acme.test", func(store.DomainClaim) string { return target }},
		{"login domain by TXT", "login", "login.acme.test", false, "TXT", "_gatehouse.login.acme.test", func(c store.DomainClaim) string { return "gatehouse-verification=" + c.Token }},
		{"email domain by TXT", "email", "acme.test", false, "TXT", "_gatehouse.acme.test", func(c store.DomainClaim) string { return "gatehouse-verification=" + c.Token }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := badgertest.Open(t)
			logs := &logLines{}
			log := slog.New(slog.NewJSONHandler(logs, nil))
			decl := config.Org{Slug: "acme", Name: "Acme", Connection: config.Connection{Type: "password"}}
			if tc.kind == "login" {
				decl.LoginDomain = tc.domain
			} else {
				decl.EmailDomains = []string{tc.domain}
			}
			clock := time.Unix(1_800_000_000, 0)
			if err := apply.Orgs(ctx, st, []config.Org{decl}, clock, log); err != nil {
				t.Fatal(err)
			}
			orgs, err := idp.NewDirectory(ctx, st, log)
			if err != nil {
				t.Fatal(err)
			}
			o, _ := st.GetOrgBySlug(ctx, "acme")
			claim := o.Domains[0]
			dns, addr := testdns.Start(t)
			if tc.cname {
				dns.AddDNSCNAMERecord(tc.domain, target+".")
			} else {
				name, value := Record(claim)
				dns.AddDNSTXTRecord(name, value)
			}
			c := &DomainChecker{st: st, orgs: orgs, recheck: time.Minute, log: log, now: func() time.Time { return clock },
				v: &Verifier{Server: addr, CNAMETarget: target}}
			c.checkAll(ctx)

			row := func() map[string]any {
				t.Helper()
				rec := httptest.NewRecorder()
				DomainsHandler(st, target).ServeHTTP(rec, httptest.NewRequest("GET", "/domains", nil))
				var rows []map[string]any
				if err := json.Unmarshal(rec.Body.Bytes(), &rows); err != nil || len(rows) != 1 {
					t.Fatalf("/domains: %v %s", err, rec.Body)
				}
				return rows[0]
			}
			wantMethod := map[bool]string{true: "cname", false: "txt"}[tc.cname]
			if r := row(); r["status"] != "verified" || r["method"] != wantMethod {
				t.Fatalf("/domains after the proof: %v", r)
			}
			if r := row(); (tc.kind == "login") != (r["cname_target"] == target) {
				t.Errorf("/domains cname_target: %v", r)
			}
			if v := logs.with(t, "domains: verified"); len(v) != 1 || v[0]["method"] != wantMethod {
				t.Errorf("verified log lines: %v", v)
			}

			// The proof goes away: suspended after three failing checks.
			if tc.cname {
				dns.DeleteDNSCNAMERecord(tc.domain)
			} else {
				name, _ := Record(claim)
				dns.DeleteDNSTXTRecord(name)
			}
			for range SuspendAfter {
				clock = clock.Add(time.Minute)
				c.checkAll(ctx)
			}
			if r := row(); r["status"] != "suspended" || r["method"] != wantMethod {
				t.Fatalf("/domains after the record went: %v", r)
			}
			w := logs.with(t, "domains: suspended")
			if len(w) != 1 {
				t.Fatalf("suspension log lines: %v", w)
			}
			if w[0]["record_type"] != tc.wantType || w[0]["record"] != tc.wantName || w[0]["value"] != tc.wantValue(claim) {
				t.Errorf("suspension names %v %v %v, want %s %s %s", w[0]["record_type"], w[0]["record"], w[0]["value"], tc.wantType, tc.wantName, tc.wantValue(claim))
			}
		})
	}
}

// Each sweep publishes how many claims are in each state, by kind.
func TestDomainClaimsMetric(t *testing.T) {
	ctx := context.Background()
	st := badgertest.Open(t)
	quiet := slog.New(slog.DiscardHandler)
	acme := config.Org{Slug: "acme", Name: "Acme", LoginDomain: "login.acme.test", EmailDomains: []string{"acme.test", "old.acme.test"}, Connection: config.Connection{Type: "password"}}
	globex := config.Org{Slug: "globex", Name: "Globex", LoginDomain: "login.globex.test", Connection: config.Connection{Type: "password"}}
	clock := time.Unix(1_800_000_000, 0)
	if err := apply.Orgs(ctx, st, []config.Org{acme, globex}, clock, quiet); err != nil {
		t.Fatal(err)
	}
	acme.EmailDomains = acme.EmailDomains[:1] // old.acme.test: released
	if err := apply.Orgs(ctx, st, []config.Org{acme, globex}, clock, quiet); err != nil {
		t.Fatal(err)
	}
	orgs, err := idp.NewDirectory(ctx, st, quiet)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := st.GetOrgBySlug(ctx, "acme")
	login, _ := o.Claim("login", "login.acme.test")
	dns, addr := testdns.Start(t)
	name, value := Record(login)
	dns.AddDNSTXTRecord(name, value)
	m := telemetry.New()
	c := &DomainChecker{st: st, orgs: orgs, recheck: time.Minute, log: quiet, now: func() time.Time { return clock }, metrics: m,
		v: &Verifier{Server: addr}}
	check := func(want map[[2]string]float64) {
		t.Helper()
		got := scrape(t, m)
		for _, kind := range []string{"login", "email"} {
			for _, state := range []string{"pending", "verified", "suspended", "released"} {
				s := `gatehouse_domain_claims{kind="` + kind + `",state="` + state + `"}`
				if v, ok := got[s]; !ok || v != want[[2]string{kind, state}] {
					t.Errorf("%s = %v (published %v), want %v", s, v, ok, want[[2]string{kind, state}])
				}
			}
		}
	}
	c.checkAll(ctx)
	check(map[[2]string]float64{{"login", "verified"}: 1, {"login", "pending"}: 1, {"email", "pending"}: 1, {"email", "released"}: 1})
	dns.DeleteDNSTXTRecord(name)
	for range SuspendAfter {
		clock = clock.Add(time.Minute)
		c.checkAll(ctx)
	}
	check(map[[2]string]float64{{"login", "suspended"}: 1, {"login", "pending"}: 1, {"email", "pending"}: 1, {"email", "released"}: 1})
}

// The TLS listener's error log leaves out handshakes refused for names
// not served (the refusal log reports them, aggregated) and keeps every
// other handshake error.
func TestTLSErrorLogLeavesRefusalsToTheRefusalLog(t *testing.T) {
	logs := &logLines{}
	srv := &http.Server{
		Handler:  http.NotFoundHandler(),
		ErrorLog: TLSErrorLog(slog.New(slog.NewJSONHandler(logs, nil))),
		TLSConfig: &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, ErrNotAllowed
		}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeTLS(ln, "", "") }()
	defer func() {
		srv.Close()
		<-done
	}()
	for _, sni := range []string{"random.scan.test", "", "x.y.test"} {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err == nil {
			c.Close()
			t.Fatalf("handshake for %q succeeded", sni)
		}
	}
	// Not TLS at all: that error is still logged.
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
	_, _ = c.Read(make([]byte, 512))
	c.Close()
	var lines []map[string]any
	for range 100 {
		if lines = logs.with(t, "http: TLS handshake error"); len(lines) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // any line of the refusals before it
	lines = logs.with(t, "http: TLS handshake error")
	if len(lines) != 1 || lines[0]["level"] != "WARN" || strings.Contains(lines[0]["msg"].(string), ErrNotAllowed.Error()) {
		t.Fatalf("handshake error lines: %v", lines)
	}
}
