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
