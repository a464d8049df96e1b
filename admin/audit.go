package admin

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/store"
)

// redacted stands for a secret in before/after values.
const redacted = "[redacted]"

// secretFields never appear in audit events with their values.
var secretFields = map[string]bool{"password": true, "password_hash": true, "secret": true, "hash": true, "client_secret": true}

// change is what an admin action changed: the fields that differ, with
// their values before and after (secrets redacted).
func change(before, after map[string]any) map[string]string {
	b, a := map[string]any{}, map[string]any{}
	for k, v := range after {
		if !eq(before[k], v) {
			b[k], a[k] = before[k], v
		}
	}
	for k, v := range before {
		if _, ok := after[k]; !ok {
			b[k], a[k] = v, nil
		}
	}
	for k := range b {
		if secretFields[k] {
			b[k], a[k] = redactedOrNil(b[k]), redactedOrNil(a[k])
		}
	}
	out := map[string]string{}
	if len(b) > 0 {
		bj, _ := json.Marshal(b) // maps are marshalled in key order
		aj, _ := json.Marshal(a)
		out["before"], out["after"] = string(bj), string(aj)
	}
	return out
}

// redactedOrNil hides a secret's value but not whether there is one.
func redactedOrNil(v any) any {
	if v == nil || v == "" {
		return nil
	}
	return redacted
}

func eq(x, y any) bool {
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(bx) == string(by)
}

// record appends one admin action to the audit trail of orgID ("": the
// platform's): who did it, through what, from where, to what.
func (c *call) record(orgID, action, target, outcome string, details map[string]string) {
	c.audited = true
	d := map[string]string{"client": c.a.o.ClientIP.Addr(c.r), "request_id": requestID(c.r)}
	if c.p != nil {
		if c.p.TokenID != "" {
			d["via"] = "token"
			if c.p.UserID != "" {
				d["token_maker"] = c.p.UserID
			}
		} else {
			d["via"] = "session"
		}
	}
	maps.Copy(d, details)
	e := store.AuditEvent{Time: c.a.o.Now(), OrgID: orgID, Actor: c.p.actor(), Action: action, Target: target, Outcome: outcome, Details: d}
	// An action that happened is recorded even if its client hung up.
	if err := c.a.o.Store.AppendAudit(context.WithoutCancel(c.ctx()), e); err != nil {
		c.a.o.Logger.Error("admin: audit write failed", "action", action, "target", target, "err", err)
	}
}

// auditFailure records a refused write: in the org it aimed at if the
// caller may see that org, else in the caller's own org, so that probing
// another org leaves a trace where the prober's admins look.
func (a *API) auditFailure(c *call, p *Problem) {
	org := c.p.OrgID
	if c.org != nil {
		org = c.org.ID
	}
	target := c.r.PathValue("user")
	if target == "" {
		target = c.r.PathValue("org")
	}
	c.record(org, c.rt.Operation, target, "failure", map[string]string{"status": strconv.Itoa(p.Status), "reason": p.Detail})
}

// auditPage is one page of events.
type auditPage struct {
	Items      []store.AuditEvent `json:"items"`
	NextCursor string             `json:"next_cursor,omitempty"`
}

// auditQuery reads the filters an audit listing or export takes.
func auditQuery(r *http.Request, orgID string) (store.AuditQuery, error) {
	q := store.AuditQuery{OrgID: orgID, Action: r.URL.Query().Get("action"), Actor: r.URL.Query().Get("actor"), Target: r.URL.Query().Get("target")}
	var errs fields
	for _, k := range []string{"since", "until"} {
		v := r.URL.Query().Get(k)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			errs.add("/"+k, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z")
			continue
		}
		if k == "since" {
			q.Since = t
		} else {
			q.Until = t
		}
	}
	limit, err := limitParam(r)
	if err != nil {
		errs = append(errs, *err)
	}
	q.Limit = limit
	if cur := r.URL.Query().Get("cursor"); cur != "" {
		b, err := base64.RawURLEncoding.DecodeString(cur)
		n, perr := strconv.ParseUint(string(b), 10, 64)
		if err != nil || perr != nil || n == 0 {
			errs.add("/cursor", "is not a cursor this API returned")
		}
		q.BeforeSeq = n
	}
	return q, errs.err()
}

