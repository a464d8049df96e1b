package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/png"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// The isolation table: every operation of the OpenAPI document × every
// kind of caller × an object of the caller's own org tree and one of
// another org, each with the status it must get. The operations come
// from the document, so an endpoint added without a row here fails.

// principals, with the orgs their rights cover and their role there.
type principalSpec struct {
	name  string
	scope []string // org slugs; nil: every org (platform)
	role  string   // "platform", "admin", "auditor", "" (member), "none"
	token bool     // calls with an API token (no sessions of its own)
}

var principals = []principalSpec{
	{"platform", nil, "platform", true},
	{"admin-a", []string{"a", "a1"}, "admin", false},
	{"admin-a1", []string{"a1"}, "admin", false},
	{"auditor-a", []string{"a", "a1"}, "auditor", true},
	{"member-a", []string{"a", "a1"}, "", false},
	{"admin-b", []string{"b"}, "admin", false},
	{"anonymous", nil, "none", false},
	{"expired", nil, "none", true},
}

// isoRow says how to call one operation on a target ("own": org a's
// tree, "other": org b) and what success looks like.
type isoRow struct {
	ok int
	// org is the org the call acts on for a target (default a / b).
	org func(target string) string
	// params fills the path's other parameters.
	params func(h *harness, who, target string) map[string]string
	body   func(target string) any
	// expect overrides the derived status (0: derive).
	expect func(who, target string, derived int) int
	// headers are sent with the call (name, value, ...).
	headers []string
}

func kindParam(*harness, string, string) map[string]string {
	return map[string]string{"kind": "invitation"}
}

func invitationParam(h *harness, _, target string) map[string]string {
	return map[string]string{"invitation": h.invitationIDs[orgOf(target)]}
}

func orgOf(target string) string {
	if target == "own" {
		return "a"
	}
	return "b"
}

func userParam(h *harness, _, target string) map[string]string {
	return map[string]string{"user": h.users["user-"+orgOf(target)].ID}
}

// withWebhooks gives both orgs an audit webhook to read or remove.
func withWebhooks(h *harness, _, _ string) map[string]string {
	for _, id := range []string{"org_a", "org_b"} {
		_, err := h.st.UpdateOrg(context.Background(), id, func(o store.Org) (store.Org, error) {
			o.AuditWebhook = &store.AuditWebhook{URL: "https://siem.example.com/" + id, Secret: NewWebhookSecret(), CreatedAt: time.Now()}
			return o, nil
		})
		must(h.t, err)
	}
	return nil
}

const testPolicy = "package gatehouse.authz\n\ndefault allow := false\n\nallow if input.user.email != \"\"\n"

// withBranding gives every org a logo of its own.
func withBranding(h *harness, _, _ string) map[string]string {
	for _, id := range []string{"org_a", "org_a1", "org_b"} {
		_, err := h.st.UpdateOrg(context.Background(), id, func(o store.Org) (store.Org, error) {
			o.Branding = &store.Branding{Logo: "0123.png"}
			return o, nil
		})
		must(h.t, err)
	}
	return nil
}

// tinyPNG is a real 1×1 PNG.
func tinyPNG() []byte {
	var b bytes.Buffer
	_ = png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 1, 1)))
	return b.Bytes()
}

// withPolicies gives both orgs a policy of their own to remove.
func withPolicies(h *harness, _, _ string) map[string]string {
	for _, id := range []string{"org_a", "org_a1", "org_b"} {
		_, err := h.st.UpdateOrg(context.Background(), id, func(o store.Org) (store.Org, error) {
			o.Policy = []store.PolicyModule{{Name: "authz.rego", Text: testPolicy}}
			return o, nil
		})
		must(h.t, err)
	}
	return nil
}

