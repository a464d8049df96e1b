package admin

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/store"
)

// UserView is a person as an org's admins see them: the user and their
// membership in that org.
type UserView struct {
	ID     string   `json:"id"`
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Roles  []string `json:"roles"`
	Groups []string `json:"groups"`
	// Disabled: suspended in this org. Their sessions here end.
	Disabled bool `json:"disabled"`
	// Federated: the person signs in through the org's IdP (and is linked
	// to that identity); HasPassword: through the org's password pool.
	Federated   bool `json:"federated"`
	HasPassword bool `json:"has_password"`
	// Factors are the person's second factors in this org ("totp");
	// RecoveryCodes how many of their recovery codes are left.
	Factors       []string          `json:"factors"`
	RecoveryCodes int               `json:"recovery_codes"`
	Attributes    map[string]string `json:"attributes"`
	ManagedBy     string            `json:"managed_by"`
	CreatedAt     time.Time         `json:"created_at"`
	UpdatedAt     time.Time         `json:"updated_at"`
}

func userView(u store.User, m store.Membership) UserView {
	v := UserView{ID: u.ID, Email: u.Email, Name: u.Name, Roles: m.Roles, Groups: m.Groups, Disabled: m.Disabled || u.Disabled,
		Federated: m.Subject != "", HasPassword: m.PasswordHash != "", Attributes: m.Attributes, ManagedBy: managedBy(m.Declared),
		CreatedAt: m.CreatedAt, UpdatedAt: later(m.UpdatedAt, u.UpdatedAt), Factors: []string{}}
	if m.Factors != nil {
		if m.Factors.TOTP != nil {
			v.Factors = append(v.Factors, "totp")
		}
		v.RecoveryCodes = len(m.Factors.RecoveryCodes)
	}
	if v.Roles == nil {
		v.Roles = []string{}
	}
	if v.Groups == nil {
		v.Groups = []string{}
	}
	if v.Attributes == nil {
		v.Attributes = map[string]string{}
	}
	return v
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// userFields are the fields an admin changes, for audit events.
func userFields(u store.User, m store.Membership) map[string]any {
	return map[string]any{"email": u.Email, "name": u.Name, "roles": m.Roles, "disabled": m.Disabled, "password": m.PasswordHash}
}

type userPage struct {
	Items      []UserView `json:"items"`
	NextCursor string     `json:"next_cursor,omitempty"`
}

type memberCursor struct {
	Email string `json:"e"`
	ID    string `json:"i"`
}

// listUsers pages through the org's members, by email; q searches email
// and name.
func (a *API) listUsers(c *call) error {
	limit, ferr := limitParam(c.r)
	if ferr != nil {
		return invalid(*ferr)
	}
	if email := c.r.URL.Query().Get("email"); email != "" {
		// An exact address: the one person, or none.
		page := userPage{Items: []UserView{}}
		u, err := a.o.Store.GetUserByEmail(c.ctx(), email)
		if err == nil {
			var m store.Membership
			if m, err = a.o.Store.GetMembership(c.ctx(), u.ID, c.org.ID); err == nil {
				page.Items = append(page.Items, userView(u, m))
			}
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("admin: find %s: %w", email, err)
		}
		return c.reply(http.StatusOK, page)
	}
	q := store.MemberQuery{OrgID: c.org.ID, Search: c.r.URL.Query().Get("q"), Limit: limit + 1}
	if len(q.Search) > 256 {
		return invalid(field("/q", "at most 256 characters"))
	}
	if cur := c.r.URL.Query().Get("cursor"); cur != "" {
		var mc memberCursor
		b, err := base64.RawURLEncoding.DecodeString(cur)
		if err != nil || json.Unmarshal(b, &mc) != nil || mc.ID == "" {
			return invalid(field("/cursor", "is not a cursor this API returned"))
		}
		q.AfterEmail, q.AfterID = mc.Email, mc.ID
	}
	ms, err := a.o.Store.ListMembers(c.ctx(), q)
	if err != nil {
		return fmt.Errorf("admin: list members: %w", err)
	}
	page := userPage{Items: make([]UserView, 0, min(len(ms), limit))}
	for i, m := range ms {
		if i == limit {
			last := ms[limit-1].User
			b, _ := json.Marshal(memberCursor{Email: strings.ToLower(last.Email), ID: last.ID})
			page.NextCursor = base64.RawURLEncoding.EncodeToString(b)
			break
		}
		page.Items = append(page.Items, userView(m.User, m.Membership))
	}
	return c.reply(http.StatusOK, page)
}

// member reads the path's user in the path's org; 404 unless a member.
func (c *call) member() (store.User, store.Membership, error) {
	uid := c.r.PathValue("user")
	m, err := c.a.o.Store.GetMembership(c.ctx(), uid, c.org.ID)
	if err := storeErr(err, "user in this org"); err != nil {
		return store.User{}, m, err
	}
	u, err := c.a.o.Store.GetUser(c.ctx(), uid)
	if err := storeErr(err, "user in this org"); err != nil {
		return u, m, err
	}
	return u, m, nil
}

// resetFactors removes the person's second factors in the org: they set
// up a new one at their next sign-in (if the org requires one). Their
// open sessions are left as they are.
func (a *API) resetFactors(c *call) error {
	u, _, err := c.member()
	if err != nil {
		return err
	}
	var had []string
	m, err := a.o.Store.UpdateMembership(c.ctx(), u.ID, c.org.ID, func(m store.Membership) (store.Membership, error) {
		had = userView(u, m).Factors
		m.Factors, m.UpdatedAt = nil, a.o.Now().UTC()
		return m, nil
	})
	if err := storeErr(err, "user in this org"); err != nil {
		return err
	}
	c.record(c.org.ID, "user.factors.reset", u.ID, "success", map[string]string{"factors": strings.Join(had, ",")})
	return c.replyETag(http.StatusOK, userView(u, m), etagOf(u, m))
}

func (a *API) getUser(c *call) error {
	u, m, err := c.member()
	if err != nil {
		return err
	}
	return c.replyETag(http.StatusOK, userView(u, m), etagOf(u, m))
}

type userCreate struct {
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	Roles    []string `json:"roles"`
	Password string   `json:"password"`
}

func rolesProblems(errs *fields, at string, roles []string) {
	if len(roles) > 64 {
		errs.add(at, "at most 64 roles")
	}
	for i, r := range roles {
		lr := strings.ToLower(r)
		switch {
		case config.RoleProblem(r) != "":
			errs.add(fmt.Sprintf("%s/%d", at, i), "%s", config.RoleProblem(r))
		case lr == store.RolePlatformAdmin:
			errs.add(fmt.Sprintf("%s/%d", at, i), "is reserved: platform admins are declared in the config file")
		case (lr == store.RoleAdmin || lr == store.RoleAuditor) && r != lr:
			errs.add(fmt.Sprintf("%s/%d", at, i), "write it %s (roles are case-sensitive; this one would grant nothing here but look like it to apps)", lr)
		}
	}
}

// mayGrant refuses roles above the caller's own (platform admins may
// grant any).
func (c *call) mayGrant(roles []string) error {
	if rank(roleOf(roles)) > rank(c.p.Role) && !c.p.Platform {
		return forbidden("You cannot grant a role above your own.")
	}
	return nil
}

// newMember normalizes a new member's email and adds to errs what is
// wrong with it, their name and their roles.
func (c *call) newMember(email *string, name string, roles []string, errs *fields) error {
	*email = strings.ToLower(strings.TrimSpace(*email))
	if err := c.newMemberEmail(*email, errs); err != nil {
		return err
	}
	if msg := config.TextProblem(name, 200); msg != "" {
		errs.add("/name", "%s", msg)
	}
	rolesProblems(errs, "/roles", roles)
	return nil
}

// newMemberEmail adds to errs what is wrong with a new member's address:
// an org with email domains takes only addresses in them, unless a
// platform admin adds the person.
func (c *call) newMemberEmail(email string, errs *fields) error {
	if msg := config.EmailProblem(email); msg != "" {
		errs.add("/email", "%s", msg)
		return nil
	}
	doms, err := c.a.emailDomains(c)
	if err != nil {
		return err
	}
	if _, dom, _ := strings.Cut(email, "@"); len(doms) > 0 && !slices.Contains(doms, dom) && !c.p.Platform {
		errs.add("/email", "is not in the org's email domains (%s)", strings.Join(doms, ", "))
	}
	return nil
}

// mayJoin: an existing person joins this org only if every org they are
// in is the caller's too. Otherwise an org admin could give another
// org's person (or a platform admin) a password here and sign in as them.
func (c *call) mayJoin(u store.User) error {
	if c.p.Platform {
		return nil
	}
	if u.PlatformAdmin {
		return forbidden("This address is a platform admin's: only a platform admin adds them to an org.")
	}
	if ok, err := c.a.ownsAllOrgs(c, u.ID); err != nil {
		return err
	} else if !ok {
		return conflict("person-elsewhere", u.Email+" is a person of an organization outside yours: a platform admin can add them here.")
	}
	return nil
}

// createUser adds a person to the org: a new user, or an existing one
// (by email) who gets a membership here. An org with email domains takes
// only addresses in them, unless a platform admin adds the person.
func (a *API) createUser(c *call) error {
	var in userCreate
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	if err := c.newMember(&in.Email, in.Name, in.Roles, &errs); err != nil {
		return err
	}
	if in.Password != "" {
		if msg := password.Problem(in.Password); msg != "" {
			errs.add("/password", "%s", msg)
		}
	}
	if err := errs.err(); err != nil {
		return err
	}
	if err := c.mayGrant(in.Roles); err != nil {
		return err
	}
	now := a.o.Now().UTC()
	u, err := a.o.Store.GetUserByEmail(c.ctx(), in.Email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u = store.User{ID: "usr_" + strings.ToLower(rand.Text()[:26]), Email: in.Email, Name: in.Name, CreatedAt: now, UpdatedAt: now}
		if err := a.o.Store.CreateUser(c.ctx(), u); errors.Is(err, store.ErrAlreadyExists) {
			return conflict("exists", "Another request added this person at the same time; try again.")
		} else if err != nil {
			return fmt.Errorf("admin: create user: %w", err)
		}
	case err != nil:
		return fmt.Errorf("admin: read user: %w", err)
	default:
		if err := c.mayJoin(u); err != nil {
			return err
		}
	}
	m := store.Membership{UserID: u.ID, OrgID: c.org.ID, Roles: in.Roles, CreatedAt: now, UpdatedAt: now}
	if in.Password != "" {
		if err := a.passwordOrg(c); err != nil {
			return err
		}
		if m.PasswordHash, err = password.Hash(in.Password); err != nil {
			return fmt.Errorf("admin: hash password: %w", err)
		}
	}
	if err := a.o.Store.CreateMembership(c.ctx(), m); errors.Is(err, store.ErrAlreadyExists) {
		return conflict("exists", in.Email+" is a member of this org already.")
	} else if errors.Is(err, store.ErrNotFound) {
		return notFound("org") // deleted meanwhile
	} else if err != nil {
		return fmt.Errorf("admin: create membership: %w", err)
	}
	c.record(c.org.ID, "user.create", u.ID, "success", change(nil, userFields(u, m)))
	c.w.Header().Set("Location", Prefix+"/orgs/"+c.org.ID+"/users/"+u.ID)
	return c.replyETag(http.StatusCreated, userView(u, m), etagOf(u, m))
}

// userPatch is a JSON merge patch of a member.
type userPatch struct {
	Name     *string   `json:"name"`
	Roles    *[]string `json:"roles"`
	Disabled *bool     `json:"disabled"`
	Password optString `json:"password"`
}

// optString is a merge-patch field that tells absent, null and a value
// apart (a *string reads null as absent).
type optString struct {
	set  bool // present in the patch (null included)
	null bool
	v    string
}

func (o *optString) UnmarshalJSON(b []byte) error {
	// A key sent twice: the last wins, whole.
	o.set, o.null, o.v = true, string(b) == "null", ""
	if o.null {
		return nil
	}
	return json.Unmarshal(b, &o.v)
}

// removes reports whether the patch removes the value (null or "").
func (o optString) removes() bool { return o.set && (o.null || o.v == "") }

// updateUser changes a member. Roles, suspension and the password are
// the org's; the name is the person's profile, which an org's admins
// change only if every org the person belongs to is theirs.
func (a *API) updateUser(c *call) error {
	var in userPatch
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	if in.Name != nil {
		if msg := config.TextProblem(*in.Name, 200); msg != "" {
			errs.add("/name", "%s", msg)
		}
	}
	if in.Roles != nil {
		rolesProblems(&errs, "/roles", *in.Roles)
	}
	if in.Password.set && !in.Password.removes() {
		if msg := password.Problem(in.Password.v); msg != "" {
			errs.add("/password", "%s", msg)
		}
	}
	if err := errs.err(); err != nil {
		return err
	}
	u, m, err := c.member()
	if err != nil {
		return err
	}
	if m.Declared {
		return c.declared(u.Email + "'s membership of org " + c.org.Slug)
	}
	if err := c.precondition(etagOf(u, m)); err != nil {
		return err
	}
	if in.Roles != nil && len(c.org.Connection.Provisioning.GroupRoles) > 0 {
		return conflict("roles-from-idp", "Org "+c.org.Slug+"'s roles come from its IdP's groups (group_roles): change the group mapping or the person's groups at the IdP.")
	}
	if in.Roles != nil && !c.p.Platform && (rank(roleOf(*in.Roles)) > rank(c.p.Role) || rank(roleOf(m.Roles)) > rank(c.p.Role)) {
		return forbidden("You cannot grant or take away a role above your own.")
	}
	if in.Disabled != nil && *in.Disabled && u.ID == c.p.UserID && c.p.TokenID == "" {
		return forbidden("You cannot suspend yourself.")
	}
	if u.PlatformAdmin && !c.p.Platform && (in.Password.set || in.Disabled != nil || in.Roles != nil || in.Name != nil) {
		return forbidden("This person is a platform admin: only a platform admin changes them.")
	}
	if in.Password.set && !in.Password.removes() && !c.p.Platform {
		// A password set here signs the person in here; their other orgs'
		// admins did not agree to that.
		if ok, err := a.ownsAllOrgs(c, u.ID); err != nil {
			return err
		} else if !ok {
			return conflict("profile-shared", u.Email+" belongs to other orgs too: they set their own password, or a platform admin does.")
		}
	}
	if in.Name != nil && !c.p.Platform {
		if ok, err := a.ownsAllOrgs(c, u.ID); err != nil {
			return err
		} else if !ok {
			return conflict("profile-shared", u.Email+" belongs to other orgs too: their name is changed at their sign-in or by a platform admin.")
		}
	}
	var hash string
	if in.Password.set && !in.Password.removes() {
		if err := a.passwordOrg(c); err != nil {
			return err
		}
		if hash, err = password.Hash(in.Password.v); err != nil {
			return fmt.Errorf("admin: hash password: %w", err)
		}
	}
	now := a.o.Now().UTC()
	before := userFields(u, m)
	if in.Name != nil && *in.Name != u.Name {
		if u, err = a.o.Store.UpdateUser(c.ctx(), u.ID, func(cur store.User) (store.User, error) {
			if etagOf(cur, m) != etagOf(u, m) {
				return cur, &Problem{Status: http.StatusPreconditionFailed, Code: "changed", Detail: "The person changed since you read them: read again, then apply your change."}
			}
			cur.Name, cur.UpdatedAt = *in.Name, now
			return cur, nil
		}); err != nil {
			return storeErr(err, "user in this org")
		}
	}
	if in.Roles != nil || in.Disabled != nil || in.Password.set {
		if m, err = a.o.Store.UpdateMembership(c.ctx(), u.ID, c.org.ID, func(cur store.Membership) (store.Membership, error) {
			if etagOf(cur) != etagOf(m) {
				return cur, &Problem{Status: http.StatusPreconditionFailed, Code: "changed", Detail: "The person changed since you read them: read again, then apply your change."}
			}
			if in.Roles != nil {
				cur.Roles = slices.Clone(*in.Roles)
			}
			if in.Disabled != nil {
				cur.Disabled = *in.Disabled
			}
			if in.Password.set {
				cur.PasswordHash = hash // "" when the patch removes it
			}
			cur.UpdatedAt = now
			return cur, nil
		}); err != nil {
			return storeErr(err, "user in this org")
		}
	}
	if m.Disabled {
		// Suspension ends the person's sessions in this org at once here,
		// and on other nodes at their next check (the membership says so).
		if _, err := a.revokeSessions(c, u.ID, c.org.ID); err != nil {
			return err
		}
	}
	c.record(c.org.ID, "user.update", u.ID, "success", change(before, userFields(u, m)))
	return c.replyETag(http.StatusOK, userView(u, m), etagOf(u, m))
}

// emailDomains are the org's email domains, or, for a sub-org without
// its own, the nearest ancestor's: a sub-org is no way around its
// parent's.
func (a *API) emailDomains(c *call) ([]string, error) {
	chain, err := a.ancestry(c.ctx(), c.org.ID)
	if err != nil {
		return nil, err
	}
	for _, id := range chain {
		o, err := a.o.Store.GetOrg(c.ctx(), id)
		if err != nil {
			return nil, fmt.Errorf("admin: read org %s: %w", id, err)
		}
		if len(o.EmailDomains) > 0 {
			return o.EmailDomains, nil
		}
	}
	return nil, nil
}

// passwordOrg refuses a password in an org that signs in through an IdP
// (its own connection, or the nearest one above it a sub-org inherits).
func (a *API) passwordOrg(c *call) error {
	chain, err := a.ancestry(c.ctx(), c.org.ID)
	if err != nil {
		return err
	}
	for _, id := range chain {
		o, err := a.o.Store.GetOrg(c.ctx(), id)
		if err != nil {
			return fmt.Errorf("admin: read org %s: %w", id, err)
		}
		switch o.Connection.Type {
		case "":
			continue
		case "password":
			return nil
		}
		return invalid(field("/password", "org %s signs in through its IdP: its members have no password here", c.org.Slug))
	}
	return nil
}

// ownsAllOrgs reports whether every org the user belongs to is in the
// caller's scope.
func (a *API) ownsAllOrgs(c *call, uid string) (bool, error) {
	ms, err := a.o.Store.ListMembershipsByUser(c.ctx(), uid)
	if err != nil {
		return false, fmt.Errorf("admin: read memberships: %w", err)
	}
	for _, m := range ms {
		o, err := a.o.Store.GetOrg(c.ctx(), m.OrgID)
		if err != nil {
			return false, fmt.Errorf("admin: read org: %w", err)
		}
		if ok, err := a.inScope(c.ctx(), c.p, &o); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// deleteUser removes the person from the org (their sessions there end);
// a person left in no org, and no platform admin, is deleted whole, with
// the API tokens they made.
func (a *API) deleteUser(c *call) error {
	u, m, err := c.member()
	if err != nil {
		return err
	}
	if m.Declared {
		return c.declared(u.Email + "'s membership of org " + c.org.Slug)
	}
	if u.ID == c.p.UserID && c.p.TokenID == "" {
		return forbidden("You cannot remove yourself.")
	}
	if rank(roleOf(m.Roles)) > rank(c.p.Role) && !c.p.Platform {
		return forbidden("You cannot remove someone whose role is above your own.")
	}
	if u.PlatformAdmin && !c.p.Platform {
		return forbidden("This person is a platform admin: only a platform admin removes them.")
	}
	if c.r.Header.Get("If-Match") != "" {
		if err := c.precondition(etagOf(u, m)); err != nil {
			return err
		}
	}
	// Revoked first, so that they end on this node at once (the delete
	// removes their records; other nodes notice at their next check).
	if _, err := a.revokeSessions(c, u.ID, c.org.ID); err != nil {
		return err
	}
	if err := storeErr(a.o.Store.DeleteMembership(c.ctx(), u.ID, c.org.ID), "user in this org"); err != nil {
		return err
	}
	details := change(userFields(u, m), map[string]any{})
	ms, err := a.o.Store.ListMembershipsByUser(c.ctx(), u.ID)
	if err != nil {
		return fmt.Errorf("admin: read memberships: %w", err)
	}
	if len(ms) == 0 && !u.PlatformAdmin {
		if err := a.o.Store.DeleteUser(c.ctx(), u.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("admin: delete user: %w", err)
		}
		details["user_deleted"] = "true"
	}
	c.record(c.org.ID, "user.delete", u.ID, "success", details)
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
