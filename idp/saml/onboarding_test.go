package saml

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/internal/testidp"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// clock is a pinned, settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// idpState is what the IdP's metadata URL does, switched by a test.
type idpState int32

const (
	idpRefused idpState = iota // nothing listens (connection refused)
	idp404                     // the IdP exists, its metadata is not published
	idp500                     // the IdP fails
	idpHTML                    // a sign-in page where the metadata should be
	idpGarbage                 // bytes that are not XML
	idpSPMeta                  // metadata, but an SP's (no IDPSSODescriptor)
	idpReady                   // the real samlidp metadata
	idpHang                    // the request hangs until the test ends
)

// switchableIdP is a crewjam samlidp whose metadata URL goes through the
// states an IdP goes through while a customer sets it up.
type switchableIdP struct {
	idp   *testidp.SAML
	srv   *httptest.Server
	state atomic.Int32
	hits  atomic.Int32
	hang  chan struct{}
}

func newSwitchableIdP(t *testing.T, st idpState) *switchableIdP {
	t.Helper()
	s := &switchableIdP{idp: testidp.NewSAML(t), hang: make(chan struct{})}
	s.state.Store(int32(st))
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		switch idpState(s.state.Load()) {
		case idp404:
			http.NotFound(w, r)
		case idp500:
			http.Error(w, "internal error", 500)
		case idpHTML:
			io.WriteString(w, "<!DOCTYPE html>\n<html><body><form>Sign in</form></body></html>")
		case idpGarbage:
			io.WriteString(w, "metadata coming soon")
		case idpSPMeta:
			io.WriteString(w, `<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://sp.example"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></EntityDescriptor>`)
		case idpHang:
			select {
			case <-s.hang:
			case <-r.Context().Done():
			}
		default:
			s.idp.IdP.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() { close(s.hang); s.srv.Close() })
	return s
}

// client dials the IdP unless it is in the refused state.
func (s *switchableIdP) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if idpState(s.state.Load()) == idpRefused {
			return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
}

// openURL opens acme's SP on metadataURL with the clock and client given.
func openURL(t *testing.T, metadataURL string, clk *clock, client *http.Client, rotation time.Duration) *conn {
	t.Helper()
	st := badgertest.Open(t)
	raw, _ := json.Marshal(Config{MetadataURL: metadataURL})
	cv, err := Open(context.Background(), raw, connection.Deps{OrgID: "org_acme", OrgSlug: "acme", Store: st, SignInURL: mustURL("https://login.acme.test"),
		Logger: slog.New(slog.DiscardHandler), Now: clk.now, HTTPClient: client, KeyRotation: rotation})
	if err != nil {
		t.Fatalf("open with the IdP's metadata not there: %v", err)
	}
	return cv.(*conn)
}

// spMetadata is the SP metadata document, checked for the SP's own facts.
func spMetadata(t *testing.T, c *conn) (string, *saml.EntityDescriptor) {
	t.Helper()
	b, err := c.Metadata(context.Background())
	if err != nil {
		t.Fatalf("SP metadata: %v", err)
	}
	var md saml.EntityDescriptor
	if err := xml.Unmarshal(b, &md); err != nil {
		t.Fatalf("SP metadata is not XML: %v\n%s", err, b)
	}
	if md.EntityID != "https://login.acme.test/.gatehouse/saml/metadata" || len(md.SPSSODescriptors) != 1 ||
		md.SPSSODescriptors[0].AssertionConsumerServices[0].Location != "https://login.acme.test/.gatehouse/saml/acs" ||
		!strings.Contains(string(b), "X509Certificate") {
		t.Fatalf("SP metadata lacks the SP's entity, ACS or key:\n%s", b)
	}
	return string(b), &md
}

