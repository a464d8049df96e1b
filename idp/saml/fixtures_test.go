package saml

// The SAML attack fixtures in testdata/ are made by this file:
//
//	go test ./idp/saml -run TestGenerateFixtures -update
//
// It signs responses with the fixture IdP key (testdata/idp.pem) at the
// fixed instant fixtureTime, for the SP at fixtureEntity / fixtureACS, and
// writes one XML file per case, tampered after signing where the attack
// needs it. The tests replay them with the clock pinned to fixtureTime.

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
)

var update = flag.Bool("update", false, "regenerate testdata/ fixtures")

var fixtureTime = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

const (
	fixtureIdP       = "https://idp.fixture.test/metadata"
	fixtureEntity    = "https://login.acme.test/.gatehouse/saml/metadata"
	fixtureACS       = "https://login.acme.test/.gatehouse/saml/acs"
	fixtureRequestID = "id-fixture-request-0001"
)

// keyPair reads (or, with -update, makes) a key and certificate in testdata.
func keyPair(t *testing.T, name string) (*rsa.PrivateKey, *x509.Certificate, []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if _, err := os.Stat(path); err != nil {
			key, _ := rsa.GenerateKey(rand.Reader, 2048)
			tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
				NotBefore: fixtureTime.AddDate(-1, 0, 0), NotAfter: fixtureTime.AddDate(20, 0, 0), KeyUsage: x509.KeyUsageDigitalSignature}
			der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
			var b strings.Builder
			_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: mustPKCS8(key)})
			_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
			if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	k, c, err := parseKeyPair(b)
	if err != nil {
		t.Fatal(err)
	}
	return k, c, b
}

type assertionSpec struct {
	id, nameID, audience, recipient, inResponseTo string
	notBefore, notOnOrAfter                       time.Time
	noSubject, noConditions, noConfirmation       bool
	noAudience                                    bool
}

func validSpec() assertionSpec {
	return assertionSpec{id: "id-assertion-0001", nameID: "ann@acme.test", audience: fixtureEntity, recipient: fixtureACS,
		inResponseTo: fixtureRequestID, notBefore: fixtureTime.Add(-time.Minute), notOnOrAfter: fixtureTime.Add(5 * time.Minute)}
}

const (
	nsSAML  = "urn:oasis:names:tc:SAML:2.0:assertion"
	nsSAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
)

func ts(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05Z") }

func assertionEl(s assertionSpec) *etree.Element {
	a := etree.NewElement("saml:Assertion")
	a.CreateAttr("xmlns:saml", nsSAML)
	a.CreateAttr("ID", s.id)
	a.CreateAttr("Version", "2.0")
	a.CreateAttr("IssueInstant", ts(fixtureTime))
	a.CreateElement("saml:Issuer").SetText(fixtureIdP)
	if !s.noSubject {
		sub := a.CreateElement("saml:Subject")
		n := sub.CreateElement("saml:NameID")
		n.CreateAttr("Format", "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
		n.SetText(s.nameID)
		if !s.noConfirmation {
			sc := sub.CreateElement("saml:SubjectConfirmation")
			sc.CreateAttr("Method", "urn:oasis:names:tc:SAML:2.0:cm:bearer")
			d := sc.CreateElement("saml:SubjectConfirmationData")
			if s.inResponseTo != "" {
				d.CreateAttr("InResponseTo", s.inResponseTo)
			}
			d.CreateAttr("NotOnOrAfter", ts(s.notOnOrAfter))
			d.CreateAttr("Recipient", s.recipient)
		}
	}
	if !s.noConditions {
		c := a.CreateElement("saml:Conditions")
		c.CreateAttr("NotBefore", ts(s.notBefore))
		c.CreateAttr("NotOnOrAfter", ts(s.notOnOrAfter))
		if !s.noAudience {
			c.CreateElement("saml:AudienceRestriction").CreateElement("saml:Audience").SetText(s.audience)
		}
	}
	as := a.CreateElement("saml:AuthnStatement")
	as.CreateAttr("AuthnInstant", ts(fixtureTime))
	as.CreateAttr("SessionIndex", "session-1")
	as.CreateElement("saml:AuthnContext").CreateElement("saml:AuthnContextClassRef").SetText("urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport")
	st := a.CreateElement("saml:AttributeStatement")
	at := st.CreateElement("saml:Attribute")
	at.CreateAttr("Name", "email")
	at.CreateElement("saml:AttributeValue").SetText(s.nameID)
	return a
}

// sign returns el with an enveloped signature right after its Issuer.
func sign(t *testing.T, key *rsa.PrivateKey, cert *x509.Certificate, el *etree.Element) *etree.Element {
	t.Helper()
	ctx := dsig.NewDefaultSigningContext(dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}))
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		t.Fatal(err)
	}
	signed, err := ctx.SignEnveloped(el)
	if err != nil {
		t.Fatal(err)
	}
	// goxmldsig appends the Signature without linking it to its parent;
	// detach it by hand and put it where the SAML schema wants it.
	sig := signed.Child[len(signed.Child)-1].(*etree.Element)
	signed.Child = signed.Child[:len(signed.Child)-1]
	signed.InsertChildAt(1, sig)
	return signed
}

