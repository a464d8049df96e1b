package idp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/request"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// A test sign-in through a connection an org admin is setting up (the
// admin portal's self-serve SSO): the admin goes to their IdP through the
// draft connection and back, and instead of a session the sign-in leaves
// a trace of what arrived (the login tracer). Nobody is provisioned,
// nothing is signed in, the org's connection is unchanged.

const (
	traceKind = store.EphemeralPrefix + "sso-trace"
	// TraceTTL is how long a trace can be read and its draft activated.
	TraceTTL = 30 * time.Minute
	// maxTraceRaw bounds the response kept for the tracer.
	maxTraceRaw = 64 << 10
)

// SSOTest is a test sign-in in its flow record.
type SSOTest struct {
	// Draft is the connection tested (with its secrets: it becomes the
	// org's connection if the admin activates it).
	Draft store.Connection `json:"draft"`
	// UserID is the admin testing; Return the portal page to come back to.
	UserID string `json:"user"`
	Return string `json:"return"`
	Base   string `json:"base,omitempty"`
}

// SSOTrace is what a test sign-in found: the identity, or the exact
// reason it was refused, and the protocol's view of what arrived.
type SSOTrace struct {
	ID     string           `json:"id"`
	OrgID  string           `json:"org"`
	UserID string           `json:"user"`
	At     time.Time        `json:"at"`
	Draft  store.Connection `json:"draft"`
	// Base is the version of the org's connection the draft replaces.
	Base string `json:"base,omitempty"`
	OK   bool   `json:"ok"`
	// Reason is the full error on a refusal, as the log has it.
	Reason string `json:"reason,omitempty"`
	// Identity: who the IdP said signed in, and every claim or attribute.
	Subject, Email, Name string
	Groups               []string
	MFA                  bool
	// Roles are what the person would get in the org.
	Roles  []string
	Claims []connection.TraceItem
	// Details are the protocol's reading of the response (connection.Tracer).
	Details []connection.TraceItem
	// Raw is the response as received, decoded (SAML XML), cut at 64 KiB.
	Raw string `json:"raw,omitempty"`
}

// ErrWrongHost: a test sign-in must start on the org's sign-in host,
// where the IdP sends the browser back.
var ErrWrongHost = errors.New("idp: test sign-ins start on the org's sign-in host")

// BeginTest sends the admin's browser to the IdP through draft, a
// connection of org not in effect; the answer comes back to the org's
// usual callback or ACS and leaves an SSOTrace, then the browser goes to
// returnTo with ?trace=. base is the caller's version of the org's
// connection, kept in the trace (activation must find it unchanged). An error (the draft does not open, the IdP's
// metadata is unreachable) is returned for the caller's page.
func (h *Handler) BeginTest(w http.ResponseWriter, r *http.Request, org *store.Org, draft store.Connection, userID, returnTo, base string) error {
	signIn := SignInURL(*h.o.PublicURL, org)
	if request.Host(r) != strings.ToLower(signIn.Hostname()) {
		return fmt.Errorf("%w (%s)", ErrWrongHost, signIn.Hostname())
	}
	ctx, cancel := context.WithTimeout(r.Context(), 20*time.Second)
	defer cancel()
	cv, err := h.o.Connections.OpenDraft(ctx, org, draft)
	if err != nil {
		return err
	}
	c, ok := cv.(connection.Redirect)
	if !ok {
		return fmt.Errorf("idp: a %s connection has no sign-in to test", draft.Type)
	}
	now := h.o.Now()
	if ok, until := h.flowStarts.take(throttleAddr(h.o.ClientIP.Addr(r)), now); !ok {
		return fmt.Errorf("too many sign-ins were started from your network: try again in %s", wait(until, now))
	}
	test := &SSOTest{Draft: draft, UserID: userID, Return: returnTo, Base: base}
	return h.startFlow(w, r.WithContext(ctx), org, org, c, draft.Type, "", "", "", test)
}

