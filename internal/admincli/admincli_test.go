package admincli

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/admin"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// env is the real admin API on an in-memory store, served over HTTP on
// loopback, with a platform token.
type env struct {
	st    store.Store
	sm    *session.Manager
	api   http.Handler
	srv   *httptest.Server
	url   string
	token string
}

// newEnv starts the API; wrap, if set, stands between it and the client.
func newEnv(t *testing.T, wrap func(http.Handler) http.Handler) *env {
	t.Helper()
	st := badgertest.Open(t)
	sm, err := session.New(st, make([]byte, 32), session.Options{RecheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ips, err := clientip.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = admin.New(admin.Options{Store: st, Sessions: sm, ClientIP: ips, ConfigFile: "gatehouse.yaml",
		Logger: slog.New(slog.DiscardHandler), InviteURL: func(_ *store.Org, secret string) (string, error) {
			return "https://auth.example.com/.gatehouse/invite?token=" + secret, nil
		}})
	e := &env{st: st, sm: sm, api: h}
	if wrap != nil {
		h = wrap(h)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	e.url = e.srv.URL
	tok, err := admin.MintToken(context.Background(), st, "", store.RolePlatformAdmin, "test", "", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.token = tok.Secret
	return e
}

type result struct {
	stdout, stderr string
	code           int
}

// run runs `gatehouse admin args...` with GATEHOUSE_URL and
// GATEHOUSE_TOKEN set to the env's, and stdin.
func (e *env) run(stdin string, args ...string) result {
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		switch k {
		case "GATEHOUSE_URL":
			return e.url
		case "GATEHOUSE_TOKEN":
			return e.token
		}
		return ""
	}
	code := Run(context.Background(), args, getenv, strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// ok runs a command that must succeed.
func (e *env) ok(t *testing.T, args ...string) string {
	t.Helper()
	r := e.run("", args...)
	if r.code != 0 {
		t.Fatalf("%v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs a command that must exit with code, and returns its stderr.
func (e *env) fails(t *testing.T, code int, args ...string) string {
	t.Helper()
	r := e.run("", args...)
	if r.code != code {
		t.Fatalf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", args, r.code, code, r.stdout, r.stderr)
	}
	return r.stderr
}

func jsonOf[T any](t *testing.T, s string) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON value:\n%s", s)
	}
	return v
}

// jsonLines decodes one JSON object a line.
func jsonLines(t *testing.T, s string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSuffix(s, "\n"), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q is not a JSON object: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func contains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

func TestOrgs(t *testing.T) {
	e := newEnv(t, nil)
	out := e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme Inc", "--attr", "tier=gold", "--attr", "region=eu")
	contains(t, "create", out, "SLUG", "acme", "Acme Inc", "region=eu tier=gold", "MANAGED_BY", "api")

	sub := jsonOf[orgView](t, e.ok(t, "--output", "json", "orgs", "create", "--slug", "acme-eu", "--name", "Acme EU", "--parent", "acme"))
	acme := jsonOf[orgView](t, e.ok(t, "orgs", "get", "acme", "--output", "json"))
	if sub.ParentID != acme.ID || acme.Attributes["tier"] != "gold" {
		t.Fatalf("sub-org %+v, org %+v", sub, acme)
	}

	list := e.ok(t, "orgs", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("orgs list:\n%s", list)
	}
	// The sub-org's parent shows as its slug; the columns line up.
	if !regexp.MustCompile(`(?m)^` + sub.ID + `\s+acme-eu\s+Acme EU\s+acme\s+inherit\s+api$`).MatchString(list) {
		t.Errorf("sub-org row:\n%s", list)
	}
	if col := strings.Index(lines[0], "SLUG"); strings.Index(lines[1], "acme") != col {
		t.Errorf("columns not aligned:\n%s", list)
	}
	jl := jsonOf[struct{ Items []orgView }](t, e.ok(t, "orgs", "list", "--output", "json"))
	if len(jl.Items) != 2 {
		t.Errorf("orgs list json: %+v", jl)
	}

	e.ok(t, "orgs", "update", acme.ID, "--name", "Acme Corp", "--attr", "tier=platinum", "--unset-attr", "region")
	got := jsonOf[orgView](t, e.ok(t, "-output=json", "orgs", "get", "acme"))
	if got.Name != "Acme Corp" || !mapsEqual(got.Attributes, map[string]string{"tier": "platinum"}) {
		t.Errorf("after update: %+v", got)
	}

	stderr := e.fails(t, 1, "orgs", "delete", "acme")
	contains(t, "delete with sub-orgs", stderr, "gatehouse admin: 409 Conflict: Org acme has sub-orgs: delete them first.")
	contains(t, "delete", e.ok(t, "orgs", "delete", "acme-eu"), "Deleted org acme-eu.")
	if out := e.ok(t, "--output", "json", "orgs", "delete", "acme"); out != "" {
		t.Errorf("json delete printed %q", out)
	}
	if stderr := e.fails(t, 1, "orgs", "get", "acme"); stderr != "gatehouse admin: 404 Not Found: No such org.\n" {
		t.Errorf("get deleted org: %q", stderr)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

func TestUsers(t *testing.T) {
	e := newEnv(t, nil)
	e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme")
	emails := []string{"ann@acme.example", "bob@acme.example", "cat@acme.example", "dan@acme.example", "eve@acme.example"}
	for _, em := range emails[1:] {
		e.ok(t, "users", "create", "--org", "acme", "--email", em, "--name", strings.ToUpper(em[:3]), "--role", "member")
	}
	r := e.run("correct horse battery staple\n", "users", "create", "--org", "acme", "--email", emails[0], "--name", "Ann",
		"--role", "admin", "--role", "billing", "--password-stdin", "--output", "json")
	if r.code != 0 {
		t.Fatalf("create with password: %d %s", r.code, r.stderr)
	}
	ann := jsonOf[userView](t, r.stdout)
	if !ann.HasPassword || !slices.Equal(ann.Roles, []string{"admin", "billing"}) {
		t.Fatalf("created %+v", ann)
	}

	// --all with --limit 2: three pages, printed as one table.
	out := e.ok(t, "users", "list", "--org", "acme", "--limit", "2", "--all")
	if n := strings.Count(out, "EMAIL"); n != 1 {
		t.Errorf("header %d times:\n%s", n, out)
	}
	var seen []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		seen = append(seen, strings.Fields(line)[1])
	}
	if !slices.Equal(seen, emails) {
		t.Errorf("listed %v, want %v:\n%s", seen, emails, out)
	}
	contains(t, "users list", out, "ROLES", "DISABLED", "MANAGED_BY", "admin,billing")

	lines := jsonLines(t, e.ok(t, "users", "list", "--org", "acme", "--limit", "2", "--all", "--output", "json"))
	if len(lines) != 5 || lines[4]["email"] != emails[4] {
		t.Errorf("json --all: %v", lines)
	}
	// One page: JSON as the API sends it, with its cursor; the table says
	// there is more.
	pg := jsonOf[page](t, e.ok(t, "users", "list", "--org", "acme", "--limit", "2", "--output", "json"))
	if len(pg.Items) != 2 || pg.NextCursor == "" {
		t.Errorf("one page: %+v", pg)
	}
	r = e.run("", "users", "list", "--org", "acme", "--limit", "2", "--cursor", pg.NextCursor)
	contains(t, "second page", r.stdout, emails[2], emails[3])
	contains(t, "second page", r.stderr, "(more: --all lists every page, --cursor ")
	contains(t, "search", e.ok(t, "users", "list", "--org", "acme", "--q", "DAN"), emails[3])

	// get by ID or by email; flags after the argument.
	bob := jsonOf[userView](t, e.ok(t, "users", "get", "bob@acme.example", "--org", "acme", "--output", "json"))
	contains(t, "get", e.ok(t, "users", "get", "--org", "acme", bob.ID), "bob@acme.example", "HAS_PASSWORD", "no")

	upd := jsonOf[userView](t, e.ok(t, "users", "update", "--org", "acme", bob.ID, "--role", "auditor", "--role", "ops", "--name", "Robert", "--output", "json"))
	if !slices.Equal(upd.Roles, []string{"auditor", "ops"}) || upd.Name != "Robert" {
		t.Errorf("after update: %+v", upd)
	}
	upd = jsonOf[userView](t, e.ok(t, "users", "update", "--org", "acme", bob.ID, "--disable", "--no-roles", "--output", "json"))
	if !upd.Disabled || len(upd.Roles) != 0 {
		t.Errorf("after disable: %+v", upd)
	}
	contains(t, "enable", e.ok(t, "users", "update", "--org", "acme", "bob@acme.example", "--enable"), "DISABLED      no")

	r = e.run("another long password\r\n", "users", "update", "--org", "acme", bob.ID, "--password-stdin", "--output", "json")
	if r.code != 0 || !jsonOf[userView](t, r.stdout).HasPassword {
		t.Errorf("password update: %d %s %s", r.code, r.stdout, r.stderr)
	}
	r = e.run("short\n", "users", "update", "--org", "acme", bob.ID, "--password-stdin")
	if r.code != 1 || r.stderr != "gatehouse admin: 400 Bad Request: /password: must be at least 12 characters\n" {
		t.Errorf("short password: %d %q", r.code, r.stderr)
	}

	contains(t, "delete", e.ok(t, "users", "delete", "--org", "acme", bob.ID), "Removed "+bob.ID+" from org acme")
	contains(t, "deleted", e.fails(t, 1, "users", "get", "--org", "acme", bob.ID), "404 Not Found")
	contains(t, "by email", e.fails(t, 1, "users", "get", "--org", "acme", "bob@acme.example"), "org acme has no member with email bob@acme.example")
}

func TestSessions(t *testing.T) {
	e := newEnv(t, nil)
	org := jsonOf[orgView](t, e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme", "--output", "json"))
	u := jsonOf[userView](t, e.ok(t, "users", "create", "--org", "acme", "--email", "ann@acme.example", "--output", "json"))
	ctx := context.Background()
	var ids []string
	for range 3 {
		s, err := e.sm.Create(ctx, u.ID, org.ID, "password", "127.0.0.1", "Mozilla/5.0 \x1b[31mred")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	out := e.ok(t, "sessions", "list", "--org", "acme", u.ID)
	contains(t, "sessions list", out, ids[0], ids[2], "USER_AGENT", `Mozilla/5.0 \x1b[31mred`)
	if strings.Contains(out, "\x1b") {
		t.Error("a control character reached the terminal")
	}
	contains(t, "revoke one", e.ok(t, "sessions", "revoke", "--org", "acme", "--session", ids[0]), "Revoked session "+ids[0])
	list := jsonOf[struct{ Items []sessionView }](t, e.ok(t, "sessions", "list", "--org", "acme", u.ID, "--output", "json"))
	if len(list.Items) != 2 {
		t.Errorf("after revoking one: %+v", list)
	}
	e.ok(t, "sessions", "revoke", "--org", "acme", "ann@acme.example")
	list = jsonOf[struct{ Items []sessionView }](t, e.ok(t, "sessions", "list", "--org", "acme", u.ID, "--output", "json"))
	if len(list.Items) != 0 {
		t.Errorf("after revoking all: %+v", list)
	}
}

func TestTokens(t *testing.T) {
	e := newEnv(t, nil)
	e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme")

	out := e.ok(t, "tokens", "create", "--org", "acme", "--name", "ci deploy", "--role", "admin", "--expires-in", "720h")
	contains(t, "create", out, `role admin in org org_`, "shown only this once")
	secret := regexp.MustCompile(`(?m)^ghat_[a-z2-7]{16}_[a-z2-7]{52}$`).FindString(out)
	if secret == "" {
		t.Fatalf("no secret on a line of its own:\n%s", out)
	}
	nt := jsonOf[tokenView](t, e.ok(t, "tokens", "create", "--name", "platform ops", "--output", "json"))
	if nt.Secret == "" || nt.Role != "platform_admin" || nt.ID == "" {
		t.Fatalf("platform token %+v", nt)
	}

	// The org token works, with its own rights.
	orgTok := &env{url: e.url, token: secret}
	contains(t, "me", orgTok.ok(t, "me"), "KIND", "token", "ROLE", "admin", "PLATFORM_ADMIN", "no")
	me := jsonOf[meView](t, orgTok.ok(t, "me", "--output", "json"))
	contains(t, "org token cannot list platform tokens", orgTok.fails(t, 1, "tokens", "list"), "403 Forbidden")

	list := e.ok(t, "tokens", "list", "--org", "acme")
	contains(t, "list", list, me.TokenID, "ci deploy", "active")
	contains(t, "platform list", e.ok(t, "tokens", "list"), nt.ID, "platform ops")

	contains(t, "revoke", e.ok(t, "tokens", "revoke", "--org", "acme", me.TokenID), "Revoked token "+me.TokenID)
	tl := jsonOf[struct{ Items []tokenView }](t, e.ok(t, "tokens", "list", "--org", "acme", "--output", "json"))
	if len(tl.Items) != 1 || tl.Items[0].RevokedAt.IsZero() {
		t.Errorf("after revoke: %+v", tl)
	}
	contains(t, "list revoked", e.ok(t, "tokens", "list", "--org", "acme"), "revoked")

	stderr := orgTok.fails(t, 1, "me")
	if stderr != "gatehouse admin: 401 Unauthorized: The API token was revoked.\n" {
		t.Errorf("revoked token: %q", stderr)
	}
	if strings.Contains(stderr, secret) {
		t.Error("the token was printed")
	}
	e.ok(t, "tokens", "revoke", nt.ID)
	contains(t, "secret as ID", e.fails(t, 2, "tokens", "revoke", secret), "give the token's ID (tok_...), not its secret")
}

func TestInvitations(t *testing.T) {
	e := newEnv(t, nil)
	e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme")
	out := e.ok(t, "invitations", "create", "--org", "acme", "--email", "erin@acme.example", "--role", "viewer", "--role", "billing", "--expires-in", "72h")
	contains(t, "create", out, "for erin@acme.example", "roles viewer,billing", "shown only this once")
	link := regexp.MustCompile(`(?m)^https://auth\.example\.com/\.gatehouse/invite\?token=ghinv_[A-Z2-7]{52}$`).FindString(out)
	if link == "" {
		t.Fatalf("no link on a line of its own:\n%s", out)
	}
	inv := jsonOf[struct{ Items []invitationView }](t, e.ok(t, "invitations", "list", "--org", "acme", "--output", "json"))
	if len(inv.Items) != 1 || inv.Items[0].URL != "" || inv.Items[0].Status != "pending" {
		t.Fatalf("list: %+v", inv)
	}
	id := inv.Items[0].ID
	contains(t, "table", e.ok(t, "invitations", "list", "--org", "acme"), id, "erin@acme.example", "viewer,billing", "pending")
	again := jsonOf[invitationView](t, e.ok(t, "invitations", "resend", "--org", "acme", id, "--output", "json"))
	if again.URL == "" || again.URL == link {
		t.Fatalf("resend: %+v", again)
	}
	contains(t, "pending twice", e.fails(t, 1, "invitations", "create", "--org", "acme", "--email", "erin@acme.example"), "409 Conflict", "pending already")
	contains(t, "link as ID", e.fails(t, 2, "invitations", "revoke", "--org", "acme", link), "not its link")
	contains(t, "no org", e.fails(t, 2, "invitations", "list"), "--org")
	contains(t, "revoke", e.ok(t, "invitations", "revoke", "--org", "acme", id), "Revoked invitation "+id)
	contains(t, "revoked twice", e.fails(t, 1, "invitations", "revoke", "--org", "acme", id), "404")
}

func TestAudit(t *testing.T) {
	e := newEnv(t, nil)
	e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme")
	for i := range 4 {
		e.ok(t, "users", "create", "--org", "acme", "--email", fmt.Sprintf("u%d@acme.example", i))
	}
	out := e.ok(t, "audit", "list", "--org", "acme")
	contains(t, "audit list", out, "TIME", "ACTOR", "ACTION", "user.create", "org.create", "token:tok_", "OUTCOME", "success")

	filtered := jsonOf[struct {
		Items      []auditEvent
		NextCursor string `json:"next_cursor"`
	}](t, e.ok(t, "audit", "list", "--org", "acme", "--action", "user.create", "--output", "json"))
	if len(filtered.Items) != 4 {
		t.Errorf("filtered by action: %+v", filtered)
	}
	all := jsonLines(t, e.ok(t, "audit", "list", "--org", "acme", "--limit", "2", "--all", "--output", "json"))
	if len(all) != 5 {
		t.Errorf("--all: %d events", len(all))
	}
	contains(t, "bad since", e.fails(t, 1, "audit", "list", "--org", "acme", "--since", "yesterday"),
		"gatehouse admin: 400 Bad Request: /since: must be an RFC 3339 time such as 2026-01-02T15:04:05Z\n")

	// Export: JSON Lines, unchanged, oldest first, with the chain fields.
	exp := e.ok(t, "audit", "export", "--org", "acme", "--action", "user.create")
	lines := jsonLines(t, exp)
	if len(lines) != 4 || lines[0]["hash"] == nil || lines[0]["seq"].(float64) >= lines[3]["seq"].(float64) {
		t.Errorf("export: %s", exp)
	}
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	if out := e.ok(t, "audit", "export", "--org", "acme", "--action", "user.create", "--out", file); out != "" {
		t.Errorf("export --out printed %q", out)
	}
	b, err := os.ReadFile(file)
	if err != nil || string(b) != exp {
		t.Errorf("export file (%v):\n%s\nwant:\n%s", err, b, exp)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("export file mode: %v %v", fi.Mode(), err)
	}
}

// An export the server cuts short is an error, and leaves no file.
func TestAuditExportCutShort(t *testing.T) {
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/audit/export") {
				w.Header().Set("Content-Type", "application/jsonl")
				io.WriteString(w, `{"id":"1"}`+"\n"+`{"id":`)
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			}
			h.ServeHTTP(w, r)
		})
	})
	e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme")
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	contains(t, "cut short", e.fails(t, 1, "audit", "export", "--org", "acme", "--out", file), "gatehouse admin: audit export: cut short after")
	if ents, _ := os.ReadDir(filepath.Dir(file)); len(ents) != 0 {
		t.Errorf("left %v", ents)
	}
}

// An update whose object changes between the CLI's GET and its PATCH
// fails with 412 and changes nothing.
func TestUpdateConflict(t *testing.T) {
	var mutate func()
	e := newEnv(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPatch && mutate != nil {
				mutate()
			}
			h.ServeHTTP(w, r)
		})
	})
	ctx := context.Background()
	org := jsonOf[orgView](t, e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme", "--output", "json"))
	u := jsonOf[userView](t, e.ok(t, "users", "create", "--org", "acme", "--email", "ann@acme.example", "--role", "member", "--output", "json"))

	for _, tc := range []struct {
		name   string
		args   []string
		mutate func() error
		check  func() error
	}{
		{"org", []string{"orgs", "update", "acme", "--name", "Mine"},
			func() error {
				_, err := e.st.UpdateOrg(ctx, org.ID, func(o store.Org) (store.Org, error) { o.Name = "Theirs"; return o, nil })
				return err
			},
			func() error {
				if o, _ := e.st.GetOrg(ctx, org.ID); o.Name != "Theirs" {
					return fmt.Errorf("name %q", o.Name)
				}
				return nil
			}},
		{"user", []string{"users", "update", "--org", "acme", u.ID, "--role", "admin"},
			func() error {
				_, err := e.st.UpdateMembership(ctx, u.ID, org.ID, func(m store.Membership) (store.Membership, error) {
					m.Roles = []string{"auditor"}
					return m, nil
				})
				return err
			},
			func() error {
				if m, _ := e.st.GetMembership(ctx, u.ID, org.ID); !slices.Equal(m.Roles, []string{"auditor"}) {
					return fmt.Errorf("roles %v", m.Roles)
				}
				return nil
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mutate = func() {
				if err := tc.mutate(); err != nil {
					t.Error(err)
				}
			}
			defer func() { mutate = nil }()
			stderr := e.fails(t, 1, tc.args...)
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 2 || !strings.HasPrefix(lines[0], "gatehouse admin: 412 Precondition Failed: ") ||
				!strings.HasPrefix(lines[1], "gatehouse admin: nothing was changed") {
				t.Errorf("stderr:\n%s", stderr)
			}
			if err := tc.check(); err != nil {
				t.Errorf("the other change was overwritten: %v", err)
			}
		})
	}
	// Without a concurrent change, the same update goes through.
	contains(t, "update", e.ok(t, "orgs", "update", "acme", "--name", "Mine"), "Mine")
}

func TestProblemOutput(t *testing.T) {
	e := newEnv(t, nil)
	long := strings.Repeat("k", 65)
	stderr := e.fails(t, 1, "orgs", "create", "--slug", "Not A Slug", "--name", "x", "--attr", long+"=v")
	want := "gatehouse admin: 400 Bad Request: The request has invalid fields.\n" +
		"  /slug: use up to 63 lowercase letters, digits and \"-\", starting with a letter or digit\n" +
		"  /attributes/" + long + ": names are 1 to 64 characters, values at most 1024\n"
	if stderr != want {
		t.Errorf("got:\n%s\nwant:\n%s", stderr, want)
	}

	// Answers from a fake server: problem details with control characters
	// and a request id, and something that is not the API.
	for _, tc := range []struct {
		name, ctype, body string
		status            int
		want              string
	}{
		{"problem", "application/problem+json", `{"title":"Internal Server Error","status":500,"detail":"oops\u001b[2J","request_id":"r1","errors":[{"pointer":"/a","detail":"bad"}]}`, 500,
			"gatehouse admin: 500 Internal Server Error: oops\\x1b[2J\n  /a: bad\n  request id: r1\n"},
		{"html", "text/html", "<html><body>Bad   gateway</body></html>", 502,
			"gatehouse admin: 502 Bad Gateway: the answer is not the admin API's (text/html, not problem details): <html><body>Bad gateway</body></html>\n"},
		{"redirect", "", "", 302,
			"gatehouse admin: 302 Found: the server redirects to https://elsewhere.example/; the admin API never does: check --url\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.status == 302 {
					w.Header().Set("Location", "https://elsewhere.example/")
				}
				if tc.ctype != "" {
					w.Header().Set("Content-Type", tc.ctype)
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			fake := &env{url: srv.URL, token: e.token}
			if got := fake.fails(t, 1, "me"); got != tc.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tc.want)
			}
		})
	}
}

