package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// ClientSpec is what an app's registration says: the settings of a
// `clients` entry of the config file (docs/apps.md), with durations as
// Go durations ("5m") and the JWK Set as JSON.
type ClientSpec struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Org (slug or ID) makes a per-org app; fixed once registered.
	Org                    string            `json:"org,omitempty"`
	AuthMethod             string            `json:"auth_method,omitempty"`
	JWKSURL                string            `json:"jwks_url,omitempty"`
	JWKS                   json.RawMessage   `json:"jwks,omitempty"`
	RedirectURIs           []string          `json:"redirect_uris"`
	PostLogoutRedirectURIs []string          `json:"post_logout_redirect_uris"`
	IncludeSubOrgs         bool              `json:"include_sub_orgs"`
	Audience               string            `json:"audience,omitempty"`
	Resources              []string          `json:"resources"`
	Scopes                 []string          `json:"scopes"`
	AccessTokenLifetime    string            `json:"access_token_lifetime,omitempty"`
	IDTokenLifetime        string            `json:"id_token_lifetime,omitempty"`
	RefreshTokenLifetime   string            `json:"refresh_token_lifetime,omitempty"`
	OfflineAccess          bool              `json:"offline_access"`
	ThirdParty             bool              `json:"third_party"`
	BackchannelLogoutURI   string            `json:"backchannel_logout_uri,omitempty"`
	Claims                 map[string]string `json:"claims"`
}

// ClientView is a registered app as the API shows it (never its secret).
type ClientView struct {
	ID string `json:"id"`
	ClientSpec
	OrgID string `json:"org_id,omitempty"`
	// Policy is the token policy file a declared app names.
	Policy string `json:"policy,omitempty"`
	// OldSecretValidUntil: after a rotation, the previous secret works
	// until then.
	OldSecretValidUntil time.Time `json:"old_secret_valid_until,omitzero"`
	ManagedBy           string    `json:"managed_by"`
	CreatedAt           time.Time `json:"created_at,omitzero"`
	UpdatedAt           time.Time `json:"updated_at,omitzero"`
}

// NewClientView is an app with its new secret, shown this once.
type NewClientView struct {
	ClientView
	ClientSecret string `json:"client_secret,omitempty"`
}

type clientList struct {
	Items []ClientView `json:"items"`
}

type secretRotate struct {
	// KeepOldFor is how long the previous secret keeps working (a Go
	// duration; default 0, at most 7 days).
	KeepOldFor string `json:"keep_old_for"`
}

// maxSecretOverlap bounds how long a rotated-out secret keeps working.
const maxSecretOverlap = 7 * 24 * time.Hour

func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// specOf is the spec of a client's settings (org as its ID).
func specOf(cl config.Client, orgID string) ClientSpec {
	s := ClientSpec{Name: cl.Name, Type: cl.Type, Org: orgID, AuthMethod: cl.AuthMethod, JWKSURL: cl.JWKSURL,
		RedirectURIs: nonNil(cl.RedirectURIs), PostLogoutRedirectURIs: nonNil(cl.PostLogoutRedirectURIs), IncludeSubOrgs: cl.IncludeSubOrgs,
		Audience: cl.Audience, Resources: nonNil(cl.Resources), Scopes: nonNil(cl.Scopes),
		AccessTokenLifetime: fmtDuration(cl.AccessTokenLifetime), IDTokenLifetime: fmtDuration(cl.IDTokenLifetime),
		RefreshTokenLifetime: fmtDuration(cl.RefreshTokenLifetime), OfflineAccess: cl.OfflineAccess, ThirdParty: cl.ThirdParty,
		BackchannelLogoutURI: cl.BackchannelLogoutURI, Claims: cl.Claims}
	if cl.JWKS != "" {
		s.JWKS = json.RawMessage(cl.JWKS)
	}
	if s.Claims == nil {
		s.Claims = map[string]string{}
	}
	return s
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// view shows a stored app.
func (a *API) clientView(c *call, sc store.OIDCClient) (ClientView, error) {
	var cl config.Client
	if err := json.Unmarshal(sc.Settings, &cl); err != nil {
		return ClientView{}, fmt.Errorf("admin: client %s: stored settings: %w", sc.ID, err)
	}
	cl.SetDefaults()
	v := ClientView{ID: sc.ID, ClientSpec: specOf(cl, ""), OrgID: sc.OrgID, ManagedBy: "api", CreatedAt: sc.CreatedAt, UpdatedAt: sc.UpdatedAt}
	if sc.OrgID != "" {
		v.Org = sc.OrgID
		if o, err := a.o.Store.GetOrg(c.ctx(), sc.OrgID); err == nil {
			v.Org = o.Slug
		}
	}
	if sc.OldSecretHash != nil && a.o.Now().Before(sc.OldSecretUntil) {
		v.OldSecretValidUntil = sc.OldSecretUntil
	}
	return v, nil
}

// declaredView shows an app of the config file.
func (a *API) declaredView(c *call, cl config.Client) ClientView {
	v := ClientView{ID: cl.ID, ClientSpec: specOf(cl, cl.Org), Policy: cl.Policy, ManagedBy: "config"}
	if cl.Org != "" {
		if o, err := a.o.Store.GetOrgBySlug(c.ctx(), cl.Org); err == nil {
			v.OrgID = o.ID
		}
	}
	return v
}

func (a *API) declaredClient(id string) (config.Client, bool) {
	i := slices.IndexFunc(a.o.Clients, func(cl config.Client) bool { return cl.ID == id })
	if i < 0 {
		return config.Client{}, false
	}
	return a.o.Clients[i], true
}

// listClients lists every app: the config file's, then the API's.
func (a *API) listClients(c *call) error {
	stored, err := a.o.Store.ListOIDCClients(c.ctx())
	if err != nil {
		return fmt.Errorf("admin: list clients: %w", err)
	}
	out := clientList{Items: make([]ClientView, 0, len(a.o.Clients)+len(stored))}
	for _, cl := range a.o.Clients {
		out.Items = append(out.Items, a.declaredView(c, cl))
	}
	for _, sc := range stored {
		if _, dup := a.declaredClient(sc.ID); dup {
			continue // the file's wins (the provider says so in its log)
		}
		v, err := a.clientView(c, sc)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, v)
	}
	return c.reply(http.StatusOK, out)
}

