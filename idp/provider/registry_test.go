package provider

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// clientCredentials asks for a machine token as id with secret.
func (f *fixture) clientCredentials(id, secret string) int {
	req := strings.NewReader(url.Values{"grant_type": {"client_credentials"}}.Encode())
	rec := f.postAs(id, secret, req)
	return rec.Code
}

func TestStoredClients(t *testing.T) {
	f := newFixture(t, "ES256")
	ctx := context.Background()
	now := time.Now().UTC()
	sc := store.OIDCClient{ID: "app_sync", OrgID: f.org.ID, Settings: []byte(`{"name":"Sync","type":"machine","scopes":["sync"]}`),
		SecretHash: token.ClientSecretHash("new-secret"), OldSecretHash: token.ClientSecretHash("old-secret"), OldSecretUntil: now.Add(time.Hour), CreatedAt: now, UpdatedAt: now}
	for _, c := range []store.OIDCClient{sc,
		{ID: "bot", OrgID: f.org.ID, Settings: []byte(`{"name":"Impostor","type":"machine"}`), SecretHash: token.ClientSecretHash("impostor"), CreatedAt: now},
		{ID: "app_broken", Settings: []byte(`{"type":5}`), SecretHash: token.ClientSecretHash("broken"), CreatedAt: now},
	} {
		if err := f.st.CreateOIDCClient(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.clientCredentials("app_sync", "new-secret"); got != 401 && got != 400 {
		t.Fatalf("before Reload, an unknown app: %d", got)
	}
	if err := f.p.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id, secret string
		want       int
	}{
		{"app_sync", "new-secret", 200},
		{"app_sync", "old-secret", 200}, // until OldSecretUntil
		{"app_sync", "wrong", 401},
		{"bot", "impostor", 401}, // the config file's app of that id wins
		{"bot", testSecret, 200},
		{"app_broken", "broken", 401}, // left out, not half-loaded
	} {
		if got := f.clientCredentials(c.id, c.secret); got != c.want {
			t.Errorf("%s with %q: %d, want %d", c.id, c.secret, got, c.want)
		}
	}
	// The old secret's time runs out; the app goes.
	if _, err := f.st.UpdateOIDCClient(ctx, "app_sync", func(c store.OIDCClient) (store.OIDCClient, error) {
		c.OldSecretUntil = now.Add(-time.Second)
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	_ = f.p.Reload(ctx)
	if got := f.clientCredentials("app_sync", "old-secret"); got != 401 {
		t.Errorf("an expired old secret: %d", got)
	}
	// RFC 6749 §5.2: a client that used the Authorization header hears
	// a challenge.
	rec := f.postAs("app_sync", "wrong", strings.NewReader("grant_type=client_credentials"))
	if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") == "" || !strings.Contains(rec.Body.String(), "invalid_client") {
		t.Errorf("a wrong secret: %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if err := f.st.DeleteOIDCClient(ctx, "app_sync"); err != nil {
		t.Fatal(err)
	}
	_ = f.p.Reload(ctx)
	if got := f.clientCredentials("app_sync", "new-secret"); got != 401 {
		t.Errorf("a removed app: %d", got)
	}
}
