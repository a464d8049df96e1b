package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gatehouse/gatehouse/store"
)

// Options configure a Store.
type Options struct {
	// MaxConns and MinConns size the pool (defaults 32 and 2).
	MaxConns, MinConns int32
	// Registerer gets the pool's and the queries' metrics (nil: none).
	Registerer prometheus.Registerer
	// Timeout bounds each call, waiting for a connection included
	// (default 10s).
	Timeout time.Duration
	// Logger gets the clock check's warnings (nil: none).
	Logger *slog.Logger
}

// Store is the PostgreSQL backend of store.Store.
type Store struct {
	pool *pgxpool.Pool
	// lazy writes ephemeral single-use values (store.Ephemeral): its
	// sessions commit without waiting for the log's flush.
	lazy *pgxpool.Pool

	mu      sync.RWMutex
	closed  bool
	timeout time.Duration
	// listening: Watch holds its LISTEN connection.
	listening atomic.Bool
	// stopSweep ends the sweeper; swept is closed when it has.
	stopSweep context.CancelFunc
	swept     chan struct{}
	// audit group-commits AppendAudit.
	audit *store.AuditWriter
	log   *slog.Logger
	// skew is the node's clock minus the database's, in nanoseconds, as
	// last measured (checkClock).
	skew atomic.Int64
	now  func() time.Time // the node's clock (tests move it)
}

// Open connects to dsn, brings its schema up to date and returns the
// store.
func Open(ctx context.Context, dsn string, o Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: dsn: %w", err)
	}
	cfg.MaxConns, cfg.MinConns = 32, 2
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	if o.MinConns > 0 {
		cfg.MinConns = o.MinConns
	}
	// Gatehouse's tables live in their own schema.
	cfg.ConnConfig.RuntimeParams["search_path"] = "gatehouse"
	s := &Store{swept: make(chan struct{}), timeout: 10 * time.Second, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.now = time.Now
	if o.Timeout > 0 {
		s.timeout = o.Timeout
	}
	m := s.register(o.Registerer)
	cfg.ConnConfig.Tracer = queryTracer{m}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s.pool = pool
	if _, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS gatehouse"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	lazy := cfg.Copy()
	lazy.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	lazy.MaxConns, lazy.MinConns = max(2, cfg.MaxConns/4), 0
	if s.lazy, err = pgxpool.NewWithConfig(ctx, lazy); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	s.checkClock(ctx)
	s.audit = store.NewAuditWriter("pgstore", s.appendAudit)
	var sctx context.Context
	sctx, s.stopSweep = context.WithCancel(context.Background())
	go s.sweep(sctx, sweepEvery)
	return s, nil
}

// poolFor is the pool that writes single-use values of kind: the lazy one
// for ephemeral kinds (see store.EphemeralPrefix).
func (s *Store) poolFor(kind string) *pgxpool.Pool {
	if store.Ephemeral(kind) {
		return s.lazy
	}
	return s.pool
}

// maxSkew is how far the node's clock may be from the database's before
// a warning: single-use values (sign-in flows, tickets, replay caches)
// expire by the node's clock, locks by the database's, and nodes must
// agree within the seconds those values live.
const maxSkew = time.Second

// checkClock measures the node's clock against the database's (half the
// round trip taken off) and warns if they are apart by more than
// maxSkew: run NTP (chrony, systemd-timesyncd) on every node.
func (s *Store) checkClock(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := s.now()
	var db time.Time
	if err := s.pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&db); err != nil {
		return // the database's trouble is reported by the calls that need it
	}
	rtt := s.now().Sub(start)
	skew := start.Add(rtt / 2).Sub(db)
	s.skew.Store(int64(skew))
	if skew > maxSkew || skew < -maxSkew {
		s.log.Warn("pgstore: this node's clock is off from the database's; run NTP on every node", "skew", skew.Round(time.Millisecond), "max", maxSkew)
	}
}

// sweepEvery is how often expired single-use values and locks are
// removed (reads ignore them anyway: this only reclaims space).
const sweepEvery = 5 * time.Minute

// sweep removes, until ctx ends, single-use values and locks that
// expired more than 10 minutes ago (a node whose clock lags still reads
// its own as live meanwhile), in small batches; nodes sweeping together
// skip each other's rows.
func (s *Store) sweep(ctx context.Context, every time.Duration) {
	defer close(s.swept)
	t := time.NewTicker(every)
	defer t.Stop()
	clock := time.NewTicker(time.Minute)
	defer clock.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-clock.C:
			s.checkClock(ctx)
			continue
		case <-t.C:
		}
		for _, table := range []string{"once", "locks"} {
			for ctx.Err() == nil {
				tag, err := s.pool.Exec(ctx, "DELETE FROM "+table+" WHERE ctid IN (SELECT ctid FROM "+table+
					" WHERE expires_at < clock_timestamp() - interval '10 minutes' LIMIT 1000 FOR UPDATE SKIP LOCKED)")
				if err != nil || tag.RowsAffected() < 1000 {
					break
				}
			}
		}
	}
}

var _ store.Store = (*Store)(nil)

// enter refuses work on a closed store or a done context, and bounds
// the call: a slow or unreachable database makes calls fail after
// Options.Timeout instead of piling up waiting requests.
func (s *Store) enter(ctx context.Context) (context.Context, func(), error) {
	done, err := s.enterLong(ctx)
	if err != nil {
		return ctx, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	return ctx, func() { cancel(); done() }, nil
}

// enterLong is enter without the time bound (an export, the listener).
func (s *Store) enterLong(ctx context.Context) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, store.ErrClosed
	}
	return s.mu.RUnlock, nil
}

