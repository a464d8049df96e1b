// Package loop runs background work on a schedule, owned by a context.
package loop

import (
	"context"
	"time"
)

// Every calls fn every interval until ctx ends. fn runs on the calling
// goroutine, so runs never overlap.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	EveryOrKick(ctx, interval, nil, fn) // a nil channel never kicks
}

// EveryOrKick is Every that also runs fn as soon as kick receives (kicks
// arriving during a run coalesce into the next one).
func EveryOrKick(ctx context.Context, interval time.Duration, kick <-chan struct{}, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
		fn(ctx)
	}
}
