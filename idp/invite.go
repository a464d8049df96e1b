package idp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/idp/password"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/web"
	"github.com/gatehouse/gatehouse/store"
)

// InvitePath is where an invitation's link leads.
const InvitePath = "/.gatehouse/invite"

// invitePrefix starts every invitation secret, so that one pasted where
// it does not belong (a log, a ticket) is recognizable and scannable.
const invitePrefix = "ghinv_"

// NewInviteSecret makes an invitation's secret (256 random bits) and
// the hash the store keeps of it.
func NewInviteSecret() (secret, hash string) {
	secret = invitePrefix + rand.Text() + rand.Text()
	return secret, InviteHash(secret)
}

// InviteHash is the hex SHA-256 of an invitation secret: the secret has
// 256 bits, so a fast hash is enough, and the store never holds a link
// that works.
func InviteHash(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// validInviteSecret: the prefix and two rand.Text()s (base32, 26 each).
func validInviteSecret(s string) bool {
	rest, ok := strings.CutPrefix(s, invitePrefix)
	if !ok || len(rest) != 52 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		if c := rest[i]; !(c >= 'A' && c <= 'Z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// inviteHost is the host an org's invitations open on: where its people
// sign in (an IdP's callback is registered for its owner's host only).
func (h *Handler) inviteHost(org *store.Org) (string, error) {
	owner, err := h.ownerOf(org)
	if err != nil {
		return "", err
	}
	host := owner.LoginDomain
	if owner.Connection.Type == password.Type && org.LoginDomain != "" {
		host = org.LoginDomain
	}
	if host == "" {
		host = h.o.PublicURL.Hostname()
	}
	return strings.ToLower(host), nil
}

// InviteURL is the link of an invitation to org with secret.
func (h *Handler) InviteURL(org *store.Org, secret string) (string, error) {
	host, err := h.inviteHost(org)
	if err != nil {
		return "", err
	}
	u := *h.o.PublicURL
	u.Host = withPort(host, h.o.PublicURL.Port())
	u.Path, u.RawQuery = InvitePath, url.Values{"token": {secret}}.Encode()
	return u.String(), nil
}

// invitation is an invitation opened from its link, with its org.
type invitation struct {
	store.Invitation
	secret string
	org    *store.Org
	owner  *store.Org
}

// openInvite finds the invitation of the request's token; it has
// answered the request when ok is false.
func (h *Handler) openInvite(w http.ResponseWriter, r *http.Request) (inv invitation, ok bool) {
	inv.secret = r.FormValue("token")
	if !validInviteSecret(inv.secret) {
		h.inviteRefused(w, r, nil, http.StatusNotFound, "This invitation link is not complete. Open the link from your invitation again, or copy all of it.", "malformed token")
		return inv, false
	}
	var err error
	inv.Invitation, err = h.o.Store.GetInvitationByHash(r.Context(), InviteHash(inv.secret))
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.inviteRefused(w, r, nil, http.StatusGone, "This invitation is no longer valid: it was accepted, withdrawn or replaced by a newer one. Ask your administrator to invite you again.", "unknown, used or revoked token")
		return inv, false
	case err != nil:
		h.signInError(w, r, nil, "invitation", connection.Errorf(connection.KindInternal, "idp: read invitation: %w", err))
		return inv, false
	}
	if o, found := h.o.Orgs.ByID(inv.OrgID); found {
		inv.org = o
	} else {
		h.inviteRefused(w, r, nil, http.StatusGone, "The organization of this invitation no longer exists.", "org "+inv.OrgID+" gone")
		return inv, false
	}
	if !h.o.Now().Before(inv.ExpiresAt) {
		h.inviteRefused(w, r, inv.org, http.StatusGone, "This invitation expired on "+inv.ExpiresAt.UTC().Format("2 January 2006")+". Ask your administrator to send it again.", "expired invitation "+inv.ID)
		return inv, false
	}
	if inv.owner, err = h.ownerOf(inv.org); err != nil {
		h.signInError(w, r, inv.org, "invitation", err)
		return inv, false
	}
	// Only on the host the link names: the org's sign-in, with its
	// cookies and its IdP's callback.
	if host, err := h.inviteHost(inv.org); err != nil || host != request.Host(r) {
		h.inviteRefused(w, r, nil, http.StatusNotFound, "This invitation does not open at this address. Use the link from your invitation as it is.", "invitation "+inv.ID+" opened on host "+request.Host(r))
		return inv, false
	}
	return inv, true
}

// inviteRefused shows why an invitation cannot be used and logs it.
func (h *Handler) inviteRefused(w http.ResponseWriter, r *http.Request, org *store.Org, status int, msg, reason string) {
	ref := h.ref()
	h.o.Logger.Warn("idp: invitation refused", "ref", ref, "reason", reason, "host", request.Host(r), "client", h.o.ClientIP.Addr(r))
	p := web.Page{Title: "Invitation", Error: msg, Reference: ref}
	if org != nil {
		p.Brand, p.OrgName = h.brand(org), org.Name
	}
	web.Render(w, status, "error", p)
}

func (h *Handler) invitePage(w http.ResponseWriter, r *http.Request, inv invitation, status int, msg string) {
	p := web.Page{Title: "Join " + inv.org.Name, OrgName: inv.org.Name, Brand: h.brand(inv.org), CSRF: h.csrfToken(w, r),
		Action: InvitePath, Email: inv.Email, Name: inv.Name, Invite: inv.secret, Error: msg, Step: "federated"}
	if inv.owner.Connection.Type == password.Type {
		p.Step = "password"
	}
	if n := r.PostFormValue("name"); n != "" {
		p.Name = n
	}
	web.Render(w, status, "invite", p)
}

func (h *Handler) inviteShow(w http.ResponseWriter, r *http.Request) {
	inv, ok := h.openInvite(w, r)
	if !ok {
		return
	}
	h.invitePage(w, r, inv, http.StatusOK, "")
}

func (h *Handler) inviteSubmit(w http.ResponseWriter, r *http.Request) {
	if !h.readForm(w, r, "Open your invitation link again.") {
		return
	}
	inv, ok := h.openInvite(w, r)
	if !ok {
		return
	}
	if inv.owner.Connection.Type != password.Type {
		h.inviteFederated(w, r, inv)
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	pw := r.PostFormValue("password")
	var msg string
	switch {
	case config.TextProblem(name, 200) != "":
		msg = "Your name " + config.TextProblem(name, 200) + "."
	case password.Problem(pw) != "":
		msg = "Your password " + password.Problem(pw) + "."
	case pw != r.PostFormValue("password2"):
		msg = "The two passwords differ. Type the same password twice."
	}
	if msg != "" {
		h.invitePage(w, r, inv, http.StatusUnprocessableEntity, msg)
		return
	}
	hash, err := password.Hash(pw)
	if err != nil {
		h.signInError(w, r, inv.org, "invitation", connection.Errorf(connection.KindInternal, "idp: %w", err))
		return
	}
	if name == "" {
		name = inv.Name
	}
	taken, ok := h.takeInvite(w, r, inv, inv.Email)
	if !ok {
		return
	}
	u, err := h.joinInvited(r.Context(), taken, inv.org, name, hash)
	if err != nil {
		h.restoreInvite(r.Context(), taken)
		h.acceptFailed(w, r, inv.org, taken, err)
		return
	}
	// The org's second-factor rule holds for a person who just joined too.
	h.secondFactor(w, r, inv.org, inv.owner, u.Email, connection.Identity{UserID: u.ID, Email: u.Email, Name: u.Name, EmailVerified: true}, "", "")
}

// inviteFederated sends the person to the org's IdP; the invitation is
// taken when they come back as its address (finishFlow).
func (h *Handler) inviteFederated(w http.ResponseWriter, r *http.Request, inv invitation) {
	cv, err := h.o.Connections.Get(r.Context(), inv.owner)
	if err != nil {
		h.signInError(w, r, inv.org, "connection", err)
		return
	}
	c, ok := cv.(connection.Redirect)
	if !ok {
		h.signInError(w, r, inv.org, "connection", connection.Errorf(connection.KindInternal, "idp: connection %s has no redirect sign-in", inv.owner.Connection.Type))
		return
	}
	h.beginRedirect(w, r, inv.org, inv.owner, c, "", inv.Email, inv.Hash)
}

// takeInvite spends the invitation for a person who proved email; it has
// answered the request when ok is false.
func (h *Handler) takeInvite(w http.ResponseWriter, r *http.Request, inv invitation, email string) (store.Invitation, bool) {
	if !strings.EqualFold(strings.TrimSpace(email), inv.Email) {
		h.inviteRefused(w, r, inv.org, http.StatusForbidden, "This invitation is for "+inv.Email+", but your identity provider signed you in as "+email+". Sign in there with the invited account, or ask your administrator to invite this one.", "invitation "+inv.ID+" for "+inv.Email+" used by "+email)
		return store.Invitation{}, false
	}
	taken, err := h.o.Store.TakeInvitation(r.Context(), inv.Hash, h.o.Now())
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.inviteRefused(w, r, inv.org, http.StatusGone, "This invitation was used, withdrawn or expired a moment ago. Ask your administrator to invite you again.", "invitation "+inv.ID+" gone before it was taken")
		return taken, false
	case err != nil:
		h.signInError(w, r, inv.org, "invitation", connection.Errorf(connection.KindInternal, "idp: take invitation: %w", err))
		return taken, false
	}
	return taken, true
}

// restoreInvite puts back an invitation whose acceptance failed, so a
// fault on our side loses nothing; the person can try again.
func (h *Handler) restoreInvite(ctx context.Context, inv store.Invitation) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.o.Store.CreateInvitation(ctx, inv); err != nil {
		h.o.Logger.Error("idp: could not restore an invitation after a failed acceptance", "invitation", inv.ID, "org", inv.OrgID, "err", err)
	}
}

func (h *Handler) acceptFailed(w http.ResponseWriter, r *http.Request, org *store.Org, inv store.Invitation, err error) {
	h.audit(r.Context(), org.ID, inv.Email, "invitation.accept", "failure", map[string]string{"invitation": inv.ID, "reason": err.Error(), "client": h.o.ClientIP.Addr(r)})
	var refusal *inviteRefusal
	if errors.As(err, &refusal) {
		h.inviteRefused(w, r, org, http.StatusForbidden, refusal.msg, "invitation "+inv.ID+": "+refusal.reason)
		return
	}
	h.signInError(w, r, org, "invitation", err)
}

// inviteRefusal is an acceptance the person cannot complete, with what
// to tell them.
type inviteRefusal struct{ msg, reason string }

func (e *inviteRefusal) Error() string { return "invitation refused: " + e.reason }

// joinInvited makes the invited person (new or existing) a member of org
// with the invited roles and, for a password org, pwHash.
func (h *Handler) joinInvited(ctx context.Context, inv store.Invitation, org *store.Org, name, pwHash string) (store.User, error) {
	now := h.o.Now()
	u, created, err := h.invitedUser(ctx, inv, name, now)
	if err != nil {
		return u, err
	}
	m := store.Membership{UserID: u.ID, OrgID: org.ID, Roles: inv.Roles, PasswordHash: pwHash, CreatedAt: now, UpdatedAt: now}
	err = h.o.Store.CreateMembership(ctx, m)
	if err != nil && created {
		// Leave no person in no org behind.
		if derr := h.o.Store.DeleteUser(context.WithoutCancel(ctx), u.ID); derr != nil {
			h.o.Logger.Error("idp: could not remove a user left without a membership", "user", u.ID, "err", derr)
		}
	}
	switch {
	case errors.Is(err, store.ErrAlreadyExists):
		return u, &inviteRefusal{"You are a member of " + org.Name + " already. Sign in with your password, or ask your administrator to reset it.", "already a member"}
	case err != nil:
		return u, connection.Errorf(connection.KindInternal, "idp: create membership: %w", err)
	}
	h.audit(ctx, org.ID, u.ID, "invitation.accept", "success", map[string]string{"invitation": inv.ID, "email": inv.Email, "roles": strings.Join(inv.Roles, ",")})
	return u, nil
}

// invitedUser finds or creates the invited person. An existing person
// joins only if the inviter's rights reach every org they are in: an
// org admin cannot pull another customer's person (or a platform admin)
// into their org and set their password there.
func (h *Handler) invitedUser(ctx context.Context, inv store.Invitation, name string, now time.Time) (store.User, bool, error) {
	for range provisionRetries {
		u, err := h.o.Store.GetUserByEmail(ctx, inv.Email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			u = store.User{ID: newUserID(), Email: inv.Email, Name: name, CreatedAt: now, UpdatedAt: now}
			if err := h.o.Store.CreateUser(ctx, u); errors.Is(err, store.ErrAlreadyExists) {
				continue
			} else if err != nil {
				return u, false, connection.Errorf(connection.KindInternal, "idp: create user: %w", err)
			}
			return u, true, nil
		case err != nil:
			return u, false, connection.Errorf(connection.KindInternal, "idp: read user: %w", err)
		case u.Disabled:
			return u, false, &inviteRefusal{"Your account is disabled. Ask your administrator.", "user " + u.ID + " disabled"}
		}
		if inv.Scope != "" {
			if err := h.withinScope(ctx, u, inv.Scope); err != nil {
				return u, false, err
			}
		}
		return u, false, nil
	}
	return store.User{}, false, connection.Errorf(connection.KindInternal, "idp: %s: gave up after %d concurrent sign-ups", inv.Email, provisionRetries)
}

// withinScope refuses a person who is a platform admin or a member of an
// org outside scope and its sub-orgs.
func (h *Handler) withinScope(ctx context.Context, u store.User, scope string) error {
	refused := &inviteRefusal{"Your account belongs to another organization too, so only the service's own administrators can add it here. Ask your administrator to contact them.", ""}
	if u.PlatformAdmin {
		refused.reason = "user " + u.ID + " is a platform admin; the invitation is an org admin's"
		return refused
	}
	ms, err := h.o.Store.ListMembershipsByUser(ctx, u.ID)
	if err != nil {
		return connection.Errorf(connection.KindInternal, "idp: read memberships: %w", err)
	}
	for _, m := range ms {
		o, ok := h.o.Orgs.ByID(m.OrgID)
		if !ok || !slices.Contains(h.ancestry(o), scope) {
			refused.reason = fmt.Sprintf("user %s is a member of org %s, outside the inviter's org %s", u.ID, m.OrgID, scope)
			return refused
		}
	}
	return nil
}

// ancestry is org's ID and its ancestors' (nearest first).
func (h *Handler) ancestry(org *store.Org) []string {
	var ids []string
	_, _ = h.o.Orgs.Nearest(org, maxOrgDepth-1, func(o *store.Org) bool {
		ids = append(ids, o.ID)
		return false
	})
	return ids
}

// takeFlowInvite spends the invitation a federated sign-in set out to
// accept, once the IdP has said who the person is.
func (h *Handler) takeFlowInvite(w http.ResponseWriter, r *http.Request, org, owner *store.Org, hash, email string) (store.Invitation, bool) {
	si, err := h.o.Store.GetInvitationByHash(r.Context(), hash)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.inviteRefused(w, r, org, http.StatusGone, "This invitation was used, withdrawn or expired while you signed in. Ask your administrator to invite you again.", "invitation gone during the sign-in")
		return si, false
	case err != nil:
		h.signInError(w, r, org, "invitation", connection.Errorf(connection.KindInternal, "idp: read invitation: %w", err))
		return si, false
	case si.OrgID != org.ID:
		h.signInError(w, r, org, "invitation", connection.Errorf(connection.KindInternal, "idp: the flow's invitation %s is org %s's, the flow org %s's", si.ID, si.OrgID, org.ID))
		return si, false
	}
	return h.takeInvite(w, r, invitation{Invitation: si, org: org, owner: owner}, email)
}