// Issue 9: the SP metadata comes from the SP's keys alone, whatever the
// IdP's metadata URL does; sign-ins wait for the IdP with a clear error of
// their own, and work moments after its metadata appears.
func TestSPMetadataBeforeIdP(t *testing.T) {
	for _, tt := range []struct {
		name   string
		state  idpState
		reason string // in the sign-in error (for the log)
	}{
		{"connection refused", idpRefused, "connection refused"},
		{"404", idp404, "HTTP 404"},
		{"500", idp500, "HTTP 500"},
		{"HTML page", idpHTML, "HTML page"},
		{"not XML", idpGarbage, `starts with "metadata coming soon"`},
		{"SP metadata", idpSPMeta, "describes no IdP"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := newSwitchableIdP(t, tt.state)
			clk := &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
			c := openURL(t, idp.srv.URL+"/metadata", clk, idp.client(), 0)
			first, _ := spMetadata(t, c)
			if n := idp.hits.Load(); n != 0 {
				t.Fatalf("serving the SP metadata fetched the IdP's %d times", n)
			}
			// A sign-in now: refused as not ready, with the exact reason.
			_, _, err := c.Begin(context.Background(), connection.BeginRequest{State: "state-0123456789abcdef"})
			if connection.KindOf(err) != connection.KindNotReady || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("sign-in before the IdP's metadata: kind %d, %v; want KindNotReady with %q", connection.KindOf(err), err, tt.reason)
			}
			// Within the back-off, no new fetch; the SP metadata is the same.
			if _, _, err := c.Begin(context.Background(), connection.BeginRequest{State: "state-0123456789abcdef"}); connection.KindOf(err) != connection.KindNotReady {
				t.Fatalf("second sign-in: %v", err)
			}
			if n := idp.hits.Load(); tt.state != idpRefused && n != 1 {
				t.Fatalf("the IdP was fetched %d times within the back-off, want 1", n)
			}
			if again, _ := spMetadata(t, c); again != first {
				t.Fatal("the SP metadata changed with the IdP's state")
			}
			// The IdP publishes its metadata: a sign-in a moment later works.
			idp.state.Store(int32(idpReady))
			clk.add(metadataRetryMin)
			to, _, err := c.Begin(context.Background(), connection.BeginRequest{State: "state-0123456789abcdef"})
			if err != nil || !strings.HasPrefix(to, idp.idp.URL+"/sso?SAMLRequest=") {
				t.Fatalf("sign-in once the IdP's metadata is there: %q, %v", to, err)
			}
			if again, _ := spMetadata(t, c); again != first {
				t.Fatal("the SP metadata changed once the IdP's metadata came")
			}
		})
	}
}

// The back-off after failed fetches stays short, and a success resets it.
func TestIdPMetadataRetryBackOff(t *testing.T) {
	idp := newSwitchableIdP(t, idp404)
	clk := &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	c := openURL(t, idp.srv.URL+"/metadata", clk, idp.client(), 0)
	begin := func() error {
		_, _, err := c.Begin(context.Background(), connection.BeginRequest{State: "state-0123456789abcdef"})
		return err
	}
	// Many failed attempts over a long time: each retry waits at most
	// metadataRetryMax.
	for range 20 {
		if begin() == nil {
			t.Fatal("signed in without IdP metadata")
		}
		clk.add(metadataRetryMax)
	}
	hits := idp.hits.Load()
	if hits < 15 {
		t.Fatalf("%d fetches in 20 retry intervals: the back-off grew past %s", hits, metadataRetryMax)
	}
	idp.state.Store(int32(idpReady))
	clk.add(metadataRetryMax)
	if err := begin(); err != nil {
		t.Fatalf("sign-in at most %s after the IdP's metadata appeared: %v", metadataRetryMax, err)
	}
}

// The SP metadata does not wait for an IdP fetch in progress.
func TestSPMetadataDoesNotWaitForIdP(t *testing.T) {
	idp := newSwitchableIdP(t, idpHang)
	clk := &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	c := openURL(t, idp.srv.URL+"/metadata", clk, idp.client(), 0)
	go c.Begin(context.Background(), connection.BeginRequest{State: "state-0123456789abcdef"})
	for idp.hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Metadata(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the SP metadata waited for a hanging IdP metadata fetch")
	}
}

var validUntilRE = regexp.MustCompile(`validUntil="([^"]+)"`)

