package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// checkConsistency checks, after a conformance test, that every column
// a record is found by still says what its json document says (computed
// as the writes compute it), that each membership carries its person's
// current email and name, and that every audit chain verifies: whatever
// path a write took, no index drifted from its record.
func checkConsistency(t *testing.T, s *Store) {
	t.Helper()
	for _, p := range consistencyProblems(s) {
		t.Error(p)
	}
}

func consistencyProblems(s *Store) []string {
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	ctx := context.Background()
	rows := func(query string, scan func(pgx.Rows) error) {
		rs, err := s.pool.Query(ctx, query)
		if err != nil {
			fail("consistency: %s: %v", query, err)
			return
		}
		defer rs.Close()
		for rs.Next() {
			if err := scan(rs); err != nil {
				fail("consistency: %v", err)
			}
		}
		if err := rs.Err(); err != nil {
			fail("consistency: %s: %v", query, err)
		}
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	at := func(p *time.Time) time.Time {
		if p == nil {
			return time.Time{}
		}
		return p.UTC()
	}
	same := func(table, id string, pairs ...any) error {
		for i := 0; i+2 < len(pairs)+1; i += 3 {
			if fmt.Sprint(pairs[i+1]) != fmt.Sprint(pairs[i+2]) {
				return fmt.Errorf("%s %s: column %s is %v, the record says %v", table, id, pairs[i], pairs[i+1], pairs[i+2])
			}
		}
		return nil
	}
	decode := func(doc []byte, v any) error { return json.Unmarshal(doc, v) }

	rows("SELECT id, slug, parent_id, doc FROM orgs", func(r pgx.Rows) error {
		var id, slug string
		var parent *string
		var doc []byte
		var o store.Org
		if err := r.Scan(&id, &slug, &parent, &doc); err != nil {
			return err
		}
		if err := decode(doc, &o); err != nil {
			return err
		}
		return same("org", id, "id", id, o.ID, "slug", slug, o.Slug, "parent_id", str(parent), o.ParentID)
	})
	users := map[string][2]string{}
	rows("SELECT id, email_lower, name_lower, doc FROM users", func(r pgx.Rows) error {
		var id, email, name string
		var doc []byte
		var u store.User
		if err := r.Scan(&id, &email, &name, &doc); err != nil {
			return err
		}
		if err := decode(doc, &u); err != nil {
			return err
		}
		we, wn := userCols(u)
		users[id] = [2]string{we, wn}
		return same("user", id, "id", id, u.ID, "email_lower", email, we, "name_lower", name, wn)
	})
	rows("SELECT user_id, org_id, member_email, member_name, doc FROM memberships", func(r pgx.Rows) error {
		var uid, oid, email, name string
		var doc []byte
		var m store.Membership
		if err := r.Scan(&uid, &oid, &email, &name, &doc); err != nil {
			return err
		}
		if err := decode(doc, &m); err != nil {
			return err
		}
		u := users[uid] // "" for a person not (yet) made
		return same("membership", uid+"/"+oid, "user_id", uid, m.UserID, "org_id", oid, m.OrgID, "member_email", email, u[0], "member_name", name, u[1])
	})
	rows("SELECT id, user_id, org_id, expires_at, revoked_at, doc FROM sessions", func(r pgx.Rows) error {
		var id, uid, oid string
		var exp time.Time
		var rev *time.Time
		var doc []byte
		var ss store.Session
		if err := r.Scan(&id, &uid, &oid, &exp, &rev, &doc); err != nil {
			return err
		}
		if err := decode(doc, &ss); err != nil {
			return err
		}
		wexp, wrev := sessionCols(ss)
		wr := time.Time{}
		if t, ok := wrev.(time.Time); ok {
			wr = t
		}
		return same("session", id, "id", id, ss.ID, "user_id", uid, ss.UserID, "org_id", oid, ss.OrgID,
			"expires_at", exp.UTC(), wexp, "revoked_at", at(rev), wr)
	})
	rows("SELECT id, org_id, created_by, created_at, doc FROM api_tokens", func(r pgx.Rows) error {
		var id string
		var oid, by *string
		var created time.Time
		var doc []byte
		var tk store.APIToken
		if err := r.Scan(&id, &oid, &by, &created, &doc); err != nil {
			return err
		}
		if err := decode(doc, &tk); err != nil {
			return err
		}
		return same("api token", id, "id", id, tk.ID, "org_id", str(oid), tk.OrgID, "created_by", str(by), tk.CreatedBy, "created_at", created.UTC(), ts(tk.CreatedAt))
	})
	rows("SELECT id, org_id, email, hash, created_by, created_at, expires_at, doc FROM invitations", func(r pgx.Rows) error {
		var id, oid, email, hash string
		var by *string
		var created, exp time.Time
		var doc []byte
		var inv store.Invitation
		if err := r.Scan(&id, &oid, &email, &hash, &by, &created, &exp, &doc); err != nil {
			return err
		}
		if err := decode(doc, &inv); err != nil {
			return err
		}
		return same("invitation", id, "id", id, inv.ID, "org_id", oid, inv.OrgID, "email", email, inv.Email, "hash", hash, inv.Hash,
			"created_by", str(by), inv.CreatedBy, "created_at", created.UTC(), ts(inv.CreatedAt), "expires_at", exp.UTC(), ts(inv.ExpiresAt))
	})
	rows("SELECT id, org_id, doc FROM oidc_clients", func(r pgx.Rows) error {
		var id string
		var oid *string
		var doc []byte
		var c store.OIDCClient
		if err := r.Scan(&id, &oid, &doc); err != nil {
			return err
		}
		if err := decode(doc, &c); err != nil {
			return err
		}
		return same("oidc client", id, "id", id, c.ID, "org_id", str(oid), c.OrgID)
	})
	rows("SELECT id, user_id, org_id, session_id, expires_at, doc FROM refresh_families", func(r pgx.Rows) error {
		var id, uid, oid string
		var sid *string
		var exp time.Time
		var doc []byte
		var f store.RefreshFamily
		if err := r.Scan(&id, &uid, &oid, &sid, &exp, &doc); err != nil {
			return err
		}
		if err := decode(doc, &f); err != nil {
			return err
		}
		return same("refresh family", id, "id", id, f.ID, "user_id", uid, f.UserID, "org_id", oid, f.OrgID, "session_id", str(sid), f.SessionID,
			"expires_at", exp.UTC(), ts(f.ExpiresAt))
	})
	rows("SELECT org_id, seq, id, time, actor, action, target, doc FROM audit_events", func(r pgx.Rows) error {
		var oid, id, actor, action, target string
		var seq int64
		var tm time.Time
		var doc []byte
		var ev store.AuditEvent
		if err := r.Scan(&oid, &seq, &id, &tm, &actor, &action, &target, &doc); err != nil {
			return err
		}
		if err := decode(doc, &ev); err != nil {
			return err
		}
		return same("audit event", oid+"/"+fmt.Sprint(seq), "org_id", oid, ev.OrgID, "seq", seq, int64(ev.Seq), "id", id, ev.ID,
			"time", tm.UTC(), ts(ev.Time), "actor", actor, textCol(ev.Actor), "action", action, textCol(ev.Action), "target", target, textCol(ev.Target))
	})
	heads, err := s.AuditHeads(ctx)
	if err != nil {
		fail("consistency: audit heads: %v", err)
	}
	for _, h := range heads {
		if _, err := store.VerifyAudit(ctx, s, h); err != nil {
			fail("consistency: audit chain of %q: %v", h.OrgID, err)
		}
	}
	return problems
}

// The check finds a column that drifted from its record, a membership
// with a stale email, and an edited audit event.
func TestConsistencyCheckFindsDrift(t *testing.T) {
	ctx := context.Background()
	st, err := Open(ctx, pgtest.NewDatabase(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateOrg(ctx, store.Org{ID: "o1", Slug: "acme"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(ctx, store.User{ID: "u1", Email: "Ann@acme.example", Name: "Ann"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateMembership(ctx, store.Membership{UserID: "u1", OrgID: "o1"}); err != nil {
		t.Fatal(err)
	}
	if err := st.AppendAudit(ctx, store.AuditEvent{OrgID: "o1", Actor: "a", Action: "x", Outcome: "success"}); err != nil {
		t.Fatal(err)
	}
	if p := consistencyProblems(st); len(p) > 0 {
		t.Fatalf("a consistent store: %v", p)
	}
	for _, q := range []string{
		"UPDATE orgs SET slug = 'other' WHERE id = 'o1'",
		"UPDATE memberships SET member_email = 'old@acme.example'",
		`UPDATE audit_events SET doc = replace(doc::text, '"success"', '"failure"')::json`,
	} {
		if _, err := st.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(consistencyProblems(st), "\n")
	for _, want := range []string{"org o1: column slug is other", "member_email is old@acme.example", "audit chain of \"o1\""} {
		if !strings.Contains(got, want) {
			t.Errorf("the check missed %q:\n%s", want, got)
		}
	}
}
