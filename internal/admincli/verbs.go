package admincli

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// verbs lists the verbs, in the order the usage shows them.
var verbs = []verb{
	{"me", "", me},

	{"orgs list", "", orgsList},
	{"orgs get", "ORG", orgsGet},
	{"orgs create", "--slug S --name N [--parent ORG] [--attr k=v ...]", orgsCreate},
	{"orgs update", "ORG [--name N] [--attr k=v ...] [--unset-attr k ...]", orgsUpdate},
	{"orgs delete", "ORG", orgsDelete},

	{"users list", "--org ORG [--q TEXT] [--limit N] [--all | --cursor C]", usersList},
	{"users get", "--org ORG USER", usersGet},
	{"users create", "--org ORG --email E [--name N] [--role R ...] [--password-stdin]", usersCreate},
	{"users update", "--org ORG USER [--name N] [--role R ... | --no-roles] [--disable | --enable] [--password-stdin]", usersUpdate},
	{"users delete", "--org ORG USER", usersDelete},

	{"sessions list", "--org ORG USER", sessionsList},
	{"sessions revoke", "--org ORG (USER | --session SID)", sessionsRevoke},

	{"invitations list", "--org ORG", invitationsList},
	{"invitations create", "--org ORG --email E [--name N] [--role R ...] [--phone +E164] [--expires-in 168h]", invitationsCreate},
	{"invitations resend", "--org ORG INVITATION_ID", invitationsResend},
	{"invitations revoke", "--org ORG INVITATION_ID", invitationsRevoke},

	{"tokens list", "[--org ORG]", tokensList},
	{"tokens create", "[--org ORG] --name N --role R [--expires-in 720h]", tokensCreate},
	{"tokens revoke", "[--org ORG] TOKEN_ID", tokensRevoke},

	{"apps list", "", appsList},
	{"apps get", "APP", appsGet},
	{"apps create", "--name N --type web|spa|native|machine [--org ORG] [--redirect-uri U ...] [--scope S ...] [--audience A] [--file SPEC.json]", appsCreate},
	{"apps rotate-secret", "APP [--keep-old-for 24h]", appsRotateSecret},
	{"apps delete", "APP", appsDelete},

	{"audit list", "--org ORG [--action A] [--actor A] [--target T] [--since T] [--until T] [--limit N] [--all | --cursor C]", auditList},
	{"audit export", "--org ORG [--action A] [--actor A] [--target T] [--since T] [--until T] [--out FILE]", auditExport},
}

// strList is a repeatable flag.
type strList []string

func (l *strList) String() string     { return strings.Join(*l, ",") }
func (l *strList) Set(v string) error { *l = append(*l, v); return nil }

// seg escapes one path segment (an ID or a slug as the user typed it).
func seg(s string) string { return url.PathEscape(s) }

func orgPath(org string) string { return "/orgs/" + seg(org) }

// need checks that required flags were given.
func need(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] == "" {
			return usagef("--%s is required", pairs[i])
		}
	}
	return nil
}

// given reports whether the flag was on the command line (to tell
// --name "" from no --name).
func given(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// decodeAnswer decodes an API answer into v for a table.
func decodeAnswer(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("the API's answer is not what this gatehouse expects (is it the same version?): %w", err)
	}
	return nil
}

// printJSON prints an answer as the API sent it, indented.
func (c *cmd) printJSON(b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(b), "", "  "); err != nil {
		return fmt.Errorf("the API's answer is not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err := c.stdout.Write(out.Bytes())
	return err
}

// say prints a confirmation in table mode (JSON mode prints nothing for an
// answer without a body, so that its output stays parsable).
func (c *cmd) say(format string, a ...any) {
	if !c.json() {
		fmt.Fprintf(c.stdout, format+"\n", a...)
	}
}

// changedHint explains a 412 from an update: the command's GET and PATCH
// straddled someone else's change, and nothing was written.
func changedHint(err error, getCmd string) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusPreconditionFailed {
		ae.Hint = "nothing was changed: it changed between this command's read and its write; look at it again (" + getCmd + ") and run the command again"
	}
	return err
}

