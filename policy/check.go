package policy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is one Rego test's outcome.
type TestResult struct {
	Name    string `json:"name"` // package.rule
	Pass    bool   `json:"pass"`
	Message string `json:"message,omitempty"`
	Module  string `json:"module,omitempty"`
	Line    int    `json:"line,omitempty"`
}

// IsTestModule reports whether a module is a test (*_test.rego): run
// when a policy is checked, never part of the policy that decides.
func IsTestModule(name string) bool { return strings.HasSuffix(name, "_test.rego") }

// ErrTestsFailed: the policy compiles, but a test of it fails.
var ErrTestsFailed = errors.New("policy: tests failed")

// CheckOrgPolicy checks an org policy before it is accepted: its modules
// (all but the tests) must compile as an org layer does in the proxy,
// and every *_test.rego test must pass against them, with data as the
// proxy gives it. A compile error is returned as it is; failed tests as
// ErrTestsFailed with every result.
func CheckOrgPolicy(ctx context.Context, mods []Module, data map[string]any) ([]TestResult, error) {
	var policyMods, tests []Module
	for _, m := range mods {
		if IsTestModule(m.Name) {
			tests = append(tests, m)
		} else {
			policyMods = append(policyMods, m)
		}
	}
	if len(policyMods) == 0 {
		return nil, errors.New("policy: no policy module (only tests)")
	}
	if _, err := Compile(ctx, Sources{Orgs: map[string][]Module{"org": policyMods}, Data: data}); err != nil {
		return nil, err
	}
	if len(tests) == 0 {
		return nil, nil
	}
	parsed := map[string]*ast.Module{}
	for i, m := range mods {
		pm, err := ast.ParseModuleWithOpts(m.Name, m.Text, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			return nil, fmt.Errorf("policy: %s: %w", m.Name, err)
		}
		parsed[fmt.Sprintf("%d/%s", i, m.Name)] = pm
	}
	if data == nil {
		data = map[string]any{}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithCapabilities(capabilities)).
		SetStore(inmem.NewFromObject(data)).
		SetModules(parsed).
		SetTimeout(time.Second).
		RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("policy: tests: %w", err)
	}
	var out []TestResult
	failed := false
	for r := range ch {
		tr := TestResult{Name: strings.TrimPrefix(r.Package, "data.") + "." + r.Name, Pass: r.Pass()}
		if r.Location != nil {
			tr.Module, tr.Line = r.Location.File, r.Location.Row
		}
		if !tr.Pass {
			failed = true
			tr.Message = "failed"
			if r.Error != nil {
				tr.Message = r.Error.Error()
			}
		}
		out = append(out, tr)
	}
	if ctx.Err() != nil {
		return out, fmt.Errorf("policy: tests did not finish in time: %w", ctx.Err())
	}
	if failed {
		return out, ErrTestsFailed
	}
	return out, nil
}
