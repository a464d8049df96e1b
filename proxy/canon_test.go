package proxy

import (
	"strings"
	"testing"
)

func TestCanonicalPath(t *testing.T) {
	tests := []struct {
		raw, want, wantEsc string
		bad                bool
	}{
		{raw: "", want: "/", wantEsc: "/"},
		{raw: "/", want: "/", wantEsc: "/"},
		{raw: "/a/b", want: "/a/b", wantEsc: "/a/b"},
		{raw: "/a/b/", want: "/a/b/", wantEsc: "/a/b/"},
		{raw: "//a///b", want: "/a/b", wantEsc: "/a/b"},
		{raw: "/a/./b", want: "/a/b", wantEsc: "/a/b"},
		{raw: "/a/../b", want: "/b", wantEsc: "/b"},
		{raw: "/../../etc/passwd", want: "/etc/passwd", wantEsc: "/etc/passwd"},
		{raw: "/healthz/../admin", want: "/admin", wantEsc: "/admin"},
		{raw: "/healthz/%2e%2e/admin", want: "/admin", wantEsc: "/admin"},
		{raw: "/healthz/%2E%2E/admin", want: "/admin", wantEsc: "/admin"},
		{raw: "/healthz/.%2e/admin", want: "/admin", wantEsc: "/admin"},
		{raw: "/a/..", want: "/", wantEsc: "/"},
		{raw: "/a/b/..", want: "/a/", wantEsc: "/a/"},
		{raw: "/%61dmin", want: "/admin", wantEsc: "/admin"},
		{raw: "/a%20b", want: "/a b", wantEsc: "/a%20b"},
		{raw: "/a%25b", want: "/a%b", wantEsc: "/a%25b"},
		{raw: "/a%3Fb", want: "/a?b", wantEsc: "/a%3Fb"},
		{raw: "/a%23b", want: "/a#b", wantEsc: "/a%23b"},
		{raw: "/a;jsessionid=1", want: "/a;jsessionid=1", wantEsc: "/a;jsessionid=1"},
		{raw: "/Admin", want: "/Admin", wantEsc: "/Admin"},
		{raw: "/caf%C3%A9", want: "/café", wantEsc: "/caf%C3%A9"},
		{raw: "/healthz%2f..%2fadmin", bad: true},
		{raw: "/healthz%2F..%2Fadmin", bad: true},
		{raw: "/healthz%5c..%5cadmin", bad: true},
		{raw: "/healthz\\..\\admin", bad: true},
		{raw: "/healthz/..;/admin", bad: true},
		{raw: "/healthz/.;x/admin", bad: true},
		{raw: "/healthz/%2e%2e;/admin", bad: true},
		{raw: "/healthz/..%3b/admin", bad: true},
		{raw: "/a%00b", bad: true},
		{raw: "/public/%252e%252e/admin", bad: true},
		{raw: "/public/%252E%252E/admin", bad: true},
		{raw: "/public%252fadmin", bad: true},
		{raw: "/public/%25%32%65%25%32%65/admin", bad: true},
		{raw: "/a%255cb", bad: true},
		// Double encoding of anything, not only dots and separators.
		{raw: "/a%2520b", bad: true},
		{raw: "/%2561dmin", bad: true},
		{raw: "/%2541DMIN", bad: true},
		{raw: "/x/%25%36%31dmin", bad: true},
		{raw: "/a%25", want: "/a%", wantEsc: "/a%25"},
		{raw: "/100%25off", want: "/100%off", wantEsc: "/100%25off"},
		{raw: "/a%25zz", want: "/a%zz", wantEsc: "/a%25zz"},
		// Parameters: kept on named segments, refused where servers
		// disagree (params-only segments, encoded ";").
		{raw: "/admin;x/secret", want: "/admin;x/secret", wantEsc: "/admin;x/secret"},
		{raw: "/a;", want: "/a;", wantEsc: "/a;"},
		{raw: "/;x/admin/secret", bad: true},
		{raw: "/;/admin", bad: true},
		{raw: "/admin/;x/secret", bad: true},
		{raw: "/admin/;", bad: true},
		{raw: "/;jsessionid=1", bad: true},
		{raw: "//;x//admin", bad: true},
		{raw: "/%3Bx/admin", bad: true},
		{raw: "/admin%3bx/secret", bad: true},
		{raw: "/x/../;y/admin", bad: true},
		// Characters that fold or normalize to ASCII.
		{raw: "/adm%C4%B1n", bad: true},                // ı dotless i
		{raw: "/ADM%C4%B0N", bad: true},                // İ dotted capital I
		{raw: "/%C5%BFecret", bad: true},               // ſ long s
		{raw: "/admin/%E2%84%AAey", bad: true},         // K Kelvin sign
		{raw: "/admın", bad: true},                     // raw UTF-8 too
		{raw: "/%EF%BD%81dmin", bad: true},             // fullwidth a
		{raw: "/admin%EF%BC%8Fsecret", bad: true},      // fullwidth solidus
		{raw: "/x%EF%BC%8E%EF%BC%8E/admin", bad: true}, // fullwidth dots
		{raw: "/%EF%AC%81le", bad: true},               // ﬁ ligature
		{raw: "/a%E2%80%A4", bad: true},                // one dot leader
		// Bytes that are not UTF-8 (overlong "." and "/").
		{raw: "/%C0%AE%C0%AE/admin", bad: true},
		{raw: "/%C0%AFadmin", bad: true},
		{raw: "/%FF", bad: true},
		{raw: "/%E6%97", bad: true},
		// Other non-ASCII is kept.
		{raw: "/%E6%97%A5%E6%9C%AC", want: "/日本", wantEsc: "/%E6%97%A5%E6%9C%AC"},
		{raw: "/%C3%BCber", want: "/über", wantEsc: "/%C3%BCber"},
		{raw: "/%C3%A9t%C3%A9/na%C3%AFve", want: "/été/naïve", wantEsc: "/%C3%A9t%C3%A9/na%C3%AFve"},
		// Full case mappings to ASCII: ß is SS to Java's toUpperCase.
		{raw: "/cla%C3%9F", bad: true},
		{raw: "/%C5%89", bad: true}, // ŉ: ʼN
		// Windows best-fit to path structure.
		{raw: "/admin%E2%88%95x", bad: true}, // ∕ division slash
		{raw: "/admin%E2%81%84x", bad: true}, // ⁄ fraction slash
		{raw: "/a%C2%A5b", bad: true},        // ¥ (backslash in cp932)
		{raw: "/a%E2%88%B6b", bad: true},     // ∶ ratio
		// Windows aliases: trailing dot or space, streams, 8.3 names.
		{raw: "/admin./x", bad: true},
		{raw: "/admin%20/x", bad: true},
		{raw: "/admin", want: "/admin", wantEsc: "/admin"},
		{raw: "/admin...", bad: true},
		{raw: "/admin::$DATA", bad: true},
		{raw: "/admin:$i30:$INDEX_ALLOCATION/x", bad: true},
		{raw: "/ADMINI~1/x", bad: true},
		{raw: "/admin.;x/y", bad: true},
		{raw: "/v1/items:batchGet", want: "/v1/items:batchGet", wantEsc: "/v1/items:batchGet"},
		{raw: "/~alice/x", want: "/~alice/x", wantEsc: "/~alice/x"},
		{raw: "/a.b/c.json", want: "/a.b/c.json", wantEsc: "/a.b/c.json"},
		{raw: "/.well-known/x", want: "/.well-known/x", wantEsc: "/.well-known/x"},
		{raw: "*", bad: true},
		{raw: "/a%0ab", bad: true},
		{raw: "/a\x00b", bad: true},
		{raw: "/a\tb", bad: true},
		{raw: "/a#frag", bad: true},
		{raw: "/a%zz", bad: true},
		{raw: "/a%2", bad: true},
		{raw: "a/b", bad: true},
		{raw: "http://evil/a", bad: true},
	}
	for _, tt := range tests {
		got, esc, err := CanonicalPath(tt.raw)
		if tt.bad {
			if err == nil {
				t.Errorf("CanonicalPath(%q) = %q, want error", tt.raw, got)
			}
			continue
		}
		if err != nil || got != tt.want || esc != tt.wantEsc {
			t.Errorf("CanonicalPath(%q) = %q, %q, %v; want %q, %q", tt.raw, got, esc, err, tt.want, tt.wantEsc)
		}
	}
}

