// Package testdns runs Let's Encrypt's challenge test server (challtestsrv)
// as an authoritative DNS server on loopback, for tests of domain
// verification and ACME. Only tests import it.
package testdns

import (
	"context"
	"io"
	"log"
	"net"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
)

// readyName is the TXT record Start looks up to know the server answers.
const readyName = "_ready.testdns.test"

// Start runs a DNS server on a free loopback port (UDP and TCP), stopped
// when the test ends, and returns it with its address once it answers.
// Names have no records until the test adds them.
func Start(t testing.TB) (*challtestsrv.ChallSrv, string) {
	t.Helper()
	var lastErr error
	for range 10 {
		addr, err := freeUDPAndTCP()
		if err != nil {
			lastErr = err
			continue
		}
		srv, err := challtestsrv.New(challtestsrv.Config{DNSAddrs: []string{addr}, Log: log.New(io.Discard, "", 0)})
		if err != nil {
			t.Fatal(err)
		}
		go srv.Run()
		if err := waitAnswering(t.Context(), srv, addr); err != nil {
			srv.Shutdown()
			lastErr = err
			continue
		}
		t.Cleanup(srv.Shutdown)
		return srv, addr
	}
	t.Fatalf("testdns: no DNS server started: %v", lastErr)
	return nil, ""
}

// freeUDPAndTCP finds a loopback port free for both UDP and TCP.
func freeUDPAndTCP() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return "", err
	}
	u.Close()
	return addr, nil
}

// waitAnswering looks a record up until the server gives it (challtestsrv
// binds in Run, without telling when).
func waitAnswering(ctx context.Context, srv *challtestsrv.ChallSrv, addr string) error {
	srv.AddDNSTXTRecord(readyName, "ready")
	defer srv.DeleteDNSTXTRecord(readyName)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", addr)
	}}
	var err error
	for range 100 {
		lookup, cancel := context.WithTimeout(ctx, time.Second)
		var txt []string
		txt, err = r.LookupTXT(lookup, readyName)
		cancel()
		if err == nil && len(txt) == 1 && txt[0] == "ready" {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}
