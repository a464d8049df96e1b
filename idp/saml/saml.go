// Package saml is the SAML 2.0 connection: Gatehouse is a service provider
// (one per org, with its own entity ID, ACS URL and key) to the org's IdP,
// on crewjam/saml. Requests are signed; responses are accepted only when
// the assertion is signed by the IdP and every condition holds, once.
package saml

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/token"
	"github.com/gatehouse/gatehouse/store"
)

// Type is the connection type name in configs and sessions.
const Type = "saml"

// Paths on the org's sign-in host. On the shared sign-in host, several
// orgs' SPs live side by side, so the org's slug follows: /acs/<slug>.
const (
	ACSPath      = connection.SAMLACSPath
	MetadataPath = connection.SAMLMetadataPath
	SLOPath      = connection.SAMLSLOPath
)

// Config is an org's SAML connection, stored as JSON with the org.
type Config struct {
	// The IdP's metadata: a URL (HTTPS, or HTTP on loopback) fetched at
	// open and every MetadataRefresh, keeping the last good copy; or the
	// XML itself.
	MetadataURL string `json:"metadata_url,omitempty" yaml:"metadata_url"`
	MetadataXML string `json:"metadata_xml,omitempty" yaml:"metadata_xml"`
	// MetadataRefresh (default 1h) for MetadataURL.
	MetadataRefresh time.Duration `json:"metadata_refresh,omitempty" yaml:"metadata_refresh"`
	// AllowIDPInitiated accepts unsolicited responses (off by default);
	// such sign-ins always land on IDPInitiatedURL.
	AllowIDPInitiated bool   `json:"allow_idp_initiated,omitempty" yaml:"allow_idp_initiated"`
	IDPInitiatedURL   string `json:"idp_initiated_url,omitempty" yaml:"idp_initiated_url"`
	// AllowSHA1 accepts SHA-1 signatures (off: refused).
	AllowSHA1 bool `json:"allow_sha1,omitempty" yaml:"allow_sha1"`
	// MFAContext is the AuthnContextClassRef requested (comparison
	// minimum) when the org requires a second factor, such as
	// http://schemas.microsoft.com/claims/multipleauthn for Entra ID.
	MFAContext string `json:"mfa_context,omitempty" yaml:"mfa_context"`
	// MFAContexts are the IdP's AuthnContextClassRef values that mean a
	// second factor, beyond the well-known multi-factor ones.
	MFAContexts []string `json:"mfa_contexts,omitempty" yaml:"mfa_contexts"`
}

// Validate reports the first thing wrong with c (see Problems).
func (c Config) Validate() error {
	if ps := c.Problems(); len(ps) > 0 {
		return ps[0]
	}
	return nil
}

// Problems is everything wrong with c, so that config validation reports
// it all at once. A problem with one key is a *FieldError.
func (c Config) Problems() []error {
	var ps []error
	switch {
	case (c.MetadataURL == "") == (c.MetadataXML == ""):
		ps = append(ps, errors.New("set exactly one of metadata_url and metadata_xml"))
	case c.AllowIDPInitiated && c.IDPInitiatedURL == "":
		ps = append(ps, errors.New("allow_idp_initiated needs idp_initiated_url: the fixed page IdP-initiated sign-ins land on"))
	case !c.AllowIDPInitiated && c.IDPInitiatedURL != "":
		ps = append(ps, errors.New("idp_initiated_url applies only with allow_idp_initiated"))
	}
	if u := c.IDPInitiatedURL; u != "" {
		if pu, err := url.Parse(u); err != nil || pu.Host == "" || pu.Scheme != "https" && pu.Scheme != "http" {
			ps = append(ps, &FieldError{Key: "idp_initiated_url", Err: fmt.Errorf("%q must be an absolute http(s) URL of one of the routes", u)})
		}
	}
	if c.MetadataRefresh < 0 {
		ps = append(ps, &FieldError{Key: "metadata_refresh", Err: errors.New("must not be negative")})
	}
	if c.MetadataURL != "" {
		u, err := url.Parse(c.MetadataURL)
		if err != nil || u.Host == "" || !(u.Scheme == "https" || u.Scheme == "http" && connection.Loopback(u.Hostname())) {
			ps = append(ps, &FieldError{Key: "metadata_url", Err: fmt.Errorf("%q must be an https URL (plain http only on loopback, for tests)", c.MetadataURL)})
		}
	}
	if c.MetadataXML != "" {
		if _, err := parseIdPMetadata([]byte(c.MetadataXML)); err != nil {
			ps = append(ps, &FieldError{Key: "metadata_xml", Err: err})
		}
	}
	return ps
}

// FieldError is a problem with one setting (see connection.FieldError).
type FieldError = connection.FieldError

