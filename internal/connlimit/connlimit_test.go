package connlimit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// serve runs an HTTP server on a limited loopback listener.
func serve(t *testing.T, o Options) (*Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := New(ln, o)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			<-done
		}
		io.WriteString(w, "ok")
	}), ConnState: l.ConnState, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return l, ln.Addr().String()
}

// keepAlive opens a connection from src, makes one request on it and
// leaves it idle; ok reports whether the request was answered.
func keepAlive(t *testing.T, src, addr string) (net.Conn, bool) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, false
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return c, false
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return c, false
	}
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return c, resp.StatusCode == 200
}

func waitOpen(t *testing.T, l *Listener, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); l.Open() != n; {
		if time.Now().After(deadline) {
			t.Fatalf("open connections: %d, want %d", l.Open(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestPerClientLimit(t *testing.T) {
	var refused atomic.Int64
	l, addr := serve(t, Options{PerClient: 3, Refused: func(r string) {
		if r == "client" {
			refused.Add(1)
		}
	}})
	for i := 0; i < 3; i++ {
		if _, ok := keepAlive(t, "127.0.0.2", addr); !ok {
			t.Fatalf("connection %d refused under the limit", i)
		}
	}
	for i := 0; i < 3; i++ {
		if _, ok := keepAlive(t, "127.0.0.2", addr); ok {
			t.Fatalf("connection %d over the per-client limit served", 3+i)
		}
	}
	// Another client is not affected.
	if _, ok := keepAlive(t, "127.0.0.3", addr); !ok {
		t.Fatal("another client refused")
	}
	if refused.Load() != 3 {
		t.Errorf("refused %d, want 3", refused.Load())
	}
	waitOpen(t, l, 4)
}

func TestExemptAddresses(t *testing.T) {
	trusted := netip.MustParseAddr("127.0.0.4")
	_, addr := serve(t, Options{PerClient: 1, Exempt: func(a netip.Addr) bool { return a == trusted }})
	for i := 0; i < 5; i++ {
		if _, ok := keepAlive(t, "127.0.0.4", addr); !ok {
			t.Fatalf("trusted proxy connection %d refused", i)
		}
	}
}

// A full listener closes the connection idle the longest to serve a new
// client; with none idle, the new connection is refused.
func TestTotalLimitReclaimsIdle(t *testing.T) {
	var reclaimed, refusedTotal atomic.Int64
	l, addr := serve(t, Options{Max: 4, Reclaimed: func() { reclaimed.Add(1) }, Refused: func(r string) {
		if r == "total" {
			refusedTotal.Add(1)
		}
	}})
	var idle []net.Conn
	for i := 0; i < 4; i++ {
		c, ok := keepAlive(t, fmt.Sprintf("127.0.1.%d", i+1), addr)
		if !ok {
			t.Fatalf("connection %d refused", i)
		}
		idle = append(idle, c)
	}
	waitOpen(t, l, 4)
	// A fifth client gets in; the first (longest idle) connection is closed.
	if _, ok := keepAlive(t, "127.0.1.9", addr); !ok {
		t.Fatal("new client refused while connections were idle")
	}
	_ = idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("longest idle connection still open")
	}
	if reclaimed.Load() != 1 {
		t.Errorf("reclaimed %d, want 1", reclaimed.Load())
	}
	waitOpen(t, l, 4)

	// Busy connections are not reclaimed: fill with ones mid-request.
	l2, addr2 := serve(t, Options{Max: 2, Refused: func(r string) { refusedTotal.Add(1) }})
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr2)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /block HTTP/1.1\r\nHost: x\r\n\r\n") // in the handler: active
	}
	waitOpen(t, l2, 2)
	time.Sleep(50 * time.Millisecond) // let the server mark them active
	if _, ok := keepAlive(t, "127.0.0.1", addr2); ok {
		t.Fatal("served over the limit with no idle connection")
	}
	// The refusal is reported as the listener closes the connection,
	// which may come a moment after the client saw it: wait for it.
	for deadline := time.Now().Add(2 * time.Second); refusedTotal.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if refusedTotal.Load() == 0 {
		t.Error("refusal not reported")
	}
}

func TestDefaultMax(t *testing.T) {
	for _, tt := range []struct {
		nofile uint64
		want   int
	}{{0, 100_000}, {1024, 512}, {65536, 32768}, {1 << 20, 100_000}} {
		if got := DefaultMax(tt.nofile); got != tt.want {
			t.Errorf("DefaultMax(%d) = %d, want %d", tt.nofile, got, tt.want)
		}
	}
	if n := RaiseFileLimit(); n == 0 {
		t.Error("RaiseFileLimit: unknown limit on a unix system")
	}
}
