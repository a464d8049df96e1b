package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/saml"
	"github.com/gatehouse/gatehouse/internal/netguard"
	"github.com/gatehouse/gatehouse/store"
)

// ConnectionView is how an org's people sign in: the protocol, its
// settings (secrets shown as "[redacted]"), how sign-ins map onto people,
// and the values to give the IdP.
type ConnectionView struct {
	// Type is password, oidc or saml; inherit for a sub-org using its
	// parent's.
	Type         string             `json:"type"`
	Settings     map[string]any     `json:"settings"`
	Provisioning store.Provisioning `json:"provisioning"`
	Endpoints    Endpoints          `json:"endpoints"`
	ManagedBy    string             `json:"managed_by"`
}

// Endpoints are Gatehouse's values the customer's IdP needs: the OIDC
// redirect URI, or the SAML SP's entity ID (its metadata URL), ACS and
// single logout URLs.
type Endpoints struct {
	SignInURL    string `json:"sign_in_url"`
	OIDCCallback string `json:"oidc_redirect_uri"`
	SAMLEntityID string `json:"saml_entity_id"`
	SAMLMetadata string `json:"saml_metadata_url"`
	SAMLACS      string `json:"saml_acs_url"`
	SAMLSLO      string `json:"saml_slo_url"`
	SharedSignIn bool   `json:"shared_sign_in"`
}

type connectionSet struct {
	Type         string             `json:"type"`
	Settings     json.RawMessage    `json:"settings"`
	Provisioning store.Provisioning `json:"provisioning"`
}

// ConnectionTest is what a live test of the connection found.
type ConnectionTest struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// secretSettings are settings keys shown redacted and kept when an
// update leaves them out.
var secretSettings = []string{"client_secret"}

// secretBound are the settings a kept secret belongs to.
var secretBound = []string{"issuer", "client_id"}

func (a *API) endpoints(o store.Org) Endpoints {
	if a.o.PublicURL == nil {
		return Endpoints{}
	}
	signIn := idp.SignInURL(*a.o.PublicURL, &o)
	e := Endpoints{SignInURL: signIn.String() + "/.gatehouse/login", SharedSignIn: o.LoginDomain == ""}
	cb := signIn
	cb.Path = idp.CallbackPath
	e.OIDCCallback = cb.String()
	entity, acs, slo := saml.Endpoints(signIn, o.Slug, o.LoginDomain == "")
	e.SAMLEntityID, e.SAMLMetadata, e.SAMLACS, e.SAMLSLO = entity.String(), entity.String(), acs.String(), slo.String()
	return e
}

func (a *API) connectionView(o store.Org) (ConnectionView, error) {
	v := ConnectionView{Type: o.Connection.Type, Settings: map[string]any{}, Provisioning: o.Connection.Provisioning,
		Endpoints: a.endpoints(o), ManagedBy: managedBy(o.Declared)}
	if v.Type == "" {
		v.Type = "inherit"
	}
	if len(o.Connection.Config) > 0 {
		if err := json.Unmarshal(o.Connection.Config, &v.Settings); err != nil {
			return v, fmt.Errorf("admin: org %s: stored connection settings: %w", o.Slug, err)
		}
	}
	for _, k := range secretSettings {
		if s, ok := v.Settings[k].(string); ok && s != "" {
			v.Settings[k] = redacted
		}
	}
	return v, nil
}

func (a *API) getConnection(c *call) error {
	v, err := a.connectionView(*c.org)
	if err != nil {
		return err
	}
	return c.replyETag(http.StatusOK, v, etagOf(c.org.Connection))
}

// setConnection replaces how the org signs in: the protocol's settings
// are checked by the protocol's own schema, as the config file's are.
// Its people's next sign-in uses it.
func (a *API) setConnection(c *call) error {
	var in connectionSet
	if err := c.decode(&in); err != nil {
		return err
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s connection")
	}
	if err := c.precondition(etagOf(c.org.Connection)); err != nil {
		return err
	}
	conn, err := a.checkConnection(c, in)
	if err != nil {
		return err
	}
	before := c.org.Connection
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		if o.Declared {
			return o, c.declared("Org " + o.Slug + "'s connection")
		}
		if err := c.precondition(etagOf(o.Connection)); err != nil {
			return o, err
		}
		o.Connection, o.UpdatedAt = conn, a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	c.record(o.ID, "connection.update", o.ID, "success", change(connectionFields(before), connectionFields(conn)))
	a.o.OrgsChanged(c.ctx())
	v, err := a.connectionView(o)
	if err != nil {
		return err
	}
	return c.replyETag(http.StatusOK, v, etagOf(o.Connection))
}

