package policy

import (
	"context"
	"testing"
)

func TestRouteOrgs(t *testing.T) {
	member := User{ID: "usr_1", Email: "a@acme.example"}
	acme := Org{ID: "org_1", Slug: "acme"}
	tests := []struct {
		name string
		in   Input
		want bool
	}{
		{"member, route open to all orgs", Input{User: member, Org: acme}, true},
		{"member of a listed org", Input{User: member, Org: acme, Route: Route{Orgs: []string{"globex", "acme"}}}, true},
		{"member of an unlisted org", Input{User: member, Org: acme, Route: Route{Orgs: []string{"globex"}}}, false},
		{"no user", Input{Org: acme}, false},
		{"no org", Input{User: member}, false},
		{"slug match is exact", Input{User: member, Org: Org{ID: "org_2", Slug: "acme2"}, Route: Route{Orgs: []string{"acme"}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := RouteOrgs{}.Decide(context.Background(), &tt.in)
			if d.Allow != tt.want {
				t.Fatalf("Allow = %v, want %v (%v)", d.Allow, tt.want, d.Reasons)
			}
			if !d.Allow && len(d.Reasons) == 0 {
				t.Fatal("deny without a reason")
			}
		})
	}
}