// parseIdPMetadata reads an IdP's metadata document. When the bytes are
// not metadata it says what they look like instead: admins paste URLs,
// certificates, base64 and HTML pages where the XML belongs, and the XML
// decoder then says no more than "EOF".
func parseIdPMetadata(data []byte) (*saml.EntityDescriptor, error) {
	text := bytes.TrimSpace(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
	if len(text) == 0 {
		return nil, errors.New("not XML metadata: it is empty")
	}
	if text[0] != '<' {
		return nil, fmt.Errorf("not XML metadata: %s", notXML(text))
	}
	root, err := xmlRoot(text)
	if err != nil {
		return nil, fmt.Errorf("not XML metadata: %w", err)
	}
	switch root {
	case "EntityDescriptor", "EntitiesDescriptor":
	case "html", "HTML":
		return nil, errors.New("not XML metadata: it is an HTML page (a sign-in or error page?), not the IdP's <EntityDescriptor>")
	default:
		return nil, fmt.Errorf("not SAML metadata: the XML's root element is <%s>, not <EntityDescriptor>", root)
	}
	md, err := samlsp.ParseMetadata(text)
	if err != nil {
		return nil, fmt.Errorf("IdP metadata: %w", err)
	}
	if len(md.IDPSSODescriptors) == 0 {
		return nil, errors.New("metadata without an IDPSSODescriptor: it describes no IdP (a service provider's metadata, such as Gatehouse's own?)")
	}
	for _, d := range md.IDPSSODescriptors {
		for _, s := range d.SingleSignOnServices {
			if s.Binding == saml.HTTPRedirectBinding && s.Location != "" {
				return md, nil
			}
		}
	}
	return nil, errors.New("the IdP metadata has no HTTP-Redirect SingleSignOnService (Gatehouse sends its requests by that binding)")
}

// notXML says what text (not starting with '<') looks like.
func notXML(text []byte) string {
	lower := strings.ToLower(string(text[:min(len(text), 16)]))
	switch {
	case strings.HasPrefix(lower, "https://"), strings.HasPrefix(lower, "http://"):
		return "it is a URL; put it in metadata_url, or paste the XML document it serves"
	case bytes.HasPrefix(text, []byte("-----BEGIN")):
		return "it is a PEM block (a certificate?); Gatehouse needs the IdP's whole metadata XML, which contains its certificate"
	case text[0] == '{' || text[0] == '[':
		return "it looks like JSON; Gatehouse needs the IdP's SAML metadata XML"
	}
	compact := strings.Join(strings.Fields(string(text)), "")
	if raw, err := base64.StdEncoding.DecodeString(compact); err == nil && bytes.HasPrefix(bytes.TrimSpace(raw), []byte("<")) {
		return "it is base64-encoded XML; decode it and use the XML itself"
	}
	start := strings.ToValidUTF8(string(text[:min(len(text), 24)]), "?")
	return fmt.Sprintf("it starts with %q where an XML document starts with '<'", start)
}

// xmlRoot is the local name of the document's root element, after
// checking that the whole document is well-formed XML.
func xmlRoot(text []byte) (string, error) {
	d := xml.NewDecoder(bytes.NewReader(text))
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if root == "" {
				return "", errors.New("it has no root element")
			}
			return root, nil
		}
		if err != nil {
			// A cut-off copy (the paste ended early) is the common case.
			return "", fmt.Errorf("the XML is malformed or cut off: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
}

// Endpoints is where an org's SP lives; the caller picks the sign-in host.
func Endpoints(signIn url.URL, slug string, sharedHost bool) (entityID, acs, slo url.URL) {
	suffix := ""
	if sharedHost {
		suffix = "/" + slug
	}
	signIn.RawQuery = ""
	entityID, acs, slo = signIn, signIn, signIn
	entityID.Path, acs.Path, slo.Path = MetadataPath+suffix, ACSPath+suffix, SLOPath+suffix
	return entityID, acs, slo
}

// conn is one org's service provider. Its SP side (keys, entity ID,
// endpoints: what the SP metadata says) never waits for the IdP side: a
// customer's IT admin asks for the SP metadata before the IdP's exists.
type conn struct {
	cfg  Config
	deps connection.Deps
	// mu guards the fields below; it is never held across a network call,
	// so the SP metadata never waits for an IdP that does not answer.
	mu   sync.Mutex
	base saml.ServiceProvider // everything but IDPMetadata
	// current is base with the IdP's metadata: nil until a good copy.
	current *saml.ServiceProvider
	fetched time.Time
	// Without a good copy yet: failed fetches in a row, when to try again,
	// and why the last one failed.
	failures int
	retryAt  time.Time
	lastErr  error
	// keys is the generation the SP keys were loaded for; next is the
	// following generation's certificate, published ahead in metadata.
	keys int64
	next *x509.Certificate
	// offset is the org's generation offset (RotateKey moves it on), as
	// read from the store at offsetAt.
	offset   int64
	offsetAt time.Time
	// fetchMu: one IdP metadata fetch at a time.
	fetchMu sync.Mutex
}

var (
	_ connection.Logout      = (*conn)(nil)
	_ connection.Redirect    = (*conn)(nil)
	_ connection.Metadata    = (*conn)(nil)
	_ connection.PostBinding = (*conn)(nil)
	_ connection.Unsolicited = (*conn)(nil)
)

const metadataTimeout = 10 * time.Second

// maxMetadataSize bounds an IdP metadata document (Entra's is ~20 KiB;
// federations' aggregates are not accepted here).
const maxMetadataSize = 1 << 20

// Retries of an IdP metadata URL that has not given a good copy yet back
// off from metadataRetryMin to metadataRetryMax: short, so that a sign-in
// works moments after the IdP publishes its metadata, yet a missing IdP is
// not fetched on every attempt.
const (
	metadataRetryMin = time.Second
	metadataRetryMax = 10 * time.Second
)

// Open makes the org's SP from its keys (created on first use and kept in
// the store, so every node and restart uses the same). It reads inline IdP
// metadata, but fetches none: a metadata_url is fetched at the first
// sign-in, so the SP metadata is there whatever the state of the IdP.
func Open(ctx context.Context, raw json.RawMessage, deps connection.Deps) (any, error) {
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("saml: org %s: config: %w", deps.OrgSlug, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("saml: org %s: %w", deps.OrgSlug, err)
	}
	return open(ctx, cfg, deps)
}

// SetupMetadata is the SP metadata of an org that does not sign in with
// SAML yet (its entity ID, ACS and keys are the ones a SAML connection
// of the org will have), for its admin to give their IdP while setting
// up single sign-on.
func SetupMetadata(ctx context.Context, deps connection.Deps) ([]byte, error) {
	c, err := open(ctx, Config{}, deps)
	if err != nil {
		return nil, err
	}
	return c.Metadata(ctx)
}

// open makes the connection of a checked cfg (an empty one: the SP side
// only).
func open(ctx context.Context, cfg Config, deps connection.Deps) (*conn, error) {
	if cfg.MetadataRefresh == 0 {
		cfg.MetadataRefresh = time.Hour
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.HTTPClient == nil {
		deps.HTTPClient = &http.Client{Timeout: metadataTimeout}
	}
	if deps.KeyRotation <= 0 {
		deps.KeyRotation = 365 * 24 * time.Hour
	}
	entityID, acs, slo := Endpoints(deps.SignInURL, deps.OrgSlug, deps.SharedHost)
	c := &conn{cfg: cfg, deps: deps, keys: -1}
	c.base = saml.ServiceProvider{
		EntityID: entityID.String(), MetadataURL: entityID, AcsURL: acs, SloURL: slo,
		LogoutBindings:                   []string{saml.HTTPRedirectBinding, saml.HTTPPostBinding},
		SignatureMethod:                  dsig.RSASHA256SignatureMethod,
		AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		// Requests name no NameID format (unspecified): the IdP sends the
		// one its admin chose; the metadata lists those Gatehouse takes.
		AuthnNameIDFormat:           saml.UnspecifiedNameIDFormat,
		AllowIDPInitiated:           cfg.AllowIDPInitiated,
		DefaultRedirectURI:          cfg.IDPInitiatedURL,
		HTTPClient:                  deps.HTTPClient,
		RejectUnknownConditions:     true,
		RequireSignedResponseForCBC: true,
		RejectSHA1Signatures:        !cfg.AllowSHA1,
		RejectExpiredIDPMetadata:    true,
		LimitRelayStateLength:       true,
		ReplayCache:                 replayCache{st: deps.Store, org: deps.OrgID, now: deps.Now},
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.rotateLocked(ctx); err != nil {
		return nil, err
	}
	if cfg.MetadataXML != "" {
		md, err := parseIdPMetadata([]byte(cfg.MetadataXML))
		if err != nil {
			return nil, fmt.Errorf("saml: org %s: metadata_xml: %w", deps.OrgSlug, err)
		}
		sp := c.base
		sp.IDPMetadata = md
		c.current, c.fetched = &sp, deps.Now()
	}
	return c, nil
}

// generation numbers the SP key periods: keys rotate at fixed instants
// every deps.KeyRotation, the same on every node, and when an admin
// rotates them (RotateKey: the org's offset, read every offsetRecheck).
func (c *conn) generation(ctx context.Context) int64 {
	now := c.deps.Now()
	if c.offsetAt.IsZero() || now.Sub(c.offsetAt) >= offsetRecheck {
		if off, err := keyOffset(ctx, c.deps.Store, c.deps.OrgID); err == nil {
			c.offset = off
		} else {
			c.deps.Logger.Warn("saml: reading the SP key offset failed; keeping the last", "org", c.deps.OrgSlug, "err", err)
		}
		c.offsetAt = now
	}
	return now.UnixNano()/int64(c.deps.KeyRotation) + c.offset
}

// offsetRecheck bounds how long a node signs with a key an admin rotated
// away from.
const offsetRecheck = 10 * time.Second

func keyOffsetKey(orgID string) string { return "saml-sp-key-offset/" + orgID }

func keyOffset(ctx context.Context, st store.Store, orgID string) (int64, error) {
	b, err := st.GetBlob(ctx, keyOffsetKey(orgID))
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(b.Value), 10, 64)
}

// RotateKey moves the org's SP key on a generation now, ahead of its
// time: the next key, whose certificate the SP metadata has published
// ahead, starts signing, the current one still decrypts for a period, and
// a new next one is published. Every node follows within offsetRecheck.
func RotateKey(ctx context.Context, st store.Store, orgID string) (int64, error) {
	lock, owner := "saml-sp-key-rotate/"+orgID, token.RandomID()
	for range 50 {
		ok, err := st.AcquireLock(ctx, lock, owner, 10*time.Second)
		if err != nil {
			return 0, fmt.Errorf("saml: rotate key: %w", err)
		}
		if ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer st.ReleaseLock(context.WithoutCancel(ctx), lock, owner)
	off, err := keyOffset(ctx, st, orgID)
	if err != nil {
		return 0, fmt.Errorf("saml: rotate key: %w", err)
	}
	off++
	if err := st.PutBlob(ctx, keyOffsetKey(orgID), []byte(strconv.FormatInt(off, 10))); err != nil {
		return 0, fmt.Errorf("saml: rotate key: %w", err)
	}
	return off, nil
}

// rotateLocked loads the keys of the current generation if they are not
// loaded yet: the current key signs and decrypts; the previous one still
// decrypts what an IdP encrypted before it saw the new metadata; the next
// one's certificate is published ahead, and decrypts too.
func (c *conn) rotateLocked(ctx context.Context) error {
	gen := c.generation(ctx)
	if gen == c.keys {
		return nil
	}
	key, cert, err := spKey(ctx, c.deps, gen)
	if err != nil {
		return err
	}
	nextKey, nextCert, err := spKey(ctx, c.deps, gen+1)
	if err != nil {
		return err
	}
	c.base.Key, c.base.Certificate, c.base.EncryptionKey, c.base.EncryptionCertificate = key, cert, key, cert
	c.base.DecryptionKeys = []*rsa.PrivateKey{nextKey}
	if prevKey, _, err := spKey(ctx, c.deps, gen-1); err == nil {
		c.base.DecryptionKeys = append(c.base.DecryptionKeys, prevKey)
	}
	c.keys, c.next = gen, nextCert
	if c.current != nil {
		sp := c.base
		sp.IDPMetadata = c.current.IDPMetadata
		c.current = &sp
		c.deps.Logger.Info("saml: SP key rotated", "org", c.deps.OrgSlug, "generation", gen)
	}
	return nil
}

// rotate is rotateLocked that keeps the loaded key when loading the next
// fails, rather than fail sign-ins or the SP metadata.
func (c *conn) rotate(ctx context.Context) {
	if err := c.rotateLocked(ctx); err != nil {
		c.deps.Logger.Error("saml: SP key rotation failed; keeping the current key", "org", c.deps.OrgSlug, "err", err)
	}
}

// sp returns the service provider with fresh-enough IdP metadata: a
// refresh that fails keeps the last good copy (and says so in the log).
// Without any good copy yet it is an error of KindNotReady.
func (c *conn) sp(ctx context.Context) (*saml.ServiceProvider, error) {
	c.mu.Lock()
	c.rotate(ctx)
	cur, due := c.current, c.fetchDueLocked()
	c.mu.Unlock()
	if due {
		cur = c.fetch(ctx)
	}
	if cur != nil {
		return cur, nil
	}
	c.mu.Lock()
	err := c.lastErr
	c.mu.Unlock()
	if err == nil {
		err = errors.New("not fetched yet")
	}
	return nil, connection.Errorf(connection.KindNotReady, "saml: org %s: no IdP metadata yet (sign-ins wait for it): %w", c.deps.OrgSlug, err)
}

// fetchDueLocked: without a good copy, once the back-off allows; with
// one, every MetadataRefresh.
func (c *conn) fetchDueLocked() bool {
	if c.cfg.MetadataURL == "" {
		return false
	}
	now := c.deps.Now()
	if c.current == nil {
		return !now.Before(c.retryAt)
	}
	return now.Sub(c.fetched) >= c.cfg.MetadataRefresh
}

// fetch reads the IdP metadata URL (once for all requests waiting) and
// returns the service provider as it then is.
func (c *conn) fetch(ctx context.Context) *saml.ServiceProvider {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	c.mu.Lock()
	due, cur := c.fetchDueLocked(), c.current
	c.mu.Unlock()
	if !due {
		return cur // fetched by the request this one waited for
	}
	md, err := c.download(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.deps.Now()
	if err != nil {
		if c.current != nil {
			c.deps.Logger.Warn("saml: metadata refresh failed; keeping the last good copy", "org", c.deps.OrgSlug, "url", c.cfg.MetadataURL, "err", err)
			c.fetched = now // try again after another interval
			return c.current
		}
		c.failures++
		wait := min(metadataRetryMin<<min(c.failures-1, 8), metadataRetryMax)
		c.retryAt, c.lastErr = now.Add(wait), err
		c.deps.Logger.Warn("saml: IdP metadata not available yet; SP metadata is served, sign-ins wait for it", "org", c.deps.OrgSlug,
			"url", c.cfg.MetadataURL, "err", err, "retry_in", wait.String())
		return nil
	}
	if c.current == nil && c.failures > 0 {
		c.deps.Logger.Info("saml: IdP metadata now available", "org", c.deps.OrgSlug, "url", c.cfg.MetadataURL, "failed_before", c.failures)
	}
	sp := c.base
	sp.IDPMetadata = md
	c.current, c.fetched, c.failures, c.retryAt, c.lastErr = &sp, now, 0, time.Time{}, nil
	return c.current
}

// download fetches and parses the IdP's metadata URL.
func (c *conn) download(ctx context.Context) (*saml.EntityDescriptor, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), metadataTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", c.cfg.MetadataURL, nil)
	if err != nil {
		return nil, fmt.Errorf("saml: org %s: metadata %s: %w", c.deps.OrgSlug, c.cfg.MetadataURL, err)
	}
	resp, err := c.deps.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("saml: org %s: metadata %s: %w", c.deps.OrgSlug, c.cfg.MetadataURL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("saml: org %s: metadata %s: HTTP %d", c.deps.OrgSlug, c.cfg.MetadataURL, resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataSize+1))
	if err != nil {
		return nil, fmt.Errorf("saml: org %s: metadata %s: %w", c.deps.OrgSlug, c.cfg.MetadataURL, err)
	}
	if len(data) > maxMetadataSize {
		return nil, fmt.Errorf("saml: org %s: metadata %s is larger than %d bytes", c.deps.OrgSlug, c.cfg.MetadataURL, maxMetadataSize)
	}
	md, err := parseIdPMetadata(data)
	if err != nil {
		return nil, fmt.Errorf("saml: org %s: metadata %s: %w", c.deps.OrgSlug, c.cfg.MetadataURL, err)
	}
	return md, nil
}

// flow is what Begin keeps for Finish.
type flow struct {
	RequestID string `json:"id"`
}

func (c *conn) Begin(ctx context.Context, req connection.BeginRequest) (string, []byte, error) {
	sp, err := c.sp(ctx)
	if err != nil {
		return "", nil, err
	}
	if req.RequireMFA && c.cfg.MFAContext != "" {
		// Ask the IdP for a multi-factor context: on a copy, the SP is
		// shared by concurrent sign-ins.
		cp := *sp
		cp.RequestedAuthnContext = &saml.RequestedAuthnContext{Comparison: "minimum", AuthnContextClassRef: c.cfg.MFAContext}
		sp = &cp
	}
	if req.Fresh {
		// ForceAuthn: the IdP signs the person in again. On a copy, as
		// above.
		cp := *sp
		cp.ForceAuthn = &[]bool{true}[0]
		sp = &cp
	}
	ar, err := sp.MakeAuthenticationRequest(sp.GetSSOBindingLocation(saml.HTTPRedirectBinding), saml.HTTPRedirectBinding, saml.HTTPPostBinding)
	if err != nil {
		return "", nil, connection.Errorf(connection.KindInternal, "saml: org %s: authn request: %w", c.deps.OrgSlug, err)
	}
	u, err := ar.Redirect(req.State, sp)
	if err != nil {
		return "", nil, connection.Errorf(connection.KindInternal, "saml: org %s: authn request: %w", c.deps.OrgSlug, err)
	}
	b, _ := json.Marshal(flow{RequestID: ar.ID})
	return u.String(), b, nil
}

func (c *conn) Finish(ctx context.Context, r *http.Request, _ connection.BeginRequest, raw []byte) (connection.Identity, error) {
	var f flow
	if err := json.Unmarshal(raw, &f); err != nil || f.RequestID == "" {
		return connection.Identity{}, connection.Errorf(connection.KindInternal, "saml: corrupt flow record")
	}
	return c.parse(ctx, r, []string{f.RequestID})
}

// FinishUnsolicited accepts an IdP-initiated response when the org allows
// them; the sign-in then lands on the configured page only.
func (c *conn) FinishUnsolicited(ctx context.Context, r *http.Request) (connection.Identity, string, error) {
	if !c.cfg.AllowIDPInitiated {
		return connection.Identity{}, "", connection.Errorf(connection.KindInvalid, "saml: unsolicited response (no sign-in of this browser to answer) and IdP-initiated sign-in is off for org %s", c.deps.OrgSlug)
	}
	id, err := c.parse(ctx, r, nil)
	return id, c.cfg.IDPInitiatedURL, err
}

func (c *conn) parse(ctx context.Context, r *http.Request, requestIDs []string) (id connection.Identity, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = connection.Errorf(connection.KindInvalid, "saml: response could not be processed: %v", p)
		}
	}()
	// crewjam/saml reads r.PostForm; the caller has bounded the body.
	if err := r.ParseForm(); err != nil {
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "saml: form: %w", err)
	}
	if err := refuseDTD(r.PostForm.Get("SAMLResponse")); err != nil {
		return connection.Identity{}, err
	}
	if r.Form.Has("SAMLart") || r.URL.RawQuery != "" {
		// Only HTTP-POST responses: an artifact would make Gatehouse call
		// the IdP for anyone who posts one.
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "saml: only HTTP-POST responses are taken (got an artifact or a query string)")
	}
	sp, err := c.sp(ctx)
	if err != nil {
		return connection.Identity{}, err
	}
	if requestIDs != nil && sp.AllowIDPInitiated {
		// Answering our own request: IdP-initiated leniency (an empty
		// InResponseTo) does not apply.
		strict := *sp
		strict.AllowIDPInitiated = false
		sp = &strict
	}
	a, err := sp.ParseResponse(r, requestIDs)
	if err != nil {
		return connection.Identity{}, classify(err)
	}
	return identity(sp, a, c.cfg.MFAContexts)
}