var isolationRows = map[string]isoRow{
	"getOpenAPI": {ok: 200},
	"getMe":      {ok: 200},
	"listMySessions": {ok: 200, expect: func(who, _ string, d int) int {
		if d == 200 && (who == "platform" || who == "auditor-a") {
			return 403 // a token has no sessions
		}
		return d
	}},
	"revokeMySession": {ok: 204,
		params: func(h *harness, who, target string) map[string]string {
			if target == "own" && h.sessionIDs[who] != "" {
				return map[string]string{"session": h.sessionIDs[who]}
			}
			return map[string]string{"session": h.sessionIDs["user-b"]}
		},
		expect: func(who, target string, d int) int {
			switch {
			case d != 204:
				return d
			case who == "platform" || who == "auditor-a":
				return 403
			case target == "other":
				return 404 // someone else's session does not exist for you
			}
			return d
		}},

	"listOrgs": {ok: 200},
	"createOrg": {ok: 201,
		body: func(target string) any {
			return map[string]any{"slug": "new-" + orgOf(target), "name": "New", "parent": orgOf(target)}
		},
		expect: func(who, _ string, d int) int {
			switch {
			case who == "member-a" || who == "auditor-a":
				return 403 // not an admin anywhere: refused before the parent is read
			case d == 404:
				return 400 // a parent out of reach is no such org: a field error
			}
			return d
		}},
	"getOrg":    {ok: 200},
	"updateOrg": {ok: 200, body: func(string) any { return map[string]any{"name": "Renamed"} }},
	"deleteOrg": {ok: 204,
		org: func(target string) string {
			if target == "own" {
				return "a1" // a has a sub-org
			}
			return "b"
		},
		expect: func(who, target string, d int) int {
			if d == 204 && (who == "admin-a1" && target == "own" || who == "admin-b" && target == "other") {
				return 403 // an org's admins do not delete their own org
			}
			return d
		}},

	"listUsers":          {ok: 200},
	"createUser":         {ok: 201, body: func(target string) any { return map[string]any{"email": "new@" + orgOf(target) + ".example"} }},
	"getUser":            {ok: 200, params: userParam},
	"updateUser":         {ok: 200, params: userParam, body: func(string) any { return map[string]any{"roles": []string{"viewer"}} }},
	"deleteUser":         {ok: 204, params: userParam},
	"listUserSessions":   {ok: 200, params: userParam},
	"revokeUserSessions": {ok: 204, params: userParam},
	"revokeSession": {ok: 204, params: func(h *harness, _, target string) map[string]string {
		return map[string]string{"session": h.sessionIDs["user-"+orgOf(target)]}
	}},

	"listInvitations":  {ok: 200},
	"createInvitation": {ok: 201, body: func(target string) any { return map[string]any{"email": "new@" + orgOf(target) + ".example"} }},
	"getInvitation":    {ok: 200, params: invitationParam},
	"revokeInvitation": {ok: 204, params: invitationParam},
	"resendInvitation": {ok: 200, params: invitationParam},

	"listOrgTokens":  {ok: 200},
	"createOrgToken": {ok: 201, body: func(string) any { return map[string]any{"name": "ci", "role": "auditor"} }},
	"getOrgToken": {ok: 200, params: func(h *harness, _, target string) map[string]string {
		return map[string]string{"token": h.tokenIDs[orgOf(target)]}
	}},
	"revokeOrgToken": {ok: 204, params: func(h *harness, _, target string) map[string]string {
		return map[string]string{"token": h.tokenIDs[orgOf(target)]}
	}},

	"getConnection":  {ok: 200},
	"setConnection":  {ok: 200, body: func(string) any { return map[string]any{"type": "password"} }},
	"testConnection": {ok: 200},
	"rotateSAMLKey": {ok: 200, params: func(h *harness, _, _ string) map[string]string {
		for _, id := range []string{"org_a", "org_b"} {
			_, err := h.st.UpdateOrg(context.Background(), id, func(o store.Org) (store.Org, error) {
				o.Connection = store.Connection{Type: "saml", Config: []byte(`{"metadata_url":"https://idp.example.com/md"}`)}
				return o, nil
			})
			must(h.t, err)
		}
		return nil
	}},
	"listDomains": {ok: 200},
	"addDomain": {ok: 201, body: func(target string) any {
		return map[string]any{"name": "login." + orgOf(target) + "-corp.example", "kind": "login"}
	}, expect: func(who, _ string, d int) int {
		if d == 201 && who != "platform" {
			return 403 // the harness does not verify domains: only platform admins add them
		}
		return d
	}},
	"removeDomain": {ok: 204, params: func(h *harness, _, target string) map[string]string {
		return map[string]string{"domain": orgOf(target) + ".example"}
	}},
	"getBranding":    {ok: 200},
	"updateBranding": {ok: 200, body: func(string) any { return map[string]any{"colors": map[string]string{"primary": "#0a6b2d"}} }},
	"deleteBranding": {ok: 204, params: withBranding},
	"putBrandingFile": {ok: 200, params: func(*harness, string, string) map[string]string { return map[string]string{"asset": "logo"} },
		body: func(string) any { return tinyPNG() }, headers: []string{"Content-Type", "image/png"}},
	"deleteBrandingFile": {ok: 204, params: func(h *harness, who, target string) map[string]string {
		withBranding(h, who, target)
		return map[string]string{"asset": "logo"}
	}},
	"listTemplates": {ok: 200},
	"setTemplate": {ok: 200, params: kindParam, body: func(string) any {
		return map[string]any{"subject": "Join {{.Org.Name}}"}
	}},
	"deleteTemplate": {ok: 204, params: func(h *harness, who, target string) map[string]string {
		for _, id := range []string{"org_a", "org_a1", "org_b"} {
			_, err := h.st.UpdateOrg(context.Background(), id, func(o store.Org) (store.Org, error) {
				o.Notifications = map[string]store.MessageTemplate{"invitation": {Subject: "Join us"}}
				return o, nil
			})
			must(h.t, err)
		}
		return kindParam(h, who, target)
	}},
	"getPolicy": {ok: 200},
	"setPolicy": {ok: 200, body: func(string) any {
		return map[string]any{"modules": []map[string]string{{"name": "authz.rego", "text": testPolicy}}}
	}},
	"deletePolicy":       {ok: 204, params: withPolicies},
	"listAudit":          {ok: 200},
	"exportAudit":        {ok: 200},
	"getAuditWebhook":    {ok: 200, params: withWebhooks},
	"setAuditWebhook":    {ok: 200, body: func(string) any { return map[string]any{"url": "http://127.0.0.1:9/hook"} }},
	"deleteAuditWebhook": {ok: 204, params: withWebhooks},

	"listAllAudit":        {ok: 200},
	"listPlatformTokens":  {ok: 200},
	"createPlatformToken": {ok: 201, body: func(string) any { return map[string]any{"name": "ops", "role": "platform_admin"} }},
	"revokePlatformToken": {ok: 204, params: func(h *harness, _, _ string) map[string]string {
		return map[string]string{"token": h.tokenIDs["platform"]}
	}},

	"resetUserFactors": {ok: 200, params: userParam},
	"listClients":      {ok: 200},
	"createClient": {ok: 201, body: func(target string) any {
		return map[string]any{"name": "Sync", "type": "machine", "org": orgOf(target)}
	}},
	"getClient":          {ok: 200, params: clientParam},
	"updateClient":       {ok: 200, params: clientParam, body: func(string) any { return map[string]any{"name": "Renamed"} }},
	"deleteClient":       {ok: 204, params: clientParam},
	"rotateClientSecret": {ok: 200, params: clientParam},
}

