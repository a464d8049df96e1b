package certs

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// refusalLine checks a refusal line's count and names.
func refusalLine(t *testing.T, m map[string]any, count int, names ...string) {
	t.Helper()
	got := fmt.Sprint(m["names"])
	if m["msg"] != "certs: refused TLS handshakes for names not served" || m["count"] != float64(count) || got != fmt.Sprint(names) {
		t.Errorf("line %v; want count %d, names %v", m, count, names)
	}
}

// Refusals are one line per interval at most: the first at once with its
// name, the rest counted, with a few sample names, when the interval ends.
func TestRefusalLogAggregates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		out := &logLines{}
		r := NewRefusalLog(slog.New(slog.NewJSONHandler(out, nil)), time.Minute)
		r.Refused("first.scan.test")
		if l := out.with(t, ""); len(l) != 1 {
			t.Fatalf("after the first refusal: %v", l)
		} else {
			refusalLine(t, l[0], 1, "first.scan.test")
		}
		for i := range 1000 {
			r.Refused(fmt.Sprintf("p%d.scan.test", i%7))
		}
		r.Refused("")
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if l := out.with(t, ""); len(l) != 1 {
			t.Fatalf("within the interval: %d lines", len(l))
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		l := out.with(t, "")
		if len(l) != 2 {
			t.Fatalf("after the interval: %d lines", len(l))
		}
		refusalLine(t, l[1], 1001, "p0.scan.test", "p1.scan.test", "p2.scan.test", "p3.scan.test", "p4.scan.test")

		// Quiet: nothing more is written; the next refusal is at once.
		time.Sleep(time.Hour)
		synctest.Wait()
		if l := out.with(t, ""); len(l) != 2 {
			t.Fatalf("quiet hour: %d lines", len(l))
		}
		r.Refused("")
		if l := out.with(t, ""); len(l) != 3 {
			t.Fatalf("after a quiet interval: %d lines", len(l))
		} else {
			refusalLine(t, l[2], 1, "(no SNI)")
		}
		// Close writes what is pending and stops the timer.
		r.Refused("late.scan.test")
		r.Refused("late.scan.test")
		r.Close()
		if l := out.with(t, ""); len(l) != 4 {
			t.Fatalf("after Close: %d lines", len(l))
		} else {
			refusalLine(t, l[3], 2, "late.scan.test")
		}
		r.Refused("closed.test")
		time.Sleep(time.Hour)
		synctest.Wait()
		if l := out.with(t, ""); len(l) != 4 {
			t.Fatalf("after Close: %d lines", len(l))
		}
	})
}

// A refused handshake names its SNI in the refusal log, with ACME and
// with the local CA.
func TestRefusedHandshakesAreReported(t *testing.T) {
	st := badgertest.Open(t)
	served := func(n string) (string, bool) { return "acme", n == "login.acme.test" }
	for _, tc := range []struct {
		name string
		srv  func(*RefusalLog) *tls.Config
	}{
		{"acme", func(r *RefusalLog) *tls.Config {
			a, err := NewACME(ACMEOptions{DirectoryURL: "https://acme.invalid/dir", TLSALPN01: true, Storage: NewStorage(st),
				Decide: served, Refusals: r, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Stop)
			return a.TLSConfig()
		}},
		{"local CA", func(r *RefusalLog) *tls.Config {
			ca, err := NewLocalCA(t.TempDir(), served)
			if err != nil {
				t.Fatal(err)
			}
			ca.Refusals = r
			return ca.TLSConfig()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := &logLines{}
			r := NewRefusalLog(slog.New(slog.NewJSONHandler(out, nil)), time.Hour)
			srv := tc.srv(r)
			for _, sni := range []string{"random.scan.test", "evil.login.acme.test", "", "random.scan.test"} {
				if err := pipeHandshake(srv, &tls.Config{ServerName: sni, InsecureSkipVerify: true}); err == nil {
					t.Fatalf("handshake for %q succeeded", sni)
				}
			}
			r.Close()
			l := out.with(t, "")
			if len(l) != 2 {
				t.Fatalf("lines: %v", l)
			}
			refusalLine(t, l[0], 1, "random.scan.test")
			refusalLine(t, l[1], 3, "evil.login.acme.test", "(no SNI)", "random.scan.test")
		})
	}
}
