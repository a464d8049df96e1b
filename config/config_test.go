package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/bad/*.golden from the current output")

// testEnv is the environment every test file sees.
func testEnv(name string) (string, bool) {
	v, ok := map[string]string{
		"ALICE_PASSWORD": "alice-secret",
		"CAROL_PASSWORD": "carol-secret",
		"EMPTY":          "",
	}[name]
	return v, ok
}

func parseFile(t testing.TB, name string, getenv func(string) (string, bool)) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return Parse(data, name, getenv)
}

func TestExample(t *testing.T) {
	c, err := parseFile(t, "testdata/example.yaml", testEnv)
	if err != nil {
		t.Fatalf("example.yaml: %v", err)
	}
	if got, want := c.PublicURL, "http://auth.localhost:8080"; got != want {
		t.Errorf("public_url = %q, want %q", got, want)
	}
	if c.Store.Badger == nil || c.Store.Badger.Path != "./gatehouse-data" {
		t.Errorf("store = %+v", c.Store)
	}
	want := []Route{{
		ID:          "app",
		Host:        "app.localhost",
		PathPrefix:  "/",
		Upstream:    "http://127.0.0.1:9000",
		PublicPaths: []string{"/healthz"},
		Audience:    "app.localhost",
	}}
	if !reflect.DeepEqual(c.Routes, want) {
		t.Errorf("routes = %+v, want %+v", c.Routes, want)
	}
	if len(c.Orgs) != 2 {
		t.Fatalf("got %d orgs, want 2", len(c.Orgs))
	}
	acme := c.Orgs[0]
	if acme.Slug != "acme" || acme.Name != "Acme Corp" || acme.LoginDomain != "login.acme.localhost" ||
		!reflect.DeepEqual(acme.EmailDomains, []string{"acme.example"}) || acme.Connection.Type != "password" {
		t.Errorf("acme = %+v", acme)
	}
	if len(acme.Users) != 2 {
		t.Fatalf("acme has %d users, want 2", len(acme.Users))
	}
	if u := acme.Users[0]; u.Email != "alice@acme.example" || u.Password != "alice-secret" ||
		!reflect.DeepEqual(u.Roles, []string{"admin"}) {
		t.Errorf("alice = %+v", u)
	}
	if u := acme.Users[1]; !strings.HasPrefix(u.PasswordHash, "$argon2id$v=19$m=65536,t=1,p=2$") || u.Password != "" {
		t.Errorf("bob = %+v", u)
	}
	if u := c.Orgs[1].Users[0]; u.Password != "carol-secret" {
		t.Errorf("carol = %+v", u)
	}
}

func TestLoad(t *testing.T) {
	t.Setenv("ALICE_PASSWORD", "from-env")
	t.Setenv("CAROL_PASSWORD", "carol")
	c, err := Load("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Orgs[0].Users[0].Password; got != "from-env" {
		t.Errorf("alice's password = %q, want from-env", got)
	}

	if _, err := Load("testdata/does-not-exist.yaml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want ErrNotExist", err)
	}
}

func TestExampleWithoutEnv(t *testing.T) {
	_, err := parseFile(t, "testdata/example.yaml", func(string) (string, bool) { return "", false })
	want := `testdata/example.yaml:21:48: orgs[0].users[0].password: environment variable ALICE_PASSWORD is not set
testdata/example.yaml:29:50: orgs[1].users[0].password: environment variable CAROL_PASSWORD is not set`
	if err == nil || err.Error() != want {
		t.Fatalf("got error\n%v\nwant\n%s", err, want)
	}
	var errs *Errors
	if !errors.As(err, &errs) || len(errs.Problems) != 2 || errs.Problems[0].Path != "orgs[0].users[0].password" {
		t.Errorf("problems = %+v", errs)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(`
public_url: https://auth.example.com
store: { badger: { path: /var/lib/gatehouse } }
routes:
  - { id: a, host: a.example.com, upstream: "http://10.0.0.1" }
  - { id: b, host: b.example.com, path_prefix: /b, audience: urn:b, upstream: "http://10.0.0.2" }
`), "defaults.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		PublicURL: "https://auth.example.com",
		Listen:    "127.0.0.1:8080",
		OpsListen: "127.0.0.1:9090",
		Store:     Store{Badger: &BadgerStore{Path: "/var/lib/gatehouse"}},
		Session: Session{
			Lifetime:        12 * time.Hour,
			IdleTimeout:     time.Hour,
			CookieName:      "_gatehouse",
			RevocationCheck: 2 * time.Second,
		},
		Signing: Signing{
			Algorithm:         "ES256",
			RotationPeriod:    720 * time.Hour,
			AssertionLifetime: 5 * time.Minute,
		},
		Login: Login{MaxFailures: 5, FailureWindow: 15 * time.Minute, MaxFailuresPerAddress: 50, SAMLClockSkew: 3 * time.Minute, SAMLKeyRotation: 8760 * time.Hour}, Domains: Domains{Recheck: time.Hour},
		Server: Server{
			ReadHeaderTimeout:       10 * time.Second,
			IdleTimeout:             120 * time.Second,
			ShutdownTimeout:         30 * time.Second,
			MaxHeaderBytes:          65536,
			MaxConnectionsPerClient: 1000,
			MinBodyRate:             512,
		},
		Log:    Log{Level: "info", Format: "json"},
		Policy: Policy{Timeout: 100 * time.Millisecond, ReloadInterval: 2 * time.Second, DecisionCacheTTL: &oneSecond},
		Routes: []Route{
			{ID: "a", Host: "a.example.com", PathPrefix: "/", Upstream: "http://10.0.0.1", Audience: "a.example.com"},
			{ID: "b", Host: "b.example.com", PathPrefix: "/b", Upstream: "http://10.0.0.2", Audience: "urn:b"},
		},
	}
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
}

// TestSettings checks every setting can be set, with ${ENV} for numbers,
// booleans and durations too.
func TestSettings(t *testing.T) {
	env := map[string]string{"WINDOW": "30m", "PRESERVE": "true", "MAX": "7", "PROXY": "192.0.2.0/24"}
	c, err := Parse([]byte(`
public_url: https://auth.example.com/
listen: ":8443"
ops_listen: "[::1]:9090"
tls: { cert_file: testdata/example.yaml, key_file: testdata/example.yaml }
store: { badger: { path: /data } }
session: { lifetime: 8h, idle_timeout: 30m, cookie_name: __Host-gh, revocation_check: 5s }
signing: { algorithm: EdDSA, rotation_period: 168h, assertion_lifetime: 1m }
login: { max_failures: "${MAX}", failure_window: "${WINDOW}", max_failures_per_address: 100 }
server: { read_header_timeout: 5s, read_timeout: 1m, write_timeout: 2m, idle_timeout: 1m, shutdown_timeout: 10s, max_header_bytes: 1024 }
log: { level: debug, format: text }
trusted_proxies: [10.0.0.0/8, "${PROXY}", "2001:db8::/32"]
routes:
  - id: wiki
    host: "*.wiki.example.com"
    path_prefix: /w/
    upstream: http://wiki.internal:8080/base
    public_paths: [/w/static/, /w/favicon.ico]
    orgs: [parent, child]
    org: child
    audience: wiki
    preserve_host: ${PRESERVE}
    identity_headers: [X-Remote-User, Remote-Groups]
    pass_client_headers: [X-Forwarded-Prefix]
    upgrades: [websocket, h2c]
orgs:
  - slug: parent
    name: Parent
    email_domains: [example.com, corp.example.com]
    connection: { type: password }
  - slug: child
    name: Child
    parent: parent
    login_domain: login.child.example
    connection: { type: password }
    attributes: { region: eu, cost-centre: "42" }
    users:
      - email: Dana.Smith+tag@Example.COM
        name: Dana
        password: "p$$w0rd ${MAX:-x} $${LITERAL}"
        roles: [admin, auditor]
        groups: [ops]
`), "settings.yaml", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Login.MaxFailures != 7 || c.Login.FailureWindow != 30*time.Minute || !c.Routes[0].PreserveHost {
		t.Errorf("env-substituted settings: login %+v, preserve_host %v", c.Login, c.Routes[0].PreserveHost)
	}
	if got, want := c.TrustedProxies, []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8::/32"}; !reflect.DeepEqual(got, want) {
		t.Errorf("trusted_proxies = %q, want %q", got, want)
	}
	u := c.Orgs[1].Users[0]
	if want := "p$$w0rd 7 ${LITERAL}"; u.Password != want {
		t.Errorf("password = %q, want %q", u.Password, want)
	}
	if r := c.Routes[0]; !reflect.DeepEqual(r.PassClientHeaders, []string{"X-Forwarded-Prefix"}) || !reflect.DeepEqual(r.Upgrades, []string{"websocket", "h2c"}) {
		t.Errorf("route headers and upgrades: %+v", r)
	}
	if c.Orgs[1].Attributes["cost-centre"] != "42" || c.Session.CookieName != "__Host-gh" || c.Server.WriteTimeout != 2*time.Minute {
		t.Errorf("config = %+v", c)
	}
}

// TestEnvNoInjection checks a variable's value is only ever a string: it
// cannot add YAML structure, be expanded again or become null.
func TestEnvNoInjection(t *testing.T) {
	env := map[string]string{
		"PW":   "x\nroles: [admin]\n- { email: mallory@acme.example, password: y }",
		"NEST": "${ALICE_PASSWORD}",
		"NULL": "null",
	}
	c, err := Parse([]byte(`
public_url: http://auth.localhost
store: { badger: { path: ./data } }
orgs:
  - slug: acme
    name: Acme
    connection: { type: password }
    users:
      - email: a@acme.example
        password: ${PW}
      - { email: b@acme.example, password: "${NEST}" }
      - { email: c@acme.example, password: '${NULL}' }
`), "inject.yaml", func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	users := c.Orgs[0].Users
	if len(users) != 3 || users[0].Password != env["PW"] || users[0].Roles != nil ||
		users[1].Password != "${ALICE_PASSWORD}" || users[2].Password != "null" {
		t.Errorf("users = %+v", users)
	}
}

func TestTooLarge(t *testing.T) {
	data := []byte("public_url: http://auth.localhost\n" + strings.Repeat("# padding\n", MaxFileSize/10))
	_, err := Parse(data, "big.yaml", testEnv)
	if want := "big.yaml: file is larger than 1048576 bytes (1 MiB)"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}

	name := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(name, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(name); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load: got %v, want too large", err)
	}
}

// TestAliasBomb checks a billion-laughs document is refused quickly.
func TestAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("a00: &a00 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 30; i++ {
		b.WriteString("a" + itoa(i) + ": &a" + itoa(i) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + itoa(i-1))
		}
		b.WriteString("]\n")
	}
	b.WriteString("trusted_proxies: *a29\n")
	_, err := Parse([]byte(b.String()), "bomb.yaml", testEnv)
	if err == nil || !strings.Contains(err.Error(), "trusted_proxies: anchors and aliases are not supported") {
		t.Errorf("got %v", err)
	}
}

func itoa(i int) string { return string(rune('0'+i/10)) + string(rune('0'+i%10)) }

func TestErrorsFormat(t *testing.T) {
	e := &Errors{File: "f.yaml", Problems: []Problem{
		{Msg: "whole file"},
		{Line: 3, Msg: "no column"},
		{Path: "a.b", Line: 4, Column: 2, Msg: "m"},
	}}
	want := "f.yaml: whole file\nf.yaml:3: no column\nf.yaml:4:2: a.b: m"
	if got := e.Error(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

// TestBad checks the exact error text for each testdata/bad/*.yaml
// against its .golden file. go test -run TestBad -update rewrites them.
func TestBad(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, name := range files {
		t.Run(strings.TrimSuffix(filepath.Base(name), ".yaml"), func(t *testing.T) {
			c, err := parseFile(t, name, testEnv)
			if err == nil {
				t.Fatalf("no error; config %+v", c)
			}
			var errs *Errors
			if !errors.As(err, &errs) || c != nil {
				t.Fatalf("got (%v, %T), want (nil, *Errors)", c, err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(name, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestBad -update)", err)
			}
			if got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "alpha", "EMPTY": "", "B_2": "b", "DOLLAR": "${A}"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tt := range []struct {
		in, want string
		problems []string
	}{
		{in: "plain", want: "plain"},
		{in: "", want: ""},
		{in: "${A}", want: "alpha"},
		{in: "x${A}y${B_2}z", want: "xalphaybz"},
		{in: "${EMPTY}", want: ""},
		{in: "${DOLLAR}", want: "${A}"}, // values are not expanded again
		{in: "${UNSET:-fallback}", want: "fallback"},
		{in: "${EMPTY:-fallback}", want: "fallback"},
		{in: "${A:-fallback}", want: "alpha"},
		{in: "${UNSET:-}", want: ""},
		{in: "${UNSET:-a:-b}", want: "a:-b"},
		{in: "$${A}", want: "${A}"},
		{in: "$$${A}", want: "$${A}"},
		{in: "cost: $5", want: "cost: $5"},
		{in: "$A $", want: "$A $"},
		{in: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA", want: "$argon2id$v=19$m=65536,t=1,p=2$c2FsdA$aGFzaA"},
		{in: "{${A}}", want: "{alpha}"},
		{in: "${UNSET}", problems: []string{"environment variable UNSET is not set"}},
		{in: "${U1}${U2}", problems: []string{"environment variable U1 is not set", "environment variable U2 is not set"}},
		{in: "${}", problems: []string{`invalid environment variable reference "${}" (use ${NAME} or ${NAME:-default}; "$${" is a literal "${")`}},
		{in: "${1A}", problems: []string{`invalid environment variable reference "${1A}" (use ${NAME} or ${NAME:-default}; "$${" is a literal "${")`}},
		{in: "${A-x}", problems: []string{`invalid environment variable reference "${A-x}" (use ${NAME} or ${NAME:-default}; "$${" is a literal "${")`}},
		{in: "${A", problems: []string{`unterminated "${" (write "$${" for a literal "${")`}},
	} {
		got, problems := expandEnv(tt.in, getenv)
		if !reflect.DeepEqual(problems, tt.problems) {
			t.Errorf("expandEnv(%q) problems = %q, want %q", tt.in, problems, tt.problems)
		} else if tt.problems == nil && got != tt.want {
			t.Errorf("expandEnv(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHostNames(t *testing.T) {
	for _, tt := range []struct {
		in       string
		pattern  bool // valid as a route host
		name     bool // valid as a DNS name (email domain, login domain)
		problems string
	}{
		{in: "localhost", pattern: true, name: true},
		{in: "app.localhost", pattern: true, name: true},
		{in: "a-b.x1.example.com", pattern: true, name: true},
		{in: "xn--bcher-kva.example", pattern: true, name: true},
		{in: "*.example.com", pattern: true},
		{in: "*.localhost", pattern: true},
		{in: "", problems: "must not be empty"},
		{in: "App.localhost", problems: "must be lowercase"},
		{in: "app.localhost:8080", problems: "must not include a port"},
		{in: "127.0.0.1", problems: "must be a DNS name, not an IP address"},
		{in: "::1", problems: "must be a DNS name, not an IP address"},
		{in: "[::1]", problems: "must be a DNS name, not an IP address"},
		{in: "1.2.3", problems: "the last label must not be all digits"},
		{in: "app.localhost.", problems: `must not end with "."`},
		{in: "app..localhost", problems: "must not have an empty label"},
		{in: ".localhost", problems: "must not have an empty label"},
		{in: "-app.localhost", problems: `labels must not start or end with "-"`},
		{in: "app-.localhost", problems: `labels must not start or end with "-"`},
		{in: "app_1.localhost", problems: `must not contain '_' (use letters, digits, "-" and ".")`},
		{in: "bücher.example", problems: `must not contain 'ü' (use letters, digits, "-" and ".")`},
		{in: "a b", problems: `must not contain ' ' (use letters, digits, "-" and ".")`},
		{in: strings.Repeat("a", 64) + ".com", problems: "has a label longer than 63 characters"},
		{in: strings.Repeat("abcdefghi.", 26) + "com", problems: "is longer than 253 characters"},
		{in: "*", problems: `a wildcard must be the whole first label, as in "*.example.com"`},
		{in: "*app.example.com", problems: `a wildcard must be the whole first label, as in "*.example.com"`},
		{in: "app.*.example.com", problems: `a wildcard must be the whole first label, as in "*.example.com"`},
		{in: "*.*.example.com", problems: `a wildcard must be the whole first label, as in "*.example.com"`},
		{in: "*.Example.com", problems: "must be lowercase"},
	} {
		gotPattern := hostPatternProblem(tt.in)
		gotName := dnsNameProblem(tt.in)
		if (gotPattern == "") != tt.pattern || (gotName == "") != tt.name {
			t.Errorf("%q: hostPatternProblem = %q, dnsNameProblem = %q; want valid pattern %v, name %v",
				tt.in, gotPattern, gotName, tt.pattern, tt.name)
		}
		if tt.problems != "" && gotPattern != tt.problems {
			t.Errorf("hostPatternProblem(%q) = %q, want %q", tt.in, gotPattern, tt.problems)
		}
	}
}

func TestMatchesWildcard(t *testing.T) {
	for _, tt := range []struct {
		pattern, name string
		want          bool
	}{
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", "aexample.com", false},
		{"a.example.com", "a.example.com", false}, // exact hosts are compared elsewhere
	} {
		if got := matchesWildcard(tt.pattern, tt.name); got != tt.want {
			t.Errorf("matchesWildcard(%q, %q) = %v, want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestEmails(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"alice@acme.example", ""},
		{"Alice.Smith+tag@ACME.example", ""},
		{"o'brien@example.com", ""},
		{"alice", `must contain exactly one "@"`},
		{"alice@@acme.example", `must contain exactly one "@"`},
		{`"a@b"@acme.example`, `must contain exactly one "@"`},
		{"Alice <alice@acme.example>", "must be a plain address such as alice@example.com"},
		{"<alice@acme.example>", "must be a plain address such as alice@example.com"},
		{" alice@acme.example", "must be a plain address such as alice@example.com"},
		{"alice@acme.example (Alice)", "must be a plain address such as alice@example.com"},
		{"al ice@acme.example", "must be a plain address such as alice@example.com"},
		{"@acme.example", "must be a plain address such as alice@example.com"},
		{"alice@", "must be a plain address such as alice@example.com"},
		{"alice@[127.0.0.1]", "domain must be a DNS name, not an IP address"},
		{"alice@acme_example", `domain must not contain '_' (use letters, digits, "-" and ".")`},
		{"alice@127.0.0.1", "domain must be a DNS name, not an IP address"},
	} {
		if got := emailProblem(tt.in); got != tt.want {
			t.Errorf("emailProblem(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestPaths(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"/", ""},
		{"/api", ""},
		{"/api/", ""},
		{"/api/v1.2/x..y/.well-known", ""},
		{"/~user/a-b_c+d@e", ""},
		{"", `must start with "/"`},
		{"api", `must start with "/"`},
		{"//api", `must not contain "//"`},
		{"/api//v1", `must not contain "//"`},
		{"/api/../admin", `must not contain "." or ".." segments`},
		{"/api/..", `must not contain "." or ".." segments`},
		{"/./api", `must not contain "." or ".." segments`},
		{"/api/.", `must not contain "." or ".." segments`},
		{"/a%2fb", `must not contain "%" (write the path unescaped)`},
		{"/a;b", `must not contain ';'`},
		{`/a\b`, `must not contain '\\'`},
		{"/a?b", `must not contain '?'`},
		{"/a#b", `must not contain '#'`},
		{"/a b", "must not contain spaces or control characters"},
		{"/a\tb", "must not contain spaces or control characters"},
		{"/a\x00", "must not contain spaces or control characters"},
		{"/café", "must be ASCII"},
	} {
		if got := pathProblem(tt.in); got != tt.want {
			t.Errorf("pathProblem(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestURLs(t *testing.T) {
	for _, tt := range []struct{ in, public, upstream string }{
		{"http://auth.localhost:8080", "", ""},
		{"https://auth.example.com/", "", ""},
		{"http://127.0.0.1:9000", "", ""},
		{"http://[::1]:9000", "", ""},
		{"http://wiki.internal/base/path", "must not have a path (Gatehouse is served at the root of its host)", ""},
		{"https://auth.example.com?x", "must not have a query", "must not have a query"},
		{"https://auth.example.com/#top", "must not have a fragment", "must not have a fragment"},
		{"https://u:p@auth.example.com", "must not contain user info", "must not contain user info"},
		{"ftp://auth.example.com", "must be an absolute http:// or https:// URL", "must be an absolute http:// or https:// URL"},
		{"auth.example.com", "must be an absolute http:// or https:// URL", "must be an absolute http:// or https:// URL"},
		{"127.0.0.1:9000", "must be an absolute http:// or https:// URL", "must be an absolute http:// or https:// URL"},
		{"http:///x", "must have a host", "must have a host"},
		{"http:auth.example.com", "must be an absolute http:// or https:// URL", "must be an absolute http:// or https:// URL"},
		{"http://[::1", "missing ']' in host", "missing ']' in host"},
		{"http://a b.example", `invalid character " " in host name`, `invalid character " " in host name`},
		{"http://Auth.example.com", "host must be lowercase", "host must be lowercase"},
		{"http://auth_1.example.com", `host must not contain '_' (use letters, digits, "-" and ".")`, `host must not contain '_' (use letters, digits, "-" and ".")`},
		{"http://auth.example.com:99999", `invalid port "99999"`, `invalid port "99999"`},
		{"http://auth.example.com:", `invalid port ""`, `invalid port ""`},
		{"http://auth.example.com:http", `invalid port ":http" after host`, `invalid port ":http" after host`},
	} {
		if got := publicURLProblem(tt.in); got != tt.public {
			t.Errorf("publicURLProblem(%q) = %q, want %q", tt.in, got, tt.public)
		}
		if got := upstreamProblem(tt.in); got != tt.upstream {
			t.Errorf("upstreamProblem(%q) = %q, want %q", tt.in, got, tt.upstream)
		}
	}
}

func TestListen(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"127.0.0.1:8080", ""},
		{":8080", ""},
		{"[::]:443", ""},
		{"localhost:0", ""},
		{"8080", "must be host:port, such as 127.0.0.1:8080"},
		{"", "must be host:port, such as 127.0.0.1:8080"},
		{"localhost:http", `invalid port "http"`},
		{"localhost:65536", `invalid port "65536"`},
		{"localhost:-1", `invalid port "-1"`},
		{"local_host:80", `host must not contain '_' (use letters, digits, "-" and ".")`},
	} {
		if got := listenProblem(tt.in); got != tt.want {
			t.Errorf("listenProblem(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestArgon2idShape(t *testing.T) {
	good := "$argon2id$v=19$m=65536,t=1,p=2$VMLk55MerLKQhJZurl+Meg$wyZro5NVBWpuYO50YQf4InvI/y0MWd6X6/wnLcyCyo0"
	if msg := argon2idProblem(good); msg != "" {
		t.Errorf("good hash: %s", msg)
	}
	for _, h := range []string{
		"$argon2id$v=19$...",
		"$argon2id$v=18$m=65536,t=1,p=2$VMLk55MerLKQhJZurl+Meg$wyZro5NVBWpuYO50YQf4InvI/y0MWd6X6/wnLcyCyo0",
		"$argon2id$v=19$m=65536,t=1$VMLk55MerLKQhJZurl+Meg$wyZro5NVBWpuYO50YQf4InvI/y0MWd6X6/wnLcyCyo0",
		"$argon2id$v=19$m=65536,t=1,p=2$$wyZro5NVBWpuYO50YQf4InvI/y0MWd6X6/wnLcyCyo0",
		"$argon2id$v=19$m=65536,t=1,p=2$VMLk55MerLKQhJZurl+Meg$!!!",
		good + "$extra",
	} {
		if msg := argon2idProblem(h); !strings.HasPrefix(msg, "malformed argon2id PHC string") {
			t.Errorf("argon2idProblem(%q) = %q", h, msg)
		}
	}
	if msg := argon2idProblem("$2b$10$abc"); msg != `must be an argon2id PHC string starting with "$argon2id$"` {
		t.Errorf("bcrypt hash: %q", msg)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"public_url", "listen", "ops_listen", "public_paths", "id", "host", "orgs", "org"}
	for _, tt := range []struct{ in, want string }{
		{"publicurl", "public_url"},
		{"PublicURL", "public_url"},
		{"public-url", "public_url"},
		{"listne", "listen"},
		{"pubilc_paths", "public_paths"},
		{"public_path", "public_paths"},
		{"ip", "id"},
		{"hots", "host"},
		{"x", ""},
		{"colour", ""},
		{"weight", ""},
		{"organisation", ""},
	} {
		if got := suggest(tt.in, known); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// FuzzParse feeds arbitrary bytes to Parse, which must never panic and
// must return either a config or a non-empty *Errors.
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{"testdata/*.yaml", "testdata/bad/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("? [a, b]\n: c"))
	f.Add([]byte("%YAML 1.2\n---\n!!map {public_url: !!binary aGk=}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml", testEnv)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		var errs *Errors
		if !errors.As(err, &errs) || c != nil || len(errs.Problems) == 0 {
			t.Fatalf("got (%v, %#v)", c, err)
		}
		_ = err.Error()
	})
}

func TestRoleNamesCannotBreakTheRolesHeader(t *testing.T) {
	src := "public_url: http://auth.localhost\nstore: { badger: { path: x } }\norgs:\n  - slug: a\n    name: A\n    connection: { type: password }\n    users:\n      - { email: a@a.example, password: pw, roles: [\"admin,owner\", ok] }\n"
	_, err := Parse([]byte(src), "roles.yaml", func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), `roles.yaml:8:53: orgs[0].users[0].roles[0]: "admin,owner": must not contain commas or whitespace`) {
		t.Fatalf("err = %v", err)
	}
}

func TestIssueExampleWorksAsWritten(t *testing.T) {
	c, err := parseFile(t, "testdata/issue-example.yaml", testEnv)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 1 || c.Warnings[0].Path != "orgs[0].users[1].password_hash" || c.Warnings[0].Line != 25 ||
		!strings.Contains(c.Warnings[0].Msg, "password sign-in is disabled for this user") {
		t.Fatalf("warnings = %+v", c.Warnings)
	}
	if c.Orgs[0].Users[1].PasswordHash != "" {
		t.Fatal("placeholder hash kept")
	}
}

var oneSecond = time.Second

func TestDecisionCacheTTL(t *testing.T) {
	for src, want := range map[string]time.Duration{"": time.Second, "policy: { decision_cache_ttl: 0s }\n": 0, "policy: { decision_cache_ttl: 250ms }\n": 250 * time.Millisecond} {
		c, err := Parse([]byte("public_url: http://auth.localhost\nstore: { badger: { path: x } }\n"+src), "p.yaml", testEnv)
		if err != nil {
			t.Fatal(err)
		}
		if *c.Policy.DecisionCacheTTL != want {
			t.Errorf("%q: ttl %v, want %v", src, *c.Policy.DecisionCacheTTL, want)
		}
	}
	if _, err := Parse([]byte("public_url: http://auth.localhost\nstore: { badger: { path: x } }\npolicy: { decision_cache_ttl: 2h }\n"), "p.yaml", testEnv); err == nil {
		t.Error("2h accepted")
	}
}
