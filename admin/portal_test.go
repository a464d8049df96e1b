package admin

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/outbox"
	"github.com/gatehouse/gatehouse/store"
)

// portalHarness serves the portal over the API harness's store, with
// session cookies for every person (the portal takes no API tokens).
type portalHarness struct {
	*harness
	portal  *Portal
	srv     *httptest.Server
	cookies map[string]http.Header
}

func newPortalHarness(t *testing.T) *portalHarness {
	t.Helper()
	h := newHarness(t)
	ph := &portalHarness{harness: h, cookies: map[string]http.Header{}}
	ph.portal = h.api.Portal(PortalOptions{CSRFKey: make([]byte, 32),
		LoginURL: func(host, rd string) string { return "/.gatehouse/login?rd=" + url.QueryEscape(rd) }})
	ph.srv = httptest.NewServer(ph.portal)
	t.Cleanup(ph.srv.Close)
	ctx := context.Background()
	now := time.Now().UTC()
	// The platform admin signs in through an org the config declares.
	ops := store.Org{ID: "org_ops", Slug: "ops", Name: "Ops", Declared: true, CreatedAt: now, UpdatedAt: now}
	must(t, h.st.CreateOrg(ctx, ops))
	must(t, h.st.CreateMembership(ctx, store.Membership{UserID: h.users["platform"].ID, OrgID: ops.ID, CreatedAt: now, UpdatedAt: now}))
	s, err := h.sessions.Create(ctx, h.users["platform"].ID, ops.ID, "password", "127.0.0.1", "test")
	must(t, err)
	ph.cookies["platform"] = h.cookie(s)
	for name, sid := range h.sessionIDs {
		if name == "platform" {
			continue
		}
		s, err := h.st.GetSession(ctx, sid)
		must(t, err)
		ph.cookies[name] = h.cookie(s)
	}
	ph.cookies["anonymous"] = http.Header{}
	return ph
}

// csrfOf is the form token of who's session.
func (ph *portalHarness) csrfOf(who string) string {
	r := httptest.NewRequest("GET", ph.srv.URL+PortalPrefix, nil)
	for k, v := range ph.cookies[who] {
		r.Header[k] = v
	}
	p, err := ph.portal.signedIn(r)
	if err != nil {
		return ""
	}
	return ph.portal.csrf(p)
}

type page struct {
	status int
	header http.Header
	body   string
}

