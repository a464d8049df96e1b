package admin

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// PolicyView is an org's Rego policy: the modules that decide (tests are
// run when it is set, not kept).
type PolicyView struct {
	Modules   []store.PolicyModule `json:"modules"`
	ManagedBy string               `json:"managed_by"`
	// Tests are the results of the tests sent with it (on set only).
	Tests []policy.TestResult `json:"tests,omitempty"`
}

type policySet struct {
	Modules []store.PolicyModule `json:"modules"`
}

var moduleNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.rego$`)

func policyView(o store.Org) PolicyView {
	v := PolicyView{Modules: o.Policy, ManagedBy: managedBy(o.Declared)}
	if v.Modules == nil {
		v.Modules = []store.PolicyModule{}
	}
	return v
}

func (a *API) getPolicy(c *call) error {
	return c.replyETag(http.StatusOK, policyView(*c.org), etagOf(c.org.Policy))
}

// policyData is data.gatehouse.orgs as the proxy gives it to policies,
// so that tests run against what decides.
func (a *API) policyData(c *call) (map[string]any, error) {
	orgs, err := a.o.Store.ListOrgs(c.ctx())
	if err != nil {
		return nil, fmt.Errorf("admin: list orgs: %w", err)
	}
	data := map[string]any{}
	for _, o := range orgs {
		attrs := map[string]any{}
		for k, v := range o.Attributes {
			attrs[k] = v
		}
		data[o.Slug] = map[string]any{"id": o.ID, "name": o.Name, "attributes": attrs}
	}
	return map[string]any{"gatehouse": map[string]any{"orgs": data}}, nil
}

// setPolicy replaces the org's policy, after it compiled and its tests
// (the *_test.rego modules sent with it) passed. Every node puts it in
// force within policy.reload_interval.
func (a *API) setPolicy(c *call) error {
	var in policySet
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	if len(in.Modules) == 0 || len(in.Modules) > 32 {
		errs.add("/modules", "1 to 32 modules")
	}
	seen := map[string]bool{}
	for i, m := range in.Modules {
		if !moduleNameRE.MatchString(m.Name) {
			errs.add(fmt.Sprintf("/modules/%d/name", i), "a file name ending in .rego (letters, digits, _ . -)")
		} else if seen[m.Name] {
			errs.add(fmt.Sprintf("/modules/%d/name", i), "%s is there twice", m.Name)
		}
		seen[m.Name] = true
		if strings.TrimSpace(m.Text) == "" {
			errs.add(fmt.Sprintf("/modules/%d/text", i), "must not be empty")
		}
	}
	if err := errs.err(); err != nil {
		return err
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s policy")
	}
	if err := c.precondition(etagOf(c.org.Policy)); err != nil {
		return err
	}
	data, err := a.policyData(c)
	if err != nil {
		return err
	}
	mods := make([]policy.Module, len(in.Modules))
	for i, m := range in.Modules {
		mods[i] = policy.Module{Name: m.Name, Text: m.Text}
	}
	results, err := policy.CheckOrgPolicy(c.ctx(), mods, data)
	if err != nil {
		return policyProblem(in.Modules, results, err)
	}
	var keep []store.PolicyModule
	for _, m := range in.Modules {
		if !policy.IsTestModule(m.Name) {
			keep = append(keep, m)
		}
	}
	before := c.org.Policy
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		if o.Declared {
			return o, c.declared("Org " + o.Slug + "'s policy")
		}
		if err := c.precondition(etagOf(o.Policy)); err != nil {
			return o, err
		}
		o.Policy, o.UpdatedAt = keep, a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	passed := 0
	for _, r := range results {
		if r.Pass {
			passed++
		}
	}
	c.record(o.ID, "policy.update", o.ID, "success", map[string]string{"modules": moduleNames(keep),
		"before": etagOf(before), "after": etagOf(o.Policy), "tests_passed": fmt.Sprint(passed)})
	v := policyView(o)
	v.Tests = results
	return c.replyETag(http.StatusOK, v, etagOf(o.Policy))
}

func moduleNames(ms []store.PolicyModule) string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.Name
	}
	return strings.Join(names, ",")
}

// policyProblem points at what is wrong: the module a compile error names,
// or each failed test.
func policyProblem(mods []store.PolicyModule, results []policy.TestResult, err error) error {
	at := func(name string) string {
		for i, m := range mods {
			if m.Name == name || strings.Contains(name, m.Name) {
				return fmt.Sprintf("/modules/%d", i)
			}
		}
		return "/modules"
	}
	if errors.Is(err, policy.ErrTestsFailed) {
		var errs []FieldError
		for _, r := range results {
			if !r.Pass {
				errs = append(errs, field(at(r.Module), "test %s (line %d) failed: %s", r.Name, r.Line, r.Message))
			}
		}
		return &Problem{Status: http.StatusBadRequest, Code: "policy-tests-failed", Detail: fmt.Sprintf("%d of the policy's tests failed; nothing was changed.", len(errs)), Errors: errs}
	}
	ptr := "/modules"
	for _, m := range mods {
		if strings.Contains(err.Error(), m.Name) {
			ptr = at(m.Name) + "/text"
			break
		}
	}
	return &Problem{Status: http.StatusBadRequest, Code: "policy-invalid", Detail: "The policy does not compile; nothing was changed.",
		Errors: []FieldError{{Pointer: ptr, Detail: strings.TrimPrefix(err.Error(), "policy: org org: ")}}}
}

func (a *API) deletePolicy(c *call) error {
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s policy")
	}
	if len(c.org.Policy) == 0 {
		return notFound("policy of this org")
	}
	before := c.org.Policy
	_, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		o.Policy, o.UpdatedAt = nil, a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	c.record(c.org.ID, "policy.delete", c.org.ID, "success", map[string]string{"modules": moduleNames(before), "before": etagOf(before)})
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
