package idp

import (
	"log/slog"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// Two nodes share one budget per key through the store: attempts on
// either count against both; a refund gives one back; a reset clears
// the key; another key has its own; the window's end is reported.
func TestSharedThrottle(t *testing.T) {
	st := badgertest.Open(t)
	log := slog.New(slog.DiscardHandler)
	a, b := newSharedThrottle(st, "account", 3, time.Minute, log), newSharedThrottle(st, "account", 3, time.Minute, log)
	now := time.Now()
	for i, th := range []*sharedThrottle{a, b, a} {
		if ok, _ := th.take("k", now); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	ok, until := b.take("k", now.Add(time.Second))
	if ok || until.Sub(now) != time.Minute {
		t.Fatalf("the 4th attempt on the other node: %v until %v", ok, until.Sub(now))
	}
	if ok, _ := a.take("other", now); !ok {
		t.Fatal("another key is throttled")
	}
	b.refund("k")
	if ok, _ := a.take("k", now); !ok {
		t.Fatal("a refunded attempt is not given back")
	}
	if ok, _ := a.take("k", now); ok {
		t.Fatal("past the budget after the refund")
	}
	a.reset("k")
	if ok, _ := b.take("k", now); !ok {
		t.Fatal("a reset key is still throttled")
	}
}
