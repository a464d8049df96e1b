// Package testdns runs Let's Encrypt's challenge test server (challtestsrv)
// as an authoritative DNS server on loopback, for tests of domain
// verification and ACME. Only tests import it.
//
// challtestsrv answers from miekg/dns's process-wide handler, so every
// server in a process would answer with the records of the last one made:
// Start refuses a second server while one is running.
package testdns

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/challtestsrv"
)

// readyName is the TXT record Start looks up to know the server answers.
const readyName = "_ready.testdns.test"

var (
	runningMu sync.Mutex
	running   bool
)

// Start runs a DNS server on a free loopback port (UDP and TCP), stopped
// when the test ends, and returns it with its address once it answers
// over both. Names have no records until the test adds them.
func Start(t testing.TB) (*challtestsrv.ChallSrv, string) {
	t.Helper()
	runningMu.Lock()
	if running {
		runningMu.Unlock()
		t.Fatal("testdns: a DNS server is already running in this process (challtestsrv's handler is process-wide)")
	}
	running = true
	runningMu.Unlock()
	t.Cleanup(func() {
		runningMu.Lock()
		running = false
		runningMu.Unlock()
	})
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
		t.Cleanup(srv.Shutdown) // runs before the flag is cleared (LIFO)
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

// waitAnswering looks a record up, over UDP and over TCP, until the
// server gives it (challtestsrv binds in Run, without telling when), for
// at most 5 seconds.
func waitAnswering(ctx context.Context, srv *challtestsrv.ChallSrv, addr string) error {
	srv.AddDNSTXTRecord(readyName, "ready")
	defer srv.DeleteDNSTXTRecord(readyName)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, network := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		for {
			lookup, cancelLookup := context.WithTimeout(ctx, time.Second)
			txt, err := r.LookupTXT(lookup, readyName)
			cancelLookup()
			if err == nil && len(txt) == 1 && txt[0] == "ready" {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("testdns: %s %s: no ready answer within 5s: %q, %v", network, addr, txt, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}
