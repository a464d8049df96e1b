package admin

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/outbox"
	"github.com/gatehouse/gatehouse/internal/sms"
	"github.com/gatehouse/gatehouse/store"
)

// Invitation lifetimes.
const (
	DefaultInvitationLifetime = 7 * 24 * time.Hour
	MaxInvitationLifetime     = 30 * 24 * time.Hour
)

// InvitationView is an invitation as listed (never its link).
type InvitationView struct {
	ID        string    `json:"id"`
	OrgID     string    `json:"org_id"`
	Email     string    `json:"email"`
	Name      string    `json:"name,omitempty"`
	Phone     string    `json:"phone,omitempty"`
	Roles     []string  `json:"roles"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	SentAt    time.Time `json:"sent_at"`
	ExpiresAt time.Time `json:"expires_at"`
	// Status is "pending" or "expired" (an accepted or revoked one is
	// gone).
	Status string `json:"status"`
}

// NewInvitationView is an invitation just made or resent, with its link
// (shown this once: only its hash is kept).
type NewInvitationView struct {
	InvitationView
	URL string `json:"url"`
	// Delivery is what became of its email: queued, not_configured,
	// sending_limit or failed; TextDelivery the same of its text.
	Delivery     string `json:"delivery"`
	TextDelivery string `json:"text_delivery,omitempty"`
}

type invitationList struct {
	Items []InvitationView `json:"items"`
}

type invitationCreate struct {
	Email string   `json:"email"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Phone (E.164) also gets the invitation as a text.
	Phone string `json:"phone"`
	// ExpiresIn is a Go duration ("72h"); default 7 days, at most 30.
	ExpiresIn string `json:"expires_in"`
}

func (a *API) invitationView(inv store.Invitation) InvitationView {
	v := InvitationView{ID: inv.ID, OrgID: inv.OrgID, Email: inv.Email, Name: inv.Name, Phone: inv.Phone, Roles: inv.Roles, CreatedBy: inv.CreatedBy,
		CreatedAt: inv.CreatedAt, SentAt: inv.SentAt, ExpiresAt: inv.ExpiresAt, Status: "pending"}
	if v.Roles == nil {
		v.Roles = []string{}
	}
	if !a.o.Now().Before(inv.ExpiresAt) {
		v.Status = "expired"
	}
	return v
}

// email queues the invitation's message (the org's invitation template)
// when the deployment sends email; the answer has the link either way.
// A failure to queue is logged: the admin still has the link.
func (a *API) email(c *call, inv store.Invitation, link string) string {
	return a.deliver(c, inv, link, "email", a.o.EmailInvitation)
}

// send sends the invitation by email, and by text if it has a phone.
func (a *API) send(c *call, view *NewInvitationView, inv store.Invitation) {
	view.Delivery = a.email(c, inv, view.URL)
	if inv.Phone != "" {
		view.TextDelivery = a.deliver(c, inv, view.URL, "text", a.o.TextInvitation)
	}
}

// deliver queues the invitation's message on one channel.
func (a *API) deliver(c *call, inv store.Invitation, link, channel string, queue func(context.Context, store.Org, store.Invitation, string) error) string {
	if queue == nil {
		return "not_configured"
	}
	err := queue(c.ctx(), *c.org, inv, link)
	switch {
	case err == nil:
		return "queued"
	case errors.Is(err, outbox.ErrLimit):
		a.o.Logger.Warn("admin: invitation not sent: the org's sending limit; give the person the link", "channel", channel, "org", c.org.Slug, "invitation", inv.ID, "err", err)
		return "sending_limit"
	}
	a.o.Logger.Error("admin: invitation not queued; give the person the link", "channel", channel, "invitation", inv.ID, "err", err)
	return "failed"
}

// withLink is inv's view with the link of secret.
func (c *call) withLink(inv store.Invitation, secret string) (NewInvitationView, error) {
	if c.a.o.InviteURL == nil {
		return NewInvitationView{}, errors.New("admin: invitations are not wired (no InviteURL)")
	}
	u, err := c.a.o.InviteURL(c.org, secret)
	if err != nil {
		return NewInvitationView{}, fmt.Errorf("admin: invitation link: %w", err)
	}
	return NewInvitationView{InvitationView: c.a.invitationView(inv), URL: u}, nil
}

