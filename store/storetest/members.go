package storetest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gatehouse/gatehouse/store"
)

// memberOrder is ListMembers' order: lowercased email, then user ID.
func memberOrder(a, b store.Member) int {
	return cmp.Or(
		strings.Compare(strings.ToLower(a.User.Email), strings.ToLower(b.User.Email)),
		strings.Compare(a.User.ID, b.User.ID))
}

// matches is ListMembers' search: a case-insensitive substring of the
// email or the name.
func matches(m store.Member, search string) bool {
	q := strings.ToLower(search)
	return strings.Contains(strings.ToLower(m.User.Email), q) || strings.Contains(strings.ToLower(m.User.Name), q)
}

// wantMembers is what ListMembers must page through: members that match
// search, in order.
func wantMembers(members []store.Member, search string) []store.Member {
	var out []store.Member
	for _, m := range members {
		if matches(m, search) {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, memberOrder)
	return out
}

// pageMembers reads every page of q (its cursor fields are ignored)
// and checks that each page but the last is full.
func pageMembers(t *testing.T, s store.Store, q store.MemberQuery) []store.Member {
	t.Helper()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	q.AfterEmail, q.AfterID = "", ""
	var all []store.Member
	for range 10_000 {
		page, err := s.ListMembers(t.Context(), q)
		mustOK(t, err)
		if len(page) > limit {
			t.Fatalf("ListMembers(%+v) returned %d members, limit %d", q, len(page), limit)
		}
		all = append(all, page...)
		if len(page) < limit {
			return all
		}
		last := page[len(page)-1]
		q.AfterEmail, q.AfterID = strings.ToLower(last.User.Email), last.User.ID
	}
	t.Fatalf("ListMembers(%+v) does not end", q)
	return nil
}

// trickyEmails returns n emails, unique ignoring case, that sort in
// awkward ways: prefixes of each other, digits, '+', '.', '-', '/', '%',
// mixed case and non-ASCII.
func trickyEmails(n int) []string {
	locals := []string{"a", "a.b", "a+b", "a-b", "a_b", "a0", "a9", "ab", "a/b", "a%b", "Ab.C", "zoë", "Z"}
	suffixes := []string{"", "1", "10", "+x", ".", "2"}
	domains := []string{"ex.co", "ex.co.uk", "EX.COM", "ex.co-op", "ex.co.a"}
	seen := map[string]bool{}
	var out []string
	total := len(locals) * len(suffixes) * len(domains)
	for i := 0; len(out) < n && i < total; i++ {
		// Walk the combinations in an order unrelated to how they sort
		// (7919 is prime, so this visits each once).
		j := (i * 7919) % total
		l, rest := locals[j%len(locals)], j/len(locals)
		e := l + suffixes[rest%len(suffixes)] + "@" + domains[rest/len(suffixes)]
		if i%3 == 0 {
			e = strings.ToUpper(e[:1]) + e[1:]
		}
		if !seen[strings.ToLower(e)] {
			seen[strings.ToLower(e)] = true
			out = append(out, e)
		}
	}
	return out
}

// parallel runs fn(i) for i in [0, n) on a few goroutines.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// addMembers creates a user and its membership in org for each email;
// user IDs do not follow email order.
func addMembers(t *testing.T, s store.Store, org string, emails []string, name func(i int) string) []store.Member {
	t.Helper()
	out := make([]store.Member, len(emails))
	parallel(t, len(emails), func(i int) error {
		u := store.User{ID: fmt.Sprintf("%s-u%03d", org, (i*37)%len(emails)), Email: emails[i], Name: name(i), CreatedAt: base, UpdatedAt: base}
		m := newMembership(u.ID, org)
		m.Attributes = map[string]string{"i": fmt.Sprint(i)}
		out[i] = store.Member{User: u, Membership: m}
		if err := s.CreateUser(t.Context(), u); err != nil {
			return err
		}
		return s.CreateMembership(t.Context(), m)
	})
	return out
}

func testListMembers(t *testing.T, s store.Store) {
	ctx := t.Context()
	const n = 250
	for _, o := range []string{"o1", "o10", "o1/x"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	members := addMembers(t, s, "o1", trickyEmails(n), func(i int) string { return fmt.Sprintf("Person %d", i) })
	// Members of other orgs, including some of o1's people, never show up
	// in o1; o10 and o1/x share a prefix with it.
	for i, m := range members[:20] {
		org := []string{"o10", "o1/x"}[i%2]
		mustOK(t, s.CreateMembership(ctx, newMembership(m.User.ID, org)))
	}
	outsider := store.User{ID: "outsider", Email: "a@ex.co.b", CreatedAt: base, UpdatedAt: base}
	mustOK(t, s.CreateUser(ctx, outsider))
	mustOK(t, s.CreateMembership(ctx, newMembership(outsider.ID, "o10")))

	want := wantMembers(members, "")

	// Pages of 100, 100 and 50, with no gaps or duplicates.
	var got []store.Member
	q := store.MemberQuery{OrgID: "o1", Limit: 100}
	for i, size := range []int{100, 100, 50, 0} {
		page, err := s.ListMembers(ctx, q)
		mustOK(t, err)
		if len(page) != size {
			t.Fatalf("page %d has %d members, want %d", i, len(page), size)
		}
		got = append(got, page...)
		if size > 0 {
			last := page[len(page)-1]
			q.AfterEmail, q.AfterID = strings.ToLower(last.User.Email), last.User.ID
		}
	}
	mustEqual(t, want, got)

	// The default limit is 100; other page sizes page the same way.
	first, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "o1"})
	mustOK(t, err)
	mustEqual(t, want[:100], first)
	for _, limit := range []int{1, 7, 249, 250, 1000} {
		mustEqual(t, want, pageMembers(t, s, store.MemberQuery{OrgID: "o1", Limit: limit}))
	}

	// A cursor in the middle of the order, or past its end.
	mid := want[123]
	page, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", AfterEmail: strings.ToLower(mid.User.Email), AfterID: mid.User.ID, Limit: 5})
	mustOK(t, err)
	mustEqual(t, want[124:129], page)
	page, err = s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", AfterEmail: "\U0010FFFF"})
	mustOK(t, err)
	if len(page) != 0 {
		t.Errorf("page after the last email: %d members", len(page))
	}

	// The other orgs hold exactly their own.
	var o10 []store.Member
	for i, m := range members[:20] {
		if i%2 == 0 {
			o10 = append(o10, store.Member{User: m.User, Membership: newMembership(m.User.ID, "o10")})
		}
	}
	o10 = append(o10, store.Member{User: outsider, Membership: newMembership(outsider.ID, "o10")})
	mustEqual(t, wantMembers(o10, ""), pageMembers(t, s, store.MemberQuery{OrgID: "o10", Limit: 3}))
	if got := pageMembers(t, s, store.MemberQuery{OrgID: "o1/x"}); len(got) != 10 {
		t.Errorf("o1/x has %d members, want 10", len(got))
	}
	for _, org := range []string{"o", "nothing", ""} {
		page, err := s.ListMembers(ctx, store.MemberQuery{OrgID: org})
		mustOK(t, err)
		if len(page) != 0 {
			t.Errorf("ListMembers(%q) = %d members, want none", org, len(page))
		}
	}
}

