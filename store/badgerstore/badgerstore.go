// Package badgerstore implements store.Store on an embedded Badger database.
//
// Records are JSON values. Secondary indexes are separate keys whose value
// is the primary record's key, and every record is written together with
// its indexes in one transaction, so a crash never leaves a record without
// its indexes (or the reverse). Key layout (each <id> path-escaped so that
// prefix scans cannot cross into another id):
//
//	org/<id>                          Org
//	orgslug/<slug>                    -> org/<id>
//	user/<id>                         User
//	useremail/<lowercased email>      -> user/<id>
//	mem/u/<uid>/<oid>                 Membership
//	mem/o/<oid>/<uid>                 -> mem/u/<uid>/<oid>
//	mem/oe/<oid>/<email>\x00<uid>     lowercased email and name (members.go)
//	sess/<id>                         Session
//	sessuser/<uid>/<id>               -> sess/<id>
//	sessexp/<expiry><id>              -> sess/<id>
//	key/<id>                          SigningKey
//	tok/<id>                          APIToken (and its indexes: tokens.go)
//	inv/<id>                          Invitation (and its indexes: invitations.go)
//	rtf/<id>                          RefreshFamily (and its indexes: refresh.go)
//	orgdel/<id>                       Org being deleted (orgdelete.go)
//	audit/all/<^time><id>             AuditEvent
//	audit/org/<oid>/<^time><id>       -> audit/all/<^time><id>
//	audit/chain/<oid>/<seq>           -> audit/all/<^time><id>
//	audit/head/<oid>                  AuditChainHead
//	once/<kind>/<id>                  <expiry><value>, with a Badger TTL
//	secret/<name>                     raw bytes
//	meta/format                       on-disk format version
//
// <expiry> and <time> are 12-byte big-endian timestamps that sort in time
// order; <^time> is bitwise inverted so that a forward scan is newest first.
package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

var _ store.Store = (*Store)(nil)

const (
	// formatVersion 2 added the member index; Open upgrades format 1.
	formatVersion     = "2"
	defaultAuditLimit = 100
	// maxAttempts bounds compare-and-swap retries on transaction conflicts.
	maxAttempts = 100
	// expireBatch bounds one DeleteExpiredSessions transaction, well below
	// Badger's per-transaction size limit.
	expireBatch = 256
	// gcDiscardRatio: rewrite a value log file when half of it is garbage.
	gcDiscardRatio = 0.5
)

// errFnFailed marks an aborted transaction whose real cause, the caller's
// fn error, is returned unchanged instead.
var errFnFailed = errors.New("badgerstore: update fn failed")

// Store is a Badger-backed store.Store. It is safe for concurrent use.
type Store struct {
	db  *badger.DB
	log *slog.Logger

	// mu guards closed; operations hold it for reading so that Close waits
	// for them before closing the database underneath.
	mu     sync.RWMutex
	closed bool

	stopGC chan struct{}
	gcDone chan struct{}

	// Audit appends go through one writer that commits what is queued
	// in one transaction (audit.go): no conflicts on a chain head, one
	// sync for many events.
	audit *store.AuditWriter
}

type options struct {
	logger     *slog.Logger
	gcInterval time.Duration
	inMemory   bool
	// noSync skips fsync on commit: only for tests that bulk load.
	noSync bool
}

// Option configures Open.
type Option func(*options)

// WithLogger routes Badger's warnings and errors, and the store's own, to l
// (default slog.Default()). Badger's info and debug output is dropped.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithGCInterval sets how often the value log is garbage collected
// (default 5 minutes). d <= 0 disables the collector.
func WithGCInterval(d time.Duration) Option {
	return func(o *options) { o.gcInterval = d }
}

// WithoutSync skips fsync on commit: a write acknowledged can be lost in
// a crash. Only for bulk loads into a store nobody serves from yet
// (benchmarks' fixtures); reopen without it to serve.
func WithoutSync() Option {
	return func(o *options) { o.noSync = true }
}

// WithInMemory keeps everything in memory and ignores path. Meant for tests
// of other packages: nothing survives Close.
func WithInMemory() Option {
	return func(o *options) { o.inMemory = true }
}

// Open opens (creating if needed) the database in directory path. Writes
// are fsynced before they are acknowledged.
func Open(path string, opts ...Option) (*Store, error) {
	cfg := options{logger: slog.Default(), gcInterval: 5 * time.Minute}
	for _, o := range opts {
		o(&cfg)
	}
	bo := badger.DefaultOptions(path).
		WithLogger(badgerLogger{cfg.logger}).
		WithLoggingLevel(badger.WARNING)
	if cfg.inMemory {
		bo = bo.WithDir("").WithValueDir("").WithInMemory(true)
		cfg.gcInterval = 0 // value log GC is unsupported in memory
	} else {
		if path == "" {
			return nil, errors.New("badgerstore: open: empty path")
		}
		bo = bo.WithSyncWrites(!cfg.noSync)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: open %s: %w", path, err)
	}
	if err := checkFormat(db, cfg.logger); err != nil {
		db.Close()
		return nil, fmt.Errorf("badgerstore: open %s: %w", path, err)
	}
	s := &Store{
		db:     db,
		log:    cfg.logger,
		stopGC: make(chan struct{}),
		gcDone: make(chan struct{}),
	}
	s.audit = store.NewAuditWriter("badgerstore", s.appendAudit)
	// A deletion a crash cut short is finished before anyone reads.
	s.finishOrgDeletions()
	if cfg.gcInterval > 0 {
		go s.gcLoop(cfg.gcInterval)
	} else {
		close(s.gcDone)
	}
	return s, nil
}

