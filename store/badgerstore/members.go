package badgerstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// The member index lists an org's members in ListMembers order:
//
//	mem/oe/<oid>/<lowercased email, order-preserving>\x00<uid>
//
// escape would not do for the email: '/' (0x2F) sorts after '+', '-' and
// '.', so "a@x.co/..." would sort after "a@x.co.uk/...". Instead 0x00
// ends the email, and 0x00 and 0x01 inside it become 0x01 0x01 and
// 0x01 0x02, which keeps byte order and leaves the uid (the rest of the
// key, as is) unambiguous. The value holds the lowercased email and name,
// so that a search reads this index only, not every user.
//
// A membership whose user does not exist (yet) is indexed under the
// empty email; CreateUser moves it.

const defaultMemberLimit = 100

// ctxCheckEvery is how many entries a long scan reads between two looks
// at its context.
const ctxCheckEvery = 1024

func memberPrefix(oid string) []byte { return prefix("mem/oe", oid) }

func memberKey(oid, lowerEmail, uid string) []byte {
	b := appendOrdered(memberPrefix(oid), lowerEmail)
	b = append(b, 0)
	return append(b, uid...)
}

// appendOrdered appends s so that the encodings, each followed by 0x00,
// sort as the strings do.
func appendOrdered(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case 0:
			b = append(b, 1, 1)
		case 1:
			b = append(b, 1, 2)
		default:
			b = append(b, c)
		}
	}
	return b
}

// memberKeyUser returns the uid at the end of a member index key, given
// the length of its org prefix.
func memberKeyUser(key []byte, pfxLen int) ([]byte, bool) {
	rest := key[pfxLen:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 || i == len(rest)-1 {
		return nil, false
	}
	return rest[i+1:], true
}

// memberEntry is the index entry of uid's membership in oid; u is nil if
// the user does not exist.
func memberEntry(oid, uid string, u *store.User) (key, value []byte) {
	email, name := indexedFields(u)
	value = binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(email)+len(name)), uint64(len(email)))
	value = append(append(value, email...), name...)
	return memberKey(oid, email, uid), value
}

// indexedFields is what the member index keeps of u (nil: no user).
func indexedFields(u *store.User) (email, name string) {
	if u == nil {
		return "", ""
	}
	return strings.ToLower(u.Email), strings.ToLower(u.Name)
}

// decodeMemberValue splits an index value into lowercased email and name.
func decodeMemberValue(v []byte) (email, name []byte, ok bool) {
	n, w := binary.Uvarint(v)
	if w <= 0 || n > uint64(len(v)-w) {
		return nil, nil, false
	}
	return v[w : w+int(n)], v[w+int(n):], true
}

// getUser reads the user, or nil if there is none.
func getUser(txn *badger.Txn, uid string) (*store.User, error) {
	u, err := getJSON[store.User](txn, userKey(uid))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// setMemberEntry writes the index entry of uid's membership in oid.
func setMemberEntry(txn *badger.Txn, oid, uid string, u *store.User) error {
	k, v := memberEntry(oid, uid, u)
	return txn.Set(k, v)
}

// deleteMemberEntry removes it; u must be the user it was written for.
func deleteMemberEntry(txn *badger.Txn, oid, uid string, u *store.User) error {
	k, _ := memberEntry(oid, uid, u)
	return txn.Delete(k)
}

// reindexMember rewrites the index entries of every membership of the
// user whose record changes from old to next (either nil: no user).
func reindexMember(txn *badger.Txn, uid string, old, next *store.User) error {
	oe, on := indexedFields(old)
	ne, nn := indexedFields(next)
	if oe == ne && on == nn {
		return nil // nothing the index keeps changed
	}
	var orgs []string
	if err := scan(txn, prefix("mem/u", uid), true, func(item *badger.Item) error {
		m, err := decodeJSON[store.Membership](item)
		if err != nil {
			return err
		}
		orgs = append(orgs, m.OrgID)
		return nil
	}); err != nil {
		return err
	}
	for _, oid := range orgs {
		if err := deleteMemberEntry(txn, oid, uid, old); err != nil {
			return err
		}
		if err := setMemberEntry(txn, oid, uid, next); err != nil {
			return err
		}
	}
	return nil
}

// touch rewrites key with its current value (or deletes it again if it
// is absent). Badger detects conflicts on keys, not ranges: a transaction
// that scanned a prefix does not conflict with one that added a key
// under it. Writes that hang a record off a user or an org touch that
// record's key, so that a concurrent write of it (which scans the user's
// or org's records to cascade) conflicts and retries instead of missing
// the new one.
func touch(txn *badger.Txn, key []byte) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return txn.Delete(key)
	}
	if err != nil {
		return err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	return txn.Set(key, v)
}

