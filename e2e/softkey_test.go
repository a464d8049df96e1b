package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	bin "encoding/binary"
	"encoding/json"
	"html"
	"regexp"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// softKey is a software WebAuthn authenticator for tests that drive the
// binary over HTTP (the browser tests use Chromium's virtual one): an
// ES256 key, "none" attestation, a signature counter. Its answers can be
// bent (another RP ID, a counter that does not move, another user
// handle) to check that Gatehouse refuses them.
type softKey struct {
	id     []byte
	key    *ecdsa.PrivateKey
	handle []byte
	count  uint32
	// accepted is the counter of the last answer Gatehouse took (the
	// test says so): a clone answers with it again.
	accepted uint32
	// uv: the authenticator verified the person (PIN, biometrics).
	uv bool
}

func newSoftKey(t *testing.T) *softKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	return &softKey{id: id, key: k, uv: true}
}

var b64 = base64.RawURLEncoding

var optionsRE = regexp.MustCompile(`(?s)<script type="application/json" id="webauthn-options">(.*?)</script>`)

// pageOptions reads a page's WebAuthn options block.
func pageOptions(t *testing.T, body string) map[string]any {
	t.Helper()
	m := optionsRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no WebAuthn options in the page:\n%s", body)
	}
	var v struct {
		PublicKey map[string]any `json:"publicKey"`
	}
	if err := json.Unmarshal([]byte(html.UnescapeString(m[1])), &v); err != nil {
		t.Fatalf("options %s: %v", m[1], err)
	}
	return v.PublicKey
}

func (k *softKey) authData(rpID string, flags byte, attested []byte) []byte {
	h := sha256.Sum256([]byte(rpID))
	out := append(h[:], flags)
	out = bin.BigEndian.AppendUint32(out, k.count)
	return append(out, attested...)
}

func (k *softKey) flags() byte {
	f := byte(0x01) // user present
	if k.uv {
		f |= 0x04
	}
	return f
}

// create answers a registration's options for origin on rpID.
func (k *softKey) create(t *testing.T, opts map[string]any, origin, rpID string) string {
	t.Helper()
	user, _ := opts["user"].(map[string]any)
	if h, ok := user["id"].(string); ok {
		k.handle, _ = b64.DecodeString(h)
	}
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.create", "challenge": opts["challenge"], "origin": origin, "crossOrigin": false})
	x, y := k.key.PublicKey.X.FillBytes(make([]byte, 32)), k.key.PublicKey.Y.FillBytes(make([]byte, 32))
	cose, err := cbor.Marshal(map[int]any{1: 2, 3: -7, -1: 1, -2: x, -3: y})
	if err != nil {
		t.Fatal(err)
	}
	attested := make([]byte, 16) // AAGUID: none
	attested = bin.BigEndian.AppendUint16(attested, uint16(len(k.id)))
	attested = append(append(attested, k.id...), cose...)
	k.count++
	k.accepted = k.count
	ao, err := cbor.Marshal(map[string]any{"fmt": "none", "attStmt": map[string]any{}, "authData": k.authData(rpID, k.flags()|0x40, attested)})
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{"attestationObject": b64.EncodeToString(ao), "clientDataJSON": b64.EncodeToString(cd)}, "clientExtensionResults": map[string]any{}})
	return string(resp)
}

// get answers a login's options for origin on rpID; the counter moves
// on, unless cloned: then it is the last one Gatehouse took.
func (k *softKey) get(t *testing.T, opts map[string]any, origin, rpID string, cloned bool) string {
	t.Helper()
	cd, _ := json.Marshal(map[string]any{"type": "webauthn.get", "challenge": opts["challenge"], "origin": origin, "crossOrigin": false})
	if cloned {
		k.count = k.accepted
	} else {
		k.count++
	}
	ad := k.authData(rpID, k.flags(), nil)
	sum := sha256.Sum256(cd)
	digest := sha256.Sum256(append(append([]byte{}, ad...), sum[:]...))
	sig, err := ecdsa.SignASN1(rand.Reader, k.key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := json.Marshal(map[string]any{"id": b64.EncodeToString(k.id), "rawId": b64.EncodeToString(k.id), "type": "public-key",
		"response": map[string]any{"authenticatorData": b64.EncodeToString(ad), "clientDataJSON": b64.EncodeToString(cd),
			"signature": b64.EncodeToString(sig), "userHandle": b64.EncodeToString(k.handle)}, "clientExtensionResults": map[string]any{}})
	return string(resp)
}