var formatKey = []byte("meta/format")

// checkFormat stamps a new database with formatVersion, upgrades one in
// an older format it knows, and refuses any other. An upgraded database
// is stamped with the new version, which older binaries refuse: they
// would not keep the new indexes.
func checkFormat(db *badger.DB, log *slog.Logger) error {
	var v []byte
	err := db.Update(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if errors.Is(err, badger.ErrKeyNotFound) {
			v = []byte(formatVersion)
			return txn.Set(formatKey, v)
		}
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if err != nil {
		return err
	}
	switch string(v) {
	case formatVersion:
		return nil
	case "1":
		return migrate(db, log, "1")
	}
	return fmt.Errorf("unsupported on-disk format %q (want %q)", v, formatVersion)
}

func (s *Store) gcLoop(interval time.Duration) {
	defer close(s.gcDone)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
		}
		// One call rewrites at most one file; keep going while it helps,
		// but let Close interrupt between files.
		for {
			select {
			case <-s.stopGC:
				return
			default:
			}
			err := s.db.RunValueLogGC(gcDiscardRatio)
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("badgerstore: value log GC failed", "err", err)
			}
			break
		}
	}
}

// Close stops the collector and closes the database. In-flight calls
// finish first; later calls, including Close, return store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("badgerstore: close: %w", store.ErrClosed)
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stopGC)
	<-s.gcDone
	s.audit.Close()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("badgerstore: close: %w", err)
	}
	return nil
}

// Ping reports whether the database can serve reads.
func (s *Store) Ping(ctx context.Context) error {
	err := s.view(ctx, func(txn *badger.Txn) error {
		_, err := txn.Get(formatKey)
		return err
	})
	if err != nil {
		return fmt.Errorf("badgerstore: ping: %w", err)
	}
	return nil
}

// enter admits one operation; on success the caller must s.mu.RUnlock.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return store.ErrClosed
	}
	return nil
}

func (s *Store) view(ctx context.Context, fn func(*badger.Txn) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	return s.db.View(fn)
}

// update runs fn in a read-write transaction and reruns it when the commit
// conflicts with a concurrent one. Badger tracks every key fn reads, so
// reads inside fn are the compare half of compare-and-swap.
func (s *Store) update(ctx context.Context, fn func(*badger.Txn) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	defer s.mu.RUnlock()
	for attempt := 1; ; attempt++ {
		err := s.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		// Jitter so that colliding writers spread out instead of colliding again.
		time.Sleep(time.Duration(mathrand.Int64N(int64(attempt)*int64(50*time.Microsecond) + 1)))
	}
}

// modify is the shared compare-and-swap: it loads the record at key, calls
// fn, lets apply validate the result and rewrite indexes, and stores it.
// An error from fn is returned unchanged; others are wrapped with op.
func modify[T any](ctx context.Context, s *Store, op string, key []byte, fn func(T) (T, error), apply func(txn *badger.Txn, old, next T) error) (T, error) {
	var (
		out   T
		fnErr error
	)
	err := s.update(ctx, func(txn *badger.Txn) error {
		fnErr = nil
		cur, err := getJSON[T](txn, key)
		if err != nil {
			return err
		}
		next, err := fn(cur)
		if err != nil {
			fnErr = err
			return errFnFailed
		}
		if err := apply(txn, cur, next); err != nil {
			return err
		}
		if err := setJSON(txn, key, next); err != nil {
			return err
		}
		out = next
		return nil
	})
	if errors.Is(err, errFnFailed) && fnErr != nil {
		var zero T
		return zero, fnErr
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("badgerstore: %s: %w", op, err)
	}
	return out, nil
}

// --- Orgs ---

func (s *Store) CreateOrg(ctx context.Context, o store.Org) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if o.ID == "" || o.Slug == "" {
			return errors.New("id and slug are required")
		}
		if err := mustNotExist(txn, orgKey(o.ID), "id"); err != nil {
			return err
		}
		if err := mustNotExist(txn, orgSlugKey(o.Slug), "slug "+o.Slug); err != nil {
			return err
		}
		// An org of this ID whose deletion has not finished yet still has
		// memberships that a new one must not inherit.
		if err := mustNotExist(txn, orgDelKey(o.ID), "id (an org of this id is being deleted)"); err != nil {
			return err
		}
		if err := txn.Set(orgSlugKey(o.Slug), orgKey(o.ID)); err != nil {
			return err
		}
		return setJSON(txn, orgKey(o.ID), o)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create org %s: %w", o.ID, err)
	}
	return nil
}

func (s *Store) GetOrg(ctx context.Context, id string) (store.Org, error) {
	o, err := getOne[store.Org](ctx, s, orgKey(id))
	if err != nil {
		return store.Org{}, fmt.Errorf("badgerstore: get org %s: %w", id, err)
	}
	return o, nil
}