func testListMembersSearch(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	mustOK(t, s.CreateOrg(ctx, newOrg("o2")))
	names := []string{"Ada Lovelace", "ÖTZI the Iceman", "Grace HOPPER", "", "ada", "Bob Loblaw", "Linus"}
	members := addMembers(t, s, "o1", trickyEmails(120), func(i int) string { return names[i%len(names)] })
	// Only in o2: a match there never shows in o1.
	other := store.User{ID: "o2-only", Email: "ada.lovelace@EX.CO", Name: "Ada Lovelace", CreatedAt: base, UpdatedAt: base}
	mustOK(t, s.CreateUser(ctx, other))
	mustOK(t, s.CreateMembership(ctx, newMembership(other.ID, "o2")))

	for _, search := range []string{
		"ada",         // name, any case
		"LOVELACE",    // name, upper
		"ötzi",        // non-ASCII, case folded
		"ex.co.uk",    // email domain
		"EX.COM",      // email, upper
		"a+b",         // email, '+'
		"a%b",         // '%' is no wildcard
		"a_b",         // nor is '_'
		"1@",          // across the '@'
		"e",           // most
		"@",           // every email
		"zzz-nothing", // none
	} {
		want := wantMembers(members, search)
		for _, limit := range []int{0, 4} {
			got := pageMembers(t, s, store.MemberQuery{OrgID: "o1", Search: search, Limit: limit})
			if !equal(want, got) {
				t.Fatalf("search %q (limit %d): got %d members, want %d:\n got %v\nwant %v", search, limit, len(got), len(want), emails(got), emails(want))
			}
		}
	}
	if got := pageMembers(t, s, store.MemberQuery{OrgID: "o1", Search: "@"}); len(got) != len(members) {
		t.Errorf("search @: %d members, want all %d", len(got), len(members))
	}
	if got := pageMembers(t, s, store.MemberQuery{OrgID: "o1", Search: "zzz"}); len(got) != 0 {
		t.Errorf("search zzz: %v", emails(got))
	}

	// A cursor from one search, used with it, goes on from there: the
	// cursor need not be a match of the search itself either.
	want := wantMembers(members, "ada")
	if len(want) < 6 {
		t.Fatalf("fixture: %d matches for ada", len(want))
	}
	c := want[2]
	page, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", Search: "ADA", AfterEmail: strings.ToLower(c.User.Email), AfterID: c.User.ID, Limit: 3})
	mustOK(t, err)
	mustEqual(t, want[3:6], page)
	all := wantMembers(members, "")
	i := slices.IndexFunc(all, func(m store.Member) bool {
		return !matches(m, "ada") && memberOrder(m, want[3]) < 0 && memberOrder(m, want[2]) > 0
	})
	if i >= 0 {
		page, err = s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", Search: "ada", AfterEmail: strings.ToLower(all[i].User.Email), AfterID: all[i].User.ID, Limit: 3})
		mustOK(t, err)
		mustEqual(t, want[3:6], page)
	}
}

