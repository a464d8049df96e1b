package provider

import (
	"strings"

	"github.com/gatehouse/gatehouse/config"
	"github.com/gatehouse/gatehouse/store"
)

// mappedClaims are the extra claims the org's and the client's mappings
// ask for (the client's win on a shared name), from the person (nil for a
// machine token) and the org. A source with no value adds nothing; a
// string longer than config.MaxMappedClaimBytes is left out and logged.
func (p *Provider) mappedClaims(cl *client, who *person, org *store.Org) map[string]any {
	if len(cl.cfg.Claims) == 0 && len(org.TokenClaims) == 0 {
		return nil
	}
	out := map[string]any{}
	for _, m := range []map[string]string{org.TokenClaims, cl.cfg.Claims} {
		for name, src := range m {
			v, ok := claimValue(src, who, org)
			if !ok {
				continue
			}
			if s, isStr := v.(string); isStr && len(s) > config.MaxMappedClaimBytes {
				p.o.Logger.Warn("provider: mapped claim left out: too long", "claim", name, "source", src, "bytes", len(s), "client", cl.cfg.ID)
				continue
			}
			out[name] = v
		}
	}
	return out
}

func claimValue(src string, who *person, org *store.Org) (any, bool) {
	if k, ok := strings.CutPrefix(src, "org.attributes."); ok {
		v, ok := org.Attributes[k]
		return v, ok
	}
	switch src {
	case "org.id":
		return org.ID, true
	case "org.slug":
		return org.Slug, true
	case "org.name":
		return org.Name, true
	}
	if who == nil {
		return nil, false
	}
	if k, ok := strings.CutPrefix(src, "user.attributes."); ok {
		v, ok := who.mem.Attributes[k]
		return v, ok
	}
	switch src {
	case "user.id":
		return who.user.ID, true
	case "user.email":
		return who.user.Email, true
	case "user.name":
		return who.user.Name, who.user.Name != ""
	case "user.roles":
		return nonNil(who.mem.Roles), true
	case "user.groups":
		return nonNil(who.mem.Groups), true
	}
	return nil, false
}