func TestURLs(t *testing.T) {
	for _, tc := range []struct {
		url  string
		ok   bool
		base string
	}{
		{"https://auth.example.com", true, "https://auth.example.com/api/v1"},
		{"https://auth.example.com/", true, "https://auth.example.com/api/v1"},
		{"https://auth.example.com/api/v1/", true, "https://auth.example.com/api/v1"},
		{"http://127.0.0.1:8080", true, "http://127.0.0.1:8080/api/v1"},
		{"http://127.9.9.9", true, "http://127.9.9.9/api/v1"},
		{"http://[::1]:8080", true, "http://[::1]:8080/api/v1"},
		{"http://localhost:8080", true, "http://localhost:8080/api/v1"},
		{"http://acme.localhost", true, "http://acme.localhost/api/v1"},
		{"http://auth.example.com", false, ""},
		{"http://10.0.0.1", false, ""},
		{"http://localhost.example.com", false, ""},
		{"http://[::ffff:10.0.0.1]", false, ""},
		{"ftp://auth.example.com", false, ""},
		{"auth.example.com", false, ""},
		{"https://user:pw@auth.example.com", false, ""},
		{"https://auth.example.com/?x=1", false, ""},
	} {
		u, err := apiBase(tc.url)
		switch {
		case tc.ok && (err != nil || u.String() != tc.base):
			t.Errorf("%s: %v %v, want %s", tc.url, u, err, tc.base)
		case !tc.ok && err == nil:
			t.Errorf("%s: accepted", tc.url)
		}
	}

	// Through Run: a clear refusal, exit 2, nothing sent.
	e := &env{url: "http://auth.example.com", token: "ghat_secret"}
	stderr := e.fails(t, 2, "me")
	contains(t, "refusal", stderr, "refusing plain http:// to a host that is not loopback", "would cross the network in clear")
	if strings.Contains(stderr, "ghat_secret") {
		t.Error("token printed")
	}
	e = &env{url: "https://user:ghat_secret@auth.example.com", token: "ghat_secret"}
	if stderr := e.fails(t, 2, "me"); strings.Contains(stderr, "ghat_secret") {
		t.Errorf("token printed: %s", stderr)
	}
	contains(t, "no url", (&env{token: "x"}).fails(t, 2, "me"), "no deployment URL: set GATEHOUSE_URL or pass --url")
	contains(t, "no token", (&env{url: "https://a.example"}).fails(t, 2, "me"), "no API token: set GATEHOUSE_TOKEN or pass --token")
}