// Issue 10: SP metadata fetched today stays valid past the next SP key
// rotation (IdPs that honour validUntil refuse every sign-in after it),
// and lists the key that signs then.
func TestSPMetadataValidUntil(t *testing.T) {
	year := 365 * 24 * time.Hour
	for _, tt := range []struct {
		name     string
		rotation time.Duration
		now      time.Time
	}{
		{"default rotation, today", 0, time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)},
		{"default rotation, just before a rotation", 0, time.Unix(0, 57*int64(year)-int64(time.Second)).UTC()},
		{"default rotation, just after a rotation", 0, time.Unix(0, 57*int64(year)+int64(time.Second)).UTC()},
		{"90 days", 90 * 24 * time.Hour, time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)},
		{"a day", 24 * time.Hour, time.Date(2026, 3, 10, 23, 59, 59, 0, time.UTC)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			idp := newSwitchableIdP(t, idpReady)
			clk := &clock{t: tt.now}
			c := openURL(t, idp.srv.URL+"/metadata", clk, idp.client(), tt.rotation)
			rotation := c.deps.KeyRotation
			doc, md := spMetadata(t, c)
			vu := validUntilRE.FindAllStringSubmatch(doc, -1)
			if len(vu) != 1 || md.ValidUntil.IsZero() {
				t.Fatalf("want one validUntil, on the root only; got %q", vu)
			}
			nextRotation := time.Unix(0, (tt.now.UnixNano()/int64(rotation)+1)*int64(rotation))
			if !md.ValidUntil.After(nextRotation) || !md.ValidUntil.After(tt.now.Add(rotation)) {
				t.Fatalf("validUntil %s: not past the next rotation %s and a whole rotation (%s) from now %s", md.ValidUntil, nextRotation, rotation, tt.now)
			}
			if tt.rotation == 0 && !md.ValidUntil.After(tt.now.AddDate(1, 0, 0)) {
				t.Fatalf("validUntil %s: want metadata fetched %s valid in a year", md.ValidUntil, tt.now)
			}
			if md.ValidUntil.Sub(tt.now) < 7*24*time.Hour && rotation >= 7*24*time.Hour {
				t.Fatalf("validUntil %s only %s away", md.ValidUntil, md.ValidUntil.Sub(tt.now))
			}
			// Just past the next rotation, the key that signs (and the key
			// that decrypts what the IdP encrypts to the first listed
			// certificate) are those this document lists, and it is valid.
			clk.t = nextRotation.Add(time.Minute)
			sp, err := c.sp(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(doc, base64.StdEncoding.EncodeToString(sp.Certificate.Raw)) {
				t.Fatal("after the rotation, the signing key is not in the metadata fetched before it")
			}
			if !clk.now().Before(md.ValidUntil) {
				t.Fatalf("metadata fetched at %s expired at %s, before the next rotation was over", tt.now, md.ValidUntil)
			}
			// A year on, with a pinned clock, today's metadata is still valid
			// under the default rotation.
			if tt.rotation == 0 {
				clk.t = tt.now.AddDate(1, 0, 0)
				if !clk.now().Before(md.ValidUntil) {
					t.Fatalf("metadata fetched at %s is expired a year later (validUntil %s)", tt.now, md.ValidUntil)
				}
			}
		})
	}
}

// Issue 11: the SP metadata lists the NameID formats the setup guides
// describe, email address first, as docs/federation.md says.
func TestSPMetadataNameIDFormats(t *testing.T) {
	c, _ := fixtureConn(t, nil)
	_, md := spMetadata(t, c)
	got := md.SPSSODescriptors[0].NameIDFormats
	want := []saml.NameIDFormat{saml.EmailAddressNameIDFormat, saml.PersistentNameIDFormat, saml.TransientNameIDFormat, saml.UnspecifiedNameIDFormat}
	if !slices.Equal(got, want) {
		t.Fatalf("SP metadata NameIDFormats %q, want %q", got, want)
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "federation.md"))
	if err != nil {
		t.Fatal(err)
	}
	// The SAML table asks for what the metadata lists first.
	row := regexp.MustCompile(`(?m)^\| Name ID format \| (.*)\|$`).FindStringSubmatch(string(doc))
	if row == nil || !strings.HasPrefix(strings.ToLower(row[1]), "email address") || !strings.Contains(row[1], "emailAddress") {
		t.Fatalf("docs/federation.md's Name ID format row %q does not ask for emailAddress, the format the SP metadata lists first", row)
	}
	// And says what Gatehouse does with each format it lists.
	for _, f := range want {
		short := string(f)[strings.LastIndex(string(f), ":")+1:]
		if !regexp.MustCompile("(?m)^\\| `" + short + "` \\|").MatchString(string(doc)) {
			t.Errorf("docs/federation.md has no row for NameID format %s", short)
		}
	}
}

