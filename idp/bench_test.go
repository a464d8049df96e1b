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
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
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
// update), the session, the audit entry and the hand-off ticket to the
// app's host. Each sign-in comes from an address of its own. Add the
// protocol's cost (BenchmarkCallback, BenchmarkACS) for logins per second.
func BenchmarkFederatedSignIn(b *testing.B) {
	backends := []struct {
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
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			st := be.open(b)
			b.Cleanup(func() { st.Close() })
			benchFederatedSignIn(b, st, be.shared)
		})
	}
}

func benchFederatedSignIn(b *testing.B, st store.Store, shared bool) {
	ctx := context.Background()
	org := store.Org{ID: "org_acme", Slug: "acme", Name: "Acme", EmailDomains: []string{"acme.example"},
		Connection: store.Connection{Type: "bench", Config: []byte(`{}`)}}
	if err := st.CreateOrg(ctx, org); err != nil {
		b.Fatal(err)
	}
	dir, _ := NewDirectory(ctx, st, slog.New(slog.DiscardHandler))
	key := make([]byte, 32)
	rand.Read(key)
	sm, err := session.New(st, key, session.Options{Lifetime: time.Hour, IdleTimeout: time.Hour, RecheckInterval: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	pub, _ := url.Parse("http://auth.example")
	id := connection.Identity{Issuer: "https://idp.example", Subject: "s1", Email: "ann@acme.example", EmailVerified: true, Name: "Ann",
		Groups: []string{"eng"}, Claims: map[string][]string{}}
	conns := NewConnections(map[string]connection.Factory{"bench": func(context.Context, json.RawMessage, connection.Deps) (any, error) { return instant{id}, nil }},
		connection.Deps{Store: st, SignInURL: *pub})
	ips, _ := clientip.New(nil)
	h := New(Options{Store: st, Sessions: sm, Orgs: dir, Connections: conns, PublicURL: pub, ClientIP: ips, Metrics: telemetry.New(),
		Logger: slog.New(slog.DiscardHandler), CSRFKey: key, Serves: func(string) bool { return true }, RouteHost: func(string) bool { return true },
		SharedThrottles: shared})
	o, _ := dir.ByID("org_acme")
	var addrs atomic.Uint32
	signIn := func(b *testing.B) {
		n := addrs.Add(1)
		addr := fmt.Sprintf("10.%d.%d.%d:40000", byte(n>>16), byte(n>>8), byte(n))
		// The browser's visit to the sign-in page starts the flow...
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "http://auth.example/.gatehouse/login", nil)
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
		if rec.Code != http.StatusSeeOther {
			b.Fatalf("callback: %d %s", rec.Code, rec.Body)
		}
	}
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
