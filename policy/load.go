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

// regoFiles lists the policy files of path: the file itself, or every
// .rego file under the directory except tests (*_test.rego) and dotfiles
// (editors' lock and swap files), sorted.
func regoFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
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
	return files, nil
}

// LoadModules reads a .rego file, or the policy files of a directory (see
// regoFiles), in a stable order.
func LoadModules(path string) ([]Module, error) {
	files, err := regoFiles(path)
	if err != nil {
		return nil, err
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

// Fingerprint summarizes the files LoadModules would read (names, sizes,
// modification times) without reading them. A reload waits until it is
// the same on two checks in a row, so a file caught mid-write, or a
// directory mid-checkout, is never compiled into a looser policy.
func Fingerprint(path string) (string, error) {
	files, err := regoFiles(path)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("policy: %w", err)
		}
		fmt.Fprintf(&b, "%s:%d:%d;", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String(), nil
}
