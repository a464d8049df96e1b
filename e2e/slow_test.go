package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// startLimited is startCore with tight server limits.
func startLimited(t *testing.T) (*gatehouse, *upstream) {
	up := newUpstream(t)
	cfg := testConfig + "server:\n  read_header_timeout: 2s\n  max_header_bytes: 8192\n"
	cfg = strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(cfg)
	return start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456"), up
}

type closed struct {
	after time.Duration
	data  string
	err   error
}

// awaitClose reads conn until the server closes it (or 10s pass).
func awaitClose(conn net.Conn, began time.Time, out chan<- closed) {
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	data, err := io.ReadAll(conn)
	out <- closed{after: time.Since(began), data: string(data), err: err}
}

func TestSlowClientsAreCutOff(t *testing.T) {
	g, up := startLimited(t)
	b := g.browser(t)

	began := time.Now()
	results := make(chan closed, 6)
	// Slowloris: five connections send half a header block and stall.
	for range 5 {
		conn, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: app.localhost\r\n"); err != nil {
			t.Fatal(err)
		}
		go awaitClose(conn, began, results)
	}
	// A sixth keeps trickling header lines: the timeout covers the whole
	// header block, not each read.
	trickle, err := net.Dial("tcp", g.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trickle.Close() })
	io.WriteString(trickle, "GET / HTTP/1.1\r\nHost: app.localhost\r\n")
	go func() {
		for range 25 {
			time.Sleep(200 * time.Millisecond)
			if _, err := io.WriteString(trickle, "X-Drip: 1\r\n"); err != nil {
				return
			}
		}
	}()
	go awaitClose(trickle, began, results)

	// Meanwhile, ordinary requests are served at once: before any stalled
	// connection has been cut off.
	for i := range 3 {
		p := b.get(g.url("app.localhost", "/healthz"))
		if p.status != 200 || p.body != "upstream /healthz for " {
			t.Fatalf("normal request %d during slowloris: %d %q", i, p.status, p.body)
		}
	}
	normalDone := time.Since(began)

	for i := range 6 {
		r := <-results
		if r.err != nil {
			t.Errorf("stalled connection %d not closed by the server: %v after %v", i, r.err, r.after)
			continue
		}
		if r.after < 1800*time.Millisecond || r.after > 8*time.Second {
			t.Errorf("stalled connection %d closed after %v, want ~2s (read_header_timeout)", i, r.after)
		}
		if r.after <= normalDone {
			t.Errorf("normal requests finished after %v, only once stalled connection %d was cut off (%v)", normalDone, i, r.after)
		}
		if r.data != "" && !strings.HasPrefix(r.data, "HTTP/1.1 408") {
			t.Errorf("stalled connection %d got a reply: %q", i, r.data)
		}
	}
	if got := up.last("/"); got != nil {
		t.Errorf("a stalled request reached the upstream: %v", got.Header)
	}
}

func TestOversizedHeadersRefused(t *testing.T) {
	g, up := startLimited(t)
	b := g.browser(t)

	// Under max_header_bytes: served.
	req, _ := http.NewRequest("GET", g.url("app.localhost", "/healthz"), nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 6000))
	if p := b.do(req); p.status != 200 || p.body != "upstream /healthz for " {
		t.Fatalf("6 KB header block: %d %q", p.status, p.body)
	}
	// Well over it (but far under the 64 KiB default): 431, nothing proxied.
	req, _ = http.NewRequest("GET", g.url("app.localhost", "/healthz/big"), nil)
	req.Header.Set("X-Padding", strings.Repeat("a", 20000))
	if p := b.do(req); p.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("20 KB header block: %d %q, want 431", p.status, p.body)
	}
	// Many small headers add up the same way.
	req, _ = http.NewRequest("GET", g.url("app.localhost", "/healthz/many"), nil)
	for i := range 400 {
		req.Header.Add("X-Many", strings.Repeat("b", 40)+string(rune('a'+i%26)))
	}
	if p := b.do(req); p.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("400 headers: %d, want 431", p.status)
	}
	if up.last("/healthz/big") != nil || up.last("/healthz/many") != nil {
		t.Fatal("oversized request reached the upstream")
	}
	// The server is still fine afterwards.
	if p := b.get(g.url("app.localhost", "/healthz")); p.status != 200 {
		t.Fatalf("after oversized requests: %d", p.status)
	}
}
