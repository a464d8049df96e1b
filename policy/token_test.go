package policy

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const (
	tokenAllowAll    = "package gatehouse.token\n\ndefault allow := true\n"
	authzAllowAll    = "package gatehouse.authz\n\ndefault allow := true\n"
	platformTokenPol = `package gatehouse.token

default allow := false

# Machine tokens only with a scope; people need a role.
allow if {
	input.grant_type == "client_credentials"
	count(input.scopes) > 0
}

allow if {
	input.user
	count(input.user.roles) > 0
}

reasons contains "no roles" if {
	input.user
	count(input.user.roles) == 0
}
`
	clientTokenPol = `package gatehouse.token

default allow := false

allow if input.org.attributes.plan == "enterprise"
`
	orgTokenPol = `package gatehouse.token

default allow := false

allow if not "contractor" in input.user.roles
`
	orgAuthzOnly = "package gatehouse.authz\n\ndefault allow := false\n"
)

// tmod is one whole module (mod adds the authz package line).
func tmod(text string) []Module { return []Module{{Name: "p.rego", Text: text}} }

func tokenEngine(t *testing.T, src Sources) *Rego {
	t.Helper()
	set, err := Compile(context.Background(), src)
	if err != nil {
		t.Fatal(err)
	}
	r := NewRego(time.Second, NewDecisionLog(slog.New(slog.NewJSONHandler(io.Discard, nil)), nil, 0, prometheus.NewRegistry()))
	r.Swap(set)
	return r
}

func TestTokenDecisions(t *testing.T) {
	person := func(roles ...string) *TokenInput {
		return &TokenInput{User: &User{ID: "u1", Roles: roles}, Org: Org{ID: "o1", Attributes: map[string]string{"plan": "enterprise"}},
			Client: TokenClient{ID: "portal", Type: "web"}, GrantType: "authorization_code", Scopes: []string{"openid"}}
	}
	machine := &TokenInput{Org: Org{ID: "o1"}, Client: TokenClient{ID: "bot", Type: "machine", Org: "acme"}, GrantType: "client_credentials"}
	tests := []struct {
		name    string
		src     Sources
		in      *TokenInput
		allow   bool
		reasons string
	}{
		{name: "no policies", src: Sources{}, in: person(), allow: true},
		{name: "request policies only", src: Sources{Platform: tmod(orgAuthzOnly), Orgs: map[string][]Module{"o1": tmod(orgAuthzOnly)}}, in: person(), allow: true},
		{name: "platform allows a member", src: Sources{Platform: tmod(platformTokenPol)}, in: person("member"), allow: true},
		{name: "platform refuses no roles, with reasons", src: Sources{Platform: tmod(platformTokenPol)}, in: person(), reasons: "no roles"},
		{name: "platform: a machine token needs a scope", src: Sources{Platform: tmod(platformTokenPol)}, in: machine},
		{name: "client narrows", src: Sources{Platform: tmod(tokenAllowAll), Clients: map[string][]Module{"portal": tmod(clientTokenPol)}},
			in:      &TokenInput{User: &User{ID: "u1"}, Org: Org{ID: "o1", Attributes: map[string]string{"plan": "free"}}, Client: TokenClient{ID: "portal"}},
			reasons: "denied by the client portal token policy"},
		{name: "another client's policy does not apply", src: Sources{Clients: map[string][]Module{"other": tmod(clientTokenPol)}}, in: person(), allow: true},
		{name: "org narrows", src: Sources{Platform: tmod(tokenAllowAll), Orgs: map[string][]Module{"o1": tmod(orgTokenPol)}}, in: person("contractor"),
			reasons: "denied by the org o1 token policy"},
		{name: "a sub-org inherits its parent's", src: Sources{Orgs: map[string][]Module{"o1": tmod(orgTokenPol)}, OrgParent: map[string]string{"o2": "o1", "o1": ""}},
			in: &TokenInput{User: &User{Roles: []string{"contractor"}}, Org: Org{ID: "o2"}}, reasons: "denied by the org o1 token policy"},
		{name: "an unknown org denies", src: Sources{Orgs: map[string][]Module{"o1": tmod(orgTokenPol)}, OrgParent: map[string]string{"o1": ""}},
			in: &TokenInput{User: &User{}, Org: Org{ID: "nope"}}, reasons: "the token could not be decided"},
		{name: "mixed layer: its token rules decide tokens", src: Sources{Orgs: map[string][]Module{"o1": []Module{{Name: "a.rego", Text: authzAllowAll}, {Name: "t.rego", Text: orgTokenPol}}}},
			in: person("contractor"), reasons: "denied by the org o1 token policy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tokenEngine(t, tt.src).DecideToken(context.Background(), tt.in)
			if d.Allow != tt.allow || (tt.reasons != "" && strings.Join(d.Reasons, ",") != tt.reasons) {
				t.Fatalf("decision %+v, want allow %v reasons %q", d, tt.allow, tt.reasons)
			}
		})
	}
}

// A token-only layer leaves requests alone; an error denies tokens.
func TestTokenLayersAndRequests(t *testing.T) {
	r := tokenEngine(t, Sources{Orgs: map[string][]Module{"o1": tmod("package gatehouse.token\n\ndefault allow := false\n")}})
	if d := r.Decide(context.Background(), alice()); !d.Allow {
		t.Fatalf("a token-only org layer decided a request: %+v", d)
	}
	r = tokenEngine(t, Sources{Platform: tmod("package gatehouse.token\n\nallow if 1 / 0 == 1\n")})
	if d := r.DecideToken(context.Background(), &TokenInput{Org: Org{ID: "o1"}}); d.Allow || d.Err == nil {
		t.Fatalf("an evaluation error allowed: %+v", d)
	}
	for name, src := range map[string]Sources{
		"client policy without token rules": {Clients: map[string][]Module{"c": tmod(authzAllowAll)}},
		"token package without allow":       {Platform: tmod("package gatehouse.token\n\nx := 1\n")},
		"another package":                   {Platform: tmod("package gatehouse.other\n\nallow := true\n")},
	} {
		if _, err := Compile(context.Background(), src); err == nil {
			t.Errorf("%s compiled", name)
		}
	}
}
