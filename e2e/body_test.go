package e2e

import (
	"net/http"
	"strings"
	"testing"
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
