package saml

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/gatehouse/gatehouse/idp/connection"
	"github.com/gatehouse/gatehouse/store"
	"github.com/gatehouse/gatehouse/store/badgerstore/badgertest"
)

// fixtureConn is the SP the fixtures were made for, its clock pinned to
// fixtureTime, on a fresh store.
func fixtureConn(t testing.TB, mod func(*Config)) (*conn, store.Store) {
	t.Helper()
	st := badgertest.Open(t)
	idpPEM, err := os.ReadFile(filepath.Join("testdata", "idp.pem"))
	if err != nil {
		t.Fatal(err)
	}
	_, idpCert, err := parseKeyPair(idpPEM)
	if err != nil {
		t.Fatal(err)
	}
	idp := saml.IdentityProvider{Certificate: idpCert, MetadataURL: mustURL(fixtureIdP), SSOURL: mustURL("https://idp.fixture.test/sso")}
	md, _ := xml.Marshal(idp.Metadata())
	cfg := Config{MetadataXML: string(md)}
	if mod != nil {
		mod(&cfg)
	}
	raw, _ := json.Marshal(cfg)
	signIn, _ := url.Parse("https://login.acme.test")
	cv, err := Open(context.Background(), raw, connection.Deps{OrgID: "org_acme", OrgSlug: "acme", Store: st, SignInURL: *signIn, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	c := cv.(*conn)
	clock := dsig.NewFakeClockAt(fixtureTime)
	c.base.Clock, c.current.Clock = clock, clock
	return c, st
}

func mustURL(s string) url.URL {
	u, _ := url.Parse(s)
	return *u
}

func acsRequest(xmlDoc string) *http.Request {
	form := url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString([]byte(xmlDoc))}, "RelayState": {"state-0123456789abcdef"}}
	r := httptest.NewRequest("POST", fixtureACS, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "response-"+name+".xml"))
	if err != nil {
		t.Fatalf("%v (regenerate with: go test ./idp/saml -run TestGenerateFixtures -update)", err)
	}
	return string(b)
}

func TestAttacks(t *testing.T) {
	tests := []struct {
		name   string
		kind   connection.Kind // the rejection; 0 with ok
		reason string          // in the log line
		ok     bool
	}{
		{name: "valid", ok: true},
		{name: "unsigned", kind: connection.KindInvalid, reason: "signature element not present"},
		{name: "signed-by-another-key", kind: connection.KindInvalid, reason: "Could not verify certificate against trusted certs"},
		{name: "tampered-after-signing", kind: connection.KindInvalid, reason: "Signature could not be verified"},
		{name: "other-audience", kind: connection.KindInvalid, reason: "AudienceRestriction does not contain"},
		{name: "no-audience-restriction", kind: connection.KindInvalid, reason: "has no AudienceRestriction"},
		{name: "other-recipient", kind: connection.KindInvalid, reason: "Recipient is not"},
		{name: "expired", kind: connection.KindExpired, reason: "is expired"},
		{name: "not-yet-valid", kind: connection.KindExpired, reason: "not yet valid"},
		{name: "wrong-in-response-to", kind: connection.KindInvalid, reason: "`InResponseTo` does not match"},
		{name: "unsolicited", kind: connection.KindInvalid, reason: "`InResponseTo` does not match"},
		{name: "no-subject", kind: connection.KindInvalid, reason: "assertion has no Subject"},
		{name: "no-conditions", kind: connection.KindInvalid, reason: "assertion has no Conditions"},
		{name: "no-subject-confirmation", kind: connection.KindInvalid, reason: "no bearer SubjectConfirmation"},
		{name: "two-assertions", kind: connection.KindInvalid, reason: "exactly one Assertion"},
		{name: "comment-in-nameid", kind: connection.KindInvalid, reason: "XML comment"},
		{name: "xsw1-response-copied-into-signature", kind: connection.KindInvalid, reason: "signature"},
		{name: "xsw2-signed-response-before-evil", kind: connection.KindInvalid, reason: "signature element not present"},
		{name: "xsw3-evil-assertion-first", kind: connection.KindInvalid, reason: "exactly one Assertion"},
		{name: "xsw4-signed-assertion-inside-evil", kind: connection.KindInvalid, reason: "signature element not present"},
		{name: "xsw5-signature-moved-to-evil", kind: connection.KindInvalid, reason: "exactly one Assertion"},
		{name: "xsw6-original-inside-signature", kind: connection.KindInvalid, reason: "Missing signature referencing the top-level element"},
		{name: "xsw7-signed-assertion-in-extensions", kind: connection.KindInvalid, reason: "signature element not present"},
		{name: "xsw8-original-in-signature-object", kind: connection.KindInvalid, reason: "Missing signature referencing the top-level element"},
		{name: "doctype-entity", kind: connection.KindInvalid, reason: "DOCTYPE or ENTITY"},
		{name: "xml-roundtrip", kind: connection.KindInvalid, reason: "roundtrip error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := fixtureConn(t, nil)
			id, err := c.parse(context.Background(), acsRequest(fixture(t, tt.name)), []string{fixtureRequestID})
			if tt.ok {
				if err != nil || id.Email != "ann@acme.test" || id.Subject != "ann@acme.test" || id.Issuer != fixtureIdP {
					t.Fatalf("valid response: %+v, %v", id, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %q: %+v", id.Email, id)
			}
			if got := connection.KindOf(err); got != tt.kind || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("refused with kind %d and %q, want kind %d and %q", got, err, tt.kind, tt.reason)
			}
		})
	}
}

