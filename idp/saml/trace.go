package saml

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	"github.com/crewjam/saml/xmlenc"

	"github.com/gatehouse/gatehouse/idp/connection"
)

// Trace reads a posted SAML response for the login tracer: its parts as
// they arrived (not yet verified: the tracer shows the verification's
// outcome beside them), and the XML itself. It never fails: what cannot
// be read is said so.
func (c *conn) Trace(r *http.Request, verified bool) (items []connection.TraceItem, text string) {
	defer func() {
		if p := recover(); p != nil {
			items = append(items, connection.TraceItem{Label: "SAMLResponse", Value: fmt.Sprintf("could not be read: %v", p)})
		}
	}()
	add := func(label, value string) {
		if value != "" {
			items = append(items, connection.TraceItem{Label: label, Value: value})
		}
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(r.PostFormValue("SAMLResponse")))
	if err != nil || len(raw) == 0 {
		add("SAMLResponse", "missing or not base64")
		return items, ""
	}
	var resp saml.Response
	if err := xml.Unmarshal(raw, &resp); err != nil {
		add("SAMLResponse", "not a SAML response: "+err.Error())
		return items, string(raw)
	}
	when := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	if resp.Issuer != nil {
		add("Response issuer", resp.Issuer.Value)
	}
	add("Destination", resp.Destination)
	add("InResponseTo", resp.InResponseTo)
	add("Issued", when(resp.IssueInstant))
	add("Response signed", yesNo(resp.Signature != nil))
	if resp.Status.StatusCode.Value != "" {
		status := resp.Status.StatusCode.Value
		if sc := resp.Status.StatusCode.StatusCode; sc != nil {
			status += " / " + sc.Value
		}
		if resp.Status.StatusMessage != nil {
			status += ": " + resp.Status.StatusMessage.Value
		}
		add("Status", status)
	}
	a := resp.Assertion
	text = string(raw)
	if resp.EncryptedAssertion != nil && !verified {
		add("Assertion", "encrypted to this organization's SP key; shown only when the response verifies")
		return items, text
	}
	if resp.EncryptedAssertion != nil {
		dec, err := c.decryptForTrace(raw)
		if err != nil {
			add("Assertion", "encrypted, and it does not decrypt with this organization's SP keys: "+err.Error())
			return items, text
		}
		var da saml.Assertion
		if err := xml.Unmarshal(dec, &da); err != nil {
			add("Assertion", "encrypted; decrypted, it is not an assertion: "+err.Error())
			return items, text
		}
		add("Assertion", "encrypted to this organization's SP key (decrypted below)")
		a, text = &da, text+"\n\n<!-- the assertion, decrypted -->\n"+string(dec)
	}
	if a == nil {
		return items, text
	}
	if a.Issuer.Value != "" {
		add("Assertion issuer", a.Issuer.Value)
	}
	add("Assertion signed", yesNo(a.Signature != nil))
	if s := a.Subject; s != nil {
		if s.NameID != nil {
			add("NameID", s.NameID.Value)
			add("NameID format", s.NameID.Format)
		}
		for _, sc := range s.SubjectConfirmations {
			if d := sc.SubjectConfirmationData; d != nil {
				add("Recipient", d.Recipient)
				add("Subject valid until", when(d.NotOnOrAfter))
			}
		}
	}
	if cd := a.Conditions; cd != nil {
		add("Not before", when(cd.NotBefore))
		add("Not on or after", when(cd.NotOnOrAfter))
		for _, ar := range cd.AudienceRestrictions {
			add("Audience", ar.Audience.Value)
		}
	}
	for _, st := range a.AuthnStatements {
		add("Authenticated", when(st.AuthnInstant))
		if st.AuthnContext.AuthnContextClassRef != nil {
			add("AuthnContextClassRef", st.AuthnContext.AuthnContextClassRef.Value)
		}
	}
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			var vals []string
			for _, v := range at.Values {
				vals = append(vals, v.Value)
			}
			name := at.Name
			if at.FriendlyName != "" {
				name += " (" + at.FriendlyName + ")"
			}
			add("Attribute "+name, strings.Join(vals, ", "))
		}
	}
	return items, text
}

// decryptForTrace decrypts a response's encrypted assertion with the SP's
// current, next or previous key, for display only (what is trusted is
// what ParseResponse verifies).
func (c *conn) decryptForTrace(raw []byte) ([]byte, error) {
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		return nil, err
	}
	el := doc.FindElement("//EncryptedAssertion/EncryptedData")
	if el == nil {
		return nil, errors.New("no EncryptedData")
	}
	c.mu.Lock()
	keys := append([]*rsa.PrivateKey{}, c.base.DecryptionKeys...)
	if k, ok := c.base.Key.(*rsa.PrivateKey); ok {
		keys = append([]*rsa.PrivateKey{k}, keys...)
	}
	c.mu.Unlock()
	var last error = errors.New("no SP key")
	for _, k := range keys {
		b, err := xmlenc.Decrypt(k, el)
		if err == nil {
			return b, nil
		}
		last = err
	}
	return nil, last
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
