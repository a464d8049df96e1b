// Package testidp runs identity providers this project did not write,
// in-process, for tests: zitadel/oidc's example OpenID Provider (and,
// for SAML, crewjam/saml's IdP). Only tests import it.
package testidp

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// User is a person at the test IdP.
type User struct {
	ID, Username, Password string
	Email                  string
	EmailVerified          bool
	First, Last            string
	Groups                 []string
}

// OIDC is a running zitadel/oidc example OpenID Provider.
type OIDC struct {
	// Issuer is its URL (http://127.0.0.1:port).
	Issuer string
	Server *httptest.Server
	st     *withGroups
}

// MFAACR is the acr value that makes this OP "ask for a second factor":
// a sign-in requested with it gets amr [pwd otp mfa] and acr MFAACR, as
// an IdP with MFA set up answers.
const MFAACR = "urn:gatehouse:test:mfa"

// ACRRequested lists the acr_values of every authorization request the
// OP received, in order.
func (o *OIDC) ACRRequested() [][]string {
	o.st.mu.Lock()
	defer o.st.mu.Unlock()
	return slices.Clone(o.st.acrLog)
}

// NewOIDC starts an OP with one confidential web client (client_secret_basic)
// allowed to redirect to redirectURIs, and users.
func NewOIDC(t testing.TB, clientID, secret string, redirectURIs []string, users ...User) *OIDC {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	h, st := oidcHandler(issuer, clientID, secret, redirectURIs, users...)
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return &OIDC{Issuer: issuer, Server: srv, st: st}
}

// OIDCHandler is the OP of NewOIDC as a handler, to serve at issuer.
func OIDCHandler(issuer, clientID, secret string, redirectURIs []string, users ...User) http.Handler {
	h, _ := oidcHandler(issuer, clientID, secret, redirectURIs, users...)
	return h
}

func oidcHandler(issuer, clientID, secret string, redirectURIs []string, users ...User) (http.Handler, *withGroups) {
	us := userStore{users: map[string]*storage.User{}, groups: map[string][]string{}}
	for _, u := range users {
		us.users[u.ID] = &storage.User{ID: u.ID, Username: u.Username, Password: u.Password, FirstName: u.First, LastName: u.Last,
			Email: u.Email, EmailVerified: u.EmailVerified, PreferredLanguage: language.English}
		us.groups[u.ID] = u.Groups
	}
	st := &withGroups{Storage: storage.NewStorageWithClients(us, map[string]*storage.Client{
		clientID: storage.WebClient(clientID, secret, redirectURIs...),
	}), groups: us.groups, acr: map[string][]string{}}
	return exampleop.SetupServer(issuer, st, nil, false), st
}

type userStore struct {
	users  map[string]*storage.User
	groups map[string][]string
}

func (u userStore) GetUserByID(id string) *storage.User { return u.users[id] }
func (u userStore) GetUserByUsername(name string) *storage.User {
	for _, x := range u.users {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (u userStore) ExampleClientID() string { return storage.ServiceUserID }

// withGroups adds a "groups" claim to ID tokens, as Okta and Entra ID do
// when configured to. (The example OP drops scopes it does not know, so
// the claim does not wait for a "groups" scope.)
type withGroups struct {
	*storage.Storage
	groups map[string][]string

	mu     sync.Mutex
	acr    map[string][]string // by auth request ID
	acrLog [][]string
}

// CreateAuthRequest keeps the request's acr_values.
func (s *withGroups) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	ar, err := s.Storage.CreateAuthRequest(ctx, req, userID)
	if err != nil {
		return ar, err
	}
	s.mu.Lock()
	s.acr[ar.GetID()] = req.ACRValues
	s.acrLog = append(s.acrLog, req.ACRValues)
	s.mu.Unlock()
	return ar, nil
}

// AuthRequestByCode answers a request that asked for MFAACR as a sign-in
// with a second factor.
func (s *withGroups) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	ar, err := s.Storage.AuthRequestByCode(ctx, code)
	if err != nil {
		return ar, err
	}
	s.mu.Lock()
	asked := slices.Contains(s.acr[ar.GetID()], MFAACR)
	s.mu.Unlock()
	if asked {
		return mfaRequest{ar}, nil
	}
	return ar, nil
}

type mfaRequest struct{ op.AuthRequest }

func (mfaRequest) GetAMR() []string { return []string{"pwd", "otp", "mfa"} }
func (mfaRequest) GetACR() string   { return MFAACR }

func (s *withGroups) SetUserinfoFromRequest(ctx context.Context, ui *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, ui, req, scopes); err != nil {
		return err
	}
	if g := s.groups[req.GetSubject()]; len(g) > 0 {
		ui.AppendClaims("groups", g)
	}
	return nil
}

var authRequestIDRE = regexp.MustCompile(`name="id" value="([^"]+)"`)

// Login answers the OP's login page (at pageURL, whose body is page)
// for username: it posts the form as a browser would and returns the
// OP's redirect (towards the client's redirect URI). do performs HTTP
// requests without following redirects.
func Login(do func(*http.Request) (*http.Response, error), pageURL, page, username, password string) (*http.Response, error) {
	m := authRequestIDRE.FindStringSubmatch(page)
	if m == nil {
		return nil, &url.Error{Op: "login", URL: pageURL, Err: errNoForm}
	}
	u, err := url.Parse(pageURL)
	if err != nil {
		return nil, err
	}
	u.Path, u.RawQuery = "/login/username", ""
	form := url.Values{"id": {m[1]}, "username": {username}, "password": {password}}
	req, _ := http.NewRequest("POST", u.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(req)
}

type loginErr string

func (e loginErr) Error() string { return string(e) }

const errNoForm = loginErr("testidp: no login form on the page")

// Loopback reports whether addr's host is a loopback address.
func Loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		h = addr
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