func clientParam(*harness, string, string) map[string]string {
	return map[string]string{"client": testApp}
}

// operation is one operation of the OpenAPI document.
type operation struct {
	id, method, path, need string
}

func documentOperations(t *testing.T) []operation {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	var ops []operation
	for path, item := range doc.Paths {
		for method, raw := range item {
			if !slices.Contains([]string{"get", "post", "put", "patch", "delete"}, method) {
				continue
			}
			var op struct {
				ID   string `json:"operationId"`
				Need string `json:"x-gatehouse-need"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			ops = append(ops, operation{op.ID, strings.ToUpper(method), path, op.Need})
		}
	}
	slices.SortFunc(ops, func(a, b operation) int { return strings.Compare(a.id, b.id) })
	if len(ops) < 20 {
		t.Fatalf("the OpenAPI document has %d operations", len(ops))
	}
	return ops
}

// derive is the status the authorization rules give who on org for an
// operation needing need, succeeding with ok.
func derive(who, need, org string, hasOrg bool, ok int) int {
	p := principals[slices.IndexFunc(principals, func(p principalSpec) bool { return p.name == who })]
	if need == "none" {
		return ok
	}
	if p.role == "none" {
		return 401
	}
	rank := map[string]int{"": 0, "auditor": 1, "admin": 2, "platform": 3}[p.role]
	switch need {
	case "self":
		return ok
	case "platform":
		if p.role == "platform" {
			return ok
		}
		return 403
	}
	if hasOrg && p.scope != nil && !slices.Contains(p.scope, org) {
		return 404
	}
	if need == "read" && rank >= 1 || need == "write" && rank >= 2 {
		return ok
	}
	return 403
}

func TestIsolation(t *testing.T) {
	ops := documentOperations(t)
	for _, op := range ops {
		row, ok := isolationRows[op.id]
		if !ok {
			t.Errorf("operation %s (%s %s) has no row in the isolation table", op.id, op.method, op.path)
			continue
		}
		t.Run(op.id, func(t *testing.T) {
			for _, p := range principals {
				for _, target := range []string{"own", "other"} {
					t.Run(p.name+"/"+target, func(t *testing.T) {
						h := newHarness(t)
						org := orgOf(target)
						if row.org != nil {
							org = row.org(target)
						}
						params := map[string]string{"org": org}
						if row.params != nil {
							for k, v := range row.params(h, p.name, target) {
								params[k] = v
							}
						}
						path := strings.TrimPrefix(op.path, Prefix)
						for k, v := range params {
							path = strings.ReplaceAll(path, "{"+k+"}", v)
						}
						if strings.Contains(path, "{") {
							t.Fatalf("unfilled parameter in %s", path)
						}
						var body any
						if row.body != nil {
							body = row.body(target)
						}
						var extra []string
						if op.method == "PATCH" || op.method == "PUT" && op.id != "setAuditWebhook" {
							extra = []string{"If-Match", "*"}
						}
						extra = append(extra, row.headers...)
						bodyOrg := org
						if op.id == "createOrg" {
							bodyOrg = orgOf(target) // the parent
						}
						want := derive(p.name, op.need, bodyOrg, strings.Contains(op.path, "{org}") || op.id == "createOrg", row.ok)
						if row.expect != nil {
							want = row.expect(p.name, target, want)
						}
						r := h.do(t, p.name, op.method, path, body, extra...)
						if r.status != want {
							t.Fatalf("%s %s as %s on %s: status %d, want %d; body %s", op.method, path, p.name, target, r.status, want, r.body)
						}
						if want >= 400 {
							pb := r.problem(t)
							if pb.Status != want {
								t.Errorf("problem status %d, want %d", pb.Status, want)
							}
						}
					})
				}
			}
		})
	}
	for id := range isolationRows {
		if !slices.ContainsFunc(ops, func(o operation) bool { return o.id == id }) {
			t.Errorf("isolation row %s names no operation of the document", id)
		}
	}
}
