// Package password is the org-scoped password pool: argon2id hashing and
// constant-time verification.
package password

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
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

// Problem says what is wrong with a chosen password ("" if nothing):
// too short or long, one of the passwords leaked again and again, or a
// run of one character or of a keyboard or alphabet sequence (NIST SP
// 800-63B: check against such lists, not composition rules).
func Problem(pw string) string {
	switch n := utf8.RuneCountInString(pw); {
	case n < MinChosen:
		return fmt.Sprintf("must be at least %d characters", MinChosen)
	case len(pw) > MaxChosen:
		return fmt.Sprintf("must be at most %d bytes", MaxChosen)
	}
	lower := strings.ToLower(pw)
	if _, ok := common()[lower]; ok {
		return "is one of the most common passwords, found in leaked password lists: choose another"
	}
	if repetitive(lower) {
		return "is a run of one character or a simple sequence: choose another"
	}
	return ""
}

//go:embed common.txt
var commonTxt string

// common is the set of common passwords, read once.
var common = sync.OnceValue(func() map[string]struct{} {
	m := map[string]struct{}{}
	for line := range strings.SplitSeq(commonTxt, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			m[line] = struct{}{}
		}
	}
	return m
})

// sequences are runs people type instead of a password.
var sequences = []string{"abcdefghijklmnopqrstuvwxyz", "01234567890123456789", "qwertyuiopasdfghjklzxcvbnm", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p"}

// repetitive: one character repeated, or a stretch (either way) of a
// sequence, repeated to the length.
func repetitive(pw string) bool {
	rs := []rune(pw)
	same := true
	for _, r := range rs[1:] {
		same = same && r == rs[0]
	}
	if same {
		return true
	}
	for _, seq := range sequences {
		for _, s := range []string{seq, reverse(seq)} {
			if strings.Contains(s+s, pw) || strings.Contains(strings.Repeat(s, 1+len(pw)/len(s)+1), pw) {
				return true
			}
		}
	}
	return false
}

func reverse(s string) string {
	r := []rune(s)
	for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
		r[i], r[j] = r[j], r[i]
	}
	return string(r)
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