// readSecret reads a password from stdin: all of it, less one final line
// ending, so that both `echo` and `printf %s` work.
func (c *cmd) readSecret() (string, error) {
	if c.stdin == nil {
		return "", usagef("--password-stdin: there is no stdin")
	}
	b, err := io.ReadAll(io.LimitReader(c.stdin, 4097))
	if err != nil {
		return "", fmt.Errorf("--password-stdin: %w", err)
	}
	if len(b) > 4096 {
		return "", usagef("--password-stdin: more than 4096 bytes on stdin")
	}
	s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if s == "" {
		return "", usagef("--password-stdin: stdin is empty")
	}
	return s, nil
}

// ---- me ----

func me(c *cmd, args []string) error {
	c.flags()
	if _, err := c.parse(args); err != nil {
		return err
	}
	b, _, err := c.api.do(c.ctx, http.MethodGet, "/me", nil, nil, "")
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(b)
	}
	var v meView
	if err := decodeAnswer(b, &v); err != nil {
		return err
	}
	return printMe(c.stdout, v)
}

// ---- orgs ----

func orgsList(c *cmd, args []string) error {
	c.flags()
	if _, err := c.parse(args); err != nil {
		return err
	}
	return getList(c, "/orgs", printOrgs)
}

func orgsGet(c *cmd, args []string) error {
	c.flags()
	pos, err := c.parse(args, "ORG")
	if err != nil {
		return err
	}
	b, _, err := c.api.do(c.ctx, http.MethodGet, orgPath(pos[0]), nil, nil, "")
	if err != nil {
		return err
	}
	return c.showOrg(b)
}

func (c *cmd) showOrg(b []byte) error { return show(c, b, printOrg) }

