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

// Fingerprint summarizes the .rego files LoadModules would read (names,
// sizes, modification times) without reading them. A reload waits until
// it is the same on two checks in a row, so a file caught mid-write, or a
// directory mid-checkout, is never compiled into a looser policy.
func Fingerprint(path string) (string, error) {
	var b strings.Builder
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != path {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !strings.HasSuffix(p, ".rego") {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%d:%d;", p, fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("policy: %w", err)
	}
	return b.String(), nil
}
