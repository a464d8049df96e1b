package idp

import (
	"errors"
	"fmt"

	"github.com/gatehouse/gatehouse/idp/notify"
	"github.com/gatehouse/gatehouse/store"
)

// Message renders the kind message of org for f: the org's templates,
// each part inherited from its nearest ancestor that has one, then
// Gatehouse's defaults. f.Org is filled in from the org and its branding
// (links on the org's own login domain), so a message always names the
// org it is sent for.
func (h *Handler) Message(org *store.Org, kind notify.Kind, f notify.Fields) (notify.Message, error) {
	own := notify.Template(org.Notifications[string(kind)])
	// Every ancestor's, nearest first: at most maxOrgDepth of them, the
	// walk ending at the last (no parent of it looked up). Only a missing
	// parent is an error; a longer chain, or a cycle, is cut.
	var up []notify.Template
	_, err := h.o.Orgs.Nearest(org, maxOrgDepth, func(o *store.Org) bool {
		if o != org {
			up = append(up, notify.Template(o.Notifications[string(kind)]))
		}
		return len(up) == maxOrgDepth
	})
	if missing := (*MissingParentError)(nil); errors.As(err, &missing) {
		return notify.Message{}, fmt.Errorf("notify: org %s: parent %s not found", org.Slug, missing.ID)
	}
	base := *h.o.PublicURL
	base.Path, base.RawQuery, base.Fragment = "", "", ""
	if org.LoginDomain != "" {
		base.Host = withPort(org.LoginDomain, h.o.PublicURL.Port())
	}
	f.Org.LoginURL = h.orgSignInURL(org)
	f.Org.Name, f.Org.Slug, f.Org.LogoURL, f.Org.Support = org.Name, org.Slug, "", ""
	// The org's own hosts: the HTML part may link and point images only
	// there (and to f.Link).
	f.Org.Hosts = []string{h.o.PublicURL.Hostname()}
	if org.LoginDomain != "" {
		f.Org.Hosts = append(f.Org.Hosts, org.LoginDomain)
	}
	if b := h.brand(org); b != nil {
		if b.LogoURL != "" {
			f.Org.LogoURL = base.String() + b.LogoURL
		}
		f.Org.Support = b.Footer
	}
	m, err := notify.Render(kind, notify.Inherit(own, up...), f)
	if err != nil {
		return notify.Message{}, fmt.Errorf("org %s: %w", org.Slug, err)
	}
	return m, nil
}

// SampleMessage is Message with sample people, links and codes: what an
// operator or an org admin previews.
func (h *Handler) SampleMessage(org *store.Org, kind notify.Kind) (notify.Message, error) {
	f := notify.Sample(org.Name, org.Slug, h.orgSignInURL(org))
	f.Expires = notify.SampleExpiry(kind)
	return h.Message(org, kind, f)
}

// orgSignInURL is the org's sign-in page: on its login domain, or on the
// shared host with the org named.
func (h *Handler) orgSignInURL(org *store.Org) string {
	if org.LoginDomain != "" {
		return h.loginURL(org.LoginDomain)
	}
	return h.loginURL("", "org", org.Slug)
}