// attrs reads --attr k=v flags.
func attrs(list strList) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok || k == "":
			return nil, usagef("--attr %q: give name=value", kv)
		case v == "":
			// The API takes an empty value as "remove": say so plainly.
			return nil, usagef("--attr %q: an empty value is not kept; --unset-attr %s removes an attribute", kv, k)
		}
		if _, dup := out[k]; dup {
			return nil, usagef("--attr %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

func orgsCreate(c *cmd, args []string) error {
	fs := c.flags()
	slug := fs.String("slug", "", "the org's slug (lowercase letters, digits, -)")
	name := fs.String("name", "", "the org's display name")
	parent := fs.String("parent", "", "make a sub-org of this org (ID or slug)")
	var attrList strList
	fs.Var(&attrList, "attr", "attribute name=value (repeatable)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := need("slug", *slug, "name", *name); err != nil {
		return err
	}
	at, err := attrs(attrList)
	if err != nil {
		return err
	}
	body := struct {
		Slug       string            `json:"slug"`
		Name       string            `json:"name"`
		Parent     string            `json:"parent,omitempty"`
		Attributes map[string]string `json:"attributes,omitempty"`
	}{*slug, *name, *parent, at}
	b, _, err := c.api.do(c.ctx, http.MethodPost, "/orgs", nil, body, "")
	if err != nil {
		return err
	}
	return c.showOrg(b)
}

func orgsUpdate(c *cmd, args []string) error {
	fs := c.flags()
	name := fs.String("name", "", "new display name")
	var attrList, unset strList
	fs.Var(&attrList, "attr", "set attribute name=value (repeatable)")
	fs.Var(&unset, "unset-attr", "remove attribute name (repeatable)")
	pos, err := c.parse(args, "ORG")
	if err != nil {
		return err
	}
	at, err := attrs(attrList)
	if err != nil {
		return err
	}
	patch := map[string]any{}
	if given(fs, "name") {
		patch["name"] = *name
	}
	if len(at) > 0 || len(unset) > 0 {
		// A JSON merge patch: null removes an attribute, others are kept.
		m := map[string]*string{}
		for k, v := range at {
			m[k] = &v
		}
		for _, k := range unset {
			if _, both := at[k]; both {
				return usagef("attribute %s is both set and unset", k)
			}
			m[k] = nil
		}
		patch["attributes"] = m
	}
	if len(patch) == 0 {
		return usagef("nothing to change: give --name, --attr or --unset-attr")
	}
	return c.update(orgPath(pos[0]), patch, "gatehouse admin orgs get "+pos[0], c.showOrg)
}

// update reads the object, then patches it with If-Match set to the ETag
// read, so that a change made meanwhile fails (412) rather than being
// overwritten.
func (c *cmd) update(path string, patch any, getCmd string, show func([]byte) error) error {
	_, etag, err := c.api.do(c.ctx, http.MethodGet, path, nil, nil, "")
	if err != nil {
		return err
	}
	if etag == "" {
		return fmt.Errorf("GET %s: the API sent no ETag, so the change cannot be made safely", c.api.url(path, nil).Redacted())
	}
	b, _, err := c.api.do(c.ctx, http.MethodPatch, path, nil, patch, etag)
	if err != nil {
		return changedHint(err, getCmd)
	}
	return show(b)
}

func orgsDelete(c *cmd, args []string) error {
	c.flags()
	pos, err := c.parse(args, "ORG")
	if err != nil {
		return err
	}
	if _, _, err := c.api.do(c.ctx, http.MethodDelete, orgPath(pos[0]), nil, nil, ""); err != nil {
		return err
	}
	c.say("Deleted org %s.", clean(pos[0]))
	return nil
}

// ---- users ----

// userPath is the path of a member; USER may be their email, which is
// looked up among the org's members (the API takes IDs only).
func (c *cmd) userPath(org, user string) (string, error) {
	if !strings.Contains(user, "@") {
		return orgPath(org) + "/users/" + seg(user), nil
	}
	q := url.Values{"email": {user}}
	b, _, err := c.api.do(c.ctx, http.MethodGet, orgPath(org)+"/users", q, nil, "")
	if err != nil {
		return "", err
	}
	var page struct {
		Items []userView `json:"items"`
	}
	if err := decodeAnswer(b, &page); err != nil {
		return "", err
	}
	for _, u := range page.Items {
		if strings.EqualFold(u.Email, user) {
			return orgPath(org) + "/users/" + seg(u.ID), nil
		}
	}
	return "", fmt.Errorf("org %s has no member with email %s", clean(org), clean(user))
}

func usersList(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	q := fs.String("q", "", "only members whose email or name contains this")
	limit := fs.Int("limit", 0, "page size, 1 to 500 (default: the API's, 100)")
	all := fs.Bool("all", false, "fetch every page")
	cursor := fs.String("cursor", "", "start at this page (next_cursor of the one before)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	query := url.Values{}
	if *q != "" {
		query.Set("q", *q)
	}
	t := usersTable(c.stdout)
	return c.list(orgPath(*org)+"/users", query, *limit, *all, *cursor, func(items []json.RawMessage) error {
		us := make([]userView, len(items))
		for i, it := range items {
			if err := decodeAnswer(it, &us[i]); err != nil {
				return err
			}
		}
		return printUsers(t, us)
	})
}

// page is one page of a listing.
type page struct {
	Items      []json.RawMessage `json:"items"`
	NextCursor string            `json:"next_cursor"`
}

// list prints a paged listing: one page, or with all every page, each
// printed as it arrives (table: rows by table; JSON: one item a line).
func (c *cmd) list(path string, q url.Values, limit int, all bool, cursor string, table func([]json.RawMessage) error) error {
	if all && cursor != "" {
		return usagef("give --all or --cursor, not both")
	}
	if limit != 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	for {
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		b, _, err := c.api.do(c.ctx, http.MethodGet, path, q, nil, "")
		if err != nil {
			return err
		}
		if c.json() && !all {
			return c.printJSON(b)
		}
		var p page
		if err := decodeAnswer(b, &p); err != nil {
			return err
		}
		if c.json() {
			for _, it := range p.Items {
				var line bytes.Buffer
				if err := json.Compact(&line, it); err != nil {
					return fmt.Errorf("the API's answer is not JSON: %w", err)
				}
				line.WriteByte('\n')
				if _, err := c.stdout.Write(line.Bytes()); err != nil {
					return err
				}
			}
		} else if err := table(p.Items); err != nil {
			return err
		}
		switch {
		case p.NextCursor == "":
			return nil
		case !all:
			fmt.Fprintf(c.stderr, "(more: --all lists every page, --cursor %s the next one)\n", clean(p.NextCursor))
			return nil
		case p.NextCursor == cursor:
			return fmt.Errorf("GET %s: the API returned the same page again", c.api.url(path, nil).Redacted())
		}
		cursor = p.NextCursor
	}
}

func usersGet(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	pos, err := c.parse(args, "USER")
	if err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	path, err := c.userPath(*org, pos[0])
	if err != nil {
		return err
	}
	b, _, err := c.api.do(c.ctx, http.MethodGet, path, nil, nil, "")
	if err != nil {
		return err
	}
	return c.showUser(b)
}

func (c *cmd) showUser(b []byte) error { return show(c, b, printUser) }

func usersCreate(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	email := fs.String("email", "", "the person's email")
	name := fs.String("name", "", "the person's name")
	var roles strList
	fs.Var(&roles, "role", "a role in the org (repeatable), such as admin or auditor")
	pwStdin := fs.Bool("password-stdin", false, "read a password for the org's password sign-in from stdin")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := need("org", *org, "email", *email); err != nil {
		return err
	}
	body := struct {
		Email    string   `json:"email"`
		Name     string   `json:"name,omitempty"`
		Roles    []string `json:"roles,omitempty"`
		Password string   `json:"password,omitempty"`
	}{Email: *email, Name: *name, Roles: roles}
	if *pwStdin {
		pw, err := c.readSecret()
		if err != nil {
			return err
		}
		body.Password = pw
	}
	b, _, err := c.api.do(c.ctx, http.MethodPost, orgPath(*org)+"/users", nil, body, "")
	if err != nil {
		return err
	}
	return c.showUser(b)
}

func usersUpdate(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	name := fs.String("name", "", "the person's new name")
	var roles strList
	fs.Var(&roles, "role", "a role in the org (repeatable): the roles given replace the person's roles")
	noRoles := fs.Bool("no-roles", false, "take every role away")
	disable := fs.Bool("disable", false, "suspend the person in this org (their sessions here end)")
	enable := fs.Bool("enable", false, "lift a suspension")
	pwStdin := fs.Bool("password-stdin", false, "read a new password from stdin")
	pos, err := c.parse(args, "USER")
	if err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	patch := map[string]any{}
	if given(fs, "name") {
		patch["name"] = *name
	}
	switch {
	case len(roles) > 0 && *noRoles:
		return usagef("give --role or --no-roles, not both")
	case len(roles) > 0:
		patch["roles"] = []string(roles)
	case *noRoles:
		patch["roles"] = []string{}
	}
	switch {
	case *disable && *enable:
		return usagef("give --disable or --enable, not both")
	case *disable:
		patch["disabled"] = true
	case *enable:
		patch["disabled"] = false
	}
	if *pwStdin {
		pw, err := c.readSecret()
		if err != nil {
			return err
		}
		patch["password"] = pw
	}
	if len(patch) == 0 {
		return usagef("nothing to change: give --name, --role, --no-roles, --disable, --enable or --password-stdin")
	}
	path, err := c.userPath(*org, pos[0])
	if err != nil {
		return err
	}
	return c.update(path, patch, "gatehouse admin users get --org "+*org+" "+pos[0], c.showUser)
}

func usersDelete(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	pos, err := c.parse(args, "USER")
	if err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	path, err := c.userPath(*org, pos[0])
	if err != nil {
		return err
	}
	if _, _, err := c.api.do(c.ctx, http.MethodDelete, path, nil, nil, ""); err != nil {
		return err
	}
	c.say("Removed %s from org %s; their sessions there ended.", clean(pos[0]), clean(*org))
	return nil
}

// ---- sessions ----

func sessionsList(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	pos, err := c.parse(args, "USER")
	if err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	path, err := c.userPath(*org, pos[0])
	if err != nil {
		return err
	}
	return getList(c, path+"/sessions", printSessions)
}

func sessionsRevoke(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	sid := fs.String("session", "", "revoke this one session")
	pos, err := c.parseAny(args)
	if err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	switch {
	case len(pos) > 1:
		return usagef("unexpected argument %q", pos[1])
	case len(pos) == 1 && *sid != "":
		return usagef("give USER (all their sessions in the org) or --session SID, not both")
	case len(pos) == 0 && *sid == "":
		return usagef("give USER (all their sessions in the org) or --session SID")
	case *sid != "":
		if _, _, err := c.api.do(c.ctx, http.MethodDelete, orgPath(*org)+"/sessions/"+seg(*sid), nil, nil, ""); err != nil {
			return err
		}
		c.say("Revoked session %s.", clean(*sid))
		return nil
	}
	path, err := c.userPath(*org, pos[0])
	if err != nil {
		return err
	}
	if _, _, err := c.api.do(c.ctx, http.MethodDelete, path+"/sessions", nil, nil, ""); err != nil {
		return err
	}
	c.say("Revoked every session of %s in org %s.", clean(pos[0]), clean(*org))
	return nil
}

// ---- tokens ----

// tokensPath is an org's tokens, or without an org the platform's.
func tokensPath(org string) string {
	if org == "" {
		return "/tokens"
	}
	return orgPath(org) + "/tokens"
}

func tokensList(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug); without it, the platform's tokens")
	if _, err := c.parse(args); err != nil {
		return err
	}
	return getList(c, tokensPath(*org), printTokens)
}

func tokensCreate(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug); without it, a platform token")
	name := fs.String("name", "", "what the token is for")
	role := fs.String("role", "", "admin or auditor; platform_admin for a platform token (its default)")
	expires := fs.String("expires-in", "", "lifetime, such as 720h (default: the API's, 90 days)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if *org == "" && *role == "" {
		*role = "platform_admin" // the one role a platform token has
	}
	if err := need("name", *name, "role", *role); err != nil {
		return err
	}
	body := struct {
		Name      string `json:"name"`
		Role      string `json:"role"`
		ExpiresIn string `json:"expires_in,omitempty"`
	}{*name, *role, *expires}
	b, _, err := c.api.do(c.ctx, http.MethodPost, tokensPath(*org), nil, body, "")
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(b)
	}
	var t tokenView
	if err := decodeAnswer(b, &t); err != nil {
		return err
	}
	if t.Secret == "" {
		return errors.New("the API made the token but sent no secret: revoke it (gatehouse admin tokens revoke " + clean(t.ID) + ") and make another")
	}
	return printNewToken(c.stdout, t)
}

