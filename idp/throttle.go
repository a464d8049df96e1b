package idp

import (
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// throttle counts failures per key in a fixed window. It is per node: a
// deliberate trade for a hot path free of store writes; the limit per
// node still bounds a guessing attack to max × nodes per window.
type throttle struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	m      map[string]*failures
}

type failures struct {
	n     int
	start time.Time
}

func newThrottle(max int, window time.Duration) *throttle {
	return &throttle{max: max, window: window, m: map[string]*failures{}}
}

// maxKeys bounds the memory an attacker can make the throttle use.
const maxKeys = 100_000

// take reserves one attempt for key before the (slow) password check, so
// that parallel requests cannot all pass a check made before any of them
// failed. It refuses, with the time the window ends, once max attempts
// are counted. A successful sign-in gives the attempt back (refund).
func (t *throttle) take(key string, now time.Time) (bool, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[key]
	if f == nil || now.Sub(f.start) >= t.window {
		if f == nil && len(t.m) >= maxKeys {
			t.sweep(now)
		}
		f = &failures{start: now}
		t.m[key] = f
	}
	if f.n >= t.max {
		return false, f.start.Add(t.window)
	}
	f.n++
	return true, time.Time{}
}

// refund returns an attempt taken by a sign-in that succeeded.
func (t *throttle) refund(key string) {
	t.mu.Lock()
	if f := t.m[key]; f != nil && f.n > 0 {
		f.n--
	}
	t.mu.Unlock()
}

// reset forgets key (an account's failures after it signs in).
func (t *throttle) reset(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}

// sweep drops finished windows; if the map is still full, it drops keys
// that are not blocking anyone, so blocked keys are kept longest.
func (t *throttle) sweep(now time.Time) {
	for k, f := range t.m {
		if now.Sub(f.start) >= t.window {
			delete(t.m, k)
		}
	}
	for k, f := range t.m {
		if len(t.m) < maxKeys*9/10 {
			return
		}
		if f.n < t.max {
			delete(t.m, k)
		}
	}
}

func wait(until, now time.Time) string {
	d := until.Sub(now).Round(time.Minute)
	if d < time.Minute {
		return "a minute"
	}
	if d == time.Minute {
		return "1 minute"
	}
	return fmt.Sprintf("%d minutes", int(d.Minutes()))
}

func retryAfter(until, now time.Time) string {
	return fmt.Sprint(int(until.Sub(now).Seconds()) + 1)
}

// throttleAddr groups IPv6 clients by /64, the block one subscriber gets;
// per-address limits on single IPv6 addresses would be no limit at all.
func throttleAddr(addr string) string {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if a = a.Unmap(); a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