func (s *Store) GetOrgBySlug(ctx context.Context, slug string) (store.Org, error) {
	o, err := getIndexed[store.Org](ctx, s, orgSlugKey(slug))
	if err != nil {
		return store.Org{}, fmt.Errorf("badgerstore: get org by slug %s: %w", slug, err)
	}
	return o, nil
}

// ListOrgs returns every org, ordered by ID.
func (s *Store) ListOrgs(ctx context.Context) ([]store.Org, error) {
	orgs, err := list[store.Org](ctx, s, []byte("org/"))
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list orgs: %w", err)
	}
	return orgs, nil
}

func (s *Store) UpdateOrg(ctx context.Context, id string, fn func(store.Org) (store.Org, error)) (store.Org, error) {
	return modify(ctx, s, "update org "+id, orgKey(id), fn, func(txn *badger.Txn, old, next store.Org) error {
		if next.ID != old.ID {
			return fmt.Errorf("id changed to %q", next.ID)
		}
		if next.Slug == "" {
			return errors.New("slug is required")
		}
		return moveIndex(txn, orgSlugKey(old.Slug), orgSlugKey(next.Slug), orgKey(id), "slug "+next.Slug)
	})
}

// --- Users ---

func (s *Store) CreateUser(ctx context.Context, u store.User) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if u.ID == "" || u.Email == "" {
			return errors.New("id and email are required")
		}
		if err := mustNotExist(txn, userKey(u.ID), "id"); err != nil {
			return err
		}
		if err := mustNotExist(txn, userEmailKey(u.Email), "email "+u.Email); err != nil {
			return err
		}
		if err := txn.Set(userEmailKey(u.Email), userKey(u.ID)); err != nil {
			return err
		}
		// Memberships made before the user was are indexed without it.
		if err := reindexMember(txn, u.ID, nil, &u); err != nil {
			return err
		}
		return setJSON(txn, userKey(u.ID), u)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create user %s: %w", u.ID, err)
	}
	return nil
}

func (s *Store) GetUser(ctx context.Context, id string) (store.User, error) {
	u, err := getOne[store.User](ctx, s, userKey(id))
	if err != nil {
		return store.User{}, fmt.Errorf("badgerstore: get user %s: %w", id, err)
	}
	return u, nil
}

func (s *Store) GetUserByEmail(ctx context.Context, email string) (store.User, error) {
	u, err := getIndexed[store.User](ctx, s, userEmailKey(email))
	if err != nil {
		return store.User{}, fmt.Errorf("badgerstore: get user by email %s: %w", email, err)
	}
	return u, nil
}

func (s *Store) UpdateUser(ctx context.Context, id string, fn func(store.User) (store.User, error)) (store.User, error) {
	return modify(ctx, s, "update user "+id, userKey(id), fn, func(txn *badger.Txn, old, next store.User) error {
		if next.ID != old.ID {
			return fmt.Errorf("id changed to %q", next.ID)
		}
		if next.Email == "" {
			return errors.New("email is required")
		}
		if err := moveIndex(txn, userEmailKey(old.Email), userEmailKey(next.Email), userKey(id), "email "+next.Email); err != nil {
			return err
		}
		return reindexMember(txn, id, &old, &next)
	})
}

func (s *Store) DeleteUser(ctx context.Context, id string) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		u, err := getJSON[store.User](txn, userKey(id))
		if err != nil {
			return err
		}
		var orgs []string
		if err := scan(txn, prefix("mem/u", id), true, func(item *badger.Item) error {
			var m store.Membership
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &m) }); err != nil {
				return err
			}
			orgs = append(orgs, m.OrgID)
			return nil
		}); err != nil {
			return err
		}
		for _, oid := range orgs {
			if err := deleteMembership(txn, id, oid, &u); err != nil {
				return err
			}
		}
		if err := deleteIndexed(txn, prefix("tokuser", id), deleteAPIToken); err != nil {
			return err
		}
		if err := deleteIndexed(txn, prefix("invuser", id), deleteInvitation); err != nil {
			return err
		}
		if err := deleteIndexed(txn, prefix("rtfuser", id), deleteRefreshFamily); err != nil {
			return err
		}
		var blobs [][]byte
		if err := scan(txn, append(blobKey(store.UserBlobKey(id)), '/'), false, func(it *badger.Item) error {
			blobs = append(blobs, it.KeyCopy(nil))
			return nil
		}); err != nil {
			return err
		}
		if err := deleteKeys(txn, blobs...); err != nil {
			return err
		}
		// Sessions in no org's membership (any left) go too.
		if err := deleteSessions(txn, id, func(store.Session) bool { return true }); err != nil {
			return err
		}
		return deleteKeys(txn, userKey(id), userEmailKey(u.Email))
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete user %s: %w", id, err)
	}
	return nil
}

// --- Memberships ---

