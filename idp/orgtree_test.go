package idp

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/store"
)

// orgChain is orgs c0..c(n-1), each the parent of the one before: c0 is
// the deepest. set adjusts org i (a parent, a connection, branding).
func orgChain(n int, set func(i int, o *store.Org)) []store.Org {
	orgs := make([]store.Org, n)
	for i := range orgs {
		orgs[i] = store.Org{ID: fmt.Sprintf("org_c%d", i), Slug: fmt.Sprintf("c%d", i), Name: fmt.Sprintf("C%d", i)}
		if i+1 < n {
			orgs[i].ParentID = fmt.Sprintf("org_c%d", i+1)
		}
		if set != nil {
			set(i, &orgs[i])
		}
	}
	return orgs
}

// cycle makes org i's parent org j.
func cycle(i, j int) func(int, *store.Org) {
	return func(k int, o *store.Org) {
		if k == i {
			o.ParentID = fmt.Sprintf("org_c%d", j)
		}
	}
}

func both(fs ...func(int, *store.Org)) func(int, *store.Org) {
	return func(i int, o *store.Org) {
		for _, f := range fs {
			f(i, o)
		}
	}
}

func at(i int, f func(o *store.Org)) func(int, *store.Org) {
	return func(k int, o *store.Org) {
		if k == i {
			f(o)
		}
	}
}

// The org tree's walks and their bounds: sign-in (ownerOf) and pages
// (brand) look at an org and 15 ancestors, messages at 16 ancestors; a
// missing parent, a cycle and a longer chain end each walk the way they
// always have.
func TestOrgTreeBounds(t *testing.T) {
	conn := func(o *store.Org) { o.Connection.Type = "oidc" }
	gone := func(o *store.Org) { o.ParentID = "org_gone" }
	ownerTests := []struct {
		name    string
		orgs    []store.Org
		owner   string
		wantErr string
	}{
		{"own connection", orgChain(1, at(0, conn)), "org_c0", ""},
		{"15th ancestor's", orgChain(16, at(15, conn)), "org_c15", ""},
		{"16th ancestor's is too far", orgChain(17, at(16, conn)), "", "idp: org c0: parent chain deeper than 16"},
		{"no connection up to the root", orgChain(16, nil), "", "idp: org c0 has no connection and no parent with one"},
		{"missing parent", orgChain(3, at(2, gone)), "", "idp: org c0: parent org_gone not found"},
		{"16th ancestor missing", orgChain(16, at(15, gone)), "", "idp: org c0: parent org_gone not found"},
		{"cycle", orgChain(2, cycle(1, 0)), "", "idp: org c0: parent chain deeper than 16"},
		{"self parent", orgChain(1, cycle(0, 0)), "", "idp: org c0: parent chain deeper than 16"},
		{"connection on a cycle", orgChain(3, both(cycle(2, 1), at(2, conn))), "org_c2", ""},
	}
	for _, tt := range ownerTests {
		t.Run("ownerOf/"+tt.name, func(t *testing.T) {
			h, _ := provisionFixture(t, tt.orgs...)
			o, err := h.ownerOf(&tt.orgs[0])
			switch {
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			case tt.wantErr == "" && (err != nil || o.ID != tt.owner):
				t.Fatalf("owner = %v, %v; want %s", o, err, tt.owner)
			}
		})
	}

	brandTests := []struct {
		name    string
		orgs    []store.Org
		heading string // "" for Gatehouse's own
	}{
		{"own", orgChain(2, at(0, func(o *store.Org) { o.Branding = &store.Branding{Heading: "c0"} })), "c0"},
		{"15th ancestor's", orgChain(16, at(15, func(o *store.Org) { o.Branding = &store.Branding{Heading: "c15"} })), "c15"},
		{"16th ancestor's is too far", orgChain(17, at(16, func(o *store.Org) { o.Branding = &store.Branding{Heading: "c16"} })), ""},
		{"missing parent", orgChain(2, at(1, gone)), ""},
		{"cycle", orgChain(2, cycle(1, 0)), ""},
	}
	for _, tt := range brandTests {
		t.Run("brand/"+tt.name, func(t *testing.T) {
			h, _ := provisionFixture(t, tt.orgs...)
			b := h.brand(&tt.orgs[0])
			got := ""
			if b != nil {
				got = b.Heading
			}
			if got != tt.heading || (b == nil) != (tt.heading == "") {
				t.Fatalf("brand = %+v, want heading %q", b, tt.heading)
			}
		})
	}

	subject := func(s string) func(o *store.Org) {
		return func(o *store.Org) {
			o.Notifications = map[string]store.MessageTemplate{string(notify.Invitation): {Subject: s}}
		}
	}
	msgTests := []struct {
		name    string
		orgs    []store.Org
		subject string // "" for the default
		wantErr string
	}{
		{"16th ancestor's", orgChain(17, at(16, subject("from c16"))), "from c16", ""},
		{"17th ancestor's is too far", orgChain(18, at(17, subject("from c17"))), "", ""},
		{"missing parent", orgChain(3, at(2, gone)), "", "notify: org c0: parent org_gone not found"},
		{"17th ancestor missing: not looked up", orgChain(17, at(16, gone)), "", ""},
		{"16th ancestor missing", orgChain(16, at(15, gone)), "", "notify: org c0: parent org_gone not found"},
		{"cycle", orgChain(3, both(cycle(2, 1), at(2, subject("from c2")))), "from c2", ""},
	}
	def, err := notify.Render(notify.Invitation, notify.Default(notify.Invitation), notify.Sample("C0", "c0", "https://login.example.com/.gatehouse/login?org=c0"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range msgTests {
		t.Run("Message/"+tt.name, func(t *testing.T) {
			h, _ := provisionFixture(t, tt.orgs...)
			h.o.PublicURL = &url.URL{Scheme: "https", Host: "login.example.com"}
			m, err := h.SampleMessage(&tt.orgs[0], notify.Invitation)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			want := tt.subject
			if want == "" {
				want = def.Subject
			}
			if err != nil || m.Subject != want {
				t.Fatalf("subject = %q, %v; want %q", m.Subject, err, want)
			}
		})
	}
}
