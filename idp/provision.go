package idp

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// subjectOf is the IdP identity a membership is linked to.
func subjectOf(owner *store.Org, id connection.Identity) string {
	return owner.Connection.Type + ":" + id.Issuer + "#" + id.Subject
}

// provisionRetries bounds re-reads after racing another first sign-in.
const provisionRetries = 3

// provision maps a federated identity onto a user and a membership of
// org, creating them just in time unless the org forbids it, and updating
// mapped fields on every sign-in.
//
// With an invitation (taken for this identity's email), the person joins
// even an org that creates no one by itself, with the invited roles too.
func (h *Handler) provision(ctx context.Context, org, owner *store.Org, id connection.Identity, inv *store.Invitation) (store.User, error) {
	p := owner.Connection.Provisioning
	if inv != nil {
		p.ExistingUsersOnly = false
	}
	email, name, roles, err := h.admit(org, owner, id, inv)
	if err != nil {
		return store.User{}, err
	}
	domain, _ := EmailDomain(email) // admit checked it
	groups := id.Groups
	if p.Claims.Groups != "" {
		groups = id.Claims[p.Claims.Groups]
	}
	attrs := map[string]string{}
	for attr, claim := range p.Claims.Attributes {
		if v := id.Claims[claim]; len(v) > 0 {
			attrs[attr] = strings.Join(v, ",")
		}
	}
	subject := subjectOf(owner, id)
	now := h.o.Now()
	for range provisionRetries {
		u, err := h.o.Store.GetUserByEmail(ctx, email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if p.ExistingUsersOnly {
				return store.User{}, connection.Errorf(connection.KindUnknownUser, "provision: no user %s and org %s creates none (existing_users_only)", email, org.Slug)
			}
			u = store.User{ID: newUserID(), Email: email, Name: name, CreatedAt: now, UpdatedAt: now}
			if err := h.o.Store.CreateUser(ctx, u); errors.Is(err, store.ErrAlreadyExists) {
				continue // another first sign-in won; read theirs
			} else if err != nil {
				return store.User{}, connection.Errorf(connection.KindInternal, "provision: create user: %w", err)
			}
			h.audit(ctx, org.ID, u.ID, "user.create", "success", map[string]string{"email": email, "via": owner.Connection.Type})
		case err != nil:
			return store.User{}, connection.Errorf(connection.KindInternal, "provision: read user: %w", err)
		case u.Disabled:
			return store.User{}, connection.Errorf(connection.KindDenied, "provision: user %s is disabled", u.ID)
		case inv != nil && inv.Scope != "":
			if err := h.withinScope(ctx, u, inv.Scope); err != nil {
				return store.User{}, err
			}
		case inv == nil && p.AnyEmailDomain && !p.ExistingUsersOnly:
			// An address of no org's domains may already be a person of
			// another customer's IdP: joining them to this org needs an
			// admin (existing_users_only), not this IdP's word.
			if other, err := h.foreignMembership(ctx, u, owner); err != nil {
				return store.User{}, connection.Errorf(connection.KindInternal, "provision: read memberships: %w", err)
			} else if other != "" {
				if _, err := h.o.Store.GetMembership(ctx, u.ID, org.ID); errors.Is(err, store.ErrNotFound) {
					return store.User{}, connection.Errorf(connection.KindDenied, "provision: %s is a user of org %s, which signs in elsewhere; an admin must add them to org %s", email, other, org.Slug)
				}
			}
		case name != "" && name != u.Name && containsFold(org.EmailDomains, domain):
			// Only the org that owns the address renames the person.
			if u, err = h.o.Store.UpdateUser(ctx, u.ID, func(u store.User) (store.User, error) {
				u.Name, u.UpdatedAt = name, now
				return u, nil
			}); err != nil {
				return store.User{}, connection.Errorf(connection.KindInternal, "provision: update user: %w", err)
			}
		}
		err = h.member(ctx, org, u, subject, roles, groups, attrs, p, inv != nil, now)
		if errors.Is(err, store.ErrAlreadyExists) {
			continue
		}
		return u, err
	}
	return store.User{}, connection.Errorf(connection.KindInternal, "provision: %s: gave up after %d concurrent updates", email, provisionRetries)
}

// member creates or updates the membership (ErrAlreadyExists: retry).
// invited adds roles to those a member has, whatever the IdP's groups
// say this time.
func (h *Handler) member(ctx context.Context, org *store.Org, u store.User, subject string, roles, groups []string, attrs map[string]string, p store.Provisioning, invited bool, now time.Time) error {
	cur, err := h.o.Store.GetMembership(ctx, u.ID, org.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		if p.ExistingUsersOnly {
			return connection.Errorf(connection.KindUnknownUser, "provision: %s is not a member of org %s, which creates none (existing_users_only)", u.Email, org.Slug)
		}
		m := store.Membership{UserID: u.ID, OrgID: org.ID, Roles: roles, Groups: groups, Subject: subject, Attributes: attrs, CreatedAt: now, UpdatedAt: now}
		if err := h.o.Store.CreateMembership(ctx, m); err != nil {
			if errors.Is(err, store.ErrAlreadyExists) {
				return err
			}
			return connection.Errorf(connection.KindInternal, "provision: create membership: %w", err)
		}
		h.audit(ctx, org.ID, u.ID, "membership.create", "success", map[string]string{"roles": strings.Join(roles, ","), "subject": subject})
		return nil
	case err != nil:
		return connection.Errorf(connection.KindInternal, "provision: read membership: %w", err)
	}
	var linked error
	next := func(m store.Membership) (store.Membership, error) {
		if m.Disabled {
			linked = connection.Errorf(connection.KindDenied, "provision: %s is suspended in org %s", u.Email, org.Slug)
			return m, linked
		}
		if m.Subject != "" && m.Subject != subject {
			linked = connection.Errorf(connection.KindDenied, "provision: %s is linked to IdP identity %q, this sign-in is %q", u.Email, m.Subject, subject)
			return m, linked
		}
		m.Subject = subject
		switch {
		case invited:
			m.Roles = mergeRoles(m.Roles, roles)
		case len(p.GroupRoles) > 0:
			m.Roles = roles // the IdP's groups are the source of truth
		}
		m.Groups, m.Attributes, m.UpdatedAt = groups, attrs, now
		return m, nil
	}
	// A returning person whose membership this sign-in leaves as it is (the
	// usual case) costs no write: a synced commit fewer per sign-in. A
	// denial, or anything to change, goes through the locked update,
	// which decides again on the current record.
	if want, err := next(cur); err == nil && sameMembership(cur, want) {
		return nil
	}
	linked = nil
	_, err = h.o.Store.UpdateMembership(ctx, u.ID, org.ID, next)
	if linked != nil {
		return linked
	}
	if err != nil {
		return connection.Errorf(connection.KindInternal, "provision: update membership: %w", err)
	}
	return nil
}

