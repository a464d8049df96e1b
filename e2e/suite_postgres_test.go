package e2e

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/store/pgstore/pgtest"
)

// onPostgresPass are the tests run a second time with every Gatehouse on
// PostgreSQL instead of its embedded store: those whose state is most of
// the store's work (federation's single-use flows and replay caches, the
// OpenID Provider's codes and refresh families, second factors,
// invitations and messages, throttles, the admin API and portal, policy
// reloads, the audit trail). A feature tested only on Badger can break on
// PostgreSQL unseen: SAML sign-ins did (a replay marker with no value).
// TestAuditWebhooks, which waits out retry back-offs for over a minute,
// and TestPasskeysInChromium, whose clicks in Chromium can miss on a busy
// machine (TestPasskeyAttacks covers passkeys in the store), are left to
// the whole-suite run (GATEHOUSE_E2E_STORE=postgres).
var onPostgresPass = []string{
	"TestFederatedSAMLSignIn", "TestFederatedOIDCSignIn", "TestFederatedMFA", "TestSAMLOnboardingOrder",
	"TestOpenIDProvider", "TestAppsThroughAdminAPI", "TestSPAInChromium",
	"TestTOTP", "TestPasskeyAttacks", "TestEmailCodes",
	"TestInvitationToPasswordOrg", "TestInvitationEmails", "TestAdminAPI", "TestPortalIsolation", "TestAuditVerify",
	"TestLogoutAndRevocation", "TestHandoffIsBoundToBrowserAndOrg", "TestLoginErrorsAndThrottling",
	"TestPortalSAMLSetupInChromium", "TestPortalOIDCSetup", "TestSelfServeSSO", "TestPortalInvitationInChromium",
	"TestInvitationTexts", "TestNewSignInAlert", "TestLockoutSparesKnownDeviceAndAddress", "TestParallelGuessesAreThrottled",
	"TestPolicyLayersAndHotReload",
}

func TestSuiteOnPostgres(t *testing.T) {
	if onPostgresSuite() {
		t.Skip("this is the pass on PostgreSQL")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	pgtest.Shared(t) // skips where PostgreSQL is not installed (not in CI)
	start := time.Now()
	cmd := exec.Command(os.Args[0], "-test.run", "^("+strings.Join(onPostgresPass, "|")+")$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "GATEHOUSE_E2E_STORE=postgres", "GATEHOUSE_E2E_BINARY="+binary)
	out, err := cmd.CombinedOutput()
	// A test skipped for a tool this machine lacks (Chromium, mailpit)
	// counts as run, except in CI, where nothing may skip.
	var ran []string
	prefixes := []string{"--- PASS: "}
	if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") == "" {
		prefixes = append(prefixes, "--- SKIP: ")
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, p := range prefixes {
			if name, ok := strings.CutPrefix(line, p); ok {
				ran = append(ran, strings.Fields(name)[0])
			}
		}
	}
	if err != nil {
		t.Fatalf("the pass on PostgreSQL failed: %v\n%s", err, out)
	}
	for _, name := range onPostgresPass {
		if !slices.Contains(ran, name) {
			t.Errorf("the pass on PostgreSQL did not run %s (renamed? skipped?)", name)
		}
	}
	t.Logf("on PostgreSQL in %s: %s", time.Since(start).Round(time.Second), strings.Join(ran, ", "))
}