// refuseDTD refuses a response with a document type declaration or a
// comment: SAML
// never needs one, and entities are how XML bombs and external-entity
// reads arrive. (Go's XML parser expands neither, but nothing that
// declares them is a response an IdP sent.)
func refuseDTD(b64 string) error {
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
	if err != nil {
		return nil // crewjam/saml reports the encoding error
	}
	if bytes.Contains(bytes.ToUpper(raw), []byte("<!DOCTYPE")) || bytes.Contains(bytes.ToUpper(raw), []byte("<!ENTITY")) {
		return connection.Errorf(connection.KindInvalid, "saml: response with a DOCTYPE or ENTITY declaration")
	}
	// Canonicalization drops comments, so a comment can split a signed
	// NameID ("ann@acme.test<!---->.evil.test") for parsers that read one
	// text node. IdPs send none; refuse any.
	if bytes.Contains(raw, []byte("<!--")) {
		return connection.Errorf(connection.KindInvalid, "saml: response with an XML comment (comment injection)")
	}
	return nil
}

// classify maps crewjam/saml's errors (whose detail lives in the
// InvalidResponseError's PrivateErr, never shown to the person) to kinds.
func classify(err error) error {
	detail := err
	var ire *saml.InvalidResponseError
	if errors.As(err, &ire) && ire.PrivateErr != nil {
		detail = ire.PrivateErr
	}
	kind := connection.KindInvalid
	switch {
	case errors.Is(detail, saml.ErrExpired), errors.Is(detail, saml.ErrNotYetValid):
		kind = connection.KindExpired
	case errors.Is(err, store.ErrUnavailable):
		// The replay cache could not be written: our failure, not the IdP's.
		kind = connection.KindInternal
	}
	return connection.Errorf(kind, "saml: response rejected: %w", detail)
}

