// Package badgertest gives tests an in-memory Badger store, closed when
// the test ends.
package badgertest

import (
	"testing"

	"github.com/gatehouse/gatehouse/store/badgerstore"
)

// Open returns an empty in-memory store for tb.
func Open(tb testing.TB) *badgerstore.Store {
	tb.Helper()
	st, err := badgerstore.Open("", badgerstore.WithInMemory())
	if err != nil {
		tb.Fatalf("badgertest: %v", err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}
