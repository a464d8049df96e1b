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

// PolicyInput builds the document policies decide over. The proxy builds
// the same document in two parts (identityInput once per session, route
// and org snapshot; requestInput per request, completed only when a
// policy is evaluated); `gatehouse policy input` calls this to show
// policy authors exactly that document.
func PolicyInput(r *http.Request, host, path, client string, rt *Route, id *session.Identity, orgs OrgLookup, now time.Time) *policy.Input {
	in := identityInput(rt, id, orgs)
	in.Request = requestInput(r, host, path, client, now)
	completeInput(in, r)
	return in
}

// identityInput is the input's user, org, route and session: the same
// for every request of a session on a route.
func identityInput(rt *Route, id *session.Identity, orgs OrgLookup) *policy.Input {
	in := &policy.Input{
		User: policy.User{
			ID: id.UserID, Email: id.Email, Name: id.Name, Roles: id.Roles, Groups: id.Groups,
			Attributes: id.Attributes, MFA: id.MFA, Connection: id.Connection, AuthTime: id.AuthTime.UTC().Format(time.RFC3339),
			AMR: id.AMR,
		},
		Org:   policy.Org{ID: id.OrgID, Slug: id.OrgSlug},
		Route: policy.Route{ID: rt.ID, Host: rt.Host, PathPrefix: rt.PathPrefix, Orgs: rt.Orgs, Org: rt.Org},
		Session: policy.Session{ID: digest(id.SessionID), CreatedAt: id.AuthTime.UTC().Format(time.RFC3339),
			ExpiresAt: id.ExpiresAt.UTC().Format(time.RFC3339)},
	}
	if !id.MFAAt.IsZero() {
		in.User.MFATime = id.MFAAt.UTC().Format(time.RFC3339)
	}
	if o, ok := orgs(id.OrgID); ok {
		in.Org.Name, in.Org.Attributes, in.Org.Domains, in.Org.LoginDomain = o.Name, o.Attributes, o.EmailDomains, o.LoginDomain
		if p, ok := orgs(o.ParentID); ok && o.ParentID != "" {
			in.Org.Parent = p.Slug
		}
	}
	return in
}

// requestInput is what a decision's cache key and path tests need of the
// request: everything but the time strings, the parsed query and the
// headers, which completeInput adds before an evaluation (the key reads
// headers from the request).
func requestInput(r *http.Request, host, path, client string, now time.Time) policy.Request {
	return policy.Request{Method: r.Method, Host: host, Path: path, MatchPath: strings.ToLower(StripParams(path)), ClientAddr: client, At: now}
}

// completeInput adds the request's time strings, query and selected
// headers to in.
func completeInput(in *policy.Input, r *http.Request) {
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
}

func digest(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte("gatehouse-session|" + s))
	return hex.EncodeToString(sum[:8])
}
