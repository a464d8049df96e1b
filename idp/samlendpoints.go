package idp

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// SAML paths (see idp/saml): on an org's login domain as is, on the
// shared sign-in host followed by /<org slug>.
const (
	samlACSPath      = connection.SAMLACSPath
	samlMetadataPath = connection.SAMLMetadataPath
	samlSLOPath      = connection.SAMLSLOPath
)

// samlOrg is the org a SAML endpoint serves: the login domain's org, or
// the slug in the path on the shared host.
func (h *Handler) samlOrg(r *http.Request) (*store.Org, bool) {
	if o, ok := h.o.Orgs.ByLoginHost(request.Host(r)); ok {
		return o, r.PathValue("org") == ""
	}
	if request.Host(r) != strings.ToLower(h.o.PublicURL.Hostname()) {
		return nil, false
	}
	o, ok := h.o.Orgs.BySlug(r.PathValue("org"))
	if !ok || o.LoginDomain != "" {
		return nil, false
	}
	return o, true
}

// Outcomes of SAML messages posted to an address that is not the org's
// own: the ACS (or single logout) URL configured at the IdP is wrong.
const (
	// outcomeUnknownEndpoint: an address of no org (a mistyped slug or
	// host, the shared host for an org with a login domain).
	outcomeUnknownEndpoint = "unknown_endpoint"
	// outcomeWrongEndpoint: another org's address, or that of an org
	// without a SAML connection of its own.
	outcomeWrongEndpoint = "wrong_endpoint"
)

// strayEndpoint says why r's SAML endpoint belongs to no org, and names
// the org whose host or slug it used, if any (nil otherwise).
func (h *Handler) strayEndpoint(r *http.Request) (*store.Org, string) {
	host, slug := request.Host(r), r.PathValue("org")
	if o, ok := h.o.Orgs.ByLoginHost(host); ok {
		return o, fmt.Sprintf("org %s's login domain %s takes no org slug in the path (got %.64q)", o.Slug, host, slug)
	}
	if host != strings.ToLower(h.o.PublicURL.Hostname()) {
		return nil, fmt.Sprintf("host %.100q is no org's sign-in host", host)
	}
	if slug == "" {
		return nil, "no org slug after the path on the shared sign-in host"
	}
	o, ok := h.o.Orgs.BySlug(slug)
	if !ok {
		return nil, fmt.Sprintf("no org with slug %.64q", slug)
	}
	return o, fmt.Sprintf("org %s signs in on its login domain %s, not on the shared sign-in host", o.Slug, o.LoginDomain)
}

// wrongAddress answers a SAML message posted to an address of no org:
// the person is told so (not that the sign-in expired), the log says
// exactly why, and a response counts as a failed sign-in by its reason.
func (h *Handler) wrongAddress(w http.ResponseWriter, r *http.Request, outcome string, logout bool) {
	org, reason := h.strayEndpoint(r)
	h.refuseAddress(w, r, org, outcome, reason, logout)
}

// wrongOrgAddress answers a SAML response posted to the ACS of an org
// that is not the one it is for.
func (h *Handler) wrongOrgAddress(w http.ResponseWriter, r *http.Request, org *store.Org, reason string) {
	h.refuseAddress(w, r, org, outcomeWrongEndpoint, reason, false)
}

func (h *Handler) refuseAddress(w http.ResponseWriter, r *http.Request, org *store.Org, outcome, reason string, logout bool) {
	ref := h.ref()
	slug := ""
	if org != nil {
		slug = org.Slug
	}
	what, setting := "sign-in", "ACS URL (also called reply URL or single sign-on URL)"
	if logout {
		what, setting = "sign-out", "single logout URL"
	}
	h.o.Logger.Warn("idp: SAML "+what+" posted to a wrong address", "ref", ref, "outcome", outcome, "org", slug, "reason", reason,
		"host", request.Host(r), "path", truncate(r.URL.Path, 200))
	if !logout {
		h.o.Metrics.Logins.WithLabelValues(slug, outcome).Inc()
	}
	status, where := http.StatusNotFound, "an address that belongs to no organization here"
	if outcome == outcomeWrongEndpoint {
		status, where = http.StatusBadRequest, "the address of another organization, or of one that does not sign in with SAML there"
	}
	web.Render(w, status, "error", web.Page{Title: "Wrong sign-in address", Reference: ref,
		Error: "Your identity provider sent this " + what + " to " + where + ", so nothing happened. " +
			"Your administrator should check the " + setting + " configured at the identity provider: it must be exactly the one in your organization's SAML service provider metadata."})
}

// samlMetadata serves the org's SP metadata (entity ID, ACS, certificate).
func (h *Handler) samlMetadata(w http.ResponseWriter, r *http.Request) {
	org, ok := h.samlOrg(r)
	if !ok {
		web.Error(w, http.StatusNotFound, "No SAML service provider here.", "")
		return
	}
	// Not a sign-in: a failure here is logged, never counted as one.
	fail := func(err error) {
		ref := h.ref()
		h.o.Logger.Error("idp: SAML SP metadata unavailable", "ref", ref, "org", org.Slug, "err", err)
		web.Failure(w, err, "This organization's SAML service provider metadata could not be made. Try again in a minute.", ref)
	}
	var b []byte
	owner, err := h.ownerOf(org)
	if err == nil && owner.ID == org.ID {
		cv, cerr := h.o.Connections.Get(r.Context(), owner)
		if cerr != nil {
			h.o.Logger.Warn("idp: the org's connection does not open; serving its SP metadata from its keys alone", "org", org.Slug, "err", cerr)
		}
		if mc, ok := cv.(connection.Metadata); ok && cerr == nil {
			if b, err = mc.Metadata(r.Context()); err != nil {
				fail(err)
				return
			}
		}
	}
	if b == nil && h.o.SetupMetadata != nil {
		// An org that does not sign in with a SAML connection of its own
		// (yet: passwords, OIDC, or its parent's): the metadata its SAML
		// connection will have, for its admin to set the IdP up before
		// switching (the portal's SSO setup).
		if b, err = h.o.SetupMetadata(r.Context(), h.o.Connections.depsOf(org)); err != nil {
			fail(err)
			return
		}
	}
	if b == nil {
		web.Error(w, http.StatusNotFound, "This organization does not sign in with SAML here.", "")
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Write(b)
}

// maxSAMLForm bounds the posted SAMLResponse form (an encrypted, signed
// response with many attributes stays well under it).
const maxSAMLForm = 256 << 10
