// Package outbox delivers messages durably: each is a store record until
// it is delivered (or given up on after a day), so an outage of the
// receiving side delays messages and loses none. One node at a time
// delivers (a store lock); every node may add.
package outbox

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// Item is one message waiting.
type Item struct {
	ID string `json:"id"`
	// OrgID and Kind describe it for logs and the audit trail.
	OrgID string `json:"org_id,omitempty"`
	// Budget is the sending budget it counts against (default OrgID):
	// the top of the org's tree, so that making sub-orgs makes no new
	// budget.
	Budget  string          `json:"budget,omitempty"`
	Kind    string          `json:"kind"`
	To      string          `json:"to"`
	Payload json.RawMessage `json:"payload"`
	// Attempts so far; Next is when the next one is due.
	Attempts int       `json:"attempts,omitempty"`
	Next     time.Time `json:"next"`
	Created  time.Time `json:"created"`
	LastErr  string    `json:"last_error,omitempty"`
}

// Options configure an Outbox.
type Options struct {
	Store store.Store
	// Name keys its records (blobs under "outbox/<name>/") and its lock.
	Name string
	// Deliver sends one item; an error retries it later.
	Deliver func(ctx context.Context, it Item) error
	// Done is told of each item delivered (err nil) or given up on.
	Done   func(ctx context.Context, it Item, err error)
	GiveUp time.Duration // default 24h
	// PerOrgHour and PerOrgDay bound the items one org may add (0: no
	// bound): an org admin inviting thousands, or a script abusing a
	// form, cannot make the deployment a spam source or exhaust its
	// relay's quota for every other org. Counted in the store, so across
	// nodes.
	PerOrgHour, PerOrgDay int
	Logger                *slog.Logger
	Now                   func() time.Time
}

// Outbox is a durable queue with one sender.
type Outbox struct {
	o    Options
	node string
	wake chan struct{}
}

// New builds an outbox; Run delivers.
func New(o Options) *Outbox {
	if o.GiveUp <= 0 {
		o.GiveUp = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	host, _ := os.Hostname()
	return &Outbox{o: o, node: host + "/" + strconv.Itoa(os.Getpid()) + "/" + token.RandomID()[:8], wake: make(chan struct{}, 1)}
}

func (b *Outbox) prefix() string { return "outbox/" + b.o.Name }

// ErrPermanent marks a delivery error no retry can mend (the receiver
// refused the message itself): the item is given up on at once.
var ErrPermanent = errors.New("outbox: refused for good")

// ErrLimit: the org has sent as many messages as its limit allows in
// the hour or day; the item is not added.
var ErrLimit = errors.New("outbox: the org's sending limit is reached")

// LimitError says which limit an item ran into and when it frees.
type LimitError struct {
	Window time.Duration
	Limit  int
	Until  time.Time
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("outbox: the org's sending limit of %d messages per %s is reached until %s", e.Limit, e.Window, e.Until.UTC().Format(time.RFC3339))
}

func (e *LimitError) Unwrap() error { return ErrLimit }

// Add stores an item for delivery (its ID, times set here) and wakes the
// sender. An org's item past its sending limits is refused (a
// *LimitError, which is ErrLimit).
func (b *Outbox) Add(ctx context.Context, it Item) error {
	now := b.o.Now().UTC()
	if budget := cmp.Or(it.Budget, it.OrgID); budget != "" {
		if err := b.count(ctx, budget, now); err != nil {
			return err
		}
	}
	it.ID, it.Created, it.Next, it.Attempts = token.RandomID()[:22], now, now, 0
	v, err := json.Marshal(it)
	if err != nil {
		return fmt.Errorf("outbox %s: %w", b.o.Name, err)
	}
	// Keys sort by creation: older messages go first.
	key := fmt.Sprintf("%s/%020d-%s", b.prefix(), now.UnixNano(), it.ID)
	if err := b.o.Store.PutBlob(ctx, key, v); err != nil {
		return fmt.Errorf("outbox %s: %w", b.o.Name, err)
	}
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

// Run delivers every second, and at once when an item is added, until
// ctx ends.
func (b *Outbox) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	defer func() {
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = b.o.Store.ReleaseLock(c, b.prefix(), b.node)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.wake:
		}
		b.deliverDue(ctx)
	}
}