func (a *API) getClient(c *call) error {
	id := c.r.PathValue("client")
	if cl, ok := a.declaredClient(id); ok {
		return c.reply(http.StatusOK, a.declaredView(c, cl))
	}
	sc, err := a.o.Store.GetOIDCClient(c.ctx(), id)
	if err := storeErr(err, "app"); err != nil {
		return err
	}
	v, err := a.clientView(c, sc)
	if err != nil {
		return err
	}
	return c.replyETag(http.StatusOK, v, etagOf(sc))
}

// checkSpec validates a spec as the config file's clients are, and
// returns the settings to store (with defaults filled in) and the org's
// ID ("" for a shared app).
func (a *API) checkSpec(c *call, in ClientSpec) (config.Client, string, error) {
	var errs fields
	cl := config.Client{Name: in.Name, Type: in.Type, AuthMethod: in.AuthMethod, JWKSURL: in.JWKSURL,
		RedirectURIs: in.RedirectURIs, PostLogoutRedirectURIs: in.PostLogoutRedirectURIs, IncludeSubOrgs: in.IncludeSubOrgs,
		Audience: in.Audience, Resources: in.Resources, Scopes: in.Scopes, OfflineAccess: in.OfflineAccess, ThirdParty: in.ThirdParty,
		BackchannelLogoutURI: in.BackchannelLogoutURI, Claims: in.Claims}
	if strings.TrimSpace(in.Name) == "" {
		errs.add("/name", "required: the app's name, as people see it on the consent page and in the audit trail")
	}
	if j := bytes.TrimSpace(in.JWKS); len(j) > 0 && string(j) != "null" {
		cl.JWKS = string(j)
	}
	for _, d := range []struct {
		ptr, raw string
		to       *time.Duration
	}{{"/access_token_lifetime", in.AccessTokenLifetime, &cl.AccessTokenLifetime}, {"/id_token_lifetime", in.IDTokenLifetime, &cl.IDTokenLifetime},
		{"/refresh_token_lifetime", in.RefreshTokenLifetime, &cl.RefreshTokenLifetime}} {
		if d.raw == "" {
			continue
		}
		v, err := time.ParseDuration(d.raw)
		if err != nil || v <= 0 {
			errs.add(d.ptr, "must be a duration such as 5m or 1h")
			continue
		}
		*d.to = v
	}
	orgID := ""
	if in.Org != "" {
		o, err := a.resolveOrg(c.ctx(), in.Org)
		var p *Problem
		switch {
		case errors.As(err, &p):
			errs.add("/org", "no org %q", in.Org)
		case err != nil:
			return cl, "", err
		default:
			orgID = o.ID
		}
	}
	cl.SetDefaults()
	if cl.Confidential() && cl.AuthMethod != "private_key_jwt" {
		cl.Secret = strings.Repeat("x", 64) // Gatehouse makes it: only its presence is checked
	}
	for _, pr := range cl.Problems(in.Org != "") {
		errs.add(specPointer(pr.Path), "%s", pr.Msg)
	}
	cl.Secret = ""
	return cl, orgID, errs.err()
}

