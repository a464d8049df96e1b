package idp

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/telemetry"
	"github.com/gatehouse/gatehouse/store"
)

// The per-org cache opens a connection once, again when the org's
// connection changes, and retries a failed open only after retryOpen.
func TestConnectionCache(t *testing.T) {
	var opens atomic.Int32
	failing := atomic.Bool{}
	now := time.Unix(1_800_000_000, 0)
	conns := NewConnections(map[string]connection.Factory{"t": func(_ context.Context, raw json.RawMessage, _ connection.Deps) (any, error) {
		opens.Add(1)
		if failing.Load() {
			return nil, errors.New("idp down")
		}
		return string(raw), nil
	}}, connection.Deps{Now: func() time.Time { return now }})
	org := &store.Org{ID: "org_a", Slug: "a", Connection: store.Connection{Type: "t", Config: []byte(`"v1"`)}}
	get := func() (any, error) { return conns.Get(context.Background(), org) }
	for range 3 {
		if v, err := get(); err != nil || v != `"v1"` {
			t.Fatalf("get: %v %v", v, err)
		}
	}
	if opens.Load() != 1 {
		t.Fatalf("opened %d times for one config", opens.Load())
	}
	org.Connection.Config = []byte(`"v2"`)
	if v, _ := get(); v != `"v2"` || opens.Load() != 2 {
		t.Fatalf("after a change: %v, %d opens", v, opens.Load())
	}
	org.LoginDomain = "login.a.example" // the SP's endpoints move with it
	if get(); opens.Load() != 3 {
		t.Fatalf("login domain change did not reopen (%d opens)", opens.Load())
	}
	failing.Store(true)
	org.Connection.Config = []byte(`"v3"`)
	if _, err := get(); err == nil {
		t.Fatal("failed open not reported")
	}
	get()
	if opens.Load() != 4 {
		t.Fatalf("failed open retried at once (%d opens)", opens.Load())
	}
	failing.Store(false)
	now = now.Add(retryOpen)
	if v, err := get(); err != nil || v != `"v3"` || opens.Load() != 5 {
		t.Fatalf("after retryOpen: %v %v, %d opens", v, err, opens.Load())
	}
}

// Every failure kind gets a plain page with the right status, a message a
// person can act on and a reference, and a log line with the exact reason.
func TestSignInErrorPages(t *testing.T) {
	var logs strings.Builder
	h := &Handler{o: Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Metrics: telemetry.New(), PublicURL: &url.URL{Scheme: "http", Host: "auth.example"}}}
	org := &store.Org{Slug: "acme"}
	tests := []struct {
		kind   connection.Kind
		status int
		says   string
	}{
		{connection.KindUnreachable, http.StatusBadGateway, "is not answering"},
		{connection.KindExpired, http.StatusBadRequest, "clocks of your identity provider"},
		{connection.KindInvalid, http.StatusBadRequest, "could not be verified"},
		{connection.KindCanceled, http.StatusForbidden, "did not sign you in"},
		{connection.KindUnknownUser, http.StatusForbidden, "do not have an account"},
		{connection.KindWrongDomain, http.StatusForbidden, "email address this organization does not use"},
		{connection.KindDenied, http.StatusForbidden, "assign you a group or role"},
		{connection.KindInternal, http.StatusInternalServerError, "on our side"},
	}
	for _, tt := range tests {
		logs.Reset()
		rec := httptest.NewRecorder()
		reason := "exact reason " + tt.says
		h.signInError(rec, httptest.NewRequest("GET", "http://auth.example/.gatehouse/callback", nil), org, "callback", connection.Errorf(tt.kind, "%s", reason))
		body := rec.Body.String()
		if rec.Code != tt.status || !strings.Contains(body, tt.says) || !strings.Contains(body, "Reference") {
			t.Errorf("kind %d: %d\n%s", tt.kind, rec.Code, body)
		}
		if strings.Contains(body, "exact reason") {
			t.Errorf("kind %d: the log's reason is on the page", tt.kind)
		}
		if !strings.Contains(logs.String(), reason) || !strings.Contains(logs.String(), `"ref":`) {
			t.Errorf("kind %d: log %s", tt.kind, logs.String())
		}
	}
}