// limitParam is a page size: 1 to 500, 100 by default.
func limitParam(r *http.Request) (int, *FieldError) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return 100, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 500 {
		f := field("/limit", "must be a number from 1 to 500")
		return 0, &f
	}
	return n, nil
}

func (a *API) listAudit(c *call) error {
	q, err := auditQuery(c.r, c.org.ID)
	if err != nil {
		return err
	}
	return a.auditPage(c, q)
}

// auditPage answers one page of q. A cursor (the last event's sequence
// number) is given only for one org's chain, the order it pages in.
func (a *API) auditPage(c *call, q store.AuditQuery) error {
	// One more than the page tells whether there is a next one.
	limit := q.Limit
	q.Limit++
	events, err := a.o.Store.ListAudit(c.ctx(), q)
	if err != nil {
		return fmt.Errorf("admin: list audit: %w", err)
	}
	page := auditPage{Items: events}
	if len(events) > limit {
		page.Items = events[:limit]
		if q.OrgID != "" {
			page.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatUint(events[limit-1].Seq, 10)))
		}
	}
	if page.Items == nil {
		page.Items = []store.AuditEvent{}
	}
	return c.reply(http.StatusOK, page)
}

// exportAudit streams the org's events matching the filters as JSON
// Lines, oldest first, each with its chain fields (seq, prev, hash) so
// that the export can be checked on its own.
func (a *API) exportAudit(c *call) error {
	q, err := auditQuery(c.r, c.org.ID)
	if err != nil {
		return err
	}
	c.record(c.org.ID, "audit.export", c.org.ID, "success", map[string]string{"filters": c.r.URL.RawQuery})
	begin := func() {
		c.w.Header().Set("Content-Type", "application/jsonl")
		c.w.Header().Set("Content-Disposition", `attachment; filename="audit-`+c.org.Slug+`.jsonl"`)
		c.w.WriteHeader(http.StatusOK)
	}
	bw := bufio.NewWriter(c.w)
	enc := json.NewEncoder(bw)
	started := false
	errStop := errors.New("stop")
	err = a.o.Store.WalkAudit(c.ctx(), c.org.ID, 0, func(e store.AuditEvent) error {
		if !matches(e, q) {
			return nil
		}
		if !started {
			begin()
			started = true
		}
		if err := enc.Encode(e); err != nil {
			return errStop // the client went away
		}
		return nil
	})
	if !started && err == nil {
		begin()
	}
	_ = bw.Flush()
	if err != nil && !errors.Is(err, errStop) {
		if started {
			// Too late for a problem: cut the stream so it is not taken
			// for complete.
			a.o.Logger.Error("admin: audit export failed midway", "org", c.org.Slug, "err", err)
			panic(http.ErrAbortHandler)
		}
		return fmt.Errorf("admin: export audit: %w", err)
	}
	return nil
}

// matches applies an audit query's filters to one event.
func matches(e store.AuditEvent, q store.AuditQuery) bool {
	switch {
	case q.Action != "" && e.Action != q.Action,
		q.Actor != "" && e.Actor != q.Actor,
		q.Target != "" && e.Target != q.Target,
		!q.Since.IsZero() && e.Time.Before(q.Since),
		!q.Until.IsZero() && !e.Time.Before(q.Until):
		return false
	}
	return true
}

// listAllAudit is the platform's view of the audit trail: every org's
// events by time, or one chain by org ID (a deleted org's included, whose
// chain is kept but no longer reachable through /orgs).
func (a *API) listAllAudit(c *call) error {
	org := c.r.URL.Query().Get("org")
	if org != "" && !strings.HasPrefix(org, "org_") {
		return invalid(field("/org", "an org ID (org_…): a deleted org has no slug any more"))
	}
	q, err := auditQuery(c.r, org)
	if err != nil {
		return err
	}
	if org == "" && q.BeforeSeq != 0 {
		return invalid(field("/cursor", "pages only one org's chain: set org"))
	}
	return a.auditPage(c, q)
}
