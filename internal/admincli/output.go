package admincli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The API's objects, as far as the tables show them. They are the wire
// format, not the server's types: unknown fields are ignored, so a newer
// server does not break an older CLI.

type meView struct {
	Kind     string `json:"kind"`
	UserID   string `json:"user_id"`
	Email    string `json:"email"`
	OrgID    string `json:"org_id"`
	Role     string `json:"role"`
	Platform bool   `json:"platform_admin"`
	TokenID  string `json:"token_id"`
}

type orgView struct {
	ID           string            `json:"id"`
	Slug         string            `json:"slug"`
	Name         string            `json:"name"`
	ParentID     string            `json:"parent_id"`
	EmailDomains []string          `json:"email_domains"`
	LoginDomain  string            `json:"login_domain"`
	Connection   string            `json:"connection"`
	Attributes   map[string]string `json:"attributes"`
	ManagedBy    string            `json:"managed_by"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

type userView struct {
	ID          string            `json:"id"`
	Email       string            `json:"email"`
	Name        string            `json:"name"`
	Roles       []string          `json:"roles"`
	Groups      []string          `json:"groups"`
	Disabled    bool              `json:"disabled"`
	Federated   bool              `json:"federated"`
	HasPassword bool              `json:"has_password"`
	Attributes  map[string]string `json:"attributes"`
	ManagedBy   string            `json:"managed_by"`
	CreatedAt   time.Time         `json:"created_at"`
	UpdatedAt   time.Time         `json:"updated_at"`
}

type sessionView struct {
	ID         string    `json:"id"`
	UserID     string    `json:"user_id"`
	OrgID      string    `json:"org_id"`
	Connection string    `json:"connection"`
	MFA        bool      `json:"mfa"`
	ClientAddr string    `json:"client_addr"`
	UserAgent  string    `json:"user_agent"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastSeenAt time.Time `json:"last_seen_at"`
}

