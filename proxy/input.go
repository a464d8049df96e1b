package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/policy"
	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

// OrgLookup finds an org by ID (a snapshot, never the store on the hot path).
type OrgLookup func(id string) (*store.Org, bool)

// PolicyInput builds the document policies decide over. The proxy calls
// it for every request; `gatehouse policy input` calls it to show policy
// authors exactly that document.
func PolicyInput(r *http.Request, host, path, client string, rt *Route, id *session.Identity, orgs OrgLookup, now time.Time) *policy.Input {
	in := &policy.Input{
		User: policy.User{
			ID: id.UserID, Email: id.Email, Name: id.Name, Roles: id.Roles, Groups: id.Groups,
			Attributes: id.Attributes, MFA: id.MFA, Connection: id.Connection, AuthTime: id.AuthTime.UTC().Format(time.RFC3339),
			AMR: id.AMR,
		},
		Org:     policy.Org{ID: id.OrgID, Slug: id.OrgSlug},
		Request: policy.Request{Method: r.Method, Host: host, Path: path, MatchPath: strings.ToLower(StripParams(path)), ClientAddr: client, At: now},
		Route:   policy.Route{ID: rt.ID, Host: rt.Host, PathPrefix: rt.PathPrefix, Orgs: rt.Orgs, Org: rt.Org},
		Session: policy.Session{ID: digest(id.SessionID), CreatedAt: id.AuthTime.UTC().Format(time.RFC3339),
			ExpiresAt: id.ExpiresAt.UTC().Format(time.RFC3339)},
	}
	if !id.MFAAt.IsZero() {
		in.User.MFATime = id.MFAAt.UTC().Format(time.RFC3339)
	}
	in.Request.Fill()
	if r.URL.RawQuery != "" {
		in.Request.Query = r.URL.Query()
	}
	for i, h := range policy.SelectedHeaders {
		if v := r.Header.Get(h); v != "" {
			if in.Request.Headers == nil {
				in.Request.Headers = make(map[string]string, len(policy.SelectedHeaders))
			}
			in.Request.Headers[policy.SelectedHeaderKeys[i]] = v
		}
	}
	if o, ok := orgs(id.OrgID); ok {
		in.Org.Name, in.Org.Attributes, in.Org.Domains, in.Org.LoginDomain = o.Name, o.Attributes, o.EmailDomains, o.LoginDomain
		if p, ok := orgs(o.ParentID); ok && o.ParentID != "" {
			in.Org.Parent = p.Slug
		}
	}
	return in
}

func digest(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("gatehouse-session|" + s))
	return hex.EncodeToString(sum[:8])
}
