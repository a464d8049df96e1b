package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/storetest"
)

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openTest(t testing.TB, dir string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(dir, append([]Option{WithLogger(quietLogger())}, opts...)...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func closeTolerant(t testing.TB, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
		t.Errorf("Close: %v", err)
	}
}

// smallDeleteBatches makes an org's deletion take many transactions, so
// that the conformance suite's orgs of a few thousand members exercise
// the batches (and their last, full or empty, one).
func smallDeleteBatches(t *testing.T, n int) {
	old := deleteBatch
	deleteBatch = n
	t.Cleanup(func() { deleteBatch = old })
}

func TestConformance(t *testing.T) {
	smallDeleteBatches(t, 50)
	storetest.RunTests(t, func(t *testing.T) store.Store {
		dir := t.TempDir()
		s := openTest(t, dir)
		t.Cleanup(func() {
			closeTolerant(t, s)
			// Whatever the subtest left behind must survive a reopen with
			// every index consistent.
			r := openTest(t, dir)
			defer r.Close()
			checkConsistency(t, r)
		})
		return s
	})
}

func TestConformanceInMemory(t *testing.T) {
	smallDeleteBatches(t, 7)
	storetest.RunTests(t, func(t *testing.T) store.Store {
		s := openTest(t, "", WithInMemory())
		t.Cleanup(func() {
			s.mu.RLock()
			closed := s.closed
			s.mu.RUnlock()
			if !closed {
				checkConsistency(t, s)
			}
			closeTolerant(t, s)
		})
		return s
	})
}

// checkConsistency verifies that every record decodes and sits under its
// own key, and that the secondary indexes are exactly those its records
// imply: no missing, dangling or stale entries.
func checkConsistency(t testing.TB, s *Store) {
	t.Helper()
	all := map[string][]byte{}
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			all[string(it.Item().KeyCopy(nil))] = v
		}
		return nil
	})
	if err != nil {
		t.Fatalf("scan: %v", err)
	}

	want := map[string]string{} // index key -> primary key (or entry)
	decode := func(k string, v []byte, into any) bool {
		if err := json.Unmarshal(v, into); err != nil {
			t.Errorf("record %q does not decode: %v", k, err)
			return false
		}
		return true
	}
	atKey := func(k string, wantKey []byte) {
		if k != string(wantKey) {
			t.Errorf("record at %q belongs at %q", k, wantKey)
		}
	}
	indexPrefixes := []string{"orgslug/", "useremail/", "mem/o/", "mem/oe/", "sessuser/", "sessexp/", "audit/org/", "audit/chain/", "tokorg/", "tokuser/", "invorg/", "invhash/", "invoe/", "invuser/", "rtfsess/", "rtfuser/", "rtforg/", "rtfexp/", "apporg/"}
	heads := map[string]uint64{} // org → the highest sequence number stored
	for k, v := range all {
		switch {
		case strings.HasPrefix(k, "org/"):
			var o store.Org
			if decode(k, v, &o) {
				atKey(k, orgKey(o.ID))
				want[string(orgSlugKey(o.Slug))] = k
			}
		case strings.HasPrefix(k, "user/"):
			var u store.User
			if decode(k, v, &u) {
				atKey(k, userKey(u.ID))
				want[string(userEmailKey(u.Email))] = k
			}
		case strings.HasPrefix(k, "mem/u/"):
			var m store.Membership
			if decode(k, v, &m) {
				atKey(k, memKey(m.UserID, m.OrgID))
				want[string(memOrgKey(m.OrgID, m.UserID))] = k
				// The member index entry carries the user's email and name
				// as they are now.
				var u *store.User
				if v, ok := all[string(userKey(m.UserID))]; ok {
					u = new(store.User)
					if !decode(string(userKey(m.UserID)), v, u) {
						u = nil
					}
				}
				ik, iv := memberEntry(m.OrgID, m.UserID, u)
				want[string(ik)] = string(iv)
			}
		case strings.HasPrefix(k, "sess/"):
			var se store.Session
			if decode(k, v, &se) {
				atKey(k, sessKey(se.ID))
				want[string(sessUserKey(se.UserID, se.ID))] = k
				want[string(sessExpKey(se.ExpiresAt, se.ID))] = k
			}
		case strings.HasPrefix(k, "tok/"):
			var at store.APIToken
			if decode(k, v, &at) {
				atKey(k, tokKey(at.ID))
				want[string(tokOrgKey(at.OrgID, at.CreatedAt, at.ID))] = k
				if at.CreatedBy != "" {
					want[string(tokUserKey(at.CreatedBy, at.ID))] = k
				}
			}
		case strings.HasPrefix(k, "rtf/"):
			var f store.RefreshFamily
			if decode(k, v, &f) {
				atKey(k, rtfKey(f.ID))
				for _, ik := range rtfIndexes(f) {
					want[string(ik)] = k
				}
			}
		case strings.HasPrefix(k, "app/"):
			var c store.OIDCClient
			if decode(k, v, &c) {
				atKey(k, appKey(c.ID))
				if c.OrgID != "" {
					want[string(appOrgKey(c.OrgID, c.ID))] = k
				}
			}
		case strings.HasPrefix(k, "inv/"):
			var inv store.Invitation
			if decode(k, v, &inv) {
				atKey(k, invKey(inv.ID))
				for _, ik := range invIndexes(inv) {
					want[string(ik)] = k
				}
			}
		case strings.HasPrefix(k, "key/"):
			var sk store.SigningKey
			if decode(k, v, &sk) {
				atKey(k, signingKey(sk.ID))
			}
		case strings.HasPrefix(k, "audit/all/"):
			var e store.AuditEvent
			if decode(k, v, &e) {
				atKey(k, auditKey(e.Time, e.ID))
				if e.OrgID != "" {
					want[string(auditOrgKey(e.OrgID, e.Time, e.ID))] = k
				}
				if e.Seq > 0 {
					want[string(auditChainKey(e.OrgID, e.Seq))] = k
					heads[e.OrgID] = max(heads[e.OrgID], e.Seq)
				}
			}
		case strings.HasPrefix(k, "audit/head/"):
			var h store.AuditChainHead
			if decode(k, v, &h) {
				atKey(k, auditHeadKey(h.OrgID))
				defer func() {
					if heads[h.OrgID] != h.Seq {
						t.Errorf("audit chain head of %q at %d, its last event at %d", h.OrgID, h.Seq, heads[h.OrgID])
					}
				}()
			}
		case strings.HasPrefix(k, "orgdel/"):
			// A deletion that returned left no mark; one cut short is
			// finished by Open.
			t.Errorf("unfinished org deletion %q", k)
		case strings.HasPrefix(k, "once/"), strings.HasPrefix(k, "secret/"), strings.HasPrefix(k, "lock/"), k == "meta/format":
		case strings.HasPrefix(k, "blob/"):
			if _, err := decodeBlob(v); err != nil {
				t.Errorf("%s: %v", k, err)
			}
		default:
			isIndex := false
			for _, p := range indexPrefixes {
				isIndex = isIndex || strings.HasPrefix(k, p)
			}
			if !isIndex {
				t.Errorf("unexpected key %q", k)
			}
		}
	}
	for ik, pk := range want {
		got, ok := all[ik]
		switch {
		case !ok:
			t.Errorf("missing index %q -> %q", ik, pk)
		case string(got) != pk:
			t.Errorf("index %q -> %q, want %q", ik, got, pk)
		}
	}
	for k, v := range all {
		for _, p := range indexPrefixes {
			if _, ok := want[k]; strings.HasPrefix(k, p) && !ok {
				t.Errorf("stale index %q -> %q", k, v)
			}
		}
	}
}

