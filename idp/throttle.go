package idp

import (
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
	ops    int
}

type failures struct {
	n     int
	start time.Time
}

func newThrottle(max int, window time.Duration) *throttle {
	return &throttle{max: max, window: window, m: map[string]*failures{}}
}

// blocked reports whether key has used up its failures, and until when.
func (t *throttle) blocked(key string, now time.Time) (bool, time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.m[key]
	if f == nil || now.Sub(f.start) >= t.window {
		return false, time.Time{}
	}
	return f.n >= t.max, f.start.Add(t.window)
}

func (t *throttle) fail(key string, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ops++; t.ops%1024 == 0 {
		for k, f := range t.m {
			if now.Sub(f.start) >= t.window {
				delete(t.m, k)
			}
		}
	}
	f := t.m[key]
	if f == nil || now.Sub(f.start) >= t.window {
		t.m[key] = &failures{n: 1, start: now}
		return
	}
	f.n++
}

func (t *throttle) reset(key string) {
	t.mu.Lock()
	delete(t.m, key)
	t.mu.Unlock()
}
