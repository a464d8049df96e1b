package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// An item is delivered once when the receiver is back, retried with
// back-off meanwhile, and given up on after GiveUp; only the node holding
// the lock delivers.
func TestOutbox(t *testing.T) {
	st := badgertest.Open(t)
	ctx := context.Background()
	var (
		mu        sync.Mutex
		now       = time.Unix(1_800_000_000, 0)
		down      = true
		delivered []string
		done      []string
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	opts := func() Options {
		return Options{Store: st, Name: "test", Logger: slog.New(slog.DiscardHandler), Now: clock, GiveUp: time.Hour,
			Deliver: func(_ context.Context, it Item) error {
				mu.Lock()
				defer mu.Unlock()
				if down {
					return errors.New("connection refused")
				}
				delivered = append(delivered, it.To)
				return nil
			},
			Done: func(_ context.Context, it Item, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					done = append(done, "gave up "+it.To)
				} else {
					done = append(done, "sent "+it.To)
				}
			}}
	}
	a, b := New(opts()), New(opts())
	for _, to := range []string{"one@x.example", "two@x.example"} {
		if err := a.Add(ctx, Item{Kind: "test", To: to, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	a.deliverDue(ctx) // fails: both retried in 1s
	b.deliverDue(ctx) // not the lock holder: nothing
	items := func() []Item {
		infos, _ := st.ListBlobs(ctx, "outbox/test")
		var out []Item
		for _, bi := range infos {
			bl, _ := st.GetBlob(ctx, bi.Key)
			var it Item
			_ = jsonUnmarshal(bl.Value, &it)
			out = append(out, it)
		}
		return out
	}
	if its := items(); len(its) != 2 || its[0].Attempts != 1 || its[0].Next != clock().Add(time.Second).UTC() || its[0].LastErr == "" {
		t.Fatalf("after a failure: %+v", its)
	}
	a.deliverDue(ctx) // not due yet: no attempt
	if its := items(); its[0].Attempts != 1 {
		t.Fatalf("attempted before due: %+v", its)
	}
	advance(time.Second)
	a.deliverDue(ctx) // fails again: 2s
	if its := items(); its[0].Attempts != 2 || its[0].Next != clock().Add(2*time.Second).UTC() {
		t.Fatalf("second back-off: %+v", its)
	}
	mu.Lock()
	down = false
	mu.Unlock()
	advance(2 * time.Second)
	a.deliverDue(ctx)
	a.deliverDue(ctx)
	if len(delivered) != 2 || delivered[0] == delivered[1] || len(items()) != 0 {
		t.Fatalf("delivered %v, left %v", delivered, items())
	}
	// Given up after GiveUp.
	mu.Lock()
	down = true
	mu.Unlock()
	_ = a.Add(ctx, Item{Kind: "test", To: "three@x.example", Payload: []byte(`{}`)})
	a.deliverDue(ctx)
	advance(2 * time.Hour)
	a.deliverDue(ctx)
	if len(items()) != 0 || done[len(done)-1] != "gave up three@x.example" {
		t.Fatalf("give up: %v %v", done, items())
	}
	if Backoff(1) != time.Second || Backoff(3) != 4*time.Second || Backoff(40) != 5*time.Minute {
		t.Error("backoff")
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// Older items go first.
func TestOutboxOrder(t *testing.T) {
	st := badgertest.Open(t)
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0)
	var got []string
	b := New(Options{Store: st, Name: "order", Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
		Deliver: func(_ context.Context, it Item) error { got = append(got, it.To); return nil }})
	for _, to := range []string{"a", "b", "c"} {
		_ = b.Add(ctx, Item{To: to, Payload: []byte(`{}`)})
		now = now.Add(time.Millisecond)
	}
	b.deliverDue(ctx)
	if len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("order %v", got)
	}
}

// Per-org sending limits: an org's items past its hourly or daily
// budget are refused with the window and when it frees; other orgs and
// items of no org are not affected; two nodes share the counts.
func TestPerOrgLimits(t *testing.T) {
	st := badgertest.Open(t)
	ctx := context.Background()
	// The store expires counters by the real clock: this hour (and not
	// the day's last, so that the next hour is the same day).
	now := time.Now().UTC().Truncate(time.Hour)
	if now.Hour() == 23 {
		now = now.Add(-time.Hour)
	}
	clock := func() time.Time { return now }
	node := func() *Outbox {
		return New(Options{Store: st, Name: "mail", Logger: slog.New(slog.DiscardHandler), Now: clock, PerOrgHour: 3, PerOrgDay: 5,
			Deliver: func(context.Context, Item) error { return nil }})
	}
	a, b := node(), node()
	add := func(ob *Outbox, org string) error {
		return ob.Add(ctx, Item{OrgID: org, Kind: "invitation", To: "x@example.com"})
	}
	for i, ob := range []*Outbox{a, b, a} {
		if err := add(ob, "org_a"); err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
	}
	err := add(b, "org_a")
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrLimit) || le.Window != time.Hour || le.Limit != 3 || !le.Until.Equal(now.Truncate(time.Hour).Add(time.Hour)) {
		t.Fatalf("the 4th item in the hour: %v", err)
	}
	if err := add(a, "org_b"); err != nil {
		t.Fatalf("another org: %v", err)
	}
	for range 10 {
		if err := add(a, ""); err != nil {
			t.Fatalf("an item of no org: %v", err)
		}
	}
	now = now.Add(time.Hour)
	for i := range 2 {
		if err := add(b, "org_a"); err != nil {
			t.Fatalf("next hour, item %d: %v", i, err)
		}
	}
	if err := add(a, "org_a"); !errors.As(err, &le) || le.Window != 24*time.Hour || le.Limit != 5 {
		t.Fatalf("the 6th item in the day: %v", err)
	}
	// A sub-org's items count against the budget they name (its top
	// org's), not a fresh one of its own.
	if err := a.Add(ctx, Item{OrgID: "org_a_sub", Budget: "org_a", Kind: "invitation", To: "y@example.com"}); !errors.Is(err, ErrLimit) {
		t.Fatalf("a sub-org's item on its parent's spent budget: %v", err)
	}
	// The refused items were not queued.
	infos, err := st.ListBlobs(ctx, "outbox/mail")
	if err != nil || len(infos) != 5+1+10 {
		t.Fatalf("queued: %d, %v", len(infos), err)
	}
}

// A permanent refusal gives the item up at once, without retries.
func TestPermanentFailure(t *testing.T) {
	st := badgertest.Open(t)
	ctx := context.Background()
	var tries int
	var gaveUp error
	ob := New(Options{Store: st, Name: "sms", Logger: slog.New(slog.DiscardHandler),
		Deliver: func(context.Context, Item) error {
			tries++
			return fmt.Errorf("receiver: 400 bad number: %w", ErrPermanent)
		},
		Done: func(_ context.Context, _ Item, err error) { gaveUp = err }})
	if err := ob.Add(ctx, Item{Kind: "invitation", To: "+15550000000"}); err != nil {
		t.Fatal(err)
	}
	ob.deliverDue(ctx)
	ob.deliverDue(ctx)
	infos, _ := st.ListBlobs(ctx, "outbox/sms")
	if tries != 1 || !errors.Is(gaveUp, ErrPermanent) || len(infos) != 0 {
		t.Fatalf("tries %d, done with %v, %d left", tries, gaveUp, len(infos))
	}
}