func emails(ms []store.Member) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.User.Email)
	}
	return out
}

// testListMembersFollowsWrites: every write that changes a member's user
// or membership shows in ListMembers, in order and in searches.
func testListMembersFollowsWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o2"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	users := map[string]store.User{}
	for _, id := range []string{"u1", "u2", "u3", "u4", "u5"} {
		u := newUser(id)
		u.Name = "Name " + strings.ToUpper(id)
		users[id] = u
		mustOK(t, s.CreateUser(ctx, u))
		mustOK(t, s.CreateMembership(ctx, newMembership(id, "o1")))
	}
	mustOK(t, s.CreateMembership(ctx, newMembership("u1", "o2")))
	mustOK(t, s.CreateMembership(ctx, newMembership("u3", "o2")))
	ids := func(org, search string) []string {
		t.Helper()
		var out []string
		for _, m := range pageMembers(t, s, store.MemberQuery{OrgID: org, Search: search, Limit: 2}) {
			out = append(out, m.User.ID)
			if m.User.ID != m.Membership.UserID || m.Membership.OrgID != org {
				t.Errorf("ListMembers(%s) paired user %s with membership %s/%s", org, m.User.ID, m.Membership.UserID, m.Membership.OrgID)
			}
		}
		return out
	}
	mustEqual(t, []string{"u1", "u2", "u3", "u4", "u5"}, ids("o1", ""))

	// A new email moves the member, in every org, and search follows.
	_, err := s.UpdateUser(ctx, "u1", func(u store.User) (store.User, error) {
		u.Email = "Zed@Example.com"
		return u, nil
	})
	mustOK(t, err)
	mustEqual(t, []string{"u2", "u3", "u4", "u5", "u1"}, ids("o1", ""))
	mustEqual(t, []string{"u3", "u1"}, ids("o2", ""))
	mustEqual(t, []string{"u1"}, ids("o1", "zed@"))
	mustEqual(t, []string{"u1"}, ids("o2", "ZED"))
	if got := ids("o1", "u1@example"); len(got) != 0 {
		t.Errorf("old email still found: %v", got)
	}

	// So does a new name.
	_, err = s.UpdateUser(ctx, "u2", func(u store.User) (store.User, error) {
		u.Name = "Marie Curie"
		return u, nil
	})
	mustOK(t, err)
	mustEqual(t, []string{"u2"}, ids("o1", "curie"))
	if got := ids("o1", "name u2"); len(got) != 0 {
		t.Errorf("old name still found: %v", got)
	}

	// A change of case only, or of nothing searched, keeps the order and
	// shows the user as it now is.
	_, err = s.UpdateUser(ctx, "u4", func(u store.User) (store.User, error) {
		u.Email, u.Disabled = "U4@EXAMPLE.COM", true
		return u, nil
	})
	mustOK(t, err)
	page, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", Search: "u4@"})
	mustOK(t, err)
	if len(page) != 1 || page[0].User.Email != "U4@EXAMPLE.COM" || !page[0].User.Disabled {
		t.Errorf("after updating u4: %+v", page)
	}
	mustEqual(t, []string{"u2", "u3", "u4", "u5", "u1"}, ids("o1", ""))

	// A failed email change (taken) leaves the index alone.
	_, err = s.UpdateUser(ctx, "u5", func(u store.User) (store.User, error) {
		u.Email = "zed@example.com"
		return u, nil
	})
	mustIs(t, err, store.ErrAlreadyExists)
	mustEqual(t, []string{"u5"}, ids("o1", "u5@"))

	// Membership updates show.
	_, err = s.UpdateMembership(ctx, "u3", "o1", func(m store.Membership) (store.Membership, error) {
		m.Roles = []string{"admin"}
		return m, nil
	})
	mustOK(t, err)
	page, err = s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", Search: "u3@"})
	mustOK(t, err)
	if len(page) != 1 || !slices.Equal(page[0].Membership.Roles, []string{"admin"}) {
		t.Errorf("after updating u3's membership: %+v", page)
	}

	// Deletes.
	mustOK(t, s.DeleteMembership(ctx, "u2", "o1"))
	mustEqual(t, []string{"u3", "u4", "u5", "u1"}, ids("o1", ""))
	if got := ids("o1", "curie"); len(got) != 0 {
		t.Errorf("deleted membership still found: %v", got)
	}
	mustOK(t, s.DeleteUser(ctx, "u3"))
	mustEqual(t, []string{"u4", "u5", "u1"}, ids("o1", ""))
	mustEqual(t, []string{"u1"}, ids("o2", ""))
	mustOK(t, s.DeleteOrg(ctx, "o2"))
	if got := ids("o2", ""); len(got) != 0 {
		t.Errorf("deleted org still has members %v", got)
	}
	mustEqual(t, []string{"u4", "u5", "u1"}, ids("o1", ""))

	// A membership made before its user is listed under the user's email
	// once the user exists.
	mustOK(t, s.CreateMembership(ctx, newMembership("late", "o1")))
	late := store.User{ID: "late", Email: "Aardvark@example.com", Name: "Late Comer", CreatedAt: base, UpdatedAt: base}
	mustOK(t, s.CreateUser(ctx, late))
	mustEqual(t, []string{"late", "u4", "u5", "u1"}, ids("o1", ""))
	mustEqual(t, []string{"late"}, ids("o1", "comer"))
	page, err = s.ListMembers(ctx, store.MemberQuery{OrgID: "o1", Limit: 1})
	mustOK(t, err)
	mustEqual(t, []store.Member{{User: late, Membership: newMembership("late", "o1")}}, page)
}

