package proxy

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/request"
)

// Gatehouse's cookies are stripped by their parsed name, whatever the
// configured session cookie is called and however a part is spaced.
func TestStripCookies(t *testing.T) {
	ours := func(n string) bool {
		switch n {
		case "sid", "__Host-sid", "_gatehouse_csrf":
			return true
		}
		return false
	}
	markers := []string{"sid", "gatehouse"}
	tests := []struct {
		name  string
		lines []string
		want  []string // nil: no Cookie header left
	}{
		{"only ours", []string{"sid=abc"}, nil},
		{"custom name among others", []string{"app=1; sid=abc; theme=dark"}, []string{"app=1; theme=dark"}},
		{"secure prefix", []string{"__Host-sid=abc; app=1"}, []string{"app=1"}},
		{"space before =", []string{"app=1; sid =abc"}, []string{"app=1"}},
		{"tab before =", []string{"sid\t=abc; app=1"}, []string{"app=1"}},
		{"space after =", []string{"sid= abc; app=1"}, []string{"app=1"}},
		{"leading spaces", []string{"app=1;   sid=abc"}, []string{"app=1"}},
		{"no space after ;", []string{"app=1;sid=abc;x=2"}, []string{"app=1; x=2"}},
		{"several lines", []string{"app=1", "sid=abc", "_gatehouse_csrf=t"}, []string{"app=1"}},
		{"quoted", []string{`sid="abc"; app=1`}, []string{"app=1"}},
		{"no value", []string{"sid; app=1"}, []string{"app=1"}},
		{"similar names stay", []string{"sidx=1; xsid=2; sid2=3"}, []string{"sidx=1; xsid=2; sid2=3"}},
		{"none of ours", []string{"app=1; theme=dark"}, []string{"app=1; theme=dark"}},
	}
	for _, tt := range tests {
		hd := http.Header{"Cookie": tt.lines}
		stripCookies(hd, ours, markers)
		got := hd["Cookie"]
		if len(got) != len(tt.want) || (len(got) == 1 && got[0] != tt.want[0]) {
			t.Errorf("%s: Cookie %q, want %q", tt.name, got, tt.want)
		}
	}
}

// FuzzCookieStripping: whatever Cookie header a client sends, a value
// Gatehouse would read as its session cookie never reaches the upstream.
func FuzzCookieStripping(f *testing.F) {
	for _, s := range []string{"sid=abc", "app=1; sid =abc", "sid\t=x;sid=y", "a=b;;sid=c; d", `sid="q"`} {
		f.Add(s, "sid")
	}
	f.Fuzz(func(t *testing.T, line, name string) {
		if name == "" || strings.ContainsAny(name, "=; \t") {
			return
		}
		r := &http.Request{Header: http.Header{"Cookie": {line}}}
		v, ok := request.CookieValue(r, name)
		hd := http.Header{"Cookie": {line}}
		stripCookies(hd, func(n string) bool { return n == name }, []string{name})
		if ok {
			for _, l := range hd["Cookie"] {
				if got, still := request.CookieValue(&http.Request{Header: http.Header{"Cookie": {l}}}, name); still {
					t.Fatalf("Cookie %q: %s=%q accepted, and %q still reaches the upstream in %q", line, name, v, got, l)
				}
			}
		}
	})
}
