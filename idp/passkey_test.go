package idp

import (
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/webauthn"
)

func TestSealedCeremony(t *testing.T) {
	h := &Handler{o: Options{CSRFKey: make([]byte, 32)}}
	other := &Handler{o: Options{CSRFKey: []byte(strings.Repeat("k", 32))}}
	sd := &webauthn.SessionData{Challenge: "c1", RelyingPartyID: "login.acme.example", Expires: time.Unix(2_000_000_000, 0)}
	tok := h.sealCeremony(sd, "login|login.acme.example")
	sc, err := h.unsealCeremony(tok)
	if err != nil || sc.Session.Challenge != "c1" || sc.Bind != "login|login.acme.example" {
		t.Fatalf("round trip: %+v %v", sc, err)
	}
	body, mac, _ := strings.Cut(tok, ".")
	for name, bad := range map[string]string{
		"another key's":  other.sealCeremony(sd, "login|login.acme.example"),
		"no MAC":         body,
		"changed body":   body[:len(body)-2] + "AA." + mac,
		"empty":          "",
		"oversized":      strings.Repeat("a", 9<<10) + "." + mac,
		"not base64":     "!!!." + mac,
		"MAC of nothing": "." + mac,
	} {
		if _, err := h.unsealCeremony(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzPasskeyInputs: a sealed ceremony and WebAuthn answers from a form
// never panic; only a sealed ceremony of this key opens.
func FuzzPasskeyInputs(f *testing.F) {
	h := &Handler{o: Options{CSRFKey: make([]byte, 32)}}
	good := h.sealCeremony(&webauthn.SessionData{Challenge: "c"}, "b")
	for _, s := range []string{good, "", ".", "a.b", `{"id":"x","rawId":"eA","type":"public-key","response":{}}`, "{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		if sc, err := h.unsealCeremony(in); err == nil && in != good && sc.Session.Challenge == "c" && sc.Bind == "b" {
			// Another encoding of the same JSON under a valid MAC could
			// only come from the key: the fuzzer cannot forge one.
			t.Fatalf("forged ceremony opened: %q", in)
		}
		_, _ = parseAssertion(in)
		_, _ = parseCreation(in)
	})
}
