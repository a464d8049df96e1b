package badgerstore

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
)

// TestUpgradeFromFormat1: a database written before the member index
// existed gets it at Open, and ListMembers finds every member.
func TestUpgradeFromFormat1(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openTest(t, dir)
	const n = 40
	for _, org := range []string{"o1", "o2"} {
		if err := s.CreateOrg(ctx, store.Org{ID: org, Slug: org}); err != nil {
			t.Fatal(err)
		}
	}
	var want []string
	for i := range n {
		u := store.User{ID: fmt.Sprintf("u%02d", i), Email: fmt.Sprintf("Member%02d@Example.com", n-i), Name: fmt.Sprintf("Name %d", i)}
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		for _, org := range []string{"o1", "o2"} {
			if org == "o2" && i%2 == 0 {
				continue
			}
			if err := s.CreateMembership(ctx, store.Membership{UserID: u.ID, OrgID: org}); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, u.ID)
	}
	slices.Reverse(want) // emails run the other way
	// A membership whose user does not exist is indexed too.
	if err := s.CreateMembership(ctx, store.Membership{UserID: "nobody", OrgID: "o1"}); err != nil {
		t.Fatal(err)
	}
	want = append([]string{"nobody"}, want...)

	// Make it what format 1 wrote: no member index. An entry left over
	// from an upgrade cut short, then an older binary deleting that
	// membership, must go as well.
	if err := s.db.DropPrefix([]byte("mem/oe/")); err != nil {
		t.Fatal(err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		k, v := memberEntry("o1", "ghost", &store.User{ID: "ghost", Email: "ghost@example.com"})
		if err := txn.Set(k, v); err != nil {
			return err
		}
		return txn.Set(formatKey, []byte("1"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	defer func(b int) { migrateBatch = b }(migrateBatch)
	migrateBatch = 7 // several batches, the last one short
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Open(dir, WithLogger(logger))
	if err != nil {
		t.Fatalf("Open of a format 1 database: %v", err)
	}
	if !strings.Contains(logs.String(), "upgraded the on-disk format") || !strings.Contains(logs.String(), "memberships=61") {
		t.Errorf("upgrade not logged as expected:\n%s", logs.String())
	}
	checkConsistency(t, s)
	var got []string
	q := store.MemberQuery{OrgID: "o1", Limit: 6}
	for {
		page, err := s.ListMembers(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page {
			got = append(got, m.User.ID)
		}
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.AfterEmail, q.AfterID = strings.ToLower(last.User.Email), last.User.ID
	}
	if !slices.Equal(got, want) {
		t.Errorf("o1 after the upgrade: %v, want %v", got, want)
	}
	page, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "o2", Search: "name 3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 6 { // 3 and 31..39, odd only
		t.Errorf("o2, search name 3: %d members, want 6", len(page))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Upgraded once: the next Open has nothing to do.
	logs.Reset()
	s, err = Open(dir, WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if logs.Len() != 0 {
		t.Errorf("second Open logged:\n%s", logs.String())
	}
	var format []byte
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if err != nil {
			return err
		}
		format, err = item.ValueCopy(nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if string(format) != formatVersion {
		t.Errorf("format %q after the upgrade, want %q", format, formatVersion)
	}
}

func TestMemberKeyOrder(t *testing.T) {
	// Byte order of the keys is the order of (email, uid), whatever bytes
	// either holds.
	pairs := [][2]string{
		{"", "a"}, {"", "b"},
		{"a", "\x00"}, {"a", "z"},
		{"a\x00", "a"}, {"a\x00\x00", ""}, {"a\x00\x01", "a"}, {"a\x01", "a"}, {"a\x02", "a"},
		{"a+b", "a"}, {"a-b", "a"}, {"a.b", "a"}, {"a/b", "a"}, {"a0", "a"},
		{"a@x.co", "a"}, {"a@x.co.uk", "a"}, {"a@x.com", "a"}, {"ab", "a"}, {"ab", "b"}, {"ö", "a"},
	}
	for i := 1; i < len(pairs); i++ {
		a, b := pairs[i-1], pairs[i]
		ka, kb := memberKey("o", a[0], a[1]), memberKey("o", b[0], b[1])
		if bytes.Compare(ka, kb) >= 0 {
			t.Errorf("key of %q does not sort before %q", a, b)
		}
		if uid, ok := memberKeyUser(kb, len(memberPrefix("o"))); b[1] != "" && (!ok || string(uid) != b[1]) {
			t.Errorf("memberKeyUser(%q) = %q, %v; want %q", kb, uid, ok, b[1])
		}
	}
	if _, _, ok := decodeMemberValue([]byte{0xff}); ok {
		t.Error("decodeMemberValue accepted a truncated value")
	}
	if _, _, ok := decodeMemberValue([]byte{5, 'a'}); ok {
		t.Error("decodeMemberValue accepted a length past the end")
	}
}
