package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// TokenInput is what a token policy (package gatehouse.token) decides
// over, before the OpenID Provider issues any token: `input` in Rego.
type TokenInput struct {
	// User is the person the token is for; absent for a machine
	// client's own token.
	User *User `json:"user,omitempty"`
	// Org is the org the token carries.
	Org    Org         `json:"org"`
	Client TokenClient `json:"client"`
	// GrantType: authorization_code (asked at sign-in and again at the
	// token endpoint), refresh_token or client_credentials.
	GrantType string   `json:"grant_type"`
	Scopes    []string `json:"scopes"`
	// Resource is the access token's audience asked for (RFC 8707).
	Resource string `json:"resource"`
	// Time is when the token is asked for (RFC 3339).
	Time string    `json:"time"`
	At   time.Time `json:"-"`
}

// TokenClient is the OIDC client asking.
type TokenClient struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Org is the slug of a per-org client's org ("" for a shared one).
	Org string `json:"org"`
}

// DecideToken asks the token layers: the platform's, the client's, then
// the org's (its own or its nearest ancestor's); each narrows, none
// widens. A layer without token rules does not take part; with none at
// all, tokens are allowed. Errors, panics, undefined results and
// timeouts deny.
func (r *Rego) DecideToken(ctx context.Context, in *TokenInput) Decision {
	s := r.set.Load()
	if s.Empty() {
		return Decision{Allow: true}
	}
	deny := func(err error, where string) Decision {
		r.log.Error(ctx, where, err)
		return Decision{Version: s.Version, Reasons: []string{"the token could not be decided"}, Err: err}
	}
	layers, err := s.layers(&Input{Org: Org{ID: in.Org.ID}})
	if err != nil {
		return deny(err, "org")
	}
	if l := s.clients[in.Client.ID]; l != nil {
		// After the platform's (always first when present), before the org's.
		at := 0
		if len(layers) > 0 && layers[0] == s.platform {
			at = 1
		}
		layers = append(layers[:at], append([]*layer{l}, layers[at:]...)...)
	}
	in.Normalize()
	if in.At.IsZero() {
		in.At = time.Now()
	}
	in.Time = in.At.UTC().Format(time.RFC3339)
	v, err := ast.InterfaceToValue(in)
	if err != nil {
		return deny(fmt.Errorf("policy: token input: %w", err), "input")
	}
	stop := topdown.NewCancel()
	timer := time.AfterFunc(r.timeout, stop.Cancel)
	defer timer.Stop()
	txn, err := s.store.NewTransaction(ctx)
	if err != nil {
		return deny(err, "store")
	}
	defer s.store.Abort(ctx, txn)
	env := evalEnv{store: s.store, txn: txn, cancel: stop, input: ast.NewTerm(v), at: in.At, timeout: r.timeout}
	d := Decision{Allow: true, Version: s.Version}
	for _, l := range layers {
		if l.tokenAllow == nil && l.broken == nil {
			continue
		}
		allow, reasons, err := safeEvalToken(ctx, l, &env)
		if err != nil {
			return deny(err, l.name)
		}
		if !allow {
			d.Allow, d.Reasons = false, reasons
			if len(d.Reasons) == 0 {
				d.Reasons = []string{"denied by the " + l.name + " token policy"}
			}
			return d
		}
	}
	return d
}

func safeEvalToken(ctx context.Context, l *layer, env *evalEnv) (allow bool, reasons []string, err error) {
	if l.broken != nil {
		return false, nil, fmt.Errorf("policy: %s does not compile: %w", l.name, l.broken)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("policy: %s: panic in evaluation: %v", l.name, p)
		}
	}()
	qr, err := l.run(ctx, *l.tokenAllow, env)
	if err != nil {
		return false, nil, fmt.Errorf("policy: %s: token: %w", l.name, err)
	}
	if qr != nil {
		if b, ok := qr[ast.Var("x")].Value.(ast.Boolean); ok && bool(b) {
			return true, nil, nil
		}
	}
	if l.tokenReasons != nil {
		qr, err := l.run(ctx, *l.tokenReasons, env)
		if err != nil {
			return false, nil, fmt.Errorf("policy: %s: token reasons: %w", l.name, err)
		}
		if qr != nil {
			reasons = stringList(qr[ast.Var("x")].Value)
		}
	}
	return false, reasons, nil
}

// Normalize replaces nil lists and maps with empty ones: policies see
// `[]` and `{}`, never null.
func (in *TokenInput) Normalize() {
	lists := []*[]string{&in.Scopes, &in.Org.Domains}
	maps := []*map[string]string{&in.Org.Attributes}
	if in.User != nil {
		lists = append(lists, &in.User.Roles, &in.User.Groups)
		maps = append(maps, &in.User.Attributes)
	}
	for _, p := range lists {
		if *p == nil {
			*p = []string{}
		}
	}
	for _, m := range maps {
		if *m == nil {
			*m = map[string]string{}
		}
	}
}