func TestCorruptValues(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir())
	defer s.Close()
	err := s.db.Update(func(txn *badger.Txn) error {
		for k, v := range map[string]string{
			"org/bad":        "{not json",
			"orgslug/bad":    "org/bad",
			"orgslug/gone":   "org/gone",
			"user/bad":       `{"id": 7}`,
			"once/k/short":   "xx",
			"sessexp/short":  "sess/x",
			"mem/o/o/u":      "mem/u/u/o",
			"audit/all/tiny": "{}",
			// A member index key without its uid, one with a value that
			// does not decode, one pointing at no membership.
			"mem/oe/o/no-uid":               "\x00",
			"mem/oe/o2/x\x00u":              "\xff",
			"mem/oe/o3/x\x00u":              "\x01xname",
			"tok/bad":                       "{",
			"tokorg/o/000000000000dangling": "tok/gone",
			"audit/chain/o/\x00\x00\x00\x00\x00\x00\x00\x01": "audit/all/gone",
		} {
			if err := txn.Set([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]error{}
	_, checks["GetOrg"] = s.GetOrg(ctx, "bad")
	_, checks["GetOrgBySlug"] = s.GetOrgBySlug(ctx, "bad")
	_, checks["GetOrgBySlug dangling"] = s.GetOrgBySlug(ctx, "gone")
	_, checks["ListOrgs"] = s.ListOrgs(ctx)
	_, checks["UpdateOrg"] = s.UpdateOrg(ctx, "bad", func(o store.Org) (store.Org, error) { return o, nil })
	checks["DeleteOrg"] = s.DeleteOrg(ctx, "bad")
	_, checks["GetUser"] = s.GetUser(ctx, "bad")
	_, checks["TakeOnce"] = s.TakeOnce(ctx, "k", "short")
	_, checks["DeleteExpiredSessions"] = s.DeleteExpiredSessions(ctx, time.Now())
	_, checks["ListMembershipsByOrg"] = s.ListMembershipsByOrg(ctx, "o")
	_, checks["ListAudit"] = s.ListAudit(ctx, store.AuditQuery{})
	_, checks["ListAudit org"] = s.ListAudit(ctx, store.AuditQuery{OrgID: "o"})
	_, checks["ListMembers"] = s.ListMembers(ctx, store.MemberQuery{OrgID: "o"})
	_, checks["ListMembers search"] = s.ListMembers(ctx, store.MemberQuery{OrgID: "o2", Search: "x"})
	_, checks["ListMembers dangling"] = s.ListMembers(ctx, store.MemberQuery{OrgID: "o3"})
	_, checks["GetAPIToken"] = s.GetAPIToken(ctx, "bad")
	_, checks["ListAPITokens"] = s.ListAPITokens(ctx, "o")
	for name, err := range checks {
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s on corrupt data: %v, want a corruption error", name, err)
		} else if !strings.HasPrefix(err.Error(), "badgerstore: ") {
			t.Errorf("%s error lacks package prefix: %v", name, err)
		}
	}
	// Good records remain usable.
	if err := s.CreateOrg(ctx, store.Org{ID: "good", Slug: "good"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOrg(ctx, "good"); err != nil {
		t.Error(err)
	}
}

func TestDeleteExpiredSessionsInBatches(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, "", WithInMemory())
	defer s.Close()
	now := time.Now()
	const expired, live = 3*expireBatch + 7, 5
	for i := range expired + live {
		exp := now.Add(-time.Duration(i+1) * time.Second)
		if i >= expired {
			exp = now.Add(time.Hour)
		}
		err := s.CreateSession(ctx, store.Session{ID: fmt.Sprintf("s%04d", i), UserID: "u", ExpiresAt: exp})
		if err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpiredSessions(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != expired {
		t.Errorf("deleted %d, want %d", n, expired)
	}
	ss, err := s.ListSessionsByUser(ctx, "u")
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != live {
		t.Errorf("%d sessions left, want %d", len(ss), live)
	}
	checkConsistency(t, s)
}

func TestSecretRejectsEmpty(t *testing.T) {
	s := openTest(t, "", WithInMemory())
	defer s.Close()
	if _, err := s.Secret(t.Context(), "x", nil); err == nil {
		t.Error("Secret with an empty first value succeeded")
	}
	if _, err := s.Secret(t.Context(), "x", []byte("v")); err != nil {
		t.Error(err)
	}
	// Once set, the value argument is irrelevant.
	if v, err := s.Secret(t.Context(), "x", nil); err != nil || string(v) != "v" {
		t.Errorf("Secret = %q, %v", v, err)
	}
}

func TestCanceledContext(t *testing.T) {
	s := openTest(t, "", WithInMemory())
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.CreateOrg(ctx, store.Org{ID: "o", Slug: "o"}); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateOrg: %v, want context.Canceled", err)
	}
	if _, err := s.GetOrg(ctx, "o"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetOrg: %v, want context.Canceled", err)
	}
}

func TestCloseDuringUse(t *testing.T) {
	ctx := t.Context()
	s := openTest(t, t.TempDir())
	if err := s.CreateOrg(ctx, store.Org{ID: "o", Slug: "o"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				switch i % 3 {
				case 0:
					_, err = s.GetOrg(ctx, "o")
				case 1:
					err = s.CreateUser(ctx, store.User{ID: fmt.Sprintf("u%d-%d", w, i), Email: fmt.Sprintf("%d-%d@x", w, i)})
				case 2:
					_, err = s.UpdateOrg(ctx, "o", func(o store.Org) (store.Org, error) { o.Name += "."; return o, nil })
				}
				if errors.Is(err, store.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("during close: %v", err)
					return
				}
			}
		})
	}
	time.Sleep(20 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	close(stop)
	wg.Wait()
}

func TestGCLoopStopsOnClose(t *testing.T) {
	s := openTest(t, t.TempDir(), WithGCInterval(time.Millisecond))
	for i := range 50 {
		if err := s.AppendAudit(t.Context(), store.AuditEvent{Actor: "a", Action: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(10 * time.Millisecond) // let the collector run a few times
	done := make(chan error)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
	select {
	case <-s.gcDone:
	default:
		t.Error("GC goroutine still running after Close")
	}
}

func TestOpen(t *testing.T) {
	if _, err := Open(""); err == nil {
		t.Error("Open with empty path succeeded")
	}
	dir := t.TempDir()
	s := openTest(t, dir)
	defer s.Close()
	// SIGKILL cannot tell (the page cache survives it), so check directly
	// that commits are fsynced before they are acknowledged.
	if !s.db.Opts().SyncWrites {
		t.Error("SyncWrites is off")
	}
	// Badger locks its directory: a second opener must fail, not corrupt.
	if s2, err := Open(dir, WithLogger(quietLogger())); err == nil {
		s2.Close()
		t.Error("second Open of a locked directory succeeded")
	}

	other := t.TempDir()
	s3 := openTest(t, other)
	if err := s3.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte("meta/format"), []byte("999"))
	}); err != nil {
		t.Fatal(err)
	}
	s3.Close()
	if s4, err := Open(other, WithLogger(quietLogger())); err == nil {
		s4.Close()
		t.Error("Open of an unknown format succeeded")
	}
}

func TestBadgerLogger(t *testing.T) {
	var buf bytes.Buffer
	l := badgerLogger{slog.New(slog.NewTextHandler(&buf, nil))}
	l.Infof("noise %d\n", 1)
	l.Debugf("noise")
	l.Warningf("careful %s\n", "now")
	l.Errorf("broken")
	out := buf.String()
	if strings.Contains(out, "noise") {
		t.Errorf("info/debug leaked: %s", out)
	}
	if !strings.Contains(out, `level=WARN msg="careful now" component=badger`) || !strings.Contains(out, "level=ERROR msg=broken") {
		t.Errorf("unexpected log output: %s", out)
	}
}

func TestKeyTimeOrder(t *testing.T) {
	times := []time.Time{
		{},
		time.Unix(-1, 999_999_999),
		time.Unix(0, 0),
		time.Unix(0, 1),
		time.Unix(1, 0),
		time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := appendTime(nil, times[i-1]), appendTime(nil, times[i])
		if bytes.Compare(a, b) >= 0 {
			t.Errorf("encoding of %v does not sort before %v", times[i-1], times[i])
		}
		if bytes.Compare(invert(a), invert(b)) <= 0 {
			t.Errorf("inverted encoding of %v does not sort after %v", times[i-1], times[i])
		}
		if got, ok := decodeTime(b); !ok || !got.Equal(times[i]) {
			t.Errorf("decodeTime(appendTime(%v)) = %v, %v", times[i], got, ok)
		}
	}
}

// --- Crash recovery with a real process and SIGKILL ---

const (
	crashDirEnv   = "GATEHOUSE_CRASH_HELPER_DIR"
	crashCycleEnv = "GATEHOUSE_CRASH_HELPER_CYCLE"
	crashOrgID    = "crash-org"
)

var crashBase = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

func crashUser(id string) store.User {
	return store.User{ID: id, Email: id + "@Crash.Example", Name: "User " + id, CreatedAt: crashBase, UpdatedAt: crashBase}
}

func movedEmail(id string) string { return "moved-" + id + "@crash.example" }

func crashOrg(id string) store.Org {
	return store.Org{
		ID: id, Slug: "slug-" + id, Name: "Org " + id,
		Connection: store.Connection{Type: "password"},
		Attributes: map[string]string{"id": id},
		CreatedAt:  crashBase, UpdatedAt: crashBase,
	}
}

func crashAudit(id string, n int) store.AuditEvent {
	return store.AuditEvent{
		ID: id, Time: crashBase.Add(time.Duration(n) * time.Millisecond), OrgID: crashOrgID,
		Actor: "crash", Action: "write", Target: id, Details: map[string]string{"n": strconv.Itoa(n)},
	}
}

// TestCrashHelper is the child process of TestCrashRecovery: it writes
// until killed and reports each write on stdout only once it returned nil.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process for TestCrashRecovery")
	}
	cycle := os.Getenv(crashCycleEnv)
	s, err := Open(dir, WithLogger(quietLogger()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		id := fmt.Sprintf("c%s-%d", cycle, i)
		var kind string
		switch i % 4 {
		case 0:
			kind, err = "user", s.CreateUser(ctx, crashUser(id))
		case 1:
			kind, err = "org", s.CreateOrg(ctx, crashOrg(id))
		case 2:
			kind, err = "audit", s.AppendAudit(ctx, crashAudit(id, i))
		case 3:
			// Move the email of the user created three writes ago: the
			// index must follow atomically.
			id = fmt.Sprintf("c%s-%d", cycle, i-3)
			kind = "move"
			_, err = s.UpdateUser(ctx, id, func(u store.User) (store.User, error) {
				u.Email = movedEmail(id)
				return u, nil
			})
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s %s: %v\n", kind, id, err)
			os.Exit(2)
		}
		// os.Stdout is unbuffered: one write(2) per line, after the commit.
		fmt.Printf("ACK %s %s %d\n", kind, id, i)
	}
}

type crashAcks struct {
	users, orgs, moved map[string]bool
	audits             map[string]int
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	acks := crashAcks{users: map[string]bool{}, orgs: map[string]bool{}, moved: map[string]bool{}, audits: map[string]int{}}
	for cycle := range 3 {
		runAndKill(t, dir, cycle, 300, &acks)

		s, err := Open(dir, WithLogger(quietLogger()))
		if err != nil {
			t.Fatalf("cycle %d: reopen after SIGKILL: %v", cycle, err)
		}
		verifyCrashAcks(t, s, &acks)
		checkConsistency(t, s)
		if err := s.Close(); err != nil {
			t.Fatalf("cycle %d: close: %v", cycle, err)
		}
		if t.Failed() {
			t.Fatalf("cycle %d failed", cycle)
		}
	}
	t.Logf("%d users (%d moved), %d orgs, %d audit events acknowledged and verified",
		len(acks.users), len(acks.moved), len(acks.orgs), len(acks.audits))
}

// runAndKill starts the helper on dir, SIGKILLs it once it acknowledged
// target writes, and records every acknowledgement it managed to print.
func runAndKill(t *testing.T, dir string, cycle, target int, acks *crashAcks) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashCycleEnv+"="+strconv.Itoa(cycle))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	watchdog := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
	defer watchdog.Stop()

	r := bufio.NewReader(stdout)
	n := 0
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			// A trailing fragment without '\n' was never fully reported.
			if err != io.EOF {
				t.Errorf("read helper output: %v", err)
			}
			break
		}
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != "ACK" {
			t.Fatalf("unexpected helper output %q", line)
		}
		seq, err := strconv.Atoi(f[3])
		if err != nil {
			t.Fatalf("unexpected helper output %q", line)
		}
		switch f[1] {
		case "user":
			acks.users[f[2]] = true
		case "org":
			acks.orgs[f[2]] = true
		case "audit":
			acks.audits[f[2]] = seq
		case "move":
			acks.moved[f[2]] = true
		}
		if n++; n == target {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatalf("kill: %v", err)
			}
		}
	}
	err = cmd.Wait()
	if n < target {
		t.Fatalf("cycle %d: helper acknowledged only %d writes (exit: %v)\nstderr:\n%s", cycle, n, err, stderr.String())
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("cycle %d: helper was not killed by a signal: %v\nstderr:\n%s", cycle, err, stderr.String())
	}
	t.Logf("cycle %d: killed after %d acknowledged writes", cycle, n)
}

