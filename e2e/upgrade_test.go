package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

// An upstream that speaks h2c would switch a connection to HTTP/2 on a
// client's "Upgrade: h2c", after which frames pass Gatehouse unmediated.
// Gatehouse forwards websocket only (per route, opt-in for others), on
// public paths too: the upstream sees a plain HTTP/1.1 request.
func TestH2CUpgradeNotForwarded(t *testing.T) {
	up := httptest.NewServer(h2c.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%s upgrade=%q", r.Proto, r.Header.Get("Upgrade"))
	}), &http2.Server{}))
	t.Cleanup(up.Close)
	cfg := strings.NewReplacer("{{UPSTREAM}}", up.URL, "{{BOBHASH}}", readBobHash(t)).Replace(testConfig)
	g := start(t, cfg, "ALICE_PASSWORD=alice-pw-123", "CAROL_PASSWORD=carol-pw-456")

	for _, upgrade := range []string{"h2c", "H2C", "h2c, websocket"} {
		head := "GET /healthz HTTP/1.1\r\nHost: app.localhost:" + g.port + "\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: " + upgrade + "\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
		st, body := rawDo(t, g.addr, head)
		if st != 200 || !strings.Contains(body, "proto=HTTP/1.1") || !strings.Contains(body, `upgrade=""`) {
			t.Errorf("Upgrade %q on a public path: %d %q, want a plain HTTP/1.1 request upstream", upgrade, st, body)
		}
	}
	if !g.logged("protocol upgrade refused") {
		t.Error("refused upgrade not logged")
	}
}
