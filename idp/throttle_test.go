package idp

import (
	"sync"
	"testing"
	"time"
)

func TestThrottleTakeRefund(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	th := newThrottle(3, 15*time.Minute)
	for i := range 3 {
		if ok, _ := th.take("k", now); !ok {
			t.Fatalf("attempt %d refused", i+1)
		}
	}
	ok, until := th.take("k", now)
	if ok || !until.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("4th attempt: ok=%v until=%v", ok, until)
	}
	th.refund("k")
	if ok, _ := th.take("k", now); !ok {
		t.Fatal("refunded attempt not available")
	}
	if ok, _ := th.take("k", now.Add(15*time.Minute)); !ok {
		t.Fatal("new window still blocked")
	}
	th.reset("k")
	if ok, _ := th.take("k", now); !ok {
		t.Fatal("reset key blocked")
	}
}

func TestThrottleParallel(t *testing.T) {
	now := time.Now()
	th := newThrottle(5, time.Minute)
	var mu sync.Mutex
	allowed := 0
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if ok, _ := th.take("k", now); ok {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if allowed != 5 {
		t.Fatalf("%d parallel attempts allowed, want 5", allowed)
	}
}

func TestThrottleBoundedMemory(t *testing.T) {
	now := time.Now()
	th := newThrottle(2, time.Minute)
	th.take("blocked", now)
	th.take("blocked", now)
	for i := range maxKeys + 10 {
		th.take(string(rune(i))+"-addr", now)
	}
	if len(th.m) > maxKeys {
		t.Fatalf("%d keys kept, cap %d", len(th.m), maxKeys)
	}
	if ok, _ := th.take("blocked", now); ok {
		t.Fatal("a blocked key was evicted to make room")
	}
}

func TestThrottleAddr(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":          "203.0.113.9",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"not-an-address":       "not-an-address",
		"::ffff:203.0.113.9":   "203.0.113.9",
	} {
		if got := throttleAddr(in); got != want {
			t.Errorf("throttleAddr(%q) = %q, want %q", in, got, want)
		}
	}
}
