// Package verifypython runs the Python example's unittest suite from
// `go test ./...` when a Python with PyJWT is installed (CI installs
// Debian's python3-jwt).
package verifypython

import (
	"os"
	"os/exec"
	"testing"
)

func TestPythonExample(t *testing.T) {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import jwt, cryptography").Run() != nil {
			continue
		}
		out, err := exec.Command(py, "-m", "unittest", "-v").CombinedOutput()
		if err != nil {
			t.Fatalf("%s -m unittest: %v\n%s", py, err, out)
		}
		t.Logf("%s", out)
		return
	}
	skipOrFail(t, "no python3 with PyJWT and cryptography: the Python example is not tested (CI installs python3-jwt)")
}

// skipOrFail skips on a developer machine without the tool, but fails in
// CI (GATEHOUSE_REQUIRE_EXAMPLES=1), where a skip would hide a broken example.
func skipOrFail(t *testing.T, msg string) {
	if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
