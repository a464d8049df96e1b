package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/gatehouse/gatehouse/store"
)

// Single-use store kinds and lifetimes.
const (
	kindAuthRequest = store.EphemeralPrefix + "oidc-authreq"
	kindCode        = "oidc-code"
	// authRequestTTL is how long a person may take to sign in.
	authRequestTTL = 10 * time.Minute
	// codeTTL: an app redeems its code at once (RFC 6749 §4.1.2 says at
	// most 10 minutes; a minute is plenty).
	codeTTL = time.Minute
	// maxLoginRounds bounds the trips to the sign-in page one request
	// makes, so that a session that never satisfies it cannot loop.
	maxLoginRounds = 3
)

// authRequest is an authorization request in progress, kept in the store
// (single use) from /authorize until its code is redeemed.
type authRequest struct {
	ID           string   `json:"id"`
	ClientID     string   `json:"client_id"`
	RedirectURI  string   `json:"redirect_uri"`
	Scopes       []string `json:"scopes"`
	State        string   `json:"state,omitempty"`
	Nonce        string   `json:"nonce,omitempty"`
	ResponseMode string   `json:"response_mode,omitempty"`
	Challenge    string   `json:"challenge"`
	Prompt       []string `json:"prompt,omitempty"`
	MaxAge       *uint    `json:"max_age,omitempty"`
	LoginHint    string   `json:"login_hint,omitempty"`
	// HintSubject is the sub of a valid id_token_hint: only that person.
	HintSubject string `json:"hint_subject,omitempty"`
	Resource    string `json:"resource,omitempty"`
	// OrgSlug is the org asked for (the client's, or the organization
	// parameter's), "" for any.
	OrgSlug   string    `json:"org_slug,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Rounds    int       `json:"rounds,omitempty"`
	// Selected: prompt=select_account's chooser was shown.
	Selected bool `json:"selected,omitempty"`
	// ConsentToken guards the consent form; Consented: it was given.
	ConsentToken string `json:"consent_token,omitempty"`
	Consented    bool   `json:"consented,omitempty"`

	// Set once the person is signed in (Done).
	Subject   string    `json:"sub,omitempty"`
	OrgID     string    `json:"org_id,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
	AuthTime  time.Time `json:"auth_time,omitzero"`
	AMR       []string  `json:"amr,omitempty"`
	IsDone    bool      `json:"done,omitempty"`
	// CodeIssued: one code per request, however often the callback runs.
	CodeIssued bool `json:"code_issued,omitempty"`
}

func (a *authRequest) GetID() string          { return a.ID }
func (a *authRequest) GetACR() string         { return "" }
func (a *authRequest) GetAMR() []string       { return a.AMR }
func (a *authRequest) GetAudience() []string  { return []string{a.ClientID} }
func (a *authRequest) GetAuthTime() time.Time { return a.AuthTime }
func (a *authRequest) GetClientID() string    { return a.ClientID }
func (a *authRequest) GetNonce() string       { return a.Nonce }
func (a *authRequest) GetRedirectURI() string { return a.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType {
	return oidc.ResponseTypeCode
}
func (a *authRequest) GetResponseMode() oidc.ResponseMode { return oidc.ResponseMode(a.ResponseMode) }
func (a *authRequest) GetScopes() []string                { return a.Scopes }
func (a *authRequest) GetState() string                   { return a.State }
func (a *authRequest) GetSubject() string                 { return a.Subject }
func (a *authRequest) Done() bool                         { return a.IsDone }

// GetCodeChallenge: every request has an S256 challenge (CreateAuthRequest
// refuses one without).
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge {
	return &oidc.CodeChallenge{Challenge: a.Challenge, Method: oidc.CodeChallengeMethodS256}
}

// LogValue keeps state, nonce and challenge out of the library's logs.
func (a *authRequest) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", a.ID), slog.String("client_id", a.ClientID))
}

func (a *authRequest) prompts(p string) bool { return slices.Contains(a.Prompt, p) }

// codeKey is the store key of a code: its digest, so the store never
// holds a code that works.
func codeKey(code string) string {
	sum := sha256.Sum256([]byte(code))
	return hex.EncodeToString(sum[:])
}

// requests keeps authorization requests and codes in the store.
type requests struct{ st store.Store }

func (q requests) put(ctx context.Context, a *authRequest) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return q.st.PutOnce(ctx, kindAuthRequest, a.ID, b, a.CreatedAt.Add(authRequestTTL))
}

func (q requests) get(ctx context.Context, id string) (*authRequest, error) {
	b, err := q.st.GetOnce(ctx, kindAuthRequest, id)
	if err != nil {
		return nil, err
	}
	return decodeRequest(b)
}

func decodeRequest(b []byte) (*authRequest, error) {
	var a authRequest
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("provider: corrupt auth request: %w", err)
	}
	return &a, nil
}

// update changes the request in place; fn's error is returned as is.
func (q requests) update(ctx context.Context, id string, fn func(*authRequest) error) (*authRequest, error) {
	var out *authRequest
	err := q.st.UpdateOnce(ctx, kindAuthRequest, id, func(b []byte) ([]byte, error) {
		a, err := decodeRequest(b)
		if err != nil {
			return nil, err
		}
		if err := fn(a); err != nil {
			return nil, err
		}
		out = a
		return json.Marshal(a)
	})
	return out, err
}

// saveCode records the request's code, once.
func (q requests) saveCode(ctx context.Context, id, code string) error {
	if _, err := q.update(ctx, id, func(a *authRequest) error {
		if a.CodeIssued {
			return errors.New("a code was issued for this request already")
		}
		a.CodeIssued = true
		return nil
	}); err != nil {
		return err
	}
	return q.st.PutOnce(ctx, kindCode, codeKey(code), []byte(id), time.Now().Add(codeTTL))
}

// takeByCode spends a code and its request: whatever happens next (a
// wrong verifier, a wrong client), the code never works again.
func (q requests) takeByCode(ctx context.Context, code string) (*authRequest, error) {
	id, err := q.st.TakeOnce(ctx, kindCode, codeKey(code))
	if err != nil {
		return nil, err
	}
	b, err := q.st.TakeOnce(ctx, kindAuthRequest, string(id))
	if err != nil {
		return nil, err
	}
	return decodeRequest(b)
}
