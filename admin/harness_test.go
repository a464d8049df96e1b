package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	_ "github.com/gatehouse/gatehouse/idp/protocols" // the connection schemas
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// harness is a store with three orgs (a, its sub-org a1, and b), people
// with every kind of right in them, and the API served over HTTP.
type harness struct {
	t        testing.TB
	st       store.Store
	sessions *session.Manager
	api      *API
	opts     Options
	srv      *httptest.Server
	host     string
	validate func(t testing.TB, req *http.Request, resp *http.Response, body []byte)

	orgs  map[string]store.Org  // slug → org
	users map[string]store.User // name → user
	// creds are ready-made Authorization or Cookie headers by principal.
	creds map[string]http.Header
	// objects made for the isolation table, by name.
	sessionIDs map[string]string
	tokenIDs   map[string]string
	// invitationIDs: a pending invitation of orgs a and b, made by an
	// admin of each.
	invitationIDs map[string]string
	// clientsChanged counts the API's calls of Options.ClientsChanged.
	clientsChanged int
}

// testApp is a registered machine app of org a, with secret testAppSecret.
const (
	testApp       = "app_test"
	testAppSecret = "ghcs_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"
)

func newHarness(t testing.TB) *harness {
	t.Helper()
	st := badgertest.Open(t)
	key := make([]byte, 32)
	sm, err := session.New(st, key, session.Options{RecheckInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ips, err := clientip.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, st: st, sessions: sm, orgs: map[string]store.Org{}, users: map[string]store.User{},
		creds: map[string]http.Header{}, sessionIDs: map[string]string{}, tokenIDs: map[string]string{}, invitationIDs: map[string]string{}}
	pub, _ := url.Parse("https://auth.saas.example")
	h.opts = Options{Store: st, Sessions: sm, ClientIP: ips, ConfigFile: "gatehouse.yaml", WebhooksAllowPrivate: true, PublicURL: pub,
		InviteURL: func(org *store.Org, secret string) (string, error) {
			return "https://auth.saas.example/.gatehouse/invite?org=" + org.Slug + "&token=" + secret, nil
		},
		TestConnection: func(_ context.Context, o store.Org) error {
			if o.Connection.Type == "oidc" {
				return errors.New("oidc: discovery at the issuer failed")
			}
			return nil
		},
		ClientsChanged: func(context.Context) { h.clientsChanged++ }}
	h.api = New(h.opts)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h.api.ServeHTTP(w, r) }))
	t.Cleanup(h.srv.Close)
	u, _ := url.Parse(h.srv.URL)
	h.host = u.Hostname()
	h.validate = newResponseValidator(t)

	ctx := context.Background()
	now := time.Now().UTC()
	for _, o := range []store.Org{
		{ID: "org_a", Slug: "a", Name: "A", EmailDomains: []string{"a.example"}, Connection: store.Connection{Type: "password"}},
		{ID: "org_a1", Slug: "a1", Name: "A1", ParentID: "org_a"},
		{ID: "org_b", Slug: "b", Name: "B", EmailDomains: []string{"b.example"}, Connection: store.Connection{Type: "password"}},
	} {
		o.CreatedAt, o.UpdatedAt = now, now
		must(t, st.CreateOrg(ctx, o))
		h.orgs[o.Slug] = o
	}
	// name → org slug, roles
	for _, p := range []struct{ name, org, role string }{
		{"platform", "a", ""}, {"admin-a", "a", "admin"}, {"admin-a1", "a1", "admin"}, {"auditor-a", "a", "auditor"},
		{"member-a", "a", ""}, {"admin-b", "b", "admin"}, {"user-a", "a", ""}, {"user-b", "b", ""},
	} {
		u := store.User{ID: "usr_" + strings.ReplaceAll(p.name, "-", "_"), Email: p.name + "@" + strings.TrimSuffix(p.org, "1") + ".example",
			Name: p.name, PlatformAdmin: p.name == "platform", CreatedAt: now, UpdatedAt: now}
		must(t, st.CreateUser(ctx, u))
		m := store.Membership{UserID: u.ID, OrgID: h.orgs[p.org].ID, CreatedAt: now, UpdatedAt: now}
		if p.role != "" {
			m.Roles = []string{p.role}
		}
		must(t, st.CreateMembership(ctx, m))
		h.users[p.name] = u
		s, err := sm.Create(ctx, u.ID, m.OrgID, "password", "127.0.0.1", "test")
		must(t, err)
		h.sessionIDs[p.name] = s.ID
		h.creds[p.name] = h.cookie(s)
	}
	// The platform admin calls with a platform token, the auditor with an
	// auditor token it made; the others with their sessions.
	pt, err := MintToken(ctx, st, "", store.RolePlatformAdmin, "platform", "", now, time.Hour)
	must(t, err)
	h.creds["platform"] = bearer(pt.Secret)
	at, err := MintToken(ctx, st, "org_a", store.RoleAuditor, "auditor", h.users["auditor-a"].ID, now, time.Hour)
	must(t, err)
	h.creds["auditor-a"] = bearer(at.Secret)
	et, err := MintToken(ctx, st, "", store.RolePlatformAdmin, "expired", "", now.Add(-2*time.Hour), time.Hour)
	must(t, err)
	h.creds["expired"] = bearer(et.Secret)
	h.creds["anonymous"] = http.Header{}
	// Objects to act on: tokens of each org and of the platform.
	for _, o := range []string{"a", "b"} {
		tk, err := MintToken(ctx, st, h.orgs[o].ID, store.RoleAuditor, "target", "", now, time.Hour)
		must(t, err)
		h.tokenIDs[o] = tk.ID
	}
	tk, err := MintToken(ctx, st, "", store.RolePlatformAdmin, "target", "", now, time.Hour)
	must(t, err)
	h.tokenIDs["platform"] = tk.ID
	for _, o := range []string{"a", "b"} {
		inv := store.Invitation{ID: "inv_" + o, OrgID: h.orgs[o].ID, Email: "invitee@" + o + ".example", Roles: []string{"member"},
			Hash: "hash-" + o, CreatedBy: h.users["admin-"+o].ID, Scope: h.orgs[o].ID, CreatedAt: now, SentAt: now, ExpiresAt: now.Add(time.Hour)}
		must(t, st.CreateInvitation(ctx, inv))
		h.invitationIDs[o] = inv.ID
	}
	must(t, st.CreateOIDCClient(ctx, store.OIDCClient{ID: testApp, OrgID: "org_a",
		Settings:   []byte(`{"name":"Reports job","type":"machine","auth_method":"client_secret_basic","scopes":["reports.read"]}`),
		SecretHash: token.ClientSecretHash(testAppSecret), CreatedAt: now, UpdatedAt: now}))
	return h
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func bearer(secret string) http.Header {
	return http.Header{"Authorization": {"Bearer " + secret}}
}