func tokensRevoke(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug); without it, a platform token")
	pos, err := c.parse(args, "TOKEN_ID")
	if err != nil {
		return err
	}
	if strings.HasPrefix(pos[0], "ghat_") {
		// Never send a secret where an ID goes: it would land in logs.
		return usagef("give the token's ID (tok_...), not its secret")
	}
	if _, _, err := c.api.do(c.ctx, http.MethodDelete, tokensPath(*org)+"/"+seg(pos[0]), nil, nil, ""); err != nil {
		return err
	}
	c.say("Revoked token %s.", clean(pos[0]))
	return nil
}

// ---- invitations ----

func invitationsList(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	return getList(c, orgPath(*org)+"/invitations", printInvitations)
}

func invitationsCreate(c *cmd, args []string) error {
	fs := c.flags()
	org := fs.String("org", "", "the org (ID or slug)")
	email := fs.String("email", "", "the person's email")
	name := fs.String("name", "", "the person's name")
	var roles strList
	fs.Var(&roles, "role", "a role they get in the org (repeatable); member if none")
	expires := fs.String("expires-in", "", "how long the link works, such as 72h (default: the API's, 7 days)")
	phone := fs.String("phone", "", "a mobile number (E.164, +14155550123) to text the invitation to as well")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := need("org", *org, "email", *email); err != nil {
		return err
	}
	body := struct {
		Email     string   `json:"email"`
		Name      string   `json:"name,omitempty"`
		Roles     []string `json:"roles,omitempty"`
		Phone     string   `json:"phone,omitempty"`
		ExpiresIn string   `json:"expires_in,omitempty"`
	}{*email, *name, roles, *phone, *expires}
	b, _, err := c.api.do(c.ctx, http.MethodPost, orgPath(*org)+"/invitations", nil, body, "")
	if err != nil {
		return err
	}
	return show(c, b, printNewInvitation)
}