// checkedSettings checks a spec and encodes the settings to store.
func (a *API) checkedSettings(c *call, in ClientSpec) (config.Client, string, []byte, error) {
	cl, orgID, err := a.checkSpec(c, in)
	if err != nil {
		return cl, orgID, nil, err
	}
	settings, err := json.Marshal(cl)
	if err != nil {
		return cl, orgID, nil, fmt.Errorf("admin: encode client: %w", err)
	}
	return cl, orgID, settings, nil
}

var indexRE = regexp.MustCompile(`\[(\d+)\]`)

// specPointer turns a config key path under a client ("redirect_uris[0]",
// "claims.plan") into the JSON pointer of the spec's field.
func specPointer(path string) string {
	if name, ok := strings.CutPrefix(path, "claims."); ok {
		return "/claims/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(name)
	}
	return "/" + indexRE.ReplaceAllString(path, "/$1")
}

func needsSecret(cl config.Client) bool {
	return cl.Confidential() && cl.AuthMethod != "private_key_jwt"
}

// clientFields are what an audit event shows of an app.
func clientFields(cl config.Client, orgID string) map[string]any {
	b, _ := json.Marshal(specOf(cl, orgID))
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// createClient registers an app. Gatehouse makes its client_id and, for
// one that authenticates with a secret, the secret, shown this once.
func (a *API) createClient(c *call) error {
	var in ClientSpec
	if err := c.decode(&in); err != nil {
		return err
	}
	cl, orgID, settings, err := a.checkedSettings(c, in)
	if err != nil {
		return err
	}
	now := a.o.Now().UTC()
	sc := store.OIDCClient{ID: "app_" + token.RandomID()[:22], OrgID: orgID, Settings: settings, CreatedAt: now, UpdatedAt: now}
	secret := ""
	if needsSecret(cl) {
		secret = token.NewClientSecret()
		sc.SecretHash = token.ClientSecretHash(secret)
	}
	if err := a.o.Store.CreateOIDCClient(c.ctx(), sc); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return invalid(field("/org", "no org %q", in.Org))
		}
		return fmt.Errorf("admin: create client: %w", err)
	}
	c.record(orgID, "client.create", sc.ID, "success", change(map[string]any{}, clientFields(cl, orgID)))
	a.o.ClientsChanged(c.ctx())
	v, err := a.clientView(c, sc)
	if err != nil {
		return err
	}
	c.w.Header().Set("Location", Prefix+"/clients/"+sc.ID)
	c.w.Header().Set("ETag", etagOf(sc))
	return c.reply(http.StatusCreated, NewClientView{ClientView: v, ClientSecret: secret})
}

// storedClient reads the path's app, refusing one the config file
// declares.
func (a *API) storedClient(c *call) (store.OIDCClient, config.Client, error) {
	id := c.r.PathValue("client")
	if _, ok := a.declaredClient(id); ok {
		return store.OIDCClient{}, config.Client{}, c.declared("App " + id)
	}
	sc, err := a.o.Store.GetOIDCClient(c.ctx(), id)
	if err := storeErr(err, "app"); err != nil {
		return sc, config.Client{}, err
	}
	var cl config.Client
	if err := json.Unmarshal(sc.Settings, &cl); err != nil {
		return sc, cl, fmt.Errorf("admin: client %s: stored settings: %w", id, err)
	}
	cl.SetDefaults()
	return sc, cl, nil
}

// updateClient changes an app's registration (a JSON merge patch over
// its spec). Its type and org are fixed: tokens were issued under them.
// An app that now authenticates with a secret and had none gets one,
// shown in the answer; one that no longer does loses its secrets.
func (a *API) updateClient(c *call) error {
	body, err := c.body()
	if err != nil {
		return err
	}
	var patch map[string]any
	if err := decodeJSON(body, &patch); err != nil {
		return err
	}
	sc, before, err := a.storedClient(c)
	if err != nil {
		return err
	}
	if err := c.precondition(etagOf(sc)); err != nil {
		return err
	}
	cur := specOf(before, sc.OrgID)
	curJSON, _ := json.Marshal(cur)
	var doc map[string]any
	_ = json.Unmarshal(curJSON, &doc)
	merged, _ := json.Marshal(mergePatch(doc, patch))
	var in ClientSpec
	if err := decodeJSON(merged, &in); err != nil {
		return err
	}
	if in.Type != before.Type {
		return invalid(field("/type", "an app's type is fixed (its tokens were issued as a %s app): register a new app", before.Type))
	}
	if in.Org != cur.Org {
		o, err := a.resolveOrg(c.ctx(), in.Org)
		if in.Org == "" || err != nil || o.ID != sc.OrgID {
			return invalid(field("/org", "an app's org is fixed: register a new app"))
		}
	}
	cl, _, settings, err := a.checkedSettings(c, in)
	if err != nil {
		return err
	}
	secret := ""
	if needsSecret(cl) && sc.SecretHash == nil {
		secret = token.NewClientSecret()
	}
	next, err := a.o.Store.UpdateOIDCClient(c.ctx(), sc.ID, func(x store.OIDCClient) (store.OIDCClient, error) {
		if err := c.precondition(etagOf(x)); err != nil {
			return x, err
		}
		x.Settings, x.UpdatedAt = settings, a.o.Now().UTC()
		switch {
		case secret != "":
			x.SecretHash = token.ClientSecretHash(secret)
		case !needsSecret(cl):
			x.SecretHash, x.OldSecretHash, x.OldSecretUntil = nil, nil, time.Time{}
		}
		return x, nil
	})
	if err := storeErr(err, "app"); err != nil {
		return err
	}
	details := change(clientFields(before, sc.OrgID), clientFields(cl, sc.OrgID))
	if secret != "" {
		details["secret"] = "made"
	}
	c.record(sc.OrgID, "client.update", sc.ID, "success", details)
	a.o.ClientsChanged(c.ctx())
	v, err := a.clientView(c, next)
	if err != nil {
		return err
	}
	c.w.Header().Set("ETag", etagOf(next))
	return c.reply(http.StatusOK, NewClientView{ClientView: v, ClientSecret: secret})
}

