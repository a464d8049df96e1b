package netguard

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestPublic(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true}, {"2606:4700::1", true}, {"1.1.1.1", true},
		{"127.0.0.1", false}, {"127.1.2.3", false}, {"10.1.2.3", false}, {"172.16.0.1", false}, {"172.31.255.255", false},
		{"192.168.1.1", false}, {"169.254.169.254", false}, {"100.64.0.1", false}, {"100.127.255.255", false},
		{"0.0.0.0", false}, {"255.255.255.255", false}, {"224.0.0.1", false},
		{"::1", false}, {"::", false}, {"fe80::1", false}, {"fc00::1", false}, {"fd12::1", false}, {"ff02::1", false},
		{"::ffff:127.0.0.1", false}, {"::ffff:10.0.0.1", false}, {"::ffff:8.8.8.8", true},
		{"64:ff9b::7f00:1", false}, {"64:ff9b::a9fe:a9fe", false}, {"64:ff9b::808:808", true}, {"64:ff9b:1::1", false},
		{"2002:7f00:1::1", false}, {"2002:a00:1::1", false}, {"2002:808:808::1", true},
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", false}, {"2001:db8::1", false},
	} {
		if got := Public(netip.MustParseAddr(tc.addr)); got != tc.public {
			t.Errorf("Public(%s) = %v, want %v", tc.addr, got, tc.public)
		}
	}
}

// The guard is on the address connected to: a loopback listener is never
// reached, by any spelling.
func TestControlRefusesLoopback(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	d := &net.Dialer{Timeout: time.Second, Control: Control}
	for _, host := range []string{"127.0.0.1", "localhost", "127.1"} {
		c, err := d.Dial("tcp", net.JoinHostPort(host, port))
		if err == nil {
			c.Close()
			t.Errorf("%s: connected", host)
			continue
		}
		if !strings.Contains(err.Error(), "not a public address") && !strings.Contains(err.Error(), "no such host") {
			t.Errorf("%s: %v", host, err)
		}
	}
}
