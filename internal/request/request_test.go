package request

import (
	"net/http"
	"testing"
)

func TestAuthority(t *testing.T) {
	tests := []struct {
		in, host, port string
		ok             bool
	}{
		{"app.example.com", "app.example.com", "", true},
		{"APP.Example.COM:8443", "app.example.com", "8443", true},
		{"app.example.com.", "app.example.com", "", true},
		{"app.example.com.:443", "app.example.com", "443", true},
		{"127.0.0.1:8080", "127.0.0.1", "8080", true},
		{"[::1]:8080", "[::1]", "8080", true},
		{"[::1]", "[::1]", "", true},
		{"app.localhost:,evil.com", "", "", false},
		{"app.localhost:;evil.com", "", "", false},
		{"app.localhost:'evil.com", "", "", false},
		{":evil.com", "", "", false},
		{"app.localhost:", "", "", false},
		{"app.localhost:0", "", "", false},
		{"app.localhost:65536", "", "", false},
		{"app.localhost:80:80", "", "", false},
		{"app,evil.com", "", "", false},
		{"app evil", "", "", false},
		{"user@app.localhost", "", "", false},
		{"[::1", "", "", false},
		{"[127.0.0.1]", "", "", false},
		{"[::1]x", "", "", false},
		{"", "", "", false},
		{".", "", "", false},
	}
	for _, tt := range tests {
		h, p, ok := Authority(&http.Request{Host: tt.in})
		if h != tt.host || p != tt.port || ok != tt.ok {
			t.Errorf("Authority(%q) = %q, %q, %v; want %q, %q, %v", tt.in, h, p, ok, tt.host, tt.port, tt.ok)
		}
	}
}