// invitationID is the positional invitation ID, never a link's secret.
func invitationID(c *cmd, args []string) (org, id string, err error) {
	fs := c.flags()
	o := fs.String("org", "", "the org (ID or slug)")
	pos, err := c.parse(args, "INVITATION_ID")
	if err != nil {
		return "", "", err
	}
	if err := need("org", *o); err != nil {
		return "", "", err
	}
	if strings.Contains(pos[0], "ghinv_") {
		// Never send a secret where an ID goes: it would land in logs.
		return "", "", usagef("give the invitation's ID (inv_...), not its link")
	}
	return *o, pos[0], nil
}

func invitationsResend(c *cmd, args []string) error {
	org, id, err := invitationID(c, args)
	if err != nil {
		return err
	}
	b, _, err := c.api.do(c.ctx, http.MethodPost, orgPath(org)+"/invitations/"+seg(id)+"/resend", nil, nil, "")
	if err != nil {
		return err
	}
	return show(c, b, printNewInvitation)
}

func invitationsRevoke(c *cmd, args []string) error {
	org, id, err := invitationID(c, args)
	if err != nil {
		return err
	}
	if _, _, err := c.api.do(c.ctx, http.MethodDelete, orgPath(org)+"/invitations/"+seg(id), nil, nil, ""); err != nil {
		return err
	}
	c.say("Revoked invitation %s: its link no longer works.", clean(id))
	return nil
}