func TestReplayRefused(t *testing.T) {
	c, _ := fixtureConn(t, nil)
	if _, err := c.parse(context.Background(), acsRequest(fixture(t, "valid")), []string{fixtureRequestID}); err != nil {
		t.Fatal(err)
	}
	_, err := c.parse(context.Background(), acsRequest(fixture(t, "valid")), []string{fixtureRequestID})
	if err == nil || !errors.Is(err, saml.ErrAssertionReplayed) && !strings.Contains(err.Error(), "already been used") {
		t.Fatalf("replay: %v", err)
	}
}

func TestUnsolicited(t *testing.T) {
	off, _ := fixtureConn(t, nil)
	if _, _, err := off.FinishUnsolicited(context.Background(), acsRequest(fixture(t, "unsolicited"))); connection.KindOf(err) != connection.KindInvalid {
		t.Fatalf("IdP-initiated while off: %v", err)
	}
	on, _ := fixtureConn(t, func(c *Config) { c.AllowIDPInitiated, c.IDPInitiatedURL = true, "https://app.acme.test/home" })
	id, landing, err := on.FinishUnsolicited(context.Background(), acsRequest(fixture(t, "unsolicited")))
	if err != nil || id.Email != "ann@acme.test" || landing != "https://app.acme.test/home" {
		t.Fatalf("IdP-initiated while on: %+v %q %v", id, landing, err)
	}
	// With IdP-initiated on, an answer to our own request must still carry
	// that request's ID.
	fresh, _ := fixtureConn(t, func(c *Config) { c.AllowIDPInitiated, c.IDPInitiatedURL = true, "https://app.acme.test/home" })
	if _, err := fresh.parse(context.Background(), acsRequest(fixture(t, "unsolicited")), []string{fixtureRequestID}); err == nil || !strings.Contains(err.Error(), "InResponseTo") {
		t.Fatalf("a response without InResponseTo for an SP-initiated sign-in: %v", err)
	}
	// Artifacts (and responses in the query string) are not taken.
	art := acsRequest(fixture(t, "valid"))
	art.URL.RawQuery = "SAMLart=AAQAAMFbLinlXaCM%2BFIxiDwGOLAy2T71gbpO7ZhNzAgEANlB90ECfpNEVLg%3D"
	if _, err := on.parse(context.Background(), art, []string{fixtureRequestID}); err == nil || !strings.Contains(err.Error(), "HTTP-POST") {
		t.Fatalf("artifact: %v", err)
	}
	// Once only, and a solicited response cannot pass as unsolicited.
	if _, _, err := on.FinishUnsolicited(context.Background(), acsRequest(fixture(t, "unsolicited"))); err == nil {
		t.Fatal("unsolicited response replayed")
	}
	if _, _, err := on.FinishUnsolicited(context.Background(), acsRequest(fixture(t, "valid"))); err == nil {
		t.Fatal("a response to a request accepted as unsolicited")
	}
}

