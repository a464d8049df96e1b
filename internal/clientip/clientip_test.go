package clientip

import (
	"net/http/httptest"
	"testing"
)

func TestResolve(t *testing.T) {
	r, err := New([]string{"10.0.0.0/8", "192.168.1.1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote string
		xff          []string
		want         string
		via          bool
	}{
		{"direct client", "203.0.113.5:1234", nil, "203.0.113.5", false},
		{"untrusted peer's XFF ignored", "203.0.113.5:1234", []string{"1.2.3.4"}, "203.0.113.5", false},
		{"trusted proxy", "10.1.2.3:80", []string{"198.51.100.7"}, "198.51.100.7", true},
		{"spoofed left entries skipped", "10.1.2.3:80", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7", true},
		{"chain of trusted proxies", "10.1.2.3:80", []string{"198.51.100.7, 192.168.1.1", "10.9.9.9"}, "198.51.100.7", true},
		{"garbage hop stops the walk", "10.1.2.3:80", []string{"1.1.1.1, garbage"}, "10.1.2.3", true},
		{"hop with a port", "10.1.2.3:80", []string{"198.51.100.7:5555"}, "198.51.100.7", true},
		{"ipv6 hop with a port", "10.1.2.3:80", []string{"[2001:db8::7]:5555"}, "2001:db8::7", true},
		{"all trusted", "10.1.2.3:80", []string{"10.0.0.1"}, "10.0.0.1", true},
		{"ipv4-mapped peer", "[::ffff:203.0.113.5]:1", []string{"1.2.3.4"}, "203.0.113.5", false},
		{"ipv6", "[2001:db8::1]:443", nil, "2001:db8::1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			req.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				req.Header.Add("X-Forwarded-For", v)
			}
			got, via := r.Resolve(req)
			if got != tt.want || via != tt.via {
				t.Fatalf("Resolve = %q, %v; want %q, %v", got, via, tt.want, tt.via)
			}
		})
	}
	if _, err := New([]string{"not-a-cidr/99"}); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}
