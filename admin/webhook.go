package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// WebhookView is an org's audit webhook and its delivery health (never
// its secret).
type WebhookView struct {
	URL       string    `json:"url"`
	CreatedAt time.Time `json:"created_at"`
	// DeliveredSeq is the last event of the org's chain the receiver
	// acknowledged; Pending how many follow it.
	DeliveredSeq  uint64    `json:"delivered_seq"`
	Pending       uint64    `json:"pending"`
	Failures      int       `json:"failures"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
}

// NewWebhookView is a webhook just set, with its secret (shown once).
type NewWebhookView struct {
	WebhookView
	Secret string `json:"secret"`
}

type webhookSet struct {
	URL string `json:"url"`
	// Secret is "whsec_…"; empty: Gatehouse makes one.
	Secret string `json:"secret"`
}

func (a *API) webhookView(c *call, o store.Org) (WebhookView, error) {
	w := o.AuditWebhook
	v := WebhookView{URL: redactURL(w.URL), CreatedAt: w.CreatedAt}
	key := orgSinkKey(o.ID, *w)
	seq, err := readCursor(c.ctx(), a.o.Store, key, o.ID)
	if err != nil {
		return v, err
	}
	v.DeliveredSeq = seq
	heads, err := a.o.Store.AuditHeads(c.ctx())
	if err != nil {
		return v, fmt.Errorf("admin: audit heads: %w", err)
	}
	for _, h := range heads {
		if h.OrgID == o.ID && h.Seq > seq {
			v.Pending = h.Seq - seq
		}
	}
	if b, err := a.o.Store.GetBlob(c.ctx(), statusKey(key)); err == nil {
		var st sinkState
		if json.Unmarshal(b.Value, &st) == nil {
			v.Failures, v.LastAttemptAt, v.LastSuccessAt, v.NextAttemptAt, v.LastError = st.Failures, st.LastAttemptAt, st.LastSuccessAt, st.NextAttemptAt, st.LastError
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return v, fmt.Errorf("admin: webhook status: %w", err)
	}
	return v, nil
}

func (a *API) getWebhook(c *call) error {
	if c.org.AuditWebhook == nil {
		return notFound("audit webhook")
	}
	v, err := a.webhookView(c, *c.org)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, v)
}

// setWebhook registers (or replaces) the org's audit webhook. It gets the
// events appended from now on, in order, each batch signed with the
// secret; a replaced registration's cursor and health are dropped.
func (a *API) setWebhook(c *call) error {
	var in webhookSet
	if err := c.decode(&in); err != nil {
		return err
	}
	var errs fields
	if msg := checkWebhookURL(in.URL, a.o.WebhooksAllowPrivate); msg != "" {
		errs.add("/url", "%s", msg)
	}
	if in.Secret == "" {
		in.Secret = NewWebhookSecret()
	} else if _, err := webhookKey(in.Secret); err != nil {
		errs.add("/secret", "%s", err.Error())
	}
	if err := errs.err(); err != nil {
		return err
	}
	w := &store.AuditWebhook{URL: in.URL, Secret: in.Secret, CreatedAt: a.o.Now().UTC()}
	// The cursor first, at the chain's head: the webhook starts with the
	// events that follow its registration (the audit export has the past).
	heads, err := a.o.Store.AuditHeads(c.ctx())
	if err != nil {
		return fmt.Errorf("admin: audit heads: %w", err)
	}
	key := orgSinkKey(c.org.ID, *w)
	covered, err := chainsOf(c.ctx(), a.o.Store, c.org.ID)
	if err != nil {
		return fmt.Errorf("admin: org tree: %w", err)
	}
	// The org's chain and its sub-orgs' (a sub-org made later starts at
	// its first event).
	for _, h := range heads {
		if covered(h.OrgID) {
			if err := writeCursor(c.ctx(), a.o.Store, key, h.OrgID, h.Seq); err != nil {
				return fmt.Errorf("admin: webhook cursor: %w", err)
			}
		}
	}
	if err := writeCursor(c.ctx(), a.o.Store, key, c.org.ID, headSeq(heads, c.org.ID)); err != nil {
		return fmt.Errorf("admin: webhook cursor: %w", err)
	}
	var before store.Org
	o, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		before = o
		o.AuditWebhook, o.UpdatedAt = w, a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	if old := before.AuditWebhook; old != nil {
		a.dropSink(c, orgSinkKey(c.org.ID, *old))
	}
	c.record(c.org.ID, "webhook.set", c.org.ID, "success", change(webhookFields(before.AuditWebhook), webhookFields(w)))
	v, err := a.webhookView(c, o)
	if err != nil {
		return err
	}
	return c.reply(http.StatusOK, NewWebhookView{WebhookView: v, Secret: w.Secret})
}

func headSeq(heads []store.AuditChainHead, orgID string) uint64 {
	for _, h := range heads {
		if h.OrgID == orgID {
			return h.Seq
		}
	}
	return 0
}

func webhookFields(w *store.AuditWebhook) map[string]any {
	if w == nil {
		return map[string]any{}
	}
	return map[string]any{"url": redactURL(w.URL), "secret": w.Secret}
}

func (a *API) dropSink(c *call, key string) {
	for _, k := range []string{"audit-stream/" + key, statusKey(key)} {
		if err := a.o.Store.DeleteBlobs(c.ctx(), k); err != nil {
			a.o.Logger.Warn("admin: webhook cleanup failed", "key", k, "err", err)
		}
	}
}

func (a *API) deleteWebhook(c *call) error {
	if c.org.AuditWebhook == nil {
		return notFound("audit webhook")
	}
	var before store.Org
	_, err := a.o.Store.UpdateOrg(c.ctx(), c.org.ID, func(o store.Org) (store.Org, error) {
		before = o
		o.AuditWebhook, o.UpdatedAt = nil, a.o.Now().UTC()
		return o, nil
	})
	if err := storeErr(err, "org"); err != nil {
		return err
	}
	if old := before.AuditWebhook; old != nil {
		a.dropSink(c, orgSinkKey(c.org.ID, *old))
	}
	c.record(c.org.ID, "webhook.delete", c.org.ID, "success", change(webhookFields(before.AuditWebhook), map[string]any{}))
	c.w.WriteHeader(http.StatusNoContent)
	return nil
}