// Close closes the pool (after in-flight calls); ErrClosed the second time.
func (s *Store) Close() error {
	// The audit writer first, outside s.mu: its last commit needs the pool.
	s.audit.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.closed = true
	s.stopSweep()
	<-s.swept
	s.pool.Close()
	s.lazy.Close()
	return nil
}

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer done()
	return s.pool.Ping(ctx)
}

const maxAttempts = 20

// tx runs fn in a READ COMMITTED transaction, again on a serialization
// failure or a deadlock (fn must be pure).
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	return s.txOn(ctx, s.pool, fn)
}

// txOn is tx on pool.
func (s *Store) txOn(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return err
	}
	defer done()
	for attempt := 0; ; attempt++ {
		err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, fn)
		if err == nil || !retryable(err) || attempt >= maxAttempts {
			return err
		}
		time.Sleep(time.Duration(rand.IntN(1+attempt*2)) * time.Millisecond)
	}
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// fnError carries the error of a caller's update function unchanged.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// mapErr turns database errors into the store's.
func mapErr(err error) error {
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrNotFound
	case errors.As(err, &pe) && pe.Code == "23505":
		return fmt.Errorf("%w (%s)", store.ErrAlreadyExists, pe.ConstraintName)
	case errors.As(err, &pe) && pe.Code == "23503":
		return fmt.Errorf("%w (%s)", store.ErrNotFound, pe.ConstraintName)
	case errors.As(err, &pe) && (pe.Code == "22021" || pe.Code == "22P05"):
		// A key with a NUL byte or invalid UTF-8 (from a request) is text
		// PostgreSQL cannot hold, so no record has it: the same answer as
		// Badger's for an unknown key, not a failure that reads as the
		// database being down. (Writes of such text are refused before
		// the store; a write that still gets here fails as not found.)
		return fmt.Errorf("%w (a NUL byte or invalid UTF-8 in a key)", store.ErrNotFound)
	}
	return err
}

// wrap is an error of op, mapped, with context.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	err = mapErr(err)
	if errors.Is(err, store.ErrClosed) || errors.Is(err, context.Canceled) {
		return err
	}
	if unavailable(err) {
		return fmt.Errorf("pgstore: %s: %w: %w", op, store.ErrUnavailable, err)
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// unavailable reports whether err means the database could not be
// reached or did not answer in time, rather than refusing the statement:
// a connection that failed or broke, a call past its timeout, a server
// shutting down or starting, out of connections, or a transaction the
// server gave up on (serialization failure, deadlock) that may be retried.
func unavailable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case strings.HasPrefix(pe.Code, "08"), // connection exception
			pe.Code == "57P01", pe.Code == "57P02", pe.Code == "57P03", // admin shutdown, crash shutdown, cannot connect now
			pe.Code == "53300",                     // too many connections
			pe.Code == "40001", pe.Code == "40P01", // serialization failure, deadlock
			pe.Code == "57014": // query canceled (statement timeout)
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) || errors.As(err, &ce) || errors.As(err, &ne) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) ||
		strings.Contains(err.Error(), "conn closed") || strings.Contains(err.Error(), "closed pool")
}

// textCol is s as a column can hold it: PostgreSQL's text takes neither
// NUL nor invalid UTF-8, and an audit event records what was sent (an
// email typed with a NUL in it, say) however odd. The event's document
// keeps the exact value (json escapes both); only the column, which
// filters search, gets U+FFFD in their place.
func textCol(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return strings.ReplaceAll(s, "\x00", "\uFFFD")
}

// ts is a time as stored: UTC, microseconds (truncated, never rounded).
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullable is "" as NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func docOf(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("pgstore: encode: %w", err)
	}
	return b, nil
}

// one reads a single record's doc.
func one[T any](ctx context.Context, s *Store, op, query string, args ...any) (T, error) {
	var v T
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return v, err
	}
	defer done()
	var b []byte
	if err := s.pool.QueryRow(ctx, query, args...).Scan(&b); err != nil {
		return v, wrap(op, err)
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("pgstore: %s: decode: %w", op, err)
	}
	return v, nil
}

// list reads records' docs.
func list[T any](ctx context.Context, s *Store, op, query string, args ...any) ([]T, error) {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, wrap(op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) {
		var v T
		var b []byte
		if err := r.Scan(&b); err != nil {
			return v, err
		}
		return v, json.Unmarshal(b, &v)
	})
	if err != nil {
		return nil, wrap(op, err)
	}
	return out, nil
}

// lockedDoc reads a record FOR UPDATE in tx (ErrNotFound if none).
func lockedDoc[T any](ctx context.Context, tx pgx.Tx, query string, args ...any) (T, error) {
	var v T
	var b []byte
	if err := tx.QueryRow(ctx, query, args...).Scan(&b); err != nil {
		return v, err
	}
	return v, json.Unmarshal(b, &v)
}

// exec runs one statement outside a transaction.
func (s *Store) exec(ctx context.Context, op, query string, args ...any) (pgconn.CommandTag, error) {
	ctx, done, err := s.enter(ctx)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	defer done()
	tag, err := s.pool.Exec(ctx, query, args...)
	return tag, wrap(op, err)
}