// sameMembership: b changes nothing of a but the time of the update.
func sameMembership(a, b store.Membership) bool {
	return a.Subject == b.Subject && a.Disabled == b.Disabled && slices.Equal(a.Roles, b.Roles) &&
		slices.Equal(a.Groups, b.Groups) && maps.Equal(a.Attributes, b.Attributes)
}

// foreignMembership names an org of u's that signs in through another
// connection than owner's ("" if none).
func (h *Handler) foreignMembership(ctx context.Context, u store.User, owner *store.Org) (string, error) {
	ms, err := h.o.Store.ListMembershipsByUser(ctx, u.ID)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if o, ok := h.o.Orgs.ByID(m.OrgID); ok && !h.sameOwner(o, owner) {
			return o.Slug, nil
		}
	}
	return "", nil
}

// identityEmail is the lowercased address an IdP's identity carries
// (through the org's claim mapping).
func identityEmail(owner *store.Org, id connection.Identity) string {
	return strings.ToLower(strings.TrimSpace(first(id.Claims, owner.Connection.Provisioning.Claims.Email, id.Email)))
}

func newUserID() string { return "usr_" + strings.ToLower(token.RandomID()[:26]) }

// mergeRoles is a, then the roles of b not in it.
func mergeRoles(a, b []string) []string {
	out := slices.Clone(a)
	for _, r := range b {
		if !containsFold(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// mapRoles: the roles of the person's groups plus the default roles;
// false when that is none and the org gives no default.
func mapRoles(p store.Provisioning, groups []string) ([]string, bool) {
	defaults := p.DefaultRoles
	if defaults == nil {
		defaults = []string{"member"}
	}
	var roles []string
	add := func(rs []string) {
		for _, r := range rs {
			if !containsFold(roles, r) {
				roles = append(roles, r)
			}
		}
	}
	for _, g := range groups {
		add(p.GroupRoles[g])
	}
	add(defaults)
	return roles, len(roles) > 0
}

// first is claims[name][0] when a mapping names a claim, else def.
func first(claims map[string][]string, name, def string) string {
	if name == "" {
		return def
	}
	if v := claims[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// admit checks a federated identity against org's rules before anything
// is written: an email, verified, of the org's domains and no other
// org's, groups that map to roles. It returns the email, name and roles
// the person gets. (Also the login tracer's verdict on a test sign-in.)
func (h *Handler) admit(org, owner *store.Org, id connection.Identity, inv *store.Invitation) (email, name string, roles []string, err error) {
	p := owner.Connection.Provisioning
	email = identityEmail(owner, id)
	name = first(id.Claims, p.Claims.Name, id.Name)
	groups := id.Groups
	if p.Claims.Groups != "" {
		groups = id.Claims[p.Claims.Groups]
	}
	if email == "" {
		return "", "", nil, connection.Errorf(connection.KindDenied, "provision: the IdP sent no email (claim %q)", orDefault(p.Claims.Email, "email"))
	}
	domain, err := EmailDomain(email)
	if err != nil {
		return "", "", nil, connection.Errorf(connection.KindInvalid, "provision: malformed email %q", truncate(email, 100))
	}
	if !id.EmailVerified {
		return "", "", nil, connection.Errorf(connection.KindDenied, "provision: the IdP does not mark %s verified (email_verified); the org may set allow_unverified_email", email)
	}
	domains := org.EmailDomains
	if len(domains) == 0 {
		domains = owner.EmailDomains
	}
	if !p.AnyEmailDomain && !containsFold(domains, domain) {
		return "", "", nil, connection.Errorf(connection.KindWrongDomain, "provision: %s is not one of org %s's email domains %v", email, org.Slug, domains)
	}
	// Even an org that takes any domain cannot take one another org owns:
	// its IdP would sign in (and rename) that org's people.
	if d, ok := h.o.Orgs.ByEmailDomain(domain); ok && !h.sameOwner(d, owner) {
		return "", "", nil, connection.Errorf(connection.KindWrongDomain, "provision: %s belongs to org %s, not to org %s's sign-in", email, d.Slug, org.Slug)
	}
	roles, ok := mapRoles(p, groups)
	if inv != nil {
		roles, ok = mergeRoles(roles, inv.Roles), true
	}
	if !ok {
		return "", "", nil, connection.Errorf(connection.KindDenied, "provision: groups %v map to no role and the org has no default roles", groups)
	}
	return email, name, roles, nil
}
