package e2e

import (
	"bytes"
	"encoding/json"
	"image"
	imgpng "image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// api sends an admin API request with the browser's cookies (if any) and
// extra headers, returning the status and JSON body.
func (b *browser) api(method, u string, body any, hdr ...string) (int, http.Header, map[string]any) {
	b.t.Helper()
	var rd io.Reader
	if body != nil {
		j, _ := json.Marshal(body)
		rd = strings.NewReader(string(j))
	}
	req, _ := http.NewRequest(method, u, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	req.Header.Set("Accept", "application/json")
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(raw) > 0 && json.Unmarshal(raw, &out) != nil {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, resp.Header, out
}

var tokenRE = regexp.MustCompile(`ghat_[a-z2-7]{16}_[a-z2-7]{52}`)

// bootstrap stops g, makes a platform token with `gatehouse admin
// bootstrap` on its config, and starts it again (the file's ${ENV}
// must be in the test's environment: t.Setenv).
func (g *gatehouse) bootstrap(t *testing.T) (*gatehouse, string) {
	t.Helper()
	g.stop()
	out, err := exec.Command(binary, "admin", "bootstrap", "--config", g.cfgPath, "--name", "e2e").CombinedOutput()
	tok := tokenRE.FindString(string(out))
	if err != nil || tok == "" {
		t.Fatalf("admin bootstrap: %v\n%s", err, out)
	}
	return g.restart(t), tok
}

// mustAPI is an API call that must succeed (2xx); its JSON answer.
func (b *browser) mustAPI(method, u string, body any, hdr ...string) map[string]any {
	b.t.Helper()
	st, _, v := b.api(method, u, body, hdr...)
	if st/100 != 2 {
		b.t.Fatalf("%s %s: %d %v", method, u, st, v)
	}
	return v
}

// The admin API end to end: a platform token from `admin bootstrap`, an
// org admin's session on the org's login domain, a person created through
// the API who signs in, is suspended, and loses their open session
// within revocation_check; declared objects are read-only; the audit
// chain holds every action.
func TestAdminAPI(t *testing.T) {
	// bootstrap and the restart read the file's ${ENV} too.
	t.Setenv("ALICE_PASSWORD", "alice-pw-123")
	t.Setenv("CAROL_PASSWORD", "carol-pw-456")
	g, up := startCore(t)
	g, platform := g.bootstrap(t)
	pub := func(path string) string { return g.url("auth.localhost", "/api/v1"+path) }
	ops := g.browser(t)
	auth := []string{"Authorization", "Bearer " + platform}

	// The document is public; everything else needs credentials.
	if st, _, doc := ops.api("GET", pub("/openapi.json"), nil); st != 200 || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi.json: %d %v", st, doc["openapi"])
	}
	if st, hdr, p := ops.api("GET", pub("/orgs"), nil); st != 401 || hdr.Get("Content-Type") != "application/problem+json" || p["status"] != float64(401) {
		t.Fatalf("anonymous: %d %v", st, p)
	}
	st, _, orgs := ops.api("GET", pub("/orgs"), nil, auth...)
	if st != 200 || len(orgs["items"].([]any)) != 2 {
		t.Fatalf("orgs as platform: %d %v", st, orgs)
	}

	// alice, acme's admin (declared in the file), signs in and uses the API
	// on acme's login domain with her session.
	alice := g.browser(t)
	alice.login(g.url("app.localhost", "/"), "alice@acme.example", "alice-pw-123")
	acmeAPI := func(path string) string { return g.url("login.acme.localhost", "/api/v1/orgs/acme"+path) }
	same := []string{"Origin", "http://login.acme.localhost:" + g.port, "Sec-Fetch-Site", "same-origin"}
	st, _, me := alice.api("GET", g.url("login.acme.localhost", "/api/v1/me"), nil)
	if st != 200 || me["role"] != "admin" || me["email"] != "alice@acme.example" {
		t.Fatalf("alice /me: %d %v", st, me)
	}
	st, _, dave := alice.api("POST", acmeAPI("/users"), map[string]any{"email": "dave@acme.example", "name": "Dave", "roles": []string{"member"}, "password": "dave-long-password"}, same...)
	if st != 201 {
		t.Fatalf("create dave: %d %v", st, dave)
	}
	// Another org's objects do not exist for her.
	if st, _, p := alice.api("GET", g.url("login.acme.localhost", "/api/v1/orgs/globex/users"), nil); st != 404 {
		t.Fatalf("alice reads globex: %d %v", st, p)
	}
	// Declared people are the file's.
	st, _, list := alice.api("GET", acmeAPI("/users?q=bob"), nil)
	if st != 200 || len(list["items"].([]any)) != 1 {
		t.Fatalf("search bob: %d %v", st, list)
	}
	bob := list["items"].([]any)[0].(map[string]any)
	if st, _, p := alice.api("PATCH", acmeAPI("/users/"+bob["id"].(string)), map[string]any{"roles": []string{"admin"}}, append(same, "If-Match", "*")...); st != 409 || !strings.Contains(p["detail"].(string), g.cfgPath) {
		t.Fatalf("change declared bob: %d %v", st, p)
	}
	// A cross-site write riding on her cookie is refused.
	if st, _, p := alice.api("POST", acmeAPI("/users"), map[string]any{"email": "eve@acme.example"}, "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); st != 403 {
		t.Fatalf("cross-site write: %d %v", st, p)
	}

	// dave signs in; the upstream sees him.
	daveB := g.browser(t)
	if p := daveB.login(g.url("app.localhost", "/"), "dave@acme.example", "dave-long-password"); p.status != 200 {
		t.Fatalf("dave signs in: %d", p.status)
	}
	if r := up.last("/"); r == nil || r.Header.Get("X-Gatehouse-Email") != "dave@acme.example" {
		t.Fatal("the upstream did not see dave")
	}
	// alice suspends him; his open session dies within revocation_check.
	st, hdr, _ := alice.api("GET", acmeAPI("/users/"+dave["id"].(string)), nil)
	if st != 200 || hdr.Get("ETag") == "" {
		t.Fatalf("get dave: %d", st)
	}
	suspended := time.Now()
	if st, _, p := alice.api("PATCH", acmeAPI("/users/"+dave["id"].(string)), map[string]any{"disabled": true}, append(same, "If-Match", hdr.Get("ETag"))...); st != 200 {
		t.Fatalf("suspend dave: %d %v", st, p)
	}
	eventuallyWithin(t, 3*time.Second, "dave's session ends", func() error {
		p := daveB.get(g.url("app.localhost", "/after"))
		return holds(p.status == http.StatusFound, "dave's request after suspension: %d", p.status)
	})
	if d := time.Since(suspended); d > 3*time.Second {
		t.Fatalf("dave's session lasted %s after suspension", d)
	}
	if up.last("/after") != nil {
		t.Fatal("a suspended person's request reached the upstream")
	}

	// acme's policy is the file's.
	if st, _, _ := alice.api("PUT", acmeAPI("/policy"), map[string]any{"modules": []map[string]string{{"name": "a.rego", "text": "package gatehouse.authz\n\ndefault allow := true\n"}}}, append(same, "If-Match", "*")...); st != 409 {
		t.Fatalf("set a declared org's policy: %d", st)
	}

	// The platform token makes an org token for acme's CI; alice revokes it.
	st, _, ci := ops.api("POST", pub("/orgs/acme/tokens"), map[string]any{"name": "ci", "role": "auditor", "expires_in": "1h"}, auth...)
	if st != 201 || !tokenRE.MatchString(ci["secret"].(string)) {
		t.Fatalf("org token: %d %v", st, ci)
	}
	ciAuth := []string{"Authorization", "Bearer " + ci["secret"].(string)}
	if st, _, _ := ops.api("GET", g.url("login.acme.localhost", "/api/v1/orgs/acme/audit"), nil, ciAuth...); st != 200 {
		t.Fatalf("ci token reads audit: %d", st)
	}
	if st, _, _ := alice.api("DELETE", acmeAPI("/tokens/"+ci["id"].(string)), nil, same...); st != 204 {
		t.Fatalf("alice revokes ci: %d", st)
	}
	if st, _, _ := ops.api("GET", pub("/orgs/acme/audit"), nil, ciAuth...); st != 401 {
		t.Fatalf("revoked token: %d", st)
	}

	// The command line speaks the same API with the platform token.
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(binary, append([]string{"admin", "--url", "http://auth.localhost:" + g.port}, args...)...)
		cmd.Env = append(os.Environ(), "GATEHOUSE_TOKEN="+platform)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli("orgs", "create", "--slug", "acme-eu", "--name", "Acme EU", "--parent", "acme"); err != nil || !strings.Contains(out, "acme-eu") {
		t.Fatalf("admin orgs create: %v\n%s", err, out)
	}
	if out, err := cli("users", "list", "--org", "acme", "--output", "json"); err != nil || !strings.Contains(out, "dave@acme.example") {
		t.Fatalf("admin users list: %v\n%s", err, out)
	}
	if out, err := cli("users", "update", "--org", "acme", dave["id"].(string), "--enable"); err != nil || !strings.Contains(out, "dave@acme.example") {
		t.Fatalf("admin users update: %v\n%s", err, out)
	}
	if out, err := cli("users", "update", "--org", "acme", bob["id"].(string), "--role", "admin"); err == nil || !strings.Contains(out, "409") || !strings.Contains(out, g.cfgPath) {
		t.Fatalf("admin users update of a declared person: %v\n%s", err, out)
	}
	// A login domain added through the API serves the org's sign-in at
	// once (this deployment does not verify domains: the platform admin
	// vouches for it; org admins may not).
	eu := g.url("login.eu.localhost", "/.gatehouse/login")
	if p := ops.get(eu); p.status != http.StatusNotFound {
		t.Fatalf("login.eu.localhost before: %d", p.status)
	}
	if st, _, d := alice.api("POST", g.url("login.acme.localhost", "/api/v1/orgs/acme-eu/domains"), map[string]any{"name": "login.eu.localhost", "kind": "login"}, same...); st != 403 {
		t.Fatalf("alice adds a domain without verification: %d %v", st, d)
	}
	if st, _, d := ops.api("POST", pub("/orgs/acme-eu/domains"), map[string]any{"name": "login.eu.localhost", "kind": "login"}, auth...); st != 201 || d["record"] == nil {
		t.Fatalf("add login domain: %d %v", st, d)
	}
	eventually(t, "acme-eu's login domain served", func() error {
		p := ops.get(eu)
		return holds(p.status == 200 && strings.Contains(p.body, "Acme EU"), "login.eu.localhost: %d", p.status)
	})

	// Its branding, uploaded through the API, is on its sign-in page at once.
	var png bytes.Buffer
	_ = imgpng.Encode(&png, image.NewRGBA(image.Rect(0, 0, 2, 2)))
	req, _ := http.NewRequest("PUT", pub("/orgs/acme-eu/branding/logo"), bytes.NewReader(png.Bytes()))
	req.Header.Set("Content-Type", "image/png")
	req.Header.Set("If-Match", "*")
	req.Header.Set("Authorization", "Bearer "+platform)
	resp, err := ops.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var brand map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&brand)
	resp.Body.Close()
	logo, _ := brand["logo"].(string)
	if resp.StatusCode != 200 || logo == "" {
		t.Fatalf("upload logo: %d %v", resp.StatusCode, brand)
	}
	eventually(t, "acme-eu's logo on its sign-in page", func() error {
		p := ops.get(eu)
		return holds(strings.Contains(p.body, logo), "no %s on the page", logo)
	})
	if p := ops.get(g.url("login.eu.localhost", logo)); p.status != 200 || p.header.Get("Content-Type") != "image/png" || p.body != png.String() {
		t.Fatalf("logo served: %d %s", p.status, p.header.Get("Content-Type"))
	}

	// A policy set through the API on an org the API manages is tested,
	// stored, and compiled into the running policy set.
	policy := map[string]any{"modules": []map[string]string{
		{"name": "authz.rego", "text": "package gatehouse.authz\n\ndefault allow := false\n\nallow if input.request.path != \"/secret\"\n"},
		{"name": "authz_test.rego", "text": "package gatehouse.authz_test\n\nimport data.gatehouse.authz\n\ntest_secret if not authz.allow with input as {\"request\": {\"path\": \"/secret\"}}\n"},
	}}
	loads := func() int {
		_, _, ev := ops.api("GET", pub("/orgs/acme-eu/audit?limit=500"), nil, auth...)
		n := 0
		for _, e := range ev["items"].([]any) {
			if e.(map[string]any)["action"] == "policy.update" {
				n++
			}
		}
		return n
	}
	if st, _, p := ops.api("PUT", pub("/orgs/acme-eu/policy"), policy, append(auth, "If-Match", "*")...); st != 200 || loads() != 1 {
		t.Fatalf("set acme-eu's policy: %d %v", st, p)
	}
	if !g.logged(`"msg":"policy: loaded"`) {
		t.Fatal("no policy load")
	}
	eventually(t, "acme-eu's policy compiled in", func() error {
		logs := g.Logs()
		i := strings.LastIndex(logs, `"msg":"policy: loaded"`)
		return holds(i >= 0 && strings.Contains(logs[i:strings.Index(logs[i:], "\n")+i], `"orgs":1`), "the last policy load has no org layer")
	})
	if out, err := cli("audit", "export", "--org", "acme"); err != nil || strings.Count(out, "\n") < 5 || !strings.Contains(out, `"action":"user.update"`) {
		t.Fatalf("admin audit export: %v\n%s", err, out)
	}

	// Every action is in acme's audit trail, and the chains hold.
	st, _, events := ops.api("GET", pub("/orgs/acme/audit?limit=500"), nil, auth...)
	if st != 200 {
		t.Fatalf("audit: %d", st)
	}
	seen := map[string]int{}
	for _, e := range events["items"].([]any) {
		ev := e.(map[string]any)
		seen[ev["action"].(string)+"/"+ev["outcome"].(string)]++
	}
	for _, want := range []string{"user.create/success", "user.update/success", "token.create/success", "token.revoke/success", "login/success", "updateUser/failure", "createUser/failure"} {
		if seen[want] == 0 {
			t.Errorf("no %s event in %v", want, seen)
		}
	}
	out, err := exec.Command(binary, "audit", "verify", "--ops", "http://"+g.ops).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "acme: ") || strings.Contains(string(out), "BROKEN") {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}
