package apply

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/store"
)

// seed makes the store match the orgs and users declared in the config
// (GitOps): declared objects are created or updated; objects that exist
// only in the store (added at runtime) are left alone. An org the config
// declared before and no longer does loses its domains, so that they are
// never served by an org nobody manages; an org declared now that claims
// one of them takes its claim over, token and verification included (a
// renamed slug keeps its verified domain). Its users and memberships are
// kept. A declared org keeps the claims on domains it no longer declares
// (unused), so that a domain put back keeps its token and verification.
func Orgs(ctx context.Context, st store.Store, orgs []config.Org, now time.Time, log *slog.Logger) error {
	key, err := store.Secret32(ctx, st, domainTokenKey)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	declared := map[string]bool{}
	for _, co := range orgs {
		declared[co.Slug] = true
	}
	all, err := st.ListOrgs(ctx)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	// The pool: claims of orgs released now, and claims released orgs
	// kept from before (unused by their org), for a declared org to take
	// over.
	var released []store.Org
	pool := map[string]store.DomainClaim{} // kind/name → claim
	holder := map[string]string{}          // kind/name → id of the org holding it
	for _, o := range all {
		if declared[o.Slug] {
			continue
		}
		releasedNow := o.Declared
		if releasedNow {
			released = append(released, o)
		}
		for _, c := range o.Domains {
			if releasedNow || !o.Uses(c) {
				pool[c.Kind+"/"+c.Name], holder[c.Kind+"/"+c.Name] = c, o.ID
			}
		}
	}
	taken := map[string]string{} // kind/name → slug of the org that took the claim
	ids := map[string]string{}   // slug → id
	for _, co := range orgs {
		o, err := st.GetOrgBySlug(ctx, co.Slug)
		switch {
		case errors.Is(err, store.ErrNotFound):
			o = store.Org{ID: "org_" + newID(), Slug: co.Slug, CreatedAt: now}
			applyOrg(&o, co, now, pool, taken, key)
			if err := st.CreateOrg(ctx, o); err != nil {
				return fmt.Errorf("seed: org %s: %w", co.Slug, err)
			}
		case err != nil:
			return fmt.Errorf("seed: org %s: %w", co.Slug, err)
		default:
			if _, err := st.UpdateOrg(ctx, o.ID, func(o store.Org) (store.Org, error) {
				applyOrg(&o, co, now, pool, taken, key)
				return o, nil
			}); err != nil {
				return fmt.Errorf("seed: org %s: %w", co.Slug, err)
			}
		}
		ids[co.Slug] = o.ID
	}
	for _, o := range released {
		if _, err := st.UpdateOrg(ctx, o.ID, func(o store.Org) (store.Org, error) {
			o.LoginDomain, o.EmailDomains, o.Declared = "", nil, false
			o.UpdatedAt = now
			return o, nil
		}); err != nil {
			return fmt.Errorf("seed: org %s: %w", o.Slug, err)
		}
		log.Warn("seed: org no longer in the config: its domains are released; its users and memberships are kept",
			"org", o.Slug, "login_domain", o.LoginDomain, "email_domains", o.EmailDomains)
	}
	// Claims another org took over leave their holder; the others stay
	// (with their tokens) in case their org is declared again.
	from := map[string]bool{}
	for k := range taken {
		from[holder[k]] = true
	}
	for id := range from {
		if _, err := st.UpdateOrg(ctx, id, func(o store.Org) (store.Org, error) {
			o.Domains = slices.DeleteFunc(o.Domains, func(c store.DomainClaim) bool {
				return taken[c.Kind+"/"+c.Name] != "" && !o.Uses(c)
			})
			return o, nil
		}); err != nil {
			return fmt.Errorf("seed: org %s: %w", id, err)
		}
	}
	// Branding files become blobs; the org record names them.
	for _, co := range orgs {
		var b *store.Branding
		if co.Branding != nil {
			var err error
			if b, err = seedBranding(ctx, st, co.Branding); err != nil {
				return fmt.Errorf("seed: org %s branding: %w", co.Slug, err)
			}
		}
		if _, err := st.UpdateOrg(ctx, ids[co.Slug], func(o store.Org) (store.Org, error) {
			o.Branding = b
			return o, nil
		}); err != nil {
			return fmt.Errorf("seed: org %s branding: %w", co.Slug, err)
		}
	}
	// Parents are resolved once every org has an ID.
	for _, co := range orgs {
		parent := ids[co.Parent]
		if _, err := st.UpdateOrg(ctx, ids[co.Slug], func(o store.Org) (store.Org, error) {
			o.ParentID = parent
			return o, nil
		}); err != nil {
			return fmt.Errorf("seed: org %s parent: %w", co.Slug, err)
		}
	}
	for _, co := range orgs {
		kept := map[string]bool{}
		for _, cu := range co.Users {
			uid, err := seedUser(ctx, st, ids[co.Slug], cu, now)
			if err != nil {
				return fmt.Errorf("seed: org %s user %s: %w", co.Slug, cu.Email, err)
			}
			kept[uid] = true
		}
		// A user the file no longer declares stays a member, now the admin
		// API's to manage.
		ms, err := st.ListMembershipsByOrg(ctx, ids[co.Slug])
		if err != nil {
			return fmt.Errorf("seed: org %s: %w", co.Slug, err)
		}
		for _, m := range ms {
			if m.Declared && !kept[m.UserID] {
				if _, err := st.UpdateMembership(ctx, m.UserID, m.OrgID, func(m store.Membership) (store.Membership, error) {
					m.Declared, m.UpdatedAt = false, now
					return m, nil
				}); err != nil {
					return fmt.Errorf("seed: org %s: %w", co.Slug, err)
				}
			}
		}
	}
	return nil
}

