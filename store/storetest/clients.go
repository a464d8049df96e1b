package storetest

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

func newOIDCClient(id, orgID string) store.OIDCClient {
	return store.OIDCClient{ID: id, OrgID: orgID, Settings: json.RawMessage(`{"name":"App ` + id + `"}`),
		SecretHash: []byte("hash-" + id), CreatedAt: base, UpdatedAt: base}
}

func testOIDCClients(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, o := range []string{"o1", "o2"} {
		mustOK(t, s.CreateOrg(ctx, newOrg(o)))
	}
	shared, a1, a2, b := newOIDCClient("app-shared", ""), newOIDCClient("app-1", "o1"), newOIDCClient("app-2", "o1"), newOIDCClient("app-b", "o2")
	for _, c := range []store.OIDCClient{shared, a1, a2, b} {
		mustOK(t, s.CreateOIDCClient(ctx, c))
	}
	list := func() []string {
		t.Helper()
		l, err := s.ListOIDCClients(ctx)
		mustOK(t, err)
		var ids []string
		for _, c := range l {
			ids = append(ids, c.ID)
		}
		return ids
	}
	mustEqual(t, []string{"app-1", "app-2", "app-b", "app-shared"}, list())
	got, err := s.GetOIDCClient(ctx, "app-1")
	mustOK(t, err)
	mustEqual(t, a1, got)

	// Refused, changing nothing: a taken ID, a missing org, no ID.
	for name, c := range map[string]store.OIDCClient{
		"id": newOIDCClient("app-1", "o2"), "org": newOIDCClient("app-x", "missing"), "no id": newOIDCClient("", ""),
	} {
		if err := s.CreateOIDCClient(ctx, c); err == nil {
			t.Errorf("create refused for %s: no error", name)
		}
	}
	mustEqual(t, []string{"app-1", "app-2", "app-b", "app-shared"}, list())

	// Updates: settings and secrets change; the ID and the org do not.
	up, err := s.UpdateOIDCClient(ctx, "app-1", func(c store.OIDCClient) (store.OIDCClient, error) {
		c.Settings = json.RawMessage(`{"name":"Renamed"}`)
		c.OldSecretHash, c.OldSecretUntil, c.SecretHash = c.SecretHash, base.Add(time.Hour), []byte("new")
		c.UpdatedAt = base.Add(time.Minute)
		return c, nil
	})
	mustOK(t, err)
	got, err = s.GetOIDCClient(ctx, "app-1")
	mustOK(t, err)
	mustEqual(t, up, got)
	if !strings.Contains(string(got.Settings), "Renamed") || string(got.OldSecretHash) != "hash-app-1" {
		t.Fatalf("update not kept: %+v", got)
	}
	for name, fn := range map[string]func(store.OIDCClient) store.OIDCClient{
		"id":  func(c store.OIDCClient) store.OIDCClient { c.ID = "other"; return c },
		"org": func(c store.OIDCClient) store.OIDCClient { c.OrgID = "o2"; return c },
	} {
		if _, err := s.UpdateOIDCClient(ctx, "app-1", func(c store.OIDCClient) (store.OIDCClient, error) { return fn(c), nil }); err == nil {
			t.Errorf("update changing the %s: no error", name)
		}
	}
	_, err = s.UpdateOIDCClient(ctx, "missing", func(c store.OIDCClient) (store.OIDCClient, error) { return c, nil })
	mustIs(t, err, store.ErrNotFound)

	mustOK(t, s.DeleteOIDCClient(ctx, "app-2"))
	mustIs(t, s.DeleteOIDCClient(ctx, "app-2"), store.ErrNotFound)
	_, err = s.GetOIDCClient(ctx, "app-2")
	mustIs(t, err, store.ErrNotFound)

	// An org's apps go with it; the shared one and other orgs' stay.
	mustOK(t, s.DeleteOrg(ctx, "o1"))
	mustEqual(t, []string{"app-b", "app-shared"}, list())
	if _, err := s.GetOIDCClient(ctx, "app-1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("app of a deleted org: %v", err)
	}
	// A new org under the old one's ID is not its owner: nothing comes back.
	mustOK(t, s.CreateOrg(ctx, newOrg("o1")))
	mustEqual(t, []string{"app-b", "app-shared"}, list())
}