func (s *Store) CreateMembership(ctx context.Context, m store.Membership) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if m.UserID == "" || m.OrgID == "" {
			return errors.New("user and org ids are required")
		}
		// The org must exist: reading its record makes this conflict with
		// a concurrent DeleteOrg, whose first transaction deletes it, so
		// no membership is added once that deletion has begun.
		if err := mustExist(txn, orgKey(m.OrgID)); err != nil {
			return fmt.Errorf("org %s: %w", m.OrgID, err)
		}
		pk := memKey(m.UserID, m.OrgID)
		if err := mustNotExist(txn, pk, "membership"); err != nil {
			return err
		}
		if err := txn.Set(memOrgKey(m.OrgID, m.UserID), pk); err != nil {
			return err
		}
		u, err := getUser(txn, m.UserID)
		if err != nil {
			return err
		}
		if err := setMemberEntry(txn, m.OrgID, m.UserID, u); err != nil {
			return err
		}
		// UpdateUser and DeleteUser find the memberships to reindex or
		// delete by a scan, which a new one would slip past (see touch).
		if err := touch(txn, userKey(m.UserID)); err != nil {
			return err
		}
		return setJSON(txn, pk, m)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create membership %s/%s: %w", m.UserID, m.OrgID, err)
	}
	return nil
}

func (s *Store) GetMembership(ctx context.Context, userID, orgID string) (store.Membership, error) {
	var m store.Membership
	err := s.view(ctx, func(txn *badger.Txn) error {
		if err := mustNotBeDeleting(txn, orgID); err != nil {
			return err
		}
		var err error
		m, err = getJSON[store.Membership](txn, memKey(userID, orgID))
		return err
	})
	if err != nil {
		return store.Membership{}, fmt.Errorf("badgerstore: get membership %s/%s: %w", userID, orgID, err)
	}
	return m, nil
}

