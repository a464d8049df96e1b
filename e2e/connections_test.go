package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// idleConn opens a keep-alive connection from src, makes one request and
// leaves it open and idle; ok reports whether the request was answered.
func idleConn(t *testing.T, src, addr, host string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, false
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		return c, false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return c, resp.StatusCode == 200
}

// One client holding many idle keep-alive connections gets only its
// share; others are still served, the ops listener keeps answering, and
// a full listener makes room by closing the connection idle the longest.
func TestConnectionLimits(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg += "server:\n  max_connections: 40\n  max_connections_per_client: 15\n"
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")
	host := "app.localhost:" + g.port

	served := 0
	for i := 0; i < 30; i++ {
		if _, ok := idleConn(t, "127.0.0.2", g.addr, host); ok {
			served++
		}
	}
	if served != 15 {
		t.Fatalf("one client: %d of 30 idle connections served, want 15", served)
	}
	if _, ok := idleConn(t, "127.0.0.3", g.addr, host); !ok {
		t.Fatal("another client refused while one held its maximum")
	}
	// Fill the listener from many addresses, then more: every new client
	// is served (the longest idle connection makes room).
	for i := 0; i < 40; i++ {
		if _, ok := idleConn(t, fmt.Sprintf("127.0.2.%d", i+1), g.addr, host); !ok {
			t.Fatalf("client %d refused by a full listener holding idle connections", i)
		}
	}
	resp, err := http.Get("http://" + g.ops + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("ops /readyz with the main listener full: %v %v", resp, err)
	}
	resp.Body.Close()
	m := g.browser(t).get("http://" + g.ops + "/metrics").body
	for _, want := range []string{
		`gatehouse_connections_refused_total{listener="main",reason="client"} 15`,
		`gatehouse_connections_reclaimed_total{listener="main"}`,
		`gatehouse_connections_open{listener="main"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !g.logged(`"max_connections":40`) {
		t.Error("connection limits not logged at start")
	}
}
