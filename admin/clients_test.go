package admin

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

func TestClients(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.reconfigure(func(o *Options) {
		o.Clients = []config.Client{{ID: "portal", Name: "Portal", Type: "web", Secret: strings.Repeat("s", 40), AuthMethod: "client_secret_basic",
			RedirectURIs: []string{"https://app.saas.example/cb"}, Org: "a", Policy: "policies/portal.rego",
			AccessTokenLifetime: 5 * time.Minute, IDTokenLifetime: 10 * time.Minute, RefreshTokenLifetime: time.Hour}}
	})

	// A web app: Gatehouse makes its id and secret; the secret is shown
	// once and kept as its hash.
	r := h.do(t, "platform", "POST", "/clients", map[string]any{"name": "Dashboard", "type": "web", "org": "a",
		"redirect_uris": []string{"https://dash.a.example/callback"}, "claims": map[string]string{"plan": "org.attributes.plan"}})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var web NewClientView
	r.json(t, &web)
	if !strings.HasPrefix(web.ID, "app_") || !strings.HasPrefix(web.ClientSecret, token.ClientSecretPrefix) || web.OrgID != "org_a" || web.Org != "a" ||
		web.AuthMethod != "client_secret_basic" || web.AccessTokenLifetime != "5m" || web.RefreshTokenLifetime != "720h" || web.ManagedBy != "api" {
		t.Fatalf("created %+v", web)
	}
	if r.header.Get("Location") != Prefix+"/clients/"+web.ID || r.header.Get("ETag") == "" {
		t.Errorf("headers %v", r.header)
	}
	sc, err := h.st.GetOIDCClient(ctx, web.ID)
	must(t, err)
	if !bytes.Equal(sc.SecretHash, token.ClientSecretHash(web.ClientSecret)) || bytes.Contains(sc.Settings, []byte(web.ClientSecret)) {
		t.Errorf("stored %+v", sc)
	}
	if h.clientsChanged != 1 {
		t.Errorf("ClientsChanged called %d times", h.clientsChanged)
	}
	got := h.do(t, "platform", "GET", "/clients/"+web.ID, nil)
	if got.status != 200 || bytes.Contains(got.body, []byte(web.ClientSecret)) || bytes.Contains(got.body, []byte("client_secret\"")) {
		t.Errorf("get: %d %s", got.status, got.body)
	}

	// A SPA and a private_key_jwt app get no secret.
	jwks := `{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0","use":"sig"}]}`
	for _, body := range []string{
		`{"name":"SPA","type":"spa","redirect_uris":["https://spa.saas.example/"]}`,
		`{"name":"Signer","type":"machine","org":"b","auth_method":"private_key_jwt","jwks":` + jwks + `}`,
	} {
		r := h.do(t, "platform", "POST", "/clients", body)
		var v NewClientView
		r.json(t, &v)
		if r.status != 201 || v.ClientSecret != "" {
			t.Errorf("create %s: %d %s", body, r.status, r.body)
		}
	}

	// Checked as the config file's clients are, each fault at its field.
	for body, pointer := range map[string]string{
		`{"name":"x","type":"robot"}`:                                                                         "/type",
		`{"name":"x","type":"web","redirect_uris":["http://evil.example/cb"]}`:                                "/redirect_uris/0",
		`{"name":"x","type":"web","redirect_uris":["https://a.example/*"]}`:                                   "/redirect_uris/0",
		`{"name":"x","type":"spa","redirect_uris":["https://a.example/"],"auth_method":"client_secret_post"}`: "/auth_method",
		`{"name":"x","type":"machine"}`:                                                                       "/org",
		`{"name":"x","type":"machine","org":"nope"}`:                                                          "/org",
		`{"name":"x","type":"machine","org":"a","access_token_lifetime":"2h"}`:                                "/access_token_lifetime",
		`{"name":"x","type":"machine","org":"a","access_token_lifetime":"soon"}`:                              "/access_token_lifetime",
		`{"name":"x","type":"machine","org":"a","claims":{"sub":"user.id"}}`:                                  "/claims/sub",
		`{"name":"x","type":"machine","org":"a","claims":{"a/b":"user.nope"}}`:                                "/claims/a~1b",
		`{"name":"x","type":"machine","org":"a","auth_method":"private_key_jwt","jwks":{"keys":[]}}`:          "/jwks",
		`{"name":"","type":"machine","org":"a"}`:                                                              "/name",
		`{"name":"x","type":"web","redirect_uris":["https://a.example/"],"audience":"not a uri"}`:             "/audience",
		`{"name":"x","type":"web","redirect_uris":["https://a.example/"],"include_sub_orgs":true}`:            "/include_sub_orgs",
		`{"name":"x","type":"web","redirect_uris":["https://a.example/"],"secret":"mine"}`:                    "/secret",
	} {
		r := h.do(t, "platform", "POST", "/clients", body)
		if r.status != 400 {
			t.Errorf("%s: %d %s", body, r.status, r.body)
			continue
		}
		p := r.problem(t)
		found := false
		for _, e := range p.Errors {
			found = found || e.Pointer == pointer
		}
		if !found && !strings.Contains(p.Detail, pointer) {
			t.Errorf("%s: no error at %s: %s", body, pointer, r.body)
		}
	}

	// The list: the file's app (read-only, with its policy), then the API's.
	var list clientList
	h.do(t, "platform", "GET", "/clients", nil).json(t, &list)
	if len(list.Items) != 5 || list.Items[0].ID != "portal" || list.Items[0].ManagedBy != "config" || list.Items[0].Policy != "policies/portal.rego" ||
		list.Items[0].OrgID != "org_a" {
		t.Fatalf("list %+v", list.Items)
	}
	for _, w := range []struct{ method, path string }{{"PATCH", "/clients/portal"}, {"DELETE", "/clients/portal"}, {"POST", "/clients/portal/secret"}} {
		r := h.do(t, "platform", w.method, w.path, map[string]any{}, "If-Match", "*")
		if r.status != 409 || !strings.HasSuffix(r.problem(t).Type, "managed-by-config") {
			t.Errorf("%s %s on a declared app: %d %s", w.method, w.path, r.status, r.body)
		}
	}

	// A merge patch: named fields change, null removes a claim; type and
	// org are fixed; If-Match is required and must be current.
	patch := map[string]any{"name": "Dashboard 2", "claims": map[string]any{"plan": nil, "tier": "org.attributes.tier"}, "scopes": []string{"reports.read"}}
	if r := h.do(t, "platform", "PATCH", "/clients/"+web.ID, patch); r.status != 428 {
		t.Errorf("patch without If-Match: %d", r.status)
	}
	if r := h.do(t, "platform", "PATCH", "/clients/"+web.ID, patch, "If-Match", `"stale"`); r.status != 412 {
		t.Errorf("patch with a stale If-Match: %d", r.status)
	}
	r = h.do(t, "platform", "PATCH", "/clients/"+web.ID, patch, "If-Match", got.header.Get("ETag"), "Content-Type", "application/merge-patch+json")
	var patched NewClientView
	r.json(t, &patched)
	if r.status != 200 || patched.Name != "Dashboard 2" || len(patched.Claims) != 1 || patched.Claims["tier"] != "org.attributes.tier" ||
		patched.RedirectURIs[0] != "https://dash.a.example/callback" || patched.ClientSecret != "" {
		t.Fatalf("patched: %d %s", r.status, r.body)
	}
	for body, pointer := range map[string]string{`{"type":"spa"}`: "/type", `{"org":"b"}`: "/org", `{"org":null}`: "/org", `{"redirect_uris":null}`: "/redirect_uris", `{"id":"x"}`: "/id"} {
		r := h.do(t, "platform", "PATCH", "/clients/"+web.ID, body, "If-Match", "*")
		if r.status != 400 || !strings.Contains(string(r.body), pointer) {
			t.Errorf("patch %s: %d %s", body, r.status, r.body)
		}
	}
	// Switching to keys drops the secret; switching back makes a new one.
	r = h.do(t, "platform", "PATCH", "/clients/"+web.ID, `{"auth_method":"private_key_jwt","jwks":`+jwks+`}`, "If-Match", "*")
	if sc, _ := h.st.GetOIDCClient(ctx, web.ID); r.status != 200 || sc.SecretHash != nil {
		t.Fatalf("to private_key_jwt: %d %s; hash %x", r.status, r.body, sc.SecretHash)
	}
	if r := h.do(t, "platform", "POST", "/clients/"+web.ID+"/secret", nil); r.status != 409 || !strings.HasSuffix(r.problem(t).Type, "no-secret") {
		t.Errorf("rotating a key app's secret: %d %s", r.status, r.body)
	}
	r = h.do(t, "platform", "PATCH", "/clients/"+web.ID, `{"auth_method":"client_secret_post","jwks":null}`, "If-Match", "*")
	var back NewClientView
	r.json(t, &back)
	if sc, _ := h.st.GetOIDCClient(ctx, web.ID); r.status != 200 || back.ClientSecret == "" || !bytes.Equal(sc.SecretHash, token.ClientSecretHash(back.ClientSecret)) {
		t.Fatalf("back to a secret: %d %s", r.status, r.body)
	}

	// Rotation: at once, or with the old secret kept a while.
	r = h.do(t, "platform", "POST", "/clients/"+web.ID+"/secret", map[string]any{"keep_old_for": "24h"})
	var rot NewClientView
	r.json(t, &rot)
	sc, _ = h.st.GetOIDCClient(ctx, web.ID)
	if r.status != 200 || rot.ClientSecret == back.ClientSecret || !bytes.Equal(sc.SecretHash, token.ClientSecretHash(rot.ClientSecret)) ||
		!bytes.Equal(sc.OldSecretHash, token.ClientSecretHash(back.ClientSecret)) || rot.OldSecretValidUntil.IsZero() {
		t.Fatalf("rotate keeping the old: %d %s", r.status, r.body)
	}
	r = h.do(t, "platform", "POST", "/clients/"+web.ID+"/secret", nil)
	if sc, _ := h.st.GetOIDCClient(ctx, web.ID); r.status != 200 || sc.OldSecretHash != nil {
		t.Errorf("rotate at once: %d %s", r.status, r.body)
	}
	for _, body := range []string{`{"keep_old_for":"8d"}`, `{"keep_old_for":"200h"}`, `{"keep_old_for":"-1s"}`, `{"keep":"1h"}`} {
		if r := h.do(t, "platform", "POST", "/clients/"+web.ID+"/secret", body); r.status != 400 {
			t.Errorf("rotate %s: %d", body, r.status)
		}
	}

	// Removal, audited where the app's org looks.
	if r := h.do(t, "platform", "DELETE", "/clients/"+web.ID, nil); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := h.do(t, "platform", "GET", "/clients/"+web.ID, nil); r.status != 404 {
		t.Errorf("get after delete: %d", r.status)
	}
	for _, action := range []string{"client.create", "client.update", "client.secret.rotate", "client.delete"} {
		ev, err := h.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Action: action, Target: web.ID})
		must(t, err)
		if len(ev) == 0 || strings.Contains(ev[0].Details["after"]+ev[0].Details["before"], token.ClientSecretPrefix) {
			t.Errorf("%s: %+v", action, ev)
		}
	}
	// An app goes with its org.
	must(t, h.st.DeleteOrg(ctx, "org_a1"))
	if r := h.do(t, "platform", "DELETE", "/orgs/a", nil); r.status != 204 {
		t.Fatalf("delete org: %d %s", r.status, r.body)
	}
	if _, err := h.st.GetOIDCClient(ctx, testApp); err == nil {
		t.Error("the org's app outlived it")
	}
}
