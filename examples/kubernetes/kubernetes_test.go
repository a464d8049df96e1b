// Package kubernetes checks the Kubernetes example: every manifest
// against the Kubernetes API's schemas (npm kubernetes-models, run by
// check.mjs), the checker against a broken manifest, and the config the
// ConfigMap carries with Gatehouse's own validation.
package kubernetes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/config"
)

func skipOrFail(t *testing.T, msg string) {
	if os.Getenv("GATEHOUSE_REQUIRE_EXAMPLES") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func TestManifests(t *testing.T) {
	npm, err := exec.LookPath("npm")
	if err != nil {
		skipOrFail(t, "npm not installed: the Kubernetes manifests are not checked (CI installs Node)")
	}
	if out, err := exec.Command(npm, "ci", "--prefer-offline", "--no-audit", "--no-fund").CombinedOutput(); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	out, err := exec.Command("node", "check.mjs").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "5 valid, 0 invalid") {
		t.Fatalf("the manifests: %v\n%s", err, out)
	}
	// The checker finds a broken manifest.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: three\n  selector: {}\n  template: {spec: {containers: []}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("node", "check.mjs", bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "replicas") {
		t.Fatalf("a broken manifest passed: %v\n%s", err, out)
	}
}

// The config in the ConfigMap is one Gatehouse accepts.
func TestConfigMapConfig(t *testing.T) {
	b, err := os.ReadFile("gatehouse.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg string
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		if doc.Kind == "ConfigMap" {
			cfg = doc.Data["gatehouse.yaml"]
		}
	}
	if cfg == "" {
		t.Fatal("no gatehouse.yaml in the ConfigMap")
	}
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GATEHOUSE_DATABASE_URL", "postgres://gatehouse:pw@db.internal:5432/gatehouse?sslmode=verify-full")
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.Postgres == nil || c.Store.Postgres.DSN == "" {
		t.Fatalf("the example's store: %+v", c.Store)
	}
}
