package idp

import (
	"strings"
	"testing"
)

func serves(h string) bool {
	return h == "app.example.com" || h == "login.acme.example" || strings.HasSuffix(h, ".apps.example.com") && strings.Count(h, ".") == 3
}

func TestValidateRedirect(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		// Accepted.
		{"/", "/"},
		{"/dashboard?tab=1", "/dashboard?tab=1"},
		{"https://app.example.com/x?y=1", "https://app.example.com/x?y=1"},
		{"http://app.example.com:8080/x", "http://app.example.com:8080/x"},
		{"https://team.apps.example.com/", "https://team.apps.example.com/"},
		{"https://login.acme.example", "https://login.acme.example"},
		// Refused: every trick from the oauth2-proxy, Pomerium and Authelia advisories.
		{"//evil.com", ""},
		{"///evil.com", ""},
		{"/\\evil.com", ""},
		{"\\\\evil.com", ""},
		{"/\t/\\evil.com", ""},
		{"/\t/evil.com", ""},
		{"/%09/evil.com", ""},
		{"/%0a/evil.com", ""},
		{"/%0d/evil.com", ""},
		{"/%2f%2fevil.com", ""},
		{"/%2F/evil.com", ""},
		{"/%5cevil.com", ""},
		{"/%5Cevil.com", ""},
		{"/ /evil.com", ""},
		{"/%20/evil.com", ""},
		{"%2f%2fevil.com", ""},
		{"https:evil.com", ""},
		{"https:/evil.com", ""},
		{"https:///evil.com", ""},
		{"http:\\\\evil.com", ""},
		{"https://evil.com", ""},
		{"https://evil.com/https://app.example.com", ""},
		{"https://app.example.com.evil.com/", ""},
		{"https://evilapp.example.com/", ""},
		{"https://evil.com?.app.example.com", ""},
		{"https://evil.com#.app.example.com", ""},
		{"https://app.example.com@evil.com/", ""},
		{"https://app.example.com:x@evil.com/", ""},
		{"https://evil.com\\@app.example.com/", ""},
		{"https://evil.com%2f@app.example.com/", ""},
		{"https://APP.example.com/", ""},
		{"HTTPS://app.example.com/", ""},
		{"https://app.example.com./", ""},
		{"https://.apps.example.com/", ""},
		{"https://a.b.apps.example.com/", ""},
		{"https://apps.example.com/", ""},
		{"https://app.example.com%2eevil.com/", ""},
		{"javascript:alert(1)", ""},
		{"JavaScript:alert(1)", ""},
		{"javascript://app.example.com/%0aalert(1)", ""},
		{"data:text/html,<script>alert(1)</script>", ""},
		{"ftp://app.example.com/", ""},
		{"\x00/x", ""},
		{" https://app.example.com/", ""},
		{"https://app.example.com/\u2028", ""},
		{"//app.example.com", ""},
		{"", ""},
		{"/" + strings.Repeat("a", MaxRedirectLen), ""},
	}
	for _, tt := range tests {
		got, err := ValidateRedirect(tt.in, serves)
		if tt.want == "" {
			if err == nil {
				t.Errorf("ValidateRedirect(%q) = %q, want refusal", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ValidateRedirect(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestEmailDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice@acme.example", "acme.example"},
		{"Alice@ACME.Example", "acme.example"},
		{"a@evil.com@corp.com", ""},
		{"\"a@corp.com\"@evil.com", ""},
		{"a(corp.com)@evil.com", ""},
		{"a@corp.com (x)", ""},
		{"<a@corp.com>", ""},
		{"a@corp", ""},
		{"a@-corp.com", ""},
		{"a@corp..com", ""},
		{"a@corp.com.", ""},
		{"@corp.com", ""},
		{"a@", ""},
		{"a b@corp.com", ""},
		{"a@corp.com\n", ""},
		{"a\x00b@corp.com", ""},
		{"a\rb@corp.com", ""},
		{"a\u202eb@corp.com", ""},
		{"a\xffb@corp.com", ""},
		{"ä@corp.com", "corp.com"},
		{"a@xn--80ak6aa92e.com", "xn--80ak6aa92e.com"},
		{"a@соrp.com", ""},
	}
	for _, tt := range tests {
		got, err := EmailDomain(tt.in)
		if tt.want == "" {
			if err == nil {
				t.Errorf("EmailDomain(%q) = %q, want error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("EmailDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// FuzzValidateRedirect: whatever is accepted is either a single-slash
// path or an http(s) URL on a served host, as a browser would read it.
func FuzzValidateRedirect(f *testing.F) {
	for _, s := range []string{"/", "//evil.com", "/\\evil.com", "https://app.example.com/x", "https:evil.com", "/%2f%2fx", "https://app.example.com@evil.com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ValidateRedirect(in, serves)
		if err != nil {
			return
		}
		if strings.ContainsAny(got, "\\\t\r\n ") {
			t.Fatalf("accepted %q → %q with whitespace or backslash", in, got)
		}
		if strings.HasPrefix(got, "/") {
			if strings.HasPrefix(got, "//") {
				t.Fatalf("accepted scheme-relative %q → %q", in, got)
			}
			return
		}
		rest, ok := strings.CutPrefix(got, "https://")
		if !ok {
			if rest, ok = strings.CutPrefix(got, "http://"); !ok {
				t.Fatalf("accepted %q → %q: not http(s)", in, got)
			}
		}
		host := rest
		if i := strings.IndexAny(host, "/?#"); i >= 0 {
			host = host[:i]
		}
		if strings.Contains(host, "@") {
			t.Fatalf("accepted userinfo %q", got)
		}
		if i := strings.LastIndexByte(host, ':'); i >= 0 {
			host = host[:i]
		}
		if !serves(host) {
			t.Fatalf("accepted %q → %q on unserved host %q", in, got, host)
		}
	})
}
