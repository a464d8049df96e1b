package idp

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

const (
	handoffKind = store.EphemeralPrefix + "handoff"
	handoffTTL  = 60 * time.Second
)

// stateParam is the browser's hand-off state carried through sign-in.
func stateParam(r *http.Request) string {
	if s := r.FormValue("state"); session.ValidState(s) {
		return s
	}
	return ""
}

type ticket struct {
	SID   string `json:"sid"`
	Host  string `json:"host"`
	RD    string `json:"rd"`
	State string `json:"state,omitempty"`
}

// handoffTarget reports whether a session of org orgID may be handed to
// host: route hosts and the public host (the operator's), and the org's
// own login domain.
func (h *Handler) handoffTarget(host, orgID string) bool {
	if host == strings.ToLower(h.o.PublicURL.Hostname()) || h.o.RouteHost(host) {
		return true
	}
	o, ok := h.o.Orgs.ByID(orgID)
	return ok && o.LoginDomain != "" && strings.EqualFold(o.LoginDomain, host)
}

// complete sends the browser on after sign-in. A target on another host
// gets its own cookie through a single-use ticket bound to that host and
// to the browser's state cookie there.
func (h *Handler) complete(w http.ResponseWriter, r *http.Request, sid, orgID, rd, state string) {
	if rd == "" {
		web.Render(w, http.StatusOK, "error", web.Page{Title: "You are signed in", Notice: "You can close this page or go back to your application."})
		return
	}
	u, err := url.Parse(rd)
	if err != nil || u.Host == "" || u.Hostname() == request.Host(r) {
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return
	}
	if !h.handoffTarget(u.Hostname(), orgID) {
		ref := h.ref()
		h.o.Logger.Warn("idp: hand-off to another org's domain refused", "ref", ref, "target", u.Hostname(), "org", orgID)
		web.Error(w, http.StatusForbidden, "You are signed in to a different organization than the one this address belongs to. Sign out first to use another organization's sign-in.", ref)
		return
	}
	if state == "" {
		// No browser state to bind a hand-off ticket to (a sign-in not
		// started by the proxy, like an IdP-initiated one): send the
		// browser on; the target's proxy brings it back here with a state
		// and this session hands over then.
		http.Redirect(w, r, rd, http.StatusSeeOther)
		return
	}
	id := token.RandomID()
	b, _ := json.Marshal(ticket{SID: sid, Host: u.Hostname(), RD: rd, State: state})
	if err := h.o.Store.PutOnce(r.Context(), handoffKind, id, b, h.o.Now().Add(handoffTTL)); err != nil {
		ref := h.ref()
		h.o.Logger.Error("idp: store hand-off ticket", "ref", ref, "err", err)
		web.Failure(w, err, "Sign-in failed on our side. Try again in a minute.", ref)
		return
	}
	next := url.URL{Scheme: u.Scheme, Host: u.Host, Path: HandoffPath, RawQuery: url.Values{"ticket": {id}}.Encode()}
	http.Redirect(w, r, next.String(), http.StatusSeeOther)
}

func (h *Handler) handoff(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("ticket")
	again := h.LoginURL("", "", "")
	fail := func(reason string) {
		ref := h.ref()
		h.o.Logger.Warn("idp: hand-off refused", "ref", ref, "reason", reason, "host", request.Host(r))
		web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Sign-in link expired",
			Error: "This sign-in link has expired or was already used. Open the application again to sign in.", Reference: ref, Back: again})
	}
	if id == "" || len(id) > 64 {
		fail("missing or malformed ticket")
		return
	}
	b, err := h.o.Store.TakeOnce(r.Context(), handoffKind, id)
	if h.storeDown(w, err, "hand-off") {
		return
	}
	if err != nil {
		fail("unknown, used or expired ticket")
		return
	}
	var t ticket
	if err := json.Unmarshal(b, &t); err != nil {
		fail("corrupt ticket")
		return
	}
	if t.Host != request.Host(r) {
		fail("ticket for host " + t.Host)
		return
	}
	e, err := h.o.Sessions.Lookup(r.Context(), t.SID)
	if h.storeDown(w, err, "hand-off session") {
		return
	}
	if err != nil {
		fail("session ended: " + err.Error())
		return
	}
	if !h.handoffTarget(t.Host, e.Identity().OrgID) {
		fail("host belongs to another org")
		return
	}
	// The ticket must come back to the browser that started the sign-in.
	// Otherwise (a link from elsewhere, a planted or leaked ticket) ask the
	// person to continue, which starts a fresh, bound sign-in.
	if !session.TakeState(w, r, t.State) {
		ref := h.ref()
		h.o.Logger.Warn("idp: hand-off without matching state", "ref", ref, "host", t.Host, "has_state", t.State != "")
		web.Render(w, http.StatusBadRequest, "error", web.Page{Title: "Continue to sign in",
			Error: "This sign-in was not started in this browser, so it was not used.", Reference: ref, Back: t.RD, BackText: "Continue"})
		return
	}
	id2 := e.Identity()
	if err := h.o.Sessions.SetCookie(w, r, store.Session{ID: t.SID, ExpiresAt: id2.ExpiresAt}); err != nil {
		fail(err.Error())
		return
	}
	http.Redirect(w, r, t.RD, http.StatusSeeOther)
}
