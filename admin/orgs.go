package admin

import (
	"crypto/rand"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/store"
)

// OrgView is an org as the API shows it.
type OrgView struct {
	ID           string            `json:"id"`
	Slug         string            `json:"slug"`
	Name         string            `json:"name"`
	ParentID     string            `json:"parent_id,omitempty"`
	EmailDomains []string          `json:"email_domains"`
	LoginDomain  string            `json:"login_domain,omitempty"`
	Connection   string            `json:"connection"`
	Attributes   map[string]string `json:"attributes"`
	// MFA and Session are the org's own rules (docs/mfa.md); a sub-org's
	// only tighten its parent's.
	MFA     OrgMFA          `json:"mfa"`
	Session OrgSessionRules `json:"session"`
	// NewSignInAlert emails people signing in from a new browser and
	// network (the new_sign_in message).
	NewSignInAlert bool `json:"new_sign_in_alert"`
	// ManagedBy is "config" for an org the config file declares (read-only
	// here), "api" otherwise.
	ManagedBy string    `json:"managed_by"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// OrgMFA is an org's second-factor rule: off, admins or all.
type OrgMFA struct {
	Require string `json:"require"`
	// AfterIdP: a sign-in at the org's IdP without its second factor
	// goes on to Gatehouse's own instead of being refused.
	AfterIdP bool `json:"after_idp"`
	// Factors that count (passkey, totp; empty: both).
	Factors []string `json:"factors"`
	// RememberDevice: how long a browser may skip the second step after
	// one ("off": never, here and below; absent: the parent's or none).
	RememberDevice string `json:"remember_device,omitempty"`
}

// OrgSessionRules are an org's session limits as Go durations ("8h"; ""
// or absent: the deployment's).
type OrgSessionRules struct {
	Lifetime    string `json:"lifetime,omitempty"`
	IdleTimeout string `json:"idle_timeout,omitempty"`
	// MaxPerPerson bounds a person's open sessions (0: no bound).
	MaxPerPerson int `json:"max_per_person,omitempty"`
}

func durationOrEmpty(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmtDuration(d)
}

func orgView(o store.Org) OrgView {
	v := OrgView{ID: o.ID, Slug: o.Slug, Name: o.Name, ParentID: o.ParentID, EmailDomains: o.EmailDomains, LoginDomain: o.LoginDomain,
		Connection: o.Connection.Type, Attributes: o.Attributes, ManagedBy: managedBy(o.Declared), CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
		MFA:     OrgMFA{Require: o.MFA.Require, AfterIdP: o.MFA.AfterIdP, Factors: nonNil(o.MFA.Factors), RememberDevice: durationOrEmpty(o.MFA.RememberDevice)},
		Session: OrgSessionRules{Lifetime: durationOrEmpty(o.Session.Lifetime), IdleTimeout: durationOrEmpty(o.Session.IdleTimeout), MaxPerPerson: o.Session.MaxPerPerson}}
	if o.MFA.NoRememberDevice {
		v.MFA.RememberDevice = "off"
	}
	if v.MFA.Require == "" {
		v.MFA.Require = store.MFAOff
	}
	if v.EmailDomains == nil {
		v.EmailDomains = []string{}
	}
	if v.Attributes == nil {
		v.Attributes = map[string]string{}
	}
	if v.Connection == "" {
		v.Connection = "inherit"
	}
	return v
}

func managedBy(declared bool) string {
	if declared {
		return "config"
	}
	return "api"
}

// declared refuses a change to an object the config file manages.
func (c *call) declared(what string) error {
	return conflict("managed-by-config", fmt.Sprintf("%s is declared in %s, which manages it: change it there (the admin API shows it read-only).", what, c.a.o.ConfigFile))
}

type orgList struct {
	Items []OrgView `json:"items"`
}

// listOrgs lists the orgs the caller's rights cover.
func (a *API) listOrgs(c *call) error {
	all, err := a.o.Store.ListOrgs(c.ctx())
	if err != nil {
		return fmt.Errorf("admin: list orgs: %w", err)
	}
	out := orgList{Items: []OrgView{}}
	for _, o := range all {
		if ok, err := a.inScope(c.ctx(), c.p, &o); err != nil {
			return err
		} else if ok {
			out.Items = append(out.Items, orgView(o))
		}
	}
	slices.SortFunc(out.Items, func(x, y OrgView) int { return strings.Compare(x.Slug, y.Slug) })
	return c.reply(http.StatusOK, out)
}

func (a *API) getOrg(c *call) error {
	return c.replyETag(http.StatusOK, orgView(*c.org), etagOf(*c.org))
}

type orgCreate struct {
	Slug       string            `json:"slug"`
	Name       string            `json:"name"`
	Parent     string            `json:"parent"`
	Attributes map[string]string `json:"attributes"`
}

// createOrg makes an org: a top-level one (platform admins) or a sub-org
// below one the caller administers. It signs in with a password pool
// until a connection is set up (a sub-org: its parent's connection).
func (a *API) createOrg(c *call) error {
	var in orgCreate
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	if msg := config.SlugProblem(in.Slug); msg != "" {
		errs.add("/slug", "%s", msg)
	}
	if strings.TrimSpace(in.Name) == "" {
		errs.add("/name", "required")
	} else if msg := config.TextProblem(in.Name, 200); msg != "" {
		errs.add("/name", "%s", msg)
	}
	attrProblems(&errs, in.Attributes, false)
	if err := errs.err(); err != nil {
		return err
	}
	o := store.Org{ID: "org_" + strings.ToLower(rand.Text()), Slug: in.Slug, Name: in.Name, Attributes: in.Attributes,
		Connection: store.Connection{Type: "password"}, CreatedAt: a.o.Now().UTC(), UpdatedAt: a.o.Now().UTC()}
	if in.Parent != "" {
		parent, err := a.resolveOrg(c.ctx(), in.Parent)
		if err == nil {
			err = a.authorize(c.ctx(), c.p, NeedWrite, &parent)
		}
		var p *Problem
		if errors.As(err, &p) && p.Status == http.StatusNotFound {
			return invalid(field("/parent", "no such org"))
		}
		if err != nil {
			return err
		}
		c.org = &parent
		o.ParentID, o.Connection = parent.ID, store.Connection{}
	} else if !c.p.Platform {
		return forbidden("Only a platform admin creates top-level orgs; set parent to create a sub-org.")
	}
	if err := a.o.Store.CreateOrg(c.ctx(), o); errors.Is(err, store.ErrAlreadyExists) {
		return conflict("exists", "An org with slug "+in.Slug+" exists already.")
	} else if err != nil {
		return fmt.Errorf("admin: create org: %w", err)
	}
	c.record(o.ID, "org.create", o.ID, "success", change(nil, orgFields(o)))
	if o.ParentID != "" {
		// Also where the parent's admins (and its SIEM) look.
		c.record(o.ParentID, "org.create", o.ID, "success", change(nil, orgFields(o)))
	}
	a.o.OrgsChanged(c.ctx())
	c.w.Header().Set("Location", Prefix+"/orgs/"+o.ID)
	return c.replyETag(http.StatusCreated, orgView(o), etagOf(o))
}

func attrProblems(errs *fields, attrs map[string]string, patch bool) {
	if len(attrs) > 64 {
		errs.add("/attributes", "at most 64 attributes")
	}
	for k, v := range attrs {
		if k == "" || len(k) > 64 || len(v) > 1024 {
			errs.add("/attributes/"+k, "names are 1 to 64 characters, values at most 1024")
		}
		if v == "" && !patch {
			errs.add("/attributes/"+k, "must not be empty (in an update, null or \"\" removes an attribute)")
		}
	}
}

// orgFields are the org's fields the API changes, for audit events.
func orgFields(o store.Org) map[string]any {
	v := orgView(o)
	return map[string]any{"slug": o.Slug, "name": o.Name, "parent_id": o.ParentID, "attributes": o.Attributes, "mfa": v.MFA, "session": v.Session,
		"new_sign_in_alert": o.NewSignInAlert}
}

type orgPatch struct {
	Name       *string           `json:"name"`
	Attributes map[string]string `json:"attributes"`
	// MFA and Session: a field given is set ("" for a duration: the
	// deployment's); one left out is kept.
	MFA            *orgMFAPatch     `json:"mfa"`
	Session        *orgSessionPatch `json:"session"`
	NewSignInAlert *bool            `json:"new_sign_in_alert"`
}

type orgMFAPatch struct {
	Require        *string  `json:"require"`
	AfterIdP       *bool    `json:"after_idp"`
	Factors        []string `json:"factors"`
	RememberDevice *string  `json:"remember_device"`
}

type orgSessionPatch struct {
	Lifetime     *string `json:"lifetime"`
	IdleTimeout  *string `json:"idle_timeout"`
	MaxPerPerson *int    `json:"max_per_person"`
}

// rulesPatch applies a patch's rules to o's, checked against the
// deployment's limits.
func (a *API) rulesPatch(in orgPatch, mfa store.MFARules, sess store.SessionRules, errs *fields) (store.MFARules, store.SessionRules) {
	if in.MFA != nil && in.MFA.Require != nil {
		mfa.Require = *in.MFA.Require
		if mfa.Require == store.MFAOff {
			mfa.Require = ""
		}
	}
	if in.MFA != nil && in.MFA.AfterIdP != nil {
		mfa.AfterIdP = *in.MFA.AfterIdP
	}
	if in.MFA != nil && in.MFA.Factors != nil {
		mfa.Factors = slices.Clone(in.MFA.Factors)
	}
	remember := ""
	if mfa.RememberDevice > 0 {
		remember = mfa.RememberDevice.String()
	} else if mfa.NoRememberDevice {
		remember = "off"
	}
	if in.MFA != nil && in.MFA.RememberDevice != nil {
		remember = *in.MFA.RememberDevice
		var err error
		if mfa.RememberDevice, mfa.NoRememberDevice, err = config.ParseRememberDevice(remember); err != nil {
			mfa.RememberDevice, mfa.NoRememberDevice = 0, false
		}
	}
	if in.Session != nil && in.Session.MaxPerPerson != nil {
		sess.MaxPerPerson = *in.Session.MaxPerPerson
	}
	if in.Session != nil {
		for _, d := range []struct {
			ptr string
			raw *string
			to  *time.Duration
		}{{"/session/lifetime", in.Session.Lifetime, &sess.Lifetime}, {"/session/idle_timeout", in.Session.IdleTimeout, &sess.IdleTimeout}} {
			switch {
			case d.raw == nil:
			case *d.raw == "":
				*d.to = 0
			default:
				v, err := time.ParseDuration(*d.raw)
				if err != nil {
					errs.add(d.ptr, "must be a duration such as 8h or 30m, or \"\" for the deployment's")
					continue
				}
				*d.to = v
			}
		}
	}
	for _, pr := range config.OrgRulesProblems(config.OrgMFA{Require: mfa.Require, Factors: mfa.Factors, RememberDevice: remember},
		config.OrgSession{Lifetime: sess.Lifetime, IdleTimeout: sess.IdleTimeout, MaxPerPerson: sess.MaxPerPerson},
		a.o.SessionLifetime, a.o.SessionIdleTimeout) {
		errs.add("/"+indexRE.ReplaceAllString(strings.ReplaceAll(pr.Path, ".", "/"), "/$1"), "%s", pr.Msg)
	}
	return mfa, sess
}

func (a *API) updateOrg(c *call) error {
	var in orgPatch
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	if in.Name != nil && strings.TrimSpace(*in.Name) == "" {
		errs.add("/name", "required")
	} else if in.Name != nil && config.TextProblem(*in.Name, 200) != "" {
		errs.add("/name", "%s", config.TextProblem(*in.Name, 200))
	}
	attrProblems(&errs, in.Attributes, true)
	a.rulesPatch(in, c.org.MFA, c.org.Session, &errs)
	if err := errs.err(); err != nil {
		return err
	}
	var before store.Org
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		before = o
		if o.Declared {
			return o, c.declared("Org " + o.Slug)
		}
		if err := c.precondition(etagOf(o)); err != nil {
			return o, err
		}
		if in.Name != nil {
			o.Name = *in.Name
		}
		o.MFA, o.Session = a.rulesPatch(in, o.MFA, o.Session, &fields{}) // checked above
		if in.NewSignInAlert != nil {
			o.NewSignInAlert = *in.NewSignInAlert
		}
		if in.Attributes != nil {
			// A merge patch: null removes an attribute; the JSON decoder
			// gives "" for null in a map of strings.
			o.Attributes = maps.Clone(o.Attributes)
			if o.Attributes == nil {
				o.Attributes = map[string]string{}
			}
			for k, v := range in.Attributes {
				if v == "" {
					delete(o.Attributes, k)
				} else {
					o.Attributes[k] = v
				}
			}
		}
		o.UpdatedAt = a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	c.record(o.ID, "org.update", o.ID, "success", change(orgFields(before), orgFields(o)))
	a.o.OrgsChanged(c.ctx())
	return c.replyETag(http.StatusOK, orgView(o), etagOf(o))
}

func (a *API) deleteOrg(c *call) error {
	o := c.org
	if o.Declared {
		return c.declared("Org " + o.Slug)
	}
	if !c.p.Platform && o.ID == c.p.OrgID {
		return forbidden("An org's admins delete its sub-orgs, not the org itself; ask a platform admin.")
	}
	if im := c.r.Header.Get("If-Match"); im != "" {
		if err := c.precondition(etagOf(*o)); err != nil {
			return err
		}
	}
	err := a.o.Store.DeleteOrg(c.ctx(), o.ID)
	if errors.Is(err, store.ErrHasChildren) {
		return conflict("has-sub-orgs", "Org "+o.Slug+" has sub-orgs: delete them first.")
	}
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	c.record(o.ID, "org.delete", o.ID, "success", change(orgFields(*o), map[string]any{}))
	if o.ParentID != "" {
		// The deleted org's chain is kept, but no longer reachable by its
		// name: the parent's chain says what happened.
		c.record(o.ParentID, "org.delete", o.ID, "success", change(orgFields(*o), map[string]any{}))
	} else if o.ID != c.p.OrgID {
		c.record("", "org.delete", o.ID, "success", change(orgFields(*o), map[string]any{}))
	}
	a.o.OrgsChanged(c.ctx())
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// storeErr maps a store error to the API's: a problem from an update
// function passes through, a missing record is 404.
func storeErr(err error, what string) error {
	var p *Problem
	switch {
	case err == nil:
		return nil
	case errors.As(err, &p):
		return p
	case errors.Is(err, store.ErrNotFound):
		return notFound(what)
	}
	return fmt.Errorf("admin: %s: %w", what, err)
}
