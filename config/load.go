package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest configuration file Load and Parse accept.
const MaxFileSize = 1 << 20

// Problem is one thing wrong with a configuration file.
type Problem struct {
	// Path is the key path of the offending value, such as
	// "orgs[0].users[1].password". Empty for problems with the file as a
	// whole (syntax errors, size).
	Path string
	// Line and Column locate the offending node (1-based); 0 when unknown.
	Line, Column int
	Msg          string
}

// Errors is every problem found in a configuration file. Parse and Load
// return it (as *Errors) whenever the file cannot be used.
type Errors struct {
	// File is the file name given to Parse or Load, used in Error.
	File     string
	Problems []Problem
}

// Error lists every problem, one per line, as "FILE:LINE:COL: PATH: MSG".
func (e *Errors) Error() string {
	var b strings.Builder
	file := e.File
	if file == "" {
		file = "config"
	}
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(file)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
			if p.Column > 0 {
				fmt.Fprintf(&b, ":%d", p.Column)
			}
		}
		b.WriteString(": ")
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Load reads, parses and validates the configuration file at path, taking
// ${ENV} values from the process environment. Relative branding file
// names are relative to the file's folder; other relative file names
// (tls, store, policy) to the working directory.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	// Read one byte past the limit so Parse can tell the file is too big
	// without reading all of it.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(data, path, os.LookupEnv)
}

