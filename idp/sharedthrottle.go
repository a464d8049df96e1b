package idp

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
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

const throttleKind = "throttle"

func newSharedThrottle(st store.Store, name string, max int, window time.Duration, log *slog.Logger) *sharedThrottle {
	return &sharedThrottle{st: st, name: name, max: max, window: window, local: newThrottle(max, window), log: log}
}

func parseCount(v []byte) (int, time.Time) {
	ns, ts, _ := strings.Cut(string(v), "|")
	n, _ := strconv.Atoi(ns)
	start, _ := strconv.ParseInt(ts, 10, 64)
	return n, time.Unix(0, start)
}

func (t *sharedThrottle) id(key string) string { return t.name + "|" + key }

func (t *sharedThrottle) take(key string, now time.Time) (bool, time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for range 3 {
		var over bool
		var until time.Time
		err := t.st.UpdateOnce(ctx, throttleKind, t.id(key), func(v []byte) ([]byte, error) {
			n, start := parseCount(v)
			if n >= t.max {
				over, until = true, start.Add(t.window)
				return v, nil
			}
			return []byte(strconv.Itoa(n+1) + "|" + strconv.FormatInt(start.UnixNano(), 10)), nil
		})
		switch {
		case err == nil:
			return !over, until
		case errors.Is(err, store.ErrNotFound):
			err = t.st.PutOnce(ctx, throttleKind, t.id(key), []byte("1|"+strconv.FormatInt(now.UnixNano(), 10)), now.Add(t.window))
			if err == nil {
				return true, time.Time{}
			}
			if errors.Is(err, store.ErrAlreadyExists) {
				continue // another node started the window: count in it
			}
		}
		t.log.Warn("idp: shared sign-in throttle unavailable; counting on this node", "throttle", t.name, "err", err)
		return t.local.take(key, now)
	}
	return t.local.take(key, now)
}

func (t *sharedThrottle) refund(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = t.st.UpdateOnce(ctx, throttleKind, t.id(key), func(v []byte) ([]byte, error) {
		n, start := parseCount(v)
		return []byte(strconv.Itoa(max(n-1, 0)) + "|" + strconv.FormatInt(start.UnixNano(), 10)), nil
	})
	t.local.refund(key)
}

func (t *sharedThrottle) reset(key string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = t.st.TakeOnce(ctx, throttleKind, t.id(key))
	t.local.reset(key)
}