func applyOrg(o *store.Org, co config.Org, now time.Time, pool map[string]store.DomainClaim, taken map[string]string, key []byte) {
	prev := *o // the domains it had: a claim coming back into use is checked soon
	o.Name = co.Name
	o.EmailDomains = lower(co.EmailDomains)
	o.Declared = true
	o.LoginDomain = strings.ToLower(co.LoginDomain)
	o.Connection = storeConnection(co.Connection)
	o.Domains = claims(prev, o.LoginDomain, o.EmailDomains, pool, taken, key)
	o.Notifications = nil
	for kind, n := range co.Notifications {
		if o.Notifications == nil {
			o.Notifications = map[string]store.MessageTemplate{}
		}
		o.Notifications[kind] = store.MessageTemplate(n)
	}
	o.Attributes = maps.Clone(co.Attributes)
	o.TokenClaims = maps.Clone(co.TokenClaims)
	remember, noRemember, _ := config.ParseRememberDevice(co.MFA.RememberDevice) // checked at load
	o.MFA = store.MFARules{Require: co.MFA.Require, AfterIdP: co.MFA.AfterIdP, Factors: slices.Clone(co.MFA.Factors),
		RememberDevice: remember, NoRememberDevice: noRemember}
	o.NewSignInAlert = co.NewSignInAlert
	o.Session = store.SessionRules{Lifetime: co.Session.Lifetime, IdleTimeout: co.Session.IdleTimeout, MaxPerPerson: co.Session.MaxPerPerson}
	if co.Policy == "" {
		// The config is the source of truth for the orgs it declares: a
		// policy removed from it is removed from the store.
		o.Policy = nil
	}
	o.UpdatedAt = now
}

// claims keeps the org's domain claims in step with its declared domains:
// a claim already made keeps its token and status; one a released org
// held is taken over (see seed); a new one is pending, with the token
// domainToken derives. A claim on a domain no longer declared is kept,
// unused (it routes nothing, gets no certificate and is not checked), so
// that putting the domain back (a config rollback) does not take a
// verified customer offline: it comes back verified, and is checked at
// the next tick (its record may have gone meanwhile).
func claims(prev store.Org, login string, email []string, pool map[string]store.DomainClaim, taken map[string]string, key []byte) []store.DomainClaim {
	var out []store.DomainClaim
	seen := map[string]bool{}
	claim := func(name, kind string) {
		k := kind + "/" + name
		if seen[k] {
			return
		}
		seen[k] = true
		for _, c := range prev.Domains {
			if c.Kind == kind && c.Name == name {
				if !prev.Uses(c) && c.Status != store.DomainPending {
					c.Retry = true
				}
				out = append(out, c)
				return
			}
		}
		// (by = slug: an UpdateOrg retry runs this again.)
		if c, ok := pool[k]; ok && (taken[k] == "" || taken[k] == prev.Slug) {
			taken[k] = prev.Slug
			if c.Status != store.DomainPending {
				c.Retry = true // unchecked while released
			}
			out = append(out, c)
			return
		}
		out = append(out, store.DomainClaim{Name: name, Kind: kind, Token: domainToken(key, prev.ID, name), Status: store.DomainPending})
	}
	if login != "" {
		claim(login, "login")
	}
	for _, d := range email {
		claim(d, "email")
	}
	for _, c := range prev.Domains {
		if !seen[c.Kind+"/"+c.Name] {
			out = append(out, c)
		}
	}
	return out
}

