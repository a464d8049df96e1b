package provider

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/store"
)

// TokenDecider decides whether a token may be issued (policy.Rego: the
// gatehouse.token package of the platform's, the client's and the org's
// policies).
type TokenDecider interface {
	DecideToken(ctx context.Context, in *policy.TokenInput) policy.Decision
}

// tokenAsk is what a token is asked for.
type tokenAsk struct {
	cl       *client
	who      *person // nil for a machine client's own token
	org      *store.Org
	grant    string
	scopes   []string
	resource string
	authTime time.Time
	amr      []string
}

// decideToken asks the token policy; a refusal (or an error: fail
// closed) is logged and audited, and returned as the OAuth error the
// caller answers with.
func (p *Provider) decideToken(ctx context.Context, a tokenAsk, refusal *oidc.Error) error {
	if p.o.Tokens == nil {
		return nil
	}
	in := &policy.TokenInput{Client: policy.TokenClient{ID: a.cl.cfg.ID, Type: a.cl.cfg.Type, Org: a.cl.cfg.Org},
		GrantType: a.grant, Scopes: a.scopes, Resource: a.resource, At: p.o.Now(), Org: p.policyOrg(a.org)}
	actor := "client:" + a.cl.cfg.ID
	if a.who != nil {
		u, m := a.who.user, a.who.mem
		in.User = &policy.User{ID: u.ID, Email: u.Email, Name: u.Name, Roles: m.Roles, Groups: m.Groups, Attributes: m.Attributes,
			MFA: slices.Contains(a.amr, "mfa"), AMR: a.amr, AuthTime: a.authTime.UTC().Format(time.RFC3339)}
		actor = u.ID
	}
	d := p.o.Tokens.DecideToken(ctx, in)
	if d.Allow {
		return nil
	}
	why := strings.Join(d.Reasons, "; ")
	p.o.Logger.Info("provider: token refused by policy", "client", a.cl.cfg.ID, "user", actor, "org", a.org.Slug, "grant", a.grant,
		"reasons", why, "version", d.Version, "err", d.Err)
	ctx, cancel := detached(ctx)
	defer cancel()
	_ = p.o.Store.AppendAudit(ctx, store.AuditEvent{Time: p.o.Now(), OrgID: a.org.ID, Actor: actor, Action: "oidc.token", Outcome: "failure",
		Details: map[string]string{"client": a.cl.cfg.ID, "grant": a.grant, "reason": "policy: " + why}})
	return refusal.WithDescription("refused by policy: %s", why)
}

// policyOrg is an org as policies see it.
func (p *Provider) policyOrg(o *store.Org) policy.Org {
	po := policy.Org{ID: o.ID, Slug: o.Slug, Name: o.Name, Attributes: o.Attributes, Domains: o.EmailDomains, LoginDomain: o.LoginDomain}
	if parent, ok := p.o.Orgs.ByID(o.ParentID); ok && o.ParentID != "" {
		po.Parent = parent.Slug
	}
	return po
}