// The SP key rotates at fixed instants; the next certificate is in the
// metadata a whole period ahead, and the previous key still decrypts.
func TestKeyRotation(t *testing.T) {
	st := badgertest.Open(t)
	idpPEM, _ := os.ReadFile(filepath.Join("testdata", "idp.pem"))
	_, idpCert, _ := parseKeyPair(idpPEM)
	idp := saml.IdentityProvider{Certificate: idpCert, MetadataURL: mustURL(fixtureIdP), SSOURL: mustURL("https://idp.fixture.test/sso")}
	md, _ := xml.Marshal(idp.Metadata())
	raw, _ := json.Marshal(Config{MetadataXML: string(md)})
	now := time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)
	deps := connection.Deps{OrgID: "org_acme", OrgSlug: "acme", Store: st, SignInURL: mustURL("https://login.acme.test"),
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }, KeyRotation: time.Hour}
	open := func() *conn {
		cv, err := Open(context.Background(), raw, deps)
		if err != nil {
			t.Fatal(err)
		}
		return cv.(*conn)
	}
	certs := func(c *conn) []string {
		b, err := c.Metadata(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range regexp.MustCompile(`<X509Certificate[^>]*>([^<]+)<`).FindAllStringSubmatch(string(b), -1) {
			if !slices.Contains(out, m[1]) {
				out = append(out, m[1])
			}
		}
		return out
	}
	c := open()
	first := certs(c)
	if len(first) != 2 {
		t.Fatalf("metadata publishes %d certificates, want the current and the next", len(first))
	}
	cur := base64.StdEncoding.EncodeToString(c.current.Certificate.Raw)
	if cur != first[0] {
		t.Fatal("the current key is not the first in metadata")
	}
	// Another node (or a restart) opens the same keys.
	if other := open(); base64.StdEncoding.EncodeToString(other.current.Certificate.Raw) != cur {
		t.Fatal("a second open made another key")
	}
	// An hour later the published next key signs, and a new next appears.
	now = now.Add(time.Hour)
	c.sp(context.Background())
	after := certs(c)
	if got := base64.StdEncoding.EncodeToString(c.current.Certificate.Raw); got != first[1] || after[0] != first[1] || len(after) != 2 || after[1] == first[0] {
		t.Fatalf("after rotation: current %.20s…, metadata %.20q, before %.20q", got, after, first)
	}
	der, _ := base64.StdEncoding.DecodeString(first[0])
	old, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(c.current.DecryptionKeys, func(k *rsa.PrivateKey) bool { return k.PublicKey.Equal(old.PublicKey) }) {
		t.Fatal("the previous key no longer decrypts")
	}

	// An admin rotates ahead of time: the published next key signs on
	// every node within offsetRecheck, and a new next one is published.
	if _, err := RotateKey(context.Background(), st, "org_acme"); err != nil {
		t.Fatal(err)
	}
	other := open() // a node that opens now follows at once
	if got := base64.StdEncoding.EncodeToString(other.current.Certificate.Raw); got != after[1] {
		t.Fatalf("a fresh open after RotateKey signs with %.20s…, want the published next %.20s…", got, after[1])
	}
	now = now.Add(offsetRecheck)
	c.sp(context.Background())
	rotated := certs(c)
	if got := base64.StdEncoding.EncodeToString(c.current.Certificate.Raw); got != after[1] || rotated[0] != after[1] || slices.Contains(rotated, after[0]) && rotated[1] == after[0] {
		t.Fatalf("after RotateKey: current %.20s…, metadata %.20q, before %.20q", got, rotated, after)
	}
	if len(rotated) != 2 || rotated[1] == after[1] {
		t.Fatalf("no new next key published: %.20q", rotated)
	}
}