// holdOwner requires the record at key (an org, a user) that a new
// record hangs off, and touches it: a concurrent delete of it, which
// cascades to what hangs off it, then conflicts with this write instead
// of missing the new record. what names it in the error.
func holdOwner(txn *badger.Txn, key []byte, what string) error {
	if err := mustExist(txn, key); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return touch(txn, key)
}

// ListMembers returns one page of the org's members from the member
// index: a seek, then one index entry, membership and user per member.
// A search reads index entries only until the page is full.
func (s *Store) ListMembers(ctx context.Context, q store.MemberQuery) ([]store.Member, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultMemberLimit
	}
	needle := []byte(strings.ToLower(q.Search))
	pfx := memberPrefix(q.OrgID)
	start := pfx
	if q.AfterEmail != "" || q.AfterID != "" {
		// The cursor's own key plus 0x00 is the first key after it.
		start = append(memberKey(q.OrgID, strings.ToLower(q.AfterEmail), q.AfterID), 0)
	}
	out := []store.Member{}
	err := s.view(ctx, func(txn *badger.Txn) error {
		if gone, err := orgDeleting(txn, q.OrgID); err != nil || gone {
			return err
		}
		o := badger.DefaultIteratorOptions
		o.Prefix = pfx
		// Values are small and stored in the LSM tree: reading them in
		// place costs less than prefetching copies.
		o.PrefetchValues = false
		it := txn.NewIterator(o)
		defer it.Close()
		n := 0
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			if n++; n%ctxCheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			item := it.Item()
			rawUID, ok := memberKeyUser(item.Key(), len(pfx))
			if !ok {
				return fmt.Errorf("malformed member index key %q", item.Key())
			}
			if len(needle) > 0 {
				match := false
				if err := item.Value(func(v []byte) error {
					email, name, ok := decodeMemberValue(v)
					if !ok {
						return fmt.Errorf("malformed member index value at %q", item.Key())
					}
					match = bytes.Contains(email, needle) || bytes.Contains(name, needle)
					return nil
				}); err != nil {
					return err
				}
				if !match {
					continue
				}
			}
			uid := string(rawUID)
			m, err := getJSON[store.Membership](txn, memKey(uid, q.OrgID))
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("member index %q points at a missing membership", item.Key())
			}
			if err != nil {
				return err
			}
			u, err := getUser(txn, uid)
			if err != nil {
				return err
			}
			mem := store.Member{User: store.User{ID: uid}, Membership: m}
			if u != nil {
				mem.User = *u
			}
			out = append(out, mem)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: list members %s: %w", q.OrgID, err)
	}
	return out, nil
}

// --- Format migrations ---

// migrateBatch bounds one migration transaction (a variable for tests).
var migrateBatch = 1000

// buildMemberIndex (format 1 to 2) rebuilds the member index from the
// memberships, in batches. It first drops whatever index there is, so
// that a run cut short and followed by writes of an older binary (which
// left format 1 in place and does not keep the index) is repaired by the
// next.
func buildMemberIndex(db *badger.DB, log *slog.Logger) (int, error) {
	if err := db.DropPrefix([]byte("mem/oe/")); err != nil {
		return 0, fmt.Errorf("drop member index: %w", err)
	}
	total := 0
	next := []byte("mem/u/")
	for {
		n := 0
		var last []byte
		err := db.Update(func(txn *badger.Txn) error {
			n, last = 0, nil
			o := badger.DefaultIteratorOptions
			o.Prefix = []byte("mem/u/")
			it := txn.NewIterator(o)
			defer it.Close()
			for it.Seek(next); it.Valid() && n < migrateBatch; it.Next() {
				m, err := decodeJSON[store.Membership](it.Item())
				if err != nil {
					return err
				}
				u, err := getUser(txn, m.UserID)
				if err != nil {
					return err
				}
				if err := setMemberEntry(txn, m.OrgID, m.UserID, u); err != nil {
					return err
				}
				last = it.Item().KeyCopy(nil)
				n++
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("build member index: %w", err)
		}
		total += n
		if n < migrateBatch {
			return total, nil
		}
		next = append(last, 0)
		if total%(100*migrateBatch) == 0 {
			log.Info("badgerstore: building the member index", "memberships", total)
		}
	}
}

// migrate brings a database in format from up to formatVersion.
func migrate(db *badger.DB, log *slog.Logger, from string) error {
	start := time.Now()
	log.Info("badgerstore: upgrading the on-disk format", "from", from, "to", formatVersion)
	n, err := buildMemberIndex(db, log)
	if err != nil {
		return fmt.Errorf("upgrade from format %s: %w", from, err)
	}
	// Stamped last: a run cut short runs again from the start.
	if err := db.Update(func(txn *badger.Txn) error {
		return txn.Set(formatKey, []byte(formatVersion))
	}); err != nil {
		return fmt.Errorf("upgrade from format %s: %w", from, err)
	}
	log.Info("badgerstore: upgraded the on-disk format", "from", from, "to", formatVersion,
		"memberships", n, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
