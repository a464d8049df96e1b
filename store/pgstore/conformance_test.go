package pgstore

import (
	"context"
	"errors"
	"testing"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
	"github.com/gatehouse/gatehouse/store/storetest"
)

// The store conformance suite, on a database of its own per test.
func TestConformance(t *testing.T) {
	storetest.RunTests(t, func(t *testing.T) store.Store {
		dsn := pgtest.NewDatabase(t)
		st, err := Open(context.Background(), dsn, Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := st.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
				t.Error(err)
			}
			// Whatever the test left behind is consistent, read afresh.
			r, err := Open(context.Background(), dsn, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			checkConsistency(t, r)
		})
		return st
	})
}
