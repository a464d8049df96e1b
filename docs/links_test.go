// Package docs holds Gatehouse's reference documentation (the *.md files
// in this folder) and a test that keeps every relative link in the
// repository's Markdown pointing somewhere real.
package docs

import (
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestMarkdownLinks checks every relative link in every *.md file of the
// repository: the file or folder it names exists, and a #fragment into a
// Markdown file names a heading there (by GitHub's slug rules) or an
// explicit HTML anchor.
func TestMarkdownLinks(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	problems, n, err := checkTree(root)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no relative links found under %s; is the walk broken?", root)
	}
	for _, p := range problems {
		t.Error(p)
	}
}

// TestCheckerFindsBrokenLinks makes sure the checker itself fails on what
// it is meant to catch.
func TestCheckerFindsBrokenLinks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", strings.Join([]string{
		"# Title",
		"## What the `upstream` receives (headers)",
		"## Notes",
		"## Notes",
		"[ok](docs/a.md) [ok](docs/a.md#keys) [ok](#what-the-upstream-receives-headers)",
		"[ok](#notes-1) [ok](docs/) [ok](https://example.com/x.md#nothing) [ok](docs/a.md#explicit)",
		"`[not a link](nope.md)`",
		"```",
		"[not a link](nope.md)",
		"## Not a heading",
		"```",
		"[broken file](docs/missing.md)",
		"[broken anchor](docs/a.md#nope)",
		"[broken self](#not-a-heading)",
		"[ref]: docs/gone.md",
		"",
	}, "\n"))
	write("docs/a.md", "# A\n\n## Keys\n\n<a id=\"explicit\"></a>\n")
	problems, _, err := checkTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"docs/missing.md", "docs/a.md#nope", "#not-a-heading", "docs/gone.md"}
	if len(problems) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(problems), len(want), strings.Join(problems, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(problems[i], "("+w+")") {
			t.Errorf("problem %d = %q, want one about %s", i, problems[i], w)
		}
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Security behavior":                                 "security-behavior",
		"1. Gatehouse's own edge (once)":                    "1-gatehouses-own-edge-once",
		"The examples fetch the JWKS from `auth.localhost`": "the-examples-fetch-the-jwks-from-authlocalhost",
		"roles_by_path":                                     "roles_by_path",
		"PingFederate / PingOne (SAML)":                     "pingfederate--pingone-saml",
		"SAML 2.0":                                          "saml-20",
		"See [Keys](#keys) **now**":                         "see-keys-now",
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

var (
	// [text](target) and ![alt](target), with an optional title.
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	// [id]: target
	refDef   = regexp.MustCompile(`^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$`)
	atx      = regexp.MustCompile(`^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$`)
	htmlID   = regexp.MustCompile(`<a\s+(?:name|id)="([^"]+)"`)
	codeSpan = regexp.MustCompile("`+[^`]*`+")
	mdLink   = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)
	scheme   = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// page is what one Markdown file offers and links to.
type page struct {
	anchors map[string]bool
	links   []link
}

type link struct {
	line   int
	target string
}

// checkTree checks every *.md under root and returns one message per
// broken link, in file and line order, and how many links it checked.
func checkTree(root string) ([]string, int, error) {
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || name == "node_modules" || name == "vendor" || name == "artifacts") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".md") {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	pages := map[string]*page{}
	load := func(p string) (*page, error) {
		if pg, ok := pages[p]; ok {
			return pg, nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		pg := parse(string(b))
		pages[p] = pg
		return pg, nil
	}
	var problems []string
	n := 0
	for _, f := range files {
		pg, err := load(f)
		if err != nil {
			return nil, 0, err
		}
		rel, _ := filepath.Rel(root, f)
		rel = filepath.ToSlash(rel)
		for _, l := range pg.links {
			if scheme.MatchString(l.target) || strings.HasPrefix(l.target, "//") {
				continue // an absolute URL: not ours to check
			}
			n++
			if msg := checkLink(root, f, pg, l.target, load); msg != "" {
				problems = append(problems, fmt.Sprintf("%s:%d: (%s) %s", rel, l.line, l.target, msg))
			}
		}
	}
	return problems, n, nil
}

func checkLink(root, from string, fromPage *page, target string, load func(string) (*page, error)) string {
	pathPart, frag, _ := strings.Cut(target, "#")
	p, err := url.PathUnescape(pathPart)
	if err != nil {
		return "bad escape: " + err.Error()
	}
	dest := from
	if p != "" {
		if strings.HasPrefix(p, "/") {
			dest = filepath.Join(root, filepath.FromSlash(p))
		} else {
			dest = filepath.Join(filepath.Dir(from), filepath.FromSlash(p))
		}
		info, err := os.Stat(dest)
		if err != nil {
			return "no such file or folder"
		}
		if info.IsDir() || frag == "" {
			return ""
		}
	}
	if frag == "" || !strings.HasSuffix(dest, ".md") {
		return "" // fragments into code files (#L12) are GitHub's, not headings
	}
	destPage := fromPage
	if dest != from {
		if destPage, err = load(dest); err != nil {
			return err.Error()
		}
	}
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	if !destPage.anchors[strings.ToLower(frag)] {
		return "no heading with that anchor"
	}
	return ""
}

// parse collects a Markdown file's heading anchors and its links, outside
// fenced code blocks and code spans.
func parse(text string) *page {
	pg := &page{anchors: map[string]bool{}}
	seen := map[string]int{}
	addHeading := func(h string) {
		s := slug(h)
		if k := seen[s]; k > 0 {
			pg.anchors[fmt.Sprintf("%s-%d", s, k)] = true
		} else {
			pg.anchors[s] = true
		}
		seen[s]++
	}
	fence := ""
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		trimmed := strings.TrimLeft(line, " ")
		if fence != "" {
			if strings.HasPrefix(trimmed, fence) {
				fence = ""
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~") {
			fence = trimmed[:3]
			continue
		}
		if m := atx.FindStringSubmatch(line); m != nil {
			addHeading(m[2])
		} else if i+1 < len(lines) && strings.TrimSpace(line) != "" && isSetextUnderline(lines[i+1]) {
			addHeading(strings.TrimSpace(line))
		}
		for _, m := range htmlID.FindAllStringSubmatch(line, -1) {
			pg.anchors[strings.ToLower(m[1])] = true
		}
		plain := codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(plain, -1) {
			pg.links = append(pg.links, link{i + 1, m[1]})
		}
		if m := refDef.FindStringSubmatch(plain); m != nil {
			pg.links = append(pg.links, link{i + 1, m[1]})
		}
	}
	return pg
}

func isSetextUnderline(s string) bool {
	s = strings.TrimSpace(s)
	return len(s) >= 2 && (strings.Trim(s, "=") == "" || strings.Trim(s, "-") == "")
}

// slug is GitHub's anchor for a heading: the heading's text, lowercased,
// with spaces turned into '-' and punctuation other than '-' and '_'
// dropped.
func slug(heading string) string {
	text := mdLink.ReplaceAllString(heading, "$1")
	text = strings.ReplaceAll(text, "`", "")
	var b strings.Builder
	for _, r := range strings.ToLower(text) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
