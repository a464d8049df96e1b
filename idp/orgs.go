package idp

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// OrgsPath lists the signed-in person's organizations and switches
// between those their sign-in already proves them to.
const OrgsPath = "/.gatehouse/orgs"

// choices are the person's orgs. An org is switchable when it signs in
// through the same federated connection as the session's org (a parent
// and its sub-orgs, say): the IdP's sign-in proves the person to both. A
// password, or another IdP, needs its own sign-in.
func (h *Handler) choices(ctx context.Context, id *session.Identity) ([]web.OrgChoice, map[string]*store.Org, error) {
	ms, err := h.o.Store.ListMembershipsByUser(ctx, id.UserID)
	if err != nil {
		return nil, nil, err
	}
	var out []web.OrgChoice
	switchable := map[string]*store.Org{}
	for _, m := range ms {
		o, ok := h.o.Orgs.ByID(m.OrgID)
		if !ok {
			continue
		}
		c := web.OrgChoice{Slug: o.Slug, Name: o.Name, Current: o.ID == id.OrgID}
		// The same connection, unchanged since this sign-in, and a
		// membership not linked to another IdP identity.
		if owner, err := h.ownerOf(o); err == nil && !c.Current && !m.Disabled && id.Federation != "" && federation(owner) == id.Federation &&
			(m.Subject == "" || m.Subject == id.Subject) {
			c.Switchable = true
			switchable[o.Slug] = o
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b web.OrgChoice) int { return strings.Compare(a.Name, b.Name) })
	return out, switchable, nil
}

// sessionIdentity is the request's signed-in identity, or nil.
func (h *Handler) sessionIdentity(r *http.Request) (string, *session.Identity) {
	sid, err := h.o.Sessions.SessionID(r)
	if err != nil {
		return "", nil
	}
	e, err := h.o.Sessions.Lookup(r.Context(), sid)
	if err != nil {
		return "", nil
	}
	return sid, e.Identity()
}

func (h *Handler) orgsPage(w http.ResponseWriter, r *http.Request) {
	rd, ok := h.redirectParam(w, r)
	if !ok {
		return
	}
	_, id := h.sessionIdentity(r)
	if id == nil {
		http.Redirect(w, r, h.LoginURL("", rd, ""), http.StatusSeeOther)
		return
	}
	list, _, err := h.choices(r.Context(), id)
	if err != nil {
		web.Failure(w, err, "Your organizations could not be listed. Try again in a minute.", h.logRef("idp: list orgs", err))
		return
	}
	web.Render(w, http.StatusOK, "orgs", web.Page{Title: "Your organizations", Orgs: list, CSRF: h.csrfToken(w, r), Redirect: rd, Email: id.Email})
}

// orgsSwitch starts a session for another of the person's orgs, without
// signing in again, and ends the current one.
func (h *Handler) orgsSwitch(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormSize)
	if err := r.ParseForm(); err != nil || !h.checkCSRF(r) {
		web.Error(w, http.StatusForbidden, "This form expired. Reload the page and try again.", h.logRef("idp: org switch without valid csrf token", nil))
		return
	}
	rd, ok := h.redirectParam(w, r)
	if !ok {
		return
	}
	sid, id := h.sessionIdentity(r)
	if id == nil {
		http.Redirect(w, r, h.LoginURL("", rd, ""), http.StatusSeeOther)
		return
	}
	_, switchable, err := h.choices(r.Context(), id)
	if err != nil {
		web.Failure(w, err, "Your organizations could not be listed. Try again in a minute.", h.logRef("idp: list orgs", err))
		return
	}
	target, ok := switchable[r.PostFormValue("org")]
	if !ok {
		ref := h.logRef("idp: org switch refused: not a switchable org of this person", nil)
		web.Error(w, http.StatusForbidden, "You cannot switch to that organization from this sign-in. Sign out, then sign in with that organization's sign-in.", ref)
		return
	}
	ctx := r.Context()
	if u, err := h.o.Store.GetUser(ctx, id.UserID); err != nil || u.Disabled {
		web.Error(w, http.StatusForbidden, "Your account cannot switch organization. Ask your administrator.", h.logRef("idp: org switch refused: user disabled or unreadable", err))
		return
	}
	// The sign-in's proof goes along as it was: the target org's rules
	// judge it (a second factor it requires and this sign-in lacks, or of
	// a kind it does not count, is refused at the next request).
	s, err := h.o.Sessions.CreateWith(ctx, store.Session{UserID: id.UserID, OrgID: target.ID, Connection: id.Connection, MFA: id.MFA,
		AMR: id.AMR, MFAAt: id.MFAAt, LogoutHint: id.LogoutHint, Federation: id.Federation, Subject: id.Subject,
		ClientAddr: h.o.ClientIP.Addr(r), UserAgent: r.UserAgent()})
	if err == nil {
		err = h.o.Sessions.SetCookie(w, r, s)
	}
	if err == nil {
		err = h.o.Sessions.Revoke(ctx, sid)
	}
	if err != nil {
		web.Failure(w, err, "Switching organization failed on our side. Try again.", h.logRef("idp: org switch", err))
		return
	}
	h.o.Logger.Info("idp: switched org", "user", id.UserID, "from", id.OrgSlug, "to", target.Slug)
	h.audit(ctx, target.ID, id.UserID, "org.switch", "success", map[string]string{"from": id.OrgID})
	if rd == "" {
		rd = "/"
	}
	http.Redirect(w, r, rd, http.StatusSeeOther)
}