// deliverDue sends what is due, on the node holding the lock.
func (b *Outbox) deliverDue(ctx context.Context) {
	if ok, err := b.o.Store.AcquireLock(ctx, b.prefix(), b.node, 30*time.Second); err != nil || !ok {
		return
	}
	infos, err := b.o.Store.ListBlobs(ctx, b.prefix())
	if err != nil {
		b.o.Logger.Warn("outbox: reading failed", "outbox", b.o.Name, "err", err)
		return
	}
	for i, bi := range infos {
		if ctx.Err() != nil {
			return
		}
		if i > 0 {
			// Hold the lock for each delivery: one slow receiver must not
			// let another node send the same items meanwhile.
			if ok, err := b.o.Store.AcquireLock(ctx, b.prefix(), b.node, 30*time.Second); err != nil || !ok {
				return
			}
		}
		blob, err := b.o.Store.GetBlob(ctx, bi.Key)
		if err != nil {
			continue
		}
		var it Item
		if err := json.Unmarshal(blob.Value, &it); err != nil {
			b.o.Logger.Error("outbox: corrupt item dropped", "outbox", b.o.Name, "key", bi.Key, "err", err)
			_ = b.o.Store.DeleteBlobs(ctx, bi.Key)
			continue
		}
		now := b.o.Now()
		if now.Before(it.Next) {
			continue
		}
		err = b.o.Deliver(ctx, it)
		switch {
		case err == nil:
			_ = b.o.Store.DeleteBlobs(ctx, bi.Key)
			b.done(ctx, it, nil)
		case errors.Is(err, ErrPermanent) || now.Sub(it.Created) > b.o.GiveUp:
			_ = b.o.Store.DeleteBlobs(ctx, bi.Key)
			b.o.Logger.Error("outbox: gave up", "outbox", b.o.Name, "kind", it.Kind, "org", it.OrgID, "attempts", it.Attempts+1, "err", err)
			b.done(ctx, it, err)
		default:
			it.Attempts++
			it.LastErr, it.Next = err.Error(), now.Add(Backoff(it.Attempts))
			v, _ := json.Marshal(it)
			_ = b.o.Store.PutBlob(ctx, bi.Key, v)
			b.o.Logger.Warn("outbox: not delivered; retrying", "outbox", b.o.Name, "kind", it.Kind, "org", it.OrgID,
				"attempts", it.Attempts, "retry_in", Backoff(it.Attempts), "err", err)
		}
	}
}

func (b *Outbox) done(ctx context.Context, it Item, err error) {
	if b.o.Done != nil {
		b.o.Done(ctx, it, err)
	}
}

// Backoff is the wait after attempts failed ones: 1s, 2s, 4s ... at most
// 5 minutes.
func Backoff(attempts int) time.Duration {
	d := time.Second << min(max(attempts-1, 0), 9)
	return min(d, 5*time.Minute)
}

// count takes one from the org's hourly and daily budgets: counters in
// the store per window, made on first use and gone when the window ends.
func (b *Outbox) count(ctx context.Context, orgID string, now time.Time) error {
	for _, w := range []struct {
		d     time.Duration
		limit int
	}{{time.Hour, b.o.PerOrgHour}, {24 * time.Hour, b.o.PerOrgDay}} {
		if w.limit <= 0 {
			continue
		}
		start := now.Truncate(w.d)
		id := b.o.Name + "/" + orgID + "/" + w.d.String() + "/" + strconv.FormatInt(start.Unix(), 10)
		over := false
		inc := func(v []byte) ([]byte, error) {
			n, _ := strconv.Atoi(string(v))
			if n >= w.limit {
				over = true
				return v, nil
			}
			return []byte(strconv.Itoa(n + 1)), nil
		}
		err := b.o.Store.UpdateOnce(ctx, "outbox-count", id, inc)
		if errors.Is(err, store.ErrNotFound) {
			// Kept a window longer than needed: clocks of nodes differ.
			err = b.o.Store.PutOnce(ctx, "outbox-count", id, []byte("1"), start.Add(2*w.d))
			if errors.Is(err, store.ErrAlreadyExists) { // another node made it first
				err = b.o.Store.UpdateOnce(ctx, "outbox-count", id, inc)
			}
		}
		if err != nil {
			return fmt.Errorf("outbox %s: count org %s: %w", b.o.Name, orgID, err)
		}
		if over {
			return &LimitError{Window: w.d, Limit: w.limit, Until: start.Add(w.d)}
		}
	}
	return nil
}