// A name that resolves to a non-loopback address is refused at connect
// time over plain HTTP, whatever it is called.
func TestLoopbackDial(t *testing.T) {
	if err := loopbackOnly("tcp4", "127.0.0.1:80", nil); err != nil {
		t.Error(err)
	}
	if err := loopbackOnly("tcp6", "[::1]:80", nil); err != nil {
		t.Error(err)
	}
	if err := loopbackOnly("tcp4", "192.0.2.1:80", nil); err == nil {
		t.Error("192.0.2.1 allowed")
	}
}

// The token never shows in errors, even when the server is down.
func TestTokenNotPrinted(t *testing.T) {
	e := newEnv(t, nil)
	e.srv.Close()
	for _, args := range [][]string{{"me"}, {"--token", e.token, "orgs", "list"}, {"orgs", "list", "--token", e.token + "x"}} {
		r := e.run("", args...)
		if r.code != 1 || strings.Contains(r.stderr, e.token) || !strings.Contains(r.stderr, "GET "+e.url+"/api/v1/") {
			t.Errorf("%v: %d %s", args, r.code, r.stderr)
		}
		contains(t, "hint", r.stderr, "nothing listens there")
	}
}

func TestUsageErrors(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "usage:\n  gatehouse admin"},
		{[]string{"widgets", "list"}, `unknown verb "widgets list"`},
		{[]string{"orgs"}, "gatehouse admin orgs: give a verb: list, get, create, update, delete"},
		{[]string{"users", "--org", "a"}, "gatehouse admin users: give a verb: list, get, create, update, delete"},
		{[]string{"orgs", "get"}, "gatehouse admin orgs get: missing ORG\nusage: gatehouse admin orgs get ORG"},
		{[]string{"orgs", "get", "a", "b"}, `unexpected argument "b"`},
		{[]string{"orgs", "create", "--name", "x"}, "--slug is required"},
		{[]string{"orgs", "create", "--slug", "x", "--name", "x", "--attr", "novalue"}, `--attr "novalue": give name=value`},
		{[]string{"orgs", "update", "a"}, "nothing to change"},
		{[]string{"orgs", "update", "a", "--attr", "k=v", "--unset-attr", "k"}, "both set and unset"},
		{[]string{"users", "list"}, "--org is required\nusage: gatehouse admin users list --org ORG"},
		{[]string{"users", "list", "--org", "a", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"users", "list", "--org", "a", "--all", "--cursor", "x"}, "give --all or --cursor, not both"},
		{[]string{"users", "update", "--org", "a", "u", "--disable", "--enable"}, "give --disable or --enable, not both"},
		{[]string{"users", "update", "--org", "a", "u", "--role", "x", "--no-roles"}, "give --role or --no-roles, not both"},
		{[]string{"users", "create", "--org", "a", "--email", "x@y.example", "--password-stdin"}, "--password-stdin: stdin is empty"},
		{[]string{"sessions", "revoke", "--org", "a"}, "give USER (all their sessions in the org) or --session SID"},
		{[]string{"sessions", "revoke", "--org", "a", "u", "--session", "s"}, "not both"},
		{[]string{"--output", "yaml", "me"}, `--output must be table or json, not "yaml"`},
	} {
		r := e.run("", tc.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr:\n%s\nwant %q", tc.args, r.code, r.stderr, tc.want)
		}
	}
	// The verb's usage lists its flags, not the globals.
	r := e.run("", "users", "list")
	contains(t, "flags", r.stderr, "  --org string", "  --all")
	if strings.Contains(r.stderr, "--cacert") {
		t.Errorf("globals in the verb's usage:\n%s", r.stderr)
	}
	if r := e.run("", "users", "list", "-h"); r.code != 0 || !strings.Contains(r.stdout, "usage: gatehouse admin users list") {
		t.Errorf("-h: %+v", r)
	}
	for _, args := range [][]string{{"--help"}, {"help"}} {
		if r := e.run("", args...); r.code != 0 || !strings.Contains(r.stdout, "gatehouse admin [--url URL]") {
			t.Errorf("%v: %+v", args, r)
		}
	}
}

