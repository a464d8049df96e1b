package provider

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// Consent: a third-party app (clients[].third_party) gets tokens only for
// scopes the person agreed to give it. The agreement is remembered per
// person and app (a store blob); prompt=consent asks again.
const consentPath = Prefix + "consent"

// consentKey is the blob of a person's consent to an app: one of the
// person's blobs, deleted with them.
func consentKey(userID, clientID string) string {
	return store.UserBlobKey(userID, "oidc-consent", url.PathEscape(clientID))
}

type consentRecord struct {
	Scopes []string  `json:"scopes"`
	At     time.Time `json:"at"`
}

// consented reports whether the person gave the app every scope asked.
func (p *Provider) consented(ctx context.Context, userID, clientID string, scopes []string) bool {
	b, err := p.o.Store.GetBlob(ctx, consentKey(userID, clientID))
	if err != nil {
		return false
	}
	var c consentRecord
	if json.Unmarshal(b.Value, &c) != nil {
		return false
	}
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			return false
		}
	}
	return true
}

// needsConsent: a third-party app without the person's consent to these
// scopes, or one asked to ask again.
func (p *Provider) needsConsent(ctx context.Context, cl *client, a *authRequest, userID string) bool {
	if !cl.cfg.ThirdParty || a.Consented {
		return false
	}
	return a.prompts("consent") || !p.consented(ctx, userID, cl.cfg.ID, a.Scopes)
}

// toConsent sends the browser to the consent page (or answers
// consent_required to an app that asked for no interaction).
func (p *Provider) toConsent(w http.ResponseWriter, r *http.Request, a *authRequest) {
	if a.prompts("none") {
		p.fail(w, r, a, &oidc.Error{ErrorType: "consent_required", Description: "the person has not consented to this app"})
		return
	}
	if _, err := p.requests.update(r.Context(), a.ID, func(a *authRequest) error {
		if a.ConsentToken == "" {
			a.ConsentToken = token.RandomID()
		}
		return nil
	}); err != nil {
		p.page(w, http.StatusBadRequest, "This sign-in took too long. Go back to the app and sign in again.", "auth request gone: "+err.Error())
		return
	}
	http.Redirect(w, r, p.issuer+consentPath+"?"+url.Values{"id": {a.ID}}.Encode(), http.StatusFound)
}

var scopeText = map[string]string{
	"openid":         "who you are (your user ID)",
	"profile":        "your name",
	"email":          "your email address",
	"offline_access": "access while you are signed out",
}

// consentPage asks (GET) and records the answer (POST).
func (p *Provider) consentPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		p.page(w, http.StatusBadRequest, "The form could not be read.", "consent form: "+err.Error())
		return
	}
	id := r.URL.Query().Get("id")
	a, err := p.requests.get(ctx, id)
	if err != nil || a.ConsentToken == "" {
		p.page(w, http.StatusBadRequest, "This sign-in took too long or was finished already. Go back to the app and sign in again.", "consent: unknown auth request")
		return
	}
	cl, _ := p.client(a.ClientID)
	var ident *session.Identity
	if e, err := p.o.Sessions.Authenticate(r); err == nil {
		ident = e.Identity()
	}
	if cl == nil || ident == nil {
		p.page(w, http.StatusBadRequest, "You are not signed in. Go back to the app and sign in again.", "consent: no session")
		return
	}
	org, _ := p.o.Orgs.ByID(ident.OrgID)
	if r.Method == http.MethodGet {
		var scopes []string
		for _, s := range a.Scopes {
			if t, ok := scopeText[s]; ok {
				scopes = append(scopes, t)
			} else {
				scopes = append(scopes, s)
			}
		}
		name := cl.cfg.Name
		if name == "" {
			name = cl.cfg.ID
		}
		pg := web.Page{Title: "Allow access?", App: name, Email: ident.Email, Reasons: scopes, CSRF: a.ConsentToken,
			Action: consentPath + "?" + url.Values{"id": {id}}.Encode()}
		if org != nil {
			pg.OrgName = org.Name
		}
		web.Render(w, http.StatusOK, "consent", pg)
		return
	}
	if r.PostFormValue("csrf") != a.ConsentToken {
		p.page(w, http.StatusForbidden, "This form expired or was not sent from this page. Go back to the app and sign in again.", "consent: wrong token")
		return
	}
	orgID := ""
	if org != nil {
		orgID = org.ID
	}
	if r.PostFormValue("decision") != "allow" {
		p.audit(ctx, orgID, ident.UserID, "oidc.consent", map[string]string{"client": cl.cfg.ID, "decision": "deny"})
		p.fail(w, r, a, oidc.ErrAccessDenied().WithDescription("the person declined"))
		return
	}
	if err := p.recordConsent(ctx, ident.UserID, cl.cfg.ID, a.Scopes); err != nil {
		p.page(w, web.FailureStatus(err), "Your answer could not be saved. Try again.", "consent: "+err.Error())
		return
	}
	if _, err := p.requests.update(ctx, id, func(a *authRequest) error {
		a.Consented = true
		return nil
	}); err != nil {
		p.page(w, http.StatusBadRequest, "This sign-in took too long. Go back to the app and sign in again.", "auth request gone: "+err.Error())
		return
	}
	p.audit(ctx, orgID, ident.UserID, "oidc.consent", map[string]string{"client": cl.cfg.ID, "decision": "allow", "scopes": strings.Join(a.Scopes, " ")})
	http.Redirect(w, r, p.issuer+continuePath+"?"+url.Values{"id": {id}}.Encode(), http.StatusSeeOther)
}

func (p *Provider) recordConsent(ctx context.Context, userID, clientID string, scopes []string) error {
	var c consentRecord
	if b, err := p.o.Store.GetBlob(ctx, consentKey(userID, clientID)); err == nil {
		_ = json.Unmarshal(b.Value, &c)
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	for _, s := range scopes {
		if !slices.Contains(c.Scopes, s) {
			c.Scopes = append(c.Scopes, s)
		}
	}
	c.At = p.o.Now().UTC()
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return p.o.Store.PutBlob(ctx, consentKey(userID, clientID), b)
}
