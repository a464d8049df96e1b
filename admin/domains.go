package admin

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/publicsuffix"

	"github.com/gatehouse/gatehouse/certs"
	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/apply"
	"github.com/gatehouse/gatehouse/store"
)

// DomainView is one of an org's domains with its verification: the exact
// DNS record that proves it, and what the last check found.
type DomainView struct {
	Name string `json:"name"`
	// Kind is "login" (the org's sign-in host) or "email" (home-realm
	// discovery, and the addresses its IdP may sign in).
	Kind   string `json:"kind"`
	Status string `json:"status"` // pending, verified, suspended
	// Record is the TXT record to create: its name and value.
	Record DNSRecord `json:"record"`
	// CNAMETarget: a login domain may instead be a CNAME to it.
	CNAMETarget string    `json:"cname_target,omitempty"`
	Method      string    `json:"method,omitempty"`
	CheckedAt   time.Time `json:"checked_at,omitzero"`
	VerifiedAt  time.Time `json:"verified_at,omitzero"`
	Detail      string    `json:"detail,omitempty"`
	// Verification says whether the deployment requires the record
	// (domains.verify); off, the domain is in use at once.
	Verification string `json:"verification"`
}

// DNSRecord is a record to create at the customer's DNS host.
type DNSRecord struct {
	Type  string `json:"type"`
	Name  string `json:"name"`
	Value string `json:"value"`
}

type domainList struct {
	Items []DomainView `json:"items"`
}

type domainAdd struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
}

func (a *API) domainView(c store.DomainClaim) DomainView {
	name, value := certs.Record(c)
	v := DomainView{Name: c.Name, Kind: c.Kind, Status: c.Status, Record: DNSRecord{Type: "TXT", Name: name, Value: value},
		Method: c.Method, CheckedAt: c.CheckedAt, VerifiedAt: c.VerifiedAt, Detail: c.Detail, Verification: "not required"}
	if c.Kind == "login" {
		v.CNAMETarget = a.o.CNAMETarget
	}
	if a.o.DomainsVerify {
		v.Verification = "required"
	}
	return v
}

// listDomains lists the domains the org uses, each with its claim (claims
// it keeps for domains it no longer uses are the operator's business).
func (a *API) listDomains(c *call) error {
	out := domainList{Items: []DomainView{}}
	add := func(kind, name string) error {
		cl, err := apply.Claim(c.ctx(), a.o.Store, *c.org, kind, name)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, a.domainView(cl))
		return nil
	}
	if d := c.org.LoginDomain; d != "" {
		if err := add("login", d); err != nil {
			return err
		}
	}
	for _, d := range c.org.EmailDomains {
		if err := add("email", d); err != nil {
			return err
		}
	}
	return c.reply(http.StatusOK, out)
}

// addDomain gives the org a login domain or an email domain. With
// domains.verify it serves nothing until its TXT record proves it; without,
// the operator vouches for it, so only platform admins may add one.
func (a *API) addDomain(c *call) error {
	var in domainAdd
	if err := c.decode(&in); err != nil {
		return err
	}
	in.Name = strings.ToLower(strings.TrimSpace(in.Name))
	var errs fields
	if msg := config.DomainProblem(in.Name); msg != "" {
		errs.add("/name", "%s", msg)
	} else if suffix, _ := publicsuffix.PublicSuffix(in.Name); suffix == in.Name || !strings.Contains(in.Name, ".") {
		errs.add("/name", "is a public suffix (such as com or co.uk): no one org's")
	} else if a.o.ReservedHost != nil && a.o.ReservedHost(in.Name) {
		errs.add("/name", "is a host this deployment serves itself")
	}
	if in.Kind != "login" && in.Kind != "email" {
		errs.add("/kind", "must be login or email")
	}
	if err := errs.err(); err != nil {
		return err
	}
	if !a.o.DomainsVerify && !c.p.Platform {
		return forbidden("This deployment does not verify domains by DNS (domains.verify is off), so only a platform admin may add one.")
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s domains")
	}
	orgs, err := a.o.Store.ListOrgs(c.ctx())
	if err != nil {
		return fmt.Errorf("admin: list orgs: %w", err)
	}
	for _, o := range orgs {
		if o.ID == c.org.ID {
			continue
		}
		if strings.EqualFold(o.LoginDomain, in.Name) || (in.Kind == "email" && slices.Contains(o.EmailDomains, in.Name)) {
			return conflict("domain-taken", in.Name+" is in use by another organization.")
		}
	}
	// The claim (its token derived from the deployment's secret) is made
	// outside the update, which must not write.
	fresh, err := apply.Claim(c.ctx(), a.o.Store, *c.org, in.Kind, in.Name)
	if err != nil {
		return err
	}
	var claim store.DomainClaim
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		if o.Declared {
			return o, c.declared("Org " + o.Slug + "'s domains")
		}
		switch {
		case in.Kind == "login" && o.LoginDomain == in.Name, in.Kind == "email" && slices.Contains(o.EmailDomains, in.Name):
			return o, conflict("exists", "The org has this domain already.")
		case in.Kind == "login" && o.LoginDomain != "":
			return o, conflict("login-domain-set", "The org's login domain is "+o.LoginDomain+": remove it first.")
		}
		cl, ok := o.Claim(in.Kind, in.Name)
		if !ok {
			cl = fresh
		}
		claim = cl
		if in.Kind == "login" {
			o.LoginDomain = in.Name
		} else {
			o.EmailDomains = append(slices.Clone(o.EmailDomains), in.Name)
		}
		if _, ok := o.Claim(in.Kind, in.Name); !ok {
			o.Domains = append(slices.Clone(o.Domains), cl)
		} else if cl.Status != store.DomainPending {
			// A claim coming back into use is checked again soon.
			o.Domains = slices.Clone(o.Domains)
			for i := range o.Domains {
				if o.Domains[i].Kind == in.Kind && o.Domains[i].Name == in.Name {
					o.Domains[i].Retry = true
				}
			}
		}
		o.UpdatedAt = a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	c.record(o.ID, "domain.add", in.Name, "success", map[string]string{"kind": in.Kind, "status": claim.Status})
	a.o.OrgsChanged(c.ctx())
	cl, _ := o.Claim(in.Kind, in.Name)
	c.w.Header().Set("Location", Prefix+"/orgs/"+o.ID+"/domains/"+in.Name)
	return c.reply(http.StatusCreated, a.domainView(cl))
}

// removeDomain takes a domain out of use (both kinds, or ?kind=). The
// claim and its verification are kept, so that putting it back asks the
// customer for nothing new.
func (a *API) removeDomain(c *call) error {
	name := strings.ToLower(c.r.PathValue("domain"))
	kind := c.r.URL.Query().Get("kind")
	if kind != "" && kind != "login" && kind != "email" {
		return invalid(field("/kind", "must be login or email"))
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s domains")
	}
	var removed []string
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		removed = nil
		if (kind == "" || kind == "login") && o.LoginDomain == name {
			o.LoginDomain = ""
			removed = append(removed, "login")
		}
		if kind == "" || kind == "email" {
			if i := slices.Index(o.EmailDomains, name); i >= 0 {
				o.EmailDomains = slices.Delete(slices.Clone(o.EmailDomains), i, i+1)
				removed = append(removed, "email")
			}
		}
		if len(removed) == 0 {
			return o, notFound("domain of this org")
		}
		o.UpdatedAt = a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	c.record(o.ID, "domain.remove", name, "success", map[string]string{"kind": strings.Join(removed, ",")})
	a.o.OrgsChanged(c.ctx())
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
