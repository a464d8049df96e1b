package proxy_test

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy"
)

// Headers upstreams trust for the client's address, the original URL or
// the method never pass as the client wrote them, in any spelling; the
// address ones are set from the real client address; a route can pass
// the ones its upstream needs from a proxy in front.
func TestClientHeadersStripped(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	router, err := proxy.NewRouter([]config.Route{
		{ID: "app", Host: "app.example.com", Upstream: "http://upstream.internal", PublicPaths: []string{"/pub"}},
		{ID: "iis", Host: "iis.example.com", Upstream: "http://upstream.internal", PassClientHeaders: []string{"x-original-url", "X-Forwarded-Prefix"}},
	})
	must(t, err)
	h := proxy.New(f.opts(func(o *proxy.Options) { o.Router = router }))
	spellings := func(name string) []string {
		return []string{name, strings.ToLower(name), strings.ToUpper(name), strings.ReplaceAll(name, "-", "_"), strings.ReplaceAll(name, "-", ".")}
	}
	for _, path := range []string{"/x", "/pub"} {
		req := httptest.NewRequest("GET", "http://app.example.com"+path, nil)
		req.RemoteAddr = "198.51.100.7:5555"
		req.AddCookie(f.cookie)
		for _, name := range config.ClientHeaders {
			for _, sp := range spellings(name) {
				req.Header[sp] = []string{"/admin"} // raw keys, as a server may keep them
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			t.Fatalf("%s: status %d", path, rec.Code)
		}
		out := f.tr.last.Header
		for k, v := range out {
			for _, name := range config.ClientHeaders {
				if strings.EqualFold(strings.NewReplacer("_", "-", ".", "-").Replace(k), name) && !(strings.EqualFold(k, "X-Real-Ip") && v[0] == "198.51.100.7") {
					t.Errorf("%s: upstream got %s: %q", path, k, v)
				}
			}
		}
		if got := out.Get("X-Real-Ip"); got != "198.51.100.7" {
			t.Errorf("%s: X-Real-IP %q, want the client address", path, got)
		}
		if got := out.Get("X-Forwarded-For"); got != "198.51.100.7" {
			t.Errorf("%s: X-Forwarded-For %q", path, got)
		}
	}
	// The opt-out passes exactly the listed headers.
	req := httptest.NewRequest("GET", "http://iis.example.com/x", nil)
	req.AddCookie(sealFor(t, f, "iis.example.com"))
	req.Header.Set("X-Original-URL", "/orig")
	req.Header.Set("X-Forwarded-Prefix", "/app")
	req.Header.Set("X-Rewrite-URL", "/admin")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	out := f.tr.last.Header
	if rec.Code != 200 || out.Get("X-Original-URL") != "/orig" || out.Get("X-Forwarded-Prefix") != "/app" || out.Get("X-Rewrite-URL") != "" {
		t.Fatalf("pass_client_headers: %d %v", rec.Code, out)
	}
}

// Only websocket upgrades pass by default; others (h2c above all) are
// removed so the request goes upstream as a plain one.
func TestUpgradesAllowedPerRoute(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	none := []string{}
	router, err := proxy.NewRouter([]config.Route{
		{ID: "app", Host: "app.example.com", Upstream: "http://upstream.internal", PublicPaths: []string{"/pub"}},
		{ID: "plain", Host: "plain.example.com", Upstream: "http://upstream.internal", Upgrades: none},
		{ID: "custom", Host: "custom.example.com", Upstream: "http://upstream.internal", Upgrades: []string{"websocket", "TLS/1.3"}},
	})
	must(t, err)
	h := proxy.New(f.opts(func(o *proxy.Options) { o.Router = router }))
	tests := []struct {
		host, path, upgrade, want string
	}{
		{"app.example.com", "/x", "websocket", "websocket"},
		{"app.example.com", "/x", "WebSocket", "WebSocket"},
		{"app.example.com", "/x", "h2c", ""},
		{"app.example.com", "/pub", "h2c", ""},
		{"app.example.com", "/x", "H2C", ""},
		{"app.example.com", "/x", "websocket, h2c", ""},
		{"app.example.com", "/x", "TLS/1.3", ""},
		{"app.example.com", "/x", "foo", ""},
		{"plain.example.com", "/x", "websocket", ""},
		{"custom.example.com", "/x", "tls/1.3", "tls/1.3"},
		{"custom.example.com", "/x", "h2c", ""},
	}
	for _, tt := range tests {
		f.tr.last = nil
		req := httptest.NewRequest("GET", "http://"+tt.host+tt.path, nil)
		req.AddCookie(sealFor(t, f, tt.host))
		req.Header.Set("Connection", "Upgrade, HTTP2-Settings")
		req.Header.Set("Upgrade", tt.upgrade)
		req.Header.Set("HTTP2-Settings", "AAMAAABkAAQCAAAAAAIAAAAA")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if f.tr.last == nil {
			t.Errorf("%s%s Upgrade %q: not forwarded (%d)", tt.host, tt.path, tt.upgrade, rec.Code)
			continue
		}
		out := f.tr.last.Header
		if got := out.Get("Upgrade"); got != tt.want {
			t.Errorf("%s%s Upgrade %q: upstream got Upgrade %q, want %q", tt.host, tt.path, tt.upgrade, got, tt.want)
		}
		if tt.want == "" && (out.Get("Http2-Settings") != "" || strings.Contains(strings.ToLower(out.Get("Connection")), "upgrade")) {
			t.Errorf("%s Upgrade %q: upstream got Connection %q HTTP2-Settings %q", tt.host, tt.upgrade, out.Get("Connection"), out.Get("Http2-Settings"))
		}
	}
}

// sealFor returns the fixture's session as a cookie for another host.
func sealFor(t *testing.T, f *fixture, host string) *http.Cookie {
	t.Helper()
	sid, err := f.o.Sessions.Open("app.example.com", f.cookie.Value, time.Now())
	must(t, err)
	v, err := f.o.Sessions.Seal(host, sid, time.Now().Add(time.Hour))
	must(t, err)
	return &http.Cookie{Name: f.cookie.Name, Value: v}
}

// A TLS request whose Host is not the handshake's SNI gets 421, over
// HTTP/1.1 and HTTP/2 alike, on routes and Gatehouse's own paths.
func TestHostSNIMismatchIsMisdirected(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	tests := []struct {
		sni, host string
		want      int
	}{
		{"app.example.com", "app.example.com", 200},
		{"APP.example.com", "app.example.com", 200},
		{"app.example.com", "app.example.com.", 200},
		{"app.example.com.", "app.example.com", 200},
		{"app.example.com", "APP.EXAMPLE.COM:443", 200},
		{"", "app.example.com", 200},
		{"login.acme.example", "app.example.com", 421},
		{"app.example.com", "other.example.com", 421},
		{"app.example.com.evil", "app.example.com", 421},
	}
	for _, tt := range tests {
		for _, proto := range []int{1, 2} {
			f.tr.last = nil
			req := httptest.NewRequest("GET", "https://"+tt.host+"/x", nil)
			req.Host = tt.host
			req.ProtoMajor = proto
			req.TLS = &tls.ConnectionState{ServerName: tt.sni}
			c := sealFor(t, f, "app.example.com")
			c.Name = f.o.Sessions.CookieName(true)
			req.AddCookie(c)
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Errorf("SNI %q Host %q HTTP/%d: %d, want %d", tt.sni, tt.host, proto, rec.Code, tt.want)
			}
			if tt.want == 421 && f.tr.last != nil {
				t.Errorf("SNI %q Host %q: forwarded", tt.sni, tt.host)
			}
		}
	}
}

