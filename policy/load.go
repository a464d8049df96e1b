package policy

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// MaxModuleSize bounds one policy file.
const MaxModuleSize = 1 << 20

// LoadModules reads a .rego file, or every .rego file under a directory
// (tests, *_test.rego, excluded), in a stable order.
func LoadModules(path string) ([]Module, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	var files []string
	if !fi.IsDir() {
		files = []string{path}
	} else {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			// Dotfiles are editors' lock and swap files, not policy.
			if strings.HasPrefix(d.Name(), ".") && p != path {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if !d.IsDir() && strings.HasSuffix(p, ".rego") && !strings.HasSuffix(p, "_test.rego") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		sort.Strings(files)
		if len(files) == 0 {
			return nil, fmt.Errorf("policy: no .rego files in %s", path)
		}
	}
	mods := make([]Module, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
		if len(b) > MaxModuleSize {
			return nil, fmt.Errorf("policy: %s is larger than %d bytes", f, MaxModuleSize)
		}
		mods = append(mods, Module{Name: f, Text: string(b)})
	}
	return mods, nil
}