// Attribute names tried when the org maps none, by field: the common
// names, URIs and OIDs of Entra ID, Okta, ADFS, Google and Shibboleth.
var (
	emailAttrs = []string{"email", "mail", "emailaddress", "urn:oid:0.9.2342.19200300.100.1.3",
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"}
	nameAttrs   = []string{"name", "displayname", "cn", "urn:oid:2.16.840.1.113730.3.1.241", "urn:oid:2.5.4.3", "http://schemas.microsoft.com/identity/claims/displayname"}
	givenAttrs  = []string{"givenname", "firstname", "urn:oid:2.5.4.42", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"}
	surAttrs    = []string{"sn", "surname", "lastname", "urn:oid:2.5.4.4", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"}
	groupsAttrs = []string{"groups", "memberof", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"}
)

func identity(sp *saml.ServiceProvider, a *saml.Assertion, mfaContexts []string) (connection.Identity, error) {
	if a.Subject == nil || a.Subject.NameID == nil || strings.TrimSpace(a.Subject.NameID.Value) == "" {
		return connection.Identity{}, connection.Errorf(connection.KindInvalid, "saml: assertion without a NameID")
	}
	claims := map[string][]string{}
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			var vals []string
			for _, v := range at.Values {
				vals = append(vals, v.Value)
			}
			for _, k := range []string{at.Name, at.FriendlyName} {
				if k != "" {
					claims[k] = append(claims[k], vals...)
					claims[strings.ToLower(k)] = claims[k]
				}
			}
		}
	}
	firstOf := func(names []string) string {
		for _, n := range names {
			if v := claims[n]; len(v) > 0 && strings.TrimSpace(v[0]) != "" {
				return strings.TrimSpace(v[0])
			}
		}
		return ""
	}
	allOf := func(names []string) []string {
		for _, n := range names {
			if v := claims[n]; len(v) > 0 {
				return v
			}
		}
		return nil
	}
	nameID := a.Subject.NameID
	id := connection.Identity{Issuer: sp.IDPMetadata.EntityID, Subject: nameID.Value, EmailVerified: true, Claims: claims}
	hint := logoutHint{Issuer: sp.IDPMetadata.EntityID, NameID: nameID.Value, Format: nameID.Format}
	for _, st := range a.AuthnStatements {
		if st.SessionIndex != "" {
			hint.SessionIndex = st.SessionIndex
		}
	}
	b, _ := json.Marshal(hint)
	id.LogoutHint = string(b)
	id.Email = firstOf(emailAttrs)
	if id.Email == "" && (nameID.Format == string(saml.EmailAddressNameIDFormat) || strings.Contains(nameID.Value, "@")) {
		id.Email = nameID.Value
	}
	id.Name = firstOf(nameAttrs)
	if id.Name == "" {
		id.Name = strings.TrimSpace(firstOf(givenAttrs) + " " + firstOf(surAttrs))
	}
	id.Groups = allOf(groupsAttrs)
	claims["nameid"] = []string{nameID.Value}
	if nameID.Format == string(saml.TransientNameIDFormat) {
		// A transient NameID changes at every sign-in: link by email.
		id.Subject = "email:" + strings.ToLower(id.Email)
	}
	for _, st := range a.AuthnStatements {
		if ref := st.AuthnContext.AuthnContextClassRef; ref != nil && (mfaClass(ref.Value) || slices.Contains(mfaContexts, ref.Value)) {
			id.MFA = true
		}
	}
	if slices.ContainsFunc(claims["http://schemas.microsoft.com/claims/authnmethodsreferences"], mfaClass) {
		id.MFA = true
	}
	return id, nil
}

// mfaClass recognizes authentication context classes and methods that
// mean a second factor (Entra ID's multipleauthn, REFEDS MFA, ...).
func mfaClass(v string) bool {
	v = strings.ToLower(v)
	return strings.Contains(v, "multipleauthn") || strings.Contains(v, "refeds.org/profile/mfa") || strings.Contains(v, "multifactor") ||
		strings.Contains(v, "timesynctoken") || strings.Contains(v, "mobiletwofactor")
}

// logoutHint is what single logout needs from the sign-in's assertion.
type logoutHint struct {
	// Issuer is the IdP that asserted the NameID: a logout request from
	// another IdP (after the org changed IdP) never matches.
	Issuer       string `json:"i,omitempty"`
	NameID       string `json:"n"`
	Format       string `json:"f,omitempty"`
	SessionIndex string `json:"s,omitempty"`
}

// LogoutURL asks the IdP to end the person's session there too, by the
// HTTP-Redirect binding, signed; "" if its metadata offers no such
// single logout service.
func (c *conn) LogoutURL(ctx context.Context, raw, relayState string) (string, string, error) {
	var hint logoutHint
	if err := json.Unmarshal([]byte(raw), &hint); err != nil || hint.NameID == "" {
		return "", "", nil // a session from before single logout, or not SAML
	}
	sp, err := c.sp(ctx)
	if err != nil {
		return "", "", err
	}
	loc := sp.GetSLOBindingLocation(saml.HTTPRedirectBinding)
	if loc == "" {
		return "", "", nil
	}
	opts := []saml.LogoutRequestOption{saml.WithSessionIndex(hint.SessionIndex)}
	if hint.Format != "" {
		// The NameID exactly as the IdP asserted it, format included.
		opts = append(opts, func(r *saml.LogoutRequest) { r.NameID.Format = hint.Format })
	}
	req, err := sp.MakeLogoutRequest(loc, hint.NameID, opts...)
	if err != nil {
		return "", "", connection.Errorf(connection.KindInternal, "saml: org %s: logout request: %w", c.deps.OrgSlug, err)
	}
	u, err := sp.RedirectLogoutRequestURL(req, relayState)
	if err != nil {
		return "", "", connection.Errorf(connection.KindInternal, "saml: org %s: logout request: %w", c.deps.OrgSlug, err)
	}
	return u.String(), req.ID, nil
}

// FinishLogout checks the IdP's signed LogoutResponse to requestID.
func (c *conn) FinishLogout(ctx context.Context, r *http.Request, requestID string) error {
	if err := r.ParseForm(); err != nil {
		return connection.Errorf(connection.KindInvalid, "saml: logout response form: %w", err)
	}
	sp, err := c.sp(ctx)
	if err != nil {
		return err
	}
	if _, err := sp.ParseLogoutResponse(r, []string{requestID}); err != nil {
		return classify(err)
	}
	return nil
}

// AcceptLogout validates a LogoutRequest the IdP sent through the browser
// (HTTP-Redirect or HTTP-POST): signed by the IdP, for this SP's SLO URL,
// from the IdP's entity, in time, and never seen before (the store's
// replay cache). It matches the sessions whose sign-in asserted its NameID
// and, if it names any, one of its SessionIndexes.
func (c *conn) AcceptLogout(ctx context.Context, r *http.Request) (connection.LogoutRequest, error) {
	sp, err := c.sp(ctx)
	if err != nil {
		return connection.LogoutRequest{}, err
	}
	req, err := sp.ValidateLogoutRequest(r)
	if err != nil {
		return connection.LogoutRequest{}, classify(err)
	}
	if req.NameID == nil || strings.TrimSpace(req.NameID.Value) == "" {
		return connection.LogoutRequest{}, connection.Errorf(connection.KindInvalid, "saml: org %s: logout request names no NameID", c.deps.OrgSlug)
	}
	nameID, issuer := req.NameID.Value, req.Issuer.Value // crewjam checked Issuer is the IdP's
	var indexes []string
	for _, i := range req.AllSessionIndexes() {
		indexes = append(indexes, i.Value)
	}
	return connection.LogoutRequest{ID: req.ID, Matches: func(raw string) bool {
		var hint logoutHint
		if json.Unmarshal([]byte(raw), &hint) != nil || hint.NameID != nameID || hint.Issuer != "" && hint.Issuer != issuer {
			return false
		}
		return len(indexes) == 0 || hint.SessionIndex == "" || slices.Contains(indexes, hint.SessionIndex)
	}}, nil
}

// AnswerLogout is the IdP's single logout service (HTTP-Redirect) with
// the signed LogoutResponse to requestID, Success or, when the sessions
// could not all be ended, Responder; "" if the IdP offers none.
func (c *conn) AnswerLogout(ctx context.Context, requestID, relayState string, done bool) (string, error) {
	sp, err := c.sp(ctx)
	if err != nil {
		return "", err
	}
	if sp.GetSLOBindingLocation(saml.HTTPRedirectBinding) == "" {
		return "", nil
	}
	status := saml.StatusSuccess
	if !done {
		status = saml.StatusResponder // the SP could not end its sessions
	}
	u, err := sp.MakeRedirectLogoutResponseWithStatus(requestID, relayState, saml.Status{StatusCode: saml.StatusCode{Value: status}})
	if err != nil {
		return "", connection.Errorf(connection.KindInternal, "saml: org %s: logout response: %w", c.deps.OrgSlug, err)
	}
	return u.String(), nil
}

// NameIDFormats are the NameID formats the SP metadata lists, in order of
// preference (docs/federation.md says what Gatehouse does with each): an
// IdP that picks the first it can issue (Shibboleth, SimpleSAMLphp when
// the request names none) picks the one the setup guides ask for.
var NameIDFormats = []saml.NameIDFormat{saml.EmailAddressNameIDFormat, saml.PersistentNameIDFormat,
	saml.TransientNameIDFormat, saml.UnspecifiedNameIDFormat}

// Metadata is the org's SP metadata, for the IdP's administrator. It is
// made from the SP's keys and endpoints alone: it never waits for, or
// fails with, the IdP's side.
// AnswersByPost: the IdP answers at the ACS, by the HTTP-POST binding.
func (c *conn) AnswersByPost() {}

func (c *conn) Metadata(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	c.rotate(ctx)
	sp, next, gen := c.base, c.next, c.keys
	c.mu.Unlock()
	md := sp.Metadata()
	if len(md.SPSSODescriptors) != 1 {
		return nil, fmt.Errorf("saml: org %s: SP metadata has %d SPSSODescriptors", c.deps.OrgSlug, len(md.SPSSODescriptors))
	}
	spd := &md.SPSSODescriptors[0]
	// The next key, published ahead: an IdP that reads this metadata
	// before the rotation trusts the new key from its first use.
	if next != nil {
		for _, use := range []string{"signing", "encryption"} {
			spd.KeyDescriptors = append(spd.KeyDescriptors, saml.KeyDescriptor{Use: use,
				KeyInfo: saml.KeyInfo{X509Data: saml.X509Data{X509Certificates: []saml.X509Certificate{{Data: base64.StdEncoding.EncodeToString(next.Raw)}}}}})
		}
	}
	spd.NameIDFormats = slices.Clone(NameIDFormats)
	// IdPs that honour validUntil (SimpleSAMLphp, AD FS) refuse every
	// sign-in once it passes, so it is as late as this document stays
	// true: until the rotation after next, when a key it does not list
	// signs, and the key it lists first stops decrypting.
	spd.ValidUntil, md.ValidUntil, md.CacheDuration = nil, time.Time{}, 0
	if until, ok := c.validUntil(gen); ok {
		md.ValidUntil = until
	} else {
		md.CacheDuration = saml.DefaultCacheDuration // the root needs one of the two
	}
	b, err := xml.MarshalIndent(md, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("saml: org %s: SP metadata: %w", c.deps.OrgSlug, err)
	}
	return append([]byte(xml.Header), b...), nil
}

// validUntil is when SP metadata made in key generation gen stops being
// true: the start of generation gen+2 (false if that is past time's range).
func (c *conn) validUntil(gen int64) (time.Time, bool) {
	rot := int64(c.deps.KeyRotation)
	if gen < 0 || gen+2 > math.MaxInt64/rot {
		return time.Time{}, false
	}
	return time.Unix(0, (gen+2)*rot).UTC(), true
}

// replayCache keeps accepted assertion IDs in the store until they
// expire, so a replay fails on every node.
type replayCache struct {
	st  store.Store
	org string
	now func() time.Time
}

func (rc replayCache) Consume(assertionID string, expiresAt time.Time) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Kept past the assertion's own expiry by the clock skew it may still
	// be accepted with, measured on this node's clock (the IdP's may differ).
	keep := expiresAt
	if now := rc.now(); now.After(keep) {
		keep = now
	}
	keep = keep.Add(saml.MaxClockSkew)
	err := rc.st.PutOnce(ctx, "saml-assertion", rc.org+"/"+assertionID, nil, keep)
	if errors.Is(err, store.ErrAlreadyExists) {
		return saml.ErrAssertionReplayed
	}
	return err
}

// spKey is the org's SP key and self-signed certificate, made once and
// shared through the store. The certificate is only a container for the
// public key in metadata (as the SAML metadata interoperability profile
// says), valid for ten years.
func spKey(ctx context.Context, deps connection.Deps, gen int64) (*rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	now := deps.Now()
	// A random serial: two generations made at one instant (a pinned
	// clock) must still differ.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "Gatehouse SAML SP " + deps.OrgSlug},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	var buf bytes.Buffer
	_ = pem.Encode(&buf, &pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(key)})
	_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	stored, err := deps.Store.Secret(ctx, fmt.Sprintf("saml-sp-key/%s/%d", deps.OrgID, gen), buf.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("saml: org %s: SP key: %w", deps.OrgSlug, err)
	}
	return parseKeyPair(stored)
}