func responseEl(inResponseTo string, assertions ...*etree.Element) *etree.Element {
	r := etree.NewElement("samlp:Response")
	r.CreateAttr("xmlns:samlp", nsSAMLP)
	r.CreateAttr("xmlns:saml", nsSAML)
	r.CreateAttr("ID", "id-response-0001")
	r.CreateAttr("Version", "2.0")
	r.CreateAttr("IssueInstant", ts(fixtureTime))
	r.CreateAttr("Destination", fixtureACS)
	if inResponseTo != "" {
		r.CreateAttr("InResponseTo", inResponseTo)
	}
	r.CreateElement("saml:Issuer").SetText(fixtureIdP)
	r.CreateElement("samlp:Status").CreateElement("samlp:StatusCode").CreateAttr("Value", "urn:oasis:names:tc:SAML:2.0:status:Success")
	for _, a := range assertions {
		r.AddChild(a)
	}
	return r
}

func xmlOf(t *testing.T, el *etree.Element) string {
	t.Helper()
	doc := etree.NewDocument()
	doc.SetRoot(el)
	s, err := doc.WriteToString()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// evil is a copy of a signed assertion for another person, with another
// ID and without a signature: what wrapping attacks try to smuggle in.
func evil(signed *etree.Element) *etree.Element {
	e := signed.Copy()
	for _, c := range e.ChildElements() {
		if c.Tag == "Signature" {
			e.RemoveChild(c)
		}
	}
	e.CreateAttr("ID", "id-evil-0001")
	for _, n := range e.FindElements(".//NameID") {
		n.SetText("admin@acme.test")
	}
	for _, v := range e.FindElements(".//AttributeValue") {
		v.SetText("admin@acme.test")
	}
	return e
}

// fixtures builds every case: name → response XML.
func fixtures(t *testing.T) map[string]string {
	idpKey, idpCert, _ := keyPair(t, "idp.pem")
	otherKey, otherCert, _ := keyPair(t, "other-idp.pem")
	signedWith := func(s assertionSpec) *etree.Element { return sign(t, idpKey, idpCert, assertionEl(s)) }
	valid := func() *etree.Element { return signedWith(validSpec()) }
	spec := func(mod func(*assertionSpec)) assertionSpec { s := validSpec(); mod(&s); return s }
	out := map[string]string{}
	put := func(name string, r *etree.Element) { out[name] = xmlOf(t, r) }

	put("valid", responseEl(fixtureRequestID, valid()))
	put("unsigned", responseEl(fixtureRequestID, assertionEl(validSpec())))
	put("signed-by-another-key", responseEl(fixtureRequestID, sign(t, otherKey, otherCert, assertionEl(validSpec()))))
	tampered := valid()
	tampered.FindElement(".//NameID").SetText("admin@acme.test")
	put("tampered-after-signing", responseEl(fixtureRequestID, tampered))
	put("other-audience", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) { s.audience = "https://login.globex.test/.gatehouse/saml/metadata" }))))
	put("no-audience-restriction", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) { s.noAudience = true }))))
	put("other-recipient", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) { s.recipient = "https://login.globex.test/.gatehouse/saml/acs" }))))
	put("expired", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) {
		s.notBefore, s.notOnOrAfter = fixtureTime.Add(-2*time.Hour), fixtureTime.Add(-time.Hour)
	}))))
	put("not-yet-valid", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) {
		s.notBefore, s.notOnOrAfter = fixtureTime.Add(time.Hour), fixtureTime.Add(2*time.Hour)
	}))))
	put("wrong-in-response-to", responseEl("id-another-request", signedWith(spec(func(s *assertionSpec) { s.inResponseTo = "id-another-request" }))))
	put("unsolicited", responseEl("", signedWith(spec(func(s *assertionSpec) { s.inResponseTo = "" }))))
	put("no-subject", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) { s.noSubject = true }))))
	put("no-conditions", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) { s.noConditions = true }))))
	put("no-subject-confirmation", responseEl(fixtureRequestID, signedWith(spec(func(s *assertionSpec) { s.noConfirmation = true }))))
	put("two-assertions", responseEl(fixtureRequestID, valid(), evil(valid())))

	// Comment injection: the IdP signed "ann@acme.test.attacker.test"; a
	// comment inserted after "ann@acme.test" keeps the signature valid
	// (exclusive c14n drops comments) and fools parsers that read only the
	// first text node.
	ci := signedWith(spec(func(s *assertionSpec) { s.nameID = "ann@acme.test.attacker.test" }))
	n := ci.FindElement(".//NameID")
	n.SetText("ann@acme.test")
	n.CreateComment("x")
	n.CreateText(".attacker.test")
	put("comment-in-nameid", responseEl(fixtureRequestID, ci))

	// Signature wrapping (Somorovsky et al., "On Breaking SAML", XSW1-8).
	// XSW1/2 move a signed Response; here the Response is signed and the
	// evil content is put beside it.
	signedResp := sign(t, idpKey, idpCert, responseEl(fixtureRequestID, assertionEl(validSpec())))
	xsw1 := responseEl(fixtureRequestID, evil(assertionEl(validSpec())))
	xsw1.FindElement("Issuer").Parent().InsertChildAt(2, signedRespSignatureWith(signedResp))
	put("xsw1-response-copied-into-signature", xsw1)
	xsw2 := responseEl(fixtureRequestID, evil(assertionEl(validSpec())))
	xsw2.InsertChildAt(1, signedResp.Copy())
	put("xsw2-signed-response-before-evil", xsw2)
	// XSW3: evil assertion before the signed one.
	put("xsw3-evil-assertion-first", responseEl(fixtureRequestID, evil(valid()), valid()))
	// XSW4: the signed assertion inside the evil one.
	x4 := evil(valid())
	x4.AddChild(valid())
	put("xsw4-signed-assertion-inside-evil", responseEl(fixtureRequestID, x4))
	// XSW5: the evil assertion carries the original's signature; the
	// original is appended to the Response.
	x5 := valid()
	x5evil := evil(x5)
	x5evil.InsertChildAt(1, x5.FindElement("Signature").Copy())
	put("xsw5-signature-moved-to-evil", responseEl(fixtureRequestID, x5evil, assertionWithoutSignature(x5)))
	// XSW6: the original assertion inside the moved signature.
	x6 := valid()
	x6evil := evil(x6)
	sig6 := x6.FindElement("Signature").Copy()
	sig6.AddChild(x6.Copy())
	x6evil.InsertChildAt(1, sig6)
	put("xsw6-original-inside-signature", responseEl(fixtureRequestID, x6evil))
	// XSW7: the signed assertion hidden in Extensions, the evil one in place.
	x7 := responseEl(fixtureRequestID, evil(valid()))
	ext := etree.NewElement("samlp:Extensions")
	ext.AddChild(valid())
	x7.InsertChildAt(2, ext)
	put("xsw7-signed-assertion-in-extensions", x7)
	// XSW8: the original inside an Object of the evil assertion's signature.
	x8 := valid()
	x8evil := evil(x8)
	sig8 := x8.FindElement("Signature").Copy()
	obj := sig8.CreateElement("ds:Object")
	obj.AddChild(assertionWithoutSignature(x8))
	x8evil.InsertChildAt(1, sig8)
	put("xsw8-original-in-signature-object", responseEl(fixtureRequestID, x8evil))

	// crewjam/saml's XML round-trip advisory (CVE-2020-27846 and the Go
	// encoding/xml issues behind it): markup that encoding/xml reads but
	// cannot write back the same (here empty character data) must be
	// refused before any signature is looked at.
	out["xml-roundtrip"] = strings.Replace(out["valid"], "<samlp:Status>", "<samlp:Status><![CDATA[]]>", 1)

	// DOCTYPE with an entity: refused before any parsing of entities.
	out["doctype-entity"] = `<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "ann@acme.test">]>` + strings.TrimPrefix(out["valid"], `<?xml version="1.0" encoding="UTF-8"?>`)
	return out
}

func signedRespSignatureWith(signedResp *etree.Element) *etree.Element {
	sig := signedResp.FindElement("Signature").Copy()
	sig.AddChild(signedResp.Copy())
	return sig
}

func assertionWithoutSignature(a *etree.Element) *etree.Element {
	c := a.Copy()
	for _, ch := range c.ChildElements() {
		if ch.Tag == "Signature" {
			c.RemoveChild(ch)
		}
	}
	return c
}

func TestGenerateFixtures(t *testing.T) {
	if !*update {
		t.Skip("run with -update to regenerate testdata/")
	}
	for name, x := range fixtures(t) {
		if err := os.WriteFile(filepath.Join("testdata", "response-"+name+".xml"), []byte(x), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("fixtures written")
}
