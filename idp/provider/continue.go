package provider

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
)

// continueSignIn is where the authorize endpoint sends the browser (the
// client's LoginURL) and where sign-in brings it back: with a session
// that satisfies the request (the right org, fresh enough, the hinted
// person) the request is done and the browser goes on to the callback,
// which answers the app with a code; otherwise it signs in first, or the
// app gets the error the request asked for (prompt=none).
func (p *Provider) continueSignIn(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.URL.Query().Get("id")
	if !token.ValidToken(id, 43, 43) {
		p.page(w, http.StatusBadRequest, "This sign-in link is not complete. Go back to the app and sign in again.", "malformed request id")
		return
	}
	a, err := p.requests.get(ctx, id)
	if err != nil {
		p.page(w, http.StatusBadRequest, "This sign-in took too long or was finished already. Go back to the app and sign in again.", "unknown or expired auth request")
		return
	}
	cl, _ := p.client(a.ClientID)
	if cl == nil {
		p.page(w, http.StatusBadRequest, "This app is no longer registered.", "client "+a.ClientID+" gone")
		return
	}
	var ident *session.Identity
	if e, err := p.o.Sessions.Authenticate(r); err == nil {
		ident = e.Identity()
	}
	if a.prompts("select_account") && !a.Selected && ident != nil {
		// The org chooser first (a person in several orgs picks one),
		// then back here.
		if _, err := p.requests.update(ctx, id, func(a *authRequest) error {
			a.Selected = true
			return nil
		}); err != nil {
			p.page(w, http.StatusBadRequest, "This sign-in took too long. Go back to the app and sign in again.", "auth request gone: "+err.Error())
			return
		}
		back := p.issuer + continuePath + "?id=" + url.QueryEscape(id)
		http.Redirect(w, r, p.issuer+idp.OrgsPath+"?"+url.Values{"rd": {back}}.Encode(), http.StatusFound)
		return
	}
	why := p.signInNeeded(a, ident)
	if why == "" && !p.wanted(cl, a, ident.OrgID) {
		// Signed in to an org this request is not for: another of the
		// person's orgs may be one it is; otherwise they get no token.
		if ok, err := p.memberOfWanted(ctx, cl, a, ident.UserID); err != nil {
			p.fail(w, r, a, oidc.ErrServerError().WithParent(err))
			return
		} else if !ok {
			p.o.Logger.Info("provider: refused: not a member of the client's orgs", "client", cl.cfg.ID, "user", ident.UserID, "org", ident.OrgID)
			p.fail(w, r, a, oidc.ErrAccessDenied().WithDescription("this app is not available to your organization"))
			return
		}
		why = "signed in to another org than the request is for"
	}
	if why != "" {
		p.toSignIn(w, r, a, why)
		return
	}
	who, err := p.person(ctx, ident.UserID, ident.OrgID)
	if err != nil {
		p.fail(w, r, a, oidc.ErrAccessDenied().WithDescription("your account is not active in this organization"))
		return
	}
	if err := p.decideToken(ctx, tokenAsk{cl: cl, who: &who, org: who.org, grant: "authorization_code", scopes: a.Scopes, resource: a.Resource,
		authTime: ident.AuthTime, amr: amrOf(ident)}, oidc.ErrAccessDenied()); err != nil {
		p.fail(w, r, a, err)
		return
	}
	if p.needsConsent(ctx, cl, a, ident.UserID) {
		p.toConsent(w, r, a)
		return
	}
	a, err = p.requests.update(ctx, id, func(a *authRequest) error {
		a.Subject, a.OrgID, a.SessionID, a.AuthTime, a.IsDone = ident.UserID, ident.OrgID, ident.SessionID, ident.AuthTime.UTC(), true
		a.AMR = amrOf(ident)
		return nil
	})
	if err != nil {
		p.page(w, http.StatusBadRequest, "This sign-in took too long. Go back to the app and sign in again.", "auth request gone while signing in: "+err.Error())
		return
	}
	http.Redirect(w, r, p.server.AuthCallbackURL()(op.ContextWithIssuer(ctx, p.issuer), id), http.StatusFound)
}

// signInNeeded says why the session does not do for the request ("" if
// it does).
func (p *Provider) signInNeeded(a *authRequest, ident *session.Identity) string {
	switch {
	case ident == nil:
		return "no session"
	case a.prompts("login") && ident.AuthTime.Before(a.CreatedAt.Truncate(time.Second)):
		return "prompt=login"
	case a.MaxAge != nil && p.o.Now().Sub(ident.AuthTime) > time.Duration(*a.MaxAge)*time.Second:
		return "max_age"
	case a.HintSubject != "" && a.HintSubject != ident.UserID:
		return "id_token_hint names another person"
	}
	return ""
}

