package store

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Budgets counted in the store are shared by every node on it: a limit
// of max uses per window holds for the deployment, not per node. A
// budget's count is a single-use record ("n|window start") of the given
// kind, which expires with its window.

// TakeBudget counts one use of key's budget. ok is false when the budget
// was already spent; until is then when its window ends. An error means
// the store could not count (the caller decides how to fall back).
func TakeBudget(ctx context.Context, st Store, kind, key string, max int, window time.Duration, now time.Time) (ok bool, until time.Time, err error) {
	for range 3 {
		var over bool
		err = st.UpdateOnce(ctx, kind, key, func(v []byte) ([]byte, error) {
			over, until = false, time.Time{} // fn may run again (a retried transaction)
			n, start := parseBudget(v)
			if n >= max {
				over, until = true, start.Add(window)
				return v, nil
			}
			return formatBudget(n+1, start), nil
		})
		switch {
		case err == nil:
			return !over, until, nil
		case errors.Is(err, ErrNotFound):
			err = st.PutOnce(ctx, kind, key, formatBudget(1, now), now.Add(window))
			if err == nil {
				return true, time.Time{}, nil
			}
			if errors.Is(err, ErrAlreadyExists) {
				continue // another node opened the window meanwhile: count in it
			}
		}
		return false, time.Time{}, err
	}
	return false, time.Time{}, err
}

// BudgetUsed is how much of key's budget its current window has used (0
// when no window is open).
func BudgetUsed(ctx context.Context, st Store, kind, key string) (int, error) {
	v, err := st.GetOnce(ctx, kind, key)
	if errors.Is(err, ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, _ := parseBudget(v)
	return n, nil
}

// RefundBudget gives one use back (an attempt that was not the caller's
// fault).
func RefundBudget(ctx context.Context, st Store, kind, key string) error {
	err := st.UpdateOnce(ctx, kind, key, func(v []byte) ([]byte, error) {
		n, start := parseBudget(v)
		return formatBudget(max(n-1, 0), start), nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

func parseBudget(v []byte) (int, time.Time) {
	ns, ts, _ := strings.Cut(string(v), "|")
	n, _ := strconv.Atoi(ns)
	start, _ := strconv.ParseInt(ts, 10, 64)
	return n, time.Unix(0, start)
}

func formatBudget(n int, start time.Time) []byte {
	return []byte(strconv.Itoa(n) + "|" + strconv.FormatInt(start.UnixNano(), 10))
}