// connectionFields are what an audit event shows of a connection
// (settings with secrets redacted).
func connectionFields(cn store.Connection) map[string]any {
	var settings map[string]any
	_ = json.Unmarshal(cn.Config, &settings)
	for _, k := range secretSettings {
		if _, ok := settings[k]; ok {
			settings[k] = redacted
		}
	}
	return map[string]any{"type": cn.Type, "settings": settings, "provisioning": cn.Provisioning}
}

// checkConnection validates a connection set through the API and returns
// it as stored.
func (a *API) checkConnection(c *call, in connectionSet) (store.Connection, error) {
	var errs fields
	out := store.Connection{Type: in.Type, Provisioning: in.Provisioning}
	if in.Type == "inherit" {
		out.Type = ""
		if c.org.ParentID == "" {
			errs.add("/type", "only a sub-org inherits its parent's connection")
		}
		if len(bytes.TrimSpace(in.Settings)) > 0 && string(bytes.TrimSpace(in.Settings)) != "null" && string(bytes.TrimSpace(in.Settings)) != "{}" {
			errs.add("/settings", "a sub-org that inherits has no settings")
		}
		return out, errs.err()
	}
	p, ok := config.LookupProtocol(in.Type)
	if !ok {
		return out, invalid(field("/type", "must be password, oidc or saml (or inherit, for a sub-org)"))
	}
	settings := p.NewSettings()
	raw := bytes.TrimSpace(in.Settings)
	switch {
	case settings == nil && len(raw) > 0 && string(raw) != "null" && string(raw) != "{}":
		errs.add("/settings", "%s has no settings", in.Type)
	case settings != nil:
		merged, err := a.keepSecrets(c, in.Type, raw)
		if err != nil {
			return out, err
		}
		if err := decodeJSON(merged, settings); err != nil {
			var pb *Problem
			if errors.As(err, &pb) {
				for i := range pb.Errors {
					pb.Errors[i].Pointer = "/settings" + pb.Errors[i].Pointer
				}
			}
			return out, err
		}
		for _, perr := range p.Problems(settings) {
			var fe *connection.FieldError
			if errors.As(perr, &fe) {
				errs.add("/settings/"+strings.ReplaceAll(fe.Key, ".", "/"), "%s", fe.Err.Error())
			} else {
				errs.add("/settings", "%s", perr.Error())
			}
		}
		var m map[string]any
		_ = json.Unmarshal(merged, &m)
		if f, ok := m["client_secret_file"].(string); ok && f != "" {
			errs.add("/settings/client_secret_file", "is the config file's (a path on the server): send client_secret")
		}
		if !a.o.WebhooksAllowPrivate {
			for _, k := range []string{"issuer", "metadata_url"} {
				if s, ok := m[k].(string); ok && s != "" && !publicURLHost(s) {
					errs.add("/settings/"+k, "must be a public address (admin.allow_private_networks is off)")
				}
			}
		}
		if len(errs) == 0 {
			b, err := json.Marshal(settings)
			if err != nil {
				return out, fmt.Errorf("admin: encode settings: %w", err)
			}
			out.Config = b
		}
	}
	rolesProblems(&errs, "/provisioning/default_roles", in.Provisioning.DefaultRoles)
	for g, roles := range in.Provisioning.GroupRoles {
		if g == "" {
			errs.add("/provisioning/group_roles", "group names must not be empty")
		}
		rolesProblems(&errs, "/provisioning/group_roles/"+g, roles)
	}
	if in.Type == "password" && (in.Provisioning.ExistingUsersOnly || in.Provisioning.AnyEmailDomain || len(in.Provisioning.GroupRoles) > 0 || in.Provisioning.DefaultRoles != nil) {
		errs.add("/provisioning", "applies to federated connections (oidc, saml), not password")
	}
	if in.Type != "password" && !in.Provisioning.AnyEmailDomain {
		if doms, err := a.emailDomains(c); err != nil {
			return out, err
		} else if len(doms) == 0 {
			errs.add("/provisioning/any_email_domain", "a federated org needs email domains (its IdP may sign in only those addresses) or any_email_domain: true")
		}
	}
	return out, errs.err()
}

