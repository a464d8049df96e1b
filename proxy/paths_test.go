package proxy_test

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy"
)

// The path Gatehouse canonicalizes, the path routes match, the route it
// picks and the path the upstream receives describe one resource: a
// request that would reach /admin on a servlet container or a
// case-insensitive upstream takes the /admin route (whose orgs list
// refuses alice's org), or is refused with 400 where servers disagree.
func TestPathVariantsCannotSkipTheLongestRoute(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	router, err := proxy.NewRouter([]config.Route{
		{ID: "app", Host: "app.example.com", PathPrefix: "/", Upstream: "http://upstream.internal"},
		{ID: "admin", Host: "app.example.com", PathPrefix: "/admin", Upstream: "http://upstream.internal", Orgs: []string{"globex"}},
	})
	must(t, err)
	h := proxy.New(f.opts(func(o *proxy.Options) { o.Router = router }))
	tests := []struct {
		path     string
		status   int
		upstream string // what the upstream receives when forwarded
	}{
		{"/dashboard", 200, "/dashboard"},
		{"/admin/users", 403, ""},
		{"/admin;x/users", 403, ""},
		{"/admin;jsessionid=1", 403, ""},
		{"/ADMIN/users", 403, ""},
		{"/Admin;x=1;y=2/users", 403, ""},
		{"/x/../admin/users", 403, ""},
		{"//admin//users", 403, ""},
		{"/%61dmin/users", 403, ""},
		// A segment of parameters only: Tomcat reads /admin/users.
		{"/;x/admin/users", 400, ""},
		{"/;/admin", 400, ""},
		{"/;x=1;y=2/admin", 400, ""},
		{"/dashboard/;x/../../admin", 400, ""},
		// Encoded ";" and double encoding of any character.
		{"/admin%3Bx/users", 400, ""},
		{"/%2561dmin/users", 400, ""},
		{"/%2541DMIN/users", 400, ""},
		// Characters that fold or normalize to ASCII letters.
		{"/adm%C4%B1n/users", 400, ""},
		{"/ADM%C4%B0N/users", 400, ""},
		{"/%EF%BD%81dmin/users", 400, ""},
		{"/%C0%AE%C0%AE/admin", 400, ""},
		// A literal "#" (no client sends one; Go would read "%23").
		{"/dashboard#/../admin/users", 400, ""},
		// Windows aliases of /admin.
		{"/admin./users", 400, ""},
		{"/admin%20/users", 400, ""},
		{"/admin::$DATA/users", 400, ""},
		{"/ADMINI~1/users", 400, ""},
		{"/adm%E2%88%95in", 400, ""},
		{"/cla%C3%9F", 400, ""},
		// Parameters on other segments pass, as sent.
		{"/dashboard;x/items", 200, "/dashboard;x/items"},
	}
	for _, tt := range tests {
		f.tr.last = nil
		req := rawRequest(t, tt.path)
		req.AddCookie(f.cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.status {
			t.Errorf("GET %s: status %d, want %d", tt.path, rec.Code, tt.status)
			continue
		}
		switch {
		case tt.status == http.StatusOK && (f.tr.last == nil || f.tr.last.URL.EscapedPath() != tt.upstream):
			t.Errorf("GET %s: upstream got %v, want %s", tt.path, f.tr.last, tt.upstream)
		case tt.status != http.StatusOK && f.tr.last != nil:
			t.Errorf("GET %s: refused with %d but the upstream was reached (%s)", tt.path, rec.Code, f.tr.last.URL)
		}
	}
}

// rawRequest reads a request whose target is exactly path, as a server
// would (httptest.NewRequest would resolve dot segments and "//" first).
func rawRequest(t *testing.T, path string) *http.Request {
	t.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET " + path + " HTTP/1.1\r\nHost: app.example.com\r\n\r\n")))
	must(t, err)
	req.RemoteAddr = "192.0.2.1:1234"
	return req
}