func TestHasPathPrefix(t *testing.T) {
	tests := []struct {
		path, prefix string
		want         bool
	}{
		{"/healthz", "/healthz", true},
		{"/healthz/", "/healthz", true},
		{"/healthz/x", "/healthz", true},
		{"/healthzx", "/healthz", false},
		{"/healthz;x", "/healthz", false},
		{"//healthz", "/healthz", false},
		{"/HEALTHZ", "/healthz", false},
		{"/anything", "/", true},
		{"/api/v1", "/api/", true},
		{"/api", "/api/", true},
		{"/apiv1", "/api/", false},
	}
	for _, tt := range tests {
		if got := HasPathPrefix(tt.path, tt.prefix); got != tt.want {
			t.Errorf("HasPathPrefix(%q, %q) = %v", tt.path, tt.prefix, got)
		}
	}
}

func TestStripParams(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/a/b", "/a/b"},
		{"/admin;x/secret", "/admin/secret"},
		{"/admin;x=1;y=2/secret;z", "/admin/secret"},
		{"/a;x/", "/a/"},
		{"/a;", "/a"},
		// Not canonical (CanonicalPath refuses these), but the result is:
		// no empty segment a prefix check could trip on.
		{"/;x/admin/secret", "/admin/secret"},
		{"/admin/;x/secret", "/admin/secret"},
		{"/;x", "/"},
		{"/a/;x", "/a/"},
	}
	for _, tt := range tests {
		if got := StripParams(tt.in); got != tt.want {
			t.Errorf("StripParams(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzCanonicalPath checks the properties routing relies on: the result
// is absolute, has no dot segments or empty segments, is a fixed point,
// and its escaped form decodes back to it.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "/%2e%2e/x", "//a//b/", "/a%2fb", "/..;/x", "/a%25b%3F", "/caf%C3%A9/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, esc, err := CanonicalPath(raw)
		if err != nil {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.HasPrefix(esc, "//") || strings.Contains(esc, "//") {
			t.Fatalf("CanonicalPath(%q) = %q (%q): not a canonical absolute path", raw, p, esc)
		}
		for _, seg := range strings.Split(esc[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("CanonicalPath(%q) = %q: dot segment left", raw, esc)
			}
		}
		m := StripParams(p)
		if strings.Contains(m, "//") || !strings.HasPrefix(m, "/") {
			t.Fatalf("StripParams(%q) = %q: empty segment", p, m)
		}
		for _, r := range p {
			if r >= 0x80 && foldsToASCII(r) {
				t.Fatalf("CanonicalPath(%q) = %q: keeps %q, which folds to ASCII", raw, p, r)
			}
		}
		p2, esc2, err := CanonicalPath(esc)
		if err != nil || p2 != p || esc2 != esc {
			t.Fatalf("not a fixed point: %q → %q → %q (%v)", raw, esc, esc2, err)
		}
	})
}
