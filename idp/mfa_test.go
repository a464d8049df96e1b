package idp

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/gatehouse/gatehouse/proxy/session"
	"github.com/gatehouse/gatehouse/store"
)

const testTOTPSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

func codeAt(t testing.TB, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(testTOTPSecret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTOTPStep(t *testing.T) {
	now := time.Unix(1_800_000_015, 0) // step 60,000,000, mid-step
	step := now.Unix() / 30
	for _, c := range []struct {
		name string
		code string
		last int64
		want int64 // 0: refused
	}{
		{"current", codeAt(t, now), 0, step},
		{"previous step (clock behind)", codeAt(t, now.Add(-30*time.Second)), 0, step - 1},
		{"next step (clock ahead)", codeAt(t, now.Add(30*time.Second)), 0, step + 1},
		{"two steps back", codeAt(t, now.Add(-60*time.Second)), 0, 0},
		{"two steps ahead", codeAt(t, now.Add(60*time.Second)), 0, 0},
		{"current, already used", codeAt(t, now), step, 0},
		{"previous, after the current was used", codeAt(t, now.Add(-30*time.Second)), step, 0},
		{"next, after the current was used", codeAt(t, now.Add(30*time.Second)), step, step + 1},
		{"five digits", codeAt(t, now)[:5], 0, 0},
		{"seven digits", codeAt(t, now) + "0", 0, 0},
		{"letters", "abcdef", 0, 0},
		{"empty", "", 0, 0},
	} {
		got, ok := totpStep(testTOTPSecret, c.code, now, c.last)
		if (c.want != 0) != ok || got != c.want {
			t.Errorf("%s: step %d %v, want %d", c.name, got, ok, c.want)
		}
	}
}

func TestNormalizeCode(t *testing.T) {
	for in, want := range map[string]string{
		" 123 456 ":             "123456",
		"ABCD-efgh-2345-6723":   "abcdefgh23456723",
		strings.Repeat("1", 65): "",
		"":                      "",
	} {
		if got := normalizeCode(in); got != want {
			t.Errorf("normalizeCode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes, hashes := newRecoveryCodes("usr_1")
	seen := map[string]bool{}
	for i, c := range codes {
		if len(c) != 19 || seen[c] || recoveryHash("usr_1", normalizeCode(c)) != hashes[i] {
			t.Errorf("code %q / hash %s", c, hashes[i])
		}
		if recoveryHash("usr_2", normalizeCode(c)) == hashes[i] {
			t.Error("a code's hash is the same for another person")
		}
		seen[c] = true
	}
	if len(codes) != recoveryCodes {
		t.Errorf("%d codes", len(codes))
	}
}

// A sub-org's rules only tighten its parent's; a broken chain still
// counts what it read.
func TestEffectiveRules(t *testing.T) {
	orgs := map[string]*store.Org{
		"root": {ID: "root", MFA: store.MFARules{Require: store.MFAAdmins}, Session: store.SessionRules{Lifetime: 8 * time.Hour}},
		"loose": {ID: "loose", ParentID: "root", MFA: store.MFARules{Require: store.MFAOff},
			Session: store.SessionRules{Lifetime: 24 * time.Hour, IdleTimeout: 30 * time.Minute}},
		"strict": {ID: "strict", ParentID: "loose", MFA: store.MFARules{Require: store.MFAAll}, Session: store.SessionRules{Lifetime: time.Hour}},
		"orphan": {ID: "orphan", ParentID: "gone", Session: store.SessionRules{IdleTimeout: time.Minute}},
		"loop-a": {ID: "loop-a", ParentID: "loop-b", MFA: store.MFARules{Require: store.MFAAll}},
		"loop-b": {ID: "loop-b", ParentID: "loop-a"},
		"plain":  {ID: "plain"},
		"keys":   {ID: "keys", MFA: store.MFARules{Factors: []string{"passkey", "totp"}, RememberDevice: 720 * time.Hour}, Session: store.SessionRules{MaxPerPerson: 5}},
		"keys-only": {ID: "keys-only", ParentID: "keys", MFA: store.MFARules{Factors: []string{"passkey"}, RememberDevice: 24 * time.Hour},
			Session: store.SessionRules{MaxPerPerson: 10}},
		"keys-none":   {ID: "keys-none", ParentID: "keys-only", MFA: store.MFARules{Factors: []string{"totp"}, NoRememberDevice: true}},
		"keys-longer": {ID: "keys-longer", ParentID: "keys", MFA: store.MFARules{RememberDevice: 2160 * time.Hour}},
	}
	for id, want := range map[string]session.OrgRules{
		"root":        {RequireMFA: store.MFAAdmins, Lifetime: 8 * time.Hour},
		"loose":       {RequireMFA: store.MFAAdmins, Lifetime: 8 * time.Hour, IdleTimeout: 30 * time.Minute},
		"strict":      {RequireMFA: store.MFAAll, Lifetime: time.Hour, IdleTimeout: 30 * time.Minute},
		"orphan":      {IdleTimeout: time.Minute},
		"loop-b":      {RequireMFA: store.MFAAll},
		"plain":       {},
		"nope":        {},
		"keys":        {MFAFactors: []string{"passkey", "totp"}, RememberDevice: 720 * time.Hour, MaxPerPerson: 5},
		"keys-only":   {MFAFactors: []string{"passkey"}, RememberDevice: 24 * time.Hour, MaxPerPerson: 5},
		"keys-none":   {MFAFactors: []string{"none"}, MaxPerPerson: 5},
		"keys-longer": {MFAFactors: []string{"passkey", "totp"}, RememberDevice: 720 * time.Hour, MaxPerPerson: 5},
	} {
		if got := effectiveRules(orgs, id); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, want %+v", id, got, want)
		}
	}
}

// FuzzSecondFactorCode: whatever a person types, the check never panics,
// and only six digits of the right step pass.
func FuzzSecondFactorCode(f *testing.F) {
	now := time.Unix(1_800_000_015, 0)
	for _, s := range []string{codeAt(f, now), " 12 34 56", "abcd-efgh-ijkl-mnop", "", "\x00\xff", strings.Repeat("9", 70)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c := normalizeCode(in)
		step, ok := totpStep(testTOTPSecret, c, now, 0)
		if ok && (len(c) != 6 || codeAt(t, time.Unix(step*30, 0)) != c) {
			t.Fatalf("%q passed as step %d", in, step)
		}
	})
}