// wanted reports whether a session of org orgID does for the request:
// an org the client serves and, if the request names one, that org.
func (p *Provider) wanted(cl *client, a *authRequest, orgID string) bool {
	if !p.acceptsOrg(cl, orgID) {
		return false
	}
	if a.OrgSlug == "" || a.OrgSlug == cl.cfg.Org && cl.cfg.IncludeSubOrgs {
		return true
	}
	o, ok := p.o.Orgs.BySlug(a.OrgSlug)
	return ok && o.ID == orgID
}

// toSignIn sends the browser to sign in and back here, or answers
// login_required when the app asked for no interaction.
func (p *Provider) toSignIn(w http.ResponseWriter, r *http.Request, a *authRequest, why string) {
	if a.prompts("none") {
		p.fail(w, r, a, oidc.ErrLoginRequired().WithDescription("%s", why))
		return
	}
	a, err := p.requests.update(r.Context(), a.ID, func(a *authRequest) error {
		a.Rounds++
		if a.Rounds > maxLoginRounds {
			return errors.New("too many rounds")
		}
		return nil
	})
	if err != nil {
		p.page(w, http.StatusBadRequest, "Signing in for this app did not work out. Go back to the app and try again, or sign out first and use another account.", "sign-in rounds exhausted: "+why)
		return
	}
	fresh := why == "prompt=login" || why == "max_age" || why == "id_token_hint names another person"
	back := p.issuer + continuePath + "?id=" + url.QueryEscape(a.ID)
	p.o.Logger.Info("provider: sign-in needed", "client", a.ClientID, "reason", why)
	http.Redirect(w, r, p.o.SignIn(a.OrgSlug, back, session.NewState(w, r), a.LoginHint, fresh), http.StatusFound)
}

// memberOfWanted reports whether the person is a member of an org the
// request is for.
func (p *Provider) memberOfWanted(ctx context.Context, cl *client, a *authRequest, userID string) (bool, error) {
	ms, err := p.o.Store.ListMembershipsByUser(ctx, userID)
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if !m.Disabled && p.wanted(cl, a, m.OrgID) {
			return true, nil
		}
	}
	return false, nil
}

// fail answers the app at its redirect URI with err.
func (p *Provider) fail(w http.ResponseWriter, r *http.Request, a *authRequest, err error) {
	ctx, cancel := detached(r.Context())
	defer cancel()
	_, _ = p.o.Store.TakeOnce(ctx, kindAuthRequest, a.ID) // answered: never again
	op.AuthRequestError(w, r.WithContext(op.ContextWithIssuer(r.Context(), p.issuer)), a, err, p.lib)
}

// callback issues the code, for the browser that signed in only: the
// request's session must be this browser's.
func (p *Provider) callback(w http.ResponseWriter, r *http.Request) {
	a, err := p.requests.get(r.Context(), r.URL.Query().Get("id"))
	if err != nil {
		p.page(w, http.StatusBadRequest, "This sign-in took too long or was finished already. Go back to the app and sign in again.", "callback: unknown auth request")
		return
	}
	sid, err := p.o.Sessions.SessionID(r)
	if err != nil || !a.IsDone || sid != a.SessionID {
		p.page(w, http.StatusBadRequest, "This sign-in was started in another browser. Go back to the app and sign in again.", "callback: not this browser's request")
		return
	}
	op.AuthorizeCallback(w, r, p.lib)
}

func (p *Provider) page(w http.ResponseWriter, status int, msg, reason string) {
	ref := token.RandomID()[:12]
	p.o.Logger.Warn("provider: request refused", "ref", ref, "reason", reason)
	web.Error(w, status, msg, ref)
}

// amrOf: how the session signed in (RFC 8176 values where they fit).
func amrOf(ident *session.Identity) []string {
	amr := []string{"pwd"}
	if ident.Connection != "password" {
		amr = []string{"fed"}
	}
	// The sign-in's own methods (Gatehouse's second step: otp).
	for _, m := range ident.AMR {
		if !slices.Contains(amr, m) && m != "mfa" {
			amr = append(amr, m)
		}
	}
	if ident.MFA {
		amr = append(amr, "mfa")
	}
	return amr
}