// The Host a client sends reaches the upstream (X-Forwarded-Host, and
// Host with preserve_host) only validated and normalized; one that is not
// a host name with a numeric port is refused.
func TestHostValidatedBeforeForwarding(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	router, err := proxy.NewRouter([]config.Route{
		{ID: "app", Host: "app.example.com", Upstream: "http://upstream.internal", PublicPaths: []string{"/pub"}, PreserveHost: true},
	})
	must(t, err)
	h := proxy.New(f.opts(func(o *proxy.Options) { o.Router = router }))
	for _, tt := range []struct {
		host, want string
		status     int
	}{
		{"app.example.com", "app.example.com", 200},
		{"APP.example.com.:8443", "app.example.com:8443", 200},
		{"app.example.com:,evil.com", "", 400},
		{"app.example.com:;evil.com", "", 400},
		{"app.example.com:'evil.com", "", 400},
		{"app.example.com:99999", "", 400},
		{"app.example.com:80:81", "", 400},
	} {
		for _, path := range []string{"/pub", "/x"} {
			f.tr.last = nil
			req := httptest.NewRequest("GET", "http://app.example.com"+path, nil)
			req.Host = tt.host
			req.AddCookie(f.cookie)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Errorf("Host %q %s: %d, want %d", tt.host, path, rec.Code, tt.status)
				continue
			}
			if tt.status != 200 {
				if f.tr.last != nil {
					t.Errorf("Host %q %s: forwarded", tt.host, path)
				}
				continue
			}
			if got := f.tr.last.Header.Get("X-Forwarded-Host"); got != tt.want {
				t.Errorf("Host %q %s: X-Forwarded-Host %q, want %q", tt.host, path, got, tt.want)
			}
			if f.tr.last.Host != tt.want {
				t.Errorf("Host %q %s: preserved Host %q, want %q", tt.host, path, f.tr.last.Host, tt.want)
			}
		}
	}
}

// Gatehouse is no forward proxy: CONNECT is refused, and so is TRACE,
// which would echo the identity headers back.
func TestConnectAndTraceRefused(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	for _, m := range []string{"CONNECT", "TRACE", "connect"} {
		for _, path := range []string{"/healthz", "/x"} {
			f.tr.last = nil
			req := httptest.NewRequest(m, "http://app.example.com"+path, nil)
			req.AddCookie(f.cookie)
			rec := httptest.NewRecorder()
			f.h.ServeHTTP(rec, req)
			want := http.StatusMethodNotAllowed
			if m == "connect" {
				want = 200 // methods are case-sensitive: an unknown method, forwarded
			}
			if rec.Code != want || (want != 200) != (f.tr.last == nil) {
				t.Errorf("%s %s: %d (forwarded %v), want %d", m, path, rec.Code, f.tr.last != nil, want)
			}
		}
	}
}

// Identity headers are stripped in every spelling CGI-style servers read
// as the same name.
func TestIdentityHeaderSpellings(t *testing.T) {
	f := newFixture(t, policy.RouteOrgs{})
	req := httptest.NewRequest("GET", "http://app.example.com/x", nil)
	req.AddCookie(f.cookie)
	for _, k := range []string{"X.Gatehouse.Email", "x_gatehouse_email", "X-GATEHOUSE-ROLES", "X.gatehouse_Org-Slug"} {
		req.Header[k] = []string{"evil"}
	}
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	for k, v := range f.tr.last.Header {
		if v[0] == "evil" {
			t.Errorf("upstream got %s: %q", k, v)
		}
	}
}
