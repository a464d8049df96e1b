package idp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alexedwards/argon2id"
	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/internal/clientip"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore"
	"github.com/gatehouse/gatehouse/store/pgstore"
	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// instant is a redirect connection that answers at once with a fixed
// identity: it stands in for the protocol, whose cost is measured with
// real responses by idp/oidc's BenchmarkCallback and idp/saml's
// BenchmarkACS.
type instant struct{ id connection.Identity }

func (i instant) Begin(_ context.Context, req connection.BeginRequest) (string, []byte, error) {
	return "https://idp.example/auth?state=" + req.State, []byte(`{}`), nil
}
func (i instant) Finish(context.Context, *http.Request, connection.BeginRequest, []byte) (connection.Identity, error) {
	return i.id, nil
}

// BenchmarkFederatedSignIn is Gatehouse's side of one returning person's
// federated sign-in, on each store as deployed (Badger on disk with synced
// writes; PostgreSQL on a throwaway cluster, with the sign-in budgets
// counted in it as several nodes do): taking the single-use flow, the
// browser check, provisioning (user and membership read, membership
// update when it changed), the session, the audit entry and the hand-off ticket to the
// app's host. Each sign-in comes from an address of its own. Add the
// protocol's cost (BenchmarkCallback, BenchmarkACS) for logins per second.
func BenchmarkFederatedSignIn(b *testing.B) {
	for _, be := range signInBackends {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			b.Cleanup(func() { st.Close() })
			benchFederatedSignIn(b, st, be.shared)
		})
	}
}

// BenchmarkPasswordSignIn is Gatehouse's side of a password sign-in (the
// POST of the org's sign-in form) on each store as deployed, without the
// deliberate cost of argon2id: the member's hash uses argon2id's cheapest
// parameters. The sign-in budgets, the person and membership read, the
// session, the audit event, the known-device cookie and the hand-off
// ticket are all in it. Each sign-in comes from an address of its own,
// by one of 256 people.
func BenchmarkPasswordSignIn(b *testing.B) {
	for _, be := range signInBackends {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			b.Cleanup(func() { st.Close() })
			ctx := context.Background()
			org := store.Org{ID: "org_acme", Slug: "acme", Name: "Acme", EmailDomains: []string{"acme.example"},
				Connection: store.Connection{Type: "password"}}
			if err := st.CreateOrg(ctx, org); err != nil {
				b.Fatal(err)
			}
			cheap, err := argon2id.CreateHash("ann-password", &argon2id.Params{Memory: 8, Iterations: 1, Parallelism: 1, SaltLength: 16, KeyLength: 32})
			if err != nil {
				b.Fatal(err)
			}
			// People signing in at once are different people: one account
			// has a budget of sign-ins in flight (parallel guesses).
			const people = 256
			for i := range people {
				id := fmt.Sprintf("usr_%d", i)
				if err := st.CreateUser(ctx, store.User{ID: id, Email: fmt.Sprintf("p%d@acme.example", i), Name: "P"}); err != nil {
					b.Fatal(err)
				}
				if err := st.CreateMembership(ctx, store.Membership{UserID: id, OrgID: "org_acme", Roles: []string{"member"}, PasswordHash: cheap}); err != nil {
					b.Fatal(err)
				}
			}
			h, o := signInHandler(b, st, be.shared, map[string]connection.Factory{"password": password.Open})
			var addrs atomic.Uint32
			signIn := func(b *testing.B) {
				n := addrs.Add(1)
				req := httptest.NewRequest("POST", "http://auth.example/.gatehouse/login?state="+appState(n), nil)
				req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:40000", byte(n>>16), byte(n>>8), byte(n))
				rec := httptest.NewRecorder()
				h.passwordLogin(rec, req, o, fmt.Sprintf("p%d@acme.example", n%people), "ann-password", "http://app.example/x")
				if rec.Code != http.StatusSeeOther || !strings.Contains(rec.Header().Get("Location"), "/.gatehouse/handoff") {
					b.Fatalf("sign-in: %d %s %s", rec.Code, rec.Header().Get("Location"), rec.Body)
				}
			}
			runSignIns(b, signIn)
		})
	}
}

// signInBackends are the stores sign-ins are measured on.
var signInBackends = []struct {
	name   string
	shared bool // sign-in budgets in the store (several nodes)
	open   func(b *testing.B) store.Store
}{
	{"badger", false, func(b *testing.B) store.Store {
		st, err := badgerstore.Open(b.TempDir(), badgerstore.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			b.Fatal(err)
		}
		return st
	}},
	{"postgres", true, func(b *testing.B) store.Store {
		st, err := pgstore.Open(context.Background(), pgtest.NewDurableCluster(b).NewDatabase(b), pgstore.Options{})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}},
}