func verifyCrashAcks(t *testing.T, s *Store, acks *crashAcks) {
	t.Helper()
	ctx := t.Context()
	for id := range acks.users {
		u, err := s.GetUser(ctx, id)
		if err != nil {
			t.Errorf("acknowledged user lost: %v", err)
			continue
		}
		want := crashUser(id)
		if acks.moved[id] {
			want.Email = movedEmail(id)
			if _, err := s.GetUserByEmail(ctx, crashUser(id).Email); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("old email of moved user %s: %v, want ErrNotFound", id, err)
			}
		} else if u.Email == movedEmail(id) {
			want.Email = u.Email // the unacknowledged move landed: fine
		}
		if !reflect.DeepEqual(u, want) {
			t.Errorf("user %s = %+v, want %+v", id, u, want)
		}
		byEmail, err := s.GetUserByEmail(ctx, strings.ToUpper(want.Email))
		if err != nil || byEmail.ID != id {
			t.Errorf("GetUserByEmail(%s) = %q, %v; want %s", want.Email, byEmail.ID, err, id)
		}
	}
	for id := range acks.moved {
		if !acks.users[id] {
			t.Errorf("move of %s acknowledged but its creation was not", id)
		}
	}
	for id := range acks.orgs {
		o, err := s.GetOrg(ctx, id)
		if err != nil {
			t.Errorf("acknowledged org lost: %v", err)
			continue
		}
		if want := crashOrg(id); !reflect.DeepEqual(o, want) {
			t.Errorf("org %s = %+v, want %+v", id, o, want)
		}
		if bySlug, err := s.GetOrgBySlug(ctx, "slug-"+id); err != nil || bySlug.ID != id {
			t.Errorf("GetOrgBySlug(slug-%s) = %q, %v", id, bySlug.ID, err)
		}
	}
	events, err := s.ListAudit(ctx, store.AuditQuery{OrgID: crashOrgID, Limit: 1 << 20})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	found := map[string]store.AuditEvent{}
	for i, e := range events {
		found[e.ID] = e
		// One org's events come in chain order, last appended first (each
		// cycle's helper reuses the same times).
		if i > 0 && e.Seq != events[i-1].Seq-1 {
			t.Errorf("audit event %d has sequence number %d after %d", i, e.Seq, events[i-1].Seq)
		}
	}
	for id, n := range acks.audits {
		e, ok := found[id]
		if !ok {
			t.Errorf("acknowledged audit event %s lost", id)
			continue
		}
		chained := e
		chained.Seq, chained.Prev, chained.Hash = 0, "", ""
		if want := crashAudit(id, n); !reflect.DeepEqual(chained, want) || e.Hash == "" {
			t.Errorf("audit %s = %+v, want %+v (chained)", id, e, want)
		}
	}
	// The chain survives being killed mid-write: intact up to its head.
	heads, err := s.AuditHeads(ctx)
	if err != nil {
		t.Fatalf("AuditHeads: %v", err)
	}
	for _, h := range heads {
		if _, err := store.VerifyAudit(ctx, s, h); err != nil {
			t.Errorf("audit chain of %q after a crash: %v", h.OrgID, err)
		}
	}
}

