package testidp

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"html"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/samlidp"
	"golang.org/x/crypto/bcrypt"
)

// SAMLUser is a person at the test SAML IdP.
type SAMLUser struct {
	Name, Password, Email, GivenName, Surname string
	Groups                                    []string
}

// SAML is a running crewjam/saml samlidp IdP.
type SAML struct {
	URL         string
	MetadataURL string
	Server      *httptest.Server
	IdP         *samlidp.Server
	Key         *rsa.PrivateKey
	Cert        *x509.Certificate
}

// NewSAML starts an IdP with users. Register service providers with AddSP.
func NewSAML(t testing.TB, users ...SAMLUser) *SAML {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	u, _ := url.Parse("http://" + srv.Listener.Addr().String())
	idp, key, cert, err := NewSAMLServer(*u, users...)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp
	srv.Start()
	t.Cleanup(srv.Close)
	return &SAML{URL: u.String(), MetadataURL: u.String() + "/metadata", Server: srv, IdP: idp, Key: key, Cert: cert}
}

// NewSAMLServer is the IdP of NewSAML, with a fresh key, to serve at base.
func NewSAMLServer(base url.URL, users ...SAMLUser) (*samlidp.Server, *rsa.PrivateKey, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test SAML IdP"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, _ := x509.ParseCertificate(der)
	idp, err := samlidp.New(samlidp.Options{URL: base, Key: key, Certificate: cert, Store: &samlidp.MemoryStore{}})
	if err != nil {
		return nil, nil, nil, err
	}
	for _, us := range users {
		hash, _ := bcrypt.GenerateFromPassword([]byte(us.Password), bcrypt.MinCost)
		if err := idp.Store.Put("/users/"+us.Name, samlidp.User{Name: us.Name, HashedPassword: hash, Email: us.Email, Groups: us.Groups,
			GivenName: us.GivenName, Surname: us.Surname, CommonName: strings.TrimSpace(us.GivenName + " " + us.Surname)}); err != nil {
			return nil, nil, nil, err
		}
	}
	return idp, key, cert, nil
}

// AddSP registers a service provider from its metadata document through
// the IdP's admin API (PUT /services/{name}), as an administrator uploads it.
func (s *SAML) AddSP(t testing.TB, name string, metadata []byte) {
	t.Helper()
	if err := RegisterSP(s.URL, name, metadata); err != nil {
		t.Fatal(err)
	}
}

// RegisterSP uploads SP metadata to the samlidp IdP at idpURL.
func RegisterSP(idpURL, name string, metadata []byte) error {
	req, _ := http.NewRequest("PUT", idpURL+"/services/"+name, bytes.NewReader(metadata))
	req.Header.Set("Content-Type", "application/xml")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("IdP refused SP metadata: %d %s", resp.StatusCode, b)
	}
	return nil
}

// AddSPFrom fetches the SP's metadata from its URL and registers it.
func (s *SAML) AddSPFrom(t testing.TB, client *http.Client, name, metadataURL string) []byte {
	t.Helper()
	resp, err := client.Get(metadataURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("SP metadata at %s: %d %v\n%s", metadataURL, resp.StatusCode, err, b)
	}
	s.AddSP(t, name, b)
	return b
}

var (
	formActionRE = regexp.MustCompile(`<form[^>]*action="([^"]+)"`)
	inputRE      = regexp.MustCompile(`<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"`)
)

// Form reads an HTML form: its action and its named inputs' values (the
// IdP's login form, or the auto-submitting form carrying SAMLResponse).
func Form(page string) (action string, values url.Values) {
	values = url.Values{}
	if m := formActionRE.FindStringSubmatch(page); m != nil {
		action = html.UnescapeString(m[1])
	}
	for _, m := range inputRE.FindAllStringSubmatch(page, -1) {
		values.Set(m[1], html.UnescapeString(m[2]))
	}
	return action, values
}

// AddShortcut makes /login/{name} an IdP-initiated sign-in to the SP with
// entity ID spEntityID (a tile in the IdP's portal).
func (s *SAML) AddShortcut(t testing.TB, name, spEntityID string) {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"service_provider":%q}`, name, spEntityID)
	req, _ := http.NewRequest("PUT", s.URL+"/shortcuts/"+name, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("IdP refused the shortcut: %d %s", resp.StatusCode, b)
	}
}
