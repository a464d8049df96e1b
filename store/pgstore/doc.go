// Package pgstore is the PostgreSQL store backend (pgx): the store of a
// deployment of several nodes, where Badger (one process) cannot serve.
// One table per record type keeps the record as json and the fields it
// is found by as columns computed here; every update is a row lock and a
// compare-and-swap in one READ COMMITTED transaction; the audit chain
// serializes on a per-org head row. The schema is migrated at Open from
// the files embedded in migrations/, under an advisory lock, and a schema
// newer than this binary's is refused. DESIGN.md explains each choice
// against the conformance suite (store/storetest), which it passes.
package pgstore
