package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/idp/signing"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// OIDC Back-Channel Logout: when a session ends (Revoke: logout anywhere,
// an admin, deprovisioning), every client holding tokens of it that
// registered a backchannel_logout_uri gets a signed logout token. The
// notices wait in the store (an outbox under bclPrefix) and one node at
// a time delivers them, with back-off, so an app that is down hears of
// the logout when it is back (for up to bclGiveUp).
const (
	bclPrefix  = "oidc-bcl"
	bclLock    = "oidc-bcl-sender"
	bclGiveUp  = 24 * time.Hour
	bclTimeout = 5 * time.Second
	// logoutTokenTTL: a logout token is for now (the spec advises at
	// most two minutes).
	logoutTokenTTL = 2 * time.Minute
	eventLogout    = "http://schemas.openid.net/event/backchannel-logout"
)

// notice is one logout token to deliver.
type notice struct {
	ID       string    `json:"id"`
	ClientID string    `json:"client_id"`
	URI      string    `json:"uri"`
	Subject  string    `json:"sub"`
	SID      string    `json:"sid"`
	OrgID    string    `json:"org_id"`
	Created  time.Time `json:"created"`
	Attempts int       `json:"attempts,omitempty"`
	Next     time.Time `json:"next"`
	LastErr  string    `json:"last_error,omitempty"`
}

// SessionEnded revokes the session's refresh tokens and queues a logout
// notice for each client of it that asked for them.
func (p *Provider) SessionEnded(ctx context.Context, sid string) {
	ctx, cancel := detached(ctx)
	defer cancel()
	fs, err := p.o.Store.ListRefreshFamiliesBySession(ctx, sid)
	if err != nil {
		p.o.Logger.Error("provider: reading an ended session's tokens failed; its apps are not told", "err", err)
		return
	}
	told := map[string]bool{}
	for _, f := range fs {
		p.revokeFamily(ctx, f.ID)
		cl, _ := p.client(f.ClientID)
		if cl == nil || cl.cfg.BackchannelLogoutURI == "" || told[f.ClientID] {
			continue
		}
		told[f.ClientID] = true
		now := p.o.Now().UTC()
		n := notice{ID: token.RandomID()[:22], ClientID: f.ClientID, URI: cl.cfg.BackchannelLogoutURI, Subject: f.UserID, SID: p.sid(sid),
			OrgID: f.OrgID, Created: now, Next: now}
		b, _ := json.Marshal(n)
		if err := p.o.Store.PutBlob(ctx, bclPrefix+"/"+n.ID, b); err != nil {
			p.o.Logger.Error("provider: queueing a logout notice failed", "client", f.ClientID, "err", err)
		}
	}
	if len(told) > 0 {
		p.wake()
	}
}

// wake makes the sender look at the outbox now.
func (p *Provider) wake() {
	select {
	case p.bclWake <- struct{}{}:
	default:
	}
}

// sendNotices delivers the outbox (on the node holding the lock).
func (p *Provider) sendNotices(ctx context.Context) {
	owner := p.node
	ok, err := p.o.Store.AcquireLock(ctx, bclLock, owner, 30*time.Second)
	if err != nil || !ok {
		return
	}
	infos, err := p.o.Store.ListBlobs(ctx, bclPrefix)
	if err != nil {
		p.o.Logger.Warn("provider: reading the logout outbox failed", "err", err)
		return
	}
	for _, bi := range infos {
		if ctx.Err() != nil {
			return
		}
		b, err := p.o.Store.GetBlob(ctx, bi.Key)
		if err != nil {
			continue
		}
		var n notice
		if err := json.Unmarshal(b.Value, &n); err != nil {
			p.o.Logger.Error("provider: corrupt logout notice dropped", "key", bi.Key, "err", err)
			_ = p.o.Store.DeleteBlobs(ctx, bi.Key)
			continue
		}
		now := p.o.Now()
		if now.Before(n.Next) {
			continue
		}
		err = p.deliver(ctx, n)
		switch {
		case err == nil:
			_ = p.o.Store.DeleteBlobs(ctx, bi.Key)
			p.audit(ctx, n.OrgID, n.Subject, "oidc.backchannel_logout", map[string]string{"client": n.ClientID, "attempts": fmt.Sprint(n.Attempts + 1)})
		case now.Sub(n.Created) > bclGiveUp:
			_ = p.o.Store.DeleteBlobs(ctx, bi.Key)
			p.o.Logger.Error("provider: gave up telling an app of a logout", "client", n.ClientID, "attempts", n.Attempts+1, "err", err)
			p.auditFailure(ctx, n, err)
		default:
			n.Attempts++
			n.LastErr = err.Error()
			n.Next = now.Add(backoff(n.Attempts))
			nb, _ := json.Marshal(n)
			_ = p.o.Store.PutBlob(ctx, bi.Key, nb)
			p.o.Logger.Warn("provider: logout notice not delivered; retrying", "client", n.ClientID, "attempts", n.Attempts, "retry_in", backoff(n.Attempts), "err", err)
		}
	}
}

func (p *Provider) auditFailure(ctx context.Context, n notice, err error) {
	ctx, cancel := detached(ctx)
	defer cancel()
	_ = p.o.Store.AppendAudit(ctx, store.AuditEvent{Time: p.o.Now(), OrgID: n.OrgID, Actor: n.Subject, Action: "oidc.backchannel_logout",
		Outcome: "failure", Details: map[string]string{"client": n.ClientID, "error": err.Error()}})
}

// backoff: 1s, 2s, 4s ... at most 5 minutes.
func backoff(attempts int) time.Duration {
	d := time.Second << min(attempts-1, 9)
	return min(d, 5*time.Minute)
}

// logoutClaims are a logout token's (OIDC Back-Channel Logout 1.0 §2.4):
// no nonce, an events claim, sub and sid.
type logoutClaims struct {
	Issuer   string                    `json:"iss"`
	Audience string                    `json:"aud"`
	IssuedAt int64                     `json:"iat"`
	Expiry   int64                     `json:"exp"`
	JWTID    string                    `json:"jti"`
	Subject  string                    `json:"sub"`
	SID      string                    `json:"sid"`
	Events   map[string]map[string]any `json:"events"`
}

// deliver POSTs one logout token; the app must answer 200 or 204.
func (p *Provider) deliver(ctx context.Context, n notice) error {
	now := p.o.Now()
	tok, err := p.o.Keys.SignTyped(signing.TypeLogout, logoutClaims{Issuer: p.issuer, Audience: n.ClientID, IssuedAt: now.Unix(),
		Expiry: now.Add(logoutTokenTTL).Unix(), JWTID: token.RandomID()[:22], Subject: n.Subject, SID: n.SID,
		Events: map[string]map[string]any{eventLogout: {}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, bclTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URI, strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := p.httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("the app answered %d", resp.StatusCode)
	}
	return nil
}

// runSender delivers notices every second, and at once when woken.
func (p *Provider) runSender(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	defer func() {
		c, cancel := detached(context.Background())
		defer cancel()
		_ = p.o.Store.ReleaseLock(c, bclLock, p.node)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.bclWake:
		}
		p.sendNotices(ctx)
	}
}

func nodeName() string {
	h, _ := os.Hostname()
	return h + "/" + fmt.Sprint(os.Getpid()) + "/" + token.RandomID()[:8]
}

var errNoRedirects = errors.New("provider: a logout endpoint must answer, not redirect")