// cookie is the session cookie a browser holds for s on the test host.
func (h *harness) cookie(s store.Session) http.Header {
	v, err := h.sessions.Seal(h.host, s.ID, s.ExpiresAt)
	must(h.t, err)
	return http.Header{"Cookie": {h.sessions.CookieName(false) + "=" + v}}
}

// response is an API answer, validated against the OpenAPI document.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// problem decodes a problem details answer.
func (r response) problem(t testing.TB) problemBody {
	t.Helper()
	var p problemBody
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("content type %q, want application/problem+json; body %s", ct, r.body)
	}
	r.json(t, &p)
	return p
}

// do sends a request as principal who; body is JSON-encoded unless it is
// a string or nil. extra headers are added.
func (h *harness) do(t testing.TB, who, method, path string, body any, extra ...string) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		switch b := body.(type) {
		case string:
			rd = strings.NewReader(b)
		case []byte:
			rd = bytes.NewReader(b)
		default:
			j, err := json.Marshal(b)
			must(t, err)
			rd = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequest(method, h.srv.URL+Prefix+path, rd)
	must(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	cred, ok := h.creds[who]
	if !ok {
		t.Fatalf("no principal %q", who)
	}
	for k, v := range cred {
		req.Header[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := h.srv.Client().Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	h.validate(t, req, resp, b)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// reconfigure serves the API with changed options (same store).
func (h *harness) reconfigure(change func(*Options)) {
	change(&h.opts)
	h.api = New(h.opts)
}
