package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// balancer is a layer-4 round-robin load balancer, like a cloud TCP load
// balancer in front of several nodes: each new connection goes to the next
// node, bytes pass through untouched (TLS included). A node that refuses
// the connection is skipped for the next one, as a health check would
// take it out; so a killed node costs only the connections it had.
type balancer struct {
	t    testing.TB
	l    net.Listener
	addr string
	port string

	mu       sync.Mutex
	backends []string
	conns    map[net.Conn]bool
	next     int
	served   map[string]int // connections handed to each backend
	wg       sync.WaitGroup
	closed   atomic.Bool
}

// newBalancer listens on a port of its own (so that nodes can name it in
// their config before they start); set gives it its nodes.
func newBalancer(t testing.TB) *balancer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &balancer{t: t, l: l, addr: l.Addr().String(), conns: map[net.Conn]bool{}, served: map[string]int{}}
	_, b.port, _ = net.SplitHostPort(b.addr)
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.close)
	return b
}

// set replaces the nodes new connections go to.
func (b *balancer) set(backends ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.backends = append([]string(nil), backends...)
	b.next = 0
}

// count is how many connections went to backend.
func (b *balancer) count(backend string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.served[backend]
}

func (b *balancer) accept() {
	defer b.wg.Done()
	for {
		c, err := b.l.Accept()
		if err != nil {
			return
		}
		b.wg.Add(1)
		go b.serve(c)
	}
}

// pick returns the backends to try for a new connection, in order.
func (b *balancer) pick() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(b.backends)
	out := make([]string, 0, n)
	for i := range n {
		out = append(out, b.backends[(b.next+i)%n])
	}
	if n > 0 {
		b.next = (b.next + 1) % n
	}
	return out
}

func (b *balancer) track(c net.Conn, on bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return false
	}
	if on {
		b.conns[c] = true
	} else {
		delete(b.conns, c)
	}
	return true
}

func (b *balancer) serve(c net.Conn) {
	defer b.wg.Done()
	if !b.track(c, true) {
		c.Close()
		return
	}
	defer b.track(c, false)
	defer c.Close()
	var up net.Conn
	for _, backend := range b.pick() {
		d, err := net.DialTimeout("tcp", backend, 2*time.Second)
		if err == nil {
			up = d
			b.mu.Lock()
			b.served[backend]++
			b.mu.Unlock()
			break
		}
	}
	if up == nil {
		return
	}
	if !b.track(up, true) {
		up.Close()
		return
	}
	defer b.track(up, false)
	defer up.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(up, c)
	go pipe(c, up)
	// One side ending (a node killed, or the client gone) ends both.
	<-done
	c.Close()
	up.Close()
	<-done
}

func (b *balancer) close() {
	b.closed.Store(true)
	b.l.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// front is the deployment as users see it: the balancer's address, and
// URLs on its port; browsers made from it go through the balancer.
func (b *balancer) front(t testing.TB) *gatehouse {
	return &gatehouse{t: t, addr: b.addr, port: b.port}
}

// pinTo makes br's requests to *.localhost names go to addr (a node, or
// the balancer), on a new connection each (so through the balancer each
// request takes the next node), keeping its cookies and its URLs (on the
// balancer's port): a browser the balancer happened to send there.
func pinTo(br *browser, addr string) *browser {
	tr := &http.Transport{DisableCompression: true, DisableKeepAlives: true, DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		if h, _, _ := net.SplitHostPort(a); strings.HasSuffix(h, "localhost") {
			a = addr
		}
		return (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, network, a)
	}}
	c := *br.client
	c.Transport = tr
	return &browser{t: br.t, g: br.g, jar: br.jar, client: &c}
}
