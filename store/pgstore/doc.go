// Package pgstore is the PostgreSQL store backend (work in progress on
// the wip/pgstore branch; not selectable yet).
package pgstore