// A changed, removed or reordered audit event breaks its org's chain,
// with the event named.
func TestAuditChainTampering(t *testing.T) {
	ctx := t.Context()
	for _, tc := range []struct {
		name   string
		tamper func(txn *badger.Txn, events []store.AuditEvent) error
		want   string
	}{
		{"changed detail", func(txn *badger.Txn, es []store.AuditEvent) error {
			e := es[2]
			e.Details = map[string]string{"n": "changed"}
			return setJSON(txn, auditKey(e.Time, e.ID), e)
		}, "was changed after it was written"},
		{"changed actor, hash recomputed", func(txn *badger.Txn, es []store.AuditEvent) error {
			e := es[2]
			e.Actor = "someone else"
			e.Hash = store.AuditHash(e)
			return setJSON(txn, auditKey(e.Time, e.ID), e)
		}, "does not link to the event before it"},
		{"removed from the middle", func(txn *badger.Txn, es []store.AuditEvent) error {
			return txn.Delete(auditChainKey(es[2].OrgID, es[2].Seq))
		}, "sequence number 4 after 2"},
		{"removed from the end", func(txn *badger.Txn, es []store.AuditEvent) error {
			return txn.Delete(auditChainKey(es[4].OrgID, es[4].Seq))
		}, "events at its end were removed"},
		{"record gone, index left", func(txn *badger.Txn, es []store.AuditEvent) error {
			return txn.Delete(auditKey(es[1].Time, es[1].ID))
		}, "not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, "", WithInMemory())
			defer s.Close()
			for i := range 5 {
				if err := s.AppendAudit(ctx, store.AuditEvent{OrgID: "o1", Actor: "a", Action: "x", Details: map[string]string{"n": strconv.Itoa(i)}}); err != nil {
					t.Fatal(err)
				}
			}
			var events []store.AuditEvent
			if err := s.WalkAudit(ctx, "o1", 0, func(e store.AuditEvent) error { events = append(events, e); return nil }); err != nil {
				t.Fatal(err)
			}
			heads, _ := s.AuditHeads(ctx)
			if _, err := store.VerifyAudit(ctx, s, heads[0]); err != nil {
				t.Fatalf("intact chain: %v", err)
			}
			if err := s.db.Update(func(txn *badger.Txn) error { return tc.tamper(txn, events) }); err != nil {
				t.Fatal(err)
			}
			_, err := store.VerifyAudit(ctx, s, heads[0])
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("after tampering: %v, want %q", err, tc.want)
			}
		})
	}
}

// --- Benchmarks ---

func BenchmarkGetSession(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	se := store.Session{ID: "s1", UserID: "u1", OrgID: "o1", Connection: "password", ExpiresAt: time.Now().Add(time.Hour)}
	if err := s.CreateSession(ctx, se); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.GetSession(ctx, "s1"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateSession measures durable (fsynced) writes.
func BenchmarkCreateSession(b *testing.B) {
	s := openTest(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	exp := time.Now().Add(time.Hour)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		se := store.Session{ID: "s" + strconv.Itoa(i), UserID: "u1", OrgID: "o1", Connection: "password", ExpiresAt: exp}
		if err := s.CreateSession(ctx, se); err != nil {
			b.Fatal(err)
		}
	}
}
