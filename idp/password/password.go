// Package password is the org-scoped password pool: argon2id hashing and
// constant-time verification.
package password

import (
	"context"
	"fmt"
	"sync"
	"unicode/utf8"

	"github.com/alexedwards/argon2id"
)

// Params follow OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane):
// strong, yet a 2-core node can verify tens of sign-ins a second.
var Params = &argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

// MaxLen refuses absurdly long passwords before hashing them.
const MaxLen = 1024

// slots bounds concurrent hashing so a login flood cannot exhaust memory.
var slots = make(chan struct{}, 4)

var (
	dummyOnce sync.Once
	dummyHash string
)

// Bounds for a password a person or an admin chooses: length over
// composition rules (NIST SP 800-63B).
const (
	MinChosen = 12
	MaxChosen = 256
)

// Problem says what is wrong with a chosen password ("" if nothing).
func Problem(pw string) string {
	switch n := utf8.RuneCountInString(pw); {
	case n < MinChosen:
		return fmt.Sprintf("must be at least %d characters", MinChosen)
	case len(pw) > MaxChosen:
		return fmt.Sprintf("must be at most %d bytes", MaxChosen)
	}
	return ""
}

// Hash returns an argon2id PHC string for pw.
func Hash(pw string) (string, error) {
	if len(pw) == 0 || len(pw) > MaxLen {
		return "", fmt.Errorf("password: length must be 1..%d", MaxLen)
	}
	h, err := argon2id.CreateHash(pw, Params)
	if err != nil {
		return "", fmt.Errorf("password: hash: %w", err)
	}
	return h, nil
}

// Verify checks pw against hash in constant time. With hash == "" (no such
// user) it still spends the time of one verification, so response timing
// does not reveal which accounts exist.
func Verify(ctx context.Context, hash, pw string) (bool, error) {
	select {
	case slots <- struct{}{}:
		defer func() { <-slots }()
	case <-ctx.Done():
		return false, ctx.Err()
	}
	if len(pw) > MaxLen {
		pw = pw[:MaxLen]
	}
	if hash == "" {
		dummyOnce.Do(func() { dummyHash, _ = argon2id.CreateHash("gatehouse-dummy", Params) })
		_, _ = argon2id.ComparePasswordAndHash(pw, dummyHash)
		return false, nil
	}
	ok, err := argon2id.ComparePasswordAndHash(pw, hash)
	if err != nil {
		return false, fmt.Errorf("password: stored hash unusable: %w", err)
	}
	return ok, nil
}

// Schema is the password connection's settings schema: it has none (no
// block besides type: password).
type Schema struct{}

// NewSettings is nil: nothing to decode.
func (Schema) NewSettings() any { return nil }

// Problems is nil: nothing to check.
func (Schema) Problems(any) []error { return nil }