type tokenView struct {
	ID         string    `json:"id"`
	OrgID      string    `json:"org_id"`
	Role       string    `json:"role"`
	Name       string    `json:"name"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	RevokedAt  time.Time `json:"revoked_at"`
	Secret     string    `json:"secret"`
}

type appView struct {
	ID                  string    `json:"id"`
	Name                string    `json:"name"`
	Type                string    `json:"type"`
	Org                 string    `json:"org"`
	AuthMethod          string    `json:"auth_method"`
	RedirectURIs        []string  `json:"redirect_uris"`
	Scopes              []string  `json:"scopes"`
	Audience            string    `json:"audience"`
	ManagedBy           string    `json:"managed_by"`
	OldSecretValidUntil time.Time `json:"old_secret_valid_until"`
	ClientSecret        string    `json:"client_secret"`
}

type invitationView struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name"`
	Roles     []string  `json:"roles"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Status    string    `json:"status"`
	URL       string    `json:"url"`
	Phone     string    `json:"phone"`
	// Delivery and TextDelivery: what became of its email and text.
	Delivery     string `json:"delivery"`
	TextDelivery string `json:"text_delivery"`
}

type auditEvent struct {
	Time    time.Time         `json:"time"`
	Seq     uint64            `json:"seq"`
	Actor   string            `json:"actor"`
	Action  string            `json:"action"`
	Target  string            `json:"target"`
	Outcome string            `json:"outcome"`
	Details map[string]string `json:"details"`
}

// table writes aligned columns. Every cell is cleaned of control
// characters, and an empty one shows as "-" so that columns stay
// readable. Rows are written at each flush; the column widths persist
// across flushes and only grow, so that a listing streamed page by page
// stays aligned (unless a later page has a wider cell).
type table struct {
	w      io.Writer
	rows   [][]string
	widths []int
}

func newTable(w io.Writer) *table { return &table{w: w} }

func (t *table) row(cells ...string) {
	r := make([]string, len(cells))
	for i, c := range cells {
		if r[i] = clean(c); r[i] == "" {
			r[i] = "-"
		}
	}
	t.rows = append(t.rows, r)
}

func (t *table) flush() error {
	for _, r := range t.rows {
		for i, c := range r {
			if i == len(t.widths) {
				t.widths = append(t.widths, 0)
			}
			t.widths[i] = max(t.widths[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, r := range t.rows {
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", t.widths[i]-utf8.RuneCountInString(c)+2))
			}
		}
		b.WriteByte('\n')
	}
	t.rows = t.rows[:0]
	_, err := io.WriteString(t.w, b.String())
	return err
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// pairs shows a map as sorted name=value pairs.
func pairs(m map[string]string) string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return strings.Join(out, " ")
}

func printMe(w io.Writer, v meView) error {
	t := newTable(w)
	t.row("KIND", v.Kind)
	t.row("USER_ID", v.UserID)
	t.row("EMAIL", v.Email)
	t.row("ORG_ID", v.OrgID)
	t.row("ROLE", v.Role)
	t.row("PLATFORM_ADMIN", yesNo(v.Platform))
	t.row("TOKEN_ID", v.TokenID)
	return t.flush()
}

func printOrgs(w io.Writer, orgs []orgView) error {
	// The parent shows as its slug when it is in the list (it is, within
	// the caller's scope), which says more than its ID.
	slugs := map[string]string{}
	for _, o := range orgs {
		slugs[o.ID] = o.Slug
	}
	t := newTable(w)
	t.row("ID", "SLUG", "NAME", "PARENT", "CONNECTION", "MANAGED_BY")
	for _, o := range orgs {
		parent := o.ParentID
		if s, ok := slugs[parent]; ok {
			parent = s
		}
		t.row(o.ID, o.Slug, o.Name, parent, o.Connection, o.ManagedBy)
	}
	return t.flush()
}

func printOrg(w io.Writer, o orgView) error {
	t := newTable(w)
	t.row("ID", o.ID)
	t.row("SLUG", o.Slug)
	t.row("NAME", o.Name)
	t.row("PARENT_ID", o.ParentID)
	t.row("EMAIL_DOMAINS", strings.Join(o.EmailDomains, " "))
	t.row("LOGIN_DOMAIN", o.LoginDomain)
	t.row("CONNECTION", o.Connection)
	t.row("ATTRIBUTES", pairs(o.Attributes))
	t.row("MANAGED_BY", o.ManagedBy)
	t.row("CREATED_AT", ts(o.CreatedAt))
	t.row("UPDATED_AT", ts(o.UpdatedAt))
	return t.flush()
}

// usersTable starts the table of members that printUsers adds pages to,
// so that --all reads as one table.
func usersTable(w io.Writer) *table {
	t := newTable(w)
	t.row("ID", "EMAIL", "NAME", "ROLES", "DISABLED", "MANAGED_BY")
	return t
}

func printUsers(t *table, us []userView) error {
	for _, u := range us {
		t.row(u.ID, u.Email, u.Name, strings.Join(u.Roles, ","), yesNo(u.Disabled), u.ManagedBy)
	}
	return t.flush()
}

func printUser(w io.Writer, u userView) error {
	t := newTable(w)
	t.row("ID", u.ID)
	t.row("EMAIL", u.Email)
	t.row("NAME", u.Name)
	t.row("ROLES", strings.Join(u.Roles, ","))
	t.row("GROUPS", strings.Join(u.Groups, ","))
	t.row("DISABLED", yesNo(u.Disabled))
	t.row("FEDERATED", yesNo(u.Federated))
	t.row("HAS_PASSWORD", yesNo(u.HasPassword))
	t.row("ATTRIBUTES", pairs(u.Attributes))
	t.row("MANAGED_BY", u.ManagedBy)
	t.row("CREATED_AT", ts(u.CreatedAt))
	t.row("UPDATED_AT", ts(u.UpdatedAt))
	return t.flush()
}

func printSessions(w io.Writer, ss []sessionView) error {
	t := newTable(w)
	t.row("ID", "CONNECTION", "MFA", "CLIENT", "CREATED_AT", "LAST_SEEN_AT", "EXPIRES_AT", "USER_AGENT")
	for _, s := range ss {
		t.row(s.ID, s.Connection, yesNo(s.MFA), s.ClientAddr, ts(s.CreatedAt), ts(s.LastSeenAt), ts(s.ExpiresAt), s.UserAgent)
	}
	return t.flush()
}

// tokenStatus says whether a listed token still works.
func tokenStatus(tv tokenView, now time.Time) string {
	switch {
	case !tv.RevokedAt.IsZero():
		return "revoked"
	case !now.Before(tv.ExpiresAt):
		return "expired"
	}
	return "active"
}

func printTokens(w io.Writer, toks []tokenView) error {
	now := time.Now()
	t := newTable(w)
	t.row("ID", "NAME", "ROLE", "STATUS", "CREATED_BY", "CREATED_AT", "EXPIRES_AT", "LAST_USED_AT")
	for _, tv := range toks {
		t.row(tv.ID, tv.Name, tv.Role, tokenStatus(tv, now), tv.CreatedBy, ts(tv.CreatedAt), ts(tv.ExpiresAt), ts(tv.LastUsedAt))
	}
	return t.flush()
}

// printNewToken shows a token just made. Its secret is on a line of its
// own, so that it is copied whole, and said to be shown this once.
func printNewToken(w io.Writer, tv tokenView) error {
	scope := "the platform"
	if tv.OrgID != "" {
		scope = "org " + tv.OrgID
	}
	_, err := fmt.Fprintf(w, "Created token %s (%s): role %s in %s, expires %s.\n"+
		"Its secret follows. It is shown only this once: store it now (a lost secret means a new token).\n\n%s\n\n",
		clean(tv.ID), strconv.Quote(clean(tv.Name)), clean(tv.Role), clean(scope), ts(tv.ExpiresAt), clean(tv.Secret))
	return err
}

func printApps(w io.Writer, apps []appView) error {
	t := newTable(w)
	t.row("ID", "NAME", "TYPE", "ORG", "AUTH", "MANAGED_BY")
	for _, a := range apps {
		t.row(a.ID, a.Name, a.Type, a.Org, a.AuthMethod, a.ManagedBy)
	}
	return t.flush()
}

func printApp(w io.Writer, a appView) error {
	t := newTable(w)
	t.row("client_id", a.ID)
	t.row("name", a.Name)
	t.row("type", a.Type)
	t.row("org", a.Org)
	t.row("auth_method", a.AuthMethod)
	t.row("redirect_uris", strings.Join(a.RedirectURIs, " "))
	t.row("scopes", strings.Join(a.Scopes, " "))
	t.row("audience", a.Audience)
	t.row("managed_by", a.ManagedBy)
	if !a.OldSecretValidUntil.IsZero() {
		t.row("old_secret_valid_until", ts(a.OldSecretValidUntil))
	}
	return t.flush()
}

// printNewApp shows an app just registered or given a new secret: the
// secret on a line of its own, said to be shown this once.
func printNewApp(w io.Writer, a appView) error {
	if err := printApp(w, a); err != nil {
		return err
	}
	if a.ClientSecret == "" {
		return nil
	}
	_, err := fmt.Fprintf(w, "\nIts client secret follows. It is shown only this once: store it now (a lost secret means a new one).\n\n%s\n\n", clean(a.ClientSecret))
	return err
}

func printInvitations(w io.Writer, invs []invitationView) error {
	t := newTable(w)
	t.row("ID", "EMAIL", "ROLES", "STATUS", "CREATED_BY", "CREATED_AT", "EXPIRES_AT")
	for _, v := range invs {
		t.row(v.ID, v.Email, strings.Join(v.Roles, ","), v.Status, v.CreatedBy, ts(v.CreatedAt), ts(v.ExpiresAt))
	}
	return t.flush()
}

// printNewInvitation shows an invitation just made or resent, its link on
// a line of its own and said to be shown this once.
func printNewInvitation(w io.Writer, v invitationView) error {
	if v.URL == "" {
		return errors.New("the API sent no link for invitation " + clean(v.ID) + ": resend it")
	}
	_, err := fmt.Fprintf(w, "Invitation %s for %s to org %s (roles %s), until %s.\n"+
		"Its link follows. It is shown only this once and works once: give it to %s.\n\n%s\n\n",
		clean(v.ID), clean(v.Email), clean(v.OrgID), clean(strings.Join(v.Roles, ",")), ts(v.ExpiresAt), clean(v.Email), clean(v.URL))
	if err != nil {
		return err
	}
	for _, d := range []struct{ what, how string }{{"Email", v.Delivery}, {"Text to " + v.Phone, v.TextDelivery}} {
		if d.how != "" {
			if _, err := fmt.Fprintf(w, "%s: %s.\n", clean(d.what), strings.ReplaceAll(clean(d.how), "_", " ")); err != nil {
				return err
			}
		}
	}
	return nil
}

// auditTable starts the table of events that printAudit adds pages to.
func auditTable(w io.Writer) *table {
	t := newTable(w)
	t.row("TIME", "SEQ", "ACTOR", "ACTION", "TARGET", "OUTCOME", "DETAILS")
	return t
}

func printAudit(t *table, es []auditEvent) error {
	for _, e := range es {
		t.row(ts(e.Time), strconv.FormatUint(e.Seq, 10), e.Actor, e.Action, e.Target, e.Outcome, pairs(e.Details))
	}
	return t.flush()
}