// do sends a portal request as who; form (for POST) gets who's CSRF
// token unless it sets one.
func (ph *portalHarness) do(t *testing.T, who, method, path string, form url.Values, extra ...string) page {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		if form == nil {
			form = url.Values{}
		}
		if _, ok := form["csrf"]; !ok {
			form.Set("csrf", ph.csrfOf(who))
		}
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, ph.srv.URL+path, body)
	must(t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range ph.cookies[who] {
		req.Header[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	c := ph.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return page{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// portalPath fills a route's path values with org a's objects.
func (ph *portalHarness) portalPath(rt PortalRoute, org string) string {
	p := strings.TrimSuffix(PortalPrefix, "/") + strings.TrimSuffix(rt.Path, "{$}")
	r := strings.NewReplacer("{org}", org, "{user}", ph.users["user-"+org].ID, "{invitation}", ph.invitationIDs[org],
		"{domain}", org+".example", "{token}", ph.tokenIDs[org], "{kind}", "invitation")
	return r.Replace(p)
}

// TestPortalIsolation walks every portal page and form of org a: another
// org's admin, a's plain members and a sub-org's admin get 404 (the same
// as a page that does not exist), and nothing changes; anonymous
// browsers are sent to sign in. a's admin gets the pages.
func TestPortalIsolation(t *testing.T) {
	ph := newPortalHarness(t)
	ctx := context.Background()
	before, err := ph.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Limit: 1000})
	must(t, err)
	for _, rt := range ph.portal.Routes() {
		if !strings.Contains(rt.Path, "{org}") {
			continue
		}
		path := ph.portalPath(rt, "a")
		for _, who := range []string{"admin-b", "member-a", "user-a", "admin-a1"} {
			form := url.Values{"action": {"disable"}, "email": {"x@a.example"}, "name": {"x"}}
			got := ph.do(t, who, rt.Method, path, form)
			if got.status != http.StatusNotFound {
				t.Errorf("%s %s as %s: %d, want 404", rt.Method, path, who, got.status)
			}
			if strings.Contains(got.body, "A</") || strings.Contains(got.body, "user-a@") {
				t.Errorf("%s %s as %s: the 404 page shows org a's data", rt.Method, path, who)
			}
		}
		got := ph.do(t, "anonymous", rt.Method, path, url.Values{})
		want := http.StatusSeeOther
		if rt.Method == http.MethodPost {
			want = http.StatusUnauthorized
		}
		if got.status != want {
			t.Errorf("%s %s anonymously: %d, want %d", rt.Method, path, got.status, want)
		}
		if rt.Method == http.MethodGet {
			if got := ph.do(t, "admin-a", rt.Method, path, nil); got.status != http.StatusOK {
				t.Errorf("%s %s as admin-a: %d, want 200: %.300s", rt.Method, path, got.status, got.body)
			}
		}
	}
	after, err := ph.st.ListAudit(ctx, store.AuditQuery{OrgID: "org_a", Limit: 1000})
	must(t, err)
	for _, e := range after[:len(after)-len(before)] {
		if e.Action != "audit.export" {
			t.Errorf("a refused portal request left an audit event in org a: %+v", e)
		}
	}
	if m, err := ph.st.GetMembership(ctx, ph.users["user-a"].ID, "org_a"); err != nil || m.Disabled {
		t.Errorf("user-a after the refused forms: %+v, %v", m, err)
	}
	// A sub-org admin reaches their own org, never the parent's.
	if got := ph.do(t, "admin-a1", "GET", "/.gatehouse/admin/orgs/a1/users", nil); got.status != http.StatusOK {
		t.Errorf("admin-a1 on their own org: %d", got.status)
	}
	// And the unknown org answers as the other org does.
	if got := ph.do(t, "admin-a", "GET", "/.gatehouse/admin/orgs/nope/users", nil); got.status != http.StatusNotFound {
		t.Errorf("an unknown org: %d", got.status)
	}
}

// TestPortalFormsNeedTheirToken: a form without the session's CSRF
// token, with another session's, or sent from another site is refused
// and changes nothing.
func TestPortalFormsNeedTheirToken(t *testing.T) {
	ph := newPortalHarness(t)
	path := "/.gatehouse/admin/orgs/a/users/" + ph.users["user-a"].ID
	etag := func() string {
		r := ph.harness.do(t, "admin-a", "GET", "/orgs/a/users/"+ph.users["user-a"].ID, nil)
		return r.header.Get("ETag")
	}
	for _, tc := range []struct {
		name  string
		form  url.Values
		extra []string
	}{
		{"no token", url.Values{"csrf": {""}}, nil},
		{"another session's token", url.Values{"csrf": {ph.csrfOf("admin-b")}}, nil},
		{"a forged token", url.Values{"csrf": {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}, nil},
		{"from another site", url.Values{}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"from another origin", url.Values{}, []string{"Origin", "https://evil.example"}},
	} {
		tc.form.Set("action", "disable")
		tc.form.Set("etag", etag())
		got := ph.do(t, "admin-a", "POST", path, tc.form, tc.extra...)
		if got.status != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", tc.name, got.status)
		}
	}
	if m, _ := ph.st.GetMembership(context.Background(), ph.users["user-a"].ID, "org_a"); m.Disabled {
		t.Fatal("a refused form disabled the person")
	}
	got := ph.do(t, "admin-a", "POST", path, url.Values{"action": {"disable"}, "etag": {etag()}})
	if got.status != http.StatusSeeOther || !strings.Contains(got.header.Get("Location"), "done=disabled") {
		t.Fatalf("the real form: %d %s", got.status, got.header.Get("Location"))
	}
	if m, _ := ph.st.GetMembership(context.Background(), ph.users["user-a"].ID, "org_a"); !m.Disabled {
		t.Fatal("the real form did not disable the person")
	}
}

// TestPortalActs: the forms do what they say through the API's rules
// (audited, checked), and show the API's reasons when refused.
func TestPortalActs(t *testing.T) {
	ph := newPortalHarness(t)
	ctx := context.Background()
	// Invite: the link is shown once.
	got := ph.do(t, "admin-a", "POST", "/.gatehouse/admin/orgs/a/invitations", url.Values{"email": {"new@a.example"}, "name": {"New"}, "roles": {"viewer, editor"}, "expires_in": {"24h"}})
	if got.status != http.StatusCreated || !regexp.MustCompile(`/\.gatehouse/invite\?org=a&amp;token=\S+`).MatchString(got.body) {
		t.Fatalf("invite: %d %.500s", got.status, got.body)
	}
	invs, err := ph.st.ListInvitations(ctx, "org_a")
	must(t, err)
	found := false
	for _, inv := range invs {
		found = found || (inv.Email == "new@a.example" && strings.Join(inv.Roles, ",") == "viewer,editor")
	}
	if !found {
		t.Fatalf("the invitation is not stored as asked: %+v", invs)
	}
	// A refused invitation shows the API's reason and keeps the form.
	got = ph.do(t, "admin-a", "POST", "/.gatehouse/admin/orgs/a/invitations", url.Values{"email": {"someone@elsewhere.example"}})
	if got.status != http.StatusBadRequest && got.status != http.StatusConflict && got.status != http.StatusUnprocessableEntity {
		t.Errorf("an address outside the org's domains: %d", got.status)
	}
	if !strings.Contains(got.body, `role="alert"`) || !strings.Contains(got.body, "someone@elsewhere.example") {
		t.Errorf("the refusal is not shown with the form: %.800s", got.body)
	}
	// An admin cannot grant what they do not hold (the API's rule).
	got = ph.do(t, "admin-a1", "POST", "/.gatehouse/admin/orgs/a1/invitations", url.Values{"email": {"x@a.example"}, "roles": {"platform_admin"}})
	if got.status < 400 {
		t.Errorf("a role above the inviter's: %d", got.status)
	}
	// Roles, then the audit log shows it with the actor.
	uid := ph.users["user-a"].ID
	ur := ph.harness.do(t, "admin-a", "GET", "/orgs/a/users/"+uid, nil)
	got = ph.do(t, "admin-a", "POST", "/.gatehouse/admin/orgs/a/users/"+uid, url.Values{"action": {"roles"}, "roles": {"auditor"}, "etag": {ur.header.Get("ETag")}})
	if got.status != http.StatusSeeOther {
		t.Fatalf("roles: %d %.300s", got.status, got.body)
	}
	if m, _ := ph.st.GetMembership(ctx, uid, "org_a"); strings.Join(m.Roles, ",") != "auditor" {
		t.Errorf("roles after the form: %v", m.Roles)
	}
	got = ph.do(t, "admin-a", "GET", "/.gatehouse/admin/orgs/a/audit?action=user.update", nil)
	if got.status != http.StatusOK || !strings.Contains(got.body, "user:"+ph.users["admin-a"].ID) {
		t.Errorf("the audit page does not show the change: %.1000s", got.body)
	}
	// A stale form (the person changed meanwhile) is refused, not applied.
	got = ph.do(t, "admin-a", "POST", "/.gatehouse/admin/orgs/a/users/"+uid, url.Values{"action": {"disable"}, "etag": {ur.header.Get("ETag")}})
	if got.status != http.StatusPreconditionFailed {
		t.Errorf("a stale form: %d", got.status)
	}
	// An auditor sees the pages and may change nothing.
	s, err := ph.sessions.Create(ctx, uid, "org_a", "password", "127.0.0.1", "test")
	must(t, err)
	ph.cookies["auditor"] = ph.cookie(s)
	if got := ph.do(t, "auditor", "GET", "/.gatehouse/admin/orgs/a/users", nil); got.status != http.StatusOK || strings.Contains(got.body, "Invite someone") {
		t.Errorf("auditor's people page: %d", got.status)
	}
	if got := ph.do(t, "auditor", "POST", "/.gatehouse/admin/orgs/a/invitations", url.Values{"email": {"y@a.example"}}); got.status != http.StatusForbidden {
		t.Errorf("auditor's invitation: %d", got.status)
	}
	// The home page takes each to their org; a platform admin to the list.
	if got := ph.do(t, "admin-a", "GET", "/.gatehouse/admin/", nil); got.header.Get("Location") != "/.gatehouse/admin/orgs/a/" {
		t.Errorf("admin-a's home: %d %s", got.status, got.header.Get("Location"))
	}
	if got := ph.do(t, "platform", "GET", "/.gatehouse/admin/", nil); got.header.Get("Location") != "/.gatehouse/admin/orgs" {
		t.Errorf("platform's home: %d %s", got.status, got.header.Get("Location"))
	}
	got = ph.do(t, "platform", "GET", "/.gatehouse/admin/orgs", nil)
	for _, slug := range []string{"/orgs/a/", "/orgs/b/", "/orgs/a1/"} {
		if !strings.Contains(got.body, slug) {
			t.Errorf("the platform admin's list lacks %s", slug)
		}
	}
	if got := ph.do(t, "admin-a", "GET", "/.gatehouse/admin/orgs", nil); strings.Contains(got.body, "/orgs/b/") {
		t.Error("admin-a's list shows org b")
	}
}

// An invitation past the org's sending limit is made, its link shown,
// and the answer says its email was not sent (API and portal).
func TestInvitationPastSendingLimit(t *testing.T) {
	ph := newPortalHarness(t)
	sent := 0
	ph.reconfigure(func(o *Options) {
		o.EmailInvitation = func(context.Context, store.Org, store.Invitation, string) error {
			if sent == 1 {
				return &outbox.LimitError{Window: time.Hour, Limit: 1, Until: time.Now().Add(time.Hour)}
			}
			sent++
			return nil
		}
	})
	ph.portal = ph.api.Portal(ph.portal.o)
	ph.srv.Config.Handler = ph.portal
	r := ph.harness.do(t, "admin-a", "POST", "/orgs/a/invitations", map[string]any{"email": "one@a.example"})
	var v NewInvitationView
	r.json(t, &v)
	if r.status != 201 || v.Delivery != "queued" {
		t.Fatalf("first: %d %+v", r.status, v)
	}
	got := ph.do(t, "admin-a", "POST", "/.gatehouse/admin/orgs/a/invitations", url.Values{"email": {"two@a.example"}})
	if got.status != http.StatusCreated || !strings.Contains(got.body, "No email was sent") || !strings.Contains(got.body, "/.gatehouse/invite?") || strings.Contains(got.body, "Invitation sent.") {
		t.Fatalf("past the limit: %d %.2000s", got.status, got.body)
	}
}

// The branding preview shows the form's unsaved texts and colors and
// saves nothing; colors that are not #rrggbb never reach the stylesheet.
func TestBrandingPreview(t *testing.T) {
	ph := newPortalHarness(t)
	got := ph.do(t, "admin-a", "POST", "/.gatehouse/admin/orgs/a/branding/preview", url.Values{"heading": {"Welcome to <A>"}, "intro": {"Hi"}, "primary": {"#112233"}, "text": {"red;}body{display:none"}})
	if got.status != 200 || !strings.Contains(got.body, "Welcome to &lt;A&gt;") || !strings.Contains(got.body, "not a sign-in page") {
		t.Fatalf("preview: %d %.1500s", got.status, got.body)
	}
	m := regexp.MustCompile(`href="([^"]*branding/preview\.css[^"]*)"`).FindStringSubmatch(got.body)
	if m == nil || strings.Contains(m[1], "display") {
		t.Fatalf("the preview's stylesheet: %v", m)
	}
	css := ph.do(t, "admin-a", "GET", strings.ReplaceAll(m[1], "&amp;", "&"), nil)
	if css.status != 200 || !strings.Contains(css.body, "--accent: #112233") || strings.Contains(css.body, "display") || css.header.Get("Content-Type") != "text/css; charset=utf-8" {
		t.Fatalf("preview.css: %d %q", css.status, css.body)
	}
	if o, _ := ph.st.GetOrg(context.Background(), "org_a"); o.Branding != nil {
		t.Fatalf("a preview saved branding: %+v", o.Branding)
	}
	if css := ph.do(t, "admin-a", "GET", "/.gatehouse/admin/orgs/a/branding/preview.css?primary=%23abc;x", nil); strings.Contains(css.body, "abc") {
		t.Fatalf("a bad color reached the stylesheet: %q", css.body)
	}
}