func mustPKCS8(k *rsa.PrivateKey) []byte {
	b, _ := x509.MarshalPKCS8PrivateKey(k)
	return b
}

func parseKeyPair(b []byte) (*rsa.PrivateKey, *x509.Certificate, error) {
	var key *rsa.PrivateKey
	var cert *x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		switch blk.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("saml: stored SP key: %w", err)
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, nil, errors.New("saml: stored SP key is not RSA")
			}
			key = rk
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, nil, fmt.Errorf("saml: stored SP certificate: %w", err)
			}
			cert = c
		}
	}
	if key == nil || cert == nil {
		return nil, nil, errors.New("saml: stored SP key pair is incomplete")
	}
	return key, cert, nil
}

// SetClockSkew sets how far a SAML message's times may be off. crewjam/saml
// reads it from package variables, so it is process-wide: set it once,
// before any request.
func SetClockSkew(d time.Duration) {
	saml.MaxClockSkew = d
	// An IssueInstant may also be that far behind: 90s of transit plus it.
	saml.MaxIssueDelay = 90*time.Second + d
}

// Schema is the SAML connection's settings schema (the saml: block of an
// org's connection), for config to decode and check.
type Schema struct{}

// Required is what the block needs, for the message when it is missing.
func (Schema) Required() string { return "metadata_url or metadata_xml" }

// NewSettings is a Config to decode the block into.
func (Schema) NewSettings() any { return &Config{} }

// Problems is everything wrong with decoded settings.
func (Schema) Problems(settings any) []error { return settings.(*Config).Problems() }