// testListMembersConcurrentWrites: memberships made while their user's
// email changes are all found under the final email.
func testListMembersConcurrentWrites(t *testing.T, s store.Store) {
	ctx := t.Context()
	const orgs, renames = 12, 12
	mustOK(t, s.CreateUser(ctx, newUser("u")))
	for o := range orgs {
		mustOK(t, s.CreateOrg(ctx, newOrg(fmt.Sprintf("org%d", o))))
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range renames {
			_, err := s.UpdateUser(ctx, "u", func(u store.User) (store.User, error) {
				u.Email = fmt.Sprintf("u-%d@example.com", i)
				u.Name = fmt.Sprintf("Name %d", i)
				return u, nil
			})
			if err != nil {
				t.Error(err)
			}
		}
	})
	for o := range orgs {
		wg.Go(func() {
			if err := s.CreateMembership(ctx, newMembership("u", fmt.Sprintf("org%d", o))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	final := fmt.Sprintf("u-%d@example.com", renames-1)
	for o := range orgs {
		org := fmt.Sprintf("org%d", o)
		for _, search := range []string{"", final, fmt.Sprintf("name %d", renames-1)} {
			page, err := s.ListMembers(ctx, store.MemberQuery{OrgID: org, Search: search})
			mustOK(t, err)
			if len(page) != 1 || page[0].User.Email != final {
				t.Errorf("ListMembers(%s, %q) = %+v, want u with %s", org, search, page, final)
			}
		}
		page, err := s.ListMembers(ctx, store.MemberQuery{OrgID: org, Search: "u-0@"})
		mustOK(t, err)
		if len(page) != 0 {
			t.Errorf("%s: found under the first email", org)
		}
	}
}

// testRecordFlags: the admin flags round-trip through every read.
func testRecordFlags(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	u := newUser("u1")
	u.PlatformAdmin = true
	mustOK(t, s.CreateUser(ctx, u))
	m := newMembership("u1", "o1")
	m.Disabled, m.Declared = true, true
	mustOK(t, s.CreateMembership(ctx, m))

	gu, err := s.GetUser(ctx, "u1")
	mustOK(t, err)
	mustEqual(t, u, gu)
	gu, err = s.GetUserByEmail(ctx, u.Email)
	mustOK(t, err)
	mustEqual(t, u, gu)
	gm, err := s.GetMembership(ctx, "u1", "o1")
	mustOK(t, err)
	mustEqual(t, m, gm)
	ms, err := s.ListMembershipsByOrg(ctx, "o1")
	mustOK(t, err)
	mustEqual(t, []store.Membership{m}, ms)
	members, err := s.ListMembers(ctx, store.MemberQuery{OrgID: "o1"})
	mustOK(t, err)
	mustEqual(t, []store.Member{{User: u, Membership: m}}, members)

	// And clear again.
	u.PlatformAdmin = false
	_, err = s.UpdateUser(ctx, "u1", func(x store.User) (store.User, error) { x.PlatformAdmin = false; return x, nil })
	mustOK(t, err)
	m.Disabled = false
	_, err = s.UpdateMembership(ctx, "u1", "o1", func(x store.Membership) (store.Membership, error) { x.Disabled = false; return x, nil })
	mustOK(t, err)
	members, err = s.ListMembers(ctx, store.MemberQuery{OrgID: "o1"})
	mustOK(t, err)
	mustEqual(t, []store.Member{{User: u, Membership: m}}, members)
}