// ListMembershipsByUser returns the user's memberships, ordered by org ID,
// but for those in orgs being deleted.
func (s *Store) ListMembershipsByUser(ctx context.Context, userID string) ([]store.Membership, error) {
	ms := []store.Membership{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		var all []store.Membership
		if err := scan(txn, prefix("mem/u", userID), true, func(item *badger.Item) error {
			m, err := decodeJSON[store.Membership](item)
			all = append(all, m)
			return err
		}); err != nil {
			return err
		}
		for _, m := range all {
			gone, err := orgDeleting(txn, m.OrgID)
			if err != nil {
				return err
			}
			if !gone {
				ms = append(ms, m)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list memberships of user %s: %w", userID, err)
	}
	return ms, nil
}

// ListMembershipsByOrg returns the org's memberships, ordered by user ID.
func (s *Store) ListMembershipsByOrg(ctx context.Context, orgID string) ([]store.Membership, error) {
	ms := []store.Membership{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if gone, err := orgDeleting(txn, orgID); err != nil || gone {
			return err
		}
		return scan(txn, prefix("mem/o", orgID), true, func(item *badger.Item) error {
			m, err := getIndexedItem[store.Membership](txn, item)
			ms = append(ms, m)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list memberships of org %s: %w", orgID, err)
	}
	return ms, nil
}

func (s *Store) UpdateMembership(ctx context.Context, userID, orgID string, fn func(store.Membership) (store.Membership, error)) (store.Membership, error) {
	op := "update membership " + userID + "/" + orgID
	return modify(ctx, s, op, memKey(userID, orgID), fn, func(txn *badger.Txn, old, next store.Membership) error {
		if next.UserID != old.UserID || next.OrgID != old.OrgID {
			return fmt.Errorf("key changed to %q/%q", next.UserID, next.OrgID)
		}
		return mustNotBeDeleting(txn, orgID)
	})
}

func (s *Store) DeleteMembership(ctx context.Context, userID, orgID string) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if err := mustNotBeDeleting(txn, orgID); err != nil {
			return err
		}
		if err := mustExist(txn, memKey(userID, orgID)); err != nil {
			return err
		}
		u, err := getUser(txn, userID)
		if err != nil {
			return err
		}
		return deleteMembership(txn, userID, orgID, u)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete membership %s/%s: %w", userID, orgID, err)
	}
	return nil
}

// deleteMembership removes a membership, its indexes and the user's
// sessions in that org. u is the user (nil if there is none).
func deleteMembership(txn *badger.Txn, userID, orgID string, u *store.User) error {
	if err := deleteKeys(txn, memKey(userID, orgID), memOrgKey(orgID, userID)); err != nil {
		return err
	}
	if err := deleteMemberEntry(txn, orgID, userID, u); err != nil {
		return err
	}
	return deleteSessions(txn, userID, func(se store.Session) bool { return se.OrgID == orgID })
}

// deleteSessions removes the user's sessions that match, with their
// indexes.
func deleteSessions(txn *badger.Txn, userID string, match func(store.Session) bool) error {
	var gone []store.Session
	if err := scan(txn, prefix("sessuser", userID), false, func(item *badger.Item) error {
		pk, err := item.ValueCopy(nil)
		if err != nil {
			return err
		}
		se, err := getJSON[store.Session](txn, pk)
		if err != nil {
			return err
		}
		if match(se) {
			gone = append(gone, se)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, se := range gone {
		if err := deleteKeys(txn, sessKey(se.ID), sessUserKey(se.UserID, se.ID), sessExpKey(se.ExpiresAt, se.ID)); err != nil {
			return err
		}
	}
	return nil
}

// --- Sessions ---

func (s *Store) CreateSession(ctx context.Context, se store.Session) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if se.ID == "" || se.UserID == "" {
			return errors.New("id and user id are required")
		}
		pk := sessKey(se.ID)
		if err := mustNotExist(txn, pk, "id"); err != nil {
			return err
		}
		// Not in an org being deleted: its deletion would miss the session.
		// Reading the mark makes this conflict with the DeleteOrg that
		// writes it.
		if err := mustNotBeDeleting(txn, se.OrgID); err != nil {
			return err
		}
		if err := txn.Set(sessUserKey(se.UserID, se.ID), pk); err != nil {
			return err
		}
		if err := txn.Set(sessExpKey(se.ExpiresAt, se.ID), pk); err != nil {
			return err
		}
		return setJSON(txn, pk, se)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create session %s: %w", se.ID, err)
	}
	return nil
}

func (s *Store) GetSession(ctx context.Context, id string) (store.Session, error) {
	se, err := getOne[store.Session](ctx, s, sessKey(id))
	if err != nil {
		return store.Session{}, fmt.Errorf("badgerstore: get session %s: %w", id, err)
	}
	return se, nil
}

func (s *Store) UpdateSession(ctx context.Context, id string, fn func(store.Session) (store.Session, error)) (store.Session, error) {
	return modify(ctx, s, "update session "+id, sessKey(id), fn, func(txn *badger.Txn, old, next store.Session) error {
		if next.ID != old.ID {
			return fmt.Errorf("id changed to %q", next.ID)
		}
		if next.UserID == "" {
			return errors.New("user id is required")
		}
		pk := sessKey(id)
		if err := moveIndex(txn, sessUserKey(old.UserID, id), sessUserKey(next.UserID, id), pk, ""); err != nil {
			return err
		}
		return moveIndex(txn, sessExpKey(old.ExpiresAt, id), sessExpKey(next.ExpiresAt, id), pk, "")
	})
}

// ListSessionsByUser returns the user's sessions, ordered by session ID.
func (s *Store) ListSessionsByUser(ctx context.Context, userID string) ([]store.Session, error) {
	ss, err := listIndexed[store.Session](ctx, s, prefix("sessuser", userID))
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list sessions of user %s: %w", userID, err)
	}
	return ss, nil
}

// DeleteExpiredSessions walks the expiry index in batches, each its own
// transaction, so that any number of sessions can be removed.
func (s *Store) DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		n, full := 0, false
		err := s.update(ctx, func(txn *badger.Txn) error {
			n, full = 0, false
			var idx, pks [][]byte
			err := scan(txn, []byte("sessexp/"), true, func(item *badger.Item) error {
				exp, ok := decodeTime(item.Key()[len("sessexp/"):])
				if !ok {
					return fmt.Errorf("malformed index key %q", item.Key())
				}
				if !exp.Before(before) || len(idx) == expireBatch {
					return errStopScan
				}
				pk, err := item.ValueCopy(nil)
				if err != nil {
					return err
				}
				idx, pks = append(idx, item.KeyCopy(nil)), append(pks, pk)
				return nil
			})
			if err != nil {
				return err
			}
			full = len(idx) == expireBatch
			for i, pk := range pks {
				// Dropping the index entry first guarantees progress even
				// if it were stale.
				if err := txn.Delete(idx[i]); err != nil {
					return err
				}
				// The record, not the index, decides; reading it also makes
				// a concurrent UpdateSession conflict with this batch.
				se, err := getJSON[store.Session](txn, pk)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if !se.ExpiresAt.Before(before) {
					// Stale entry: keep the record's own expiry entry.
					if err := txn.Set(sessExpKey(se.ExpiresAt, se.ID), pk); err != nil {
						return err
					}
					continue
				}
				if err := deleteKeys(txn, pk, sessUserKey(se.UserID, se.ID), sessExpKey(se.ExpiresAt, se.ID)); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("badgerstore: delete expired sessions: %w", err)
		}
		total += n
		if !full {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("badgerstore: delete expired sessions: %w", err)
		}
	}
}

// --- Signing keys ---

func (s *Store) CreateSigningKey(ctx context.Context, k store.SigningKey) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if k.ID == "" {
			return errors.New("id is required")
		}
		if err := mustNotExist(txn, signingKey(k.ID), "id"); err != nil {
			return err
		}
		return setJSON(txn, signingKey(k.ID), k)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: create signing key %s: %w", k.ID, err)
	}
	return nil
}

// ListSigningKeys returns every key, ordered by ID.
func (s *Store) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	ks, err := list[store.SigningKey](ctx, s, []byte("key/"))
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list signing keys: %w", err)
	}
	return ks, nil
}

func (s *Store) UpdateSigningKey(ctx context.Context, id string, fn func(store.SigningKey) (store.SigningKey, error)) (store.SigningKey, error) {
	return modify(ctx, s, "update signing key "+id, signingKey(id), fn, func(_ *badger.Txn, old, next store.SigningKey) error {
		if next.ID != old.ID {
			return fmt.Errorf("id changed to %q", next.ID)
		}
		return nil
	})
}

func (s *Store) DeleteSigningKey(ctx context.Context, id string) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if err := mustExist(txn, signingKey(id)); err != nil {
			return err
		}
		return txn.Delete(signingKey(id))
	})
	if err != nil {
		return fmt.Errorf("badgerstore: delete signing key %s: %w", id, err)
	}
	return nil
}

// --- Audit ---

