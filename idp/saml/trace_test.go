package saml

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The tracer reads what arrived, valid or not: the fixture response's
// parts are listed; broken input is said so, never a panic.
func TestTrace(t *testing.T) {
	c, _ := fixtureConn(t, nil)
	items, raw := c.Trace(acsRequest(fixture(t, "valid")), true)
	got := map[string]string{}
	for _, it := range items {
		got[it.Label] = it.Value
	}
	for _, k := range []string{"Response issuer", "Destination", "InResponseTo", "NameID", "Audience", "Not on or after", "Assertion signed"} {
		if got[k] == "" {
			t.Errorf("the trace lacks %s: %v", k, got)
		}
	}
	if !strings.Contains(raw, "<") {
		t.Errorf("raw: %.200q", raw)
	}
	for name, body := range map[string]string{
		"not base64":     "SAMLResponse=%%%",
		"empty":          "SAMLResponse=",
		"not XML":        "SAMLResponse=bm90IHhtbA==",
		"not a response": "SAMLResponse=PGZvby8+",
	} {
		r := httptest.NewRequest("POST", "/acs", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		items, _ := c.Trace(r, false)
		if len(items) == 0 || !strings.Contains(items[0].Value, "not") {
			t.Errorf("%s: %v", name, items)
		}
	}
}

// FuzzTrace: the tracer reads arbitrary bytes without a panic.
func FuzzTrace(f *testing.F) {
	entries, _ := filepath.Glob(filepath.Join("testdata", "response-*.xml"))
	for _, e := range entries {
		b, _ := os.ReadFile(e)
		f.Add(b)
	}
	f.Add([]byte("<samlp:Response><saml:EncryptedAssertion><xenc:EncryptedData/></saml:EncryptedAssertion></samlp:Response>"))
	c, _ := fixtureConn(f, nil)
	f.Fuzz(func(t *testing.T, doc []byte) {
		_, _ = c.Trace(acsRequest(string(doc)), false)
		_, _ = c.Trace(acsRequest(string(doc)), true)
	})
}
