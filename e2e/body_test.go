package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A request body the client got wrong (malformed or cut-short chunking)
// is the client's error: 400, logged as such, never a 502 blamed on the
// upstream.
func TestMalformedRequestBodyIsBadRequest(t *testing.T) {
	g, _ := startCore(t)
	head := "POST /healthz HTTP/1.1\r\nHost: app.localhost:" + g.port + "\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n"
	for _, body := range []string{
		"zz\r\nabc\r\n0\r\n\r\n",        // not a hex size
		"5\r\nabc\r\n0\r\n\r\n",         // size larger than the data
		"3\r\nabcXY0\r\n\r\n",           // no CRLF after the data
		"ffffffffffffffffff\r\nabc\r\n", // size overflow
	} {
		st, resp := rawSend(t, g.addr, head, body)
		if st != http.StatusBadRequest {
			t.Errorf("chunked body %q: %d %s, want 400", body, st, resp)
		}
	}
	if !g.logged("proxy: request body refused") || strings.Contains(g.Logs(), "proxy: upstream failed") {
		t.Error("a malformed client body was not logged as refused, or was logged as an upstream failure")
	}
}

// A body trickled in a byte at a time cannot hold a connection (and an
// upstream connection) for ever: after the grace (read_header_timeout),
// it must keep up an average of server.min_body_rate. A normal upload,
// however large, is not affected; neither is a slow one above the rate.
func TestSlowRequestBodyIsCutOff(t *testing.T) {
	up := newUpstream(t)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	cfg += "server:\n  read_header_timeout: 2s\n  min_body_rate: 1000\n"
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")

	trickle := func(path string, total, chunk int, every time.Duration) (status int, took time.Duration) {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		begin := time.Now()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: app.localhost:%s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", path, g.port, total)
		answered := make(chan int, 1)
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				answered <- 0 // closed without an answer
				return
			}
			resp.Body.Close()
			answered <- resp.StatusCode
		}()
		sent := 0
		for tick := time.NewTicker(every); sent < total; {
			select {
			case st := <-answered:
				tick.Stop()
				return st, time.Since(begin)
			case <-tick.C:
				n := min(chunk, total-sent)
				if _, err := c.Write([]byte(strings.Repeat("x", n))); err != nil {
					tick.Stop()
					return <-answered, time.Since(begin)
				}
				sent += n
			}
		}
		select {
		case st := <-answered:
			return st, time.Since(begin)
		case <-time.After(15 * time.Second):
			return -1, time.Since(begin)
		}
	}
	// One byte every 200ms: 5 B/s, far under 1000 B/s. Cut off a little
	// after the 2s grace, on a public path and on the sign-in form alike.
	for path, want := range map[string]int{"/healthz": http.StatusRequestTimeout, "/.gatehouse/login": http.StatusForbidden} {
		st, took := trickle(path, 100000, 1, 200*time.Millisecond)
		if st != want && st != 0 || took > 8*time.Second {
			t.Errorf("POST %s trickled: status %d after %s, want %d (or a closed connection) within a few seconds", path, st, took, want)
		}
	}
	// 4 KiB every 200ms (20 KiB/s) for 3s: slow, but above the minimum.
	if st, _ := trickle("/healthz", 60000, 4096, 200*time.Millisecond); st != http.StatusOK {
		t.Errorf("upload above the minimum rate: %d, want 200", st)
	}
	if !g.logged("proxy: request body too slow") {
		t.Error("slow body not logged")
	}
}