// domainTokenKey names the deployment secret verification tokens are
// derived from.
const domainTokenKey = "domain-token-key"

// domainToken is the verification token of org orgID's claim on name: an
// HMAC of both under the deployment's secret. The same org always gets
// the same token for a domain (a claim lost or re-made asks the customer
// for nothing new), another org another one; login and email claims on
// one name share it, so one TXT record proves both.
func domainToken(key []byte, orgID, name string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(orgID + "\x00" + strings.ToLower(name)))
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(m.Sum(nil)[:16]))
}

// storeConnection is the stored form of a declared connection: the
// protocol's settings as its package's JSON config.
func storeConnection(c config.Connection) store.Connection {
	sc := store.Connection{Type: c.Type, Provisioning: store.Provisioning{
		ExistingUsersOnly: c.ExistingUsersOnly, AnyEmailDomain: c.AnyEmailDomain, GroupRoles: c.GroupRoles,
		Claims: store.ClaimMapping{Email: c.Claims.Email, Name: c.Claims.Name, Groups: c.Claims.Groups, Attributes: c.Claims.Attributes},
	}}
	if c.DefaultRoles != nil {
		sc.Provisioning.DefaultRoles = append([]string{}, *c.DefaultRoles...)
	}
	if c.Settings != nil {
		// The protocol's own settings, stored as its package reads them.
		sc.Config, _ = json.Marshal(c.Settings)
	}

	return sc
}

func seedUser(ctx context.Context, st store.Store, orgID string, cu config.User, now time.Time) (string, error) {
	email := strings.ToLower(cu.Email)
	u, err := st.GetUserByEmail(ctx, email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u = store.User{ID: "usr_" + newID(), Email: email, Name: cu.Name, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			return "", err
		}
	case err != nil:
		return "", err
	case cu.Name != "" && cu.Name != u.Name:
		if _, err := st.UpdateUser(ctx, u.ID, func(u store.User) (store.User, error) {
			u.Name, u.UpdatedAt = cu.Name, now
			return u, nil
		}); err != nil {
			return "", err
		}
	}
	hash := cu.PasswordHash
	m, err := st.GetMembership(ctx, u.ID, orgID)
	exists := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if cu.Password != "" {
		// Keep the stored hash when the declared password still matches it,
		// so restarts do not churn hashes.
		if ok, _ := password.Verify(ctx, m.PasswordHash, cu.Password); exists && ok {
			hash = m.PasswordHash
		} else if hash, err = password.Hash(cu.Password); err != nil {
			return "", err
		}
	}
	if !exists {
		return u.ID, st.CreateMembership(ctx, store.Membership{UserID: u.ID, OrgID: orgID, Roles: cu.Roles, Groups: cu.Groups, PasswordHash: hash, Declared: true, CreatedAt: now, UpdatedAt: now})
	}
	_, err = st.UpdateMembership(ctx, u.ID, orgID, func(m store.Membership) (store.Membership, error) {
		if !slices.Equal(m.Roles, cu.Roles) || !slices.Equal(m.Groups, cu.Groups) || m.PasswordHash != hash || !m.Declared || m.Disabled {
			// The file manages the membership whole: a suspension made
			// before it was declared ends.
			m.Roles, m.Groups, m.PasswordHash, m.Declared, m.Disabled, m.UpdatedAt = cu.Roles, cu.Groups, hash, true, false, now
		}
		return m, nil
	})
	return u.ID, err
}

func lower(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

func newID() string { return strings.ToLower(rand.Text()) }

// Claim is the org's claim on a domain of kind ("login" or "email"): the
// one it has (token, status and history kept), or a new pending one with
// the token the deployment's secret derives for the org and the name.
func Claim(ctx context.Context, st store.Store, o store.Org, kind, name string) (store.DomainClaim, error) {
	if c, ok := o.Claim(kind, name); ok {
		return c, nil
	}
	key, err := store.Secret32(ctx, st, domainTokenKey)
	if err != nil {
		return store.DomainClaim{}, fmt.Errorf("apply: %w", err)
	}
	return store.DomainClaim{Name: name, Kind: kind, Token: domainToken(key, o.ID, name), Status: store.DomainPending}, nil
}
