package certs

import (
	"fmt"
	"testing"
)

func TestDecide(t *testing.T) {
	orgs := map[string]string{"login.acme.test": "org_acme", "xn--pple-43d.test": "org_apple"}
	d := &Decider{Public: "auth.saas.test", Routes: map[string]bool{"app.saas.test": true},
		OrgOf: func(h string) (string, bool) { o, ok := orgs[h]; return o, ok }}
	tests := []struct {
		name, org string
		ok        bool
	}{
		{"auth.saas.test", "", true},
		{"app.saas.test", "", true},
		{"login.acme.test", "org_acme", true},
		{"xn--pple-43d.test", "org_apple", true}, // a punycode domain that is configured
		{"xn--pple-43e.test", "", false},         // its look-alike is not
		{"login.acme.test.", "", false},          // trailing dot
		{"LOGIN.ACME.TEST", "", false},           // certmagic lowercases SNI; anything else is not ours
		{"", "", false},                          // no SNI
		{"127.0.0.1", "", false},                 // IP literals
		{"::1", "", false},
		{"[::1]", "", false},
		{"random.saas.test", "", false},
		{"evil.login.acme.test", "", false},
		{"login-acme.test", "", false},
		{"-a.test", "", false},
		{"a-.test", "", false},
		{"a..test", "", false},
		{"localhost", "", false},
		{"login.acme.test:443", "", false},
		{"lo gin.acme.test", "", false},
		{"ünicode.test", "", false},
	}
	for _, tt := range tests {
		org, ok := d.Decide(tt.name)
		if ok != tt.ok || org != tt.org {
			t.Errorf("Decide(%q) = %q, %v; want %q, %v", tt.name, org, ok, tt.org, tt.ok)
		}
	}
}

// BenchmarkDecide: the decision with 100,000 org domains loaded; it must
// stay O(1) and allocation-free (the benchmark fails on an allocation).
func BenchmarkDecide(b *testing.B) {
	orgs := make(map[string]string, 100_000)
	for i := range 100_000 {
		orgs[fmt.Sprintf("login.customer-%d.test", i)] = fmt.Sprintf("org_%d", i)
	}
	d := &Decider{Public: "auth.saas.test", Routes: map[string]bool{"app.saas.test": true},
		OrgOf: func(h string) (string, bool) { o, ok := orgs[h]; return o, ok }}
	names := []string{"login.customer-73512.test", "random.attacker.test", "app.saas.test", "login.customer-99999.test."}
	if a := testing.AllocsPerRun(1000, func() {
		for _, n := range names {
			d.Decide(n)
		}
	}); a != 0 {
		b.Fatalf("Decide allocates %.1f times per call set", a)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Decide(names[i%len(names)])
		i++
	}
}
