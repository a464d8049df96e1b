package password

import (
	"context"
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	ctx := context.Background()
	h, err := Hash("correct horse")
	if err != nil || !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("Hash = %q, %v", h, err)
	}
	for _, tt := range []struct {
		hash, pw string
		want     bool
	}{
		{h, "correct horse", true},
		{h, "correct horse ", false},
		{h, "", false},
		{"", "anything", false}, // unknown account: same time, always false
	} {
		got, err := Verify(ctx, tt.hash, tt.pw)
		if err != nil || got != tt.want {
			t.Errorf("Verify(%q) = %v, %v; want %v", tt.pw, got, err, tt.want)
		}
	}
	if _, err := Verify(ctx, "$argon2id$garbage", "x"); err == nil {
		t.Error("corrupt stored hash accepted silently")
	}
	if _, err := Hash(""); err == nil {
		t.Error("empty password hashed")
	}
	if _, err := Hash(strings.Repeat("x", MaxLen+1)); err == nil {
		t.Error("oversized password hashed")
	}
}

func TestVerifyHonorsContext(t *testing.T) {
	for range cap(slots) {
		slots <- struct{}{}
	}
	defer func() {
		for range cap(slots) {
			<-slots
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, "", "x"); err == nil {
		t.Fatal("Verify ran with every slot taken and a cancelled context")
	}
}

func TestProblem(t *testing.T) {
	for pw, bad := range map[string]bool{
		"short":                          true,
		"correct horse battery staple":   false,
		"qwertyuiopasdfghjkl":            true, // leaked and a keyboard run
		"QWERTYUIOPASDFGHJKL":            true,
		"1qaz2wsx3edc4rfv":               true,
		"aaaaaaaaaaaaaaaa":               true,
		"abcdefghijklmnop":               true,
		"ponmlkjihgfedcba":               true,
		"123456789012":                   true,
		"012345678910":                   true,
		"987654321098":                   true,
		"my dog eats 3 kinds of pasta":   false,
		"Tr0ub4dor&3xyz":                 false,
		strings.Repeat("x", MaxChosen+1): true,
	} {
		if got := Problem(pw) != ""; got != bad {
			t.Errorf("Problem(%q) = %q, want bad %v", pw, Problem(pw), bad)
		}
	}
	if len(common()) < 300 {
		t.Errorf("%d common passwords loaded", len(common()))
	}
}