// rotateClientSecret gives the app a new secret; the previous one keeps
// working for keep_old_for, so that the app's instances roll over.
func (a *API) rotateClientSecret(c *call) error {
	var in secretRotate
	if c.r.ContentLength != 0 {
		if err := c.decode(&in); err != nil {
			return err
		}
	}
	var keep time.Duration
	if in.KeepOldFor != "" {
		d, err := time.ParseDuration(in.KeepOldFor)
		if err != nil || d < 0 || d > maxSecretOverlap {
			return invalid(field("/keep_old_for", "must be a duration from 0s to %s, such as 24h", fmtDuration(maxSecretOverlap)))
		}
		keep = d
	}
	sc, cl, err := a.storedClient(c)
	if err != nil {
		return err
	}
	if !needsSecret(cl) {
		return conflict("no-secret", fmt.Sprintf("App %s authenticates with %s, not a secret.", sc.ID, authOf(cl)))
	}
	secret := token.NewClientSecret()
	now := a.o.Now().UTC()
	next, err := a.o.Store.UpdateOIDCClient(c.ctx(), sc.ID, func(x store.OIDCClient) (store.OIDCClient, error) {
		x.OldSecretHash, x.OldSecretUntil = nil, time.Time{}
		if keep > 0 {
			x.OldSecretHash, x.OldSecretUntil = x.SecretHash, now.Add(keep)
		}
		x.SecretHash, x.UpdatedAt = token.ClientSecretHash(secret), now
		return x, nil
	})
	if err := storeErr(err, "app"); err != nil {
		return err
	}
	c.record(sc.OrgID, "client.secret.rotate", sc.ID, "success", map[string]string{"keep_old_for": fmtDuration(keep)})
	a.o.ClientsChanged(c.ctx())
	v, err := a.clientView(c, next)
	if err != nil {
		return err
	}
	c.w.Header().Set("ETag", etagOf(next))
	return c.reply(http.StatusOK, NewClientView{ClientView: v, ClientSecret: secret})
}

func authOf(cl config.Client) string {
	if cl.AuthMethod == "" {
		return "PKCE"
	}
	return cl.AuthMethod
}

// deleteClient unregisters an app: from then on it gets no token, its
// refresh tokens and client credentials stop working, and its access
// tokens are refused by introspection (they are JWTs: an API verifying
// them itself accepts them until they expire, at most an hour).
func (a *API) deleteClient(c *call) error {
	sc, cl, err := a.storedClient(c)
	if err != nil {
		return err
	}
	if im := c.r.Header.Get("If-Match"); im != "" {
		if err := c.precondition(etagOf(sc)); err != nil {
			return err
		}
	}
	if err := storeErr(a.o.Store.DeleteOIDCClient(c.ctx(), sc.ID), "app"); err != nil {
		return err
	}
	c.record(sc.OrgID, "client.delete", sc.ID, "success", change(clientFields(cl, sc.OrgID), map[string]any{}))
	a.o.ClientsChanged(c.ctx())
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// mergePatch applies an RFC 7396 JSON merge patch to doc.
func mergePatch(doc, patch map[string]any) map[string]any {
	if doc == nil {
		doc = map[string]any{}
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(doc, k)
		case map[string]any:
			cur, _ := doc[k].(map[string]any)
			doc[k] = mergePatch(cur, pv)
		default:
			doc[k] = v
		}
	}
	return doc
}