// IdP metadata by URL is fetched again every metadata_refresh; a failed
// fetch keeps the last good copy.
func TestMetadataRefresh(t *testing.T) {
	st := badgertest.Open(t)
	metadataFor := func(file string) string {
		b, _ := os.ReadFile(filepath.Join("testdata", file))
		_, cert, err := parseKeyPair(b)
		if err != nil {
			t.Fatal(err)
		}
		idp := saml.IdentityProvider{Certificate: cert, MetadataURL: mustURL(fixtureIdP), SSOURL: mustURL("https://idp.fixture.test/sso")}
		md, _ := xml.Marshal(idp.Metadata())
		return string(md)
	}
	var mu sync.Mutex
	served, status := metadataFor("idp.pem"), 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.WriteHeader(status)
		io.WriteString(w, served)
	}))
	defer srv.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	raw, _ := json.Marshal(Config{MetadataURL: srv.URL, MetadataRefresh: time.Hour})
	cv, err := Open(context.Background(), raw, connection.Deps{OrgID: "org_acme", OrgSlug: "acme", Store: st, SignInURL: mustURL("https://login.acme.test"),
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	c := cv.(*conn)
	idpCert := func() string {
		sp, err := c.sp(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return sp.IDPMetadata.IDPSSODescriptors[0].KeyDescriptors[0].KeyInfo.X509Data.X509Certificates[0].Data
	}
	first := idpCert()
	mu.Lock()
	served = metadataFor("other-idp.pem")
	mu.Unlock()
	if idpCert() != first {
		t.Fatal("metadata fetched again before metadata_refresh")
	}
	now = now.Add(61 * time.Minute)
	second := idpCert()
	if second == first {
		t.Fatal("the IdP's new key was not picked up after metadata_refresh")
	}
	mu.Lock()
	status, served = 500, "down"
	mu.Unlock()
	now = now.Add(61 * time.Minute)
	if idpCert() != second {
		t.Fatal("a failed refresh dropped the last good metadata")
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg Config
		err string
	}{
		{Config{MetadataURL: "https://idp.example/metadata"}, ""},
		{Config{MetadataURL: "http://127.0.0.1:8080/metadata"}, ""},
		{Config{}, "exactly one"},
		{Config{MetadataURL: "https://a", MetadataXML: "<x/>"}, "exactly one"},
		{Config{MetadataURL: "http://idp.example/metadata"}, "https"},
		// Plain HTTP only to this machine: not to a public name that
		// starts like a loopback address.
		{Config{MetadataURL: "http://127.attacker.example/metadata"}, "https"},
		{Config{MetadataURL: "http://127.0.0.1.nip.io/metadata"}, "https"},
		{Config{MetadataURL: "http://[::1]:8080/metadata"}, ""},
		{Config{MetadataXML: "<EntityDescriptor"}, "metadata_xml"},
		{Config{MetadataURL: "https://idp.example/m", AllowIDPInitiated: true}, "idp_initiated_url"},
		{Config{MetadataURL: "https://idp.example/m", IDPInitiatedURL: "https://app/"}, "only with"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%+v: %v, want %q", tt.cfg, err, tt.err)
		}
	}
}

// FuzzParseResponse feeds arbitrary bytes to the ACS path: never a panic,
// and nothing accepted but a person the fixture IdP signed for.
func FuzzParseResponse(f *testing.F) {
	entries, _ := filepath.Glob(filepath.Join("testdata", "response-*.xml"))
	for _, e := range entries {
		b, _ := os.ReadFile(e)
		f.Add(b)
	}
	f.Add([]byte("<samlp:Response/>"))
	f.Add([]byte{})
	c, _ := fixtureConn(f, nil)
	f.Fuzz(func(t *testing.T, doc []byte) {
		id, err := c.parse(context.Background(), acsRequest(string(doc)), []string{fixtureRequestID})
		if err == nil && id.Email != "ann@acme.test" && id.Email != "ann@acme.test.attacker.test" {
			t.Fatalf("accepted %q for input %q", id.Email, doc)
		}
	})
}

// BenchmarkACS is the SP's work for one sign-in response: form, base64,
// XML parsing, signature verification, every condition, attribute mapping.
// The replay cache's store write is left out (see the store benchmarks).
func BenchmarkACS(b *testing.B) {
	c, _ := fixtureConn(b, nil)
	c.current.ReplayCache = nil
	doc := fixture(b, "valid")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.parse(context.Background(), acsRequest(doc), []string{fixtureRequestID}); err != nil {
			b.Fatal(err)
		}
	}
}