// signInHandler is a Handler on st with the given connection types, and
// org_acme from its directory.
func signInHandler(b *testing.B, st store.Store, shared bool, factories map[string]connection.Factory) (*Handler, *store.Org) {
	ctx := context.Background()
	dir, _ := NewDirectory(ctx, st, slog.New(slog.DiscardHandler))
	key := make([]byte, 32)
	rand.Read(key)
	sm, err := session.New(st, key, session.Options{Lifetime: time.Hour, IdleTimeout: time.Hour, RecheckInterval: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := url.Parse("http://auth.example")
	conns := NewConnections(factories, connection.Deps{Store: st, SignInURL: *pub})
	ips, _ := clientip.New(nil)
	h := New(Options{Store: st, Sessions: sm, Orgs: dir, Connections: conns, PublicURL: pub, ClientIP: ips, Metrics: telemetry.New(),
		Logger: slog.New(slog.DiscardHandler), CSRFKey: key, Serves: func(string) bool { return true }, RouteHost: func(string) bool { return true },
		SharedThrottles: shared, MaxFailures: 5, MaxFailuresPerAddress: 20, FailureWindow: 15 * time.Minute}) // the config's defaults
	o, ok := dir.ByID("org_acme")
	if !ok {
		b.Fatal("no org_acme")
	}
	return h, o
}

// appState is a state cookie's value as an app's proxy sends it (32
// characters), distinct per sign-in.
func appState(n uint32) string { return fmt.Sprintf("state%027d", n) }

// runSignIns measures signIn one at a time, then 16 at once.
func runSignIns(b *testing.B, signIn func(*testing.B)) {
	b.Run("sequential", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			signIn(b)
		}
	})
	// Many people signing in at once: Badger commits their synced writes
	// together; PostgreSQL runs them on its connections.
	b.Run("parallel-16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				signIn(b)
			}
		})
	})
}

func benchFederatedSignIn(b *testing.B, st store.Store, shared bool) {
	ctx := context.Background()
	org := store.Org{ID: "org_acme", Slug: "acme", Name: "Acme", EmailDomains: []string{"acme.example"},
		Connection: store.Connection{Type: "bench", Config: []byte(`{}`)}}
	if err := st.CreateOrg(ctx, org); err != nil {
		b.Fatal(err)
	}
	id := connection.Identity{Issuer: "https://idp.example", Subject: "s1", Email: "ann@acme.example", EmailVerified: true, Name: "Ann",
		Groups: []string{"eng"}, Claims: map[string][]string{}}
	h, o := signInHandler(b, st, shared, map[string]connection.Factory{"bench": func(context.Context, json.RawMessage, connection.Deps) (any, error) { return instant{id}, nil }})
	var addrs atomic.Uint32
	signIn := func(b *testing.B) {
		n := addrs.Add(1)
		addr := fmt.Sprintf("10.%d.%d.%d:40000", byte(n>>16), byte(n>>8), byte(n))
		// The browser's visit to the sign-in page starts the flow...
		rec := httptest.NewRecorder()
		// (sent by the app's proxy with its state, so the sign-in ends
		// with a hand-off ticket for the app's host)...
		req := httptest.NewRequest("GET", "http://auth.example/.gatehouse/login?state="+appState(n), nil)
		req.RemoteAddr = addr
		h.beginRedirect(rec, req, o, o, instant{id}, "http://app.example/x", "", "")
		if rec.Code != http.StatusSeeOther {
			b.Fatalf("begin: %d %s", rec.Code, rec.Body)
		}
		loc, _ := url.Parse(rec.Header().Get("Location"))
		c := rec.Result().Cookies()[0]
		// ...and, back from the IdP, the callback finishes it.
		req = httptest.NewRequest("GET", "http://auth.example/.gatehouse/callback?code=x&state="+loc.Query().Get("state"), nil)
		req.RemoteAddr = addr
		req.AddCookie(c)
		rec = httptest.NewRecorder()
		h.callback(rec, req)
		if rec.Code != http.StatusSeeOther || !strings.Contains(rec.Header().Get("Location"), "/.gatehouse/handoff") {
			b.Fatalf("callback: %d %s %s", rec.Code, rec.Header().Get("Location"), rec.Body)
		}
	}
	runSignIns(b, signIn)
}

func TestFlowStartsThrottled(t *testing.T) {
	org := store.Org{ID: "org_acme", Slug: "acme", Name: "Acme", EmailDomains: []string{"acme.example"},
		Connection: store.Connection{Type: "oidc", Config: []byte(`{}`)}}
	h, _ := provisionFixture(t, org)
	ips, _ := clientip.New(nil)
	h.o.ClientIP, h.o.Metrics, h.o.PublicURL = ips, telemetry.New(), &url.URL{Scheme: "http", Host: "auth.example"}
	h.flowStarts = newThrottle(2, time.Minute)
	o, _ := h.o.Orgs.ByID("org_acme")
	codes := []int{}
	for range 3 {
		rec := httptest.NewRecorder()
		h.beginRedirect(rec, httptest.NewRequest("GET", "http://auth.example/.gatehouse/login", nil), o, o, instant{}, "", "", "")
		codes = append(codes, rec.Code)
	}
	if codes[0] != http.StatusSeeOther || codes[1] != http.StatusSeeOther || codes[2] != http.StatusTooManyRequests {
		t.Fatalf("flow starts from one address: %v", codes)
	}
}
