// Package token makes random identifiers and checks their shape before
// anything looks them up. It is a leaf: it imports nothing of Gatehouse's.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// RandomID returns 256 random bits, base64url.
func RandomID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (Go 1.24+ crashes instead)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ValidToken reports whether s is min..max characters of the URL-safe
// base64 alphabet RandomID uses: checked before any store read.
func ValidToken(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// ClientSecretPrefix starts every OIDC client secret Gatehouse makes, so
// that a secret scanner recognizes one in a repository or a log.
const ClientSecretPrefix = "ghcs_"

// NewClientSecret is a secret for an app that authenticates with one:
// 256 random bits.
func NewClientSecret() string { return ClientSecretPrefix + RandomID() }

// ClientSecretHash is how the store keeps a client secret Gatehouse made:
// SHA-256 is enough for 256 random bits (nothing to guess), and fast on
// the token endpoint.
func ClientSecretHash(secret string) []byte {
	sum := sha256.Sum256([]byte("gatehouse client secret\x00" + secret))
	return sum[:]
}
