// Package webhooksig signs webhook requests the Standard Webhooks way
// (standardwebhooks.com): headers webhook-id, webhook-timestamp and
// webhook-signature, the signature "v1," and the base64 HMAC-SHA256 of
// id, timestamp and body joined by ".", under a "whsec_" secret. The
// audit stream and the SMS sender use it, so a receiver verifies both
// with any Standard Webhooks library.
package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ParseSecret decodes a "whsec_" secret into its key.
func ParseSecret(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, "whsec_")
	if !ok {
		return nil, errors.New(`must start with "whsec_" (generate one: echo "whsec_$(head -c 32 /dev/urandom | base64)")`)
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) < 24 || len(key) > 64 {
		return nil, errors.New(`must be "whsec_" and the base64 of 24 to 64 random bytes`)
	}
	return key, nil
}

// Sign is the signature of a message: "v1," and the base64 HMAC-SHA256
// of id, ts and body joined by ".".
func Sign(key []byte, id string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s.%d.", id, ts)
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// SetHeaders sets the three headers of a signed request.
func SetHeaders(h http.Header, key []byte, id string, ts int64, body []byte) {
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
	h.Set("webhook-signature", Sign(key, id, ts, body))
}