// ---- apps ----

func appsList(c *cmd, args []string) error {
	if _, err := c.parse(args); err != nil {
		return err
	}
	return getList(c, "/clients", printApps)
}

func appsGet(c *cmd, args []string) error {
	pos, err := c.parse(args, "APP")
	if err != nil {
		return err
	}
	b, _, err := c.api.do(c.ctx, http.MethodGet, "/clients/"+seg(pos[0]), nil, nil, "")
	if err != nil {
		return err
	}
	return show(c, b, printApp)
}

// appsCreate registers an app from flags, or from a JSON spec file (the
// API's ClientSpec) that the flags given add to.
func appsCreate(c *cmd, args []string) error {
	fs := c.flags()
	file := fs.String("file", "", "a JSON file with the app's settings (as the API takes them)")
	name := fs.String("name", "", "the app's name")
	typ := fs.String("type", "", "web, spa, native or machine")
	org := fs.String("org", "", "the org (ID or slug) of a per-org app")
	audience := fs.String("audience", "", "the access tokens' default audience")
	var redirects, scopes strList
	fs.Var(&redirects, "redirect-uri", "where the app receives the sign-in's answer (repeatable)")
	fs.Var(&scopes, "scope", "a scope the app may ask for beyond openid, profile, email (repeatable)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	spec := map[string]any{}
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &spec); err != nil {
			return fmt.Errorf("%s: not a JSON object: %w", *file, err)
		}
	}
	for k, v := range map[string]string{"name": *name, "type": *typ, "org": *org, "audience": *audience} {
		if v != "" {
			spec[k] = v
		}
	}
	if len(redirects) > 0 {
		spec["redirect_uris"] = []string(redirects)
	}
	if len(scopes) > 0 {
		spec["scopes"] = []string(scopes)
	}
	if spec["name"] == nil || spec["type"] == nil {
		return usagef("--name and --type are required (or in --file)")
	}
	b, _, err := c.api.do(c.ctx, http.MethodPost, "/clients", nil, spec, "")
	if err != nil {
		return err
	}
	return show(c, b, printNewApp)
}

func appsRotateSecret(c *cmd, args []string) error {
	fs := c.flags()
	keep := fs.String("keep-old-for", "", "how long the previous secret keeps working, such as 24h (default: it stops at once)")
	pos, err := c.parse(args, "APP")
	if err != nil {
		return err
	}
	var body any
	if *keep != "" {
		body = map[string]string{"keep_old_for": *keep}
	}
	b, _, err := c.api.do(c.ctx, http.MethodPost, "/clients/"+seg(pos[0])+"/secret", nil, body, "")
	if err != nil {
		return err
	}
	return show(c, b, printNewApp)
}

func appsDelete(c *cmd, args []string) error {
	pos, err := c.parse(args, "APP")
	if err != nil {
		return err
	}
	if _, _, err := c.api.do(c.ctx, http.MethodDelete, "/clients/"+seg(pos[0]), nil, nil, ""); err != nil {
		return err
	}
	c.say("Removed app %s: it gets no more tokens.", clean(pos[0]))
	return nil
}

// ---- audit ----