// AppendAudit stores e, filling a random ID and the current time if unset.
// AuditHeads lists every org's chain head.
func (s *Store) AuditHeads(ctx context.Context) ([]store.AuditChainHead, error) {
	var out []store.AuditChainHead
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scan(txn, []byte("audit/head/"), true, func(item *badger.Item) error {
			var h store.AuditChainHead
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &h) }); err != nil {
				return err
			}
			out = append(out, h)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: audit heads: %w", err)
	}
	return out, nil
}

// WalkAudit calls fn with the org's chained events after after, oldest first. Each
// event is read in its own short transaction, in batches, so a long
// chain does not hold one transaction open.
func (s *Store) WalkAudit(ctx context.Context, orgID string, after uint64, fn func(store.AuditEvent) error) error {
	const batch = 500
	next := after + 1
	for {
		var events []store.AuditEvent
		err := s.view(ctx, func(txn *badger.Txn) error {
			o := badger.DefaultIteratorOptions
			o.Prefix = prefix("audit/chain", orgID)
			it := txn.NewIterator(o)
			defer it.Close()
			for it.Seek(auditChainKey(orgID, next)); it.Valid() && len(events) < batch; it.Next() {
				pk, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				e, err := getJSON[store.AuditEvent](txn, pk)
				if err != nil {
					return err
				}
				events = append(events, e)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("badgerstore: walk audit %s: %w", orgID, err)
		}
		for _, e := range events {
			if err := fn(e); err != nil {
				return err
			}
			next = e.Seq + 1
		}
		if len(events) < batch {
			return nil
		}
	}
}

// ListAudit returns events newest first; a Limit <= 0 means 100. Since is
// inclusive, Until exclusive; the other filters apply before the limit.
//
// With an OrgID it walks the org's chain backwards from BeforeSeq-1 (or
// its head), so that Seq is a stable cursor: newest first means last
// appended first. AppendAudit stamps events as it chains them, so the
// chain is in time order and the walk ends at the first event before
// Since; an event appended with an explicit older time ends it early.
// Without an OrgID it scans every org's events by time, from Until.
func (s *Store) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditEvent, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultAuditLimit
	}
	out := []store.AuditEvent{}
	keep := func(e store.AuditEvent) bool {
		return (q.Until.IsZero() || e.Time.Before(q.Until)) &&
			(q.Action == "" || e.Action == q.Action) &&
			(q.Actor == "" || e.Actor == q.Actor) &&
			(q.Target == "" || e.Target == q.Target)
	}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if q.OrgID != "" {
			return walkAuditBack(ctx, txn, q, limit, keep, &out)
		}
		o := badger.DefaultIteratorOptions
		o.Prefix = []byte("audit/all/")
		it := txn.NewIterator(o)
		defer it.Close()
		seek := o.Prefix
		if !q.Until.IsZero() {
			// Keys are newest first: this is the first key at Until.
			seek = append(bytes.Clone(o.Prefix), invert(appendTime(nil, q.Until))...)
		}
		n := 0
		for it.Seek(seek); it.Valid() && len(out) < limit; it.Next() {
			if n++; n%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			t, ok := decodeTime(invert(item.Key()[len(o.Prefix):]))
			if !ok {
				return fmt.Errorf("malformed audit key %q", item.Key())
			}
			if t.Before(q.Since) {
				break
			}
			e, err := decodeJSON[store.AuditEvent](item)
			if err != nil {
				return err
			}
			if keep(e) {
				out = append(out, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list audit: %w", err)
	}
	return out, nil
}

// walkAuditBack is ListAudit over one org's chain.
func walkAuditBack(ctx context.Context, txn *badger.Txn, q store.AuditQuery, limit int, keep func(store.AuditEvent) bool, out *[]store.AuditEvent) error {
	from := uint64(math.MaxUint64)
	if q.BeforeSeq > 0 {
		from = q.BeforeSeq - 1
	}
	if from == 0 {
		return nil // sequence numbers start at 1
	}
	o := badger.DefaultIteratorOptions
	o.Prefix = prefix("audit/chain", q.OrgID)
	o.Reverse = true
	o.PrefetchValues = false
	it := txn.NewIterator(o)
	defer it.Close()
	n := 0
	// A reverse Seek lands on the last key at or before it.
	for it.Seek(auditChainKey(q.OrgID, from)); it.Valid() && len(*out) < limit; it.Next() {
		if n++; n%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		e, err := getIndexedItem[store.AuditEvent](txn, it.Item())
		if err != nil {
			return err
		}
		if e.Time.Before(q.Since) {
			return nil
		}
		if keep(e) {
			*out = append(*out, e)
		}
	}
	return nil
}

// --- Single-use values ---

func (s *Store) PutOnce(ctx context.Context, kind, id string, value []byte, expires time.Time) error {
	err := s.update(ctx, func(txn *badger.Txn) error {
		if kind == "" || id == "" {
			return errors.New("kind and id are required")
		}
		k := onceKey(kind, id)
		now := time.Now()
		item, err := txn.Get(k)
		switch {
		case err == nil:
			exp, _, err := decodeOnce(item)
			if err != nil {
				return err
			}
			if now.Before(exp) {
				return store.ErrAlreadyExists
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		}
		if !now.Before(expires) {
			return nil // dead on arrival: a Take could never return it
		}
		v := appendTime(make([]byte, 0, timeLen+len(value)), expires)
		e := badger.NewEntry(k, append(v, value...))
		// Badger's TTL is in whole seconds and expires on the second it
		// names; round up so it never fires before expires. TakeOnce checks
		// the exact time.
		e.ExpiresAt = uint64(expires.Unix()) + 1
		return txn.SetEntry(e)
	})
	if err != nil {
		return fmt.Errorf("badgerstore: put once %s/%s: %w", kind, id, err)
	}
	return nil
}

func (s *Store) TakeOnce(ctx context.Context, kind, id string) ([]byte, error) {
	var out []byte
	err := s.update(ctx, func(txn *badger.Txn) error {
		k := onceKey(kind, id)
		_, v, err := liveOnce(txn, k) // an expired one: Badger's TTL removes it
		if err != nil {
			return err
		}
		out = v
		return txn.Delete(k)
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: take once %s/%s: %w", kind, id, err)
	}
	return out, nil
}

func (s *Store) GetOnce(ctx context.Context, kind, id string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		_, out, err = liveOnce(txn, onceKey(kind, id))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: get once %s/%s: %w", kind, id, err)
	}
	return out, nil
}

func (s *Store) UpdateOnce(ctx context.Context, kind, id string, fn func([]byte) ([]byte, error)) error {
	var fnErr error
	err := s.update(ctx, func(txn *badger.Txn) error {
		fnErr = nil
		k := onceKey(kind, id)
		exp, old, err := liveOnce(txn, k)
		if err != nil {
			return err
		}
		next, err := fn(old)
		if err != nil {
			fnErr = err
			return errFnFailed
		}
		e := badger.NewEntry(k, append(appendTime(make([]byte, 0, timeLen+len(next)), exp), next...))
		e.ExpiresAt = uint64(exp.Unix()) + 1
		return txn.SetEntry(e)
	})
	if errors.Is(err, errFnFailed) && fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("badgerstore: update once %s/%s: %w", kind, id, err)
	}
	return nil
}

// liveOnce reads a single-use value that has not expired.
func liveOnce(txn *badger.Txn, k []byte) (time.Time, []byte, error) {
	item, err := txn.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return time.Time{}, nil, store.ErrNotFound
	}
	if err != nil {
		return time.Time{}, nil, err
	}
	exp, v, err := decodeOnce(item)
	if err != nil {
		return exp, nil, err
	}
	if !time.Now().Before(exp) {
		return exp, nil, store.ErrNotFound
	}
	return exp, v, nil
}

func decodeOnce(item *badger.Item) (time.Time, []byte, error) {
	v, err := item.ValueCopy(nil)
	if err != nil {
		return time.Time{}, nil, err
	}
	exp, ok := decodeTime(v)
	if !ok {
		return time.Time{}, nil, fmt.Errorf("malformed value at %q", item.Key())
	}
	return exp, v[timeLen:], nil
}

// --- Secrets ---

func (s *Store) Secret(ctx context.Context, name string, value []byte) ([]byte, error) {
	var out []byte
	err := s.update(ctx, func(txn *badger.Txn) error {
		if name == "" {
			return errors.New("name is required")
		}
		k := escKey("secret", name)
		item, err := txn.Get(k)
		if err == nil {
			out, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		// An empty secret is surely a caller bug; refuse to make it permanent.
		if len(value) == 0 {
			return errors.New("empty value")
		}
		out = bytes.Clone(value)
		return txn.Set(k, out)
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: secret %s: %w", name, err)
	}
	return out, nil
}

// --- Transaction helpers ---

// errStopScan ends a scan early without error.
var errStopScan = errors.New("stop scan")

func getJSON[T any](txn *badger.Txn, key []byte) (T, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		var zero T
		return zero, store.ErrNotFound
	}
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeJSON[T](item)
}

func decodeJSON[T any](item *badger.Item) (T, error) {
	var v T
	err := item.Value(func(b []byte) error {
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode %q: %w", item.Key(), err)
		}
		return nil
	})
	return v, err
}

// getIndexedItem follows an index entry to its record. A dangling index is
// corruption, not ErrNotFound.
func getIndexedItem[T any](txn *badger.Txn, item *badger.Item) (T, error) {
	pk, err := item.ValueCopy(nil)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := getJSON[T](txn, pk)
	if errors.Is(err, store.ErrNotFound) {
		return v, fmt.Errorf("index %q points at missing %q", item.Key(), pk)
	}
	return v, err
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %q: %w", key, err)
	}
	return txn.Set(key, b)
}

