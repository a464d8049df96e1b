// Command idleconns measures the memory an idle keep-alive connection
// costs: it starts Gatehouse (and the bare reverse proxy, as the
// baseline), opens -n connections that each make one request and then
// sit idle, and reports each process's resident memory growth per
// connection. Connections come from many loopback source addresses, as
// from many clients.
//
//	go build -o /tmp/gh ./cmd/gatehouse && go build -o /tmp/bare ./bench/cmd/bareproxy
//	go run ./bench/cmd/idleconns -gatehouse /tmp/gh -bareproxy /tmp/bare -n 5000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func main() {
	gatehouse := flag.String("gatehouse", "", "gatehouse binary")
	bare := flag.String("bareproxy", "", "bare reverse proxy binary (optional baseline)")
	n := flag.Int("n", 5000, "idle connections to open")
	settle := flag.Duration("settle", 0, "also measure after the connections sat idle this long (Go forces a GC every 2 minutes; 150s shows memory after it)")
	flag.Parse()
	if *gatehouse == "" {
		log.Fatal("idleconns: -gatehouse is required")
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer up.Close()
	dir, err := os.MkdirTemp("", "idleconns-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	port, ops := freePort(), freePort()
	cfg := fmt.Sprintf(`public_url: http://auth.localhost:%s
listen: 127.0.0.1:%s
ops_listen: 127.0.0.1:%s
store: { badger: { path: %s } }
server: { max_connections: %d, idle_timeout: 10m }
routes:
  - { id: app, host: app.localhost, upstream: %s, public_paths: [/] }
orgs:
  - { slug: acme, name: Acme, connection: { type: password } }
`, port, port, ops, filepath.Join(dir, "data"), *n*2, up.URL)
	cfgFile := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%-22s %12s %12s %14s\n", "target", "RSS before", "RSS after", "per connection")
	measure("gatehouse (public path)", exec.Command(*gatehouse, "serve", "--config", cfgFile), "127.0.0.1:"+port, "app.localhost", *n, *settle)
	if *bare != "" {
		bp := freePort()
		measure("bare reverse proxy", exec.Command(*bare, "-listen", "127.0.0.1:"+bp, "-upstream", up.URL), "127.0.0.1:"+bp, "app.localhost", *n, *settle)
	}
}

func measure(name string, cmd *exec.Cmd, addr, host string, n int, settle time.Duration) {
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		log.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			log.Fatalf("%s did not start", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Warm up: one connection's worth of lazily allocated state.
	warm := open(addr, host, "127.0.0.1")
	time.Sleep(time.Second)
	before := rss(cmd.Process.Pid)
	var conns []net.Conn
	for i := 0; i < n; i++ {
		src := fmt.Sprintf("127.%d.%d.%d", 1+i/(250*250), 1+(i/250)%250, 1+i%250)
		if c := open(addr, host, src); c != nil {
			conns = append(conns, c)
		}
	}
	time.Sleep(2 * time.Second)
	after := rss(cmd.Process.Pid)
	fmt.Printf("%-22s %9d KiB %9d KiB %10.1f KiB   (%d connections)\n", name, before, after, float64(after-before)/float64(len(conns)), len(conns))
	if settle > 0 {
		time.Sleep(settle)
		later := rss(cmd.Process.Pid)
		fmt.Printf("%-22s %9d KiB %9d KiB %10.1f KiB   (the same, idle for %s)\n", name, before, later, float64(later-before)/float64(len(conns)), settle)
	}
	for _, c := range append(conns, warm) {
		if c != nil {
			c.Close()
		}
	}
}

func open(addr, host, src string) net.Conn {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return c
}

// rss is a process's resident memory in KiB.
func rss(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		log.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}
