package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/store"
)

// client looks an app up by its client_id.
func (p *Provider) client(id string) (*client, bool) {
	c, ok := (*p.clients.Load())[id]
	return c, ok
}

func (p *Provider) publish(set map[string]*client) { p.clients.Store(&set) }

// newClient makes the provider's view of an app: its keys, if it signs
// its requests, and its org's ID, if it is a per-org app.
func (p *Provider) newClient(c config.Client) (*client, error) {
	cl := &client{cfg: c, perOrg: c.Org != "", loginURL: func(id string) string { return continuePath + "?id=" + url.QueryEscape(id) }}
	if c.Org != "" {
		if o, ok := p.o.Orgs.BySlug(c.Org); ok {
			cl.orgID = o.ID
		}
	}
	if c.AuthMethod == "private_key_jwt" {
		cl.keys = &clientKeys{url: c.JWKSURL, http: &http.Client{Timeout: 5 * time.Second}}
		if c.JWKS != "" {
			var set jose.JSONWebKeySet
			if err := json.Unmarshal([]byte(c.JWKS), &set); err != nil {
				return nil, fmt.Errorf("provider: client %s: jwks: %w", c.ID, err)
			}
			cl.keys.set, cl.keys.inline = &set, true
		}
	}
	return cl, nil
}

// storedClient is an app of the admin API's.
func (p *Provider) storedClient(sc store.OIDCClient) (*client, error) {
	var c config.Client
	if err := json.Unmarshal(sc.Settings, &c); err != nil {
		return nil, fmt.Errorf("provider: client %s: settings: %w", sc.ID, err)
	}
	c.ID = sc.ID
	c.SetDefaults()
	cl, err := p.newClient(c)
	if err != nil {
		return nil, err
	}
	if sc.OrgID != "" {
		// Its org by ID: the slug only routes the browser, and follows a
		// rename.
		cl.perOrg, cl.orgID = true, sc.OrgID
		if o, ok := p.o.Orgs.ByID(sc.OrgID); ok {
			cl.cfg.Org = o.Slug
		} else {
			cl.orgID = "" // gone: it takes nobody
		}
	}
	cl.secretSHA, cl.oldSecretSHA, cl.oldSecretUntil = sc.SecretHash, sc.OldSecretHash, sc.OldSecretUntil
	return cl, nil
}

// Reload rebuilds the registry from the config file's apps and the
// store's. An app the config file declares wins over a stored one of the
// same ID; a stored app that cannot be read is left out (logged), never
// half-loaded.
func (p *Provider) Reload(ctx context.Context) error {
	stored, err := p.o.Store.ListOIDCClients(ctx)
	if err != nil {
		return fmt.Errorf("provider: load apps: %w", err)
	}
	set := make(map[string]*client, len(p.declared)+len(stored))
	for id, c := range p.declared {
		if c.perOrg {
			// Its org's ID again: the directory may have loaded since.
			cp := *c
			cp.orgID = ""
			if o, ok := p.o.Orgs.BySlug(c.cfg.Org); ok {
				cp.orgID = o.ID
			}
			c = &cp
		}
		set[id] = c
	}
	for _, sc := range stored {
		if _, dup := set[sc.ID]; dup {
			p.o.Logger.Warn("provider: an app registered through the admin API has the id of one the config file declares; the file's wins", "client", sc.ID)
			continue
		}
		cl, err := p.storedClient(sc)
		if err != nil {
			p.o.Logger.Error("provider: an app could not be loaded; it gets no tokens", "client", sc.ID, "err", err)
			continue
		}
		set[sc.ID] = cl
	}
	p.publish(set)
	return nil
}