// finishTest verifies the IdP's answer with the draft of a test sign-in
// and keeps the trace.
func (h *Handler) finishTest(w http.ResponseWriter, r *http.Request, state string, rec flowRecord, acsOrg *store.Org) {
	ctx := r.Context()
	org, ok := h.o.Orgs.ByID(rec.OrgID)
	if !ok {
		h.flowRefused(w, r, "org "+rec.OrgID+" no longer exists")
		return
	}
	if acsOrg != nil && acsOrg.ID != org.ID {
		h.wrongOrgAddress(w, r, org, "test sign-in of org "+org.Slug+" answered at org "+acsOrg.Slug+"'s ACS")
		return
	}
	t := rec.Test
	tr := SSOTrace{ID: token.RandomID(), OrgID: org.ID, UserID: t.UserID, At: h.o.Now().UTC(), Draft: t.Draft, Base: t.Base}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cv, err := h.o.Connections.OpenDraft(ctx, org, t.Draft)
	if err == nil {
		c, ok := cv.(connection.Redirect)
		if !ok {
			err = fmt.Errorf("idp: a %s connection has no sign-in to test", t.Draft.Type)
		} else {
			var id connection.Identity
			id, err = c.Finish(ctx, r, connection.BeginRequest{State: state, CallbackURL: rec.Callback}, rec.Conn)
			if err == nil {
				tr.Subject, tr.Email, tr.Name, tr.Groups, tr.MFA = id.Subject, id.Email, id.Name, id.Groups, id.MFA
				tr.Claims = claimItems(id.Claims)
				// The IdP vouched for someone; would Gatehouse let them in
				// (email, domains, roles), as a real sign-in would?
				owner := *org
				owner.Connection = t.Draft
				var roles []string
				if tr.Email, _, roles, err = h.admit(org, &owner, id, nil); err == nil {
					tr.OK, tr.Roles = true, roles
				} else {
					tr.Email = id.Email
					err = fmt.Errorf("the IdP signed someone in, but Gatehouse would refuse them: %w", err)
				}
			}
		}
	}
	if tc, ok := cv.(connection.Tracer); ok && cv != nil {
		tr.Details, tr.Raw = tc.Trace(r, tr.Subject != "")
		if len(tr.Raw) > maxTraceRaw {
			tr.Raw = tr.Raw[:maxTraceRaw] + "\n… (cut)"
		}
	}
	if err != nil {
		tr.Reason = errorChain(err)
	}
	outcome := map[bool]string{true: "success", false: "failure"}[tr.OK]
	h.o.Logger.Info("idp: test sign-in", "org", org.Slug, "connection", t.Draft.Type, "outcome", outcome, "reason", tr.Reason, "admin", t.UserID)
	h.audit(ctx, org.ID, t.UserID, "connection.test_sign_in", outcome, map[string]string{"connection": t.Draft.Type, "reason": tr.Reason, "subject": tr.Subject, "email": tr.Email})
	b, err := json.Marshal(tr)
	if err == nil {
		err = h.o.Store.PutOnce(ctx, traceKind, tr.ID, b, h.o.Now().Add(TraceTTL))
	}
	if err != nil {
		h.signInError(w, r, org, "test", connection.Errorf(connection.KindInternal, "idp: store test trace: %w", err))
		return
	}
	to := t.Return
	if strings.Contains(to, "?") {
		to += "&"
	} else {
		to += "?"
	}
	http.Redirect(w, r, to+"trace="+url.QueryEscape(tr.ID), http.StatusSeeOther)
}

// Trace reads a test sign-in's trace (false: none, or expired).
func (h *Handler) Trace(ctx context.Context, id string) (SSOTrace, bool) {
	var tr SSOTrace
	if !token.ValidToken(id, 16, 64) {
		return tr, false
	}
	b, err := h.o.Store.GetOnce(ctx, traceKind, id)
	if err != nil || json.Unmarshal(b, &tr) != nil {
		return tr, false
	}
	return tr, true
}

// SpendTrace removes a trace once its draft is activated.
func (h *Handler) SpendTrace(ctx context.Context, id string) {
	_, _ = h.o.Store.TakeOnce(ctx, traceKind, id)
}

// errorChain is an error with every cause (a connection.Error's message
// and what it wraps).
func errorChain(err error) string {
	var ce *connection.Error
	if errors.As(err, &ce) && ce.Err != nil && !strings.Contains(ce.Msg, ce.Err.Error()) {
		return ce.Msg + ": " + ce.Err.Error()
	}
	return err.Error()
}

func claimItems(claims map[string][]string) []connection.TraceItem {
	var out []connection.TraceItem
	for k, v := range claims {
		out = append(out, connection.TraceItem{Label: k, Value: strings.Join(v, ", ")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Label < out[j].Label })
	return out
}
