package admin

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/store"
)

// TemplateView is one of an org's message templates: its own parts (an
// empty part is its parent's, or Gatehouse's default).
type TemplateView struct {
	Kind       string `json:"kind"`
	Subject    string `json:"subject"`
	Text       string `json:"text"`
	HTML       string `json:"html"`
	SMS        string `json:"sms"`
	Customized bool   `json:"customized"`
}

type templateList struct {
	Items []TemplateView `json:"items"`
}

// TemplateSetView is a template just set, with the message it renders
// with sample fields, and what the sanitizer would take out of its HTML.
type TemplateSetView struct {
	TemplateView
	Preview  Rendered `json:"preview"`
	Warnings []string `json:"warnings,omitempty"`
}

// Rendered is a message rendered with sample fields.
type Rendered struct {
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
	SMS     string `json:"sms"`
}

type templateSet struct {
	Subject string `json:"subject"`
	Text    string `json:"text"`
	HTML    string `json:"html"`
	SMS     string `json:"sms"`
}

func templateView(kind string, t store.MessageTemplate, ok bool) TemplateView {
	return TemplateView{Kind: kind, Subject: t.Subject, Text: t.Text, HTML: t.HTML, SMS: t.SMS, Customized: ok}
}

func (a *API) listTemplates(c *call) error {
	out := templateList{Items: []TemplateView{}}
	for _, k := range notify.Kinds {
		t, ok := c.org.Notifications[string(k)]
		out.Items = append(out.Items, templateView(string(k), t, ok))
	}
	return c.reply(http.StatusOK, out)
}

// kind reads the path's message kind; 404 for an unknown one.
func (c *call) kind() (string, error) {
	k := c.r.PathValue("kind")
	if !slices.Contains(notify.Kinds, notify.Kind(k)) {
		return "", notFound("message kind (invitation, password_reset, mfa_code, new_sign_in)")
	}
	return k, nil
}

// maxTemplatePart bounds one part of a template.
const maxTemplatePart = 64 << 10

// setTemplate replaces one of the org's message templates after it
// rendered with sample fields, as the config file's are checked.
func (a *API) setTemplate(c *call) error {
	kind, err := c.kind()
	if err != nil {
		return err
	}
	var in templateSet
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	for _, p := range []struct{ ptr, v string }{{"/subject", in.Subject}, {"/text", in.Text}, {"/html", in.HTML}, {"/sms", in.SMS}} {
		if len(p.v) > maxTemplatePart {
			errs.add(p.ptr, "at most %d bytes", maxTemplatePart)
		}
	}
	if in.Subject == "" && in.Text == "" && in.HTML == "" && in.SMS == "" {
		errs.add("", "set at least one part (subject, text, html, sms); DELETE reverts to the default")
	}
	if err := errs.err(); err != nil {
		return err
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s message templates")
	}
	own := store.MessageTemplate{Subject: in.Subject, Text: in.Text, HTML: in.HTML, SMS: in.SMS}
	cur, had := c.org.Notifications[kind]
	if err := c.precondition(etagOf(cur, had)); err != nil {
		return err
	}
	t, f, err := a.sampleTemplate(c.ctx(), c.org, kind, own)
	if err != nil {
		return err
	}
	m, err := notify.Render(notify.Kind(kind), t, f)
	if err != nil {
		return &Problem{Status: http.StatusBadRequest, Code: "invalid", Detail: "The template does not render: " + err.Error(),
			Errors: []FieldError{{Pointer: templatePart(err.Error()), Detail: err.Error()}}}
	}
	var warnings []string
	if own.HTML != "" {
		if gone, _ := notify.Removed(notify.Kind(kind), t, f); gone != "" {
			warnings = append(warnings, gone+" is removed when the message is sent (HTML parts keep formatting, https links to the org's own hosts and Gatehouse's images only)")
		}
	}
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		if o.Declared {
			return o, c.declared("Org " + o.Slug + "'s message templates")
		}
		cur, had := o.Notifications[kind]
		if err := c.precondition(etagOf(cur, had)); err != nil {
			return o, err
		}
		o.Notifications = maps.Clone(o.Notifications)
		if o.Notifications == nil {
			o.Notifications = map[string]store.MessageTemplate{}
		}
		o.Notifications[kind] = own
		o.UpdatedAt = a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	c.record(o.ID, "template.update", kind, "success", change(templateFields(cur), templateFields(own)))
	v := TemplateSetView{TemplateView: templateView(kind, own, true), Preview: Rendered(m), Warnings: warnings}
	return c.replyETag(http.StatusOK, v, etagOf(own, true))
}

// templatePart guesses which part an error is about.
func templatePart(msg string) string {
	for _, p := range []string{"subject", "text", "html", "sms"} {
		if strings.Contains(strings.ToLower(msg), p) {
			return "/" + p
		}
	}
	return ""
}

func templateFields(t store.MessageTemplate) map[string]any {
	return map[string]any{"subject": t.Subject, "text": t.Text, "html": t.HTML, "sms": t.SMS}
}

// sampleTemplate is the template kind renders with in org when own is
// its own part (inheriting the rest from its ancestors and Gatehouse's
// default), with sample fields to render it with.
func (a *API) sampleTemplate(ctx context.Context, org *store.Org, kind string, own store.MessageTemplate) (notify.Template, notify.Fields, error) {
	up, err := a.inheritedTemplates(ctx, org, kind)
	if err != nil {
		return notify.Template{}, notify.Fields{}, err
	}
	f := notify.Sample(org.Name, org.Slug, "https://login.example/.gatehouse/login")
	if org.LoginDomain != "" {
		f.Org.Hosts = []string{org.LoginDomain}
	}
	return notify.Inherit(notify.Template(own), up...), f, nil
}

// sampleMessage is kind rendered in org with own as its template.
func (a *API) sampleMessage(ctx context.Context, org *store.Org, kind string, own store.MessageTemplate) (notify.Message, error) {
	t, f, err := a.sampleTemplate(ctx, org, kind, own)
	if err != nil {
		return notify.Message{}, err
	}
	return notify.Render(notify.Kind(kind), t, f)
}

// inheritedTemplates are kind's templates of the org's ancestors, nearest
// first.
func (a *API) inheritedTemplates(ctx context.Context, org *store.Org, kind string) ([]notify.Template, error) {
	chain, err := a.ancestry(ctx, org.ID)
	if err != nil {
		return nil, err
	}
	var up []notify.Template
	for _, id := range chain[1:] {
		o, err := a.o.Store.GetOrg(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("admin: read org %s: %w", id, err)
		}
		if t, ok := o.Notifications[kind]; ok {
			up = append(up, notify.Template(t))
		}
	}
	return up, nil
}

func (a *API) deleteTemplate(c *call) error {
	kind, err := c.kind()
	if err != nil {
		return err
	}
	if c.org.Declared {
		return c.declared("Org " + c.org.Slug + "'s message templates")
	}
	cur, had := c.org.Notifications[kind]
	if !had {
		return notFound("template of this kind in this org (it uses the default)")
	}
	if _, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		o.Notifications = maps.Clone(o.Notifications)
		delete(o.Notifications, kind)
		o.UpdatedAt = a.o.Now().UTC()
		return o, nil
	}); err != nil {
		return storeErr(err, "org")
	}
	c.record(c.org.ID, "template.delete", kind, "success", change(templateFields(cur), map[string]any{}))
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