// What Gatehouse does with each NameID format, as docs/federation.md
// says: the subject a person is linked by, and where the email comes from.
func TestNameIDFormats(t *testing.T) {
	sp := &saml.ServiceProvider{IDPMetadata: &saml.EntityDescriptor{EntityID: "https://idp.example"}}
	assertion := func(format saml.NameIDFormat, value, mail string) *saml.Assertion {
		a := &saml.Assertion{Subject: &saml.Subject{NameID: &saml.NameID{Format: string(format), Value: value}}}
		if mail != "" {
			a.AttributeStatements = []saml.AttributeStatement{{Attributes: []saml.Attribute{{Name: "email", Values: []saml.AttributeValue{{Value: mail}}}}}}
		}
		return a
	}
	for _, tt := range []struct {
		name                 string
		a                    *saml.Assertion
		subject, email, errs string
	}{
		{"emailAddress", assertion(saml.EmailAddressNameIDFormat, "ann@acme.test", ""), "ann@acme.test", "ann@acme.test", ""},
		{"emailAddress with an email attribute", assertion(saml.EmailAddressNameIDFormat, "ann@acme.test", "ann.b@acme.test"), "ann@acme.test", "ann.b@acme.test", ""},
		{"persistent", assertion(saml.PersistentNameIDFormat, "a1b2c3", "ann@acme.test"), "a1b2c3", "ann@acme.test", ""},
		{"persistent without email", assertion(saml.PersistentNameIDFormat, "a1b2c3", ""), "a1b2c3", "", ""},
		{"transient links by email", assertion(saml.TransientNameIDFormat, "_tr4n51en7", "Ann@Acme.test"), "email:ann@acme.test", "Ann@Acme.test", ""},
		{"unspecified", assertion(saml.UnspecifiedNameIDFormat, "ACME\\ann", "ann@acme.test"), "ACME\\ann", "ann@acme.test", ""},
		{"unspecified that is an address", assertion(saml.UnspecifiedNameIDFormat, "ann@acme.test", ""), "ann@acme.test", "ann@acme.test", ""},
		{"no NameID", &saml.Assertion{Subject: &saml.Subject{}}, "", "", "without a NameID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id, err := identity(sp, tt.a, nil)
			if tt.errs != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errs) {
					t.Fatalf("err %v, want %q", err, tt.errs)
				}
				return
			}
			if err != nil || id.Subject != tt.subject || id.Email != tt.email {
				t.Fatalf("subject %q email %q (%v), want %q %q", id.Subject, id.Email, err, tt.subject, tt.email)
			}
		})
	}
}