func getOne[T any](ctx context.Context, s *Store, key []byte) (T, error) {
	var v T
	err := s.view(ctx, func(txn *badger.Txn) error {
		var err error
		v, err = getJSON[T](txn, key)
		return err
	})
	return v, err
}

func getIndexed[T any](ctx context.Context, s *Store, idx []byte) (T, error) {
	var v T
	err := s.view(ctx, func(txn *badger.Txn) error {
		item, err := txn.Get(idx)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		v, err = getIndexedItem[T](txn, item)
		return err
	})
	return v, err
}

func list[T any](ctx context.Context, s *Store, pfx []byte) ([]T, error) {
	out := []T{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scan(txn, pfx, true, func(item *badger.Item) error {
			v, err := decodeJSON[T](item)
			out = append(out, v)
			return err
		})
	})
	return out, err
}

func listIndexed[T any](ctx context.Context, s *Store, pfx []byte) ([]T, error) {
	out := []T{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		return scan(txn, pfx, true, func(item *badger.Item) error {
			v, err := getIndexedItem[T](txn, item)
			out = append(out, v)
			return err
		})
	})
	return out, err
}

// scan calls fn for each key under pfx in order until fn returns an error;
// errStopScan ends the scan cleanly.
func scan(txn *badger.Txn, pfx []byte, prefetch bool, fn func(*badger.Item) error) error {
	o := badger.DefaultIteratorOptions
	o.Prefix = pfx
	o.PrefetchValues = prefetch
	it := txn.NewIterator(o)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if err := fn(it.Item()); err != nil {
			if errors.Is(err, errStopScan) {
				return nil
			}
			return err
		}
	}
	return nil
}

