package provider

import (
	"context"
	"net/url"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/gatehouse/gatehouse/idp"
	"github.com/gatehouse/gatehouse/internal/loop"
	"github.com/gatehouse/gatehouse/internal/token"
)

const (
	kindLogoutReturn = "oidc-logout-return"
	logoutReturnTTL  = 10 * time.Minute
)

// TerminateSessionFromRequest answers RP-initiated logout: the library
// has checked the id_token_hint and that post_logout_redirect_uri is
// the client's. The browser goes to the sign-out page (which asks
// before signing out, whatever the request says), then to the app.
func (s storage) TerminateSessionFromRequest(ctx context.Context, req *op.EndSessionRequest) (string, error) {
	p := s.p
	page := p.issuer + idp.LogoutPath
	if req.RedirectURI == "" || req.RedirectURI == page || req.ClientID == "" {
		return page, nil
	}
	handle := token.RandomID()
	if err := p.o.Store.PutOnce(ctx, kindLogoutReturn, handle, []byte(req.RedirectURI), p.o.Now().Add(logoutReturnTTL)); err != nil {
		p.o.Logger.Warn("provider: logout return not stored; the page will not send the browser back", "client", req.ClientID, "err", err)
		return page, nil
	}
	p.o.Logger.Info("provider: app asked to sign out", "client", req.ClientID)
	return page + "?" + url.Values{"return": {handle}}.Encode(), nil
}

// LogoutReturn is where an app's logout request asked to send the
// browser afterwards ("" if the handle is unknown or expired).
func (p *Provider) LogoutReturn(ctx context.Context, handle string) string {
	b, err := p.o.Store.GetOnce(ctx, kindLogoutReturn, handle)
	if err != nil {
		return ""
	}
	return string(b)
}

// Run delivers logout notices, reloads the apps (another node's admin
// API may have changed them) and sweeps expired refresh token families
// until ctx ends.
func (p *Provider) Run(ctx context.Context) {
	// (AppsChanged wakes the reload below early.)
	go p.runSender(ctx)
	go loop.EveryOrKick(ctx, p.o.ReloadInterval, p.appsChanged, func(ctx context.Context) {
		if err := p.Reload(ctx); err != nil {
			p.o.Logger.Warn("provider: app reload failed; the apps loaded before keep serving", "err", err)
		}
	})
	loop.Every(ctx, 10*time.Minute, func(ctx context.Context) {
		if n, err := p.o.Store.DeleteExpiredRefreshFamilies(ctx, p.o.Now().Add(-time.Hour)); err != nil {
			p.o.Logger.Warn("provider: sweeping expired refresh tokens failed", "err", err)
		} else if n > 0 {
			p.o.Logger.Info("provider: expired refresh token families removed", "count", n)
		}
	})
}

// AppsChanged makes Run reload the apps now (another node changed one).
func (p *Provider) AppsChanged() {
	select {
	case p.appsChanged <- struct{}{}:
	default:
	}
}