// Issue 12: metadata_xml that is not XML metadata says what it is, never
// just "EOF"; the same words for a metadata URL that serves such bytes.
func TestMetadataNotXML(t *testing.T) {
	idpPEM, err := os.ReadFile(filepath.Join("testdata", "idp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, idpCert, _ := parseKeyPair(idpPEM)
	good, _ := xml.Marshal((&saml.IdentityProvider{Certificate: idpCert, MetadataURL: mustURL(fixtureIdP), SSOURL: mustURL("https://idp.fixture.test/sso")}).Metadata())
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: idpCert.Raw})
	postOnly := strings.Replace(string(good), saml.HTTPRedirectBinding, saml.HTTPPostBinding, -1)
	for _, tt := range []struct {
		name, xml, want string
	}{
		{"spaces", "  \n ", "it is empty"},
		{"a URL", "https://idp.example/app/metadata", "it is a URL; put it in metadata_url"},
		{"a PEM certificate", string(certPEM), "PEM block"},
		{"base64 of the XML", base64.StdEncoding.EncodeToString(good), "base64-encoded XML"},
		{"JSON", `{"metadata": "..."}`, "looks like JSON"},
		{"text", "TODO: ask IT", `starts with "TODO: ask IT"`},
		{"an HTML page", "<!DOCTYPE html><html><head><title>Sign in</title></head></html>", "HTML page"},
		{"cut off", string(good[:len(good)/2]), "malformed or cut off"},
		{"just a start", "<EntityDescriptor", "malformed or cut off"},
		{"other XML", "<config><idp/></config>", "root element is <config>"},
		{"an SP's metadata", `<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"><SPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"/></EntityDescriptor>`, "describes no IdP"},
		{"no redirect binding", postOnly, "no HTTP-Redirect SingleSignOnService"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Config{MetadataXML: tt.xml}.Validate()
			if err == nil || !strings.HasPrefix(err.Error(), "metadata_xml: ") || !strings.Contains(err.Error(), tt.want) || strings.HasSuffix(err.Error(), ": EOF") {
				t.Fatalf("validate: %v, want metadata_xml: …%s…", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Key != "metadata_xml" {
				t.Fatalf("validate: %T, want a FieldError for metadata_xml", err)
			}
			// At load (a stored config opened by the server): the same words.
			raw, _ := json.Marshal(Config{MetadataXML: tt.xml})
			_, err = Open(context.Background(), raw, connection.Deps{OrgSlug: "acme"})
			if err == nil || !strings.Contains(err.Error(), "saml: org acme: metadata_xml: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("open: %v", err)
			}
		})
	}
	if err := (Config{MetadataXML: "\ufeff" + string(good)}).Validate(); err != nil {
		t.Fatalf("metadata with a byte order mark: %v", err)
	}
}

// An org that requires a second factor asks its IdP for the configured
// multi-factor context (RequestedAuthnContext, comparison minimum); other
// sign-ins ask for none.
func TestRequestedAuthnContext(t *testing.T) {
	idp := newSwitchableIdP(t, idpReady)
	clk := &clock{t: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
	c := openURL(t, idp.srv.URL+"/metadata", clk, idp.client(), 0)
	c.cfg.MFAContext = "http://schemas.microsoft.com/claims/multipleauthn"
	request := func(requireMFA bool, fresh ...bool) string {
		t.Helper()
		to, _, err := c.Begin(context.Background(), connection.BeginRequest{State: "state-0123456789abcdef", RequireMFA: requireMFA, Fresh: len(fresh) > 0})
		if err != nil {
			t.Fatal(err)
		}
		u, _ := url.Parse(to)
		raw, err := base64.StdEncoding.DecodeString(u.Query().Get("SAMLRequest"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(flate.NewReader(bytes.NewReader(raw)))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if x := request(true); !strings.Contains(x, `RequestedAuthnContext Comparison="minimum"`) || !strings.Contains(x, "http://schemas.microsoft.com/claims/multipleauthn</saml:AuthnContextClassRef>") {
		t.Fatalf("request with MFA required: %s", x)
	}
	if x := request(false); strings.Contains(x, "RequestedAuthnContext") {
		t.Fatalf("request without: %s", x)
	}
	// The shared SP was not changed by the first request.
	if x := request(false); strings.Contains(x, "multipleauthn") || strings.Contains(x, "ForceAuthn") {
		t.Fatalf("the SP kept the requested context: %s", x)
	}
	// A fresh sign-in forces the IdP to sign the person in again.
	if x := request(false, true); !strings.Contains(x, `ForceAuthn="true"`) {
		t.Fatalf("fresh request: %s", x)
	}
	if x := request(false); strings.Contains(x, "ForceAuthn") {
		t.Fatalf("the SP kept ForceAuthn: %s", x)
	}
}