func mustNotExist(txn *badger.Txn, key []byte, what string) error {
	_, err := txn.Get(key)
	if err == nil {
		return fmt.Errorf("%s: %w", what, store.ErrAlreadyExists)
	}
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	return err
}

func mustExist(txn *badger.Txn, key []byte) error {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return store.ErrNotFound
	}
	return err
}

// moveIndex repoints a unique index from oldKey to newKey. what names the
// indexed value for the ErrAlreadyExists message.
func moveIndex(txn *badger.Txn, oldKey, newKey, pk []byte, what string) error {
	if bytes.Equal(oldKey, newKey) {
		return nil
	}
	if err := mustNotExist(txn, newKey, what); err != nil {
		return err
	}
	if err := txn.Delete(oldKey); err != nil {
		return err
	}
	return txn.Set(newKey, pk)
}

func deleteKeys(txn *badger.Txn, keys ...[]byte) error {
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// --- Keys ---

// escape makes s safe as one key segment: it can contain no '/', and
// distinct inputs stay distinct.
func escape(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b = append(b, "%25"...)
		case '/':
			b = append(b, "%2F"...)
		default:
			b = append(b, c)
		}
	}
	return b
}

// escKey joins ns and the escaped segments with '/'.
func escKey(ns string, segs ...string) []byte {
	b := []byte(ns)
	for _, s := range segs {
		b = append(b, '/')
		b = escape(b, s)
	}
	return b
}

// prefix is escKey plus a trailing '/', for scanning under the segments.
func prefix(ns string, segs ...string) []byte {
	return append(escKey(ns, segs...), '/')
}

func orgKey(id string) []byte          { return escKey("org", id) }
func orgSlugKey(slug string) []byte    { return escKey("orgslug", slug) }
func userKey(id string) []byte         { return escKey("user", id) }
func userEmailKey(email string) []byte { return escKey("useremail", strings.ToLower(email)) }
func memKey(uid, oid string) []byte    { return escKey("mem/u", uid, oid) }
func memOrgKey(oid, uid string) []byte { return escKey("mem/o", oid, uid) }
func sessKey(id string) []byte         { return escKey("sess", id) }
func sessUserKey(uid, id string) []byte {
	return escKey("sessuser", uid, id)
}
func signingKey(id string) []byte    { return escKey("key", id) }
func onceKey(kind, id string) []byte { return escKey("once", kind, id) }

func sessExpKey(exp time.Time, id string) []byte {
	return escape(appendTime([]byte("sessexp/"), exp), id)
}

func auditKey(t time.Time, id string) []byte {
	b := []byte("audit/all/")
	return escape(append(b, invert(appendTime(nil, t))...), id)
}

// auditChainKey indexes an org's events by sequence number (big-endian,
// so key order is chain order); auditHeadKey holds the chain's last.
func auditChainKey(org string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(prefix("audit/chain", org), seq)
}

func auditHeadKey(org string) []byte { return escKey("audit/head", org) }

func auditOrgKey(org string, t time.Time, id string) []byte {
	b := prefix("audit/org", org)
	return escape(append(b, invert(appendTime(nil, t))...), id)
}

const timeLen = 12

// appendTime encodes t so that byte order is time order for every
// representable time: seconds with the sign bit flipped, then nanoseconds.
func appendTime(b []byte, t time.Time) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(t.Unix())^(1<<63))
	return binary.BigEndian.AppendUint32(b, uint32(t.Nanosecond()))
}

// decodeTime reads the timestamp at the start of b.
func decodeTime(b []byte) (time.Time, bool) {
	if len(b) < timeLen {
		return time.Time{}, false
	}
	sec := int64(binary.BigEndian.Uint64(b) ^ (1 << 63))
	nsec := binary.BigEndian.Uint32(b[8:])
	if nsec >= 1e9 {
		return time.Time{}, false
	}
	return time.Unix(sec, int64(nsec)).UTC(), true
}

// invert returns a copy of the first timeLen bytes of b with every bit
// flipped, turning ascending time order into descending.
func invert(b []byte) []byte {
	n := min(len(b), timeLen)
	out := make([]byte, n)
	for i := range n {
		out[i] = ^b[i]
	}
	return out
}

// --- Logging ---

// badgerLogger forwards Badger's warnings and errors to slog.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}

func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