// Parse parses and validates a configuration. filename is used in
// messages, and its folder is where relative branding file names are.
// getenv looks up ${NAME} references (nil means os.LookupEnv).
// On failure the error is an *Errors listing every problem found.
func Parse(data []byte, filename string, getenv func(string) (string, bool)) (*Config, error) {
	if getenv == nil {
		getenv = os.LookupEnv
	}
	d := &decoder{
		getenv: getenv,
		pos:    map[string]position{},
		bad:    map[string]bool{},
	}
	errs := &Errors{File: filename}
	if len(data) > MaxFileSize {
		errs.Problems = []Problem{{Msg: fmt.Sprintf("file is larger than %d bytes (1 MiB)", MaxFileSize)}}
		return nil, errs
	}
	root, p := parseYAML(data)
	if p != nil {
		errs.Problems = []Problem{*p}
		return nil, errs
	}
	c := new(Config)
	if root != nil {
		d.pos[""] = nodePos(root)
		d.value(root, reflect.ValueOf(c).Elem(), "")
	}
	c.resolveFiles(filepath.Dir(filename))
	c.applyDefaults()
	c.validate(d)
	if len(d.problems) > 0 {
		sort.SliceStable(d.problems, func(i, j int) bool {
			a, b := d.problems[i], d.problems[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Column < b.Column
		})
		errs.Problems = d.problems
		return nil, errs
	}
	c.Warnings = d.warnings
	return c, nil
}

// resolveFiles makes relative branding file names relative to dir, the
// config file's folder, so that a config names the same files whatever
// folder Gatehouse is started from.
func (c *Config) resolveFiles(dir string) {
	for i := range c.Orgs {
		b := c.Orgs[i].Branding
		if b == nil {
			continue
		}
		for _, p := range []*string{&b.Logo, &b.Favicon, &b.Font, &b.CSS} {
			if *p != "" && !filepath.IsAbs(*p) {
				*p = filepath.Join(dir, *p)
			}
		}
	}
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses exactly one YAML document into a node tree. It returns
// the document's content node, nil for an empty document.
func parseYAML(data []byte) (root *yaml.Node, p *Problem) {
	defer func() {
		// The yaml package recovers its own failures; anything else is a
		// bug in it, which must not take the process down.
		if r := recover(); r != nil {
			root, p = nil, &Problem{Msg: fmt.Sprintf("cannot parse YAML: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty file: validation reports what is missing
		}
		return nil, syntaxProblem(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxProblem(err)
	default:
		return nil, &Problem{Line: next.Line, Column: next.Column,
			Msg: "multiple YAML documents are not supported (remove the \"---\" separator)"}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, nil
	}
	return doc.Content[0], nil
}

func syntaxProblem(err error) *Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Problem{Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Problem{Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

type position struct{ line, col int }

func nodePos(n *yaml.Node) position { return position{n.Line, n.Column} }

// decoder walks a yaml.Node tree against the Config types, reporting
// unknown and duplicate keys, wrong kinds and bad scalars with their key
// paths, substituting ${ENV} in scalar values, and remembering where each
// path was found so validation can point at it.
type decoder struct {
	getenv func(string) (string, bool)
	// noEnv, while set, is why the values being decoded must not read
	// the environment (a field tagged noenv:"why").
	noEnv    string
	pos      map[string]position // key path → where its value is
	bad      map[string]bool     // paths that already have a problem
	problems []Problem
	warnings []Problem
}

func (d *decoder) problemAt(n *yaml.Node, path, msg string) {
	d.problems = append(d.problems, Problem{Path: path, Line: n.Line, Column: n.Column, Msg: msg})
	d.bad[path] = true
}

// add reports a validation problem at path, located at path's node or its
// nearest present ancestor. Paths under one already reported while
// decoding are skipped: their zero values would only repeat the problem.
func (d *decoder) add(path, format string, args ...any) {
	for p := path; ; p = parentPath(p) {
		if d.bad[p] {
			return
		}
		if p == "" {
			break
		}
	}
	at := d.locate(path)
	d.problems = append(d.problems, Problem{Path: path, Line: at.line, Column: at.col, Msg: fmt.Sprintf(format, args...)})
}

// locate is where path's node (or its nearest present ancestor) is.
func (d *decoder) locate(path string) position {
	for p := path; ; p = parentPath(p) {
		if pos, ok := d.pos[p]; ok {
			return pos
		}
		if p == "" {
			return position{}
		}
	}
}

// warn reports something that does not stop Gatehouse but that an
// operator should fix, located like add.
func (d *decoder) warn(path, format string, args ...any) {
	at := d.locate(path)
	d.warnings = append(d.warnings, Problem{Path: path, Line: at.line, Column: at.col, Msg: fmt.Sprintf(format, args...)})
}

// parentPath strips the last element of a key path: "a.b[2]" → "a.b",
// "a.b" → "a", "a" → "".
func parentPath(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

var durationType = reflect.TypeFor[time.Duration]()

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's kind for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		d.problemAt(n, path, "anchors and aliases are not supported")
		return
	}
	if isNull(n) {
		// "key:" with nothing after it, "~" or "null": leave the zero
		// value (and so the default).
		return
	}
	if v.Type() == durationType {
		d.scalar(n, v, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		e := reflect.New(v.Type().Elem())
		d.value(n, e.Elem(), path)
		v.Set(e)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			msg := "expected a list, got " + describe(n)
			if n.Kind == yaml.ScalarNode {
				msg += " (write [" + n.Value + "] for a list of one)"
			}
			d.problemAt(n, path, msg)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			d.pos[p] = nodePos(item)
			d.value(item, s.Index(i), p)
		}
		v.Set(s)
	case reflect.Map:
		d.mapping(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

// keyPos is where problems about a key's value point: the value itself
// for scalars, the key for collections (whose own position is that of
// their first entry) and empty values.
func keyPos(k, val *yaml.Node) position {
	if val.Kind == yaml.ScalarNode && !isNull(val) {
		return nodePos(val)
	}
	return nodePos(k)
}

// checkKey reports a key that is not a plain string or repeats an earlier
// one. It reports whether the entry should be decoded.
func (d *decoder) checkKey(k *yaml.Node, seen map[string]*yaml.Node, path string) bool {
	if k.Kind != yaml.ScalarNode || k.Anchor != "" {
		d.problemAt(k, path, "mapping keys must be plain strings")
		return false
	}
	if first, dup := seen[k.Value]; dup {
		d.problemAt(k, joinPath(path, k.Value),
			fmt.Sprintf("duplicate key %q (first set on line %d)", k.Value, first.Line))
		return false
	}
	seen[k.Value] = k
	return true
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problemAt(n, path, "expected a mapping, got "+describe(n))
		return
	}
	fields := structFields(v.Type())
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.checkKey(k, seen, path) {
			continue
		}
		idx, ok := fields.index[k.Value]
		if !ok && v.Type() == connectionType {
			if proto, known := protocol(k.Value); known {
				d.protocolBlock(k, val, v.Addr().Interface().(*Connection), proto, path)
				continue
			}
		}
		if !ok {
			msg := fmt.Sprintf("unknown key %q", k.Value)
			if k.Value == "<<" {
				msg = "merge keys (<<) are not supported"
				// Skip validating the rest of this mapping: the merge
				// would have supplied its missing keys.
				d.bad[path] = true
			} else if s := suggest(k.Value, fields.names); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			d.problemAt(k, joinPath(path, k.Value), msg)
			continue
		}
		p := joinPath(path, k.Value)
		d.pos[p] = keyPos(k, val)
		if why := v.Type().Field(idx).Tag.Get("noenv"); why != "" && d.noEnv == "" {
			d.noEnv = why
			d.value(val, v.Field(idx), p)
			d.noEnv = ""
			continue
		}
		d.value(val, v.Field(idx), p)
	}
}

var connectionType = reflect.TypeFor[Connection]()

// protocolBlock decodes a connection's protocol block (saml:, oidc:) into
// the settings struct its protocol registered, with the same strictness
// and key paths as the rest of the file.
func (d *decoder) protocolBlock(k, val *yaml.Node, c *Connection, proto Protocol, path string) {
	p := joinPath(path, k.Value)
	d.pos[p] = keyPos(k, val)
	if c.SettingsKey != "" {
		d.problemAt(k, p, fmt.Sprintf("a connection has one protocol block (also %s)", c.SettingsKey))
		return
	}
	c.SettingsKey = k.Value
	settings := proto.NewSettings()
	if settings == nil {
		if !isNull(val) {
			d.problemAt(k, p, fmt.Sprintf("type %s has no settings", k.Value))
		}
		return
	}
	if !isNull(val) {
		d.value(val, reflect.ValueOf(settings).Elem(), p)
	}
	c.Settings = settings
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problemAt(n, path, "expected a mapping, got "+describe(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.checkKey(k, seen, path) {
			continue
		}
		p := joinPath(path, k.Value)
		d.pos[p] = keyPos(k, val)
		e := reflect.New(v.Type().Elem()).Elem()
		d.value(val, e, p)
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
	}
	v.Set(m)
}

// scalar substitutes ${ENV} in a scalar value and decodes it into v.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	want := "a string"
	switch {
	case v.Type() == durationType:
		want = "a duration"
	case v.Kind() == reflect.Bool:
		want = "true or false"
	case v.Kind() == reflect.Int:
		want = "an integer"
	}
	if n.Kind != yaml.ScalarNode {
		d.problemAt(n, path, "expected "+want+", got "+describe(n))
		return
	}
	node := n
	if strings.Contains(n.Value, "${") {
		getenv := d.getenv
		if d.noEnv != "" {
			getenv = nil
		}
		val, errs := expandEnv(n.Value, getenv)
		for _, e := range errs {
			if d.noEnv != "" {
				e += ": " + d.noEnv + `, so it never reads the environment (write "$${" for a literal "${")`
			}
			d.problemAt(n, path, e)
		}
		if len(errs) > 0 {
			return
		}
		if v.Kind() == reflect.String {
			// A substituted value is always a literal string, whatever
			// it looks like ("null", "true", "[x]").
			node = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: val}
		} else {
			// Numbers, booleans and durations are resolved as if the
			// value had been written there, unquoted.
			node = &yaml.Node{Kind: yaml.ScalarNode, Value: val}
		}
		node.Line, node.Column = n.Line, n.Column
	}
	err := error(nil)
	if v.Kind() == reflect.Int && v.Type() != durationType && node.ShortTag() != "!!int" {
		// yaml would truncate 1.5 to 1.
		err = errors.New("not an integer")
	} else {
		err = node.Decode(v.Addr().Interface())
	}
	if err != nil {
		var msg string
		switch {
		case v.Type() == durationType:
			msg = fmt.Sprintf("invalid duration %q (use a number and a unit, such as 90s, 15m or 12h)", node.Value)
		case v.Kind() == reflect.String:
			msg = strings.TrimPrefix(err.Error(), "yaml: ")
		default:
			msg = fmt.Sprintf("expected %s, got %q", want, node.Value)
		}
		d.problemAt(n, path, msg)
	}
}

type fieldSet struct {
	index map[string]int // yaml key → field index
	names []string       // yaml keys in field order
}

func structFields(t reflect.Type) fieldSet {
	fs := fieldSet{index: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fs.index[name] = i
		fs.names = append(fs.names, name)
	}
	return fs
}

// suggest returns the known key closest to an unknown one, or "" when
// none is close enough to be a likely typo.
func suggest(key string, known []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", -1
	for _, k := range known {
		if norm(k) == norm(key) {
			return k
		}
		dist := editDistance(key, k)
		if bestDist < 0 || dist < bestDist {
			best, bestDist = k, dist
		}
	}
	switch n := len(key); {
	case bestDist < 0:
		return ""
	case bestDist <= 1 && n >= 2, bestDist <= 2 && n >= 5, bestDist <= 3 && n >= 10:
		return best
	}
	return ""
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and transpositions of adjacent bytes each
// cost one.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b)) // not a typo of a short key
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