// auditFlags are the filters audit list and export share.
func auditFlags(fs *flag.FlagSet) (org *string, filters func() url.Values) {
	org = fs.String("org", "", "the org (ID or slug)")
	names := []struct{ name, usage string }{
		{"action", "only events of this action, such as user.update"},
		{"actor", "only events by this actor, such as token:tok_... or user:usr_..."},
		{"target", "only events about this target (an ID)"},
		{"since", "only events at or after this RFC 3339 time"},
		{"until", "only events before this RFC 3339 time"},
	}
	vals := make([]*string, len(names))
	for i, n := range names {
		vals[i] = fs.String(n.name, "", n.usage)
	}
	return org, func() url.Values {
		q := url.Values{}
		for i, n := range names {
			if *vals[i] != "" {
				q.Set(n.name, *vals[i])
			}
		}
		return q
	}
}

func auditList(c *cmd, args []string) error {
	fs := c.flags()
	org, filters := auditFlags(fs)
	limit := fs.Int("limit", 0, "page size, 1 to 500 (default: the API's, 100)")
	all := fs.Bool("all", false, "fetch every page")
	cursor := fs.String("cursor", "", "start at this page (next_cursor of the one before)")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	t := auditTable(c.stdout)
	return c.list(orgPath(*org)+"/audit", filters(), *limit, *all, *cursor, func(items []json.RawMessage) error {
		es := make([]auditEvent, len(items))
		for i, it := range items {
			if err := decodeAnswer(it, &es[i]); err != nil {
				return err
			}
		}
		return printAudit(t, es)
	})
}

// auditExport copies the export's JSON Lines unchanged. Into a file, it
// writes a temporary file beside it and renames it at the end, so that an
// export cut short never looks complete.
func auditExport(c *cmd, args []string) (err error) {
	fs := c.flags()
	org, filters := auditFlags(fs)
	out := fs.String("out", "", "write to this file (mode 0600) instead of stdout")
	if _, err := c.parse(args); err != nil {
		return err
	}
	if err := need("org", *org); err != nil {
		return err
	}
	path := orgPath(*org) + "/audit/export"
	body, header, err := c.api.stream(c.ctx, path, filters())
	if err != nil {
		return err
	}
	defer body.Close()
	if mt, _, _ := mime.ParseMediaType(header.Get("Content-Type")); mt != "application/jsonl" {
		// Something in front of the API answered: copying it would make
		// a file that looks like an export and is not one.
		return fmt.Errorf("GET %s: the answer is %q, not the API's JSON Lines: is --url the deployment's public URL?", c.api.url(path, nil).Redacted(), mt)
	}
	w := c.stdout
	var f *os.File
	if *out != "" {
		if f, err = os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*.partial"); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer func() {
			if err != nil {
				f.Close()
				os.Remove(f.Name())
			}
		}()
		w = f
	}
	tail := &lastByte{w: w}
	n, err := io.Copy(tail, body)
	if err != nil {
		return fmt.Errorf("audit export: cut short after %d bytes: %w", n, err)
	}
	if n > 0 && tail.last != '\n' {
		// Every JSON Line ends with a newline: without one the server
		// stopped mid-event.
		return fmt.Errorf("audit export: cut short after %d bytes, in the middle of an event", n)
	}
	if f != nil {
		if err = f.Sync(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err = f.Close(); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		if err = os.Rename(f.Name(), *out); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
	}
	return nil
}

// lastByte remembers the last byte written through it.
type lastByte struct {
	w    io.Writer
	last byte
}

func (l *lastByte) Write(p []byte) (int, error) {
	n, err := l.w.Write(p)
	if n > 0 {
		l.last = p[n-1]
	}
	return n, err
}

// getList GETs a list the API answers whole ({"items": [...]}) and prints
// it: as the API's JSON, or as a table.
func getList[T any](c *cmd, path string, print func(io.Writer, []T) error) error {
	b, _, err := c.api.do(c.ctx, http.MethodGet, path, nil, nil, "")
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(b)
	}
	var list struct {
		Items []T `json:"items"`
	}
	if err := decodeAnswer(b, &list); err != nil {
		return err
	}
	return print(c.stdout, list.Items)
}

// show prints one object the API answered: as its JSON, or as text.
func show[T any](c *cmd, b []byte, print func(io.Writer, T) error) error {
	if c.json() {
		return c.printJSON(b)
	}
	var v T
	if err := decodeAnswer(b, &v); err != nil {
		return err
	}
	return print(c.stdout, v)
}