// Every verb in the usage; the usage in the main usage's style.
func TestUsage(t *testing.T) {
	u := Usage()
	for _, v := range verbs {
		contains(t, "usage", u, "    "+v.name)
	}
	for line := range strings.SplitSeq(strings.TrimSuffix(u, "\n"), "\n") {
		if !strings.HasPrefix(line, "  ") {
			t.Errorf("line not indented: %q", line)
		}
	}
}

func TestTLS(t *testing.T) {
	e := newEnv(t, nil)
	srv := httptest.NewUnstartedServer(e.api)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake below
	srv.StartTLS()
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	tls := &env{url: srv.URL, token: e.token}
	contains(t, "me over TLS", tls.ok(t, "--cacert", ca, "me"), "platform_admin")
	stderr := tls.fails(t, 1, "me")
	contains(t, "untrusted", stderr, "certificate", "pass --cacert FILE")
	contains(t, "bad cacert", tls.fails(t, 2, "--cacert", filepath.Join(t.TempDir(), "none.pem"), "me"), "--cacert:")
}

func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	e := &env{url: srv.URL, token: "ghat_x"}
	stderr := e.fails(t, 1, "--timeout", "100ms", "me")
	contains(t, "timeout", stderr, "GET "+srv.URL+"/api/v1/me: no answer within 100ms (--timeout)")
}

