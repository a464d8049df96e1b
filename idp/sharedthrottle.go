package idp

import (
	"context"
	"log/slog"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// limiter is a sign-in budget: per node (throttle) or shared by every
// node through the store (sharedThrottle).
type limiter interface {
	take(key string, now time.Time) (bool, time.Time)
	refund(key string)
	reset(key string)
}

// sharedThrottle counts in the store, so that several nodes behind a
// load balancer share one budget per key: a guesser gets max attempts a
// window in all, not max per node. Each count is a single-use record
// ("n|window start") that expires with its window. If the store fails,
// the node's own throttle stands in (never more than per node).
type sharedThrottle struct {
	st     store.Store
	name   string
	max    int
	window time.Duration
	local  *throttle
	log    *slog.Logger
}

const throttleKind = store.EphemeralPrefix + "throttle"

func newSharedThrottle(st store.Store, name string, max int, window time.Duration, log *slog.Logger) *sharedThrottle {
	return &sharedThrottle{st: st, name: name, max: max, window: window, local: newThrottle(max, window), log: log}
}

func (t *sharedThrottle) id(key string) string { return t.name + "|" + key }

func (t *sharedThrottle) take(key string, now time.Time) (bool, time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok, until, err := store.TakeBudget(ctx, t.st, throttleKind, t.id(key), t.max, t.window, now)
	if err != nil {
		t.log.Warn("idp: shared sign-in throttle unavailable; counting on this node", "throttle", t.name, "err", err)
		return t.local.take(key, now)
	}
	return ok, until
}

func (t *sharedThrottle) refund(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = store.RefundBudget(ctx, t.st, throttleKind, t.id(key))
	t.local.refund(key)
}

func (t *sharedThrottle) reset(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = t.st.TakeOnce(ctx, throttleKind, t.id(key))
	t.local.reset(key)
}
