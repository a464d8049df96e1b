package admin

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/store"
)

// Self-serve single sign-on: the admin picks SAML or OIDC, gives the
// IdP's values, and signs in through the new connection in a test mode
// (idp.BeginTest). The tracer shows what arrived; only a test in which
// the IdP signed in someone Gatehouse would admit may be activated (the
// page warns when that was not the admin), so a wrong setting never
// takes the org's working sign-in (its password pool, say) away.

type ssoData struct {
	Conn ConnectionView
	// Declared: the config file manages the connection (read-only here).
	Declared bool
	Form     ssoForm
	Trace    *idp.SSOTrace
	// Testable: test sign-ins are offered here (the org's sign-in host).
	Testable  bool
	TestHost  string
	CanTest   bool
	Activated bool
}

type ssoForm struct {
	Type, MetadataURL, MetadataXML, Issuer, ClientID string
}

func (p *Portal) sso(c *pcall) error { return p.renderSSO(c, http.StatusOK, "", nil) }

func (p *Portal) renderSSO(c *pcall, status int, msg string, form *ssoForm) error {
	var d ssoData
	if _, err := c.get(c.orgPath("/connection"), nil, &d.Conn); err != nil {
		return err
	}
	d.Declared = c.org.Declared
	d.CanTest = p.o.TestSignIn != nil && !d.Declared
	if u, err := url.Parse(d.Conn.Endpoints.SignInURL); err == nil {
		d.TestHost = u.Hostname()
		d.Testable = strings.EqualFold(u.Hostname(), hostOf(c.r))
	}
	if id := c.r.URL.Query().Get("trace"); id != "" && p.o.Trace != nil {
		if tr, ok := p.o.Trace(c.ctx(), id); ok && tr.OrgID == c.org.ID && tr.UserID == c.who.UserID {
			d.Trace = &tr
			if form == nil {
				form = draftForm(tr.Draft)
			}
		} else if msg == "" {
			msg = "This test sign-in is not known, or older than 30 minutes: test again."
		}
	}
	switch {
	case form != nil:
		d.Form = *form
	case d.Conn.Type == "saml" || d.Conn.Type == "oidc":
		d.Form = ssoForm{Type: d.Conn.Type}
		d.Form.MetadataURL, _ = d.Conn.Settings["metadata_url"].(string)
		d.Form.MetadataXML, _ = d.Conn.Settings["metadata_xml"].(string)
		d.Form.Issuer, _ = d.Conn.Settings["issuer"].(string)
		d.Form.ClientID, _ = d.Conn.Settings["client_id"].(string)
	default:
		d.Form = ssoForm{Type: "saml"}
	}
	v := c.view("Single sign-on")
	v.Error, v.Data = msg, d
	return c.render(status, "sso", v)
}

// draftForm fills the form from a tested draft (never its secret).
func draftForm(cn store.Connection) *ssoForm {
	f := &ssoForm{Type: cn.Type}
	var m map[string]any
	_ = json.Unmarshal(cn.Config, &m)
	f.MetadataURL, _ = m["metadata_url"].(string)
	f.MetadataXML, _ = m["metadata_xml"].(string)
	f.Issuer, _ = m["issuer"].(string)
	f.ClientID, _ = m["client_id"].(string)
	return f
}

// ssoTest checks the form's settings as the API would, then sends the
// admin to their IdP through them.
func (p *Portal) ssoTest(c *pcall) error {
	if p.o.TestSignIn == nil || c.org.Declared {
		return &pageError{http.StatusConflict, "Single sign-on of " + c.org.Name + " is managed by the config file: change it there."}
	}
	f := c.r.PostFormValue
	form := ssoForm{Type: f("type"), MetadataURL: strings.TrimSpace(f("metadata_url")), MetadataXML: strings.TrimSpace(f("metadata_xml")),
		Issuer: strings.TrimSpace(f("issuer")), ClientID: strings.TrimSpace(f("client_id"))}
	settings := map[string]any{}
	switch form.Type {
	case "saml":
		if form.MetadataURL != "" {
			settings["metadata_url"] = form.MetadataURL
		}
		if form.MetadataXML != "" {
			settings["metadata_xml"] = form.MetadataXML
		}
	case "oidc":
		settings["issuer"], settings["client_id"] = form.Issuer, form.ClientID
		if s := f("client_secret"); s != "" {
			settings["client_secret"] = s
		}
	default:
		return p.renderSSO(c, http.StatusBadRequest, "Choose SAML or OpenID Connect.", &form)
	}
	raw, err := json.Marshal(settings)
	if err != nil {
		return err
	}
	in := connectionSet{Type: form.Type, Settings: raw}
	if c.org.Connection.Type == form.Type {
		in.Provisioning = c.org.Connection.Provisioning
	}
	draft, err := p.api.checkConnection(&call{a: p.api, r: c.r, org: c.org}, in)
	if err != nil {
		var pb *Problem
		if errors.As(err, &pb) {
			res := &apiResult{status: pb.Status, problem: &problemBody{Detail: pb.Detail, Errors: pb.Errors}}
			return p.renderSSO(c, pb.Status, res.message(), &form)
		}
		return err
	}
	ret := c.here("/sso")
	if err := p.o.TestSignIn(c.w, c.r, c.org, draft, c.who.UserID, ret, etagOf(c.org.Connection)); err != nil {
		p.api.o.Logger.Info("admin portal: test sign-in not started", "org", c.org.Slug, "principal", c.who.String(), "err", err)
		msg := "The test sign-in could not start: " + err.Error()
		if errors.Is(err, idp.ErrWrongHost) {
			msg = "Test sign-ins run on " + c.org.Name + "'s sign-in address: open this page there."
		}
		return p.renderSSO(c, http.StatusBadGateway, msg, &form)
	}
	return nil
}

// ssoActivate puts a tested draft into effect through the API (checked
// and audited there), once its test worked, if the connection is still
// the one it was tested against.
func (p *Portal) ssoActivate(c *pcall) error {
	if p.o.Trace == nil {
		return &pageError{http.StatusNotFound, ""}
	}
	id := c.r.PostFormValue("trace")
	tr, ok := p.o.Trace(c.ctx(), id)
	if !ok || tr.OrgID != c.org.ID || tr.UserID != c.who.UserID {
		return p.renderSSO(c, http.StatusConflict, "This test sign-in is not known, or older than 30 minutes: test again.", nil)
	}
	if !tr.OK {
		return p.renderSSO(c, http.StatusConflict, "Only a connection whose test sign-in worked can be activated.", nil)
	}
	// Against the connection as it was when tested: a change made since
	// (by another admin, say) is not overwritten (412).
	in := connectionSet{Type: tr.Draft.Type, Settings: tr.Draft.Config, Provisioning: tr.Draft.Provisioning}
	res, err := c.api(http.MethodPut, c.orgPath("/connection"), nil, in, tr.Base)
	if err != nil {
		return err
	}
	if res.status == http.StatusPreconditionFailed || res.status == http.StatusPreconditionRequired {
		return p.renderSSO(c, http.StatusConflict, "The sign-in settings changed since your test: test again.", nil)
	}
	if !res.ok() {
		return p.renderSSO(c, res.status, res.message(), nil)
	}
	if p.o.SpendTrace != nil {
		p.o.SpendTrace(c.ctx(), id)
	}
	return c.done(c.here("/sso"), "connection-saved")
}