// createInvitation invites a person to the org with roles. The same
// rules as adding them directly hold, checked again when they accept.
func (a *API) createInvitation(c *call) error {
	var in invitationCreate
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	if err := c.newMember(&in.Email, in.Name, in.Roles, &errs); err != nil {
		return err
	}
	life := DefaultInvitationLifetime
	if in.ExpiresIn != "" {
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d < time.Hour || d > MaxInvitationLifetime {
			errs.add("/expires_in", "must be a duration from 1h to %s, such as 72h", MaxInvitationLifetime)
		}
		life = d
	}
	if in.Phone != "" {
		switch {
		case !sms.ValidNumber(in.Phone):
			errs.add("/phone", "must be a mobile number in E.164 form, such as +14155550123")
		case a.o.TextInvitation == nil:
			errs.add("/phone", "this deployment sends no text messages (no sms in its configuration)")
		}
	}
	if err := errs.err(); err != nil {
		return err
	}
	if err := c.mayGrant(in.Roles); err != nil {
		return err
	}
	if len(in.Roles) == 0 {
		in.Roles = []string{"member"}
	}
	u, err := a.o.Store.GetUserByEmail(c.ctx(), in.Email)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return fmt.Errorf("admin: read user: %w", err)
	default:
		if err := c.mayJoin(u); err != nil {
			return err
		}
		if _, err := a.o.Store.GetMembership(c.ctx(), u.ID, c.org.ID); err == nil {
			return conflict("exists", in.Email+" is a member of this org already.")
		} else if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("admin: read membership: %w", err)
		}
	}
	scope := c.p.OrgID
	if c.p.Platform {
		scope = ""
	}
	secret, hash := idp.NewInviteSecret()
	now := a.o.Now().UTC()
	inv := store.Invitation{ID: "inv_" + strings.ToLower(rand.Text()), OrgID: c.org.ID, Email: in.Email, Name: in.Name, Roles: in.Roles, Phone: in.Phone,
		Hash: hash, CreatedBy: c.p.UserID, Scope: scope, CreatedAt: now, SentAt: now, ExpiresAt: now.Add(life)}
	view, err := c.withLink(inv, secret)
	if err != nil {
		return err
	}
	switch err := a.o.Store.CreateInvitation(c.ctx(), inv); {
	case errors.Is(err, store.ErrAlreadyExists):
		return conflict("pending", "An invitation for "+in.Email+" is pending already: resend it, or revoke it first.")
	case errors.Is(err, store.ErrNotFound):
		return notFound("org") // the org, or the caller, deleted meanwhile
	case err != nil:
		return fmt.Errorf("admin: create invitation: %w", err)
	}
	details := map[string]string{"email": inv.Email, "roles": strings.Join(inv.Roles, ","), "expires_at": inv.ExpiresAt.Format(time.RFC3339)}
	if inv.Phone != "" {
		details["phone"] = inv.Phone
	}
	c.record(c.org.ID, "invitation.create", inv.ID, "success", details)
	a.send(c, &view, inv)
	c.w.Header().Set("Location", Prefix+"/orgs/"+c.org.ID+"/invitations/"+inv.ID)
	return c.reply(http.StatusCreated, view)
}

func (a *API) listInvitations(c *call) error {
	invs, err := a.o.Store.ListInvitations(c.ctx(), c.org.ID)
	if err != nil {
		return fmt.Errorf("admin: list invitations: %w", err)
	}
	out := invitationList{Items: make([]InvitationView, 0, len(invs))}
	for _, inv := range invs {
		out.Items = append(out.Items, a.invitationView(inv))
	}
	return c.reply(http.StatusOK, out)
}

// invitation reads the path's invitation of the path's org.
func (c *call) invitation() (store.Invitation, error) {
	inv, err := c.a.o.Store.GetInvitation(c.ctx(), c.r.PathValue("invitation"))
	if err := storeErr(err, "invitation"); err != nil {
		return inv, err
	}
	if inv.OrgID != c.org.ID {
		return inv, notFound("invitation")
	}
	return inv, nil
}

func (a *API) getInvitation(c *call) error {
	inv, err := c.invitation()
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, a.invitationView(inv))
}

// resendInvitation makes the invitation a new link (the old one stops
// working) with a new expiry as long as the first.
func (a *API) resendInvitation(c *call) error {
	inv, err := c.invitation()
	if err != nil {
		return err
	}
	if ok, err := c.mayResend(inv); err != nil {
		return err
	} else if !ok {
		// Made with rights wider than the caller's (a parent org's admin,
		// a platform admin): the new link would bring in people the
		// caller may not.
		return forbidden("An admin of a parent organization, or a platform admin, made this invitation: they can resend it; you can revoke it and invite again.")
	}
	secret, hash := idp.NewInviteSecret()
	now := a.o.Now().UTC()
	inv, err = a.o.Store.UpdateInvitation(c.ctx(), inv.ID, func(i store.Invitation) (store.Invitation, error) {
		if i.OrgID != c.org.ID {
			return i, notFound("invitation")
		}
		life := i.ExpiresAt.Sub(i.SentAt)
		i.Hash, i.SentAt, i.ExpiresAt = hash, now, now.Add(min(max(life, time.Hour), MaxInvitationLifetime))
		return i, nil
	})
	if err := storeErr(err, "invitation"); err != nil {
		return err
	}
	view, err := c.withLink(inv, secret)
	if err != nil {
		return err
	}
	c.record(c.org.ID, "invitation.resend", inv.ID, "success", map[string]string{"email": inv.Email, "expires_at": inv.ExpiresAt.Format(time.RFC3339)})
	a.send(c, &view, inv)
	return c.reply(http.StatusOK, view)
}

// revokeInvitation withdraws the invitation: its link stops working.
func (a *API) revokeInvitation(c *call) error {
	inv, err := c.invitation()
	if err != nil {
		return err
	}
	if err := storeErr(a.o.Store.DeleteInvitation(c.ctx(), inv.ID), "invitation"); err != nil {
		return err
	}
	c.record(c.org.ID, "invitation.revoke", inv.ID, "success", map[string]string{"email": inv.Email})
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}

// mayResend: the invitation was made with rights the caller has too.
func (c *call) mayResend(inv store.Invitation) (bool, error) {
	if c.p.Platform {
		return true, nil
	}
	if inv.Scope == "" {
		return false, nil
	}
	o, err := c.a.o.Store.GetOrg(c.ctx(), inv.Scope)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	} else if err != nil {
		return false, fmt.Errorf("admin: read org: %w", err)
	}
	return c.a.inScope(c.ctx(), c.p, &o)
}