// Column widths persist across pages and only grow.
func TestTableAcrossPages(t *testing.T) {
	var b strings.Builder
	tb := newTable(&b)
	tb.row("ID", "EMAIL", "NAME")
	tb.row("1", "a@x", "")
	if err := tb.flush(); err != nil {
		t.Fatal(err)
	}
	tb.row("2", "much.longer@x", "Bo")
	tb.row("3", "c@x", "C\tD")
	tb.flush()
	tb.row("4", "d@x", "D")
	tb.flush()
	want := "" +
		"ID  EMAIL  NAME\n" +
		"1   a@x    -\n" +
		"2   much.longer@x  Bo\n" +
		"3   c@x            C\\x09D\n" +
		"4   d@x            D\n"
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// An export that stalls longer than --timeout ends with an error; one
// that streams slowly but steadily does not (the bound is per pause).
func TestExportStall(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("action") {
		case "html":
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, "<html>login</html>")
			return
		case "slow":
			w.Header().Set("Content-Type", "application/jsonl")
			for i := range 4 {
				fmt.Fprintf(w, "{\"seq\":%d}\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(100 * time.Millisecond)
			}
			return
		}
		w.Header().Set("Content-Type", "application/jsonl")
		io.WriteString(w, "{\"seq\":1}\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	e := &env{url: srv.URL, token: "ghat_x"}
	r := e.run("", "--timeout", "300ms", "audit", "export", "--org", "a")
	if r.code != 1 || r.stdout != "{\"seq\":1}\n" || !strings.Contains(r.stderr, "the stream stalled for 300ms (--timeout)") {
		t.Errorf("stall: %+v", r)
	}
	if got := e.ok(t, "--timeout", "300ms", "audit", "export", "--org", "a", "--action", "slow"); strings.Count(got, "\n") != 4 {
		t.Errorf("slow export: %q", got)
	}
	contains(t, "html", e.fails(t, 1, "audit", "export", "--org", "a", "--action", "html"), `the answer is "text/html", not the API's JSON Lines`)
}

func TestApps(t *testing.T) {
	e := newEnv(t, nil)
	e.ok(t, "orgs", "create", "--slug", "acme", "--name", "Acme")
	out := e.ok(t, "apps", "create", "--name", "Reports job", "--type", "machine", "--org", "acme", "--scope", "reports.read")
	contains(t, "create", out, "Reports job", "machine", "acme", "client_secret_basic", "shown only this once")
	secret := regexp.MustCompile(`(?m)^ghcs_[A-Za-z0-9_-]{43}$`).FindString(out)
	if secret == "" {
		t.Fatalf("no secret on a line of its own:\n%s", out)
	}
	spec := filepath.Join(t.TempDir(), "spa.json")
	if err := os.WriteFile(spec, []byte(`{"type":"spa","redirect_uris":["https://spa.example.com/"],"claims":{"plan":"org.attributes.plan"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	spa := jsonOf[appView](t, e.ok(t, "apps", "create", "--file", spec, "--name", "Dashboard", "--output", "json"))
	if spa.ClientSecret != "" || spa.Type != "spa" || spa.Name != "Dashboard" {
		t.Fatalf("spa %+v", spa)
	}
	list := jsonOf[struct{ Items []appView }](t, e.ok(t, "apps", "list", "--output", "json"))
	if len(list.Items) != 2 {
		t.Fatalf("list %+v", list)
	}
	var job string
	for _, a := range list.Items {
		if a.Type == "machine" {
			job = a.ID
		}
	}
	contains(t, "table", e.ok(t, "apps", "list"), job, spa.ID, "Reports job", "Dashboard")
	contains(t, "get", e.ok(t, "apps", "get", job), "reports.read", "api")
	rot := e.ok(t, "apps", "rotate-secret", job, "--keep-old-for", "1h")
	contains(t, "rotate", rot, "old_secret_valid_until", "shown only this once")
	if strings.Contains(rot, secret) {
		t.Error("rotation printed the old secret")
	}
	contains(t, "no secret to rotate", e.fails(t, 1, "apps", "rotate-secret", spa.ID), "409 Conflict")
	contains(t, "bad", e.fails(t, 1, "apps", "create", "--name", "x", "--type", "web", "--redirect-uri", "http://evil.example/cb"), "400", "/redirect_uris/0")
	contains(t, "usage", e.fails(t, 2, "apps", "create", "--name", "x"), "--type")
	contains(t, "delete", e.ok(t, "apps", "delete", job), "Removed app "+job)
	contains(t, "deleted twice", e.fails(t, 1, "apps", "delete", job), "404")
}
