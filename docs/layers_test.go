package docs

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/gatehouse/gatehouse/"

// TestLayering keeps the import graph to ARCHITECTURE.md's layers: every
// package of the module (but tests, examples, benchmarks and these docs)
// is in exactly one layer, and imports only packages of its own layer or
// lower ones.
func TestLayering(t *testing.T) {
	layers := readLayers(t, filepath.Join("..", "ARCHITECTURE.md"))
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg := strings.TrimPrefix(f[0], module)
		if exempt(pkg) {
			continue
		}
		seen[pkg] = true
		lp, ok := layers[pkg]
		if !ok {
			t.Errorf("%s is in no layer of ARCHITECTURE.md", pkg)
			continue
		}
		for _, imp := range f[1:] {
			dep, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			if ld, ok := layers[dep]; ok && ld > lp {
				t.Errorf("%s (layer %d) imports %s (layer %d), which sits above it", pkg, lp, dep, ld)
			}
		}
	}
	for pkg := range layers {
		if !seen[pkg] {
			t.Errorf("ARCHITECTURE.md names %s, which is no package", pkg)
		}
	}
}

// exempt: packages outside the layering (they import what they test or
// show).
func exempt(pkg string) bool {
	for _, p := range []string{"e2e", "examples/", "bench/", "docs", "internal/testdns", "internal/testidp", "store/pgstore/pgtest"} {
		if pkg == strings.TrimSuffix(p, "/") || strings.HasPrefix(pkg, p) {
			return true
		}
	}
	return false
}

// readLayers reads the layering table: rows "| N | `pkg`, `pkg` | … |".
func readLayers(t *testing.T, path string) map[string]int {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	layers := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(sc.Text(), "|")
		if len(cells) < 4 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(cells[1]))
		if err != nil {
			continue
		}
		for _, p := range strings.Split(cells[2], ",") {
			p = strings.Trim(strings.TrimSpace(p), "`")
			if p == "" {
				continue
			}
			if _, dup := layers[p]; dup {
				t.Errorf("ARCHITECTURE.md puts %s in two layers", p)
			}
			layers[p] = n
		}
	}
	if len(layers) == 0 {
		t.Fatal("ARCHITECTURE.md has no layering table")
	}
	return layers
}

// TestArchitectureFilesExist: every Go file ARCHITECTURE.md names (in
// backticks) is there, so its walks cannot silently go stale.
func TestArchitectureFilesExist(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range goFileRE.FindAllStringSubmatch(string(b), -1) {
		n++
		if _, err := os.Stat(filepath.Join("..", m[1])); err != nil {
			t.Errorf("ARCHITECTURE.md names %s: %v", m[1], err)
		}
	}
	if n < 10 {
		t.Fatalf("ARCHITECTURE.md names only %d Go files; is the pattern broken?", n)
	}
}

var goFileRE = regexp.MustCompile("`([a-z0-9_./-]+/[a-z0-9_]+\\.go)`")