// keepSecrets fills secrets an update leaves out (or sends redacted) from
// the stored settings of the same type, so that an admin can change a
// connection without knowing its secret.
func (a *API) keepSecrets(c *call, typ string, raw []byte) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		raw = []byte("{}")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalid(field("/settings", "must be an object"))
	}
	if c.org.Connection.Type != typ || len(c.org.Connection.Config) == 0 {
		return raw, nil
	}
	var prev map[string]json.RawMessage
	if err := json.Unmarshal(c.org.Connection.Config, &prev); err != nil {
		return raw, nil
	}
	// A secret stays only with the IdP and client it was issued for: a
	// changed issuer or client ID must come with its own secret, or the
	// stored one would be sent to whatever the new issuer names.
	for _, k := range secretBound {
		if !bytes.Equal(bytes.TrimSpace(m[k]), bytes.TrimSpace(prev[k])) {
			for _, sk := range secretSettings {
				if cur, sent := m[sk]; len(prev[sk]) > 0 && (!sent || string(cur) == `"`+redacted+`"`) {
					return nil, invalid(field("/settings/"+sk, "send it: the stored one stays only with the same %s", strings.Join(secretBound, " and ")))
				}
			}
			return raw, nil
		}
	}
	changed := false
	for _, k := range secretSettings {
		cur, sent := m[k]
		if (!sent || string(cur) == `"`+redacted+`"`) && len(prev[k]) > 0 {
			m[k], changed = prev[k], true
		}
	}
	if !changed {
		return raw, nil
	}
	return json.Marshal(m)
}

// publicURLHost reports whether a URL's host is not a literal private,
// loopback or link-local address (names are checked when dialed).
func publicURLHost(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	h := u.Hostname()
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return false
	}
	if a, err := netip.ParseAddr(h); err == nil {
		return netguard.Public(a)
	}
	return true
}

// testConnection opens the org's connection afresh (fetching the OIDC
// discovery document and keys, or the SAML metadata) and says what
// failed, so that an admin learns it before their people do.
func (a *API) testConnection(c *call) error {
	if a.o.TestConnection == nil {
		return &Problem{Status: http.StatusInternalServerError, Code: "internal", Detail: "Connection tests are not available here."}
	}
	ctx, cancel := context.WithTimeout(c.ctx(), 20*time.Second)
	defer cancel()
	res := ConnectionTest{OK: true}
	if err := a.o.TestConnection(ctx, *c.org); err != nil {
		res = ConnectionTest{OK: false, Error: err.Error()}
	}
	c.record(c.org.ID, "connection.test", c.org.ID, map[bool]string{true: "success", false: "failure"}[res.OK], map[string]string{"error": res.Error})
	return c.reply(http.StatusOK, res)
}

// KeyRotation is a SAML SP key rotation just made.
type KeyRotation struct {
	// Offset is how many generations the org's keys are ahead of their
	// schedule.
	Offset int64 `json:"offset"`
}

// rotateKey moves the org's SAML SP key on now: the next key, already in
// the SP metadata, signs; the one before still decrypts for a period; a
// new next key is published. IdPs that read the metadata follow by
// themselves; others need the new certificate. Declared orgs too: the SP
// keys are Gatehouse's, not the file's.
func (a *API) rotateKey(c *call) error {
	if c.org.Connection.Type != "saml" {
		return conflict("not-saml", "Org "+c.org.Slug+" does not sign in with a SAML connection of its own.")
	}
	off, err := saml.RotateKey(c.ctx(), a.o.Store, c.org.ID)
	if err != nil {
		return err
	}
	c.record(c.org.ID, "connection.rotate_key", c.org.ID, "success", map[string]string{"offset": fmt.Sprint(off)})
	return c.reply(http.StatusOK, KeyRotation{Offset: off})
}
